"""ROMFS images of the compiled firmware: code that MicroPython executes in place from flash.

A ROMFS (MicroPython's read-only file system, `vfs.VfsRom`, format in `extmod/vfs_rom.c`) is
memory-mapped: `.mpy` files imported from it keep their bytecode and constant data in flash
instead of copying them into the GC heap, as frozen modules do, without rebuilding MicroPython.
MicroPython mounts the first ROMFS partition at `/rom` at start-up and appends `/rom` and
`/rom/lib` to `sys.path` (`extmod/vfs.c` `mp_vfs_mount_romfs_protected`); keyhook's `main.py`
moves them to the front, so that the firmware in ROM wins over stale files.

The image is written with mpremote's own writer (`mpremote.romfs.VfsRomWriter`, the code behind
`mpremote romfs build`) from the tree `keyhook build` compiled: `kh/**/*.mpy`, nothing else.
`main.py` stays on the file system (MicroPython runs it from there), and so do `board.json`
and the trust store (data that `keyhook deploy` and the device itself edit).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Sequence

from keyhook import KeyhookError

ROMFS_HEADER = b"\xd2\xcd\x31"  # record kind 0x14a6b1, "RM1" (docs/reference/romfs.rst)
IMAGE_ROOTS = ("kh",)  # what of the compiled tree goes into the image
IMAGE_NAME = "firmware.romfs"


def _writer():
    try:
        from mpremote.romfs import VfsRomWriter
    except ImportError:
        raise KeyhookError("mpremote is not installed (it writes ROMFS images)", hint="run `make install`") from None
    return VfsRomWriter()


def _add_tree(w, folder: Path) -> None:
    for entry in sorted(folder.iterdir(), key=lambda p: p.name):
        if entry.name.startswith(".") or entry.name == "__pycache__":
            continue
        try:
            entry.name.encode("ascii")
        except UnicodeEncodeError:
            raise KeyhookError(f"{entry}: ROMFS names must be ASCII") from None
        if entry.is_dir():
            w.opendir(entry.name)
            _add_tree(w, entry)
            w.closedir()
        else:
            w.mkfile(entry.name, entry.read_bytes())


def build_image(stage: Path, roots: Sequence[str] = IMAGE_ROOTS) -> bytes:
    """A ROMFS image holding `roots` (folders or files) of the compiled tree `stage`.

    Raises:
        KeyhookError: a root is missing, or holds a file that is not compiled (.py).
    """
    w = _writer()
    for root in roots:
        path = stage / root
        if not path.exists():
            raise KeyhookError(f"{path} does not exist: nothing to put into the ROMFS image",
                               hint="run `keyhook build` first")
        sources = sorted(p for p in path.rglob("*.py")) if path.is_dir() else []
        if sources:
            raise KeyhookError(f"{sources[0]} is source: a ROMFS holds the compiled .mpy files",
                               hint="build with `keyhook build`, which compiles the firmware")
        if path.is_dir():
            w.opendir(path.name)
            _add_tree(w, path)
            w.closedir()
        else:
            w.mkfile(path.name, path.read_bytes())
    return bytes(w.finalise())


def image_length(data: bytes) -> int:
    """The bytes a ROMFS image spans (header, length and payload), read from its header.

    Raises:
        KeyhookError: `data` does not start with a ROMFS header.
    """
    if not data.startswith(ROMFS_HEADER):
        raise KeyhookError("not a ROMFS image (it does not start with the ROMFS header d2:cd:31)")
    n = 0
    for i, b in enumerate(data[3:3 + 10]):
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            return 3 + i + 1 + n
    raise KeyhookError("the ROMFS image's length field is damaged")


def sha256(data: bytes) -> str:
    """SHA-256 of the image as the device's probe computes it (over `image_length` bytes)."""
    return hashlib.sha256(data[:image_length(data)]).hexdigest()


def empty_image() -> bytes:
    """A valid ROMFS image with no files (what deploy writes to retire code in place)."""
    return bytes(_writer().finalise())


def write_image(stage: Path, out: Path, roots: Sequence[str] = IMAGE_ROOTS) -> bytes:
    data = build_image(stage, roots)
    out.write_bytes(data)
    return data
