# One HTTP connection (plain TCP or TLS) on a non-blocking socket, driven from asyncio: every
# wait parks the task in asyncio's I/O queue (other tasks, BLE's among them, run meanwhile) and
# ends at the phase's deadline. What cannot be split is mbedTLS's own work inside one call (the
# handshake's public-key operations). Reads go through one preallocated buffer.
import asyncio
import errno
from asyncio import core as _core
import select
import socket
import time
from micropython import const
from kh.http.errors import FireError
from kh.http import resolve as _resolve

# A connection's read buffer: response lines longer than it are put together piece by piece
# (kh.http.response), so it need not hold one; a TLS read returns at most _TLS_READ bytes anyway
_BUF = const(256)
_TLS_READ = const(256)  # bytes asked of one TLS read (each is a new object of that size)
_POLL_IN = select.POLLIN
_POLL_OUT = select.POLLOUT
_POLL_BAD = select.POLLERR | select.POLLHUP
_EPIPE = const(32)  # not in MicroPython's errno; 32 on Linux and in newlib (ESP-IDF)
_RESET = (errno.ECONNRESET, errno.ECONNABORTED, errno.ENOTCONN, _EPIPE)
_ERR_SSL_CONN_EOF = const(-0x7280)  # peer closed without close_notify
_HS_SLICE_MS = const(20)
_YIELD_READS = const(8)  # reads between turns given to the other tasks
_IPPROTO_TCP = const(6)  # same numbers on Linux and lwIP
_TCP_NODELAY = const(1)


async def _io(s, write):
    # park the task in asyncio's I/O queue until s is ready (as asyncio's own Stream does)
    if write:
        yield _core._io_queue.queue_write(s)
    else:
        yield _core._io_queue.queue_read(s)


def deadline(timeout_ms):
    return time.ticks_add(time.ticks_ms(), timeout_ms)


def left_ms(dl):
    return time.ticks_diff(dl, time.ticks_ms())


class Conn:
    def __init__(self, sock, family, ip, key):
        self.raw = sock
        self.s = sock
        self.family = family
        self.ip = ip
        self.key = key
        self.tls = False
        self.poller = select.poll()
        self.poller.register(sock, _POLL_OUT)
        self.buf = bytearray(_BUF)
        self.mv = memoryview(self.buf)
        self.lo = 0
        self.hi = 0
        self.requests = 0
        self.wrote = 0  # request bytes written in total
        self.reads = 0
        self.closed = False
        self.check = None  # the TLS Check while the handshake may still be finishing

    async def wait(self, ev, dl, phase):
        # until the socket is ready for ev (or in error), sleeping in asyncio's poller so other
        # tasks run and the fire wakes at once; FireError("timeout") at the deadline.
        # The wait is always on the plain socket (on the unix port a file descriptor wakes the
        # poller at once; a TLS object is re-polled every 1 ms): mbedTLS asks for more bytes
        # only when it has none buffered. During a handshake it almost always waits for the
        # server's next flight; the rare want-write is retried every _HS_SLICE_MS.
        ms = left_ms(dl)
        if ms <= 0:
            raise FireError("timeout", "no progress within the time-out while " + phase)
        write = ev == _POLL_OUT
        sliced = False
        if self.check is not None:
            write = False
            if ms > _HS_SLICE_MS:
                ms = _HS_SLICE_MS
                sliced = True
        try:
            await asyncio.wait_for_ms(_io(self.raw, write), ms)
        except asyncio.TimeoutError:
            if sliced:
                return 0
            raise FireError("timeout", "no progress within the time-out while " + phase)
        self.poller.modify(self.raw, ev)
        r = self.poller.poll(0)
        return r[0][1] if r else 0

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.poller.unregister(self.raw)
        except (OSError, ValueError, KeyError):
            pass
        try:
            self.s.close()
        except OSError:
            pass
        if self.s is not self.raw:
            try:
                self.raw.close()
            except OSError:
                pass

    def idle_dead(self):
        # a kept-alive connection is reusable only if the server has sent nothing since
        if self.closed or self.lo != self.hi:
            return True
        # the plain socket: readable means the server sent something or closed (an idle TLS
        # connection has nothing buffered in mbedTLS once its last response was read)
        self.poller.modify(self.raw, _POLL_IN)
        return bool(self.poller.poll(0))

    async def write(self, data, dl, phase="sending the request"):
        mv = memoryview(data)
        off = 0
        n = len(mv)
        while off < n:
            try:
                w = self.s.write(mv[off:])
            except (OSError, ValueError) as e:
                if self.check:
                    raise self.check.failure(e)
                raise _io_error(e, phase)
            if w is None:
                ev = await self.wait(_POLL_OUT, dl, phase)
                if ev & _POLL_BAD and not ev & (_POLL_OUT | _POLL_IN):
                    raise FireError("connect", "the connection closed while " + phase)
            else:
                off += w
                self.wrote += w
                self.check = None
        return n

    async def fill(self, dl, phase):
        # read more into the buffer; returns bytes added (0 = end of stream)
        if self.lo == self.hi:
            self.lo = self.hi = 0
        elif self.hi == _BUF:
            self.mv[0:self.hi - self.lo] = self.mv[self.lo:self.hi]
            self.hi -= self.lo
            self.lo = 0
        return await self.read_into(self.mv[self.hi:], dl, phase, True)

    async def read_into(self, mv, dl, phase, into_buf=False):
        # The deadline holds however the bytes come: a server that always has a few more (a
        # body in 1-byte chunks) must not keep the fire past its time-out; and every
        # _YIELD_READS reads the loop gets a turn, so that BLE, the button and the other
        # tasks run while a fire reads a long answer.
        if left_ms(dl) <= 0:
            raise FireError("timeout", "the time-out ran out while " + phase)
        self.reads += 1
        if not self.reads % _YIELD_READS:
            await asyncio.sleep_ms(0)
        while True:
            try:
                if self.tls:
                    # one mbedtls_ssl_read per call: readinto() loops over records and swallows
                    # the end of stream (close_notify) that arrives behind data in one call. recv
                    # allocates what it is asked for, so it is asked for little at a time
                    b = self.s.recv(min(len(mv), _TLS_READ))
                    n = None if b is None else len(b)
                    if n:
                        mv[:n] = b
                    b = None
                else:
                    n = self.s.readinto(mv)
            except (OSError, ValueError) as e:
                if e.args and e.args[0] == _ERR_SSL_CONN_EOF:
                    return 0
                if isinstance(e, ValueError):
                    raise FireError("tls_handshake", "TLS error while " + phase)
                raise _io_error(e, phase)
            if n is not None:
                if into_buf:
                    self.hi += n
                return n
            await self.wait(_POLL_IN, dl, phase)


