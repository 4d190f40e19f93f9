# keyhook oauth: which verification the token endpoint gets (DESIGN.md, Authentication).
# Same origin (scheme, host, port) as the request: the request's own level and pin.
# Another origin: TlsWithCACheck without a pin; plain http there is refused.
from kh.http.errors import FireError

_CA = "TlsWithCACheck"


def parse(url):
    # (scheme, host, port) of an absolute http(s) URL, or None when it is not one.
    if not isinstance(url, str):
        return None
    i = url.find("://")
    if i < 0:
        return None
    scheme = url[:i].lower()
    if scheme == "https":
        port = 443
    elif scheme == "http":
        port = 80
    else:
        return None
    rest = url[i + 3:]
    end = len(rest)
    for sep in "/?#":
        j = rest.find(sep)
        if 0 <= j < end:
            end = j
    auth = rest[:end]
    if "@" in auth:
        return None  # user info in the URL is not supported (and would be a secret)
    if auth.startswith("["):
        j = auth.find("]")
        if j < 0:
            return None
        host = auth[:j + 1]
        tail = auth[j + 1:]
    else:
        j = auth.rfind(":")
        if j < 0:
            host, tail = auth, ""
        else:
            host, tail = auth[:j], auth[j:]
    if tail:
        if not tail.startswith(":") or len(tail) < 2:
            return None
        digits = tail[1:]
        for c in digits:
            if c < "0" or c > "9":
                return None
        port = int(digits)
        if port < 1 or port > 65535:
            return None
    if not host:
        return None
    return (scheme, host.lower(), port)


def policy(definition, token_url):
    # (level, pin) for the token endpoint's connection; raises FireError("token_endpoint").
    t = parse(token_url)
    if t is None:
        raise FireError("token_endpoint",
                        "tokenEndpoint is not an absolute http(s) URL with a host and no user "
                        "info; set it to the identity provider's token URL")
    if t == parse(definition.get("url")):
        return definition.get("securityLevel"), definition.get("pinnedCertificate")
    if t[0] != "https":
        raise FireError("token_endpoint",
                        "tokenEndpoint uses plain http on another origin than the request; "
                        "use an https token endpoint (it is verified with TlsWithCACheck)")
    return _CA, None
