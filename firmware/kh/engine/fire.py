# Fire one webhook definition (spec/webhook-definition.md) under its security level and
# authentication, and say what happened. The result never holds a token, header value or body:
#   {"sent": bool, "status": int|None, "error": code|None, "message": str, "elapsed_ms": int,
#    "reused": bool, "body_bytes": int, "retried_401": bool[, "resent": true]}
import json
import time
import hashlib
import binascii
from micropython import const
from kh.http.errors import FireError
from kh.http import client as _client
from kh.http import der as _der
from kh.http import tlspolicy as _tls
from kh.http.trust import Trust

_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")
_DEFAULT_TIMEOUT_MS = const(3000)
_MAX_TIMEOUT_MS = const(60000)  # as kh.store.schema
_MANAGED = ("host", "content-length", "transfer-encoding", "connection")
_AUTH_TYPES = ("None", "OAuth2IssuedAccessToken", "OAuth2IssuedRefreshToken")
# a token answer is kept whole up to this size (Azure AD and Keycloak send 4 to 6 KB with group
# claims), in a buffer of the answer's length
_TOKEN_ANSWER_MAX = const(16384)


class Env:
    # what a fire needs from the device: trust store, keep-alive pool, token handling
    # trust_dir: the DER roots (kh.http.trust); state_dir: token cache and CA hints (None: RAM);
    # tokens: a kh.oauth.tokens.Tokens (made on first use if None); resolver: fn(host, port) ->
    # [(family, ip, sockaddr)] (None: kh.http.resolve's hook, else DNS)
    def __init__(self, trust_dir=None, state_dir=None, pool_size=1, tokens=None, max_body=_client.MAX_BODY,
                 resolver=None):
        self.state_dir = state_dir
        self.net = _client.Net(Trust(trust_dir, state_dir), _client.Pool(pool_size), max_body, resolver)
        self._tokens = tokens  # made on the first rule that authenticates

    @property
    def tokens(self):
        if self._tokens is None:
            self._tokens = _default_tokens(self.state_dir)
        return self._tokens

    def close(self):
        self.net.pool.close()


def _default_tokens(state_dir):
    try:
        from kh.oauth.tokens import Tokens
    except ImportError:
        return StaticTokens()
    return Tokens(state_dir)


class StaticTokens:
    # stand-in for kh.oauth.tokens.Tokens when that module is absent: None and access tokens only
    async def header(self, definition, key, post_form):
        a = definition.get("authentication") or {}
        t = a.get("apiAuthenticationType") or "None"
        if t == "OAuth2IssuedAccessToken":
            return "Bearer " + a["accessToken"]
        if t == "OAuth2IssuedRefreshToken":
            raise FireError("token_endpoint", "this firmware has no OAuth refresh support")
        return None

    async def after_401(self, definition, key, post_form):
        return None


def _bad(why):
    return FireError("invalid_definition", why)


def _text(v, what, empty_ok=False):
    if not isinstance(v, str) or (not v and not empty_ok):
        raise _bad(what + " must be a non-empty string")
    for ch in v:
        o = ord(ch)
        if (o < 32 and o != 9) or o == 127:
            raise _bad(what + " contains control characters")
    return v


def _token_ok(name):
    if not name:
        return False
    for ch in name:
        o = ord(ch)
        if o <= 32 or o >= 127 or ch in '()<>@,;:\\"/[]?={}':
            return False
    return True


