"""Board definitions: every shipped board.json loads, and bad or BLE-less boards are refused."""

from __future__ import annotations

import json

import pytest

from keyhook import KeyhookError, boards
from keyhook.paths import BOARDS

from boardtest import REAL_BOARDS

# What MicroPython's esp32 port (v1.28.0, unchanged in v1.29.0-preview) does, per chip:
# image offset from its board.json deploy_options, vfs from partitions-4MiBplus.csv + main.c.
EXPECTED = {
    "ESP32_GENERIC": ("esp32", 0x1000, "xtensawin"),
    "ESP32_GENERIC_S3": ("esp32s3", 0x0, "xtensawin"),
    "ESP32_GENERIC_C3": ("esp32c3", 0x0, "rv32imc"),
}


@pytest.mark.parametrize("name", REAL_BOARDS)
def test_real_board_fields(name):
    b = boards.load(name)
    chip, offset, arch = EXPECTED[name]
    assert (b.chip, b.image_offset, b.mpy_arch) == (chip, offset, arch)
    assert b.ble is True
    assert (b.partition_table_offset, b.app_offset) == (0x8000, 0x10000)
    # vfs: from the end of the factory app (0x10000 + 0x1F0000) to the end of a 4 MiB flash.
    assert (b.vfs_offset, b.vfs_size, b.vfs_block_size) == (0x200000, 0x200000, 4096)
    assert b.vfs_block_count == 512
    assert b.name_prefix == "keyhook-"
    assert b.firmware_budget == 64 * 1024
    assert b.button.active_low and b.button.gpio in (0, 9)


@pytest.mark.parametrize("name", REAL_BOARDS)
def test_image_offset_is_esptools_bootloader_offset(name):
    # esptool knows where each chip's ROM looks for the bootloader: the release image starts there.
    from esptool.targets import CHIP_DEFS

    b = boards.load(name)
    assert CHIP_DEFS[b.chip].BOOTLOADER_FLASH_OFFSET == b.image_offset


def test_unix_board_is_simulated():
    b = boards.load("unix")
    assert b.simulated and b.chip is None
    assert b.vfs_offset == 0 and b.vfs_size % b.vfs_block_size == 0


def test_available_lists_the_boards():
    assert set(REAL_BOARDS) | {"unix"} <= set(boards.available())


@pytest.mark.parametrize("name", ["ESP32_GENERIC_S2", "esp32_generic_s2", "LOLIN_S2_MINI", "ESP8266_GENERIC"])
def test_boards_without_ble_are_refused_by_name(name):
    with pytest.raises(KeyhookError) as e:
        boards.load(name)
    assert "no Bluetooth LE" in str(e.value)
    assert "ESP32_GENERIC_C3" in e.value.hint


def _write(tmp_path, **changes):
    d = json.loads((BOARDS / "ESP32_GENERIC" / "board.json").read_text())
    for k, v in changes.items():
        if "." in k:
            a, b = k.split(".")
            d[a][b] = v
        elif v is None:
            d.pop(k)
        else:
            d[k] = v
    folder = tmp_path / "MYBOARD"
    folder.mkdir(exist_ok=True)
    (folder / "board.json").write_text(json.dumps(d))
    return folder


def test_a_board_folder_given_by_path_loads(tmp_path):
    folder = _write(tmp_path, name="MYBOARD")
    assert boards.load(str(folder)).name == "MYBOARD"
    assert boards.load(folder / "board.json").name == "MYBOARD"


def test_an_s2_board_file_is_refused(tmp_path):
    folder = _write(tmp_path, chip="esp32s2")
    with pytest.raises(KeyhookError, match="ESP32-S2 has no Bluetooth LE"):
        boards.load(str(folder))


def test_a_board_marked_without_ble_is_refused(tmp_path):
    folder = _write(tmp_path, ble=False)
    with pytest.raises(KeyhookError, match="no Bluetooth LE"):
        boards.load(str(folder))


@pytest.mark.parametrize("changes, words", [
    ({"mpy_arch": "xtensa-lx6"}, "mpy_arch"),
    ({"format": 2}, "format 2"),
    ({"chip": None}, "missing field 'chip'"),
    ({"flash.vfs_offset": "0x200100"}, "whole"),
    ({"flash.vfs_size": "0x300000"}, "past the end"),
    ({"flash.vfs_block_size": 3000}, "power of two"),
    ({"flash.image_offset": "0xzz"}, "image_offset"),
    ({"name_prefix": ""}, "name_prefix"),
    ({"chip": "esp32h9"}, "not an ESP32 with Bluetooth LE"),
])
def test_invalid_board_files_name_the_field(tmp_path, changes, words):
    folder = _write(tmp_path, **changes)
    with pytest.raises(KeyhookError, match=words):
        boards.load(str(folder))


def test_broken_json_is_reported(tmp_path):
    folder = tmp_path / "B"
    folder.mkdir()
    (folder / "board.json").write_text("{nope")
    with pytest.raises(KeyhookError, match="not valid JSON"):
        boards.load(str(folder))


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(KeyhookError) as e:
        boards.load("ESP32_GENERIC_P9")
    assert "unknown board" in str(e.value) and "ESP32_GENERIC_S3" in e.value.hint


def test_flash_size_moves_the_end_of_the_file_system():
    b = boards.load("ESP32_GENERIC_S3")
    assert b.vfs_for_flash(None) == (0x200000, 0x200000)
    assert b.vfs_for_flash(8 * 1024 * 1024) == (0x200000, 0x600000)
    with pytest.raises(KeyhookError, match="no room"):
        b.vfs_for_flash(2 * 1024 * 1024)


@pytest.mark.parametrize("text, n", [("4MB", 4 << 20), ("512KB", 512 << 10), ("0x400000", 4 << 20), (4096, 4096)])
def test_parse_size(text, n):
    assert boards.parse_size(text) == n


@pytest.mark.parametrize("name", REAL_BOARDS)
def test_manifest_freezes_the_firmware(name):
    # Run the manifest with stand-ins for MicroPython's manifest API (tools/manifestfile.py),
    # from its own folder as MicroPython does, and check what it asks for exists.
    import os

    calls = []
    api = {k: (lambda *a, _k=k, **kw: calls.append((_k, a, kw))) for k in ("metadata", "include", "package",
                                                                          "module", "require", "freeze")}
    here = os.getcwd()
    os.chdir(BOARDS / name)
    try:
        exec((BOARDS / name / "manifest.py").read_text(), api)
        pkgs = [(a[0], os.path.abspath(kw.get("base_path", "."))) for k, a, kw in calls if k == "package"]
    finally:
        os.chdir(here)
    assert ("include", ("$(PORT_DIR)/boards/manifest.py",), {}) in calls
    assert pkgs == [("kh", str(BOARDS.parent / "firmware"))]
    assert (BOARDS.parent / "firmware" / "kh" / "__init__.py").is_file()
