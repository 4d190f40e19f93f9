# Name resolution behind one hook, so tests can answer for a name (and prove no packet left) and
# so the insecure-level rule judges the address actually used. resolve() -> (family, ip, sockaddr)
# where ip is the 4 or 16 address bytes.
import socket
from kh.http.errors import FireError
from kh.http import url as _url

_hook = None
_guard = None


def set_resolver(fn):
    # fn(host, port) -> list of (family, ip_bytes, sockaddr) or raises; None restores getaddrinfo
    global _hook
    _hook = fn


def set_connect_guard(fn):
    # fn(family, ip_bytes, port) runs before every connect and may raise (tests: no packet leaves)
    global _guard
    _guard = fn


def before_connect(family, ip, port):
    if _guard:
        _guard(family, ip, port)


def literal(text, port):
    # an address given as text -> (family, ip, sockaddr), without any DNS query
    fam = socket.AF_INET6 if ":" in text else socket.AF_INET
    for f, typ, proto, _, sa in socket.getaddrinfo(text, port, 0, socket.SOCK_STREAM):
        if f == fam:
            return (fam, _ip_of(fam, sa), sa)
    raise ValueError("address")


def _ip_of(family, sa):
    if isinstance(sa, tuple):  # ESP32 / bare-metal ports: ("1.2.3.4", port)
        return inet_pton(family, sa[0])
    if family == socket.AF_INET:  # unix port: raw struct sockaddr_in
        return bytes(sa[4:8])
    return bytes(sa[8:24])


def inet_pton(family, text):
    if family == socket.AF_INET:
        ip = _url.ipv4(text)
        if ip is None:
            raise ValueError("ip")
        return ip
    pton = getattr(socket, "inet_pton", None)  # absent on some ports
    if pton is None:
        raise ValueError("ip")
    return pton(family, text)


def system(host, port):
    out = []
    for fam, typ, proto, _, sa in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        if typ == socket.SOCK_STREAM and fam in (socket.AF_INET, socket.AF_INET6):
            out.append((fam, _ip_of(fam, sa), sa))
    return out


def resolve(host, port, fn=None):
    # fn: a resolver for this call (the device's Env may carry one); else the hook, else DNS
    fn = fn or _hook or system
    try:
        res = fn(host, port)
    except FireError:
        raise
    except (OSError, ValueError) as e:
        raise FireError("dns", "cannot resolve the host name (" + _reason(e) + ")")
    if not res:
        raise FireError("dns", "the host name has no address")
    return res[0]


def _reason(e):
    return e.__class__.__name__ + " " + str(e.args[0] if e.args else "")


def is_local(family, ip):
    # loopback, link-local or private (RFC 1918, RFC 4193); IPv4-mapped IPv6 judged as IPv4
    if len(ip) == 16 and ip[:12] == b"\0" * 10 + b"\xff\xff":
        ip = ip[12:]
    if len(ip) == 4:
        a, b = ip[0], ip[1]
        return (a == 127 or a == 10 or (a == 172 and 16 <= b <= 31) or (a == 192 and b == 168)
                or (a == 169 and b == 254))
    if ip == b"\0" * 15 + b"\1":
        return True
    return (ip[0] & 0xFE) == 0xFC or (ip[0] == 0xFE and (ip[1] & 0xC0) == 0x80)
