"""`keyhook image`: one file to flash, the MicroPython release image plus keyhook's file system.

A MicroPython esp32 release `.bin` is already a merged image: bootloader, partition table
(at 0x8000) and the MicroPython app (at 0x10000), meant to be written at the board's image
offset (0x1000 on the ESP32, 0x0 on the S3 and C3). keyhook appends its littlefs image at the
"vfs" partition's offset with esptool's `merge_bin`, so the result is written at the same
offset as the release image, in one go.

Before merging, the release image is checked with esptool's own image parser: the bootloader
and the app are images for the board's chip with valid checksums and digests, and the partition
table puts the file system where the board file says (MicroPython v1.28+ registers a "vfs"
partition from the end of the last partition to the end of flash; an image with an explicit
"vfs" row must agree with it too).
"""

from __future__ import annotations

import hashlib
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

from keyhook import KeyhookError
from keyhook.boards import Board, size_name

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

PARTITION_MAGIC = b"\xaa\x50"
PARTITION_MD5_MAGIC = b"\xeb\xeb"
PARTITION_ENTRY = struct.Struct("<2sBBII16sI")
PARTITION_TABLE_MAX = 0xC00
TYPE_APP, TYPE_DATA = 0x00, 0x01
ESP_IMAGE_MAGIC = 0xE9


@dataclass(frozen=True)
class Partition:
    """One row of an ESP-IDF binary partition table."""

    label: str
    type: int
    subtype: int
    offset: int
    size: int

    @property
    def end(self) -> int:
        return self.offset + self.size


def parse_partition_table(data: bytes) -> list[Partition]:
    """Rows of an ESP-IDF binary partition table (32-byte entries, MD5 row checked if present)."""
    rows: list[Partition] = []
    for pos in range(0, min(len(data), PARTITION_TABLE_MAX), PARTITION_ENTRY.size):
        entry = data[pos:pos + PARTITION_ENTRY.size]
        if len(entry) < PARTITION_ENTRY.size or entry == b"\xff" * PARTITION_ENTRY.size:
            break
        if entry[:2] == PARTITION_MD5_MAGIC:
            if hashlib.md5(data[:pos]).digest() != entry[16:32]:
                raise KeyhookError("the partition table's MD5 does not match its rows: the image is damaged",
                                   hint="download the MicroPython image again")
            break
        magic, ptype, subtype, offset, size, label, _flags = PARTITION_ENTRY.unpack(entry)
        if magic != PARTITION_MAGIC:
            raise KeyhookError(f"no valid partition table row at {pos:#x} of the table",
                               hint="is this a MicroPython release image for an ESP32 board?")
        rows.append(Partition(label.rstrip(b"\x00").decode("ascii", "replace"), ptype, subtype, offset, size))
    if not rows:
        raise KeyhookError("the image holds no partition table", hint="use a MicroPython firmware .bin "
                           "from micropython.org/download (not an .app-bin or .elf)")
    return rows


def micropython_vfs(rows: list[Partition], flash_size: int) -> tuple[int, int]:
    """Where MicroPython's esp32 port puts its "vfs" partition for this table and flash size.

    An explicit "vfs" (or "ffat") data row wins; otherwise (ports/esp32/main.c, v1.28+) it runs
    from the end of the last partition to the end of the flash.
    """
    for p in rows:
        if p.type == TYPE_DATA and p.label in ("vfs", "ffat"):
            return p.offset, p.size
    end = max(p.end for p in rows)
    return end, flash_size - end


def _load(chip: str, data: bytes, what: str):
    from esptool.bin_image import LoadFirmwareImage
    from esptool.targets import CHIP_DEFS

    if not data or data[0] != ESP_IMAGE_MAGIC:
        raise KeyhookError(f"no {what} image where expected (the first byte is "
                           f"{data[0]:#04x} instead of {ESP_IMAGE_MAGIC:#04x})" if data else f"the {what} is empty",
                           hint="use a MicroPython firmware .bin for this board from micropython.org/download")
    try:
        img = LoadFirmwareImage(chip, data)
    except Exception as e:  # esptool raises FatalError, struct.error, RuntimeError on bad headers
        raise KeyhookError(f"the {what} image cannot be parsed: {e}",
                           hint="download the MicroPython image again") from None
    want = CHIP_DEFS[chip].IMAGE_CHIP_ID
    if img.chip_id != want:
        other = next((name for name, cls in CHIP_DEFS.items() if getattr(cls, "IMAGE_CHIP_ID", None) == img.chip_id),
                     f"chip id {img.chip_id}")
        raise KeyhookError(f"the MicroPython image is built for {other}, not for {chip}",
                           hint=f"download the image for this board, or pick the board that matches ({other})")
    if img.calculate_checksum() != img.checksum:
        raise KeyhookError(f"the {what} image's checksum is wrong: the file is damaged",
                           hint="download the MicroPython image again")
    if getattr(img, "append_digest", False) and getattr(img, "stored_digest", None) is not None:
        if img.stored_digest != img.calc_digest:
            raise KeyhookError(f"the {what} image's SHA-256 digest is wrong: the file is damaged",
                               hint="download the MicroPython image again")
    return img


@dataclass
class ReleaseImage:
    """What was found in a MicroPython release image."""

    size: int
    partitions: list[Partition]
    app_offset: int
    app_size: int
    vfs_offset: int
    vfs_size: int
    bootloader_entry: int
    app_entry: int


