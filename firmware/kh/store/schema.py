# Rule validation: checks one webhook rule (docs/rule-format.md plus "events",
# see kh/store/rules.py) before anything is written, and makes its metadata header.
# Errors name the rule and the field, never a field's value (it may be a secret).
import json
from micropython import const

from kh.store.errors import StoreError
# the HTTP layer's own readers of a URL and a pin: what they refuse at fire time, a put refuses
from kh.http.errors import FireError
from kh.http.url import parse
from kh.http.der import pin_der, usable

_MAX_NAME = const(64)
_MAX_URL = const(2048)
_MAX_TEXT = const(8192)
_MAX_EVENTS = const(16)
_MAX_TIMEOUT_MS = const(60000)
# a rule's JSON (as json.dumps writes it here) must fit one message to the device (PROTOCOL.md
# MAX_PAYLOAD 8192, less the envelope); the host checks it with this module before sending
MAX_RULE_BYTES = const(7500)

_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")
_LEVELS = ("TlsWithCACheck", "TlsPinnedCertificate", "TlsAllowSelfSigned", "AllowHttp")
_AUTH = ("None", "OAuth2IssuedAccessToken", "OAuth2IssuedRefreshToken")
_TOKEN_CHARS = "!#$%&'*+-.^_`|~"
_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="


def _fail(name, field, what):
    if name is None:
        raise StoreError("invalid_rule", "%s: %s" % (field, what))
    raise StoreError("invalid_rule", "rule %s: %s: %s" % (json.dumps(name), field, what))


def _ident(s, lo, hi):
    # 1..hi characters of A-Za-z0-9_-
    if not lo <= len(s) <= hi:
        return False
    for c in s:
        if not (c.isalpha() or c.isdigit() or c in "_-") or ord(c) > 126:
            return False
    return True


def valid_event(ev):
    if not isinstance(ev, str):
        return False
    if ev == "trigger":
        return True
    parts = ev.split(":")
    if parts[0] == "button" and len(parts) == 2:
        return _ident(parts[1], 1, 16)
    if parts[0] == "finger" and len(parts) in (2, 3):
        if not _ident(parts[1], 1, 32):
            return False
        return len(parts) == 2 or (1 <= len(parts[2]) <= 2 and parts[2].isdigit())
    return False


def _text(v, hi):
    return isinstance(v, str) and 0 < len(v) <= hi


def split_url(url):
    # -> (scheme, host[:port]) without userinfo, path or query (those may carry secrets).
    i = url.find("://")
    if i <= 0:
        return None, None
    scheme = url[:i].lower()
    rest = url[i + 3:]
    end = len(rest)
    for c in "/?#":
        j = rest.find(c)
        if 0 <= j < end:
            end = j
    auth = rest[:end]
    host = auth[auth.rfind("@") + 1:]
    return scheme, host


def _valid_host(host):
    # A DNS name has at most 253 characters; with ":65535" 259; bracketed IPv6 fits too.
    if not host or len(host) > 259:
        return False
    port = None
    if host[0] == "[":
        j = host.find("]")
        if j < 2:
            return False
        tail = host[j + 1:]
        if tail:
            if tail[0] != ":":
                return False
            port = tail[1:]
    else:
        k = host.find(":")
        if k == 0:
            return False
        if k > 0:
            host, port = host[:k], host[k + 1:]
        for c in host:
            if c in " \t\r\n\\" or ord(c) < 33 or ord(c) > 126:
                return False
    if port is not None:
        if not port.isdigit() or not 0 < int(port) < 65536:
            return False
    return True


def _der_whole(der):
    # One DER SEQUENCE that spans exactly the bytes given.
    if len(der) < 64 or der[0] != 0x30:
        return False
    n = der[1]
    if n < 0x80:
        return 2 + n == len(der)
    k = n & 0x7F
    if not 0 < k <= 3:
        return False
    size = 0
    for i in range(k):
        size = (size << 8) | der[2 + i]
    return 2 + k + size == len(der)


def _pin_ok(pin):
    # PEM or base64 DER of one certificate (as kh/http/der.py reads it). Allocates little:
    # one slice of the base64 text and the DER it decodes to.
    import binascii
    a = 0
    b = len(pin)
    while a < b and pin[a] in " \t\r\n":
        a += 1
    if pin.startswith("-----BEGIN", a):
        if not pin.startswith("-----BEGIN CERTIFICATE-----", a):
            return False
        b = pin.find("-----END CERTIFICATE-----", a)
        if b < 0:
            return False
        a += 27
    if "\\n" in pin:
        pin = pin.replace("\\n", "\n")  # "\n" written out in a JSON string: a line break
        return _pin_ok(pin)
    n = 0
    for i in range(a, b):
        c = pin[i]
        if c in _B64:
            n += 1
        elif c not in " \t\r\n":
            return False
    if not n or n % 4:
        return False
    try:
        der = binascii.a2b_base64(pin[a:b])
    except ValueError:
        return False
    return _der_whole(der)


