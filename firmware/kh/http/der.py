# A minimal DER walk over X.509 certificates: just what the TLS layer needs to choose a root
# (the issuer and subject names) and to tell a pinned CA from a pinned leaf (basicConstraints).
# Pins arrive as PEM or base64 DER; both become DER bytes here.
import binascii
from kh.http.errors import FireError


def tlv(b, off):
    # -> (tag, start of value, end of value); raises ValueError on truncation
    n = len(b)
    if off + 2 > n:
        raise ValueError("der")
    tag = b[off]
    ln = b[off + 1]
    off += 2
    if ln & 0x80:
        k = ln & 0x7F
        if k == 0 or k > 3 or off + k > n:
            raise ValueError("der")
        ln = 0
        for i in range(k):
            ln = (ln << 8) | b[off + i]
        off += k
    if off + ln > n:
        raise ValueError("der")
    return tag, off, off + ln


def _tbs(cert):
    tag, s, e = tlv(cert, 0)
    if tag != 0x30:
        raise ValueError("der")
    tag, s, e = tlv(cert, s)
    if tag != 0x30:
        raise ValueError("der")
    return s, e


def names(cert):
    # -> (issuer Name DER, subject Name DER) as memoryview slices of cert
    mv = memoryview(cert)
    p, end = _tbs(mv)
    tag, s, e = tlv(mv, p)
    if tag == 0xA0:  # [0] version
        p = e
    for _ in range(2):  # serialNumber, signature AlgorithmIdentifier
        tag, s, p = tlv(mv, p)
    tag, s, e = tlv(mv, p)
    issuer = mv[p:e]
    tag, s, p = tlv(mv, e)  # validity
    tag, s, e = tlv(mv, p)
    return issuer, mv[p:e]


_BASIC_CONSTRAINTS = b"\x06\x03\x55\x1d\x13"


def is_ca(cert):
    # basicConstraints cA = TRUE
    b = cert if isinstance(cert, bytes) else bytes(cert)
    i = b.find(_BASIC_CONSTRAINTS)
    if i < 0:
        return False
    p = i + len(_BASIC_CONSTRAINTS)
    tag, s, e = tlv(b, p)
    if tag == 0x01:  # critical flag
        tag, s, e = tlv(b, e)
    if tag != 0x04:
        return False
    tag, s, e = tlv(b, s)  # SEQUENCE
    if tag != 0x30 or s == e:
        return False
    tag, s2, e2 = tlv(b, s)
    return tag == 0x01 and e2 > s2 and b[s2] != 0


def usable(der):
    # None when mbedTLS can parse the certificate, else why not (RSA-PSS signatures, critical
    # extensions it does not know, such as name constraints). Needs a TLS context (about 3 KiB
    # of heap for a moment): where the heap cannot spare it, the answer is None and a fire
    # reports tls_unusable_certificate instead (the host runs this check with heap to spare).
    try:
        import tls
    except ImportError:
        import ssl as tls
    try:
        tls.SSLContext(tls.PROTOCOL_TLS_CLIENT).load_verify_locations(der)
    except ValueError as e:
        return str(e.args[-1] if e.args else e)
    except MemoryError:
        return None
    return None


def pin_der(text):
    # PEM (one certificate) or base64 DER -> DER bytes; FireError("invalid_definition") if neither
    if not isinstance(text, str) or not text.strip():
        raise FireError("invalid_definition", "pinnedCertificate is required with TlsPinnedCertificate")
    # one slice, no copies per line: a2b_base64 skips the line breaks itself
    s = text
    a = s.find("-----BEGIN CERTIFICATE-----")
    if a >= 0:
        b = s.find("-----END CERTIFICATE-----", a)
        if b < 0 or s[:a].strip():
            raise FireError("invalid_definition", "pinnedCertificate: expected one PEM CERTIFICATE block")
        if s.find("-----BEGIN", b) >= 0:
            # a pasted fullchain.pem would pin its leaf, which changes at every renewal
            raise FireError("invalid_definition",
                            "pinnedCertificate holds %d PEM blocks (a fullchain.pem?); pin exactly one "
                            "certificate: `keyhook pin URL` prints each with its role"
                            % s.count("-----BEGIN"))
        s = s[a + 27:b]
    elif s.lstrip().startswith("-----"):
        raise FireError("invalid_definition", "pinnedCertificate: expected one PEM CERTIFICATE block")
    if "\\" in s:  # line breaks escaped twice by some JSON producers
        s = s.replace("\\n", "").replace("\\r", "")
    try:
        der = binascii.a2b_base64(s)
        tag, _, end = tlv(der, 0)
        if tag != 0x30 or end != len(der):
            raise ValueError("der")
        names(der)
    except ValueError:
        raise FireError("invalid_definition", "pinnedCertificate is not a certificate (PEM or base64 DER)")
    return der
