# The four TLS behaviours of the level table, as mbedTLS contexts (see docs/design.md, MicroPython facts):
#   TlsWithCACheck        CERT_REQUIRED, only the trust-store root(s) the chain points at
#   pinned CA             CERT_REQUIRED with just the pinned certificate as the anchor
#   pinned leaf           CERT_OPTIONAL + verify_callback demanding DER equality at depth 0,
#                         plus a flag checked after the handshake, before any byte is written
#   TlsAllowSelfSigned    CERT_NONE, encryption only
# and the mapping of mbedTLS failures to stable error codes.
from micropython import const
from kh.http.errors import FireError
from kh.http import der as _der
from kh.http.trust import name_hash

try:
    import tls
except ImportError:
    import ssl as tls

CA_CHECK = "TlsWithCACheck"
PINNED = "TlsPinnedCertificate"
SELF_SIGNED = "TlsAllowSelfSigned"
HTTP = "AllowHttp"
LEVELS = (CA_CHECK, PINNED, SELF_SIGNED, HTTP)

_M_CA = const(0)
_M_PIN_CA = const(1)
_M_PIN_LEAF = const(2)
_M_NONE = const(3)

_REJECT = const(0x4B48)  # "KH": what the callback returns to abort a handshake
_MAX_ISSUERS = const(6)  # issuer names remembered from one presented chain


class Check:
    # one connection's verification: make a context, watch the callback, judge the outcome
    def __init__(self, level, pin=None, trust=None, origin=None):
        self.origin = origin
        self.trust = trust
        self.pin = pin
        if level == PINNED:
            self.mode = _M_PIN_CA if _der.is_ca(pin) else _M_PIN_LEAF
        elif level == CA_CHECK:
            self.mode = _M_CA
        else:
            self.mode = _M_NONE
        self.verifies = self.mode != _M_NONE
        # mbedTLS checks the host name only together with verification (CERT_REQUIRED), and then
        # sends it as SNI even when it is an IP address; the other modes send no name for one
        self.needs_name = self.mode in (_M_CA, _M_PIN_CA)
        self.roots_hash = None
        self.unusable = 0
        self.ip_name = False  # the server name mbedTLS sends is an IP address (see client._open)
        self.issuers = []
        self.reset()

    def reset(self):
        self.leaf_seen = False
        self.pin_ok = False
        self.pin_rejected = False
        self.error = None

    def _cb(self, cert, depth):
        # Runs inside mbedTLS: an exception here would unwind through its C frames, and a
        # failed allocation must never read as a verdict on the certificate. So nothing
        # escapes: a MemoryError marks the check "memory" and aborts the handshake.
        try:
            # every certificate of the chain mbedTLS built, top first: remember each one's
            # issuer, so that a cross-signed root (R2 sent as issued by an older R1) still finds
            # R2 in the store
            if self.mode == _M_CA and len(self.issuers) < _MAX_ISSUERS:
                try:
                    h = name_hash(_der.names(cert)[0])
                    if h not in self.issuers:
                        self.issuers.append(h)
                except ValueError:
                    pass
            if depth == 0:
                self.leaf_seen = True
                if self.mode == _M_PIN_LEAF:
                    if cert == self.pin:  # memoryview against bytes: compared in place
                        self.pin_ok = True
                    else:
                        self.pin_rejected = True
                        return _REJECT
            return 0
        except MemoryError:
            self.error = "memory"
        except Exception:
            self.error = "internal"
        self.pin_ok = False
        return _REJECT

    def context(self, roots_hash=None):
        # roots_hash: for TlsWithCACheck, which trust-store name to load (None: the hint, if any)
        self.reset()
        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        if self.mode == _M_NONE:
            ctx.verify_mode = tls.CERT_NONE
            return ctx
        if self.mode == _M_PIN_LEAF:
            ctx.verify_mode = tls.CERT_OPTIONAL
        else:
            ctx.verify_mode = tls.CERT_REQUIRED
        ctx.verify_callback = self._cb
        if self.mode == _M_PIN_CA:
            try:
                ctx.load_verify_locations(self.pin)
            except ValueError:
                from kh.http import tlsfail
                raise tlsfail.unusable("the pinned certificate")
        elif self.mode == _M_CA:
            h = roots_hash or (self.trust.hint(self.origin) if self.trust else None)
            self.roots_hash = h
            self.unusable = 0
            if h:
                # h: one store name, or several joined by "," (every issuer in the chain)
                for one in h.split(","):
                    for d in self.trust.roots(one):
                        try:
                            ctx.load_verify_locations(d)
                        except ValueError:
                            self.unusable += 1  # a root mbedTLS cannot parse (kh.http.tlsfail)
        return ctx

    def may_write(self):
        # after the handshake, before the first byte: the pin flag
        if self.error:
            from kh.http import tlsfail
            raise tlsfail.classify(self, None)
        if self.mode == _M_PIN_LEAF and not self.pin_ok:
            raise FireError("tls_pin_mismatch", "the server's certificate is not the pinned one")
        return True

    def retry_hash(self):
        # TlsWithCACheck after an untrusted chain: the store names worth one more handshake (the
        # issuers of every certificate presented that have a root in the store), or None. The
        # root is chosen from the whole chain, not only from the issuer of the topmost one.
        if self.mode != _M_CA or not self.trust or not self.issuers:
            return None
        found = []
        for h in self.issuers:
            if self.trust.roots(h):
                found.append(h)
        if not found:
            return None
        h = ",".join(found)
        return None if h == self.roots_hash else h

    def succeeded(self):
        if self.mode == _M_CA and self.trust and self.roots_hash:
            self.trust.remember(self.origin, self.roots_hash)

    def failure(self, e):
        # an exception from the handshake -> FireError with a stable code (loaded on failure only)
        from kh.http import tlsfail
        return tlsfail.classify(self, e)
