"""`keyhook flash` drives esptool through its Python API: tested with esptool replaced at that
API boundary (`esptool.cmds.*`), so no board is needed. The port checks use a real pseudo
terminal: a missing path, and one that another program holds exclusively (as esptool would)."""

from __future__ import annotations

import os

import pytest
import serial

import fakeimage
from keyhook import KeyhookError, boards
from keyhook.boards import serialport
from keyhook.boards import flash as kflash
from keyhook.cli import main


@pytest.fixture
def pty_port():
    """A free serial port path (the slave side of a pseudo terminal)."""
    master, slave = os.openpty()
    yield os.ttyname(slave)
    os.close(master)
    os.close(slave)


class FakeChip:
    """Stands in for the ESPLoader that esptool.cmds.detect_chip returns."""

    def __init__(self, chip_name: str, flash_size: str | None = "4MB"):
        self.CHIP_NAME = chip_name
        self.flash_size = flash_size
        self.closed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.closed = True


@pytest.fixture
def esptool_api(monkeypatch):
    """Replace esptool.cmds' functions that talk to a chip; record every call."""
    import esptool.cmds as cmds
    from esptool.logger import log

    calls: list[tuple] = []
    state = {"chip": FakeChip("ESP32")}

    def detect_chip(port, baud=115200, connect_mode="default-reset", trace_enabled=False, connect_attempts=7):
        calls.append(("detect_chip", port, baud))
        log.print(f"Connecting to {port}... detected {state['chip'].CHIP_NAME}")
        return state["chip"]

    def run_stub(esp, plugins=None):
        calls.append(("run_stub",))
        return esp

    def attach_flash(esp, spi_connection=None, flash_type="nor"):
        calls.append(("attach_flash",))

    def detect_flash_size(esp):
        calls.append(("detect_flash_size",))
        return esp.flash_size

    def erase_flash(esp, force=False, flash_type="nor"):
        calls.append(("erase_flash",))
        log.print("Flash memory erased successfully")

    def write_flash(esp, addr_data, flash_freq="keep", flash_mode="keep", flash_size="keep", **kw):
        calls.append(("write_flash", [(a, bytes(d)) for a, d in addr_data], flash_size))
        total = sum(len(d) for _a, d in addr_data)
        # As esptool does: one progress task per file, its description naming the moving address.
        with log.progress(total=total, unit="B") as progress:
            for a, d in addr_data:
                for off in range(0, len(d), 0x4000):
                    n = min(0x4000, len(d) - off)
                    progress.update(advance=n, description=f"Writing at {a + off + n:#010x}")

    def reset_chip(esp, reset_mode="hard-reset"):
        calls.append(("reset_chip", reset_mode))

    for f in (detect_chip, run_stub, attach_flash, detect_flash_size, erase_flash, write_flash, reset_chip):
        monkeypatch.setattr(cmds, f.__name__, f)
    return calls, state


def merged(board) -> bytes:
    from keyhook.boards import build as kbuild
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        r = kbuild.build(board, Path(tmp), trust=False)
        out = Path(tmp) / "m.bin"
        from keyhook.boards import image as kimage

        kimage.merge(board, fakeimage.release_image(board.chip, board.image_offset), r.image.read_bytes(), out)
        return out.read_bytes()


def test_flash_writes_the_image_at_the_boards_offset_and_resets(esptool_api, pty_port):
    calls, state = esptool_api
    board = boards.load("ESP32_GENERIC")
    data = merged(board)
    progress, lines = [], []
    sink = kflash.EsptoolLog(on_line=lines.append, on_progress=lambda d, t, label: progress.append((d, t, label)))
    report = kflash.flash(board, pty_port, data, sink=sink)
    names = [c[0] for c in calls]
    assert names == ["detect_chip", "run_stub", "attach_flash", "detect_flash_size", "write_flash", "reset_chip"]
    write = next(c for c in calls if c[0] == "write_flash")
    assert write[1] == [(0x1000, data)]
    assert ("reset_chip", "hard-reset") in calls
    assert calls[0][1] == pty_port and calls[0][2] == kflash.DEFAULT_BAUD
    # esptool's progress and messages reached the caller through the installed logger.
    assert progress[-1] == (len(data), len(data), "Writing")
    assert {label for _d, _t, label in progress} == {"Writing"}  # one bar, not one per address
    assert [d for d, _t, _l in progress] == sorted(d for d, _t, _l in progress)
    assert any("detected ESP32" in line for line in lines)
    assert state["chip"].closed  # the port was released
    assert report.offset == 0x1000 and report.size == len(data) and not report.erased


def test_erase_comes_before_the_write(esptool_api, pty_port):
    calls, state = esptool_api
    state["chip"] = FakeChip("ESP32-C3")
    board = boards.load("ESP32_GENERIC_C3")
    kflash.flash(board, pty_port, b"\xe9" + b"\x00" * 100, erase=True)
    names = [c[0] for c in calls]
    assert names.index("erase_flash") < names.index("write_flash")
    assert next(c for c in calls if c[0] == "write_flash")[1][0][0] == 0x0


@pytest.mark.parametrize("found, board_name, words", [
    ("ESP32-C3", "ESP32_GENERIC", "is an ESP32-C3, but --board ESP32_GENERIC is for an esp32"),
    ("ESP32-S3", "ESP32_GENERIC_C3", "use --board ESP32_GENERIC_S3"),
    ("ESP32-S2", "ESP32_GENERIC_S3", "no Bluetooth LE"),
    ("ESP32-C6", "ESP32_GENERIC", "no board definition for the ESP32-C6"),
])
def test_chip_mismatch_stops_before_writing(esptool_api, pty_port, found, board_name, words):
    calls, state = esptool_api
    state["chip"] = FakeChip(found)
    with pytest.raises(KeyhookError) as e:
        kflash.flash(boards.load(board_name), pty_port, b"\xe9" * 64)
    assert words in str(e.value) + " " + (e.value.hint or "")
    assert not any(c[0] in ("write_flash", "erase_flash", "run_stub") for c in calls)
    assert state["chip"].closed


