"""The unix board's `machine` and `network` stand-ins, and the radio's life cycle."""

from __future__ import annotations

import asyncio
import socket

import pytest

from keyhook import KeyhookError, ble
from keyhook.session.errors import LinkClosed
from keyhook.sim import radio as vr


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_button_press_from_outside_fires_pin_irqs(sim, radio):
    dev = sim("button_probe.py")
    assert dev.ready["level"] == 1  # pulled up, not pressed
    assert vr.address_for_state(dev.state) == dev.address  # the host knows the address from the state
    run(vr.press(radio, dev.address, pin=0, hold_s=0.05))
    assert dev.expect(lambda d: "edge" in d) == {"edge": 0}  # falling: pressed
    assert dev.expect(lambda d: "edge" in d) == {"edge": 1}  # rising: released


def test_press_on_a_missing_device_says_so(radio):
    with pytest.raises(vr.RadioError, match="cannot reach"):
        run(vr.press(radio, "24:6F:00:00:00:09"))


def test_network_and_machine_in_process(micropython, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYHOOK_SIM_STATE", str(tmp_path))
    r = micropython.json(f"""
        import os, json, machine, network
        w = network.WLAN(network.STA_IF)
        r = {{"before": w.isconnected()}}
        w.active(True)
        w.connect("lab", "secret")
        r["after"] = w.isconnected()
        r["ip"] = w.ifconfig()[0]
        r["got_ip"] = w.status() == network.STAT_GOT_IP
        open("{tmp_path}/wifi_down", "w").close()
        r["down"] = w.isconnected()
        os.remove("{tmp_path}/wifi_down")
        r["same"] = network.WLAN(network.STA_IF) is w
        rtc = machine.RTC()
        rtc.datetime((2030, 1, 2, 2, 3, 4, 5, 0))
        r["rtc"] = list(rtc.datetime()[:3])
        r["uid"] = machine.unique_id().hex()
        p = machine.Pin(4, machine.Pin.OUT, value=0)
        r["out"] = p.value()
        p.on()
        r["on"] = p()
        print(json.dumps(r))
    """)
    assert r == {"before": False, "after": True, "ip": "127.0.0.1", "got_ip": True, "down": False, "same": True,
                 "rtc": [2030, 1, 2], "uid": (tmp_path / "unique_id").read_bytes().hex(), "out": 0, "on": 1}
    assert vr.address_for_state(tmp_path) is not None


def test_stale_socket_is_skipped(sim, radio):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    stale.bind(str(radio / "246F28000099.sock"))
    stale.close()  # a device that crashed left its socket file behind
    dev = sim("gatt_echo.py")
    assert [d.address for d in run(ble.scan(radio=radio, timeout=0.3))] == [dev.address]


def test_device_crash_closes_the_link(sim, radio):
    dev = sim("gatt_echo.py")

    async def go():
        async with ble.connect(dev.address, radio=radio) as link:
            await link.send(b"\x01")
            assert await link.recv(5) == b"\x01"
            dev.proc.kill()
            with pytest.raises(LinkClosed):
                await link.recv(5)
    run(go())
    with pytest.raises(KeyhookError):
        run(ble.open_link(dev.address, radio=radio, timeout=1, attempts=1))


def test_two_devices_with_the_same_state_cannot_share_the_radio(sim, radio):
    first = sim("gatt_echo.py", name="twin")
    with pytest.raises(AssertionError, match="another device with address"):
        sim("gatt_echo.py", name="twin")
    assert first.proc.poll() is None


def test_bluetooth_errors_match_the_real_module(micropython, tmp_path, monkeypatch):
    monkeypatch.setenv("KEYHOOK_SIM_STATE", str(tmp_path))  # no KEYHOOK_RADIO: no peers
    r = micropython.json("""
        import json, bluetooth
        ble = bluetooth.BLE()
        r = {}
        def err(f):
            try:
                f()
                return None
            except OSError as e:
                return e.errno
        r["inactive_adv"] = err(lambda: ble.gap_advertise(100000, b""))
        r["inactive_mac"] = err(lambda: ble.config("mac"))
        ble.active(True)
        r["mac"] = len(ble.config("mac")[1])
        r["too_long"] = err(lambda: ble.gap_advertise(100000, bytes(32)))
        ble.gap_advertise(100000, b"\\x02\\x01\\x06")
        U = bluetooth.UUID
        r["busy"] = err(lambda: ble.gatts_register_services(((U(0x180F), ((U(0x2A19), bluetooth.FLAG_READ),)),)))
        ble.gap_advertise(None)
        ((h,),) = ble.gatts_register_services(((U(0x180F), ((U(0x2A19), bluetooth.FLAG_READ),)),))
        ble.gatts_write(h, bytes(40))  # a local write grows the buffer
        r["local"] = len(ble.gatts_read(h))
        r["not_connected"] = err(lambda: ble.gatts_notify(0, h, b"x"))
        r["disconnect"] = ble.gap_disconnect(0)
        r["bad_handle"] = ble.gatts_read(999)  # the real module ignores the lookup's EINVAL
        r["bad_handle_type"] = type(ble.gatts_read(999)).__name__
        def verr(f):
            try:
                f()
                return None
            except ValueError as e:
                return str(e)
        r["rxbuf"] = [verr(lambda: ble.config("rxbuf")), verr(lambda: ble.config(rxbuf=512))]
        ble.gap_advertise(None)
        r["str_uuid"] = [
            verr(lambda: ble.gatts_register_services((("6b657968-0000-0000-0000-000000000000", ()),))),
            verr(lambda: ble.gatts_register_services(((U(0x180F), ((0x2A19, bluetooth.FLAG_READ),)),)))]
        r["uuid"] = [repr(U(0x2A19)), U("6B657968-6F6F-6B00-A000-000000000000") == U(bytes(U("6b657968-6f6f-6b00-a000-000000000000")))]
        print(json.dumps(r))
    """)
    # as MicroPython v1.29 on an ESP32 (extmod/modbluetooth.c, extmod/nimble/modbluetooth_nimble.c):
    # advertising data over 31 bytes is NimBLE's BLE_ERR_INV_HCI_CMD_PARMS (0x12) passed as -18;
    # gatts_read of an unknown handle is b''; no rxbuf with synchronous events; UUID objects only
    assert r == {"inactive_adv": 19, "inactive_mac": 19, "mac": 6, "too_long": -18, "busy": 16, "local": 40,
                 "not_connected": 107, "disconnect": False, "bad_handle": "", "bad_handle_type": "bytes",
                 "rxbuf": ["unknown config param", "unknown config param"],
                 "str_uuid": ["invalid service UUID", "invalid characteristic UUID"],
                 "uuid": ["UUID(0x2a19)", True]}