def _io_error(e, phase):
    code = e.args[0] if e.args else 0
    if code in _RESET:
        return FireError("reset", "the server reset the connection while " + phase)
    if code == errno.ETIMEDOUT:
        return FireError("timeout", "time-out while " + phase)
    return FireError("io", "I/O error while " + phase + " (" + str(code) + ")")


async def open_tcp(family, ip, sockaddr, port, dl, key):
    _resolve.before_connect(family, ip, port)
    s = socket.socket(family, socket.SOCK_STREAM)
    c = Conn(s, family, ip, key)
    try:
        try:
            # the TLS client flight and a request head go out as several small writes; without
            # this, Nagle holds the last one until the peer's delayed ACK (40 ms on Linux)
            s.setsockopt(_IPPROTO_TCP, _TCP_NODELAY, 1)
        except OSError:
            pass
        s.setblocking(False)
        try:
            s.connect(sockaddr)
        except OSError as e:
            if not e.args or e.args[0] not in (errno.EINPROGRESS, errno.EALREADY, errno.EAGAIN):
                raise FireError("connect", "cannot connect (errno " + str(e.args[0] if e.args else "?") + ")")
        ev = await c.wait(_POLL_OUT, dl, "connecting")
        if ev & _POLL_BAD:
            raise FireError("connect", "connection refused or unreachable")
    except BaseException:
        c.close()
        raise
    return c


async def start_tls(c, ctx, server_hostname, check, dl):
    # wrap, then drive the handshake with reads until the server's certificate has been judged;
    # mbedTLS itself completes the handshake (Finished) before it lets application data out.
    ss = ctx.wrap_socket(c.raw, server_hostname=server_hostname, do_handshake_on_connect=False)
    c.s = ss
    c.tls = True
    one = bytearray(1)
    mv = memoryview(one)
    c.check = check
    while check.verifies and not check.leaf_seen:
        try:
            n = ss.readinto(mv)
        except (OSError, ValueError) as e:
            raise check.failure(e)
        if n == 0:
            raise FireError("tls_handshake", "the server closed the connection during the TLS handshake")
        if n is not None:
            raise FireError("tls_handshake", "the server sent data before the handshake completed")
        if check.leaf_seen:
            break
        await c.wait(_POLL_IN, dl, "in the TLS handshake")
    check.may_write()
