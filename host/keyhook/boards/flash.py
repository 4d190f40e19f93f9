"""`keyhook flash`: write an image to a board through esptool's Python API.

Everything goes through `esptool.cmds` (`detect_chip`, `run_stub`, `attach_flash`,
`detect_flash_size`, `erase_flash`, `write_flash`, `reset_chip`) inside `with detect_chip(...)`,
never through esptool's stdout or `ESPLoader` internals. esptool's messages and progress reach
the user through a logger installed for the duration of the call (`EsptoolLog`), which a
caller (or a test) can replace with its own.

Checks before a byte is written: the port exists and is free; the chip esptool finds is the
board's chip (an ESP32-S2 or ESP8266 is refused: no BLE); the module's flash size matches the
layout of the littlefs image (MicroPython sizes its "vfs" partition from the real flash, and
littlefs refuses to mount an image made for another size).
"""

from __future__ import annotations

import contextlib
import logging
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from keyhook import KeyhookError
from keyhook.boards import serialport
from keyhook.boards import NO_BLE_CHIPS, SUPPORTED, Board, parse_size, size_name
from keyhook.boards.esplog import EsptoolLog, esptool_logging, progress_label  # noqa: F401 (re-exported)

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

DEFAULT_BAUD = 460800
DOWNLOAD_MODE_HINT = ("hold the BOOT button, press and release RESET (EN), release BOOT, then try again; "
                      "or try a lower --baud, or another USB cable (some carry power only)")


def chip_key(name: str) -> str:
    """esptool's CHIP_NAME ("ESP32-S3") as a board chip name ("esp32s3")."""
    return name.lower().replace("-", "").replace("(", "").replace(")", "").replace(" ", "")


def _fatal(e: Exception, port: str) -> KeyhookError:
    text = str(e).strip()
    if "Could not open" in text:
        return serialport.classify(port, e)
    if "Failed to connect" in text or "No serial data received" in text or "Wrong boot mode" in text:
        return KeyhookError(f"the board on {port} does not answer esptool: {text.splitlines()[0]}",
                            hint=DOWNLOAD_MODE_HINT)
    return KeyhookError(f"esptool: {text.splitlines()[0] if text else type(e).__name__}", hint=DOWNLOAD_MODE_HINT)


def check_chip(board: Board, found: str) -> None:
    """Stop unless the chip esptool found is the board's chip."""
    key = chip_key(found)
    if key == board.chip:
        return
    if key in NO_BLE_CHIPS:
        raise KeyhookError(
            f"the board on this port is an {found}, which has no Bluetooth LE; keyhook needs BLE",
            hint=f"use a board with an ESP32, ESP32-S3 or ESP32-C3 ({', '.join(SUPPORTED)})")
    match = {"esp32": "ESP32_GENERIC", "esp32s3": "ESP32_GENERIC_S3", "esp32c3": "ESP32_GENERIC_C3"}.get(key)
    raise KeyhookError(
        f"the board on this port is an {found}, but --board {board.name} is for an {board.chip}",
        hint=f"use --board {match}" if match else f"keyhook has no board definition for the {found}")


def check_flash_size(board: Board, detected: str | None, expected: int | None) -> None:
    """Stop when the module's flash size differs from the one the image was laid out for."""
    if not detected:
        return  # esptool could not tell (some flash chips); trust the user
    want = expected or board.flash_size
    got = parse_size(detected)
    if got != want:
        raise KeyhookError(
            f"this module has {size_name(got)} of flash, the image is laid out for {size_name(want)}: "
            f"MicroPython would find the file system the wrong size and not mount it",
            hint=f"build the image again with --flash-size {size_name(got)}")


@dataclass
class FlashReport:
    """What `flash` did."""

    port: str
    chip: str
    flash_size: str | None
    offset: int
    size: int
    erased: bool


@contextlib.contextmanager
def connect(board: Board, port: str, baud: int = DEFAULT_BAUD, sink: EsptoolLog | None = None,
            connect_attempts: int = 7) -> Iterator[object]:
    """Connect to the board on `port` with esptool, check its chip, load the stub, attach flash.

    Yields esptool's loader object, to pass to other `esptool.cmds` functions.
    """
    from esptool.cmds import attach_flash, detect_chip, run_stub
    from esptool.util import FatalError

    if board.simulated:
        raise KeyhookError(f"board {board.name} is simulated: there is nothing to flash",
                           hint="pick a real board, e.g. --board ESP32_GENERIC")
    serialport.check(port)
    with esptool_logging(sink):
        try:
            with detect_chip(port, baud, connect_attempts=connect_attempts) as esp:
                check_chip(board, esp.CHIP_NAME)
                esp = run_stub(esp)
                attach_flash(esp)
                yield esp
        except FatalError as e:
            raise _fatal(e, port) from None
        except OSError as e:  # the port vanished (board unplugged) mid-way
            raise serialport.classify(port, e) from None


def flash(board: Board, port: str, image: bytes, *, erase: bool = False, baud: int = DEFAULT_BAUD,
          flash_size: int | None = None, sink: EsptoolLog | None = None) -> FlashReport:
    """Write a merged image (starting at the board's image offset) to the board and reset it.

    Args:
        board: the board definition; the chip found must be its chip.
        port: serial port.
        image: bytes to write at `board.image_offset` (from `keyhook image`).
        erase: erase the whole flash first (wipes an old file system, rules and pairings).
        baud: baud rate for writing.
        flash_size: the flash size the image was laid out for (default: the board's).
        sink: receives esptool's messages and progress.
    """
    from esptool.cmds import detect_flash_size, erase_flash, reset_chip, write_flash
    from esptool.util import FatalError

    if not image:
        raise KeyhookError("the image to flash is empty")
    with connect(board, port, baud, sink) as esp:
        try:
            detected = detect_flash_size(esp)
            check_flash_size(board, detected, flash_size)
            if erase:
                erase_flash(esp)
            write_flash(esp, [(board.image_offset, image)])
            reset_chip(esp, "hard-reset")
        except FatalError as e:
            raise _fatal(e, port) from None
        return FlashReport(port=port, chip=esp.CHIP_NAME, flash_size=detected, offset=board.image_offset,
                           size=len(image), erased=erase)


