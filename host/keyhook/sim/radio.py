"""The virtual radio: where simulated keyhook devices and the host meet.

A radio is a directory. Each simulated device (the real firmware on the MicroPython unix
port, with `boards/unix/bluetooth.py`) serves one `AF_UNIX`/`SOCK_SEQPACKET` socket in it,
named after its Bluetooth address: `RADIO/246F28000003.sock`. There is no hub: scanning is
listing the directory and asking each device for its advertisement; connecting is opening
its socket. Stale sockets (a device that crashed) refuse connections and are skipped.

Wire format: one message per packet; byte 0 is the opcode, integers are big-endian.

| op | direction | body |
|---|---|---|
| 0x01 SCAN | central -> device | (none); answered with ADV or NOT_ADVERTISING |
| 0x81 ADV | device -> central | addr_type(1) addr(6) adv_type(1) rssi(1, signed) len(1) adv_data resp_data |
| 0x80 NOT_ADVERTISING | device -> central | (none) |
| 0x02 CONNECT | central -> device | addr_type(1) addr(6) of the central, then its `LinkModel`: interval(2, 1.25 ms units, 0: none) packets per event(1) |
| 0x82 ACCEPT | device -> central | conn_handle(2) GATT table (JSON) |
| 0x83 REFUSE | device -> central | reason(1): 1 not advertising connectable, 2 a central is connected |
| 0x03 MTU_REQ / 0x84 MTU_RSP | both | mtu(2) (each side's own; the MTU is the smaller) |
| 0x04 WRITE_REQ / 0x05 WRITE_CMD | central -> device | handle(2) value |
| 0x85 WRITE_RSP | device -> central | handle(2) att_error(1) |
| 0x06 READ_REQ / 0x86 READ_RSP | both | handle(2) [att_error(1) value] |
| 0x90 NOTIFY / 0x91 INDICATE | device -> central | handle(2) value (at most MTU - 3 bytes) |
| 0x09 CONFIRM | central -> device | handle(2) (an indication was received) |
| 0x07 DISCONNECT / 0x92 DEV_DISCONNECT | either | reason(1); closing the socket is a disconnect too |
| 0x08 PRESS / 0x88 PRESS_RSP | central -> device | pin(1) down(1) (the device's button, not BLE) |

Timing model (`LinkModel`): connection events every `interval_s`; in each event at most
`packets_per_event` packets travel in each direction, each carrying at most MTU - 3 bytes of
ATT payload. A write with response completes at the event after its request. The central's
side applies the model (to its writes and to the notifications it delivers), so the link's
capacity is `packets_per_event * (MTU - 3) / interval_s` bytes per second per direction.
`interval_s = 0` turns the model off (tests). `KEYHOOK_RADIO_LINK` sets the default:
`"interval_ms=15,packets=4"` or `"0"`. The central tells the device its model in CONNECT: the
device's notify pool (boards/unix/_vradio.py) empties at that pace, as NimBLE's does on air.

Devices are started with `device_env(radio, state)` in their environment; a device exits
with `RESET_EXIT_CODE` when the firmware calls `machine.reset()`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
import os
import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

OP_SCAN = 0x01
OP_CONNECT = 0x02
OP_MTU_REQ = 0x03
OP_WRITE_REQ = 0x04
OP_WRITE_CMD = 0x05
OP_READ_REQ = 0x06
OP_DISCONNECT = 0x07
OP_PRESS = 0x08
OP_CONFIRM = 0x09
OP_NOT_ADVERTISING = 0x80
OP_ADV = 0x81
OP_ACCEPT = 0x82
OP_REFUSE = 0x83
OP_MTU_RSP = 0x84
OP_WRITE_RSP = 0x85
OP_READ_RSP = 0x86
OP_PRESS_RSP = 0x88
OP_NOTIFY = 0x90
OP_INDICATE = 0x91
OP_DEV_DISCONNECT = 0x92

REFUSE_NOT_CONNECTABLE = 1
REFUSE_BUSY = 2

ATT_MTU_DEFAULT = 23
ATT_MTU_MAX = 247  # the largest MTU the simulated controller carries (LE data length 251)
MAX_PACKET = 65536
MAX_LONG_WRITE = 512
RESET_EXIT_CODE = 75  # boards/unix/machine.py: machine.reset()
_SUN_PATH_MAX = 107


class RadioError(Exception):
    """A failure on the virtual radio (no such device, refused, disconnected)."""


class ConnectionRefused(RadioError):
    """The device did not accept the connection: not advertising connectable, or busy."""

    def __init__(self, address: str, reason: int) -> None:
        why = {REFUSE_NOT_CONNECTABLE: "it is not advertising as connectable",
               REFUSE_BUSY: "another central is connected to it"}.get(reason, f"reason {reason}")
        super().__init__(f"{address} refused the connection: {why}")
        self.reason = reason


class NotConnected(RadioError):
    """The connection is down."""


class AttError(RadioError):
    """The device answered a read or write with an ATT error code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


