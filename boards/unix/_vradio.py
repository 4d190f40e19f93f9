# keyhook unix board: the device's end of the virtual radio.
#
# A simulated device is one SOCK_SEQPACKET Unix socket, <radio dir>/<ADDRESS>.sock, one
# message per packet (wire format: host/keyhook/sim/radio.py). A reader thread plays the
# BLE controller: it accepts centrals, answers scans from the current advertising payload
# itself, and hands every other message to the main thread with micropython.schedule, as
# the ESP32 port hands NimBLE events to Python. The main thread owns everything else:
# handlers run there, and only the main thread closes a socket it was given.
#
# The controller thread also keeps NimBLE's two fixed buffer pools (see boards/unix/README.md):
# - receive: at most RX_POOL writes (commands and requests) wait for the main thread; one more
#   is dropped, as ESP-IDF's NimBLE transport drops incoming ACL data when its buffers are used
#   up ("failed to allocate ACL buffers", CONFIG_BT_NIMBLE_TRANSPORT_ACL_FROM_LL_COUNT). A
#   central that keeps to ATT has one request outstanding; one that sends requests without
#   waiting for the answers loses them here, and cannot fill the GC heap with them.
# - notify: at most NOTIFY_POOL notifications wait to go on air (the msys mbufs that
#   ble_hs_mbuf_from_flat takes, CONFIG_BT_NIMBLE_MSYS_1_BLOCK_COUNT); they leave at the
#   link's pace, at most `packets` per connection interval, the central's LinkModel sent in
#   CONNECT. gatts_notify raises OSError(ENOMEM) while the pool is full.
#
# Environment (set by whoever starts the device, e.g. `keyhook sim`):
#   KEYHOOK_RADIO       radio directory; unset: the device has no radio (BLE works, no peers)
#   KEYHOOK_SIM_STATE   state directory; the unique id (so the address) is kept there
#   KEYHOOK_SIM_UID     12 hex digits, the unique id when there is no state directory
#   KEYHOOK_SIM_RSSI    RSSI in dBm that scanners report for this device (default -55)
#   KEYHOOK_SIM_FAULTS  faults to inject, comma-separated (host/keyhook/sim/faults.py):
#                       irq-memoryerror:N  the N-th gatts_read raises MemoryError
#                       link-stall:MS@N    nothing goes on air for MS ms after the N-th notification
#                       drop-write:N       the N-th write command from the central is lost
import _thread
import micropython
import os
import select
import socket
import struct
import sys
import time
from micropython import const

_AF_UNIX = const(1)
_SOCK_SEQPACKET = const(5)
# The longest message a central sends: a write request, op(1) handle(2) and a value of at most
# 512 bytes (an attribute's longest, Core Specification Vol 3 Part F 3.2.9). Each receive needs a
# buffer of this size for a moment: a real controller's buffers are not in the GC heap, so this
# one is kept no larger than a packet can be (2048 made the simulation, not the firmware, the
# first to run out of memory in a small heap).
MAX_PACKET = const(3 + 512)
_POLL_MS = const(200)
# Without a link model (the central sends as fast as it can) the controller takes at most one
# write per _WRITE_GAP_US: 800 a second, the pace of a fast real link (7.5 ms connection
# interval, 6 packets per event). Under a LinkModel the central paces its writes itself.
_WRITE_GAP_US = const(1250)
# Connection-event tick of the notify pool while a central is connected and the link model is off
_TICK_MS = const(3)
RX_POOL = const(24)  # ESP-IDF 5.x default of CONFIG_BT_NIMBLE_TRANSPORT_ACL_FROM_LL_COUNT
NOTIFY_POOL = const(12)  # CONFIG_BT_NIMBLE_MSYS_1_BLOCK_COUNT as NimBLE-Arduino ships it for the ESP32
_INQ_SLOTS = const(64)  # the receive pool's write commands and the link's other messages
_DISCARDED = (None, None)  # a notify-pool slot whose connection is over
_EADDRINUSE = const(98)
_EAGAIN = const(11)

