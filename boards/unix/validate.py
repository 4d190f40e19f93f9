# The device's own checks, run on the host (keyhook rules push, keyhook fire, keyhook pin): one
# definition of what a rule is, of which certificates the TLS library can use, and of which
# servers it can talk to.
#   micropython validate.py REQUEST.json  -> one JSON line
# REQUEST: {"put": [rules] | null, "each": [rules] | null, "certs": [base64 DER],
#           "probe": [url | [url, securityLevel, pinnedCertificate]]}
#   put:   kh.store.rules._check, exactly what a rules.put does before writing: {"rules": the rules
#          as the device stores them} or {"error": {"code", "message"}}
#   each:  kh.store.schema.validate on each rule alone: [null | message]
#   certs: for each, null or why the device cannot use it (kh.http.der.usable, trust.add's rules)
#   probe: for each https URL, a TLS handshake with the device's offer and no verification (no
#          byte of HTTP is sent): null, or {"code", "message"} as a fire would report it
import sys
import json
import binascii
import os
import socket
from kh.store import jsontext
from kh.store.errors import StoreError
from kh.http.errors import FireError

try:
    import tls
except ImportError:
    import ssl as tls


def _put(rules):
    from kh.store.rules import _check
    try:
        rules, heads = _check(rules, set())
    except StoreError as e:
        return {"error": {"code": e.code, "message": e.message}}
    return {"rules": rules}


def _each(rules):
    from kh.store.schema import validate
    out = []
    for r in rules:
        try:
            validate(r)
            out.append(None)
        except StoreError as e:
            out.append(e.message)
    return out


def _cert(b64):
    from kh.http import der
    try:
        d = binascii.a2b_base64(b64)
        der.names(d)
    except (ValueError, IndexError):
        return "not an X.509 certificate"
    return der.usable(d)


def _probe(item, timeout_s=5):
    # item: an https URL, or [url, securityLevel, pinnedCertificate or None]: the server name
    # is sent as a fire under that level would send it (kh.http.client._open)
    from kh.http import url as _url
    from kh.http import tlspolicy
    from kh.http import tlsfail
    from kh.http import der
    url, level, pin = (item, tlspolicy.SELF_SIGNED, None) if isinstance(item, str) else item
    try:
        scheme, host, port, _t, _h = _url.parse(url)
        pin = der.pin_der(pin) if level == tlspolicy.PINNED else None
    except FireError as e:
        return {"code": e.code, "message": e.message}
    if scheme != "https":
        return None
    name = host[:-1] if host[-1:] == "." else host
    ip_name = _url.is_ip_literal(name) and tlspolicy.Check(level, pin).needs_name
    if os.getenv("KEYHOOK_LOOPBACK_ONLY") and not (name == "localhost" or name.startswith("127.")):
        # the test suite's guard: nothing leaves 127.0.0.1, not even a DNS query
        return {"code": "dns", "message": "not probed (KEYHOOK_LOOPBACK_ONLY: loopback only)"}
    try:
        ai = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    except OSError as e:
        return {"code": "dns", "message": "cannot resolve the host name (%s)" % (e.args[0] if e.args else "?")}
    s = socket.socket(ai[0], socket.SOCK_STREAM)
    chk = tlspolicy.Check(tlspolicy.SELF_SIGNED)  # no verification: only what the server accepts
    chk.ip_name = ip_name
    try:
        s.settimeout(timeout_s)
        s.connect(ai[-1])
        ctx = chk.context()
        ss = ctx.wrap_socket(s, server_hostname=name if ip_name or not _url.is_ip_literal(name) else None)
        ss.close()
        return None
    except (OSError, ValueError) as e:
        code = e.args[0] if e.args else 0
        if isinstance(code, int) and 0 < code < 256:
            return {"code": "connect", "message": "could not connect (errno %d)" % code}
        f = tlsfail.classify(chk, e)
        return {"code": f.code, "message": f.message}
    finally:
        s.close()


def main(path):
    with open(path, "rb") as f:
        req = jsontext.loads(f.read())
    out = {}
    if req.get("put") is not None:
        out["put"] = _put(req["put"])
    if req.get("each") is not None:
        out["each"] = _each(req["each"])
    if req.get("certs"):
        out["certs"] = [_cert(c) for c in req["certs"]]
    if req.get("probe"):
        out["probe"] = [_probe(u) for u in req["probe"]]
    print(json.dumps(out))


main(sys.argv[1])
