# keyhook oauth: every error the OAuth layer reports, with what to do about it. Loaded only when
# something fails, so the messages take no RAM on the normal path. No message ever carries a
# token, a URL or a byte of an answer.
from kh.http.errors import FireError

_TE = "token_endpoint"
_ID = "invalid_definition"

_MSG = {
    "auth_obj": (_ID, "authentication must be an object"),
    "auth_type": (_ID, "authentication.apiAuthenticationType must be None, "
                       "OAuth2IssuedAccessToken or OAuth2IssuedRefreshToken"),
    "access": (_ID, "authentication OAuth2IssuedAccessToken needs accessToken, a string of "
                    "visible ASCII characters"),
    "refresh": (_ID, "authentication OAuth2IssuedRefreshToken needs refreshToken"),
    "endpoint": (_ID, "authentication OAuth2IssuedRefreshToken needs tokenEndpoint; add the "
                      "identity provider's token URL"),
    "bad_url": (_TE, "tokenEndpoint is not an absolute http(s) URL with a valid host, port and "
                     "no user info; set it to the identity provider's token URL"),
    "plain": (_TE, "tokenEndpoint uses plain http on another origin than the request; use an "
                   "https token endpoint (it is verified with TlsWithCACheck)"),
    "unreachable": (_TE, "could not reach the token endpoint (%s): %s"),
    "unreachable_ca": (_TE, "could not reach the token endpoint (%s): %s; a token endpoint on "
                            "another origin than the request is always verified with "
                            "TlsWithCACheck, so add its CA to the trust store"),
    "too_long": (_TE, "the token endpoint's answer is longer than the %d bytes the device keeps; "
                      "ask for a smaller token (fewer claims or scopes, no id_token)"),
    "cut": (_TE, "the token endpoint's answer is not complete JSON (%d bytes arrived); the "
                 "identity provider sent a broken answer, check tokenEndpoint"),
    "not_json": (_TE, "the token endpoint's answer (HTTP %d) is not a JSON object; check "
                      "tokenEndpoint"),
    "no_access": (_TE, "the token endpoint's answer has no access_token; check tokenEndpoint"),
    "bad_access": (_TE, "the token endpoint's access_token is not a string of visible ASCII "
                        "characters, so it cannot be sent in a header"),
    "not_bearer": (_TE, "the token endpoint issued a token that is not a Bearer token; only "
                        "Bearer tokens are supported"),
    "bad_refresh": (_TE, "the token endpoint's refresh_token is not a string"),
    "redirect": (_TE, "the token endpoint answered a redirect (HTTP %d), which is never "
                      "followed; set tokenEndpoint to the final URL"),
    "4xx": (_TE, "the token endpoint refused the refresh (HTTP %d); check tokenEndpoint, "
                 "clientId, scope and the refresh token"),
    "5xx": (_TE, "the token endpoint failed (HTTP %d); the identity provider has a problem, "
                 "try again later"),
    "status": (_TE, "the token endpoint answered HTTP %d instead of 200"),
    "oauth": (_TE, "the token endpoint refused the refresh (HTTP %d, %s): %s"),
    "store": ("storage", "could not store the rotated refresh token (OSError %s); the request "
                         "was not sent, free flash space and fire again"),
}

# OAuth error codes (RFC 6749 5.2) worth naming, with what to do about them.
_OAUTH = {
    "invalid_grant": "the refresh token was revoked, has expired or was already used; push the "
                     "rule again with a new refresh token",
    "invalid_client": "the identity provider does not accept the client; check clientId",
    "unauthorized_client": "this client may not use refresh tokens; check the identity "
                           "provider's client settings",
    "unsupported_grant_type": "the endpoint does not support grant_type=refresh_token; check "
                              "tokenEndpoint",
    "invalid_scope": "the scope is not allowed for this refresh token; check scope",
    "invalid_request": "the identity provider rejected the request; check clientId and scope",
}


def error(what, args=None):
    code, msg = _MSG[what]
    return FireError(code, msg % args if args is not None else msg)


def status(st, doc):
    # The error for a non-2xx answer; doc is the parsed answer (or None).
    e = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(e, str) and e in _OAUTH:
        return error("oauth", (st, e, _OAUTH[e]))
    if 300 <= st < 400:
        return error("redirect", st)
    if 400 <= st < 500:
        return error("4xx", st)
    if st >= 500:
        return error("5xx", st)
    return error("status", st)
