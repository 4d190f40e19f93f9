"""A fake but well-formed MicroPython esp32 release image, built with esptool's own image writer.

Real release images (micropython.org/download) are not available offline, so the tests build
one with the same layout as MicroPython's `makeimg.py` output: a second-stage bootloader image
at the board's image offset, the binary partition table of `partitions-4MiBplus.csv` at 0x8000
(with its MD5 row, as ESP-IDF's gen_esp32part writes it) and an app image at 0x10000. Both
images are `esptool.bin_image` firmware images for the board's chip (chip id, checksum, SHA-256
digest), with small RAM segments and, for the app, a flash-mapped (DROM) segment. They cannot
boot a chip; they parse exactly as esptool parses a real one.
"""

from __future__ import annotations

import hashlib
import struct

from esptool.bin_image import ELFSection
from esptool.targets import CHIP_DEFS

# A RAM address each chip's loader accepts for a segment (IRAM) and a DROM address.
_IRAM = {"esp32": 0x40080400, "esp32s3": 0x403C8700, "esp32c3": 0x403CE000, "esp32s2": 0x40024000}
_DROM = {"esp32": 0x3F400020, "esp32s3": 0x3C000020, "esp32c3": 0x3C000020, "esp32s2": 0x3F000020}

# partitions-4MiBplus.csv of MicroPython v1.28.0 (unchanged in v1.29.0-preview).
PARTITIONS_4MIBPLUS = [
    ("nvs", 0x01, 0x02, 0x9000, 0x6000),
    ("phy_init", 0x01, 0x01, 0xF000, 0x1000),
    ("factory", 0x00, 0x00, 0x10000, 0x1F0000),
]


def esp_image(chip: str, segments: list[tuple[int, bytes]], entry: int) -> bytes:
    """An esptool firmware image for `chip` holding `segments`, saved by esptool itself."""
    img = CHIP_DEFS[chip].BOOTLOADER_IMAGE()
    img.segments = [ELFSection(b".fake%d" % i, addr, data, flags=0) for i, (addr, data) in enumerate(segments)]
    img.entrypoint = entry
    img.flash_mode = 2  # dio
    img.flash_size_freq = 0x20  # 4MB, 40m
    return img.save(None)


def partition_table(rows=PARTITIONS_4MIBPLUS, vfs: tuple[int, int] | None = None) -> bytes:
    out = b""
    for label, ptype, subtype, offset, size in rows:
        out += struct.pack("<2sBBII16sI", b"\xaa\x50", ptype, subtype, offset, size, label.encode(), 0)
    if vfs:
        out += struct.pack("<2sBBII16sI", b"\xaa\x50", 0x01, 0x81, vfs[0], vfs[1], b"vfs", 0)
    out += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(out).digest()
    return out.ljust(0xC00, b"\xff")


def release_image(chip: str, image_offset: int, app_size: int = 0x20000, rows=PARTITIONS_4MIBPLUS,
                  vfs: tuple[int, int] | None = None) -> bytes:
    """The whole fake release .bin, starting at `image_offset` (0x1000 for esp32, 0 otherwise)."""
    iram = _IRAM[chip]
    boot = esp_image(chip, [(iram, b"\x00" * 0x100 + b"keyhook-fake-bootloader")], iram)
    app = esp_image(chip, [(_DROM[chip], b"MicroPython fake app\x00" * 16), (iram, b"\x01" * 0x400)], iram)
    app = app.ljust(app_size, b"\xff")
    pt = partition_table(rows, vfs)
    out = bytearray(b"\xff" * (0x10000 - image_offset))
    out[0:len(boot)] = boot
    out[0x8000 - image_offset:0x8000 - image_offset + len(pt)] = pt
    return bytes(out) + app
