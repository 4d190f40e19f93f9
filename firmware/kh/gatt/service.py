# GATT layer: the keyhook service over `bluetooth` (PROTOCOL.md section 1).
#
# RX (app writes, with or without response) and TX (device notifies); RX's value buffer is
# enlarged to a whole fragment. Advertising: flags, the service UUID and manufacturer data
# (company 0xFFFF, state byte bit 0 = paired); the name in the scan response. One app at a
# time: while connected the device advertises as non-connectable. The MTU comes from
# _IRQ_MTU_EXCHANGED (23 until then). Fragments are reassembled with the MAX_RECORD bound and
# the protocol's rejections (ERROR bad_record); a disconnect discards a partial record.
# The IRQ handler only copies into a ring and sets a ThreadSafeFlag; `run()` does the work.
# The handler never raises: MicroPython sets a handler that raises to None for good
# (extmod/modbluetooth.c), which would leave the device deaf. A write it cannot take (out of
# memory in gatts_read, the ring full) is reported to the task as lost, and the app gets
# ERROR busy for the record it belonged to.
#
# Upward API: GattService(ble, name, on_record, on_connect, on_disconnect, on_reset=None),
# advertise(paired), await send(record) -> bool, disconnect(), await run().
# send() paces notifications by NimBLE's pool and never leaves half a record on a live link:
# when the link frees no buffer for _NOTIFY_STALL_MS it disconnects and returns False.
# Each record is assembled in a bytearray of its announced length, allocated at its START
# fragment and dropped after on_record(record) returns: the layer above may decrypt in it. No
# buffer is held between records (an idle device keeps none); a START that cannot get its
# buffer, after a collection, is refused with ERROR busy, and one announcing more than `limit`
# (set by the layer above: small until a session is authenticated) with ERROR bad_record.
# on_record may be a coroutine function; on_reset() is called after a rejected
# fragment (the connection's state must be dropped); without it, on_disconnect() then
# on_connect() are called.
import gc
import sys
import time

import asyncio
import bluetooth
from micropython import const

from kh.gatt.ring import Ring

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_MTU_EXCHANGED = const(21)

_FLAG_WRITE_NO_RESPONSE = const(0x0004)
_FLAG_WRITE = const(0x0008)
_FLAG_NOTIFY = const(0x0010)

MAX_RECORD = const(8256)
_MTU_DEFAULT = const(23)
_MTU_MAX = const(247)
_FRAG_MAX = const(244)  # MTU_MAX - 3
_RING_BYTES = const(2048)  # more than a record of a rules part (1536 bytes of JSON) with its fragment headers
_RING_RESERVE = const(64)  # kept free for connect/disconnect/MTU entries
_ADV_INTERVAL_US = const(250000)
# NimBLE queues a notification into a small buffer pool and raises ENOMEM while it is full;
# the pool empties at the link's pace. A link that frees nothing for this long is as good as
# gone (a real one stalled this long is near its supervision time-out): the device hangs up.
_NOTIFY_STALL_MS = const(2000)
_NOTIFY_BACKOFF_MAX_MS = const(16)
# A record whose next fragment has not come for this long lost one on the way (NimBLE drops
# incoming data when its buffers are full): the app gets ERROR bad_record, not its time-out.
_RECORD_GAP_MS = const(2000)
_ENOMEM = const(12)

_START = const(0x80)
_END = const(0x40)
_RESERVED = const(0x3F)

_K_CONN = const(1)
_K_DISC = const(2)
_K_MTU = const(3)
_K_LOST = const(4)
_K_FRAG = const(0x81)

_ERROR = const(0x7F)
_ERR_BAD_RECORD = const(1)
_ERR_BUSY = const(9)
_ERR_INTERNAL = const(11)

