"""The board commands through `keyhook.cli.main`, as a user runs them."""

from __future__ import annotations

import json

import pytest

import fakeimage
from keyhook.cli import main


def run(args, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(args)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_build_json_summary(tmp_path, capsys):
    rc, out, err = run(["build", "--board", "ESP32_GENERIC_C3", "-o", str(tmp_path / "b"), "--ca", "ISRG Root X2",
                        "--json"], capsys)
    assert rc == 0, err
    s = json.loads(out)
    assert s["board"] == "ESP32_GENERIC_C3" and s["trust"]["count"] == 1
    assert s["vfs_offset"] == 0x200000 and s["vfs_size"] == 0x200000
    assert (tmp_path / "b" / "vfs.img").stat().st_size == 0x200000
    assert any(f["path"] == "main.py" and f["kind"] == "py" for f in s["files"])


def test_build_human_summary_names_the_next_step(tmp_path, capsys):
    rc, out, _ = run(["build", "--board", "ESP32_GENERIC", "-o", str(tmp_path / "b"), "--no-trust"], capsys)
    assert rc == 0 and "next        keyhook image --board ESP32_GENERIC" in out
    assert "trust store 0 roots" in out


def test_image_builds_and_merges_in_one_go(tmp_path, capsys):
    mp = tmp_path / "ESP32_GENERIC_S3-v1.29.0.bin"
    mp.write_bytes(fakeimage.release_image("esp32s3", 0))
    out_bin = tmp_path / "keyhook.bin"
    rc, out, err = run(["image", "--board", "ESP32_GENERIC_S3", "--micropython", str(mp), "-o", str(out_bin),
                        "--ca", "ISRG Root X1", "--flash-size", "8MB", "--info"], capsys)
    assert rc == 0, err
    assert out_bin.stat().st_size == 0x200000 + 0x600000
    assert "littlefs at 0x200000 (6291456 bytes)" in out
    assert "esptool --chip esp32s3 write-flash 0x0" in out
    # esptool's image_info read the bootloader and the app in the merged file.
    assert out.count("ESP32-S3 Image Header") == 2 and out.count("(valid)") == 4


def test_unknown_ca_selection_is_an_error(tmp_path, capsys):
    rc, _, err = run(["build", "--board", "ESP32_GENERIC", "-o", str(tmp_path / "b"), "--ca", "Nobody Root"], capsys)
    assert rc == 2 and "no root" in err and "hint:" in err


def test_too_many_roots_for_the_simulated_flash(tmp_path, capsys):
    rc, _, err = run(["build", "--board", "unix", "-o", str(tmp_path / "b")], capsys)
    assert rc == 2 and "do not fit" in err and "--ca" in err


def test_deploy_to_a_missing_port(capsys):
    rc, _, err = run(["deploy", "--port", "/dev/ttyKEYHOOK-NONE"], capsys)
    assert rc == 2 and "serial port /dev/ttyKEYHOOK-NONE does not exist" in err