def prepare(definition):
    # validate a definition; -> a dict of what the HTTP layer needs. FireError on anything wrong.
    if not isinstance(definition, dict):
        raise _bad("the definition must be a JSON object")
    if "definition" in definition and isinstance(definition.get("definition"), dict):
        definition = definition["definition"]
    d = definition
    m = d.get("method")
    if not isinstance(m, str) or m.upper() not in _METHODS:
        raise _bad("method must be one of Get, Post, Put, Delete, Patch, Head")
    p = {"definition": d, "method": m.upper()}
    p["url"] = _text(d.get("url"), "url")
    level = d.get("securityLevel")
    if level not in _tls.LEVELS:
        raise _bad("securityLevel must be one of " + ", ".join(_tls.LEVELS))
    p["level"] = level
    p["pin"] = _der.pin_der(d.get("pinnedCertificate")) if level == _tls.PINNED else None
    t = d.get("timeout")
    if t is None:
        t = _DEFAULT_TIMEOUT_MS
    if isinstance(t, bool) or not isinstance(t, (int, float)) or t <= 0 or t > _MAX_TIMEOUT_MS:
        raise _bad("timeout must be a number of milliseconds between 1 and 60000")
    p["timeout"] = int(t)
    ar = d.get("allowInsecureRemote", False)
    if not isinstance(ar, bool):
        raise _bad("allowInsecureRemote must be true or false")
    p["allow_remote"] = ar
    headers = []
    hs = d.get("additionalHttpHeaders")
    if hs is not None:
        if not isinstance(hs, dict):
            raise _bad("additionalHttpHeaders must be an object of strings")
        for k in hs:
            if not _token_ok(k):
                raise _bad("additionalHttpHeaders: a header name is not valid")
            v = hs[k]
            _text(v, "additionalHttpHeaders value of " + k, True)
            if k.lower() not in _MANAGED:
                headers.append((k, v))
    p["headers"] = headers
    body = d.get("body")
    p["body"] = None
    p["content_type"] = None
    if body is not None:
        if not isinstance(body, dict):
            raise _bad("body must be an object with contentType and content, or null")
        c = body.get("content")
        if c is None:
            c = ""
        if isinstance(c, str):
            data = c.encode()
        elif isinstance(c, (dict, list)):
            data = json.dumps(c).encode()
        else:
            raise _bad("body.content must be a string or a JSON object")
        ct = body.get("contentType")
        if ct is not None:
            _text(ct, "body.contentType")
        p["body"] = data
        p["content_type"] = ct
        # a Content-Type among the headers gives way to the body's own
        if ct:
            p["headers"] = [h for h in headers if h[0].lower() != "content-type"]
    a = d.get("authentication")
    if a is None:
        a = {}
    if not isinstance(a, dict):
        raise _bad("authentication must be an object")
    at = a.get("apiAuthenticationType") or "None"
    if at not in _AUTH_TYPES:
        raise _bad("authentication.apiAuthenticationType must be one of " + ", ".join(_AUTH_TYPES))
    if at == "OAuth2IssuedAccessToken":
        _text(a.get("accessToken"), "authentication.accessToken")
    elif at == "OAuth2IssuedRefreshToken":
        _text(a.get("refreshToken"), "authentication.refreshToken")
        _text(a.get("tokenEndpoint") or a.get("tokenEndoint"), "authentication.tokenEndpoint")
    p["auth_type"] = at
    if at != "None":
        p["headers"] = [h for h in p["headers"] if h[0].lower() != "authorization"]
    return p


def rule_key(full, d):
    # a stable id of the rule: functionName, else a hash of the definition
    if isinstance(full, dict):
        n = full.get("functionWebhookId") or full.get("functionName")
        if isinstance(n, str) and n:
            return n
    h = hashlib.sha256(json.dumps(d).encode()).digest()
    return binascii.hexlify(h[:8]).decode()


async def fire(definition, env):
    t0 = time.ticks_ms()
    out = {"sent": False, "status": None, "error": None, "message": "", "elapsed_ms": 0,
           "reused": False, "body_bytes": 0, "retried_401": False}
    info = {}
    try:
        p = prepare(definition)
        d = p["definition"]
        key = rule_key(definition, d)
        net = env.net

        async def post_form(url, body, level, pin):
            # the level and pin are the OAuth layer's choice (same origin: the rule's, so the
            # rule's allowInsecureRemote applies too; another origin: TlsWithCACheck)
            r = await _client.request(net, "POST", url, [("Accept", "application/json")], body,
                                      "application/x-www-form-urlencoded", level, pin, p["timeout"],
                                      p["allow_remote"], None, _TOKEN_ANSWER_MAX)
            return r.status, r.body

        auth = await env.tokens.header(d, key, post_form) if p["auth_type"] != "None" else None
        r = await _send(net, p, auth, info)
        if r.status == 401 and p["auth_type"] != "None":
            fresh = await env.tokens.after_401(d, key, post_form)
            if fresh:
                out["retried_401"] = True
                r = await _send(net, p, fresh, info)
        out["status"] = r.status
        out["body_bytes"] = r.body_len
        out["message"] = "HTTP " + str(r.status)
        if 300 <= r.status < 400:
            out["message"] += " (a redirect; not followed)"
    except FireError as e:
        out["error"] = e.code
        out["message"] = e.message
    except MemoryError:
        out["error"] = "memory"
        out["message"] = "out of memory during the fire"
    except Exception as e:  # a bug must not take the device's event loop down with it
        out["error"] = "internal"
        out["message"] = "internal error (" + e.__class__.__name__ + ")"
    out["sent"] = bool(info.get("sent")) or out["status"] is not None
    out["reused"] = bool(info.get("reused"))
    if info.get("resent"):
        out["resent"] = True  # the kept connection had died unseen; sent again on a new one
    out["elapsed_ms"] = time.ticks_diff(time.ticks_ms(), t0)
    return out


async def _send(net, p, auth, info):
    headers = p["headers"]
    if auth:
        try:
            _text(auth, "Authorization")
        except FireError:
            raise FireError("token_endpoint", "the access token is not usable in a header")
        headers = headers + [("Authorization", auth)]
    return await _client.request(net, p["method"], p["url"], headers, p["body"], p["content_type"],
                                 p["level"], p["pin"], p["timeout"], p["allow_remote"], info)
