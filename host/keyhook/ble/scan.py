"""Find keyhook devices: address, name, paired bit and signal strength."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from bleak import BleakScanner
from bleak.exc import BleakError

from keyhook import KeyhookError
from keyhook.ble.backend import adapter_hint, scanner_kwargs, where
from keyhook.ble.protocol import COMPANY_ID, SERVICE_UUID, STATE_PAIRED


@dataclass(frozen=True)
class FoundDevice:
    """One keyhook device heard during a scan."""

    address: str
    name: str | None
    paired: bool
    rssi: int


def _paired(manufacturer_data: dict[int, bytes]) -> bool:
    state = manufacturer_data.get(COMPANY_ID, b"")
    return bool(state and state[0] & STATE_PAIRED)


async def scan(radio: str | os.PathLike | None = None, timeout: float = 5.0) -> list[FoundDevice]:
    """Listen for `timeout` seconds; keyhook devices heard, strongest signal first."""
    try:
        found = await BleakScanner.discover(timeout=timeout, return_adv=True, service_uuids=[SERVICE_UUID],
                                            **scanner_kwargs(radio))
    except (BleakError, OSError, asyncio.TimeoutError) as e:
        raise KeyhookError(f"cannot scan {where(radio)}: {e}", hint=adapter_hint(radio)) from e
    devices = [FoundDevice(d.address, ad.local_name or d.name, _paired(ad.manufacturer_data), ad.rssi)
               for d, ad in found.values() if SERVICE_UUID in [u.lower() for u in ad.service_uuids]]
    return sorted(devices, key=lambda d: -d.rssi)
