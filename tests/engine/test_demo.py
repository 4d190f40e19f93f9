"""`make demo` runs `python -m keyhook.demo`: every sample rule must behave as expected."""

from __future__ import annotations

import subprocess
import sys


def test_demo_runs_and_every_rule_behaves():
    p = subprocess.run([sys.executable, "-m", "keyhook.demo"], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "every rule behaved" in p.stdout
    for secret in ("demo-access-token", "demo-refresh-0", "demo-key"):
        assert secret not in p.stdout