def test_flash_size_mismatch_stops_before_writing(esptool_api, pty_port):
    calls, state = esptool_api
    state["chip"] = FakeChip("ESP32-S3", flash_size="8MB")
    with pytest.raises(KeyhookError) as e:
        kflash.flash(boards.load("ESP32_GENERIC_S3"), pty_port, b"\xe9" * 64, erase=True)
    assert "8MB of flash" in str(e.value) and "--flash-size 8MB" in e.value.hint
    assert not any(c[0] in ("write_flash", "erase_flash") for c in calls)
    # Built for 8MB, it goes ahead.
    kflash.flash(boards.load("ESP32_GENERIC_S3"), pty_port, b"\xe9" * 64, flash_size=8 << 20)
    assert any(c[0] == "write_flash" for c in calls)


def test_esptool_failures_become_clear_errors(monkeypatch, pty_port):
    import esptool.cmds as cmds
    from esptool.util import FatalError

    def detect_chip(*a, **kw):
        raise FatalError("Failed to connect to Espressif device: No serial data received.")

    monkeypatch.setattr(cmds, "detect_chip", detect_chip)
    with pytest.raises(KeyhookError) as e:
        kflash.flash(boards.load("ESP32_GENERIC"), pty_port, b"\xe9" * 64)
    assert "does not answer" in str(e.value) and "BOOT" in e.value.hint


def test_missing_port_is_reported_before_esptool_runs(esptool_api):
    calls, _ = esptool_api
    with pytest.raises(KeyhookError) as e:
        kflash.flash(boards.load("ESP32_GENERIC"), "/dev/ttyKEYHOOK-NONE", b"\xe9" * 64)
    assert "does not exist" in str(e.value) and "list_ports" in e.value.hint
    assert calls == []


def test_busy_port_is_reported_before_esptool_runs(esptool_api, pty_port):
    calls, _ = esptool_api
    holder = serial.Serial(pty_port, exclusive=True)  # another program holds it, as esptool would
    try:
        with pytest.raises(KeyhookError) as e:
            kflash.flash(boards.load("ESP32_GENERIC"), pty_port, b"\xe9" * 64)
    finally:
        holder.close()
    assert "is busy" in str(e.value) and "close the other program" in e.value.hint
    assert calls == []


def test_simulated_board_cannot_be_flashed(esptool_api, pty_port):
    with pytest.raises(KeyhookError, match="simulated"):
        kflash.flash(boards.load("unix"), pty_port, b"\xe9")


def test_cli_flash_with_micropython_builds_merges_and_writes(esptool_api, pty_port, tmp_path, capsys):
    calls, state = esptool_api
    state["chip"] = FakeChip("ESP32-S3")
    mp = tmp_path / "ESP32_GENERIC_S3-v1.29.0.bin"
    mp.write_bytes(fakeimage.release_image("esp32s3", 0))
    with pytest.raises(SystemExit) as e:
        main(["flash", "--board", "ESP32_GENERIC_S3", "--port", pty_port, "--micropython", str(mp), "--no-trust",
              "--no-heap-check"])
    assert e.value.code == 0, capsys.readouterr().err
    (addr, data), = next(c for c in calls if c[0] == "write_flash")[1]
    assert addr == 0 and data[:len(mp.read_bytes())] == mp.read_bytes()
    assert len(data) == 0x200000 + 0x200000  # release + padding up to the vfs, then the vfs
    out = capsys.readouterr().out
    assert "flashed" in out and "keyhook console --port" in out


def test_cli_flash_errors_exit_2_with_a_hint(tmp_path, capsys):
    img = tmp_path / "x.bin"
    img.write_bytes(b"\xe9" * 10)
    with pytest.raises(SystemExit) as e:
        main(["flash", "--board", "ESP32_GENERIC", "--port", "/dev/ttyKEYHOOK-NONE", "--image", str(img),
              "--micropython", str(img)])
    assert e.value.code == 2 and "exactly one of --image" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["flash", "--board", "ESP32_GENERIC_S2", "--port", "/dev/ttyKEYHOOK-NONE", "--image", str(img)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "no Bluetooth LE" in err and "hint:" in err


def test_classify_port_errors():
    import errno

    assert "busy" in str(serialport.classify("/dev/x", OSError(errno.EBUSY, "Device or resource busy")))
    assert "permission denied" in str(serialport.classify("/dev/x", OSError(errno.EACCES, "Permission denied")))
    assert "does not exist" in str(serialport.classify("/dev/x", serial.SerialException(
        "[Errno 2] could not open port /dev/x: [Errno 2] No such file or directory: '/dev/x'")))


def test_merged_image_is_checked_before_flashing(tmp_path):
    board = boards.load("ESP32_GENERIC")
    good = tmp_path / "good.bin"
    good.write_bytes(merged(board))
    assert kflash.image_for(board, image_path=good, micropython=None) == good.read_bytes()
    with pytest.raises(KeyhookError, match="needs"):
        kflash.image_for(board, image_path=good, micropython=None, flash_size=8 << 20)
    short = tmp_path / "short.bin"
    short.write_bytes(good.read_bytes()[:-4096])
    with pytest.raises(KeyhookError, match="bytes of file system"):
        kflash.image_for(board, image_path=short, micropython=None)
    with pytest.raises(KeyhookError, match="built for esp32, not for esp32c3"):
        kflash.image_for(boards.load("ESP32_GENERIC_C3"), image_path=good, micropython=None)
