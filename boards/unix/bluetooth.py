# keyhook unix board: a stand-in for MicroPython's `bluetooth` module (ESP32/NimBLE flavour).
#
# Keeps the documented semantics of bluetooth.BLE that the firmware relies on: the singleton,
# active()/config(), irq(handler) with the real event numbers and data tuples (addr is a
# memoryview valid only during the handler), 20-byte default value buffers (remote writes
# truncated; local writes grow them), gatts_set_buffer(handle, len, append), notifications
# cut to MTU - 3, the MTU negotiated by the central (_IRQ_MTU_EXCHANGED), advertising that
# stops when a central connects, gap_disconnect. Traffic goes over the virtual radio
# (_vradio); IRQs run in the main thread as scheduled callbacks, one per radio event, in
# order, and a write is acknowledged to the central after the handler returned (as ESP32's
# synchronous NimBLE events do). Peripheral role and GATT server only.
import json
import struct
import sys
from micropython import const

import _vradio as _r

FLAG_READ = const(0x0002)
FLAG_WRITE_NO_RESPONSE = const(0x0004)
FLAG_WRITE = const(0x0008)
FLAG_NOTIFY = const(0x0010)
FLAG_INDICATE = const(0x0020)

_IRQ_CENTRAL_CONNECT = const(1)
_IRQ_CENTRAL_DISCONNECT = const(2)
_IRQ_GATTS_WRITE = const(3)
_IRQ_GATTS_INDICATE_DONE = const(20)
_IRQ_MTU_EXCHANGED = const(21)

_DEFAULT_ATTR_LEN = const(20)
_ADV_MAX = const(31)
_MTU_MIN = const(23)
_MTU_MAX = const(517)

_EPERM = const(1)
_ENOMEM = const(12)
_EBUSY = const(16)
_ENODEV = const(19)
_EINVAL = const(22)
_ENOTCONN = const(107)

_ATT_INVALID_HANDLE = const(0x01)
_ATT_READ_NOT_PERMITTED = const(0x02)
_ATT_WRITE_NOT_PERMITTED = const(0x03)

_REFUSE_NOT_CONNECTABLE = const(1)
_REFUSE_BUSY = const(2)
_REASON_LOCAL = const(0x16)

_BASE = "-0000-1000-8000-00805f9b34fb"


class UUID:
    # 16-bit int, 128-bit string, or 2/4/16 little-endian bytes; bytes(uuid) gives those bytes.
    def __init__(self, value):
        if isinstance(value, UUID):
            b = value._b
        elif isinstance(value, int):
            if not 0 <= value <= 0xFFFF:
                raise ValueError("invalid UUID")
            b = struct.pack("<H", value)
        elif isinstance(value, str):
            h = value.replace("-", "")
            if len(h) != 32:
                raise ValueError("invalid UUID")
            b = bytes(int(h[i:i + 2], 16) for i in range(30, -2, -2))
        else:
            b = bytes(value)
            if len(b) not in (2, 4, 16):
                raise ValueError("invalid UUID")
        self._b = b

    def __eq__(self, other):
        return isinstance(other, UUID) and self._b == other._b

    def __hash__(self):
        return hash(self._b)

    def __iter__(self):
        return iter(self._b)

    def __len__(self):
        return len(self._b)

    def _str128(self):
        if len(self._b) == 16:
            h = "".join("%02x" % x for x in reversed(self._b))
            return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
        return "%08x" % int.from_bytes(self._b, "little") + _BASE

    def __repr__(self):
        if len(self._b) == 16:
            return "UUID('%s')" % self._str128()
        return "UUID(0x%x)" % int.from_bytes(self._b, "little")


class _Attr:
    def __init__(self, flags):
        self.buf = bytearray(_DEFAULT_ATTR_LEN)
        self.len = 0
        self.append = False
        self.flags = flags


_inst = None