# --- timing model ---------------------------------------------------------------------------

@dataclass(frozen=True)
class LinkModel:
    """Connection interval and packets per connection event (see the module docstring)."""

    interval_s: float = 0.015
    packets_per_event: int = 4

    @classmethod
    def parse(cls, text: str) -> "LinkModel":
        """`"0"` (no delays) or `"interval_ms=7.5,packets=6"`."""
        text = text.strip()
        if text in ("", "0", "off", "none"):
            return cls(0.0, 1)
        values = dict(part.split("=", 1) for part in text.split(",") if "=" in part)
        return cls(float(values.get("interval_ms", 15)) / 1000, int(values.get("packets", 4)))

    @classmethod
    def from_env(cls) -> "LinkModel":
        """The model of `KEYHOOK_RADIO_LINK`, else the default (15 ms, 4 packets)."""
        text = os.environ.get("KEYHOOK_RADIO_LINK")
        return cls.parse(text) if text is not None else cls()

    @property
    def enabled(self) -> bool:
        return self.interval_s > 0

    def bytes_per_event(self, mtu: int) -> int:
        """ATT payload bytes one direction can carry per connection event."""
        return self.packets_per_event * (mtu - 3)

    def capacity(self, mtu: int) -> float:
        """Bytes per second in one direction (infinite without a model)."""
        return self.bytes_per_event(mtu) / self.interval_s if self.enabled else math.inf


class LinkClock:
    """Assigns packets to connection events, per direction, under a `LinkModel`."""

    H2D = 0
    D2H = 1

    def __init__(self, model: LinkModel, start: float) -> None:
        self.model = model
        self.start = start
        self._last = [-1, -1]
        self._used = [0, 0]

    def slot(self, direction: int, not_before: float, packets: int = 1) -> float:
        """When the last of `packets` packets ready at `not_before` travels.

        A packet joins the connection event in progress while that event has room (the link
        layer keeps exchanging packets within an event), else the next event with room.
        """
        m = self.model
        if not m.enabled:
            return not_before
        k = max(self._event(not_before), self._last[direction])
        for _ in range(packets):
            if k == self._last[direction] and self._used[direction] >= m.packets_per_event:
                k += 1
            if k != self._last[direction]:
                self._last[direction] = k
                self._used[direction] = 0
            self._used[direction] += 1
        return max(not_before, self.start + k * m.interval_s)

    def _event(self, t: float) -> int:
        return math.floor((t - self.start) / self.model.interval_s)

    def next_event(self, t: float) -> float:
        """Start of the event after the one in progress at `t` (when a response arrives)."""
        if not self.model.enabled:
            return t
        return self.start + (self._event(t) + 1) * self.model.interval_s


# --- advertising ----------------------------------------------------------------------------

def parse_ad(data: bytes) -> list[tuple[int, bytes]]:
    """AD structures (type, value) of an advertising or scan-response payload."""
    out = []
    i = 0
    while i < len(data):
        n = data[i]
        if n == 0 or i + 1 + n > len(data):
            break
        out.append((data[i + 1], bytes(data[i + 2:i + 1 + n])))
        i += 1 + n
    return out


def _uuid16(b: bytes) -> str:
    return f"0000{int.from_bytes(b, 'little'):04x}-0000-1000-8000-00805f9b34fb"


def _uuid128(b: bytes) -> str:
    h = bytes(reversed(b)).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


