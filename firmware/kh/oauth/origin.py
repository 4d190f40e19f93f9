# keyhook oauth: which verification the token endpoint gets (DESIGN.md, Authentication).
# Same origin (scheme, host, port) as the request: the request's own level and pin.
# Another origin: TlsWithCACheck without a pin; plain http there is refused.
from kh.http.errors import FireError
from kh.http import url as _url

_CA = "TlsWithCACheck"


def parse(url):
    # (scheme, host, port) of an absolute http(s) URL, or None when it is not a usable one.
    try:
        scheme, host, port, _t, _h = _url.parse(url)
    except FireError:
        return None
    return (scheme, host.lower(), port)


def policy(definition, token_url):
    # (level, pin) for the token endpoint's connection; raises FireError("token_endpoint").
    t = parse(token_url)
    if t is None:
        raise FireError("token_endpoint",
                        "tokenEndpoint is not an absolute http(s) URL with a valid host, port "
                        "and no user info; set it to the identity provider's token URL")
    if t == parse(definition.get("url")):
        return definition.get("securityLevel"), definition.get("pinnedCertificate")
    if t[0] != "https":
        raise FireError("token_endpoint",
                        "tokenEndpoint uses plain http on another origin than the request; "
                        "use an https token endpoint (it is verified with TlsWithCACheck)")
    return _CA, None
