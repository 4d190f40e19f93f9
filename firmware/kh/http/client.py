# The HTTP/1.1 client: one request under one security level. Resolve, refuse insecure levels to
# remote addresses, connect, verify, and only then write; read the response; keep the connection
# for the next request to the same origin and level (bounded pool). Never follows redirects.
import gc
from micropython import const
from kh.http.errors import FireError
from kh.http import url as _url
from kh.http import resolve as _resolve
from kh.http import conn as _conn
from kh.http import response as _resp
from kh.http import tlspolicy as _tls

MAX_BODY = const(0)  # bytes of an answer's body kept by default: none (only token answers are read)
_UA = b"User-Agent: keyhook/0.1\r\n"


class Pool:
    # kept-alive connections, keyed by scheme, host, port, level, pin and the insecure-remote
    # opt-out; the oldest goes first
    def __init__(self, size=1):
        self.size = size
        self.conns = []

    def take(self, key):
        for c in self.conns:
            if c.key == key:
                self.conns.remove(c)
                return c
        return None

    def make_room(self):
        # before a new connection is opened: never hold more than size connections at once
        # (on the ESP32 each TLS connection takes ~20 KiB beside BLE)
        while self.conns and len(self.conns) >= self.size:
            self.conns.pop(0).close()

    def put(self, c):
        if self.size <= 0:
            c.close()
            return
        while len(self.conns) >= self.size:
            self.conns.pop(0).close()
        self.conns.append(c)

    def close(self):
        while self.conns:
            self.conns.pop().close()


class Net:
    # what a request needs from the device: trust store, pool, limits
    # max_body: how many bytes of a body are kept by default (none: the device reports a
    # webhook's answer by its status and length)
    def __init__(self, trust=None, pool=None, max_body=MAX_BODY, resolver=None):
        self.trust = trust
        self.resolver = resolver  # fn(host, port) -> [(family, ip, sockaddr)], None: kh.http.resolve
        self.pool = pool if pool is not None else Pool(1)
        self.prefix = bytearray(max_body)


def check_level(scheme, level):
    if level not in _tls.LEVELS:
        raise FireError("invalid_definition", "securityLevel must be one of " + ", ".join(_tls.LEVELS))
    if scheme == "http" and level != _tls.HTTP:
        raise FireError("invalid_definition", "an http:// URL needs securityLevel AllowHttp; use https://")


def build(method, target, host_header, headers, body, content_type):
    # the request head and body as one bytes object; header names and values were validated
    parts = [method.encode(), b" ", target.encode(), b" HTTP/1.1\r\nHost: ", host_header.encode(), b"\r\n", _UA]
    for k, v in headers:
        parts.append(k.encode())
        parts.append(b": ")
        parts.append(v.encode())
        parts.append(b"\r\n")
    if body is not None:
        if content_type:
            parts.append(b"Content-Type: ")
            parts.append(content_type.encode())
            parts.append(b"\r\n")
        parts.append(b"Content-Length: ")
        parts.append(str(len(body)).encode())
        parts.append(b"\r\n\r\n")
        parts.append(body)
    elif method in ("POST", "PUT", "PATCH"):
        parts.append(b"Content-Length: 0\r\n\r\n")
    else:
        parts.append(b"\r\n")
    return b"".join(parts)


async def _open(net, key, scheme, host, port, level, pin, timeout_ms, allow_remote):
    family, ip, sa = _resolve.resolve(host, port, net.resolver)
    if level in (_tls.SELF_SIGNED, _tls.HTTP) and not allow_remote and not _resolve.is_local(family, ip):
        raise FireError("insecure_remote",
                        level + " is only allowed to loopback, link-local or private addresses; "
                        "use a verified level, or set allowInsecureRemote in the rule")
    if scheme == "http":
        return await _conn.open_tcp(family, ip, sa, port, _conn.deadline(timeout_ms), key)
    # a trailing dot (an absolute DNS name) is asked of DNS as given, but is not part of the
    # name in the certificate or the SNI (as curl and Go do)
    name = host[:-1] if host[-1:] == "." else host
    check = _tls.Check(level, pin, net.trust, name + ":" + str(port))
    sni = name
    if _url.is_ip_literal(name):
        # RFC 6066 section 3: no IP address as a server name. mbedTLS checks the certificate's
        # name only when it also sends it (and refuses to verify without one), so a verified
        # level still sends the address; the others send no name.
        if check.needs_name:
            check.ip_name = True
        else:
            sni = None
    tries = 0
    retry_hash = None
    while True:
        # the TLS context first: its 1.8 KiB in one piece while the heap is least cut up
        ctx = check.context(retry_hash)
        c = await _conn.open_tcp(family, ip, sa, port, _conn.deadline(timeout_ms), key)
        try:
            await _conn.start_tls(c, ctx, sni, check, _conn.deadline(timeout_ms))
            return c
        except FireError as e:
            err = e
        except BaseException:
            c.close()
            raise
        c.close()
        c = ctx = None
        tries += 1
        if err.code == "tls_untrusted" and tries == 1:
            retry_hash = check.retry_hash()
            if retry_hash:
                # first contact with this origin: now the root is known. Free the refused
                # connection's TLS context before making the next one.
                err = None
                gc.collect()
                continue
        raise err


async def _exchange(net, c, method, req, timeout_ms, info, r, keep=0):
    check = c.check
    before = c.wrote
    try:
        await c.write(req, _conn.deadline(timeout_ms))
    finally:
        if c.wrote > before:
            info["sent"] = True
    if check:
        check.succeeded()  # the handshake is over: remember which root served this origin
    await _resp.read_head(c, r, _conn.deadline(timeout_ms), _conn.deadline(timeout_ms), method)
    await _resp.read_body(c, r, method, net.prefix, _conn.deadline(timeout_ms), keep)
    return r


async def request(net, method, url, headers, body, content_type, level, pin=None,
                  timeout_ms=3000, allow_remote=False, info=None, keep=0):
    # -> Response; raises FireError. info (a dict) learns "sent" and "reused" even on failure.
    # keep: bytes of the body to keep when more than the default (token answers)
    if info is None:
        info = {}
    info["sent"] = False
    info["reused"] = False
    scheme, host, port, target, hh = _url.parse(url)
    check_level(scheme, level)
    key = (scheme, host, port, level, pin, bool(allow_remote))  # whatever decides if it may carry it
    c = net.pool.take(key)
    if c is not None and c.idle_dead():
        c.close()
        c = None
    if c is not None:
        info["reused"] = True
        req = build(method, target, hh, headers, body, content_type)
        r = _resp.Response()
        try:
            await _exchange(net, c, method, req, timeout_ms, info, r, keep)
        except FireError as e:
            c.close()
            # a connection that died while idle: send again, but only if not a byte of the
            # response had arrived
            if e.code not in ("closed", "reset", "io") or r.got_bytes:
                raise
            c = None
            info["reused"] = False
            info["resent"] = True
        except BaseException:
            c.close()
            raise
        else:
            return _finish(net, c, r, info)
    net.pool.make_room()
    c = await _open(net, key, scheme, host, port, level, pin, timeout_ms, allow_remote)
    req = build(method, target, hh, headers, body, content_type)  # after the TLS context: less fragmentation
    r = _resp.Response()
    try:
        await _exchange(net, c, method, req, timeout_ms, info, r, keep)
    except BaseException:
        c.close()
        raise
    return _finish(net, c, r, info)


def _finish(net, c, r, info):
    info["sent"] = True
    c.requests += 1
    if r.keep_alive:
        net.pool.put(c)
    else:
        c.close()
    return r
