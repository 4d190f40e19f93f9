"""The firmware against the NimBLE-like radio (issue 10): what an ESP32 does under load.

Each test restarts a paired device with one fault (keyhook.sim.faults) and checks what the
user sees: the request in flight fails cleanly (an error or a disconnect, never a hang past its
time-out), and the next command answers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from keyhook import ble
from keyhook.session.errors import BadRecord, ChannelError, LinkClosed, LinkTimeout
from keyhook.session.frames import encode_payload

from e2ekit import cli, client, run

pytestmark = pytest.mark.timeout(240)


def restart_with(device, *faults: str) -> None:
    device.stop()
    from keyhook.sim.faults import env_value

    device.faults = env_value(faults)
    device.start()


def test_sim_cli_irq_memoryerror_then_info_twice(paired, keystore):
    """`keyhook sim --fault irq-memoryerror:3`, `keyhook info` twice: the second answers."""
    device = paired
    device.stop()
    env = dict(os.environ, KEYHOOK_RADIO=str(device.radio), KEYHOOK_CONFIG=str(keystore.root))
    sim = subprocess.Popen([sys.executable, "-m", "keyhook", "sim", "--state", str(device.state),
                            "--fault", "irq-memoryerror:3"], env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in sim.stdout:
            lines.append(line)
            if "advertising as" in line:
                break
        t0 = time.monotonic()
        first = cli("info", device.address, "--json", radio=device.radio, config=keystore.root, check=False)
        took = time.monotonic() - t0
        second = cli("info", device.address, "--json", radio=device.radio, config=keystore.root, check=False)
    finally:
        sim.terminate()
        out, _ = sim.communicate(timeout=10)
        lines.append(out)
    console = "".join(lines)
    # the third gatts_read (the request's DATA frame) failed; the first info says so at once
    # with --json a failure is one JSON object on stdout (error, message, hint)
    failure = json.loads(first.stdout)
    assert first.returncode == 2 and failure["error"], first.stdout + first.stderr
    assert "lost" in failure["message"] + failure.get("hint", "") and took < 20
    assert second.returncode == 0, second.stderr + console
    assert json.loads(second.stdout)["device_id"]
    assert "Unhandled exception in IRQ callback handler" not in console  # the handler was never disabled


def test_irq_memoryerror_in_every_phase_leaves_the_device_working(paired, keystore):
    """A MemoryError in the IRQ handler at any write: no deaf device, the next connection works."""
    device = paired
    for n in (1, 2, 4):
        restart_with(device, f"irq-memoryerror:{n}")

        async def go():
            try:
                async with client(device, keystore) as dev:
                    await dev.session.request("info", timeout=10)
                    await dev.session.request("info", timeout=10)
            except ChannelError as e:
                return e
            return None
        err = run(go())
        assert err is None or not isinstance(err, LinkTimeout), (n, err)

        async def again():
            async with client(device, keystore) as dev:
                return await dev.info()
        assert run(again())["device_id"]
        assert "Unhandled exception in IRQ callback handler" not in device.output()


def _many_rules(n=32):
    # rules.list answers about 250 bytes of metadata per rule: 32 rules make an 8 KB record,
    # 33 notifications at MTU 247: more than the 20 + 12 (the notify pool) of link-stall:MS@20
    return [{"functionName": f"rule-{i:02d}-" + "n" * 56,
             "events": ["trigger", f"button:b{i}", f"finger:user-{i:02d}"],
             "definition": {"method": "Post", "url": f"http://host-{i:02d}-" + "h" * 50 + ".local:9/x",
                            "securityLevel": "AllowHttp", "timeout": 1000}} for i in range(n)]


def test_notify_pool_paces_a_large_answer_through_a_stall(paired, keystore):
    """The link frees nothing for 1.5 s mid-answer: the 8 KB answer still arrives whole (the device
    waits for the pool while the link may still come back; it used to give up after about 1 s)."""
    device = paired
    rules = _many_rules()

    async def push():
        async with client(device, keystore) as dev:
            await dev.put_rules(rules)
    run(push())
    restart_with(device, "link-stall:1500@20")

    async def go():
        async with client(device, keystore) as dev:
            listed = (await dev.session.request("rules.list", timeout=15))["rules"]
            info = await dev.session.request("info", timeout=15)
            return listed, info
    listed, info = run(go())
    assert [r["name"] for r in listed] == [r["functionName"] for r in rules] and info["rules"] == 32


def test_link_stall_longer_than_the_device_waits_ends_the_link_not_half_a_record(paired, keystore):
    """`keyhook sim --fault link-stall:3000@20`: a large answer fails fast with a disconnect,
    never half a record on a live link; the next command answers."""
    device = paired
    rules = _many_rules()

    async def push():
        async with client(device, keystore) as dev:
            await dev.put_rules(rules)
    run(push())
    restart_with(device, "link-stall:3000@20")

    async def go():
        async with client(device, keystore) as dev:
            t0 = time.monotonic()
            with pytest.raises(LinkClosed):
                await dev.session.request("rules.list", timeout=15)
            return time.monotonic() - t0
    took = run(go())
    assert took < 10  # the device hung up; the app did not wait for its time-out
    out = cli("rules", "list", device.address, "--json", radio=device.radio, config=keystore.root)
    assert len(json.loads(out.stdout)) == 32


def test_a_lost_write_fails_the_request_cleanly_and_the_next_one_works(paired, keystore):
    """`--fault drop-write:N`: the request whose fragment was lost fails with a clear error
    (never a hang past its time-out); the next connection works."""
    device = paired
    # random names: the host compresses what it can, and this must stay many fragments
    rules = [dict(r, functionName=os.urandom(30).hex()) for r in _many_rules(24)]
    payload = encode_payload({"id": 1, "op": "rules.put", "rules": rules})
    frags = len(ble.fragment(bytes(1 + 8 + len(payload) + 32), 244))  # a DATA record at MTU 247
    assert frags > 4
    # write commands from boot: HELLO 1, HELLO_APP 2, then the request's fragments: the only
    # one (info); the first, one in the middle, the last of many (rules.put)
    for n, big in ((3, False), (3, True), (5, True), (2 + frags, True)):
        restart_with(device, f"drop-write:{n}")

        async def go():
            async with client(device, keystore) as dev:
                t0 = time.monotonic()
                try:
                    if big:  # the default time-out (30 s): the device must say what happened first
                        await dev.session.request("rules.put", rules=rules)
                    else:  # a lost one-fragment record: nobody can know but the app's time-out
                        await dev.session.request("info", timeout=5)
                except ChannelError as e:
                    return e, time.monotonic() - t0
                return None, time.monotonic() - t0
        err, took = run(go())
        assert isinstance(err, ChannelError) and took < 10, (n, err, took)
        assert str(err) and err.hint
        if big:
            assert isinstance(err, BadRecord) and "lost" in str(err), (n, err)

        async def again():
            async with client(device, keystore) as dev:
                return await dev.info()
        assert run(again())["device_id"]
        assert "write command %d lost" % n in device.output()


def test_unpair_answer_discarded_by_the_disconnect_leaves_both_sides_agreeing(paired, keystore):
    """NimBLE discards notifications still queued when the device ends the link: after
    `keyhook unpair` neither side may believe the other holds a key it does not."""
    device = paired
    device_id = run(_info(device, keystore))["device_id"]
    out = cli("unpair", device.address, radio=device.radio, config=keystore.root, check=False)
    assert out.returncode == 0, out.stderr  # the command says it worked ...
    assert keystore.get(device_id) is None  # ... the host forgot the key ...
    device.proc.wait(30)  # the last app left: the device resets and restarts (here the test starts it)
    device.start()
    (seen,) = run(ble.scan(radio=device.radio, timeout=1.0))
    assert seen.address == device.address and not seen.paired  # ... and so did the device


async def _info(device, keystore):
    async with client(device, keystore) as dev:
        return await dev.info()


def test_reset_answer_lost_to_the_restart_leaves_both_sides_agreeing(paired, keystore):
    """The device restarts 200 ms after answering `reset`; an answer still queued then is lost.
    The host asks the restarted device, and forgets its key only because the device did."""
    device = paired
    device_id = run(_info(device, keystore))["device_id"]
    restart_with(device, "link-stall:1000@1")  # HELLO_DEV goes; the answer waits in the pool
    device.faults = ""  # the next boot is clean

    def reboot():  # what `keyhook sim` does when the firmware calls machine.reset()
        assert device.proc.wait(30) == 75
        device.start()
    booter = threading.Thread(target=reboot)
    booter.start()

    async def go():
        async with client(device, keystore) as dev:
            await dev.reset()
    run(go())
    booter.join(30)
    assert keystore.get(device_id) is None
    (seen,) = run(ble.scan(radio=device.radio, timeout=1.0))
    assert not seen.paired
