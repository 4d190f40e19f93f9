"""A rogue central speaks the virtual radio's wire format directly (review of issue 8, 2026-11-30).

The radio's thread now reads a packet into at most 515 bytes (the longest write request) and
hands messages to the main thread through a ring of 64 slots. A central that does not follow
the rules (values longer than an attribute can hold, requests sent without waiting for their
responses, a hang-up with notifications still queued) must not corrupt what the device sees,
stop it, or leak one connection's notifications into the next.
"""

from __future__ import annotations

import json
import socket
import struct
import subprocess
import time
from pathlib import Path

import pytest

from keyhook.boards import mp
from keyhook.sim import radio as vr

MP_HELPERS = Path(__file__).resolve().parents[1] / "mp"

OP_CONNECT, OP_WRITE_REQ, OP_WRITE_CMD = 0x02, 0x04, 0x05
OP_ACCEPT, OP_WRITE_RSP, OP_NOTIFY = 0x82, 0x85, 0x90


def _connect(dev) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(10)
    for _ in range(100):  # the device advertises again a moment after a hang-up
        try:
            s.connect(str(vr.socket_path(dev.radio, dev.address)))
            break
        except OSError:
            time.sleep(0.05)
    s.send(bytes([OP_CONNECT, 1]) + bytes.fromhex("c00000000001") + struct.pack(">HB", 0, 1))
    reply = s.recv(65536)
    assert reply[0] == OP_ACCEPT, reply
    return s


def _write(s, handle: int, value: bytes, response: bool = True) -> None:
    s.send(struct.pack(">BH", OP_WRITE_REQ if response else OP_WRITE_CMD, handle) + value)


def _collect(s, until, timeout: float = 10) -> list[bytes]:
    got = []
    end = time.monotonic() + timeout
    while not until(got) and time.monotonic() < end:
        s.settimeout(max(0.01, end - time.monotonic()))
        try:
            pkt = s.recv(65536)
        except socket.timeout:
            break
        if not pkt:
            break
        got.append(pkt)
    return got


def test_values_longer_than_any_attribute_are_cut_and_leave_nothing_behind(sim):
    dev = sim("ble_probe.py")
    h = dev.ready["handles"]  # name -> value handle
    s = _connect(dev)
    pattern = bytes(i & 0xFF for i in range(4000))
    for n in (513, 515, 516, 600, 4000):
        _write(s, h["big"], pattern[:n])  # an attribute value is at most 512 bytes (ATT)
        _write(s, h["plain"], b"next %d" % n)
    rsps = _collect(s, lambda g: len(g) >= 10)
    assert [p[0] for p in rsps] == [OP_WRITE_RSP] * 10 and all(p[3] == 0 for p in rsps)
    dev.drain(1.0)
    seen = [d for d in dev.lines if d.get("irq") == 3]
    big = [bytes.fromhex(d["value"]) for d in seen if d.get("char") == "big"]
    plain = [bytes.fromhex(d["value"]) for d in seen if d.get("char") == "plain"]
    assert big == [pattern[:100]] * 5  # its 100-byte buffer, the start of what was sent
    # no tail of a long packet is read as the next message
    assert sorted(plain) == sorted(b"next %d" % n for n in (513, 515, 516, 600, 4000))
    s.close()


def test_a_flood_of_requests_with_notifications_queued_is_answered_in_order(sim):
    dev = sim("ble_probe.py")
    h = dev.ready["handles"]  # name -> value handle
    s = _connect(dev)
    s.send(struct.pack(">BH", 0x03, 247))  # MTU request
    _collect(s, lambda g: len(g) >= 1)
    _write(s, h["cmd"], b"burst 12")  # twelve notifications fill the pool
    for i in range(300):  # never waiting for a response: more than the hand-over ring holds
        _write(s, h["plain"], struct.pack(">H", i))
    got = _collect(s, lambda g: sum(p[0] == OP_WRITE_RSP for p in g) >= 301, timeout=30)
    rsps = [p for p in got if p[0] == OP_WRITE_RSP]
    notes = [p for p in got if p[0] == OP_NOTIFY]
    assert len(rsps) == 301 and all(p[3] == 0 for p in rsps)
    burst = dev.expect(lambda d: "burst" in d)
    dev.drain(1.0)
    lines = dev.lines
    assert len(notes) == burst["burst"] > 0
    plain = [bytes.fromhex(d["value"]) for d in lines if d.get("char") == "plain"]
    assert plain == [struct.pack(">H", i) for i in range(300)]  # every write, once, in order
    s.close()
    assert dev.proc.poll() is None


def test_a_hang_up_with_writes_and_notifications_in_flight_leaves_the_next_central_a_clean_link(sim):
    dev = sim("ble_probe.py")
    h = dev.ready["handles"]  # name -> value handle
    s = _connect(dev)
    _write(s, h["cmd"], b"notify-bye 12")  # twelve queued, then the device hangs up
    for i in range(50):
        _write(s, h["plain"], b"rogue %d" % i, response=False)
    s.close()  # gone without reading a thing
    dev.expect(lambda d: d.get("irq") == 2, 10)  # the device saw the hang-up
    s2 = _connect(dev)
    _write(s2, h["plain"], b"hello")
    got = _collect(s2, lambda g: any(p[0] == OP_WRITE_RSP for p in g))
    time.sleep(0.3)
    s2.settimeout(0.3)
    try:
        while True:
            got.append(s2.recv(65536))
    except socket.timeout:
        pass
    assert [p[0] for p in got] == [OP_WRITE_RSP], got  # nothing of the first link's notifications
    s2.close()
    assert dev.proc.poll() is None


def test_pipelined_long_write_requests_do_not_kill_the_simulated_device(tmp_path, radio):
    # NimBLE takes every incoming ACL packet into one of its RX_POOL buffers, outside the GC
    # heap, and drops what does not fit. The simulation once bounded only write commands that
    # way: write requests sent without waiting waited in its hand-over ring, in the GC heap, and
    # in a heap where the probe lives through 300 pipelined 3-byte (or 244-byte) writes, 300 of
    # 512 bytes ended the device ("the simulated radio ran out of memory"). Now the requests
    # past the pool are dropped, as a controller drops ACL data it has no buffer for.
    env = mp.micropython_env([MP_HELPERS])
    interpreter = mp.micropython_cmd(MP_HELPERS / "ble_probe.py")[0]
    where = subprocess.run([interpreter, "-c", "import bluetooth; print(bluetooth.__file__)"],
                           env=env, capture_output=True, text=True, timeout=30).stdout
    frozen = "/" not in where  # the stand-ins frozen in (make mp32-frozen): their code is not in the heap
    heap_kib = 56 if frozen else 72 if mp.interpreter_bits() == 32 else 96
    env.update(vr.device_env(radio, tmp_path / "state"))
    p = subprocess.Popen(mp.micropython_cmd(MP_HELPERS / "ble_probe.py", heapsize=heap_kib * 1024), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        ready = json.loads(p.stdout.readline())
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(str(vr.socket_path(radio, vr.address_for_state(tmp_path / "state"))))
        s.send(bytes([OP_CONNECT, 1]) + bytes.fromhex("c00000000001") + struct.pack(">HB", 0, 1))
        s.recv(65536)
        for _ in range(300):
            _write(s, ready["handles"]["big"], bytes(512))
        time.sleep(3)
        assert p.poll() is None, "the simulated device died"
    finally:
        p.kill()
        p.wait()
