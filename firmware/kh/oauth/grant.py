# keyhook oauth: one refresh-token grant (RFC 6749 section 6) at the token endpoint.
# Returns (access_token, rotated_refresh_token or None, expires_in or None); every failure is
# FireError("token_endpoint", message) and no message ever carries a token or the answer's body.
from micropython import const
import json

from kh.http.errors import FireError
from kh.oauth import form, origin

_MAX_BODY = const(8192)  # parse at most this much of the answer
_MAX_TTL = const(86400)

# OAuth error codes (RFC 6749 5.2) worth naming, with what to do about them.
_HINTS = {
    "invalid_grant": "the refresh token was revoked, has expired or was already used; "
                     "push the rule again with a new refresh token",
    "invalid_client": "the identity provider does not accept the client; check clientId",
    "unauthorized_client": "this client may not use refresh tokens; check the identity "
                           "provider's client settings",
    "unsupported_grant_type": "the endpoint does not support grant_type=refresh_token; "
                              "check tokenEndpoint",
    "invalid_scope": "the scope is not allowed for this refresh token; check scope",
    "invalid_request": "the identity provider rejected the request; check clientId and scope",
}


def endpoint(auth):
    # The token URL; one client spells the field tokenEndoint.
    url = auth.get("tokenEndpoint")
    if not url:
        url = auth.get("tokenEndoint")
    if not url or not isinstance(url, str):
        raise FireError("invalid_definition",
                        "authentication OAuth2IssuedRefreshToken needs tokenEndpoint; "
                        "add the identity provider's token URL")
    return url


def header_safe(tok):
    # A token goes into a header line: visible ASCII only (no space, CR, LF or control).
    if not isinstance(tok, str) or not tok:
        return False
    for c in tok:
        o = ord(c)
        if o < 33 or o > 126:
            return False
    return True


def _fail(msg):
    return FireError("token_endpoint", msg)


def _status_error(status, doc):
    code = None
    if isinstance(doc, dict):
        e = doc.get("error")
        if isinstance(e, str) and e in _HINTS:
            code = e
    st = str(status)
    if code:
        return _fail("the token endpoint refused the refresh (HTTP " + st + ", " + code + "): "
                     + _HINTS[code])
    if 300 <= status < 400:
        return _fail("the token endpoint answered a redirect (HTTP " + st + "), which is never "
                     "followed; set tokenEndpoint to the final URL")
    if 400 <= status < 500:
        return _fail("the token endpoint refused the refresh (HTTP " + st + "); check "
                     "tokenEndpoint, clientId, scope and the refresh token")
    if status >= 500:
        return _fail("the token endpoint failed (HTTP " + st + "); the identity provider has "
                     "a problem, try again later")
    return _fail("the token endpoint answered HTTP " + st + " instead of 200")


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
            doc = json.loads(body)
        except (ValueError, TypeError):
            doc = None
    if status is None or status < 200 or status > 299:
        raise _status_error(status or 0, doc)
    if not isinstance(doc, dict):
        if body and len(body) > _MAX_BODY:
            raise _fail("the token endpoint's answer is longer than %d bytes" % _MAX_BODY)
        raise _fail("the token endpoint's answer (HTTP %d) is not a JSON object; check "
                    "tokenEndpoint" % status)
    at = doc.get("access_token")
    if not at:
        raise _fail("the token endpoint's answer has no access_token; check tokenEndpoint")
    if not header_safe(at):
        raise _fail("the token endpoint's access_token is not a string of visible ASCII "
                    "characters, so it cannot be sent in a header")
    tt = doc.get("token_type")
    if tt is not None and (not isinstance(tt, str) or tt.lower() != "bearer"):
        raise _fail("the token endpoint issued a token that is not a Bearer token; only "
                    "Bearer tokens are supported")
    rt = doc.get("refresh_token")
    if rt is not None and rt != "":
        if not isinstance(rt, str):
            raise _fail("the token endpoint's refresh_token is not a string")
    else:
        rt = None
    return at, rt, ttl_seconds(doc.get("expires_in"))


async def redeem(definition, auth, refresh_token, post_form):
    url = endpoint(auth)
    level, pin = origin.policy(definition, url)
    pairs = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)]
    cid = auth.get("clientId")
    if cid:
        pairs.append(("client_id", str(cid)))
    scope = auth.get("scope")
    if scope:
        pairs.append(("scope", str(scope)))
    body = form.encode(pairs)
    pairs = None
    try:
        status, answer = await post_form(url, body, level, pin)
    except FireError as e:
        raise _fail("could not reach the token endpoint (" + str(e.code) + "): " + str(e.message))
    except OSError as e:
        raise _fail("could not reach the token endpoint (OSError %s)" % (e.args[0] if e.args else "?"))
    return parse(status, answer)
