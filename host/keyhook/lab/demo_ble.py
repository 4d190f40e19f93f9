"""The demo's device half: the sample rules go to a simulated device over BLE and fire there.

A simulated device is the real firmware under the MicroPython unix port with the radio
simulated (`keyhook.sim`). The demo reads its setup code from its console, onboards it
(SPAKE2), sets its clock and Wi-Fi, pushes the rules that pass the host's validation in one
atomic push, and triggers each rule; the device's reports come back over the encrypted session.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console

from keyhook import KeyhookError
from keyhook.session.device import DeviceClient, onboard
from keyhook.session.keystore import Keystore
from keyhook.rules import normalise
from keyhook.sim.device import SimDevice

if TYPE_CHECKING:  # pragma: no cover
    from keyhook.lab.stage import Rule, Stage


def fire_over_ble(stage: "Stage", rules: list["Rule"], console: Console) -> list[dict]:
    """Push `rules` to a fresh simulated device and trigger each; one result per rule."""
    radio = Path(tempfile.mkdtemp(prefix="khdemo-"))  # short: Unix socket paths are limited
    device = SimDevice(radio, stage.workdir / "device", certs=stage.trust_dir)
    keystore = Keystore(stage.workdir / "app")
    with device:
        console.print(f"simulated device [bold]{device.address}[/bold] boots; its console says: "
                      f"[cyan]setup code {device.setup_code}[/cyan]")
        return asyncio.run(_session(device, keystore, rules, console))


async def _session(device: SimDevice, keystore: Keystore, rules: list["Rule"], console: Console) -> list[dict]:
    addr, radio = device.address, str(device.radio)
    info = await onboard(addr, device.setup_code, radio=radio, keystore=keystore)
    console.print(f"onboarded {info['name']} with SPAKE2 (the code never crossed the radio); "
                  f"pairing key stored in {keystore.root}")
    results: dict[int, dict] = {}
    push: list[tuple[int, dict]] = []
    for i, rule in enumerate(rules):
        try:
            normalised, _warnings = normalise(rule.webhook)
            push.append((i, normalised))
        except KeyhookError as e:  # the host refuses it before it ever reaches the device
            results[i] = {"sent": False, "status": None, "error": "invalid_definition",
                          "message": f"refused at push: {e}", "elapsed_ms": 0}
    async with DeviceClient(addr, radio=radio, keystore=keystore) as dev:
        await dev.set_time()
        await dev.wifi("demo-lab", "demo-wifi-password")
        stored = await dev.put_rules([r for _, r in push])
        console.print(f"pushed {len(stored)} rules over the encrypted session in one atomic push; "
                      f"triggering each ...")
        for i, rule in push:
            outcome = await dev.trigger(rule["functionName"])
            results[i] = {"sent": bool(outcome.get("sent")), "status": outcome.get("status"),
                          "error": outcome.get("error"), "message": "reported by the device over BLE",
                          "elapsed_ms": outcome.get("elapsed_ms"), "attempts": outcome.get("attempts")}
        lines = await dev.log(len(rules) + 5)
    console.print(f"the device's own (redacted) log holds {len(lines)} lines, e.g. [dim]{lines[-1] if lines else ''}[/dim]")
    return [results[i] for i in range(len(rules))]
