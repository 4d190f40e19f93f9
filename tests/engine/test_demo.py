"""`make demo` runs `python -m keyhook.lab.demo`: every sample rule must behave as expected."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize("mode", [[], ["--engine"]], ids=["over-ble", "engine-only"])
def test_demo_runs_and_every_rule_behaves(mode):
    p = subprocess.run([sys.executable, "-m", "keyhook.lab.demo", *mode], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "every rule behaved" in p.stdout
    for secret in ("demo-access-token", "demo-refresh-0", "demo-key", "demo-wifi-password"):
        assert secret not in p.stdout
    if not mode:  # the device half: onboarded with the printed code, and the device reported
        assert "setup code" in p.stdout and "onboarded" in p.stdout
        assert "reported by the device over BLE" in p.stdout
