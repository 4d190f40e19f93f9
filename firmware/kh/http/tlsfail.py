# How a failed TLS handshake reads: mbedTLS's exception (and what the verify callback saw) ->
# FireError with a stable code and a message that says what to do. Imported only on failure.
import time
from micropython import const
from kh.http.errors import FireError

_M_CA = const(0)  # the modes of kh.http.tlspolicy.Check
_M_PIN_CA = const(1)
_ERR_CA_CHAIN_REQUIRED = const(-0x7680)
# mbedTLS's allocation failures (ssl.h, x509.h, ecp.h, bignum.h, pk.h, cipher.h, md.h): memory,
# never a verdict on the server
_ERR_ALLOC = (-0x7F00, -0x2880, -0x4D80, -0x0010, -0x3F80, -0x6180, -0x5180)
_ERR_FATAL_ALERT = const(-0x7780)  # the server ended the handshake with a fatal alert
_ERR_X509_LO = const(-0x3080)  # MBEDTLS_ERR_X509_* (with a low-level code added) lie in here
_ERR_X509_HI = const(-0x2000)
# what a stock mbedTLS build offers (MicroPython unix port and ESP32 firmware alike)
OFFER = ("TLS 1.2, ECDHE on P-256, P-384 or P-521, AES-GCM or AES-CBC, "
         "ECDSA or RSA (PKCS#1 v1.5) certificates")
_YEAR_CLOCK_SET = const(2024)


def classify(chk, e):
    # an exception from the handshake -> FireError with a stable code
    if isinstance(e, FireError):
        return e
    # first: a failed allocation (in the verify callback, or in mbedTLS) says nothing about the
    # server's certificate, whatever else the handshake saw
    if chk.error == "memory" or isinstance(e, MemoryError) or \
            (isinstance(e, OSError) and e.args and e.args[0] in _ERR_ALLOC):
        return FireError("memory", "out of memory during the TLS handshake; nothing was sent")
    if chk.error:
        return FireError("internal", "the certificate check failed inside the device")
    if chk.pin_rejected:
        return FireError("tls_pin_mismatch", "the server's certificate is not the pinned one")
    text = str(e.args[0]) if e.args else ""
    if isinstance(e, ValueError) and "certificate" in text:
        return _verify_failure(chk, text)
    code = e.args[0] if isinstance(e, OSError) and e.args else None
    if code == _ERR_CA_CHAIN_REQUIRED:
        return _untrusted(chk)
    if code == _ERR_FATAL_ALERT:
        if chk.ip_name:
            return FireError("tls_unsupported",
                             "the server refused the handshake: for a verified level this device's TLS "
                             "library must send the IP address as the server name (SNI), which strict "
                             "servers refuse (use a host name in the URL, or pin the server's own "
                             "certificate: a leaf pin sends no name); or the server needs more than "
                             "this device offers (" + OFFER + ")")
        return FireError("tls_unsupported",
                         "the server refused every TLS version, key exchange and cipher this device "
                         "offers (" + OFFER + "); it probably requires TLS 1.3, X25519, ChaCha20 "
                         "or DHE: enable TLS 1.2 with ECDHE and AES-GCM on the server or a proxy")
    if isinstance(code, int) and _ERR_X509_LO < code <= _ERR_X509_HI:
        return unusable("the server's certificate chain")
    if isinstance(code, int) and 0 < code < 256:
        return FireError("connect", "the connection broke during the TLS handshake (errno " + str(code) + ")")
    return FireError("tls_handshake", "TLS handshake failed (" + _short(e) + "); is it a TLS server?")


def unusable(what):
    return FireError("tls_unusable_certificate",
                     what + " uses what this device's TLS library (mbedTLS) cannot parse: an "
                     "RSA-PSS signature, a critical extension such as name constraints, or an "
                     "unknown algorithm; use a certificate signed with ECDSA or RSA PKCS#1 v1.5 "
                     "without critical name constraints")


def _untrusted(chk):
    if chk.mode == _M_CA and chk.unusable:
        return unusable("the trust store's root for this server")
    if chk.mode == _M_PIN_CA:
        return FireError("tls_pin_mismatch",
                         "the chain does not lead to the pinned certificate (a pinned root needs the "
                         "server to send its intermediate; pin the intermediate instead)")
    if chk.mode == _M_CA and not (chk.trust and chk.trust.dir):
        return FireError("tls_untrusted", "no trust store: add the server's root CA (keyhook fire --trust)")
    return FireError("tls_untrusted", "the certificate chain does not lead to a root in the trust store")


def _verify_failure(chk, text):
    if "not correctly signed" in text:
        return _untrusted(chk)
    if "starts in the future" in text:
        if time.gmtime()[0] < _YEAR_CLOCK_SET:
            return FireError("tls_not_yet_valid", "the device clock is not set; set it before a verified fire")
        return FireError("tls_not_yet_valid", "the server's certificate is not valid yet")
    if "has expired" in text:
        return FireError("tls_expired", "the server's certificate has expired")
    if "CN" in text or "Common Name" in text:
        return FireError("tls_hostname", "the server's certificate is not for this host name")
    return FireError("tls_bad_certificate", "the server's certificate was rejected: " + text.split("\n")[0])


def _short(e):
    a = e.args
    if len(a) > 1:
        return str(a[1])[:60]
    return e.__class__.__name__ + " " + str(a[0] if a else "")[:60]
