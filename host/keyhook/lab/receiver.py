"""A recording HTTP/HTTPS server on 127.0.0.1 for tests and the demo.

Every connection is recorded: the bytes the server's HTTP layer received (decrypted for TLS,
so "the server received no byte of the request" is `conn.data == b""`), whether the TLS
handshake completed, and the requests parsed from it. Responses are configurable per request
(status, headers, body framed by Content-Length, chunked or close, delays, a reset mid-body,
dropping the connection instead of answering), so one class serves the whole HTTP matrix::

    with Receiver(tls=server_context(pki.leaf)) as rx:
        url = rx.url("/hook")
        ...
        assert rx.connections[0].data == b""

Only 127.0.0.1 is ever bound. Not for production use.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HOST = "127.0.0.1"


@dataclass
class Respond:
    """How to answer one request.

    `framing`: "length" (Content-Length), "chunked" or "close" (body ends when the server closes).
    `action`: "respond", "drop" (close without answering), "reset" (RST without answering),
    "reset_mid_body" (send the head and half the body, then RST), "hang" (never answer).
    """

    status: int = 200
    body: bytes = b"ok"
    headers: dict[str, str] = field(default_factory=dict)
    framing: str = "length"
    keep_alive: bool = True
    delay_s: float = 0.0  # before the status line
    chunk_size: int = 1024
    chunk_delay_s: float = 0.0  # between body pieces (a slow body)
    action: str = "respond"
    close_after_s: float | None = None  # keep-alive: close the idle connection after this long
    reason: str = "OK"


@dataclass
class Request:
    """One parsed request as the server saw it."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


@dataclass
class Connection:
    """Everything one accepted connection delivered."""

    index: int
    tls: bool
    handshake_ok: bool | None = None  # None for plain TCP
    handshake_error: str | None = None
    data: bytes = b""  # every byte the HTTP layer received, in order
    requests: list[Request] = field(default_factory=list)
    closed_by: str | None = None  # "client", "server" or "reset"


Handler = Callable[[Request, Connection, int], Respond]


