"""kh.gatt on the MicroPython unix port, driven from the host through bleak and keyhook.ble.

The device (tests/mp/gatt_echo.py) echoes every record and logs its GATT events; control
records (0xF9 stats, 0xFC send, 0xFE disconnect) let the host ask what it saw.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from bleak import BleakClient, BleakScanner

from keyhook import KeyhookError, ble
from keyhook.ble import MAX_RECORD, RX_UUID, SERVICE_UUID, TX_UUID
from keyhook.session.errors import LinkClosed, LinkTimeout, ProtocolError
from keyhook.sim.bleak_backend import SimBleakClient, SimBleakScanner

SIZES = [1, 2, 16, 17, 20, 21, 60, 240, 241, 244, 245, 1000, 4096, MAX_RECORD - 1, MAX_RECORD]


def run(coro, timeout=90):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def pattern(n: int, seed: int = 0) -> bytes:
    # never starts with a control byte (0xF9..0xFE)
    return bytes([0x42]) + bytes((i * 7 + seed) & 0xFF for i in range(1, n))


async def stats(link) -> dict:
    await link.send(b"\xf9")
    return json.loads(await link.recv(5))


def test_scan_shows_the_device_with_name_paired_bit_and_rssi(sim, radio):
    sim("gatt_echo.py", name="a")
    sim("gatt_echo.py", "1", name="b")
    found = run(ble.scan(radio=radio, timeout=0.5))
    assert len(found) == 2
    assert {(d.name, d.paired, d.rssi) for d in found} == {("keyhook-ec0001", False, -55),
                                                           ("keyhook-ec0001", True, -55)}
    assert all(len(d.address) == 17 for d in found)


def test_scan_with_bleak_service_filter(sim, radio):
    dev = sim("gatt_echo.py")

    async def go():
        seen = await BleakScanner.discover(timeout=0.3, return_adv=True, service_uuids=[SERVICE_UUID],
                                           backend=SimBleakScanner, radio=radio)
        none = await BleakScanner.discover(timeout=0.3, service_uuids=["0000180d-0000-1000-8000-00805f9b34fb"],
                                           backend=SimBleakScanner, radio=radio)
        return seen, none
    seen, none = run(go())
    (device, adv), = seen.values()
    assert device.address == dev.address and adv.local_name == "keyhook-ec0001"
    assert adv.manufacturer_data == {0xFFFF: b"\x00"} and none == []


def test_address_is_stable_for_the_same_state_dir(sim, radio):
    first = sim("gatt_echo.py", name="same")
    addr = first.address
    first.stop()
    again = sim("gatt_echo.py", name="same")
    assert again.address == addr
    assert [d.address for d in run(ble.scan(radio=radio, timeout=0.3))] == [addr]


@pytest.mark.parametrize("mtu", [247, 23])
def test_mtu_exchange_and_records_round_trip(sim, radio, mtu):
    dev = sim("gatt_echo.py")

    async def go():
        async with ble.connect(dev.address, radio=radio, mtu=mtu) as link:
            assert link.mtu == mtu and link.fragment_size == mtu - 3
            assert (await stats(link))["mtu"] == mtu  # the device learned it from _IRQ_MTU_EXCHANGED
            for n in SIZES:
                record = pattern(n, n)
                await link.send(record)
                assert await link.recv(10) == record, n
    run(go())
    dev.drain(0.3)
    lens = [d["len"] for d in dev.lines if d.get("event") == "record"]
    assert lens == [1] + SIZES  # nothing lost, nothing duplicated


def _raw(radio, address, mtu=247):
    return BleakClient(address, backend=SimBleakClient, radio=radio, mtu=mtu)


async def _raw_session(radio, address, frags: list[bytes], then: bytes | None = None):
    """Write raw fragments; collect notifications until the device went quiet."""
    got: list[bytes] = []
    async with _raw(radio, address) as c:
        await c.start_notify(TX_UUID, lambda _ch, d: got.append(bytes(d)))
        for f in frags:
            await c.write_gatt_char(RX_UUID, f, response=False)
        await asyncio.sleep(0.3)
        if then is not None:
            for f in ble.fragment(then, c.mtu_size - 3):
                await c.write_gatt_char(RX_UUID, f, response=False)
            for _ in range(100):
                if got and got[-1][0] & 0x40 and b"".join(got).find(then[:8]) >= 0:
                    break
                await asyncio.sleep(0.05)
    return got


def _records(frags: list[bytes]) -> list[bytes]:
    r = ble.Reassembler()
    return [rec for f in frags if (rec := r.feed(f)) is not None]


@pytest.mark.parametrize("frags, why", [
    ([b"\xc0\x20\x41" + b"x" * 20], b"longer than MAX_RECORD"),
    ([b"\x00abc"], b"continuation without START"),
    ([b"\x40abc"], b"continuation without START"),
    ([b"\x80\x00\x10abc", b"\x80\x00\x02ab"], b"START while a record is open"),
    ([b"\x80\x00\x10abc", b"\x40abc"], b"END at the wrong length"),
    ([b"\x80\x00\x04abc", b"\x00abcdef"], b"more data than announced"),
    ([b"\xc4\x00\x01a"], b"malformed START"),
])
def test_bad_fragments_are_rejected_and_the_link_recovers(sim, radio, frags, why):
    dev = sim("gatt_echo.py")
    good = pattern(300, 5)
    got = run(_raw_session(radio, dev.address, frags + [b"\x00trailing garbage"], then=good))
    records = _records(got)
    assert records[0][:2] == b"\x7f\x01" and why in records[0][4:]  # ERROR bad_record, once
    assert records[1:] == [good]  # the next record is whole, nothing of the bad one leaked
    dev.expect(lambda d: d.get("event") == "reset")
    dev.drain(0.3)
    assert [d["len"] for d in dev.lines if d.get("event") == "record"] == [len(good)]


def test_disconnect_mid_record_leaves_nothing(sim, radio):
    dev = sim("gatt_echo.py")
    record = pattern(5000, 1)

    async def go():
        async with _raw(radio, dev.address) as c:
            for f in ble.fragment(record, 244)[:-3]:  # all but the last fragments
                await c.write_gatt_char(RX_UUID, f, response=False)
        dev.expect(lambda d: d.get("event") == "disconnect")
        async with ble.connect(dev.address, radio=radio) as link:
            await link.send(record[:100])
            assert await link.recv(5) == record[:100]
            s = await stats(link)
            assert s["records"] == 2 and s["bytes"] == 101 and s["resets"] == 0
    run(go())


def test_second_central_refused_while_one_is_connected(sim, radio):
    dev = sim("gatt_echo.py", "1")

    async def go():
        async with ble.connect(dev.address, radio=radio) as first:
            # still visible (non-connectable, paired bit set) but not connectable
            (seen,) = await ble.scan(radio=radio, timeout=0.3)
            assert seen.paired
            with pytest.raises(KeyhookError, match="busy with another app"):
                await ble.open_link(dev.address, radio=radio, attempts=1, timeout=3)
            await first.send(b"\x01still here")
            assert await first.recv(5) == b"\x01still here"
        async with ble.connect(dev.address, radio=radio) as second:  # free again
            await second.send(b"\x02")
            assert await second.recv(5) == b"\x02"
    run(go())
    dev.drain(0.3)
    assert [d["event"] for d in dev.lines if d.get("event") in ("connect", "disconnect")] == \
        ["connect", "disconnect", "connect", "disconnect"]  # the refused central never got in


def test_recv_timeout_and_device_disconnect(sim, radio):
    dev = sim("gatt_echo.py")

    async def go():
        async with ble.connect(dev.address, radio=radio) as link:
            with pytest.raises(LinkTimeout):
                await link.recv(0.2)
            await link.send(b"\xfe")  # the device hangs up
            with pytest.raises(LinkClosed):
                await link.recv(5)
            with pytest.raises(LinkClosed):
                await link.send(b"\x01")
    run(go())


def test_device_sends_many_records(sim, radio):
    dev = sim("gatt_echo.py")

    async def go():
        async with ble.connect(dev.address, radio=radio) as link:
            await link.send(b"\xfc\x00\x05\x20\x40")  # 5 records of MAX_RECORD
            for _ in range(5):
                rec = await link.recv(10)
                assert len(rec) == MAX_RECORD and rec[1:] == bytes(i & 0xFF for i in range(1, MAX_RECORD))
    run(go())


def test_unknown_address_and_oversized_send(sim, radio):
    dev = sim("gatt_echo.py")
    with pytest.raises(KeyhookError, match="no device with address"):
        run(ble.open_link("AA:BB:CC:DD:EE:FF", radio=radio, timeout=1))

    async def go():
        async with ble.connect(dev.address, radio=radio) as link:
            with pytest.raises(ProtocolError):
                await link.send(bytes(MAX_RECORD + 1))
    run(go())


def test_keyhook_radio_environment_selects_the_virtual_radio(sim, radio, monkeypatch):
    dev = sim("gatt_echo.py")
    monkeypatch.setenv("KEYHOOK_RADIO", str(radio))

    async def go():
        (found,) = await ble.scan(timeout=0.3)
        async with ble.connect(found.address) as link:
            await link.send(b"\x07env")
            return await link.recv(5)
    assert run(go()) == b"\x07env"
    assert dev.address