class BLE:
    # BLE() returns the singleton.
    def __new__(cls):
        global _inst
        if _inst is None:
            _inst = object.__new__(cls)
            _inst._setup()
        return _inst

    def _setup(self):
        self._active = False
        self._handler = None
        self._cfg = {"gap_name": b"MPY NIMBLE", "mtu": 256, "rxbuf": 128, "addr_mode": 0,
                     "bond": False, "mitm": False, "io": 3, "le_secure": False}
        self._db = {}
        self._cccd = {}  # cccd handle -> value handle
        self._table = b"{}"
        self._adv = b""
        self._resp = b""
        self._adv_on = False
        self._connectable = False
        self._central = None  # [sock, conn_handle, addr_type, addr, mtu, subscriptions]
        self._next_conn = 0
        self._addr_buf = bytearray(6)
        self._ep = None

    # --- configuration ---
    def active(self, *args):
        if args:
            on = bool(args[0])
            if on and not self._active:
                self._ep = _r.endpoint()
                if self._ep:
                    self._hook(self._ep)
                self._active = True
            elif not on and self._active:
                self._adv_on = False
                self._publish()
                c = self._central
                if c:
                    try:
                        c[0].send(bytes((_r.OP_DEV_DISCONNECT, _REASON_LOCAL)))
                    except OSError:
                        pass
                    self._central = None
                self._active = False
        return self._active

    def config(self, *args, **kw):
        if args:
            if len(args) != 1 or kw:
                raise TypeError("config takes one name or keywords")
            name = args[0]
            if name == "mac":
                self._need_active()
                return (0, _r.ble_address())
            if name not in self._cfg:
                raise ValueError("unknown config param")
            return self._cfg[name]
        for k, v in kw.items():
            if k == "mtu":
                if not _MTU_MIN <= v <= _MTU_MAX:
                    raise ValueError("invalid MTU")
            elif k == "gap_name":
                v = v.encode() if isinstance(v, str) else bytes(v)
            elif k not in self._cfg:
                raise ValueError("unknown config param")
            self._cfg[k] = v

    def irq(self, handler):
        self._handler = handler

    def _need_active(self):
        if not self._active:
            raise OSError(_ENODEV)

    # --- advertising ---
    def gap_advertise(self, interval_us, adv_data=None, *, resp_data=None, connectable=True):
        self._need_active()
        if interval_us is None:
            self._adv_on = False
        else:
            if adv_data is not None:
                adv_data = bytes(adv_data)
                if len(adv_data) > _ADV_MAX:
                    raise OSError(_EINVAL)
                self._adv = adv_data
            if resp_data is not None:
                resp_data = bytes(resp_data)
                if len(resp_data) > _ADV_MAX:
                    raise OSError(_EINVAL)
                self._resp = resp_data
            self._adv_on = True
            self._connectable = bool(connectable)
        self._publish()

    def _publish(self):
        ep = self._ep
        if not ep:
            return
        if not (self._active and self._adv_on):
            ep.adv[0] = None
            return
        rssi = _r.rssi() & 0xFF
        # ADV_IND; non-connectable: ADV_SCAN_IND with a scan response, else ADV_NONCONN_IND
        adv_type = 0 if self._connectable else (2 if self._resp else 3)
        ep.adv[0] = (bytes((_r.OP_ADV, 0)) + _r.ble_address() + bytes((adv_type, rssi, len(self._adv)))
                     + self._adv + self._resp)

    # --- GATT server ---
    def gatts_register_services(self, services):
        self._need_active()
        if self._adv_on:
            raise OSError(_EBUSY)
        self._db = {}
        self._cccd = {}
        h = 1
        out = []
        table = []
        for svc in services:
            suuid, chars = svc[0], svc[1]
            s = {"uuid": UUID(suuid)._str128(), "handle": h, "chars": []}
            h += 1
            handles = []
            for ch in chars:
                cuuid, flags = ch[0], ch[1]
                c = {"uuid": UUID(cuuid)._str128(), "handle": h, "value": h + 1, "flags": flags, "descs": []}
                vh = h + 1
                h += 2
                self._db[vh] = _Attr(flags)
                handles.append(vh)
                if flags & (FLAG_NOTIFY | FLAG_INDICATE):
                    c["descs"].append({"uuid": "00002902" + _BASE, "handle": h})
                    self._cccd[h] = vh
                    h += 1
                for d in (ch[2] if len(ch) > 2 else ()):
                    c["descs"].append({"uuid": UUID(d[0])._str128(), "handle": h})
                    self._db[h] = _Attr(d[1])
                    handles.append(h)
                    h += 1
                s["chars"].append(c)
            s["end"] = h - 1
            table.append(s)
            out.append(tuple(handles))
        self._table = json.dumps({"services": table}).encode()
        return tuple(out)

    def _attr(self, handle):
        a = self._db.get(handle)
        if a is None:
            raise OSError(_EINVAL)
        return a

    def gatts_read(self, value_handle):
        self._need_active()
        a = self._attr(value_handle)
        v = bytes(a.buf[:a.len])
        if a.append:
            a.len = 0
        return v

    def gatts_write(self, value_handle, data, send_update=False):
        self._need_active()
        a = self._attr(value_handle)
        data = bytes(data)
        if len(data) > len(a.buf):  # a local write grows the buffer
            a.buf = bytearray(len(data))
        a.buf[:len(data)] = data
        a.len = len(data)
        c = self._central
        if send_update and c and c[5].get(value_handle):
            self._send_value(c, value_handle, data, c[5][value_handle] & 2)

    def gatts_set_buffer(self, value_handle, len_, append=False):
        self._need_active()
        a = self._attr(value_handle)
        a.buf = bytearray(len_)
        a.len = 0
        a.append = bool(append)

    def gatts_notify(self, conn_handle, value_handle, data=None):
        self._need_active()
        c = self._conn(conn_handle)
        if data is None:
            a = self._attr(value_handle)
            data = a.buf[:a.len]
        self._send_value(c, value_handle, data, False)

    def gatts_indicate(self, conn_handle, value_handle, data=None):
        self._need_active()
        c = self._conn(conn_handle)
        if data is None:
            a = self._attr(value_handle)
            data = a.buf[:a.len]
        self._send_value(c, value_handle, data, True)

    def _conn(self, conn_handle):
        c = self._central
        if c is None or c[1] != conn_handle:
            raise OSError(_ENOTCONN)
        return c

    def _send_value(self, c, handle, data, indicate):
        # at most MTU - 3 bytes travel (NimBLE truncates the rest)
        payload = bytes(memoryview(data)[:c[4] - 3])
        op = _r.OP_INDICATE if indicate else _r.OP_NOTIFY
        try:
            c[0].send(struct.pack(">BH", op, handle) + payload)
        except OSError as e:
            if e.errno == 11:  # the central's queue is full: out of buffers
                raise OSError(_ENOMEM)
            raise OSError(_ENOTCONN)

    def gap_disconnect(self, conn_handle):
        self._need_active()
        c = self._central
        if c is None or c[1] != conn_handle:
            return False
        try:
            c[0].send(bytes((_r.OP_DEV_DISCONNECT, _REASON_LOCAL)))
        except OSError:
            pass
        self._drop(c, False)
        return True

    # --- radio side (main thread, from _vradio) ---
    def _hook(self, ep):
        ep.on(_r.OP_CONNECT, self._on_connect)
        ep.on(_r.OP_MTU_REQ, self._on_mtu)
        ep.on(_r.OP_WRITE_REQ, self._on_write)
        ep.on(_r.OP_WRITE_CMD, self._on_write)
        ep.on(_r.OP_READ_REQ, self._on_read)
        ep.on(_r.OP_CONFIRM, self._on_confirm)
        ep.on(_r.OP_DISCONNECT, self._on_gone)
        ep.on(_r.OP_CLOSED, self._on_gone)

    def _irq(self, event, data):
        h = self._handler
        if h is None:
            return None
        try:
            return h(event, data)
        except Exception as e:
            print("Uncaught exception in IRQ callback handler")
            sys.print_exception(e)

    def _irq_addr(self, event, conn, addr_type, addr):
        b = self._addr_buf
        b[:] = addr
        self._irq(event, (conn, addr_type, memoryview(b)))
        for i in range(6):  # only valid during the handler, as on the real port
            b[i] = 0

    def _on_connect(self, sock, msg):
        if not (self._active and self._adv_on and self._connectable):
            sock.send(bytes((_r.OP_REFUSE, _REFUSE_NOT_CONNECTABLE)))
            return
        if self._central:
            sock.send(bytes((_r.OP_REFUSE, _REFUSE_BUSY)))
            return
        conn = self._next_conn
        self._next_conn = (conn + 1) & 0x7FF
        c = [sock, conn, msg[1], bytes(msg[2:8]), _MTU_MIN, {}]
        self._central = c
        self._adv_on = False  # advertising stops when a central connects
        self._publish()
        try:
            sock.send(struct.pack(">BH", _r.OP_ACCEPT, conn) + self._table)
        except OSError:
            self._drop(c, True)
            return
        self._irq_addr(_IRQ_CENTRAL_CONNECT, conn, c[2], c[3])

    def _mine(self, sock):
        c = self._central
        return c if c and c[0] is sock else None

    def _on_mtu(self, sock, msg):
        c = self._mine(sock)
        if not c:
            return
        mine = self._cfg["mtu"]
        sock.send(struct.pack(">BH", _r.OP_MTU_RSP, mine))
        c[4] = max(_MTU_MIN, min(struct.unpack(">H", msg[1:3])[0], mine))
        self._irq(_IRQ_MTU_EXCHANGED, (c[1], c[4]))

    def _on_write(self, sock, msg):
        c = self._mine(sock)
        if not c:
            return
        handle = struct.unpack(">H", msg[1:3])[0]
        data = memoryview(msg)[3:]
        err = 0
        fire = False
        if handle in self._cccd:
            c[5][self._cccd[handle]] = data[0] if len(data) else 0
        else:
            a = self._db.get(handle)
            if a is None:
                err = _ATT_INVALID_HANDLE
            elif not a.flags & (FLAG_WRITE | FLAG_WRITE_NO_RESPONSE):
                err = _ATT_WRITE_NOT_PERMITTED
            else:
                off = a.len if a.append else 0
                n = min(len(a.buf), off + len(data)) - off  # longer writes are truncated
                a.buf[off:off + n] = data[:n]
                a.len = off + n
                fire = True
        if fire:
            self._irq(_IRQ_GATTS_WRITE, (c[1], handle))
        if msg[0] == _r.OP_WRITE_REQ and self._central is c:
            sock.send(struct.pack(">BHB", _r.OP_WRITE_RSP, handle, err))

    def _on_read(self, sock, msg):
        c = self._mine(sock)
        if not c:
            return
        handle = struct.unpack(">H", msg[1:3])[0]
        if handle in self._cccd:
            v = struct.pack("<H", c[5].get(self._cccd[handle], 0))
            err = 0
        else:
            a = self._db.get(handle)
            if a is None:
                v, err = b"", _ATT_INVALID_HANDLE
            elif not a.flags & FLAG_READ:
                v, err = b"", _ATT_READ_NOT_PERMITTED
            else:
                v, err = bytes(a.buf[:a.len]), 0
        sock.send(struct.pack(">BHB", _r.OP_READ_RSP, handle, err) + v[:c[4] - 1])

    def _on_confirm(self, sock, msg):
        c = self._mine(sock)
        if c:
            self._irq(_IRQ_GATTS_INDICATE_DONE, (c[1], struct.unpack(">H", msg[1:3])[0], 0))

    def _on_gone(self, sock, msg):
        c = self._mine(sock)
        if c:
            self._drop(c, True)

    def _drop(self, c, now):
        # the connection is over: _IRQ_CENTRAL_DISCONNECT, now (from the radio) or scheduled
        self._central = None
        if now:
            self._irq_addr(_IRQ_CENTRAL_DISCONNECT, c[1], c[2], c[3])
        else:
            import micropython
            try:
                micropython.schedule(lambda _: self._irq_addr(_IRQ_CENTRAL_DISCONNECT, c[1], c[2], c[3]), None)
            except RuntimeError:  # schedule queue full
                self._irq_addr(_IRQ_CENTRAL_DISCONNECT, c[1], c[2], c[3])
