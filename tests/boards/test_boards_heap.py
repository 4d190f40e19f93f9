"""The board's heap, read over the REPL before `flash` and `deploy` write anything, and the
warning when the firmware will not fit it. The REPL is the real MicroPython unix port running
keyhook's heap probe; esptool is replaced at its API (as in test_boards_flash.py)."""

from __future__ import annotations

import subprocess

import pytest

import fakeimage
from keyhook import boards
from keyhook.boards import heap, mp, romfs
from keyhook.boards import flash as kflash
from keyhook.boards import image as kimage
from keyhook.cli import main

from test_boards_flash import FakeChip, esptool_api, pty_port  # noqa: F401 (fixtures)
from test_boards_firmware import MICROPYTHON_ROMFS_TABLE
from test_boards_romfs import INTERPRETERS

READ_HEAP = kflash.read_heap


def repl(heapsize: int, binary: str | None = None):
    """An mpremote stand-in whose `exec SCRIPT` runs SCRIPT on the unix port with that heap."""
    seen = []

    def run(cmd, timeout):
        assert cmd[1:4] == ["-m", "mpremote", "connect"] and cmd[5] == "exec", cmd
        seen.append(cmd)
        args = [binary or mp.micropython_binary(), "-X", f"heapsize={heapsize}", "-c", cmd[6]]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=60)
        return subprocess.CompletedProcess(cmd, proc.returncode, proc.stdout, proc.stderr)

    run.seen = seen
    return run


@pytest.mark.parametrize("binary", INTERPRETERS)
def test_the_probe_reads_size_free_and_largest_block(binary):
    h = kflash.read_heap("/dev/ttyFAKE", runner=repl(100 * 1024, binary))
    # The whole heap is there, a little is in use, and most of it is one free block.
    assert 96 * 1024 <= h.size <= 100 * 1024
    assert 0 < h.size - h.free < 8 * 1024
    assert h.free * 0.9 < h.largest_free <= h.free
    assert h.growable == 0 and not h.psram  # the unix port's heap does not grow


def test_mem_info_of_an_esp32_is_parsed():
    # What micropython.mem_info() prints on the esp32 port (split heap: "max new split"), after
    # the probe's own line; ESP32 blocks are 16 bytes.
    out = ("stack: 736 out of 15360\nGC: total: 64000, used: 3904, free: 60096, max new split: 110592\n"
           " No. of 1-blocks: 49, 2-blocks: 12, max blk sz: 40, max free sz: 3712\n"
           'KEYHOOK-HEAP {"free": 60096, "alloc": 3904, "word": 4}\n')
    h = heap.parse_heap(out)
    assert (h.size, h.free, h.largest_free, h.growable) == (64000, 60096, 3712 * 16, 110592)
    assert heap.parse_heap("Traceback (most recent call last):\n") is None


@pytest.mark.parametrize("free_less, growable_kib, words", [  # free = the firmware's need - free_less
    (-120, 0, None),
    (20, 100, "must grow its heap"),
    (60, 0, "will not fit"),
    (20, 4000, None),  # PSRAM: growth costs Wi-Fi, BLE and TLS nothing
])
def test_fit_warnings(free_less, growable_kib, words):
    free_kib = heap.FIRMWARE_HEAP_KIB["mpy"] - free_less
    h = heap.HeapInfo(size=free_kib * 1024 + 2048, free=free_kib * 1024, largest_free=free_kib * 1024,
                      growable=growable_kib * 1024)
    w = heap.fit_warnings(h, "mpy", "the board")
    if words is None:
        assert w == []
    else:
        assert len(w) == 1 and words in w[0] and f"needs about {heap.FIRMWARE_HEAP_KIB['mpy']} KiB" in w[0]


def test_check_heap_falls_back_to_the_board_file():
    def silent(cmd, timeout):
        raise subprocess.TimeoutExpired(cmd, timeout)

    c = kflash.check_heap(boards.load("ESP32_GENERIC"), "/dev/ttyFAKE", "mpy", runner=silent)
    assert c.source == "board.json" and c.heap.size == 56 * 1024
    assert c.warnings and "figures of its board.json" in c.warnings[0]
    c = kflash.check_heap(boards.load("ESP32_GENERIC"), "/dev/ttyFAKE", "romfs", runner=repl(512 * 1024))
    assert c.source == "board" and c.warnings == []


def test_cli_flash_warns_from_the_heap_it_read_then_writes(esptool_api, pty_port, tmp_path, capsys, monkeypatch):  # noqa: F811
    calls, state = esptool_api
    state["chip"] = FakeChip("ESP32")
    small = repl(40 * 1024)
    # The board answers on the REPL with a 40 KiB heap (mpremote replaced by the unix port).
    monkeypatch.setattr(kflash, "read_heap", lambda port, **kw: READ_HEAP(port, runner=small))
    mpbin = tmp_path / "ESP32_GENERIC-v1.29.0.bin"
    mpbin.write_bytes(fakeimage.release_image("esp32", 0x1000))
    with pytest.raises(SystemExit) as e:
        main(["flash", "--board", "ESP32_GENERIC", "--port", pty_port, "--micropython", str(mpbin), "--no-trust"])
    err = capsys.readouterr().err
    assert e.value.code == 0, err
    assert "heap (read from the board): " in err
    assert "warning: the firmware as .mpy files on the file system needs about" in err and "will not fit" in err
    assert small.seen and any(c[0] == "write_flash" for c in calls)


def test_cli_flash_puts_the_firmware_into_a_romfs_partition(esptool_api, pty_port, tmp_path, capsys):  # noqa: F811
    calls, state = esptool_api
    state["chip"] = FakeChip("ESP32")
    board = boards.load("ESP32_GENERIC")
    mpbin = tmp_path / "micropython.bin"  # what `make firmware` builds: a table with "romfs"
    mpbin.write_bytes(fakeimage.release_image("esp32", 0x1000, rows=MICROPYTHON_ROMFS_TABLE))
    with pytest.raises(SystemExit) as e:
        main(["flash", "--board", "ESP32_GENERIC", "--port", pty_port, "--micropython", str(mpbin), "--no-trust",
              "--no-heap-check"])
    err = capsys.readouterr().err
    assert e.value.code == 0, err
    assert "the firmware goes into the ROMFS partition" in err
    (addr, data), = next(c for c in calls if c[0] == "write_flash")[1]
    rom = data[board.romfs_offset - addr:board.romfs_offset - addr + board.romfs_size]
    assert rom.startswith(romfs.ROMFS_HEADER) and b"main.mpy" in rom[:romfs.image_length(rom)]
    # The file system holds main.py, board.json, no kh/ (it would only take flash).
    from keyhook.boards import build as kbuild

    fs = kbuild.read_littlefs(data[board.vfs_offset - addr:], board.vfs_block_size)
    assert "main.py" in fs and "board.json" in fs and not any(p.startswith("kh/") for p in fs)
    # A stock image keeps the .mpy files on the file system.
    rel = kimage.inspect_release(board, fakeimage.release_image("esp32", 0x1000))
    assert kimage.romfs_partition(rel.partitions) is None