# Opcodes, central -> device
OP_SCAN = const(0x01)
OP_CONNECT = const(0x02)
OP_MTU_REQ = const(0x03)
OP_WRITE_REQ = const(0x04)
OP_WRITE_CMD = const(0x05)
OP_READ_REQ = const(0x06)
OP_DISCONNECT = const(0x07)
OP_PRESS = const(0x08)
OP_CONFIRM = const(0x09)
# Opcodes, device -> central
OP_NOT_ADVERTISING = const(0x80)
OP_ADV = const(0x81)
OP_ACCEPT = const(0x82)
OP_REFUSE = const(0x83)
OP_MTU_RSP = const(0x84)
OP_WRITE_RSP = const(0x85)
OP_READ_RSP = const(0x86)
OP_PRESS_RSP = const(0x88)
OP_NOTIFY = const(0x90)
OP_INDICATE = const(0x91)
OP_DEV_DISCONNECT = const(0x92)
# Pseudo opcode for a central whose socket closed (never on the wire)
OP_CLOSED = const(0x100)


def sockaddr(path):
    # struct sockaddr_un for the unix port's socket module (it takes raw sockaddr bytes)
    return struct.pack("<H", _AF_UNIX) + path.encode() + b"\x00"


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _state_dir():
    return os.getenv("KEYHOOK_SIM_STATE")


def unique_id():
    # 6 bytes, the same for the same state directory (like an ESP32's factory MAC)
    d = _state_dir()
    if d:
        path = d + "/unique_id"
        try:
            with open(path, "rb") as f:
                uid = f.read()
            if len(uid) == 6:
                return uid
        except OSError:
            pass
        uid = b"\x24\x6f" + os.urandom(4)
        try:
            os.mkdir(d)
        except OSError:
            pass
        with open(path, "wb") as f:
            f.write(uid)
        return uid
    h = os.getenv("KEYHOOK_SIM_UID")
    if h and len(h) == 12:
        return bytes(int(h[i:i + 2], 16) for i in range(0, 12, 2))
    return b"\x24\x6f\x28\x00\x00\x01"


def ble_address():
    # The ESP32's Bluetooth address is its base MAC + 2.
    uid = unique_id()
    return uid[:5] + bytes(((uid[5] + 2) & 0xFF,))


def address_str(addr):
    return ":".join("%02X" % b for b in addr)


def rssi():
    try:
        return int(os.getenv("KEYHOOK_SIM_RSSI") or "-55")
    except ValueError:
        return -55


def faults():
    # KEYHOOK_SIM_FAULTS as {"irq-memoryerror": N, "link-stall": (MS, N), "drop-write": N};
    # ValueError for a spec it does not know (the host checks them first)
    out = {}
    for spec in (os.getenv("KEYHOOK_SIM_FAULTS") or "").split(","):
        spec = spec.strip()
        if not spec:
            continue
        name, _, arg = spec.partition(":")
        if name == "link-stall":
            ms, _, n = arg.partition("@")
            out[name] = (int(ms), int(n))
        elif name in ("irq-memoryerror", "drop-write"):
            out[name] = int(arg)
        else:
            raise ValueError("unknown fault " + spec)
    return out


