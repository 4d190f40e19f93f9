"""A scripted TLS (or plain TCP) server on 127.0.0.1 that controls exactly which bytes leave in
which TCP write: the shapes of real servers that a line-by-line `Receiver` cannot make (a body's
end and the TLS close_notify in one segment, then silence; a head of 70 Set-Cookie lines ...).

TLS runs over `ssl.MemoryBIO`, so `send(..., close_notify=True)` puts the last application
record and the close_notify alert into one `sendall`. The server name the client sent (SNI) is
recorded per connection (`None` when it sent none).
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Callable

HOST = "127.0.0.1"


class Link:
    """One accepted connection, handed to the script."""

    def __init__(self, sock: socket.socket, ctx: ssl.SSLContext | None, server: "Scripted"):
        self.sock = sock
        self.server = server
        self.tls = None
        self.sni: str | None = None
        self.handshake_error: str | None = None
        if ctx is not None:
            self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = ctx.wrap_bio(self.inc, self.out, server_side=True)

    def handshake(self) -> bool:
        while True:
            try:
                self.tls.do_handshake()
                self._flush()
                return True
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if not data:
                    self.handshake_error = "closed"
                    return False
                self.inc.write(data)
            except (ssl.SSLError, OSError) as e:
                self.handshake_error = str(e)
                try:
                    self._flush()  # the fatal alert
                except OSError:
                    pass
                return False

    def _flush(self) -> None:
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def read_request(self) -> bytes:
        """Bytes until the end of the request head (and a Content-Length body)."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self._recv()
        head, _, rest = buf.partition(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v)
        while len(rest) < n:
            rest += self._recv()
        return head + b"\r\n\r\n" + rest

    def _recv(self) -> bytes:
        if self.tls is None:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError
            return data
        while True:
            try:
                return self.tls.read(65536)
            except ssl.SSLWantReadError:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError from None
                self.inc.write(data)

    def send(self, *pieces: bytes, close_notify: bool = False) -> None:
        """Every piece (and the close_notify alert, if asked) in one TCP write."""
        if self.tls is None:
            self.sock.sendall(b"".join(pieces))
            return
        for p in pieces:
            self.tls.write(p)
        if close_notify:
            try:
                self.tls.unwrap()
            except ssl.SSLWantReadError:
                pass
        self.sock.sendall(self.out.read())


Script = Callable[[Link], None]


class Scripted:
    """`with Scripted(script, tls=ctx) as srv:` runs script(link) for each connection."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None, hold_s: float = 10.0):
        self.script = script
        self.ctx = tls
        self.hold_s = hold_s
        self.links: list[Link] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, 0))
        self._sock.listen(8)
        self.port = self._sock.getsockname()[1]
        self._open: list[socket.socket] = []
        if tls is not None:
            tls.sni_callback = self._sni
        self._current: Link | None = None

    def _sni(self, sslobj, name, ctx):
        for link in self.links:
            if link.tls is sslobj:
                link.sni = name
        return None

    def url(self, path: str = "/hook", host: str = HOST) -> str:
        return f"{'https' if self.ctx else 'http'}://{host}:{self.port}{path}"

    def __enter__(self) -> "Scripted":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._sock.close()
        for s in self._open:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                s, _ = self._sock.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._open.append(s)
            link = Link(s, self.ctx, self)
            self.links.append(link)
            threading.Thread(target=self._serve, args=(link,), daemon=True).start()

    def _serve(self, link: Link) -> None:
        try:
            if link.tls is not None and not link.handshake():
                return
            self.script(link)
            self._stop.wait(self.hold_s)  # then silence: the client must not need our FIN
        except (EOFError, OSError, ssl.SSLError) as e:
            self.errors.append(repr(e))
        finally:
            try:
                link.sock.close()
            except OSError:
                pass
