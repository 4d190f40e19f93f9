"""`keyhook image`: the merged file, taken apart with esptool's own image parsing, has each part
exactly where the board file says; a wrong or damaged release image is refused.

The MicroPython release image is a fake built with esptool's image writer (see fakeimage.py):
real releases are not available offline.
"""

from __future__ import annotations

import pytest

import fakeimage
from keyhook import KeyhookError, boards
from keyhook.boards import image as kimage
from keyhook.cli import main

from boardtest import REAL_BOARDS


def esptool_image_info(parts: list[tuple[int, bytes]]) -> list[str]:
    """esptool's image_info over (offset, data) parts, its output captured through its logger."""
    from esptool.cmds import image_info

    from keyhook.boards.flash import EsptoolLog, esptool_logging

    sink = EsptoolLog()
    with esptool_logging(sink):
        image_info(parts)
    return sink.lines


@pytest.mark.parametrize("name", REAL_BOARDS)
def test_merged_image_has_every_part_at_the_board_offsets(name, built, release, tmp_path):
    from esptool.bin_image import LoadFirmwareImage
    from littlefs import LittleFS

    board = boards.load(name)
    mp = release(board)
    result = built(name)
    out = tmp_path / "merged.bin"
    rc = _cli(["image", "--board", name, "--micropython", str(tmp_path / "mp.bin"), "-o", str(out),
               "--fs", str(result.image)], mp, tmp_path)
    assert rc == 0
    merged = out.read_bytes()
    base = board.image_offset  # the merged file starts where the release image starts

    def at(addr: int, n: int | None = None) -> bytes:
        return merged[addr - base:(addr - base + n) if n else None]

    # The release image is there, byte for byte, at the board's image offset.
    assert at(board.image_offset, len(mp)) == mp
    # esptool parses a bootloader at the image offset and the app at the partition table's app
    # offset, both for this board's chip.
    from esptool.targets import CHIP_DEFS

    boot = LoadFirmwareImage(board.chip, at(board.image_offset))
    app = LoadFirmwareImage(board.chip, at(board.app_offset))
    assert boot.chip_id == app.chip_id == CHIP_DEFS[board.chip].IMAGE_CHIP_ID
    assert boot.calc_digest == boot.stored_digest and app.calc_digest == app.stored_digest
    rows = kimage.parse_partition_table(at(board.partition_table_offset, 0xC00))
    assert max(r.end for r in rows) == board.vfs_offset  # MicroPython's vfs starts where the table ends
    # Between the release image and the file system: erased flash.
    assert set(at(board.image_offset + len(mp), board.vfs_offset - board.image_offset - len(mp))) == {0xFF}
    # The littlefs image sits at the vfs offset, is the partition's size, and mounts.
    fs_bytes = at(board.vfs_offset)
    assert len(fs_bytes) == board.vfs_size
    assert fs_bytes == result.image.read_bytes()
    fs = LittleFS(block_size=board.vfs_block_size, block_count=board.vfs_block_count, mount=False)
    fs.context.buffer[:] = fs_bytes
    fs.mount()
    assert "main.py" in fs.listdir("/") or "kh" in fs.listdir("/")
    # esptool's image_info reads the parts of the merged file as images for this chip.
    lines = esptool_image_info([(board.image_offset, at(board.image_offset)), (board.app_offset, at(board.app_offset))])
    text = "\n".join(lines)
    assert text.count(f"{CHIP_DEFS[board.chip].CHIP_NAME} Image Header") == 2, text
    assert text.count("Checksum: ") == 2 and text.count("Validation hash: ") == 2
    assert text.count("(valid)") == 4, text


def _cli(args, mp: bytes, tmp_path) -> int:
    (tmp_path / "mp.bin").write_bytes(mp)
    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code


def test_image_for_another_chip_is_refused(built, tmp_path, capsys):
    board = boards.load("ESP32_GENERIC")
    c3 = fakeimage.release_image("esp32c3", 0x1000)
    rc = _cli(["image", "--board", "ESP32_GENERIC", "--micropython", str(tmp_path / "mp.bin"),
               "-o", str(tmp_path / "o.bin"), "--fs", str(built("ESP32_GENERIC").image)], c3, tmp_path)
    err = capsys.readouterr().err
    assert rc == 2 and "built for esp32c3, not for esp32" in err and "hint:" in err
    assert not (tmp_path / "o.bin").exists()
    assert board.chip == "esp32"


def test_damaged_image_is_refused(release):
    board = boards.load("ESP32_GENERIC_S3")
    mp = bytearray(release(board))
    mp[0x10000 + 40] ^= 0x55  # one byte of the app's first segment
    with pytest.raises(KeyhookError, match="damaged"):
        kimage.inspect_release(board, bytes(mp))


def test_a_partition_table_that_moves_the_file_system_is_refused(release):
    board = boards.load("ESP32_GENERIC")
    rows = fakeimage.PARTITIONS_4MIBPLUS[:2] + [("factory", 0, 0, 0x10000, 0x180000)]
    with pytest.raises(KeyhookError, match="puts its file system at 0x190000"):
        kimage.inspect_release(board, release(board, rows=rows))


def test_an_explicit_vfs_partition_is_honoured(release):
    board = boards.load("ESP32_GENERIC_C3")
    assert kimage.inspect_release(board, release(board, vfs=(0x200000, 0x200000))).vfs_offset == 0x200000
    with pytest.raises(KeyhookError, match="file system at 0x300000"):
        kimage.inspect_release(board, release(board, vfs=(0x300000, 0x100000)))


def test_not_an_image_is_refused():
    board = boards.load("ESP32_GENERIC")
    with pytest.raises(KeyhookError, match="no bootloader image"):
        kimage.inspect_release(board, b"PK\x03\x04 not a firmware")
    with pytest.raises(KeyhookError, match="is empty"):
        kimage.inspect_release(board, b"")


def test_partition_table_md5_is_checked():
    pt = bytearray(fakeimage.partition_table())
    pt[4] ^= 1
    with pytest.raises(KeyhookError, match="MD5"):
        kimage.parse_partition_table(bytes(pt))


def test_wrong_size_littlefs_is_refused(release, tmp_path):
    board = boards.load("ESP32_GENERIC")
    with pytest.raises(KeyhookError, match="littlefs image is"):
        kimage.merge(board, release(board), b"\xff" * 4096, tmp_path / "o.bin")


def test_bigger_flash_moves_nothing_but_the_end(release, tmp_path):
    board = boards.load("ESP32_GENERIC_S3")
    rel = kimage.inspect_release(board, release(board), flash_size=8 << 20)
    assert (rel.vfs_offset, rel.vfs_size) == (0x200000, 0x600000)
