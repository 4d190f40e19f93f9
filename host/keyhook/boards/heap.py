"""The board's MicroPython heap, read over the REPL, against what the firmware needs.

`keyhook flash` and `keyhook deploy` run `HEAP_PROBE` on the board (through mpremote, in the raw
REPL, so after a soft reset and before main.py: the heap a freshly started firmware gets) and
compare what it prints with `FIRMWARE_HEAP_KIB`, the heap the firmware needs in each code form.

What MicroPython reports (py/gc.c `gc_dump_info`, printed by `micropython.mem_info()`):

    GC: total: 56000, used: 1234, free: 54766, max new split: 110592
     No. of 1-blocks: 12, 2-blocks: 4, max blk sz: 11, max free sz: 3400

"max free sz" is the largest run of free GC blocks (a block is 4 machine words: 16 bytes on
the ESP32, 32 on a 64-bit unix port); "max new split" (ports with MICROPY_GC_SPLIT_HEAP_AUTO,
the esp32 port among them) is the largest area the heap can still add from the chip's RAM. On
an ESP32 without PSRAM that growth takes internal RAM that Wi-Fi, BLE and TLS also need; on a
PSRAM board it comes from PSRAM.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

KIB = 1024

# Heap (KiB) the firmware needs to boot, onboard an app, take a 20-rule push and fire an OAuth
# refresh rule, by code form: "mpy" = .mpy files on the file system (their bytecode is loaded
# into the heap), "romfs" = .mpy executed in place from a ROMFS partition, "frozen" = frozen
# into the MicroPython image. Measured by `make bench` (tests/bench/bench_heap.py, the firmware's
# own share on the 32-bit interpreter, scenario B, 2026-11-30, rounded up). The goals of issue 8
# are 80 (mpy) and 48 (in place): frozen code meets its goal, ROMFS and .mpy do not.
FIRMWARE_HEAP_KIB = {"mpy": 139, "romfs": 91, "frozen": 48}

# No ESP32-family chip has 1 MiB of internal SRAM (the ESP32 has 520 KiB, the S3 512 KiB):
# a heap that can grow by that much grows into PSRAM.
PSRAM_GROWTH = 1024 * KIB

# Runs on the board (MicroPython): a collected heap's figures, as one JSON line after a marker,
# preceded by micropython.mem_info()'s own lines (parsed on the host).
HEAP_MARKER = "KEYHOOK-HEAP "
HEAP_PROBE = """\
import gc, sys, json, micropython
gc.collect()
micropython.mem_info()
print('KEYHOOK-HEAP ' + json.dumps({'free': gc.mem_free(), 'alloc': gc.mem_alloc(), 'word': 8 if sys.maxsize > 2147483647 else 4}))
"""

_GC_LINE = re.compile(r"GC: total: (\d+), used: (\d+), free: (\d+)(?:, max new split: (\d+))?")
_BLOCKS_LINE = re.compile(r"max free sz: (\d+)")


@dataclass
class HeapInfo:
    """A board's GC heap, in bytes.

    size: gc.mem_free() + gc.mem_alloc() (the heap as it is now; on the esp32 port it starts at
        56 KiB on the ESP32, 64 KiB on the S3 and C3, and grows on demand);
    free: gc.mem_free() after gc.collect();
    largest_free: the largest free block (mem_info's "max free sz" times the block size);
    growable: how much the heap can still add ("max new split"; 0 where the port cannot grow).
    """

    size: int
    free: int
    largest_free: int
    growable: int = 0

    @property
    def psram(self) -> bool:
        """True when the heap can grow by more than any ESP32-family chip has internal RAM:
        the growth comes from PSRAM and costs Wi-Fi, BLE and TLS nothing."""
        return self.growable >= PSRAM_GROWTH

    @property
    def reachable(self) -> int:
        """Heap the firmware can have at most: what there is plus what it can still add."""
        return self.size + self.growable

    def describe(self) -> str:
        text = (f"{self.size / KIB:.0f} KiB GC heap, {self.free / KIB:.0f} KiB free, largest free block "
                f"{self.largest_free / KIB:.0f} KiB")
        if self.growable:
            text += f", can grow by {self.growable / KIB:.0f} KiB"
        return text

    def as_dict(self) -> dict:
        return asdict(self)


def parse_heap(stdout: str) -> HeapInfo | None:
    """The HeapInfo in the output of HEAP_PROBE (or of any script that ran it); None when absent."""
    marker = None
    for line in stdout.splitlines():
        if line.startswith(HEAP_MARKER):
            marker = json.loads(line[len(HEAP_MARKER):])
    if marker is None:
        return None
    word = int(marker.get("word") or 4)
    free = int(marker["free"])
    size = free + int(marker["alloc"])
    gc_line = _GC_LINE.search(stdout)
    blocks = _BLOCKS_LINE.search(stdout)
    growable = int(gc_line.group(4) or 0) if gc_line else 0
    largest = int(blocks.group(1)) * 4 * word if blocks else free
    return HeapInfo(size=size, free=free, largest_free=min(largest, free), growable=growable)


def needed(form: str) -> int:
    """Bytes of heap the firmware needs in code form "mpy", "romfs" or "frozen"."""
    return FIRMWARE_HEAP_KIB[form] * KIB


def fit_warnings(heap: HeapInfo, form: str, board: str = "the board") -> list[str]:
    """Warnings, worst first, when the firmware in `form` will not fit (or only just fits) `heap`.

    Empty when the free heap at start-up covers what the firmware needs.
    """
    need = needed(form)
    what = {"mpy": ".mpy files on the file system", "romfs": "code in place (ROMFS)",
            "frozen": "frozen into the image"}[form]
    head = f"the firmware as {what} needs about {need // KIB} KiB of heap; {board} has {heap.describe()}"
    if need > heap.free + heap.growable:
        return [f"{head}: it will not fit, and the device will fail with MemoryError"]
    if need > heap.free and not heap.psram:
        return [f"{head}: MicroPython must grow its heap into RAM that Wi-Fi, BLE and TLS also need, "
                "so a fire may fail for memory"]
    return []


def heap_from_board(memory: dict) -> HeapInfo | None:
    """A HeapInfo from a board.json "memory" section (when the board cannot be asked)."""
    kib = memory.get("gc_heap_kib")
    if not kib:
        return None
    size = int(kib) * KIB
    grow = int(memory.get("psram_kib", 0)) * KIB  # the heap grows into PSRAM (MICROPY_GC_SPLIT_HEAP_AUTO)
    return HeapInfo(size=size, free=size, largest_free=size, growable=grow)
