"""The simulated controller airs notifications at every point of the device's ticks period.

MicroPython's ticks wrap at 2**30 on a 32-bit port (the ESP32, the 32-bit unix build of `make
test32`) and compare only within half of that: 2**29 us, about 9 minutes. The notify pool once
kept its next connection event as ticks_us 0 until the first notification, and on a 32-bit
interpreter `ticks_diff(now, 0)` is negative for half of every period: for 9 minutes in 18 every
notification of a fresh device waited, and onboardings timed out without PAIR_A. The probe
(tests/mp/ble_probe_ticks32.py) gives the radio a 32-bit port's clock at a chosen phase, so
that this is checked on any interpreter.
"""

from __future__ import annotations

import asyncio

import pytest
from bleak import BleakClient, BleakScanner

from keyhook.sim import radio as vr
from keyhook.sim.bleak_backend import SimBleakClient, SimBleakScanner

OUT, CMD = "6b657968-0000-0000-0000-000000000004", "6b657968-0000-0000-0000-000000000005"
PHASES = {
    "first-half": 1 << 27,
    "second-half": 3 << 28,  # ticks_diff(now, 0) < 0 here
    "wraps-now": (1 << 30) - 300_000,  # the ticks wrap 0.3 s after boot
}


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 60))


async def _client(radio, link: vr.LinkModel, **kw) -> BleakClient:
    device = await BleakScanner.find_device_by_name("ble-probe", timeout=5, backend=SimBleakScanner, radio=radio)
    assert device is not None
    client = BleakClient(device, backend=SimBleakClient, radio=radio, link=link, **kw)
    await client.connect()
    return client


@pytest.mark.parametrize("phase", list(PHASES.values()), ids=list(PHASES))
def test_a_notification_goes_on_air_at_once_whatever_the_ticks(sim, radio, phase):
    dev = sim("ble_probe_ticks32.py", str(phase))
    assert dev.lines and 0 <= dev.lines[0]["ticks_us"] - phase < 10_000_000  # the probe's clock

    async def go():
        c = await _client(radio, vr.LinkModel(interval_s=0.015, packets_per_event=4))
        got: asyncio.Queue = asyncio.Queue()
        await c.start_notify(OUT, lambda _ch, data: got.put_nowait(bytes(data)))
        for n in (5, 6):  # the first notification of the connection, then one more
            await c.write_gatt_char(CMD, f"notify {n}".encode(), response=True)
            assert await asyncio.wait_for(got.get(), 5) == bytes(range(n))
        await c.disconnect()
    run(go())


@pytest.mark.parametrize("phase", list(PHASES.values()), ids=list(PHASES))
def test_the_pool_still_empties_at_the_links_pace(sim, radio, phase):
    # 8 notifications, then the device hangs up: at one packet per 50 ms most are still queued
    # (and discarded) when it does; a pool that ignored the link's pace would send them all
    dev = sim("ble_probe_ticks32.py", str(phase))

    async def go():
        lost = asyncio.Event()
        c = await _client(radio, vr.LinkModel(interval_s=0.05, packets_per_event=1),
                          disconnected_callback=lambda _c: lost.set())
        got = []
        await c.start_notify(OUT, lambda _ch, data: got.append(bytes(data)))
        await c.write_gatt_char(CMD, b"notify-bye 8", response=False)
        await asyncio.wait_for(lost.wait(), 5)
        return got
    got = run(go())
    dev.expect(lambda d: d.get("bye"))
    assert len(got) < 8
