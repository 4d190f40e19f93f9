"""`make firmware`: its partition tables, ESP-IDF fragments, MicroPython board and manifests agree
with boards/*/board.json; without ESP-IDF it stops and says so; with a stand-in for ESP-IDF's
build it produces an image that `keyhook flash` accepts. Also the PSRAM boards."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import fakeimage
from keyhook import KeyhookError, boards
from keyhook.boards import build, heap, romfs
from keyhook.boards import firmware as kfirmware
from keyhook.boards import flash as kflash
from keyhook.boards import image as kimage
from keyhook.paths import BOARDS, REPO

from boardtest import REAL_BOARDS

PSRAM_BOARDS = list(boards.PSRAM_BOARDS)
ALL_REAL = REAL_BOARDS + PSRAM_BOARDS
# ports/esp32/partitions-4MiB-romfs.csv of MicroPython v1.29.0-preview (label, type, subtype, offset, size).
MICROPYTHON_ROMFS_TABLE = [
    ("nvs", 0x01, 0x02, 0x9000, 0x6000),
    ("phy_init", 0x01, 0x01, 0xF000, 0x1000),
    ("factory", 0x00, 0x00, 0x10000, 0x1D0000),
    ("romfs", 0x01, 0x8F, 0x1E0000, 0x20000),
]
# MicroPython's boards/sdkconfig.base lays every generic image out for 4 MiB of flash.
STOCK_FLASH_SIZE = 4 * 1024 * 1024


def sdkconfig(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            k, _, v = line.partition("=")
            out[k] = v
    return out


@pytest.mark.parametrize("name", ALL_REAL)
def test_partition_table_agrees_with_the_board(name):
    b = boards.load(name)
    assert b.partitions_csv == BOARDS / name / "partitions-romfs.csv" and b.partitions_csv.is_file()
    rows = kfirmware.read_partitions_csv(b.partitions_csv)
    assert [(p.label, p.type, p.subtype, p.offset, p.size) for p in rows] == MICROPYTHON_ROMFS_TABLE
    rom = kfirmware.check_layout(b, rows, STOCK_FLASH_SIZE)
    assert (rom.offset, rom.size) == (b.romfs_offset, b.romfs_size)
    # The file system keeps its place: the table ends where board.json's vfs starts, and
    # MicroPython (main.c) gives "vfs" the rest of the flash.
    assert max(p.end for p in rows) == b.vfs_offset
    assert kimage.micropython_vfs(rows, b.flash_size) == (b.vfs_offset, b.vfs_size)
    assert b.vfs_offset + b.vfs_size == b.flash_size and max(p.end for p in rows) <= STOCK_FLASH_SIZE


@pytest.mark.parametrize("name", ALL_REAL)
def test_the_compiled_firmware_fits_the_romfs_partition(name, tmp_path):
    b = boards.load(name)
    r = build.build(b, tmp_path / "b", trust=False)
    image = romfs.build_image(r.stage)
    assert len(image) <= b.romfs_size, f"{len(image)} bytes of ROMFS image for a {b.romfs_size}-byte partition"


def test_sdkconfig_fragment_turns_on_tls13_and_x25519():
    cfg = sdkconfig(kfirmware.SDKCONFIG)
    assert cfg["CONFIG_MBEDTLS_SSL_PROTO_TLS1_3"] == "y"
    # ESP-IDF's Kconfig: TLS 1.3 depends on the peer certificate being kept and no dynamic buffers.
    assert cfg["CONFIG_MBEDTLS_SSL_KEEP_PEER_CERTIFICATE"] == "y" and cfg["CONFIG_MBEDTLS_DYNAMIC_BUFFER"] == "n"
    assert cfg["CONFIG_MBEDTLS_SSL_TLS1_3_KEXM_EPHEMERAL"] == "y"
    # MicroPython's sdkconfig.base says CURVE25519_ENABLED=n; ours comes after it and says y.
    assert cfg["CONFIG_MBEDTLS_ECP_DP_CURVE25519_ENABLED"] == "y"
    assert cfg["CONFIG_PARTITION_TABLE_CUSTOM"] == "y"
    # Nothing here changes the flash size the partition tables were checked against.
    assert not any(k.startswith("CONFIG_ESPTOOLPY_FLASHSIZE") for k in cfg)


def test_micropython_board_adds_romfs_and_the_fragments():
    cmake = (kfirmware.MICROPYTHON_BOARD_DIR / "mpconfigboard.cmake").read_text()
    header = (kfirmware.MICROPYTHON_BOARD_DIR / "mpconfigboard.h").read_text()
    assert "include(boards/${KEYHOOK_BASE_BOARD}/mpconfigboard.cmake)" in cmake
    assert "mpconfigvariant_${KEYHOOK_BASE_VARIANT}.cmake" in cmake
    assert "${KEYHOOK_SDKCONFIG}" in cmake and "list(APPEND SDKCONFIG_DEFAULTS" in cmake
    # The partition table named in every board.json is the one the cmake file points ESP-IDF at.
    names = {json.loads((BOARDS / n / "board.json").read_text())["romfs"]["partitions"] for n in ALL_REAL}
    assert names == {"partitions-romfs.csv"}
    assert 'CONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\\"${KEYHOOK_BOARD_DIR}/partitions-romfs.csv\\"' in cmake
    assert "#include KEYHOOK_BASE_BOARD_H" in header and "#define MICROPY_VFS_ROM (1)" in header
    assert not (kfirmware.MICROPYTHON_BOARD_DIR / "board.json").exists()  # not a keyhook board
    assert "KEYHOOK_MICROPYTHON" not in boards.available()


@pytest.mark.parametrize("name", ALL_REAL)
def test_firmware_section_names_the_stock_image(name):
    b = boards.load(name)
    variant = f"-{b.micropython_variant}" if b.micropython_variant else ""
    assert b.name == b.micropython_board + variant
    assert b.micropython_image == f"{b.micropython_board}{variant}-{b.micropython_release}.bin"
    assert b.micropython_download == f"https://micropython.org/download/{b.micropython_board}/"


@pytest.mark.parametrize("name", PSRAM_BOARDS)
def test_manifest_of_psram_boards_freezes_the_firmware(name):
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
    assert pkgs == [("kh", str(REPO / "firmware"))]
    text = (BOARDS / name / "manifest.py").read_text()
    b = boards.load(name)
    assert f"make BOARD={b.micropython_board} BOARD_VARIANT={b.micropython_variant} FROZEN_MANIFEST" in text


@pytest.mark.parametrize("changes, words", [
    ([("romfs", 0x01, 0x8F, 0x1E0000, 0x30000)], r"romfs is at 0x1e0000 \(0x30000 bytes\)"),
    ([("coredump", 0x01, 0x03, 0x200000, 0x10000)], "ends at 0x210000"),
    ([("romfs", 0x01, 0x8F, 0x1F0000, 0x10000)], "board.json says 0x1e0000"),
    ([("factory", 0x00, 0x00, 0x10000, 0x1E0000)], "overlaps"),
    ([("factory", 0x00, 0x00, 0x11000, 0x1CF000)], "not aligned"),
    ([("rom", 0x01, 0x8F, 0x1E0000, 0x20000)], "labelled \"romfs\""),
])
def test_a_table_that_disagrees_is_refused(changes, words):
    rows = {r[0]: r for r in MICROPYTHON_ROMFS_TABLE}
    for c in changes:
        if c[0] == "rom":
            rows.pop("romfs")
        rows[c[0]] = c
    parts = [kimage.Partition(*r) for r in rows.values()]
    with pytest.raises(KeyhookError, match=words):
        kfirmware.check_layout(boards.load("ESP32_GENERIC"), parts, STOCK_FLASH_SIZE)


def test_partition_csv_errors_name_the_line(tmp_path):
    p = tmp_path / "p.csv"
    p.write_text("nvs, data, nvs, 0x9000, 0x6000\nfactory, app, factory, , 1M\n")
    with pytest.raises(KeyhookError, match="line 2"):
        kfirmware.read_partitions_csv(p)
    p.write_text("x, data, nvs, 0x9000, 24K\ny, app, ota_1, 0x10000, 1M\n")
    rows = kfirmware.read_partitions_csv(p)
    assert (rows[0].size, rows[1].subtype, rows[1].size) == (0x6000, 0x11, 0x100000)


# --- the build itself --------------------------------------------------------------------------


def no_idf_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("IDF_PATH", "MICROPY_DIR")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep)
                                  if p and not (Path(p) / "idf.py").exists())
    return env


def test_make_firmware_without_esp_idf_stops_with_a_clear_message():
    if kfirmware.find_idf(no_idf_env()):
        pytest.skip("ESP-IDF is installed here")
    proc = subprocess.run(["make", "--no-print-directory", "firmware", "BOARD=ESP32_GENERIC_C3"], cwd=REPO,
                          env=no_idf_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "error: ESP-IDF is not installed here (no idf.py on PATH, IDF_PATH not set)" in proc.stderr
    assert "export.sh" in proc.stderr and "keyhook flash --micropython" in proc.stderr
    assert not (REPO / "build" / "firmware" / "ESP32_GENERIC_C3" / "idf").exists()


@pytest.fixture
def fake_idf(tmp_path) -> dict:
    """An environment with an idf.py on PATH and a MICROPY_DIR holding ports/esp32/Makefile."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "idf.py").write_text("#!/bin/sh\nexit 0\n")
    (bindir / "idf.py").chmod(0o755)
    src = tmp_path / "micropython"
    (src / "ports" / "esp32").mkdir(parents=True)
    (src / "ports" / "esp32" / "Makefile").write_text("# stand-in\n")
    env = no_idf_env()
    env["PATH"] = f"{bindir}{os.pathsep}{env['PATH']}"
    env["MICROPY_DIR"] = str(src)
    return env