def _url_ok(name, field, url):
    # what the HTTP layer will make of it at fire time (kh.http.url.parse), refused now
    try:
        parse(url)
    except FireError as e:
        _fail(name, field, e.message[5:] if e.message.startswith("url: ") else e.message)


def _size(rule):
    # bytes of json.dumps(rule), counted without making the string where the build allows
    from kh.store import rules
    return rules.rule_size(rule)


def _header_ok(k, v):
    if not isinstance(k, str) or not isinstance(v, str) or not k or len(k) > 64 or len(v) > _MAX_TEXT:
        return False
    for c in k:
        if not (c.isalpha() or c.isdigit() or c in _TOKEN_CHARS) or ord(c) > 126:
            return False
    # Host, Content-Length, Transfer-Encoding and Connection are accepted (as the host tool
    # does) and left out by the HTTP layer, which writes them itself (kh/engine/fire.py).
    for c in "\r\n\0":
        if c in v:
            return False
    return True


def validate(rule):
    # Checks one rule; returns its header (the metadata line), or raises StoreError naming the
    # rule and the field. Never quotes a field's value (it may be a secret), only its name.
    if not isinstance(rule, dict):
        _fail(None, "rule", "must be a JSON object (a webhook definition)")
    name = rule.get("functionName")
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        _fail(None, "functionName", "missing, empty or longer than %d characters" % _MAX_NAME)
    for c in name:
        o = ord(c)
        if o < 32 or 127 <= o < 160 or o == 0x2028 or o == 0x2029:
            # C0, DEL, C1 (U+0085 NEL) and the line and paragraph separators: a name is one line
            _fail(None, "functionName", "holds a control character or a line break")
    for key in ("integrationName", "locationName", "functionWebhookId", "expiresAt", "modificationState"):
        v = rule.get(key)
        if v is not None and not (isinstance(v, str) and len(v) <= 256):
            _fail(name, key, "must be a string of at most 256 characters")
    v = rule.get("expiresAt")
    if v is not None:
        from kh.store.rfc3339 import seconds
        if seconds(v) is None:
            _fail(name, "expiresAt", "is not an RFC 3339 date-time with an offset, such as "
                  "2030-06-01T12:00:00Z or 2030-06-01T14:00:00+02:00 (or null: never expires)")
    events = rule.get("events", ["trigger"])
    if not isinstance(events, list) or not events or len(events) > _MAX_EVENTS:
        _fail(name, "events", "must be a list of 1 to %d events" % _MAX_EVENTS)
    for ev in events:
        if not valid_event(ev):
            _fail(name, "events", "%s is not an event (trigger, button:NAME, finger:USER[:N])"
                  % (json.dumps(ev) if isinstance(ev, str) and len(ev) <= 64 else "an entry"))
    d = rule.get("definition")
    if not isinstance(d, dict):
        _fail(name, "definition", "missing or not an object")
    method = d.get("method")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        _fail(name, "definition.method", "must be one of Get, Post, Put, Delete, Patch, Head")
    url = d.get("url")
    if not _text(url, _MAX_URL):
        _fail(name, "definition.url", "missing, or longer than %d characters" % _MAX_URL)
    for c in url:
        if ord(c) <= 32 or ord(c) == 127:
            _fail(name, "definition.url", "holds a space or a control character; percent-encode it")
    scheme, host = split_url(url)
    if scheme not in ("http", "https") or not _valid_host(host):
        _fail(name, "definition.url", "is not an http:// or https:// URL with a host")
    _url_ok(name, "definition.url", url)
    level = d.get("securityLevel", "TlsWithCACheck")
    if level not in _LEVELS:
        _fail(name, "definition.securityLevel", "must be one of " + ", ".join(_LEVELS))
    if (scheme == "http") != (level == "AllowHttp"):
        _fail(name, "definition.url", "an %s:// URL does not go with level %s; use https:// with "
              "the TLS levels, http:// only with AllowHttp" % (scheme, level))
    if level == "TlsPinnedCertificate":
        pin = d.get("pinnedCertificate")
        if not _text(pin, _MAX_TEXT):
            _fail(name, "definition.pinnedCertificate", "missing (TlsPinnedCertificate needs it)")
        if not _pin_ok(pin):
            _fail(name, "definition.pinnedCertificate", "is neither PEM nor base64 DER of a certificate")
        try:
            why = usable(pin_der(pin))  # one certificate, and one the TLS library can load
        except FireError as e:
            _fail(name, "definition.pinnedCertificate", e.message.replace("pinnedCertificate", "it", 1))
        if why:
            _fail(name, "definition.pinnedCertificate",
                  "cannot be used by this device's TLS library (mbedTLS: %s): an RSA-PSS signature "
                  "or a critical extension such as name constraints; pin another certificate of "
                  "the chain" % why)
    v = d.get("allowInsecureRemote")
    if v is not None and not isinstance(v, bool):
        _fail(name, "definition.allowInsecureRemote", "must be true or false")
    body = d.get("body")
    if body is not None:
        if not isinstance(body, dict) or "content" not in body:
            _fail(name, "definition.body", "must be null or an object with contentType and content")
        ct = body.get("contentType")
        if ct is not None and not (isinstance(ct, str) and _header_ok("Content-Type", ct)):
            _fail(name, "definition.body.contentType", "must be a string without line breaks")
        c = body["content"]
        if not (isinstance(c, (str, dict, list))):
            _fail(name, "definition.body.content", "must be a string or a JSON object")
    hdrs = d.get("additionalHttpHeaders")
    if hdrs is not None:
        if not isinstance(hdrs, dict) or len(hdrs) > 32:
            _fail(name, "definition.additionalHttpHeaders", "must be an object of at most 32 string values")
        for k in hdrs:
            if not isinstance(hdrs[k], str):
                _fail(name, "definition.additionalHttpHeaders",
                      "the value of %s must be a string (write numbers in quotes)"
                      % (json.dumps(k) if _header_ok(k, "") else "a header"))
            if not _header_ok(k, hdrs[k]):
                _fail(name, "definition.additionalHttpHeaders",
                      "a header name is not a token, or a value holds a line break")
    t = d.get("timeout")
    if t is not None and (not isinstance(t, int) or isinstance(t, bool) or not 0 < t <= _MAX_TIMEOUT_MS):
        _fail(name, "definition.timeout", "must be a number of milliseconds from 1 to %d" % _MAX_TIMEOUT_MS)
    auth = d.get("authentication")
    kind = "None"
    if auth is not None:
        if not isinstance(auth, dict):
            _fail(name, "definition.authentication", "must be an object")
        kind = auth.get("apiAuthenticationType", "None")
        if kind not in _AUTH:
            _fail(name, "definition.authentication.apiAuthenticationType", "must be one of " + ", ".join(_AUTH))
        if kind == "OAuth2IssuedAccessToken":
            tok = auth.get("accessToken")
            if not _text(tok, _MAX_TEXT) or not _header_ok("Authorization", tok):
                _fail(name, "definition.authentication.accessToken", "missing, or holds a line break")
        elif kind == "OAuth2IssuedRefreshToken":
            if not _text(auth.get("refreshToken"), _MAX_TEXT):
                _fail(name, "definition.authentication.refreshToken", "missing")
            ep = auth.get("tokenEndpoint") or auth.get("tokenEndoint")  # a client's spelling in the wild
            if not _text(ep, _MAX_URL):
                _fail(name, "definition.authentication.tokenEndpoint", "missing")
            s, h = split_url(ep)
            if s not in ("http", "https") or not _valid_host(h):
                _fail(name, "definition.authentication.tokenEndpoint", "is not an http:// or https:// URL with a host")
            _url_ok(name, "definition.authentication.tokenEndpoint", ep)
            for key in ("clientId", "scope"):
                v = auth.get(key)
                if v is not None and not (isinstance(v, str) and len(v) <= 1024):
                    _fail(name, "definition.authentication." + key, "must be a string")
            v = auth.get("expiresIn")
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                _fail(name, "definition.authentication.expiresIn", "must be a number of seconds")
    size = _size(rule)
    if size > MAX_RULE_BYTES:
        _fail(name, "definition", "the rule is %d bytes of JSON; one rule may be at most %d (one "
              "message to the device): shorten its body or headers" % (size, MAX_RULE_BYTES))
    head = {"n": name, "e": events, "l": level, "h": host, "a": kind}
    wid = rule.get("functionWebhookId")
    if wid:
        head["i"] = wid
    return head


