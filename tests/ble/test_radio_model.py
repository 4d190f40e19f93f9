"""The virtual radio's timing model and advertisement parsing (pure host code, no timing)."""

from __future__ import annotations

import math

import pytest

from keyhook.sim import radio as vr


def test_capacity_is_packets_times_mtu_minus_3_per_interval():
    m = vr.LinkModel(interval_s=0.015, packets_per_event=4)
    assert m.bytes_per_event(247) == 976 and m.bytes_per_event(23) == 80
    assert m.capacity(247) == pytest.approx(976 / 0.015)
    assert vr.LinkModel(0, 1).capacity(247) == math.inf


@pytest.mark.parametrize("text, interval, packets", [
    ("0", 0.0, 1), ("interval_ms=7.5,packets=6", 0.0075, 6), ("interval_ms=30", 0.03, 4)])
def test_parse(text, interval, packets):
    m = vr.LinkModel.parse(text)
    assert (m.interval_s, m.packets_per_event) == (pytest.approx(interval), packets)


def test_clock_puts_at_most_n_packets_in_each_event_per_direction():
    clock = vr.LinkClock(vr.LinkModel(0.010, 4), start=100.0)
    times = [clock.slot(vr.LinkClock.H2D, 100.0) for _ in range(10)]
    assert times == pytest.approx([100.0] * 4 + [100.01] * 4 + [100.02] * 2)
    # the other direction has its own budget
    assert clock.slot(vr.LinkClock.D2H, 100.0) == pytest.approx(100.0)
    # packets ready mid-event join it while it has room (event 2 holds 2 so far); then the next
    assert [clock.slot(vr.LinkClock.H2D, 100.025) for _ in range(3)] == pytest.approx([100.025, 100.025, 100.03])
    assert clock.next_event(100.025) == pytest.approx(100.03)
    # a long write takes several packets
    assert clock.slot(vr.LinkClock.D2H, 100.0, packets=9) == pytest.approx(100.02)


def test_clock_without_model_never_delays():
    clock = vr.LinkClock(vr.LinkModel(0, 1), start=5.0)
    assert [clock.slot(0, 5.5) for _ in range(100)] == [5.5] * 100 and clock.next_event(5.5) == 5.5


def test_advertisement_parsing():
    adv = (b"\x02\x01\x06" + b"\x11\x07" + bytes(reversed(bytes.fromhex("6b6579686f6f6b00a000000000000000")))
           + b"\x04\xff\xff\xff\x01" + b"\x03\x03\x0d\x18")
    resp = b"\x0f\x09keyhook-abcdef"
    pkt = bytes([vr.OP_ADV, 0]) + bytes.fromhex("246f28000003") + bytes([2, 0xC9, len(adv)]) + adv + resp
    ad = vr.Advertisement.from_packet(pkt)
    assert ad.address == "24:6F:28:00:00:03" and not ad.connectable and ad.rssi == -55
    assert ad.local_name == "keyhook-abcdef" and ad.manufacturer_data == {0xFFFF: b"\x01"}
    assert ad.service_uuids == ["6b657968-6f6f-6b00-a000-000000000000", "0000180d-0000-1000-8000-00805f9b34fb"]
    passive = vr.Advertisement.from_packet(pkt, active=False)
    assert passive.local_name is None and passive.resp_data == b""


def test_socket_path_checks_the_address(tmp_path):
    assert vr.socket_path(tmp_path, "24:6f:28:00:00:03").name == "246F28000003.sock"
    with pytest.raises(vr.RadioError, match="not a Bluetooth address"):
        vr.socket_path(tmp_path, "24:6F:28")
    with pytest.raises(vr.RadioError, match="too long"):
        vr.socket_path(tmp_path / ("x" * 120), "24:6F:28:00:00:03")