_SVC_UUID = bluetooth.UUID("6b657968-6f6f-6b00-a000-000000000000")
_RX_UUID = bluetooth.UUID("6b657968-6f6f-6b00-a000-000000000001")
_TX_UUID = bluetooth.UUID("6b657968-6f6f-6b00-a000-000000000002")
# the service UUID, little-endian, as it appears in advertising data
_SVC_LE = b"\x00\x00\x00\x00\x00\x00\x00\xa0\x00\x6b\x6f\x6f\x68\x79\x65\x6b"


def error_record(code, message):
    return bytes((_ERROR, code, 0, 0)) + message


def _alloc(n):
    # a record's buffer, or None when even a collection leaves no free run that long
    try:
        return bytearray(n)
    except MemoryError:
        gc.collect()
    try:
        return bytearray(n)
    except MemoryError:
        return None


class GattService:
    def __init__(self, ble, name, on_record, on_connect=None, on_disconnect=None, on_reset=None):
        self._ble = ble
        self._on_record = on_record
        self._on_connect = on_connect
        self._on_disconnect = on_disconnect
        self._on_reset = on_reset
        ble.active(True)
        ble.config(mtu=_MTU_MAX)
        ble.config(gap_name=name)
        ((self._tx, self._rx),) = ble.gatts_register_services((
            (_SVC_UUID, ((_TX_UUID, _FLAG_NOTIFY), (_RX_UUID, _FLAG_WRITE | _FLAG_WRITE_NO_RESPONSE))),))
        ble.gatts_set_buffer(self._rx, _FRAG_MAX)
        self._ring = Ring(_RING_BYTES)
        self._flag = asyncio.ThreadSafeFlag()
        self._frag = bytearray(_FRAG_MAX)
        self._txb = memoryview(bytearray(_FRAG_MAX))
        self._rec = None  # the record being assembled: a buffer of its announced length
        # the longest record a START may announce; the layer above lowers it while the
        # connection has no authenticated session (no handshake record needs more)
        self.limit = MAX_RECORD
        self._tx_lock = asyncio.Lock()
        self._conn = None
        self.links = 0  # changes at every connect and disconnect: handles are reused, this is not
        self._mtu = _MTU_DEFAULT
        self._open = False
        self._skip = False
        self._total = 0
        self._got = 0
        self._lost = False
        self._last = 0  # ticks_ms of the last fragment of an open record
        self._stale = False  # set by _watch: look at the open record
        # flags, complete list of 128-bit service UUIDs, manufacturer data (last byte: state)
        self._adv = bytearray(b"\x02\x01\x06\x11\x07" + _SVC_LE + b"\x04\xff\xff\xff\x00")
        n = name.encode() if isinstance(name, str) else bytes(name)
        self._resp = bytes((len(n[:29]) + 1, 0x09 if len(n) <= 29 else 0x08)) + n[:29]
        ble.irq(self._irq)

    @property
    def connected(self):
        return self._conn is not None

    @property
    def mtu(self):
        return self._mtu

    # ---- IRQ: copy, queue, wake the task; never raise, allocate only what gatts_read returns ----
    def _irq(self, event, data):
        ring = self._ring
        try:
            if event == _IRQ_GATTS_WRITE:
                conn, handle = data
                if handle != self._rx:
                    return
                if self._lost and ring.put(_K_LOST, conn, 0, None, _RING_RESERVE):
                    self._lost = False
                v = self._ble.gatts_read(handle)  # a new bytes object: the API has no other way
                if self._lost or not ring.put(_K_FRAG, conn, len(v), v, _RING_RESERVE):
                    self._lost = True
            elif event == _IRQ_CENTRAL_CONNECT:
                self._lost = False  # a new connection starts with nothing lost
                ring.put(_K_CONN, data[0], 0)
            elif event == _IRQ_CENTRAL_DISCONNECT:
                self._lost = False
                ring.put(_K_DISC, data[0], 0)
            elif event == _IRQ_MTU_EXCHANGED:
                ring.put(_K_MTU, data[0], data[1])
            else:
                return  # read requests, connection and encryption updates: nothing to do
        except Exception:  # MemoryError in gatts_read: this write is lost; say so at once
            if event == _IRQ_GATTS_WRITE and not ring.put(_K_LOST, data[0], 0):
                self._lost = True
        self._flag.set()

    # ---- advertising ----
    def advertise(self, paired=None):
        if paired is not None:
            self._adv[-1] = 1 if paired else 0
        try:
            self._ble.gap_advertise(_ADV_INTERVAL_US, self._adv, resp_data=self._resp,
                                    connectable=self._conn is None)
        except OSError as e:
            print("gatt: advertising failed:", e)

    def disconnect(self):
        if self._conn is not None:
            self._ble.gap_disconnect(self._conn)

    # ---- the task ----
    async def run(self):
        ring = self._ring
        frag = self._frag
        asyncio.create_task(self._watch())
        while True:
            await self._flag.wait()
            while True:
                kind, conn, arg = ring.get(frag)
                if not kind:
                    break
                try:
                    await self._event(kind, conn, arg, frag)
                except MemoryError as e:  # drop this record, keep the service alive
                    sys.print_exception(e)
                    gc.collect()
                    if conn == self._conn:
                        await self._reject(_ERR_INTERNAL, b"out of memory")
                except Exception as e:  # keep the service alive; the app starts again
                    print("gatt: event failed")
                    sys.print_exception(e)
                    if conn == self._conn:
                        self.disconnect()
            if self._stale:  # the ring is empty: a record still open has lost a fragment
                self._stale = False
                await self._check_gap()

    async def _watch(self):
        while True:
            await asyncio.sleep_ms(_RECORD_GAP_MS // 2)
            if self._open:
                self._stale = True
                self._flag.set()

    async def _check_gap(self):
        if self._open and self._conn is not None and time.ticks_diff(time.ticks_ms(), self._last) >= _RECORD_GAP_MS:
            await self._reject(_ERR_BAD_RECORD, b"incomplete record: a fragment was lost; send it again")

    async def _event(self, kind, conn, arg, frag):
        if kind == _K_FRAG:
            if conn == self._conn:
                await self._fragment(frag, arg)
        elif kind == _K_CONN:
            self._connected(conn)
        elif kind == _K_DISC:
            self._disconnected(conn)
        elif kind == _K_MTU:
            if conn == self._conn:
                self._mtu = min(arg, _MTU_MAX)
        elif kind == _K_LOST and conn == self._conn:
            await self._reject(_ERR_BUSY, b"a fragment was lost (device busy); send the request again")

    def _connected(self, conn):
        if self._conn is not None:
            self._ble.gap_disconnect(conn)  # one app at a time
            return
        self._conn = conn
        self.links += 1
        self._mtu = _MTU_DEFAULT
        self._clear()
        self.advertise()  # visible, but not connectable, while an app is connected
        self._call(self._on_connect)

    def _disconnected(self, conn):
        if conn != self._conn:
            return
        self._conn = None
        self.links += 1
        self._mtu = _MTU_DEFAULT
        self._clear()  # a partial record dies with its connection
        self.advertise()
        self._call(self._on_disconnect)

    def _clear(self):
        self._rec = None
        self._open = False
        self._skip = False
        self._total = 0
        self._got = 0

    def _call(self, cb):
        if cb is None:
            return
        try:
            cb()
        except Exception as e:
            print("gatt: callback failed")
            sys.print_exception(e)

    async def _fragment(self, frag, n):
        if n == 0:
            return await self._reject(_ERR_BAD_RECORD, b"empty fragment")
        h = frag[0]
        if h & _START:
            if h & _RESERVED or n < 3:
                return await self._reject(_ERR_BAD_RECORD, b"malformed START fragment")
            if self._open:
                return await self._reject(_ERR_BAD_RECORD, b"START while a record is open")
            total = frag[1] << 8 | frag[2]
            if total == 0 or total > MAX_RECORD:
                return await self._reject(_ERR_BAD_RECORD, b"record longer than MAX_RECORD")
            if total > self.limit:  # before any buffer is allocated
                return await self._reject(_ERR_BAD_RECORD, b"record longer than allowed before authentication")
            self._skip = False
            self._rec = _alloc(total)
            if self._rec is None:
                return await self._reject(_ERR_BUSY, b"no memory for a record this long; send shorter ones")
            self._open = True
            self._total = total
            self._got = 0
            start = 3
        else:
            if self._skip:
                return None  # the rest of a rejected record
            if h & _RESERVED:
                return await self._reject(_ERR_BAD_RECORD, b"reserved header bits set")
            if not self._open:
                return await self._reject(_ERR_BAD_RECORD, b"continuation without START: a fragment was lost")
            start = 1
        ln = n - start
        got = self._got
        if got + ln > self._total:
            return await self._reject(_ERR_BAD_RECORD, b"more data than announced")
        self._rec[got:got + ln] = memoryview(frag)[start:n]
        self._got = got + ln
        self._last = time.ticks_ms()
        if h & _END:
            if self._got != self._total:
                return await self._reject(_ERR_BAD_RECORD, b"END at the wrong length: a fragment was lost")
            self._open = False
            rec = self._rec
            self._rec = None
            await self._deliver(rec)
        return None

    async def _reject(self, code, message):
        # drop the partial record and the connection's state; skip to the next START
        self._clear()
        self._skip = True
        await self.send(error_record(code, message))
        if self._on_reset is not None:
            self._call(self._on_reset)
        else:
            self._call(self._on_disconnect)
            self._call(self._on_connect)

    async def _deliver(self, record):
        try:
            r = self._on_record(record)
            if r is not None:
                await r
        except Exception as e:
            print("gatt: on_record failed")
            sys.print_exception(e)

    # ---- sending ----
    async def send(self, record):
        # one record as notifications of at most MTU - 3 bytes; False if it did not all go
        # (the app went away, or the link stalled and the device hung up)
        n = len(record)
        if n == 0 or n > MAX_RECORD:
            raise ValueError("record size")
        async with self._tx_lock:
            conn = self._conn
            if conn is None:
                return False
            room = self._mtu - 3
            buf = self._txb
            src = memoryview(record)
            off = 0
            while True:
                if off == 0:
                    take = min(room - 3, n)
                    buf[1] = n >> 8
                    buf[2] = n & 0xFF
                    buf[3:3 + take] = src[:take]
                    ln = 3 + take
                    hdr = _START
                else:
                    take = min(room - 1, n - off)
                    buf[1:1 + take] = src[off:off + take]
                    ln = 1 + take
                    hdr = 0
                off += take
                if off == n:
                    hdr |= _END
                buf[0] = hdr
                if not await self._notify(conn, buf[:ln]):
                    if self._conn == conn:  # stalled: no half record on a live link
                        print("gatt: link stalled; disconnecting")
                        self._ble.gap_disconnect(conn)
                    return False
                if off == n:
                    return True

    async def _notify(self, conn, data):
        # queue one notification; while NimBLE's pool is full (ENOMEM) wait for the link to
        # free a buffer, with a growing back-off, at most _NOTIFY_STALL_MS
        t0 = time.ticks_ms()
        wait = 1
        while self._conn == conn:
            try:
                self._ble.gatts_notify(conn, self._tx, data)
                return True
            except OSError as e:
                if e.errno != _ENOMEM:  # ENOTCONN: the app is gone
                    return False
            if time.ticks_diff(time.ticks_ms(), t0) >= _NOTIFY_STALL_MS:
                return False
            await asyncio.sleep_ms(wait)  # other tasks run meanwhile
            if wait < _NOTIFY_BACKOFF_MAX_MS:
                wait <<= 1
        return False
