# URL parsing for the request engine: scheme, host (name, IPv4 or [IPv6] literal), port, target.
# Anything odd is a FireError("invalid_definition") so a bad rule never reaches the network.
from kh.http.errors import FireError


def _bad(why):
    return FireError("invalid_definition", "url: " + why)


def parse(url):
    # -> (scheme, host, port, target, host_header)
    if not isinstance(url, str) or not url:
        raise _bad("missing")
    for c in url:
        if ord(c) <= 32 or ord(c) == 127:
            raise _bad("contains spaces or control characters")
    i = url.find("://")
    if i <= 0:
        raise _bad("needs a scheme, like https://host/path")
    scheme = url[:i].lower()
    if scheme == "https":
        port = 443
    elif scheme == "http":
        port = 80
    else:
        raise _bad("scheme must be http or https")
    rest = url[i + 3:]
    j = len(rest)
    for sep in "/?#":
        k = rest.find(sep)
        if 0 <= k < j:
            j = k
    auth, target = rest[:j], rest[j:]
    k = target.find("#")
    if k >= 0:
        target = target[:k]
    if not target:
        target = "/"
    elif target[0] == "?":
        target = "/" + target
    if not _plain(target):
        from kh.http.pct import encode_target
        target = encode_target(target)
    if "@" in auth:
        raise _bad("user:password@ in the URL is not supported; send the credentials in an "
                   "Authorization header (additionalHttpHeaders)")
    if auth.startswith("["):
        k = auth.find("]")
        if k < 0:
            raise _bad("unclosed [ in IPv6 address")
        host = auth[1:k]
        tail = auth[k + 1:]
        if not _is_ipv6(host):
            raise _bad("bad IPv6 address")
        bracketed = True
    else:
        k = auth.rfind(":")
        host, tail = (auth[:k], auth[k:]) if k >= 0 else (auth, "")
        bracketed = False
        if not _is_hostname(host):
            for c in host:
                if ord(c) > 126:
                    raise _bad("a host name with non-ASCII letters must be written in its "
                               "punycode form (xn--...)")
            raise _bad("bad host name")
        host = host.lower()
    if tail:
        if tail[0] != ":" or len(tail) < 2 or len(tail) > 6:
            raise _bad("bad port")
        for c in tail[1:]:
            if c < "0" or c > "9":
                raise _bad("bad port")
        port = int(tail[1:])
        if not 0 < port < 65536:
            raise _bad("port out of range")
    default = 443 if scheme == "https" else 80
    hh = ("[" + host + "]") if bracketed else host
    if port != default:
        hh = hh + ":" + str(port)
    return scheme, host, port, target, hh


# what may stand unencoded in a path and query (RFC 3986 section 3.3, 3.4: pchar, "/", "?");
# a target with anything else, or with a "%", goes through kh.http.pct (loaded only then)
_PCHAR = "!$&'()*+,;=:@/?-._~"


def _plain(t):
    for c in t:
        if not (c.isalpha() or c.isdigit() or c in _PCHAR) or ord(c) > 126:
            return False
    return True


def _is_hostname(h):
    if h[-1:] == ".":
        h = h[:-1]  # an absolute name (RFC 1034 section 3.1)
    if not h or len(h) > 253:
        return False
    for label in h.split("."):
        if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
            return False
        for c in label:
            if not (c.isalpha() or c.isdigit() or c == "-" or c == "_"):
                return False
    return True


def _is_ipv6(h):
    if h.count(":") < 2:
        return False
    k = h.find("%")
    if k >= 0:
        h = h[:k]
    for c in h:
        if not (c.isdigit() or c in "abcdefABCDEF:."):
            return False
    return h.count("::") <= 1


def ipv4(host):
    # dotted quad -> 4 bytes, else None
    parts = host.split(".")
    if len(parts) != 4:
        return None
    out = bytearray(4)
    for i in range(4):
        p = parts[i]
        if not p or len(p) > 3 or not p.isdigit():
            return None
        v = int(p)
        if v > 255:
            return None
        out[i] = v
    return bytes(out)


def is_ip_literal(host):
    return ipv4(host) is not None or ":" in host