def server_context(cert_chain: str | Path, key: str | Path) -> ssl.SSLContext:
    """A TLS server context presenting `cert_chain` (PEM: leaf first, then its chain)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(str(cert_chain), str(key))
    return ctx


class Receiver:
    """A threaded recording server; use as a context manager or call start()/stop()."""

    def __init__(self, tls: ssl.SSLContext | None = None, respond: Respond | Handler | None = None,
                 handshake_timeout_s: float = 5.0) -> None:
        self.tls = tls
        self.respond: Respond | Handler = respond or Respond()
        self.connections: list[Connection] = []
        self.handshake_timeout_s = handshake_timeout_s
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((HOST, 0))
        self._sock.listen(16)
        self.port: int = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._stop = threading.Event()

    # -- lifecycle
    def start(self) -> "Receiver":
        t = threading.Thread(target=self._accept_loop, name=f"receiver:{self.port}", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            self._sock.close()
        except OSError:
            pass
        with self._lock:
            socks = list(self._open)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- queries
    def url(self, path: str = "/hook", host: str = HOST) -> str:
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    @property
    def received(self) -> bytes:
        """Every byte the HTTP layer received, over all connections."""
        with self._lock:
            return b"".join(c.data for c in self.connections)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return [r for c in self.connections for r in c.requests]

    def wait_idle(self, timeout_s: float = 2.0) -> None:
        """Give connection threads a moment to record what is in flight."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            with self._lock:
                busy = [t for t in self._threads[1:] if t.is_alive()]
            if not busy:
                return
            time.sleep(0.01)

    def settle(self, quiet_s: float = 0.15, timeout_s: float = 2.0) -> None:
        """Wait until nothing new has been recorded for `quiet_s`."""
        end = time.monotonic() + timeout_s
        last = (-1, -1)
        stable_since = time.monotonic()
        while time.monotonic() < end:
            with self._lock:
                now = (len(self.connections), sum(len(c.data) for c in self.connections))
            if now != last:
                last, stable_since = now, time.monotonic()
            elif time.monotonic() - stable_since >= quiet_s:
                return
            time.sleep(0.01)

    # -- internals
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                s, _ = self._sock.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                conn = Connection(index=len(self.connections), tls=self.tls is not None)
                self.connections.append(conn)
                self._open.append(s)
            t = threading.Thread(target=self._serve, args=(s, conn), daemon=True)
            with self._lock:
                self._threads.append(t)
            t.start()

    def _record(self, conn: Connection, chunk: bytes) -> None:
        with self._lock:
            conn.data += chunk

    def _serve(self, s: socket.socket, conn: Connection) -> None:
        sock: socket.socket | ssl.SSLSocket = s
        try:
            if self.tls is not None:
                s.settimeout(self.handshake_timeout_s)
                try:
                    sock = self.tls.wrap_socket(s, server_side=True)
                    conn.handshake_ok = True
                except (ssl.SSLError, OSError) as e:
                    conn.handshake_ok = False
                    conn.handshake_error = str(e)
                    conn.closed_by = "client"
                    return
            sock.settimeout(30)
            buf = b""
            n = 0
            while not self._stop.is_set():
                req, buf, ok = self._read_request(sock, conn, buf)
                if req is None:
                    conn.closed_by = conn.closed_by or "client"
                    return
                with self._lock:
                    conn.requests.append(req)
                plan = self.respond(req, conn, n) if callable(self.respond) else self.respond
                n += 1
                if not self._answer(sock, s, req, plan, conn):
                    return
        except OSError:
            conn.closed_by = conn.closed_by or "reset"
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def _read_request(self, sock, conn: Connection, buf: bytes) -> tuple[Request | None, bytes, bool]:
        while b"\r\n\r\n" not in buf:
            chunk = self._recv(sock)
            if not chunk:
                return None, buf, False
            self._record(conn, chunk)
            buf += chunk
            if not buf[:1].isalpha():  # not HTTP (a TLS ClientHello, say): answer like a real server
                try:
                    sock.sendall(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
                except OSError:
                    pass
                conn.closed_by = "server"
                return None, b"", False
        head, _, rest = buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            return None, b"", False
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip(), v.strip()))
        length = 0
        for k, v in headers:
            if k.lower() == "content-length":
                length = int(v)
        while len(rest) < length:
            chunk = self._recv(sock)
            if not chunk:
                return None, b"", False
            self._record(conn, chunk)
            rest += chunk
        body, rest = rest[:length], rest[length:]
        raw = head + b"\r\n\r\n" + body
        return Request(parts[0], parts[1], parts[2], headers, body, raw), rest, True

    @staticmethod
    def _recv(sock) -> bytes:
        try:
            return sock.recv(65536)
        except (ssl.SSLError, ConnectionResetError, TimeoutError):
            return b""

    def _answer(self, sock, raw: socket.socket, req: Request, plan: Respond, conn: Connection) -> bool:
        if plan.delay_s:
            time.sleep(plan.delay_s)
        if plan.action == "hang":
            self._stop.wait(60)
            return False
        if plan.action in ("reset", "drop"):
            if plan.action == "reset":
                self._rst(sock)
            conn.closed_by = "server" if plan.action == "drop" else "reset"
            return False
        head = [f"HTTP/1.1 {plan.status} {plan.reason}"]
        head += [f"{k}: {v}" for k, v in plan.headers.items()]
        body = plan.body if req.method != "HEAD" else b""
        if plan.framing == "length":
            head.append(f"Content-Length: {len(plan.body)}")
        elif plan.framing == "chunked":
            head.append("Transfer-Encoding: chunked")
        keep = plan.keep_alive and plan.framing != "close" and plan.action == "respond"
        if not keep:
            head.append("Connection: close")
        head_bytes = ("\r\n".join(head) + "\r\n\r\n").encode()
        if plan.action == "respond" and not plan.chunk_delay_s and plan.framing != "chunked" \
                and len(body) <= plan.chunk_size:
            sock.sendall(head_bytes + body)  # one segment: no Nagle/delayed-ACK stall
            return self._after(plan, keep, conn)
        sock.sendall(head_bytes)
        if plan.action == "reset_mid_body":
            sock.sendall(body[: len(body) // 2])
            time.sleep(0.05)
            self._rst(sock)
            conn.closed_by = "reset"
            return False
        step = max(1, plan.chunk_size)
        for i in range(0, len(body), step):
            piece = body[i:i + step]
            if plan.framing == "chunked":
                piece = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
            sock.sendall(piece)
            if plan.chunk_delay_s:
                time.sleep(plan.chunk_delay_s)
        if plan.framing == "chunked" and req.method != "HEAD":
            sock.sendall(b"0\r\n\r\n")
        return self._after(plan, keep, conn)

    def _after(self, plan: Respond, keep: bool, conn: Connection) -> bool:
        if not keep:
            conn.closed_by = "server"
            return False
        if plan.close_after_s is not None:
            time.sleep(plan.close_after_s)
            conn.closed_by = "server"
            return False
        return True

    @staticmethod
    def _rst(raw) -> None:
        try:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
        except OSError:
            pass


def static(**kw) -> Respond:
    """Shorthand: Respond(**kw)."""
    return Respond(**kw)
