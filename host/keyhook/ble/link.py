"""A connection to a keyhook device that carries whole records over GATT fragments.

`connect(address, radio=...)` finds the device, connects with retries (bleak-retry-connector),
gets the largest MTU (up to 247), subscribes to TX and yields a `BleRecordLink` whose `send` and
`recv` move whole records (PROTOCOL.md section 1): the interface the session code uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.exc import BleakError
from bleak_retry_connector import establish_connection

from keyhook import KeyhookError
from keyhook.ble.backend import adapter_hint, client_kwargs, radio_path, scanner_kwargs, where
from keyhook.ble.fragments import FragmentError, Reassembler, fragment
from keyhook.ble.protocol import MAX_RECORD, MTU_DEFAULT, MTU_WANTED, RX_UUID, SERVICE_UUID, TX_UUID
from keyhook.session.errors import LinkClosed, LinkTimeout, ProtocolError

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

CONNECT_ATTEMPTS = 3
_CLOSED = object()


class BleRecordLink:
    """Whole records both ways over one BLE connection (a `keyhook.session.RecordLink`)."""

    def __init__(self, client: BleakClient, rx: BleakGATTCharacteristic, address: str) -> None:
        self.client = client
        self.address = address
        self._rx = rx
        self._inbox: asyncio.Queue = asyncio.Queue()
        self._reassembler = Reassembler(MAX_RECORD)
        self._closed = False

    @property
    def mtu(self) -> int:
        """The connection's ATT MTU."""
        return self.client.mtu_size

    @property
    def fragment_size(self) -> int:
        """Bytes per fragment: one write without response (MTU - 3)."""
        return max(MTU_DEFAULT - 3, self._rx.max_write_without_response_size)

    @property
    def connected(self) -> bool:
        return not self._closed and self.client.is_connected

    def on_notify(self, _char: BleakGATTCharacteristic, data: bytearray) -> None:
        """TX notification: one fragment."""
        try:
            record = self._reassembler.feed(bytes(data))
        except FragmentError as e:
            self._inbox.put_nowait(ProtocolError(f"the device sent a malformed record: {e}"))
            return
        if record is not None:
            self._inbox.put_nowait(record)

    def on_disconnect(self, _client: BleakClient) -> None:
        self._reassembler.reset()
        self._closed = True
        self._inbox.put_nowait(_CLOSED)

    async def send(self, record: bytes) -> None:
        """Send one record as fragments (writes without response, in order)."""
        if len(record) > MAX_RECORD:
            raise ProtocolError(f"a record of {len(record)} bytes exceeds the limit of {MAX_RECORD}",
                                hint="this is a bug in the host tool; please report it")
        if not self.connected:
            raise LinkClosed()
        try:
            for frag in fragment(bytes(record), self.fragment_size):
                await self.client.write_gatt_char(self._rx, frag, response=False)
        except BleakError as e:
            if not self.client.is_connected:
                raise LinkClosed() from e
            raise KeyhookError(f"writing to {self.address} failed: {e}",
                               hint="move closer to the device and try again") from e

    async def recv(self, timeout: float) -> bytes:
        """The next record; `LinkTimeout` after `timeout` s, `LinkClosed` on a disconnect."""
        try:
            item = await asyncio.wait_for(self._inbox.get(), timeout)
        except asyncio.TimeoutError:
            raise LinkTimeout() from None
        if item is _CLOSED:
            self._inbox.put_nowait(_CLOSED)  # every later recv fails the same way
            raise LinkClosed()
        if isinstance(item, Exception):
            raise item
        return item

    async def close(self) -> None:
        """Disconnect (idempotent)."""
        self._closed = True
        with contextlib.suppress(BleakError, OSError, asyncio.TimeoutError):
            await self.client.disconnect()


async def _find(address: str, radio: str | None, timeout: float):
    try:
        device = await BleakScanner.find_device_by_address(address, timeout=timeout, **scanner_kwargs(radio))
    except (BleakError, OSError) as e:
        raise KeyhookError(f"cannot scan {where(radio)}: {e}", hint=adapter_hint(radio)) from e
    if device is None:
        raise KeyhookError(f"no device with address {address} {where(radio)}",
                           hint="check the address with `keyhook scan`; is the device powered"
                           + (" and the simulator running?" if radio else " and close enough?"))
    return device


async def _acquire_mtu(client: BleakClient) -> None:
    # BlueZ reports 23 until asked (bleak's mtu_size example); other backends know already.
    if client.mtu_size <= MTU_DEFAULT and hasattr(client._backend, "_acquire_mtu"):
        with contextlib.suppress(Exception):
            await client._backend._acquire_mtu()


async def open_link(address: str, *, radio: str | os.PathLike | None = None, timeout: float = 20.0,
                    mtu: int = MTU_WANTED, attempts: int = CONNECT_ATTEMPTS, link_model=None) -> BleRecordLink:
    """Connect to the keyhook device at `address` and return its record link.

    `mtu` is the MTU asked for (the device may grant less); `link_model` is the virtual radio's
    timing model (a `keyhook.sim.radio.LinkModel`; ignored for the system adapter).
    """
    radio = radio_path(radio)
    device = await _find(address, radio, min(timeout, 10.0))
    link: BleRecordLink | None = None

    def disconnected(client: BleakClient) -> None:
        if link is not None:
            link.on_disconnect(client)

    try:
        client = await asyncio.wait_for(
            establish_connection(BleakClient, device, device.name or address, disconnected_callback=disconnected,
                                 max_attempts=attempts, timeout=timeout, **client_kwargs(radio, mtu, link_model)),
            timeout * attempts)
    except (BleakError, asyncio.TimeoutError, OSError) as e:
        busy = "not advertising as connectable" in str(e) or "another central" in str(e)
        raise KeyhookError(
            f"cannot connect to {address}: " + ("it is busy with another app" if busy else str(e) or "timed out"),
            hint="close the other app's connection, then try again" if busy
            else "move closer to the device, check that it is powered, and try again") from e
    try:
        await _acquire_mtu(client)
        rx = client.services.get_characteristic(RX_UUID)
        tx = client.services.get_characteristic(TX_UUID)
        if rx is None or tx is None or client.services.get_service(SERVICE_UUID) is None:
            raise KeyhookError(f"{address} is not a keyhook device (it has no keyhook GATT service)",
                               hint="check the address with `keyhook scan`")
        link = BleRecordLink(client, rx, address)
        await client.start_notify(tx, link.on_notify)
    except BaseException:
        with contextlib.suppress(Exception):
            await client.disconnect()
        raise
    logger.debug("connected to %s, MTU %d", address, client.mtu_size)
    return link


@contextlib.asynccontextmanager
async def connect(address: str, *, radio: str | os.PathLike | None = None, timeout: float = 20.0,
                  mtu: int = MTU_WANTED, attempts: int = CONNECT_ATTEMPTS,
                  link_model=None) -> AsyncIterator[BleRecordLink]:
    """`async with connect(address) as link:` a record link that is closed on exit."""
    link = await open_link(address, radio=radio, timeout=timeout, mtu=mtu, attempts=attempts,
                           link_model=link_model)
    try:
        yield link
    finally:
        await link.close()
