"""A bleak backend for the virtual radio.

Pass the classes as bleak's `backend=` and the radio directory as `radio=`:

    devices = await BleakScanner.discover(backend=SimBleakScanner, radio=path)
    async with BleakClient(devices[0], backend=SimBleakClient, radio=path) as client:
        await client.write_gatt_char(RX, data, response=False)

Without `radio=`, `KEYHOOK_RADIO` is used. The client takes `mtu=` (the MTU it asks for in the
ATT exchange right after connecting; 23 skips the exchange, default 247) and `link=` (a
`LinkModel`; default `LinkModel.from_env()`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Optional

from bleak.args import SizedBuffer
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, AdvertisementDataCallback, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError, BleakGATTProtocolError

from keyhook.sim import radio as vr

logger = logging.getLogger(__name__)
logger.addHandler(logging.NullHandler())

CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True)
class RadioDetails:
    """`BLEDevice.details` of a device heard on the virtual radio."""

    radio: str
    advertisement: vr.Advertisement


def _radio_of(radio: str | os.PathLike | None) -> str:
    radio = radio or os.environ.get("KEYHOOK_RADIO")
    if not radio:
        raise BleakError("no virtual radio: pass radio=PATH or set KEYHOOK_RADIO")
    return str(radio)


class SimBleakScanner(BaseBleakScanner):
    """Scans the virtual radio: every live device's advertisement, every `poll_interval` s."""

    def __init__(
        self,
        detection_callback: Optional[AdvertisementDataCallback],
        service_uuids: Optional[list[str]],
        scanning_mode: Literal["active", "passive"] = "active",
        *,
        radio: str | os.PathLike | None = None,
        poll_interval: float = 0.1,
        **kwargs: Any,
    ) -> None:
        super().__init__(detection_callback, service_uuids)
        self._radio = _radio_of(radio)
        self._active = scanning_mode != "passive"
        self._poll = poll_interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.seen_devices = {}
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            for ad in await vr.scan_once(self._radio, active=self._active):
                if not self.is_allowed_uuid(ad.service_uuids):
                    continue
                data = AdvertisementData(
                    local_name=ad.local_name,
                    manufacturer_data=dict(ad.manufacturer_data),
                    service_data=dict(ad.service_data),
                    service_uuids=list(ad.service_uuids),
                    tx_power=ad.tx_power,
                    rssi=ad.rssi,
                    platform_data=(ad,),
                )
                device = self.create_or_update_device(
                    ad.address, ad.address, ad.local_name, RadioDetails(self._radio, ad), data)
                self.call_detection_callbacks(device, data)
            await asyncio.sleep(self._poll)