def inspect_release(board: Board, data: bytes, flash_size: int | None = None) -> ReleaseImage:
    """Check a MicroPython release image against the board; return its layout.

    Raises:
        KeyhookError: wrong chip, damaged image, or a file system somewhere else than the board
            file says (then the board file is for another MicroPython release).
    """
    if board.simulated:
        raise KeyhookError(f"board {board.name} is simulated: there is nothing to flash",
                           hint="pick a real board, e.g. --board ESP32_GENERIC")
    flash = flash_size or board.flash_size
    boot = _load(board.chip, data, "bootloader")
    pt_at = board.partition_table_offset - board.image_offset
    if len(data) < pt_at + PARTITION_ENTRY.size:
        raise KeyhookError(f"the image is only {len(data)} bytes: too short to hold a partition table at "
                           f"{board.partition_table_offset:#x}", hint="use the full firmware .bin, not the app alone")
    rows = parse_partition_table(data[pt_at:pt_at + PARTITION_TABLE_MAX])
    apps = [p for p in rows if p.type == TYPE_APP]
    if not apps:
        raise KeyhookError("the partition table has no app partition", hint="use a MicroPython release image")
    app = min(apps, key=lambda p: p.offset)
    if app.offset != board.app_offset:
        raise KeyhookError(f"the MicroPython app is at {app.offset:#x}, the board file says {board.app_offset:#x}",
                           hint=f"this image does not match {board.name}'s layout; update boards/{board.name}/board.json")
    app_at = app.offset - board.image_offset
    app_img = _load(board.chip, data[app_at:app_at + app.size], "MicroPython app")
    vfs_offset, vfs_size = micropython_vfs(rows, flash)
    want_offset, want_size = board.vfs_for_flash(flash_size)
    if (vfs_offset, vfs_size) != (want_offset, want_size):
        raise KeyhookError(
            f"this MicroPython image puts its file system at {vfs_offset:#x} ({size_name(vfs_size)}), "
            f"but board {board.name} says {want_offset:#x} ({size_name(want_size)})",
            hint=f"use MicroPython {board.micropython_release} ({board.micropython_image}), or fix the board file")
    if board.image_offset + len(data) > vfs_offset:
        raise KeyhookError(f"the MicroPython image ({len(data)} bytes from {board.image_offset:#x}) runs into the "
                           f"file system at {vfs_offset:#x}", hint="is this image for this board?")
    return ReleaseImage(size=len(data), partitions=rows, app_offset=app.offset, app_size=app.size,
                        vfs_offset=vfs_offset, vfs_size=vfs_size, bootloader_entry=boot.entrypoint,
                        app_entry=app_img.entrypoint)


def read_file(path: Path | str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise KeyhookError(f"{what} {path} does not exist") from None
    except OSError as e:
        raise KeyhookError(f"cannot read {what} {path}: {e.strerror}") from None


def romfs_partition(rows: list[Partition]) -> Partition | None:
    """The data partition MicroPython's esp32 port mounts at /rom (labelled "romfs"), if any."""
    return next((p for p in rows if p.type == TYPE_DATA and p.label == "romfs"), None)


def merge(board: Board, micropython: bytes, vfs_image: bytes, out: Path | str,
          flash_size: int | None = None, romfs_image: bytes | None = None) -> ReleaseImage:
    """Write one image: `micropython` at the board's image offset, `vfs_image` at the vfs offset,
    and `romfs_image` (when given) at the offset of the image's "romfs" partition.

    The output starts at the board's image offset (write it where the release image goes).
    """
    from esptool.cmds import merge_bin
    from esptool.util import FatalError

    rel = inspect_release(board, micropython, flash_size)
    if len(vfs_image) != rel.vfs_size:
        raise KeyhookError(f"the littlefs image is {len(vfs_image)} bytes, the partition {rel.vfs_size}",
                           hint="build it for the same board and --flash-size")
    parts = [(board.image_offset, micropython), (rel.vfs_offset, vfs_image)]
    if romfs_image is not None:
        rom = romfs_partition(rel.partitions)
        if rom is None:
            raise KeyhookError("this MicroPython image has no ROMFS partition for the firmware",
                               hint="build one with `make firmware`, or leave the code on the file system")
        if len(romfs_image) > rom.size:
            raise KeyhookError(f"the firmware's ROMFS image is {len(romfs_image)} bytes, the partition {rom.size}")
        if board.image_offset + len(micropython) > rom.offset:
            raise KeyhookError(f"the MicroPython image runs into its ROMFS partition at {rom.offset:#x}")
        parts.insert(1, (rom.offset, romfs_image))
    try:
        merge_bin(parts, chip=board.chip, output=str(out), target_offset=board.image_offset)
    except FatalError as e:
        raise KeyhookError(f"esptool could not merge the images: {e}") from None
    return rel


def describe(board: Board, merged: bytes) -> list[str]:
    """esptool's own `image_info` report on the bootloader and app inside a merged image."""
    from esptool.cmds import image_info
    from esptool.util import FatalError

    from keyhook.boards.esplog import EsptoolLog, esptool_logging

    base = board.image_offset
    parts = [(base, merged), (board.app_offset, merged[board.app_offset - base:])]
    sink = EsptoolLog()
    try:
        with esptool_logging(sink):
            image_info(parts, chip=board.chip)
    except FatalError as e:
        raise KeyhookError(f"esptool cannot read the merged image: {e}") from None
    return sink.lines