class FakeMake:
    """Stands for `make -C ports/esp32 ...`: records the call and writes BUILD/firmware.bin laid
    out by the partition table the board's cmake points ESP-IDF at."""

    def __init__(self, board: boards.Board, returncode: int = 0):
        self.board = board
        self.calls: list[list[str]] = []
        self.returncode = returncode

    def __call__(self, cmd, env=None):
        self.calls.append(list(cmd))
        args = dict(a.split("=", 1) for a in cmd[3:])
        if self.returncode == 0:
            cmake = dict(x[2:].split("=", 1) for x in args["CMAKE_ARGS"].split())
            rows = kfirmware.read_partitions_csv(Path(cmake["KEYHOOK_BOARD_DIR"]) / "partitions-romfs.csv")
            out = Path(args["BUILD"])
            out.mkdir(parents=True, exist_ok=True)
            (out / "firmware.bin").write_bytes(fakeimage.release_image(
                self.board.chip, self.board.image_offset, rows=[(p.label, p.type, p.subtype, p.offset, p.size)
                                                                 for p in rows]))
        return subprocess.CompletedProcess(cmd, self.returncode)


@pytest.mark.parametrize("name", ["ESP32_GENERIC-SPIRAM", "ESP32_GENERIC_C3"])
def test_build_runs_micropythons_make_for_the_board(name, fake_idf, tmp_path):
    b = boards.load(name)
    make = FakeMake(b)
    fb = kfirmware.build_firmware(b, out=tmp_path / "out", env=fake_idf, runner=make)
    cmd = make.calls[0]
    assert cmd[:3] == ["make", "-C", str(Path(fake_idf["MICROPY_DIR"]).resolve() / "ports" / "esp32")]
    args = dict(a.split("=", 1) for a in cmd[3:])
    assert args["BOARD_DIR"] == str(kfirmware.MICROPYTHON_BOARD_DIR.resolve())
    cmake = args["CMAKE_ARGS"].split()
    assert f"-DKEYHOOK_BASE_BOARD={b.micropython_board}" in cmake
    assert f"-DKEYHOOK_BASE_VARIANT={b.micropython_variant or ''}" in cmake
    assert f"-DKEYHOOK_SDKCONFIG={kfirmware.SDKCONFIG.resolve()}" in cmake
    assert "FROZEN_MANIFEST" not in args
    # The outputs: MicroPython (as built) and the firmware's ROMFS image, which fits.
    assert fb.micropython.read_bytes()[:1] == b"\xe9"
    assert fb.romfs_image.read_bytes().startswith(romfs.ROMFS_HEADER) and 0 < fb.romfs_size <= b.romfs_size
    assert {p["label"] for p in fb.partitions} == {"nvs", "phy_init", "factory", "romfs"}
    # keyhook flash takes the result as a MicroPython image: the file system is where the board says.
    data = kflash.image_for(b, image_path=None, micropython=fb.micropython, build_kw={"trust": False})
    assert len(data) == b.vfs_offset + b.vfs_size - b.image_offset