class SimBleakClient(BaseBleakClient):
    """A GATT client on the virtual radio; see the module docstring for its arguments."""

    def __init__(
        self,
        address_or_ble_device: BLEDevice | str,
        *,
        disconnected_callback: Callable[[], None] | None = None,
        timeout: float = 10.0,
        radio: str | os.PathLike | None = None,
        mtu: int = vr.ATT_MTU_MAX,
        link: vr.LinkModel | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(address_or_ble_device, disconnected_callback=disconnected_callback, timeout=timeout)
        if isinstance(address_or_ble_device, BLEDevice) and isinstance(address_or_ble_device.details, RadioDetails):
            radio = radio or address_or_ble_device.details.radio
            self._name = address_or_ble_device.name
        else:
            self._name = address_or_ble_device.name if isinstance(address_or_ble_device, BLEDevice) else None
        self._radio = _radio_of(radio)
        self._want_mtu = mtu
        self._model = link
        self._conn: vr.Connection | None = None
        self._callbacks: dict[int, NotifyCallback] = {}

    @property
    def name(self) -> str:
        return self._name or self.address.replace(":", "-")

    @property
    def mtu_size(self) -> int:
        return self._conn.mtu if self._conn else vr.ATT_MTU_DEFAULT

    @property
    def is_connected(self) -> bool:
        return self._conn is not None and self._conn.connected

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        if pair:
            logger.info("the virtual radio has no link-layer pairing; connecting without it")
        timeout = kwargs.get("timeout", self._timeout)
        try:
            conn = await vr.Connection.open(self._radio, self.address, model=self._model, timeout=timeout)
        except vr.ConnectionRefused as e:
            raise BleakError(str(e)) from e
        except vr.RadioError as e:
            raise BleakError(str(e)) from e
        conn.on_notify = self._on_notify
        conn.on_disconnect = self._on_disconnect
        self._conn = conn
        self.services = self._services(conn.table)
        if self._want_mtu > vr.ATT_MTU_DEFAULT:
            try:
                await asyncio.wait_for(conn.exchange_mtu(self._want_mtu), timeout)
            except (vr.RadioError, asyncio.TimeoutError) as e:
                await conn.disconnect()
                self._conn = None
                raise BleakError(f"MTU exchange with {self.address} failed: {e}") from e

    def _services(self, table: dict) -> BleakGATTServiceCollection:
        coll = BleakGATTServiceCollection()
        for s in table.get("services", []):
            svc = BleakGATTService(s, s["handle"], s["uuid"])
            coll.add_service(svc)
            for c in s["chars"]:
                props = [name for bit, name in CHARACTERISTIC_PROPERTIES.items() if c["flags"] & bit]
                ch = BleakGATTCharacteristic(c, c["value"], c["uuid"], props, lambda: self.mtu_size - 3, svc)
                coll.add_characteristic(ch)
                for d in c["descs"]:
                    coll.add_descriptor(BleakGATTDescriptor(d, d["handle"], d["uuid"], ch))
        return coll

    def _on_notify(self, handle: int, data: bytes) -> None:
        cb = self._callbacks.get(handle)
        if cb is not None:
            cb(bytearray(data))

    def _on_disconnect(self) -> None:
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        conn, self._conn = self._conn, None
        self._callbacks.clear()
        if conn is not None:
            await conn.disconnect()

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("the virtual radio has no link-layer pairing")

    async def unpair(self) -> None:
        raise NotImplementedError("the virtual radio has no link-layer pairing")

    def _connection(self) -> vr.Connection:
        if self._conn is None or not self._conn.connected:
            raise BleakError("Not connected")
        return self._conn

    async def _io(self, coro):
        try:
            return await coro
        except vr.AttError as e:
            raise BleakGATTProtocolError(e.code) from e
        except vr.RadioError as e:
            raise BleakError(str(e)) from e

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *, use_cached: bool = False,
                             **kwargs: Any) -> bytearray:
        return bytearray(await self._io(self._connection().read(characteristic.handle)))

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *, use_cached: bool = False,
                                   **kwargs: Any) -> bytearray:
        return bytearray(await self._io(self._connection().read(descriptor.handle)))

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic, data: SizedBuffer,
                              response: bool) -> None:
        await self._io(self._connection().write(characteristic.handle, bytes(data), response))

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor, data: SizedBuffer) -> None:
        await self._io(self._connection().write(descriptor.handle, bytes(data), True))

    def _cccd(self, characteristic: BleakGATTCharacteristic) -> BleakGATTDescriptor:
        d = characteristic.get_descriptor(CCCD_UUID)
        if d is None:
            raise BleakError(f"{characteristic.uuid} has no notifications")
        return d

    async def start_notify(self, characteristic: BleakGATTCharacteristic, callback: NotifyCallback,
                           **kwargs: Any) -> None:
        cccd = self._cccd(characteristic)
        self._callbacks[characteristic.handle] = callback
        value = b"\x01\x00" if "notify" in characteristic.properties else b"\x02\x00"
        await self.write_gatt_descriptor(cccd, value)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        self._callbacks.pop(characteristic.handle, None)
        await self.write_gatt_descriptor(self._cccd(characteristic), b"\x00\x00")