@dataclass
class Advertisement:
    """What a scan heard from one device (advertising data plus scan response)."""

    address: str
    address_type: int
    connectable: bool
    rssi: int
    adv_data: bytes
    resp_data: bytes
    local_name: str | None = None
    service_uuids: list[str] = field(default_factory=list)
    manufacturer_data: dict[int, bytes] = field(default_factory=dict)
    service_data: dict[str, bytes] = field(default_factory=dict)
    tx_power: int | None = None

    @classmethod
    def from_packet(cls, pkt: bytes, active: bool = True) -> "Advertisement":
        addr_type = pkt[1]
        address = ":".join(f"{b:02X}" for b in pkt[2:8])
        adv_type, rssi, n = pkt[8], struct.unpack("b", pkt[9:10])[0], pkt[10]
        adv, resp = bytes(pkt[11:11 + n]), bytes(pkt[11 + n:])
        ad = cls(address, addr_type, adv_type in (0, 1), rssi, adv, resp if active else b"")
        for t, v in parse_ad(adv) + (parse_ad(resp) if active else []):
            if t in (0x08, 0x09):
                ad.local_name = v.decode("utf-8", "replace")
            elif t in (0x02, 0x03):
                ad.service_uuids += [_uuid16(v[i:i + 2]) for i in range(0, len(v) - 1, 2)]
            elif t in (0x06, 0x07):
                ad.service_uuids += [_uuid128(v[i:i + 16]) for i in range(0, len(v) - 15, 16)]
            elif t == 0xFF and len(v) >= 2:
                ad.manufacturer_data[int.from_bytes(v[:2], "little")] = v[2:]
            elif t == 0x16 and len(v) >= 2:
                ad.service_data[_uuid16(v[:2])] = v[2:]
            elif t == 0x0A and v:
                ad.tx_power = struct.unpack("b", v[:1])[0]
        return ad


# --- sockets --------------------------------------------------------------------------------

def socket_path(radio: str | os.PathLike, address: str) -> Path:
    """The socket of the device with `address` (`AA:BB:CC:DD:EE:FF`) on `radio`."""
    name = address.replace(":", "").replace("-", "").upper()
    if len(name) != 12 or any(c not in "0123456789ABCDEF" for c in name):
        raise RadioError(f"{address!r} is not a Bluetooth address (like AA:BB:CC:DD:EE:FF)")
    path = Path(radio) / f"{name}.sock"
    if len(os.fsencode(path)) > _SUN_PATH_MAX:
        raise RadioError(f"the radio path {radio} is too long for a Unix socket; use a shorter one")
    return path


def device_addresses(radio: str | os.PathLike) -> list[str]:
    """Addresses with a socket on `radio` (live or stale)."""
    try:
        names = sorted(p.stem for p in Path(radio).glob("*.sock"))
    except OSError:
        return []
    return [":".join(n[i:i + 2] for i in range(0, 12, 2)) for n in names if len(n) == 12]