def test_frozen_build_passes_the_manifest(fake_idf, tmp_path):
    b = boards.load("ESP32_GENERIC_S3")
    make = FakeMake(b)
    fb = kfirmware.build_firmware(b, code="frozen", out=tmp_path / "out", env=fake_idf, runner=make)
    args = dict(a.split("=", 1) for a in make.calls[0][3:])
    assert args["FROZEN_MANIFEST"] == str((BOARDS / "ESP32_GENERIC_S3" / "manifest.py").resolve())
    assert fb.romfs_image is None


def test_build_errors(fake_idf, tmp_path):
    b = boards.load("ESP32_GENERIC")
    with pytest.raises(KeyhookError, match="make exited with status 2"):
        kfirmware.build_firmware(b, out=tmp_path / "o", env=fake_idf, runner=FakeMake(b, returncode=2))
    env = dict(fake_idf)
    env.pop("MICROPY_DIR")
    with pytest.raises(KeyhookError, match="no MicroPython source tree") as e:
        kfirmware.build_firmware(b, out=tmp_path / "o", env=env, runner=FakeMake(b))
    assert "MICROPY_DIR=" in e.value.hint
    with pytest.raises(KeyhookError, match="not a MicroPython source tree"):
        kfirmware.build_firmware(b, micropython_src=tmp_path, out=tmp_path / "o", env=fake_idf, runner=FakeMake(b))
    with pytest.raises(KeyhookError, match="simulated"):
        kfirmware.build_firmware(boards.load("unix"), env=fake_idf, runner=FakeMake(b))