class Endpoint:
    def __init__(self, radio_dir, addr):
        self.addr = addr
        self.path = radio_dir + "/" + "".join("%02X" % b for b in addr) + ".sock"
        # adv[0]: the SCAN reply (bytes) or None; the reader thread reads it, main replaces it.
        self.adv = [None]
        self._handlers = {}
        self._run = bytearray(1)
        self._lsock = None
        self._lock = _thread.allocate_lock()  # guards the queues below (the unix port has no GIL)
        # The two threads hand messages over in rings of fixed slots. The unix port runs threads
        # without a GIL, and its collector marks while the other thread runs on: a list that one
        # thread shifts (pop(0)) while the other's collection walks it can hide an element from
        # the marking, which is then freed under its user (a crash in a scheduled _drain, seen
        # with frequent collections). So nothing is ever moved: a producer fills an empty slot,
        # and a consumer empties a slot only after it is done with what the slot held.
        self._inq = [None] * _INQ_SLOTS  # (sock, msg) for the main thread, in order
        self._in_w = 0  # the next slot the reader thread fills
        self._in_r = 0  # the next slot the main thread delivers
        self._sched = False  # a drain of _inq is scheduled
        # bound once: scheduling it again must allocate nothing (a drain that met a MemoryError
        # there would leave _sched set with no drain scheduled, and the radio deaf)
        self._drain_cb = self._drain
        self._rx_n = 0  # write commands in _inq: the receive pool in use
        self._txq = [None] * (NOTIFY_POOL + 1)  # (sock, packet) waiting to go on air: the notify pool
        self._tx_w = 0
        self._tx_r = 0
        self.link = (0, 1)  # the connected central's link model: (interval_us, packets); 0: none
        self.dropped = 0  # write commands lost so far
        f = faults()
        self._drop_at = f.get("drop-write", 0)
        self._stall = f.get("link-stall", (0, 0))
        self._writes = 0  # write commands received
        self._aired = 0  # notifications sent
        self._stall_until = None
        self._next_event = 0  # ticks_us of the next connection event (a stale value means now)
        try:
            os.mkdir(radio_dir)
        except OSError:
            pass
        if _exists(self.path):
            probe = socket.socket(_AF_UNIX, _SOCK_SEQPACKET)
            try:
                probe.connect(sockaddr(self.path))
                live = True
            except OSError:
                live = False
            probe.close()
            if live:
                raise OSError(_EADDRINUSE, "another device with address %s is on the radio" % address_str(addr))
            os.remove(self.path)
        s = socket.socket(_AF_UNIX, _SOCK_SEQPACKET)
        s.bind(sockaddr(self.path))
        s.listen(4)
        self._lsock = s
        self._run[0] = 1
        _thread.start_new_thread(self._guarded_loop, ())

    def on(self, op, handler):
        # handler(sock, msg) runs in the main thread; msg is None for OP_CLOSED
        self._handlers[op] = handler

    def stop(self):
        self._run[0] = 0

    # --- reader thread: touches only its own poll set and the sockets in it ---
    def _guarded_loop(self):
        # The simulation's radio lives in the firmware's GC heap (a real radio's buffers do not).
        # If it cannot allocate, the simulated device is dead: end the whole process, saying so,
        # rather than leave a device that advertises nothing and answers nobody (an exception in
        # a thread would end only the thread; a scheduled callback's is only printed).
        try:
            self._loop()
        except MemoryError:
            print("keyhook sim: the simulated radio ran out of memory (GC heap too small for the "
                  "firmware and the simulation); the device stops")
            os.system("kill -9 $PPID")
        except SystemExit:  # the host that runs this simulated device is gone
            os.system("kill -9 $PPID")

    @staticmethod
    def _host_gone():
        # KEYHOOK_SIM_HOST_PID: the process that runs this simulated device (keyhook.sim.device).
        # It may die without stopping the firmware (killed with SIGKILL, say); then the firmware,
        # in a session of its own, would run on as an orphan that still advertises.
        pid = os.getenv("KEYHOOK_SIM_HOST_PID")
        if not pid:
            return False
        try:
            with open("/proc/" + pid + "/stat") as f:
                state = f.read().split(")")[-1].split()[0]
        except (OSError, IndexError):
            return True
        return state in ("Z", "X")  # killed, not yet reaped by its parent

    def _loop(self):
        p = select.poll()
        ls = self._lsock
        p.register(ls, select.POLLIN)
        run = self._run
        centrals = 0
        checked = time.ticks_ms()
        while run[0]:
            if time.ticks_diff(time.ticks_ms(), checked) > 1000:
                checked = time.ticks_ms()
                if self._host_gone():
                    raise SystemExit  # (nothing printed: the host read the console, and is gone)
            tick = _POLL_MS
            if centrals:
                iv = self.link[0]
                tick = max(1, iv // 1000) if iv else _TICK_MS
            for ev in p.poll(tick):
                s = ev[0]
                if s is ls:
                    try:
                        c = ls.accept()[0]
                    except OSError:
                        continue
                    c.setblocking(False)
                    p.register(c, select.POLLIN)
                    centrals += 1
                    continue
                try:
                    msg = s.recv(MAX_PACKET)
                except OSError as e:
                    if e.errno == _EAGAIN:
                        continue
                    msg = b""
                if not msg:
                    p.unregister(s)
                    centrals -= 1
                    self._post(s, None)
                    continue
                if msg[0] == OP_SCAN:
                    r = self.adv[0]
                    try:
                        s.send(r if r else bytes((OP_NOT_ADVERTISING,)))
                    except OSError:
                        pass
                    continue
                if msg[0] == OP_WRITE_CMD:
                    self._writes += 1
                    if self._writes == self._drop_at:  # fault drop-write:N
                        self.dropped += 1
                        print("vradio: write command %d lost (fault drop-write)" % self._writes)
                        continue
                self._post(s, msg)
                if (msg[0] == OP_WRITE_CMD or msg[0] == OP_WRITE_REQ) and not self.link[0]:
                    time.sleep_us(_WRITE_GAP_US)
            if self._in_r != self._in_w:  # a drain that could not be scheduled
                self._kick()
            self._air()
        try:
            ls.close()
            os.remove(self.path)
        except OSError:
            pass

    def _kick(self):
        # schedule a drain of _inq unless one is scheduled (a drain that met the lock taken
        # and the schedule queue full cleared _sched: a drain is then for this thread to ask for)
        if not self._sched:
            self._sched = True
            try:
                micropython.schedule(self._drain_cb, None)
            except RuntimeError:
                self._sched = False

    def _air(self):
        # one connection event: up to `packets` queued notifications go on air (all of them
        # without a link model), none while the link stalls (fault link-stall:MS@N)
        if self._tx_r == self._tx_w:
            return
        now = time.ticks_ms()
        if self._stall_until is not None:
            if time.ticks_diff(self._stall_until, now) > 0:
                return
            self._stall_until = None
        iv, budget = self.link
        if iv:
            # Wait while the next event is at most one interval ahead; any other difference is
            # an unset (0) or stale mark. Ticks compare only within half their period: 2**29 us
            # (about 9 min) on a 32-bit port, where `ticks_diff(t, 0) < 0` for half of every
            # period (a plain `ticks_diff(t, next) < 0` held a fresh device's notifications
            # back for up to 9 min: tests/ble/test_radio_ticks.py).
            t = time.ticks_us()
            if 0 < time.ticks_diff(self._next_event, t) <= iv:
                return
            self._next_event = time.ticks_add(t, iv)
        else:
            budget = NOTIFY_POOL
        lk = self._lock
        lk.acquire()
        try:
            q = self._txq
            n = len(q)
            while self._tx_r != self._tx_w and budget > 0:
                s, pkt = q[self._tx_r]
                if s is not None:  # else discarded: its connection is over
                    try:
                        s.send(pkt)
                    except OSError as e:
                        if e.errno == _EAGAIN:  # the central is not reading: try at the next event
                            break
                    budget -= 1
                    self._aired += 1
                q[self._tx_r] = None
                self._tx_r = (self._tx_r + 1) % n
                if s is not None and self._aired == self._stall[1]:
                    self._stall_until = time.ticks_add(now, self._stall[0])
                    break
        finally:
            lk.release()

    def _post(self, s, msg):
        # hand a message to the main thread; False if the receive pool was full (write dropped)
        lk = self._lock
        lk.acquire()
        if msg and (msg[0] == OP_WRITE_CMD or msg[0] == OP_WRITE_REQ):
            if self._rx_n >= RX_POOL:
                self.dropped += 1
                lk.release()
                print("vradio: receive pool full, write %s lost" % ("command" if msg[0] == OP_WRITE_CMD else "request"))
                return False
            self._rx_n += 1
        q = self._inq
        while (self._in_w + 1) % len(q) == self._in_r:  # full: wait for the main thread
            lk.release()
            if not self._run[0]:
                return False
            self._kick()  # else, if no drain is on its way, neither thread ever moves again
            time.sleep_ms(1)
            lk.acquire()
        q[self._in_w] = (s, msg)
        self._in_w = (self._in_w + 1) % len(q)
        first = not self._sched
        self._sched = True
        lk.release()
        while first and self._run[0]:
            try:
                micropython.schedule(self._drain_cb, None)
                break
            except RuntimeError:  # schedule queue full: try again
                time.sleep_ms(1)
        return True

    # --- main thread ---
    def notify(self, sock, pkt):
        # queue a notification in the pool; False when the pool is full. The entry is made
        # before the lock is taken: a MemoryError must not leave the radio's lock held
        item = (sock, pkt)
        lk = self._lock
        lk.acquire()
        q = self._txq
        ok = (self._tx_w + 1) % len(q) != self._tx_r
        if ok:
            q[self._tx_w] = item
            self._tx_w = (self._tx_w + 1) % len(q)
        lk.release()
        return ok

    def discard(self, sock):
        # the connection is over: what it still had in the notify pool never goes on air
        lk = self._lock
        lk.acquire()
        q = self._txq
        i = self._tx_r
        while i != self._tx_w:
            if q[i] is not None and q[i][0] is sock:
                q[i] = _DISCARDED
            i = (i + 1) % len(q)
        lk.release()

    def _drain(self, _):
        # A scheduled callback runs between any two bytecodes of the main thread, so this may
        # run inside the main thread's own notify() or discard(), which hold the lock: waiting
        # for it would wait for itself (both threads then hang). It comes back later instead.
        lk = self._lock
        while True:
            if not lk.acquire(0):
                try:
                    micropython.schedule(self._drain_cb, None)
                except RuntimeError:  # the queue is full: the radio thread schedules it again
                    self._sched = False
                return
            if self._in_r == self._in_w:
                self._sched = False
                lk.release()
                return
            item = self._inq[self._in_r]
            if item[1] and (item[1][0] == OP_WRITE_CMD or item[1][0] == OP_WRITE_REQ):
                self._rx_n -= 1  # out of the receive pool: delivered now
            lk.release()
            self._deliver(item)  # the slot holds the item until it is delivered
            lk.acquire()
            self._inq[self._in_r] = None
            self._in_r = (self._in_r + 1) % len(self._inq)
            lk.release()

    def _deliver(self, item):
        s, msg = item
        op = msg[0] if msg else OP_CLOSED
        h = self._handlers.get(op)
        try:
            if h:
                h(s, msg)
        except Exception as e:  # a radio handler must never break the firmware
            print("vradio: error handling op", op)
            sys.print_exception(e)
        if op == OP_CLOSED:
            try:
                s.close()
            except OSError:
                pass


_endpoint = None


def endpoint():
    # The device's endpoint, started on first use; None when there is no radio.
    global _endpoint
    if _endpoint is None:
        radio = os.getenv("KEYHOOK_RADIO")
        if not radio:
            return None
        _endpoint = Endpoint(radio, ble_address())
        if hasattr(sys, "atexit"):
            sys.atexit(_cleanup)
    return _endpoint


def _cleanup():
    # at interpreter exit: leave no socket file behind (a stale one is skipped by scanners)
    if _endpoint:
        _endpoint.stop()
        try:
            os.remove(_endpoint.path)
        except OSError:
            pass