def image_for(board: Board, *, image_path: Path | None, micropython: Path | None, flash_size: int | None = None,
              build_kw: dict | None = None, progress: Callable[[str], None] | None = None) -> bytes:
    """The bytes to flash: a merged image file as is, or MicroPython plus a fresh build merged."""
    from keyhook.boards import image as kimage

    if (image_path is None) == (micropython is None):
        raise KeyhookError("give exactly one of --image OUT.bin or --micropython FIRMWARE.bin")
    if image_path is not None:
        data = kimage.read_file(image_path, "image")
        # A merged image starts with the release image: check it the same way `image` does,
        # and check that the littlefs part is the partition's size for this flash size.
        vfs_offset, vfs_size = board.vfs_for_flash(flash_size)
        head = vfs_offset - board.image_offset
        kimage.inspect_release(board, data[:head], flash_size)
        if len(data) != head + vfs_size:
            have = len(data) - head
            raise KeyhookError(
                f"{image_path} holds {have} bytes of file system, the partition at {vfs_offset:#x} needs {vfs_size}",
                hint="make the image again with `keyhook image` for this board (and the same --flash-size)")
        return data
    mp = kimage.read_file(micropython, "MicroPython image")
    with tempfile.TemporaryDirectory(prefix="keyhook-flash-") as tmp:
        out = Path(tmp) / "merged.bin"
        build_and_merge(board, mp, out, Path(tmp) / "build", flash_size=flash_size, build_kw=build_kw,
                        progress=progress)
        return out.read_bytes()


def code_form(board: Board, micropython: bytes, flash_size: int | None = None) -> str:
    """"romfs" when the MicroPython image has a ROMFS partition (a `make firmware` image), else "mpy"."""
    from keyhook.boards import image as kimage

    rel = kimage.inspect_release(board, micropython, flash_size)
    return "romfs" if kimage.romfs_partition(rel.partitions) else "mpy"


def build_and_merge(board: Board, micropython: bytes, out: Path, build_dir: Path, *, flash_size: int | None = None,
                    build_kw: dict | None = None, progress: Callable[[str], None] | None = None) -> str:
    """Build keyhook's file system and merge it with MicroPython into `out`; returns the code form.

    When the MicroPython image has a ROMFS partition, the compiled firmware (kh/) goes there as a
    ROMFS image and runs in place, and the file system holds the rest (main.py, board.json, the
    trust store); otherwise the .mpy files go on the file system.
    """
    from keyhook.boards import build as kbuild
    from keyhook.boards import image as kimage
    from keyhook.boards import romfs as kromfs

    form = code_form(board, micropython, flash_size)
    result = kbuild.build(board, build_dir, flash_size=flash_size, progress=progress, **(build_kw or {}))
    rom_image = None
    if form == "romfs":
        rom_image = kromfs.build_image(result.stage)
        if progress:
            progress(f"the firmware goes into the ROMFS partition ({len(rom_image)} bytes), to run in place")
        for root in kromfs.IMAGE_ROOTS:
            shutil.rmtree(result.stage / root)
        offset, size = board.vfs_for_flash(flash_size)
        result.image.write_bytes(kbuild.make_littlefs(result.stage, size, board.vfs_block_size))
    kimage.merge(board, micropython, result.image.read_bytes(), out, flash_size, romfs_image=rom_image)
    return form


HEAP_TIMEOUT_S = 8  # a running MicroPython answers in 1-2 s; a board in its bootloader never


@dataclass
class HeapCheck:
    """The heap `flash` compared the firmware with, where it came from, and the warnings."""

    heap: object | None  # keyhook.boards.heap.HeapInfo
    source: str  # "board" (read over the REPL), "board.json", or "none"
    form: str
    warnings: list


def read_heap(port: str, *, runner=None, timeout: float = HEAP_TIMEOUT_S):
    """The GC heap of the MicroPython running on the board now (keyhook.boards.heap.HeapInfo), read
    over the raw REPL with mpremote; None when the board does not answer as MicroPython (a new
    board, or one in its bootloader)."""
    from keyhook.boards import deploy as kdeploy
    from keyhook.boards import heap as kheap

    try:
        proc = kdeploy.run_mpremote(port, ["exec", kheap.HEAP_PROBE], timeout=timeout, runner=runner)
    except KeyhookError as e:
        log.info("no heap figures from %s: %s", port, e)
        return None
    return kheap.parse_heap(proc.stdout)


def check_heap(board: Board, port: str, form: str, *, ask: bool = True, runner=None,
               timeout: float = HEAP_TIMEOUT_S) -> HeapCheck:
    """Compare the firmware in code form `form` with the board's heap, before writing.

    The heap is read from the MicroPython the board runs now (the same chip and, for a stock
    image, the same heap as after flashing); when it does not answer, board.json's "memory"
    figures stand in.
    """
    from keyhook.boards import heap as kheap

    heap = read_heap(port, runner=runner, timeout=timeout) if ask else None
    source = "board"
    if heap is None:
        heap, source = kheap.heap_from_board(board.memory), "board.json"
    if heap is None:
        return HeapCheck(None, "none", form, [])
    where = f"the {board.name} on {port}" if source == "board" else f"a {board.name} (figures of its board.json)"
    return HeapCheck(heap, source, form, kheap.fit_warnings(heap, form, where))