async def _open(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(s, str(path))
    except BaseException:
        s.close()
        raise
    return s


async def _ask(path: Path, msg: bytes, timeout: float) -> bytes:
    s = await _open(path)
    try:
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(s, msg)
        return await asyncio.wait_for(loop.sock_recv(s, MAX_PACKET), timeout)
    finally:
        s.close()


async def scan_once(radio: str | os.PathLike, *, active: bool = True, timeout: float = 1.0) -> list[Advertisement]:
    """One round of advertisements from every live device on `radio`."""

    async def one(address: str) -> Advertisement | None:
        try:
            pkt = await _ask(socket_path(radio, address), bytes([OP_SCAN]), timeout)
        except (OSError, asyncio.TimeoutError, RadioError):
            return None  # stale socket, or a device too busy to answer
        if not pkt or pkt[0] != OP_ADV or len(pkt) < 11:
            return None
        return Advertisement.from_packet(pkt, active)

    found = await asyncio.gather(*(one(a) for a in device_addresses(radio)))
    return [a for a in found if a is not None]


async def press(radio: str | os.PathLike, address: str, pin: int = 0, hold_s: float = 0.1,
                timeout: float = 5.0) -> None:
    """Press and release the button on `pin` of the simulated device at `address`."""
    path = socket_path(radio, address)
    for down in (1, 0):
        try:
            reply = await _ask(path, bytes([OP_PRESS, pin, down]), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            raise RadioError(f"cannot reach the simulated device {address} on {radio}: {e}") from e
        if not reply or reply[0] != OP_PRESS_RSP:
            raise RadioError(f"the simulated device {address} has no button on pin {pin}")
        if down:
            await asyncio.sleep(hold_s)


def device_env(radio: str | os.PathLike, state: str | os.PathLike, rssi: int | None = None) -> dict[str, str]:
    """Environment variables that put a simulated device with state in `state` on `radio`."""
    # absolute: the device may run in another directory than the host tool
    env = {"KEYHOOK_RADIO": str(Path(radio).resolve()), "KEYHOOK_SIM_STATE": str(Path(state).resolve())}
    if rssi is not None:
        env["KEYHOOK_SIM_RSSI"] = str(rssi)
    return env


def address_for_state(state: str | os.PathLike) -> str | None:
    """The address a device with state directory `state` uses (None before its first boot)."""
    try:
        uid = (Path(state) / "unique_id").read_bytes()
    except OSError:
        return None
    if len(uid) != 6:
        return None
    return ":".join(f"{b:02X}" for b in uid[:5] + bytes([(uid[5] + 2) & 0xFF]))


# --- a connection, the central's side -------------------------------------------------------

NotifyHandler = Callable[[int, bytes], None]


class Connection:
    """One central's connection to one simulated device, with the timing model applied."""

    def __init__(self, sock: socket.socket, address: str, conn_handle: int, table: dict,
                 model: LinkModel) -> None:
        self.sock = sock
        self.address = address
        self.conn_handle = conn_handle
        self.table = table
        self.model = model
        self.mtu = ATT_MTU_DEFAULT
        self.connected = True
        self.disconnect_reason: int | None = None
        self.on_notify: NotifyHandler | None = None
        self.on_disconnect: Callable[[], None] | None = None
        self._loop = asyncio.get_running_loop()
        self.clock = LinkClock(model, self._loop.time())
        self._request_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._pending: asyncio.Future | None = None
        self._deliveries: collections.deque = collections.deque()
        self._delivery_wakeup = asyncio.Event()
        self._reader = self._loop.create_task(self._read())
        self._deliverer = self._loop.create_task(self._deliver()) if model.enabled else None

    @classmethod
    async def open(cls, radio: str | os.PathLike, address: str, *, model: LinkModel | None = None,
                   timeout: float = 10.0, central: bytes | None = None) -> "Connection":
        """Connect to the device at `address`; raises RadioError when it is absent or refuses."""
        path = socket_path(radio, address)
        try:
            sock = await asyncio.wait_for(_open(path), timeout)
        except (FileNotFoundError, ConnectionRefusedError) as e:
            raise RadioError(f"no device with address {address} on the radio {radio}") from e
        except (OSError, asyncio.TimeoutError) as e:
            raise RadioError(f"cannot reach {address} on the radio {radio}: {e}") from e
        loop = asyncio.get_running_loop()
        central = central or bytes([os.urandom(1)[0] | 0xC0]) + os.urandom(5)  # random static
        model = model or LinkModel.from_env()
        units = round(model.interval_s / 0.00125) if model.enabled else 0
        try:
            await loop.sock_sendall(sock, bytes([OP_CONNECT, 1]) + central
                                    + struct.pack(">HB", min(units, 0xFFFF), min(model.packets_per_event, 255)))
            reply = await asyncio.wait_for(loop.sock_recv(sock, MAX_PACKET), timeout)
        except (OSError, asyncio.TimeoutError) as e:
            sock.close()
            raise RadioError(f"{address} did not answer the connection request: {e!r}") from e
        if not reply or reply[0] != OP_ACCEPT:
            sock.close()
            raise ConnectionRefused(address, reply[1] if len(reply) > 1 else 0)
        conn_handle = struct.unpack(">H", reply[1:3])[0]
        table = json.loads(reply[3:] or b"{}")
        return cls(sock, address, conn_handle, table, model)

    # -- requests --
    async def _request(self, msg: bytes, expect: int, packets: int = 1) -> bytes:
        async with self._request_lock:
            self._check()
            t = await self._transmit(msg, packets)
            fut = self._loop.create_future()
            self._pending = fut
            try:
                reply = await fut
            finally:
                self._pending = None
            if reply[0] != expect:
                raise RadioError(f"unexpected reply 0x{reply[0]:02x} from {self.address}")
            await self._sleep_until(self.clock.next_event(t))
            return reply

    async def _transmit(self, msg: bytes, packets: int = 1) -> float:
        async with self._write_lock:
            self._check()
            t = self.clock.slot(LinkClock.H2D, self._loop.time(), packets)
            await self._sleep_until(t)
            self._check()
            try:
                await self._loop.sock_sendall(self.sock, msg)
            except OSError as e:
                self._gone(None)
                raise NotConnected(f"{self.address} disconnected") from e
            return t

    async def _sleep_until(self, t: float) -> None:
        delay = t - self._loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    def _check(self) -> None:
        if not self.connected:
            raise NotConnected(f"not connected to {self.address}")

    async def exchange_mtu(self, mtu: int) -> int:
        """ATT MTU exchange; returns the connection's MTU (the smaller of both sides')."""
        mtu = max(ATT_MTU_DEFAULT, min(mtu, ATT_MTU_MAX))
        reply = await self._request(struct.pack(">BH", OP_MTU_REQ, mtu), OP_MTU_RSP)
        self.mtu = max(ATT_MTU_DEFAULT, min(mtu, struct.unpack(">H", reply[1:3])[0], ATT_MTU_MAX))
        return self.mtu

    async def write(self, handle: int, data: bytes, response: bool) -> None:
        """Write a value; without response it must fit one packet (MTU - 3 bytes)."""
        data = bytes(data)
        if response:
            if len(data) > MAX_LONG_WRITE:
                raise RadioError(f"a write is at most {MAX_LONG_WRITE} bytes")
            packets = max(1, math.ceil(len(data) / (self.mtu - 3)))
            reply = await self._request(struct.pack(">BH", OP_WRITE_REQ, handle) + data, OP_WRITE_RSP, packets)
            if reply[3]:
                raise AttError(f"the device refused the write to handle {handle}: ATT error 0x{reply[3]:02x}", reply[3])
        else:
            if len(data) > self.mtu - 3:
                raise RadioError(f"a write without response is at most MTU - 3 = {self.mtu - 3} bytes")
            await self._transmit(struct.pack(">BH", OP_WRITE_CMD, handle) + data)

    async def read(self, handle: int) -> bytes:
        reply = await self._request(struct.pack(">BH", OP_READ_REQ, handle), OP_READ_RSP)
        if reply[3]:
            raise AttError(f"the device refused the read of handle {handle}: ATT error 0x{reply[3]:02x}", reply[3])
        return bytes(reply[4:])

    async def disconnect(self) -> None:
        """Disconnect (the central's side); the disconnect callback is not called."""
        if not self.connected:
            return
        self.on_disconnect = None
        with contextlib.suppress(OSError):
            self.sock.send(bytes([OP_DISCONNECT, 0x13]))
        self._gone(0x13)
        for task in (self._reader, self._deliverer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- incoming --
    async def _read(self) -> None:
        reason: int | None = None
        try:
            while True:
                pkt = await self._loop.sock_recv(self.sock, MAX_PACKET)
                if not pkt:
                    break
                op = pkt[0]
                if op in (OP_NOTIFY, OP_INDICATE):
                    handle = struct.unpack(">H", pkt[1:3])[0]
                    self._incoming(handle, bytes(pkt[3:]), op == OP_INDICATE)
                elif op == OP_DEV_DISCONNECT:
                    reason = pkt[1] if len(pkt) > 1 else 0
                    break
                elif self._pending is not None and not self._pending.done():
                    self._pending.set_result(pkt)
        except OSError:
            pass
        except asyncio.CancelledError:
            return
        # a disconnect is delivered after the notifications that came before it
        if self._deliverer is not None:
            self._deliveries.append((self.clock.slot(LinkClock.D2H, self._loop.time()), None, reason, False))
            self._delivery_wakeup.set()
        else:
            self._gone(reason)

    def _incoming(self, handle: int, data: bytes, indicate: bool) -> None:
        if self._deliverer is None:
            self._hand_over(handle, data, indicate)
            return
        t = self.clock.slot(LinkClock.D2H, self._loop.time())
        self._deliveries.append((t, handle, data, indicate))
        self._delivery_wakeup.set()

    def _hand_over(self, handle: int, data: bytes, indicate: bool) -> None:
        if indicate:
            with contextlib.suppress(OSError):
                self.sock.send(struct.pack(">BH", OP_CONFIRM, handle))
        if self.on_notify is not None:
            try:
                self.on_notify(handle, data)
            except Exception:  # a callback's bug must not kill the link
                logger.exception("notification callback failed")

    async def _deliver(self) -> None:
        try:
            while True:
                while not self._deliveries:
                    self._delivery_wakeup.clear()
                    await self._delivery_wakeup.wait()
                t, handle, data, indicate = self._deliveries[0]
                await self._sleep_until(t)
                self._deliveries.popleft()
                if handle is None:
                    self._gone(data)
                    return
                self._hand_over(handle, data, indicate)
        except asyncio.CancelledError:
            return

    def _gone(self, reason: int | None) -> None:
        if not self.connected:
            return
        self.connected = False
        self.disconnect_reason = reason
        with contextlib.suppress(OSError):
            self.sock.close()
        if self._pending is not None and not self._pending.done():
            self._pending.set_exception(NotConnected(f"{self.address} disconnected"))
        cb, self.on_disconnect = self.on_disconnect, None
        if cb is not None:
            try:
                cb()
            except Exception:
                logger.exception("disconnect callback failed")

    def info(self) -> dict[str, Any]:
        return {"address": self.address, "mtu": self.mtu, "conn_handle": self.conn_handle}
