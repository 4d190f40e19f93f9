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
#
# Where the ESP32 is less kind, so is this module (sources: micropython extmod/modbluetooth.c
# and extmod/nimble/modbluetooth_nimble.c, v1.29; boards/unix/README.md lists what it cannot
# imitate):
# - a handler that raises is reported once and set to None for good
#   (invoke_irq_handler_run_protected);
# - gatts_notify only queues into a bounded pool that empties at the link's pace and raises
#   OSError(ENOMEM) when it is full (ble_hs_mbuf_from_flat -> MP_ENOMEM); gap_disconnect
#   discards what is still queued;
# - write commands that arrive while the handler is late wait in a bounded pool; one more is
#   lost (_vradio);
# - gatts_read of an unknown handle returns b'' (the error of mp_bluetooth_gatts_read is
#   ignored); advertising data over 31 bytes fails with NimBLE's BLE_ERR_INV_HCI_CMD_PARMS
#   passed through as OSError(-18); config('rxbuf') does not exist with synchronous events;
#   services, characteristics and descriptors need UUID objects;
# - there are IRQs the firmware does not ask for (_IRQ_CONNECTION_UPDATE after a connect,
#   _IRQ_GATTS_READ_REQUEST before each read, whose non-zero result refuses the read), and the
#   connection handle of the next central is the one the last central had.
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
_IRQ_GATTS_READ_REQUEST = const(4)
_IRQ_GATTS_INDICATE_DONE = const(20)
_IRQ_MTU_EXCHANGED = const(21)
_IRQ_CONNECTION_UPDATE = const(27)

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
_BLE_ERR_INV_HCI_CMD_PARMS = const(0x12)  # NimBLE's ble_gap_adv_set_data for data over 31 bytes

_ATT_INVALID_HANDLE = const(0x01)
_ATT_READ_NOT_PERMITTED = const(0x02)
_ATT_WRITE_NOT_PERMITTED = const(0x03)

_REFUSE_NOT_CONNECTABLE = const(1)
_REFUSE_BUSY = const(2)
_REASON_LOCAL = const(0x16)