# --- PSRAM boards -----------------------------------------------------------------------------


def test_psram_boards():
    wrover = boards.load("ESP32_GENERIC-SPIRAM")
    assert (wrover.chip, wrover.image_offset, wrover.mpy_arch) == ("esp32", 0x1000, "xtensawin")
    assert (wrover.flash_size, wrover.vfs_offset, wrover.vfs_size) == (4 << 20, 0x200000, 0x200000)
    assert wrover.micropython_image == "ESP32_GENERIC-SPIRAM-v1.29.0.bin"
    s3 = boards.load("ESP32_GENERIC_S3-SPIRAM_OCT")
    assert (s3.chip, s3.image_offset) == ("esp32s3", 0x0)
    assert (s3.flash_size, s3.vfs_offset, s3.vfs_size) == (8 << 20, 0x200000, 0x600000)
    from esptool.targets import CHIP_DEFS

    for b in (wrover, s3):
        assert CHIP_DEFS[b.chip].BOOTLOADER_FLASH_OFFSET == b.image_offset
        # From the board file alone (the board cannot be asked): a heap that grows into PSRAM,
        # where the firmware fits even as .mpy files.
        h = heap.heap_from_board(b.memory)
        assert h.psram and heap.fit_warnings(h, "mpy") == []
    plain = heap.heap_from_board(boards.load("ESP32_GENERIC").memory)
    assert not plain.psram and heap.fit_warnings(plain, "mpy")


def test_psram_images_are_accepted_by_image_and_flash(tmp_path):
    # The stock SPIRAM images have the stock layout (partitions-4MiBplus.csv).
    for name in PSRAM_BOARDS:
        b = boards.load(name)
        rel = kimage.inspect_release(b, fakeimage.release_image(b.chip, b.image_offset))
        assert (rel.vfs_offset, rel.vfs_size) == (b.vfs_offset, b.vfs_size)
