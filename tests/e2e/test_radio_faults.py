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
import time

import pytest

from keyhook.session.errors import ChannelError, LinkClosed, LinkTimeout

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
    assert first.returncode == 2 and "error:" in first.stderr, first.stderr
    assert "lost" in first.stderr and took < 20
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