_BASE = "-0000-1000-8000-00805f9b34fb"
_CONN_HANDLE = const(1)


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
        # no "rxbuf": it exists only without synchronous events, and the ESP32 has them
        self._cfg = {"gap_name": b"MPY ESP32", "mtu": 256, "addr_mode": 0,
                     "bond": False, "mitm": False, "io": 3, "le_secure": False}
        self._db = {}
        self._cccd = {}  # cccd handle -> value handle
        self._table = b"{}"
        self._adv = b""
        self._resp = b""
        self._adv_on = False
        self._connectable = False
        self._central = None  # [sock, conn_handle, addr_type, addr, mtu, subscriptions]
        self._addr_buf = bytearray(6)
        self._ep = None
        f = _r.faults()
        self._read_fault = f.get("irq-memoryerror", 0)
        self._reads = 0

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
                    self._discard(c[0])
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
            if name not in ("gap_name", "mtu"):  # the others can be set, not read
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
        if handler is not None and not callable(handler):
            raise ValueError("invalid handler")
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
                if len(adv_data) > _ADV_MAX:  # not in ble_hs_err_to_errno's table: passed as -code
                    self._adv_on = False
                    self._publish()
                    raise OSError(-_BLE_ERR_INV_HCI_CMD_PARMS)
                self._adv = adv_data
            if resp_data is not None:
                resp_data = bytes(resp_data)
                if len(resp_data) > _ADV_MAX:
                    self._adv_on = False
                    self._publish()
                    raise OSError(-_BLE_ERR_INV_HCI_CMD_PARMS)
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
            if not isinstance(suuid, UUID):
                raise ValueError("invalid service UUID")
            s = {"uuid": suuid._str128(), "handle": h, "chars": []}
            h += 1
            handles = []
            for ch in chars:
                cuuid, flags = ch[0], ch[1]
                if not isinstance(cuuid, UUID):
                    raise ValueError("invalid characteristic UUID")
                c = {"uuid": cuuid._str128(), "handle": h, "value": h + 1, "flags": flags, "descs": []}
                vh = h + 1
                h += 2
                self._db[vh] = _Attr(flags)
                handles.append(vh)
                if flags & (FLAG_NOTIFY | FLAG_INDICATE):
                    c["descs"].append({"uuid": "00002902" + _BASE, "handle": h})
                    self._cccd[h] = vh
                    h += 1
                for d in (ch[2] if len(ch) > 2 else ()):
                    if not isinstance(d[0], UUID):
                        raise ValueError("invalid descriptor UUID")
                    c["descs"].append({"uuid": d[0]._str128(), "handle": h})
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
        # always a new bytes object (mp_obj_new_bytes); b'' for an unknown handle or while
        # inactive: bluetooth_ble_gatts_read ignores the error of mp_bluetooth_gatts_read
        self._reads += 1
        if self._reads == self._read_fault:  # fault irq-memoryerror:N
            raise MemoryError("memory allocation failed (fault irq-memoryerror:%d)" % self._reads)
        a = self._db.get(value_handle) if self._active else None
        if a is None:
            return b""
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
            try:
                self._send_value(c, value_handle, data, c[5][value_handle] & 2)
            except OSError:
                pass  # ble_gatts_chr_updated: a subscriber that cannot be told misses it
        return len(data)

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

    def _discard(self, sock):
        if self._ep:
            self._ep.discard(sock)

    def _conn(self, conn_handle):
        c = self._central
        if c is None or c[1] != conn_handle:
            raise OSError(_ENOTCONN)
        return c

    def _send_value(self, c, handle, data, indicate):
        # at most MTU - 3 bytes travel (NimBLE truncates the rest)
        payload = bytes(memoryview(data)[:c[4] - 3])
        if not indicate:
            # queued in the notify pool; OSError(ENOMEM) while it is full (modbluetooth_nimble.c:
            # mp_bluetooth_gatts_notify_indicate returns MP_ENOMEM when ble_hs_mbuf_from_flat fails)
            if not self._ep.notify(c[0], struct.pack(">BH", _r.OP_NOTIFY, handle) + payload):
                raise OSError(_ENOMEM)
            return
        try:
            c[0].send(struct.pack(">BH", _r.OP_INDICATE, handle) + payload)
        except OSError as e:
            if e.errno == 11:  # the central's queue is full: out of buffers
                raise OSError(_ENOMEM)
            raise OSError(_ENOTCONN)

    def gap_disconnect(self, conn_handle):
        self._need_active()
        c = self._central
        if c is None or c[1] != conn_handle:
            return False
        # NimBLE tears the connection down; notifications still in the pool never go on air
        self._discard(c[0])
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
            # as invoke_irq_handler_run_protected (extmod/modbluetooth.c): print it, then the
            # handler is None for good; the device hears nothing more until irq() is called again
            print("Unhandled exception in IRQ callback handler")
            sys.print_exception(e)
            self._handler = None
        return None

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
        # one central at a time, so the controller hands out the same handle every time
        conn = _CONN_HANDLE
        if len(msg) >= 11:  # the central's link model: interval (1.25 ms units), packets per event
            iv, pk = struct.unpack(">HB", msg[8:11])
            self._ep.link = (iv * 1250, max(1, pk))
        else:
            self._ep.link = (0, 1)
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
        if self._central is c:
            # centrals often update the connection parameters at once; NimBLE reports it
            # (BLE_GAP_EVENT_CONN_UPDATE): interval 24 x 1.25 ms, latency 0, timeout 400 x 10 ms
            self._irq(_IRQ_CONNECTION_UPDATE, (conn, 24, 0, 400, 0))

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
                # the handler may refuse the read with a non-zero result (characteristic_access_cb)
                r = self._irq(_IRQ_GATTS_READ_REQUEST, (c[1], handle))
                if isinstance(r, int) and r:
                    v, err = b"", r & 0xFF
                else:
                    v, err = bytes(a.buf[:a.len]), 0
        if self._central is not c:
            return
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
        self._discard(c[0])
        self._ep.link = (0, 1)
        if now:
            self._irq_addr(_IRQ_CENTRAL_DISCONNECT, c[1], c[2], c[3])
        else:
            import micropython
            try:
                micropython.schedule(lambda _: self._irq_addr(_IRQ_CENTRAL_DISCONNECT, c[1], c[2], c[3]), None)
            except RuntimeError:  # schedule queue full
                self._irq_addr(_IRQ_CENTRAL_DISCONNECT, c[1], c[2], c[3])
