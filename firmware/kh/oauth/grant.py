# keyhook oauth: one refresh-token grant (RFC 6749 section 6) at the token endpoint.
# Loaded when a token must be redeemed. Every failure is FireError("token_endpoint") from
# kh.oauth.why; no message carries a token or the answer's body.
from micropython import const
from kh.store import jsontext

from kh.http.errors import FireError
from kh.http import url as _url
from kh.oauth.tokens import visible

_MAX_BODY = const(16384)  # parse at most this much of the answer (kh.engine.fire keeps as much)
_MAX_TTL = const(86400)
_HEX = b"0123456789ABCDEF"
_CA = "TlsWithCACheck"
_PINNED = "TlsPinnedCertificate"


def _fail(what, args=None):
    from kh.oauth import why
    return why.error(what, args)


# -- application/x-www-form-urlencoded (RFC 6749 appendix B): unreserved characters pass, a
# space becomes "+", every other byte of the UTF-8 form is %XX.
def _put(out, i, s):
    for c in s:
        if (48 <= c <= 57) or (65 <= c <= 90) or (97 <= c <= 122) or c in b"-._~":
            out[i] = c
        elif c == 32:
            out[i] = 43
        else:
            out[i] = 37
            out[i + 1] = _HEX[c >> 4]
            out[i + 2] = _HEX[c & 15]
            i += 2
        i += 1
    return i


def encode(pairs):
    # pairs: [(name, value), ...] with str or bytes; returns bytes. One buffer sized for the
    # worst case (every byte escaped), so nothing grows while encoding.
    n = 0
    for k in range(len(pairs)):
        name, value = pairs[k]
        if isinstance(value, str):
            value = value.encode()
            pairs[k] = (name, value)
        n += 3 * (len(name) + len(value)) + 2
    out = bytearray(n)
    i = 0
    for name, value in pairs:
        if isinstance(name, str):
            name = name.encode()
        if i:
            out[i] = 38
            i += 1
        i = _put(out, i, name)
        out[i] = 61
        i = _put(out, i + 1, value)
    return bytes(memoryview(out)[:i])


# -- which verification the token endpoint gets (docs/design.md, Authentication): on the request's
# origin (scheme, host, port) its own level and pin, else TlsWithCACheck without a pin, and
# plain http on another origin is refused.
def origin(url):
    # (scheme, host, port) of an absolute http(s) URL, or None when it is not a usable one.
    try:
        scheme, host, port, _t, _h = _url.parse(url)
    except FireError:
        return None
    return (scheme, host.lower(), port)


def policy(definition, token_url):
    t = origin(token_url)
    if t is None:
        raise _fail("bad_url")
    if t == origin(definition.get("url")):
        level = definition.get("securityLevel")
        if level != _PINNED:
            return level, None
        from kh.http.der import pin_der  # the http layer takes the pin as DER, like the request
        return level, pin_der(definition.get("pinnedCertificate"))
    if t[0] != "https":
        raise _fail("plain")
    return _CA, None


def ttl_seconds(value):
    # expires_in as a number of seconds (some providers send it as a string), or None.
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)):
        v = int(value)
        if v < 0:
            return 0
        return v if v < _MAX_TTL else _MAX_TTL
    return None


def parse(status, body):
    # (access_token, refresh_token or None, expires_in or None) from the endpoint's answer.
    doc = None
    if body and len(body) <= _MAX_BODY:
        try:
            doc = jsontext.loads(body)
        except (ValueError, TypeError):
            doc = None
    if not isinstance(status, int) or status < 200 or status > 299:
        from kh.oauth import why
        raise why.status(status if isinstance(status, int) else 0, doc)
    if not isinstance(doc, dict):
        if body and len(body) >= _MAX_BODY:
            raise _fail("too_long", _MAX_BODY)
        if body and body[:1] == b"{":
            raise _fail("cut", len(body))
        raise _fail("not_json", status)
    at = doc.get("access_token")
    if not at:
        raise _fail("no_access")
    if not visible(at):
        raise _fail("bad_access")
    tt = doc.get("token_type")
    if tt is not None and (not isinstance(tt, str) or tt.lower() != "bearer"):
        raise _fail("not_bearer")
    rt = doc.get("refresh_token")
    if rt is not None and rt != "":
        if not isinstance(rt, str):
            raise _fail("bad_refresh")
    else:
        rt = None
    return at, rt, ttl_seconds(doc.get("expires_in"))


async def redeem(definition, auth, url, refresh_token, post_form):
    # -> (access_token, rotated refresh token or None, expires_in or None)
    level, pin = policy(definition, url)
    pairs = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)]
    cid = auth.get("clientId")
    if cid:
        pairs.append(("client_id", str(cid)))
    scope = auth.get("scope")
    if scope:
        pairs.append(("scope", str(scope)))
    body = encode(pairs)
    pairs = None
    try:
        status, answer = await post_form(url, body, level, pin)
    except FireError as e:
        if pin is None and level == _CA and definition.get("securityLevel") != _CA and \
                str(e.code).startswith("tls_"):
            raise _fail("unreachable_ca", (e.code, e.message))
        raise _fail("unreachable", (e.code, e.message))
    except OSError as e:
        raise _fail("unreachable", ("OSError", e.args[0] if e.args else "?"))
    body = None
    try:
        return parse(status, answer)
    except MemoryError:
        # The answer may hold a rotated refresh token that the server will not give again:
        # collect (the request's buffers are garbage now) and read it once more.
        import gc

        gc.collect()
        return parse(status, answer)
