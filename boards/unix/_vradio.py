# keyhook unix board: the device's end of the virtual radio.
#
# A simulated device is one SOCK_SEQPACKET Unix socket, <radio dir>/<ADDRESS>.sock, one
# message per packet (wire format: host/keyhook/sim/radio.py). A reader thread plays the
# BLE controller: it accepts centrals, answers scans from the current advertising payload
# itself, and hands every other message to the main thread with micropython.schedule, as
# the ESP32 port hands NimBLE events to Python. The main thread owns everything else:
# handlers run there, and only the main thread closes a socket it was given.
#
# Environment (set by whoever starts the device, e.g. `keyhook sim`):
#   KEYHOOK_RADIO       radio directory; unset: the device has no radio (BLE works, no peers)
#   KEYHOOK_SIM_STATE   state directory; the unique id (so the address) is kept there
#   KEYHOOK_SIM_UID     12 hex digits, the unique id when there is no state directory
#   KEYHOOK_SIM_RSSI    RSSI in dBm that scanners report for this device (default -55)
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
MAX_PACKET = const(2048)
_POLL_MS = const(200)
# The controller hands over at most one write per _WRITE_GAP_US (10000 a second, far more
# than any real BLE link carries), so the firmware's tasks get the CPU between write IRQs
# even when the host sends without a link model.
_WRITE_GAP_US = const(100)
_EADDRINUSE = const(98)

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


class Endpoint:
    def __init__(self, radio_dir, addr):
        self.addr = addr
        self.path = radio_dir + "/" + "".join("%02X" % b for b in addr) + ".sock"
        # adv[0]: the SCAN reply (bytes) or None; the reader thread reads it, main replaces it.
        self.adv = [None]
        self._handlers = {}
        self._run = bytearray(1)
        self._lsock = None
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
        _thread.start_new_thread(self._loop, ())

    def on(self, op, handler):
        # handler(sock, msg) runs in the main thread; msg is None for OP_CLOSED
        self._handlers[op] = handler

    def stop(self):
        self._run[0] = 0

    # --- reader thread: touches only its own poll set and the sockets in it ---
    def _loop(self):
        p = select.poll()
        ls = self._lsock
        p.register(ls, select.POLLIN)
        run = self._run
        while run[0]:
            for ev in p.poll(_POLL_MS):
                s = ev[0]
                if s is ls:
                    try:
                        c = ls.accept()[0]
                    except OSError:
                        continue
                    c.setblocking(False)
                    p.register(c, select.POLLIN)
                    continue
                try:
                    msg = s.recv(MAX_PACKET)
                except OSError as e:
                    if e.errno == 11:  # EAGAIN
                        continue
                    msg = b""
                if not msg:
                    p.unregister(s)
                    self._post(s, None)
                    continue
                if msg[0] == OP_SCAN:
                    r = self.adv[0]
                    try:
                        s.send(r if r else bytes((OP_NOT_ADVERTISING,)))
                    except OSError:
                        pass
                    continue
                self._post(s, msg)
                if msg[0] == OP_WRITE_CMD or msg[0] == OP_WRITE_REQ:
                    time.sleep_us(_WRITE_GAP_US)
        try:
            ls.close()
            os.remove(self.path)
        except OSError:
            pass

    def _post(self, s, msg):
        while self._run[0]:
            try:
                micropython.schedule(self._deliver, (s, msg))
                return
            except RuntimeError:  # schedule queue full: back-pressure the radio
                time.sleep_ms(1)

    # --- main thread ---
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
            s.close()


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
