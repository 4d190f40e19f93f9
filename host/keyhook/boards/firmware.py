"""`make firmware BOARD=...`: a keyhook MicroPython image, built with ESP-IDF from MicroPython's source.

The image is the stock MicroPython board (and variant) named in `boards/<BOARD>/board.json`
("firmware"), plus:

- a ROMFS partition (`boards/<BOARD>/partitions-romfs.csv`, the rows of MicroPython's own
  `partitions-4MiB-romfs.csv`) and `MICROPY_VFS_ROM` on, so that `keyhook deploy` can put the
  compiled firmware there and run it in place (code form "romfs", the default); or the firmware
  frozen into the app (code form "frozen", `boards/<BOARD>/manifest.py`), the partition still
  there;
- TLS 1.3 and X25519 in mbedTLS (`boards/sdkconfig.keyhook`).

MicroPython's esp32 port builds out-of-tree boards (`make BOARD_DIR=...`): keyhook's is
`boards/KEYHOOK_MICROPYTHON`, which includes the stock board's cmake and header and adds the
fragments above, told which board by `CMAKE_ARGS`. ESP-IDF (`idf.py`, from `. export.sh`) and a
MicroPython source tree (`MICROPY_DIR`) must be there; without them the build stops and says
what to install. The outputs, in `build/firmware/<BOARD>/`: `micropython.bin` (to give to
`keyhook flash --micropython`), `firmware.romfs` (the compiled firmware's ROMFS image) and
`firmware.json`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from keyhook import KeyhookError
from keyhook.boards import Board
from keyhook.boards.image import TYPE_APP, TYPE_DATA, Partition
from keyhook.paths import BOARDS, REPO

CODE_FORMS = ("romfs", "frozen")
MICROPYTHON_BOARD_DIR = BOARDS / "KEYHOOK_MICROPYTHON"
SDKCONFIG = BOARDS / "sdkconfig.keyhook"
# ports/esp32/README.md of MicroPython v1.29.0-preview: v5.5.2 recommended (v5.3 to v5.5.4 supported).
IDF_VERSION_HINT = "v5.5.2, the version MicroPython's ports/esp32/README.md recommends"

# ESP-IDF partition CSV names (components/partition_table/gen_esp32part.py).
_TYPES = {"app": TYPE_APP, "data": TYPE_DATA}
_SUBTYPES = {
    TYPE_APP: {"factory": 0x00, "test": 0x20, **{f"ota_{i}": 0x10 + i for i in range(16)}},
    TYPE_DATA: {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04, "efuse": 0x05,
                "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82, "littlefs": 0x83},
}

Runner = Callable[..., subprocess.CompletedProcess]


def _number(text: str, what: str) -> int:
    m = re.fullmatch(r"\s*(0x[0-9a-fA-F]+|\d+)\s*([KkMm]?)\s*", text)
    if not m:
        raise KeyhookError(f"{what}: {text.strip()!r} is not a number (0x1E0000, 128K, 2M)")
    n = int(m.group(1), 0)
    return n * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]


def read_partitions_csv(path: Path) -> list[Partition]:
    """The rows of an ESP-IDF partition table CSV (every offset given explicitly).

    Raises:
        KeyhookError: unreadable file, unknown type or subtype, a missing offset or size.
    """
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise KeyhookError(f"cannot read the partition table {path}: {e.strerror}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cells = [c.strip() for c in line.split(",")]
        where = f"{path}, line {n}"
        if len(cells) < 5 or not cells[3] or not cells[4]:
            raise KeyhookError(f"{where}: expected Name, Type, SubType, Offset, Size (with the offset given)")
        name, ptype, sub = cells[0], cells[1].lower(), cells[2].lower()
        t = _TYPES[ptype] if ptype in _TYPES else _number(ptype, f"{where}: type")
        if sub in _SUBTYPES.get(t, {}):
            st = _SUBTYPES[t][sub]
        else:
            st = _number(sub, f"{where}: subtype")
        rows.append(Partition(name, t, st, _number(cells[3], f"{where}: offset"), _number(cells[4], f"{where}: size")))
    if not rows:
        raise KeyhookError(f"{path} holds no partition")
    return rows


def check_layout(board: Board, rows: Sequence[Partition], flash_size: int) -> Partition:
    """Check a ROMFS partition table against the board definition; return its ROMFS row.

    The table must fit a `flash_size` flash (the size the image is configured for), have no
    overlaps, sectors aligned (apps on 64 KiB), the app where the board says, the ROMFS row
    where board.json's "romfs" says, and end where the file system starts (MicroPython
    registers "vfs" from the end of the last partition to the end of flash).

    Raises:
        KeyhookError: naming the first disagreement.
    """
    name = board.name
    if board.romfs_offset is None:
        raise KeyhookError(f"board {name} has no ROMFS partition definition (\"romfs\" in its board.json)",
                           hint="see boards/README.md, \"make firmware\"")
    seen = set()
    end_of_table = board.partition_table_offset + 0x1000
    prev_end = end_of_table
    for p in sorted(rows, key=lambda r: r.offset):
        if p.label in seen:
            raise KeyhookError(f"board {name}: partition {p.label!r} appears twice")
        seen.add(p.label)
        align = 0x10000 if p.type == TYPE_APP else 0x1000
        if p.offset % align or p.size % 0x1000 or p.size <= 0:
            raise KeyhookError(f"board {name}: partition {p.label} ({p.offset:#x}, {p.size:#x}) is not aligned "
                               f"to {align:#x}")
        if p.offset < prev_end:
            raise KeyhookError(f"board {name}: partition {p.label} at {p.offset:#x} overlaps the one before it "
                               f"(or the partition table at {board.partition_table_offset:#x})")
        prev_end = p.end
    apps = [p for p in rows if p.type == TYPE_APP]
    if not apps or min(apps, key=lambda p: p.offset).offset != board.app_offset:
        raise KeyhookError(f"board {name}: the app partition is not at {board.app_offset:#x} (board.json app_offset)")
    roms = [p for p in rows if p.label == "romfs" and p.type == TYPE_DATA]
    if len(roms) != 1:
        raise KeyhookError(f"board {name}: the table needs exactly one data partition labelled \"romfs\" "
                           "(MicroPython's esp32 port mounts the one with that label)")
    rom = roms[0]
    if (rom.offset, rom.size) != (board.romfs_offset, board.romfs_size):
        raise KeyhookError(f"board {name}: the table's romfs is at {rom.offset:#x} ({rom.size:#x} bytes), "
                           f"board.json says {board.romfs_offset:#x} ({board.romfs_size:#x})")
    end = max(p.end for p in rows)
    if end != board.vfs_offset:
        raise KeyhookError(f"board {name}: the last partition ends at {end:#x}, so MicroPython's file system "
                           f"would start there, not at {board.vfs_offset:#x} (board.json vfs_offset)")
    if end > min(flash_size, board.flash_size):
        raise KeyhookError(f"board {name}: the partitions end at {end:#x}, past a {min(flash_size, board.flash_size):#x}"
                           "-byte flash")
    return rom


def find_idf(env: dict | None = None) -> str | None:
    """The idf.py ESP-IDF's export.sh puts on PATH (or $IDF_PATH/tools/idf.py); None when absent."""
    env = os.environ if env is None else env
    found = shutil.which("idf.py", path=env.get("PATH"))
    if found:
        return found
    idf_path = env.get("IDF_PATH")
    if idf_path and (Path(idf_path) / "tools" / "idf.py").is_file():
        return str(Path(idf_path) / "tools" / "idf.py")
    return None


def require_idf(env: dict | None = None) -> str:
    idf = find_idf(env)
    if idf is None:
        raise KeyhookError(
            "ESP-IDF is not installed here (no idf.py on PATH, IDF_PATH not set): `make firmware` builds "
            "MicroPython with it",
            hint=f"install ESP-IDF {IDF_VERSION_HINT}, run `. $IDF_PATH/export.sh`, then `make firmware` "
                 "again; or flash a stock MicroPython image with `keyhook flash --micropython FILE.bin` "
                 "(the firmware then runs from .mpy files)")
    return idf


def require_micropython(src: str | os.PathLike | None) -> Path:
    """The MicroPython source tree (`MICROPY_DIR`), checked to hold the esp32 port."""
    if not src:
        raise KeyhookError("no MicroPython source tree given",
                           hint="git clone https://github.com/micropython/micropython, check out the release named "
                                "in the board's board.json, and pass MICROPY_DIR=/path/to/micropython")
    root = Path(src).expanduser().resolve()
    if not (root / "ports" / "esp32" / "Makefile").is_file():
        raise KeyhookError(f"{root} is not a MicroPython source tree (no ports/esp32/Makefile)",
                           hint="pass MICROPY_DIR=/path/to/micropython (a clone of micropython/micropython)")
    return root


@dataclass
class FirmwareBuild:
    """What `build_firmware` produced."""

    board: str
    code: str
    out: Path
    micropython: Path
    romfs_image: Path | None
    romfs_size: int
    partitions: list[dict] = field(default_factory=list)


def make_args(board: Board, code: str, build_dir: Path) -> list[str]:
    """The `make` arguments for MicroPython's ports/esp32 Makefile."""
    cmake = [f"-DKEYHOOK_BASE_BOARD={board.micropython_board}",
             f"-DKEYHOOK_BASE_VARIANT={board.micropython_variant or ''}",
             f"-DKEYHOOK_BOARD_DIR={board.path.resolve()}",
             f"-DKEYHOOK_SDKCONFIG={SDKCONFIG.resolve()}"]
    args = [f"BOARD_DIR={MICROPYTHON_BOARD_DIR.resolve()}", f"BUILD={build_dir.resolve()}",
            "CMAKE_ARGS=" + " ".join(cmake)]
    if code == "frozen":
        args.append(f"FROZEN_MANIFEST={(board.path / 'manifest.py').resolve()}")
    return args


def build_firmware(board: Board, *, code: str = "romfs", micropython_src: str | os.PathLike | None = None,
                   out: Path | None = None, env: dict | None = None, runner: Runner | None = None,
                   build_kw: dict | None = None, progress: Callable[[str], None] | None = None) -> FirmwareBuild:
    """Build keyhook's MicroPython image for `board` with ESP-IDF.

    Args:
        board: a real board whose board.json has "romfs" and "firmware".
        code: "romfs" (firmware deployed into the ROMFS partition) or "frozen" (in the app).
        micropython_src: MicroPython's source tree (default: $MICROPY_DIR).
        out: output folder (default build/firmware/<BOARD>).
        env: the environment to find ESP-IDF in and run make with (default: os.environ).
        runner: replaces subprocess.run (tests).
        build_kw: arguments for `keyhook.boards.build.build` (the ROMFS image's build).

    Raises:
        KeyhookError: no ESP-IDF, no MicroPython source, a board without ROMFS definition, a
            failed build, or an image whose layout disagrees with the board.
    """
    from keyhook.boards import build as kbuild
    from keyhook.boards import image as kimage
    from keyhook.boards import romfs as kromfs

    say = progress or (lambda s: None)
    env = dict(os.environ if env is None else env)
    if code not in CODE_FORMS:
        raise KeyhookError(f"unknown code form {code!r}", hint=f"one of: {', '.join(CODE_FORMS)}")
    if board.simulated:
        raise KeyhookError(f"board {board.name} is simulated: it runs on the unix port, nothing to build",
                           hint="pick a real board, e.g. BOARD=ESP32_GENERIC")
    if board.micropython_board is None or board.partitions_csv is None:
        raise KeyhookError(f"board {board.name} has no \"firmware\" and \"romfs\" sections in its board.json",
                           hint="see boards/README.md, \"make firmware\"")
    rows = read_partitions_csv(board.partitions_csv)
    check_layout(board, rows, board.flash_size)
    require_idf(env)
    src = require_micropython(micropython_src or env.get("MICROPY_DIR"))
    out = Path(out or REPO / "build" / "firmware" / board.name)
    out.mkdir(parents=True, exist_ok=True)
    build_dir = out / "idf"
    cmd = ["make", "-C", str(src / "ports" / "esp32"), *make_args(board, code, build_dir)]
    say("building MicroPython with ESP-IDF: " + " ".join(cmd))
    proc = (runner or subprocess.run)(cmd, env=env)
    if proc.returncode != 0:
        raise KeyhookError(f"the MicroPython build failed (make exited with status {proc.returncode})",
                           hint="see its output above; MicroPython's wiki page Build-Troubleshooting helps, and "
                                "the ESP-IDF version must be the one MicroPython's ports/esp32/README.md names")
    built = build_dir / "firmware.bin"
    if not built.is_file():
        raise KeyhookError(f"the build wrote no {built}", hint="is MICROPY_DIR a MicroPython release tree?")
    data = built.read_bytes()
    rel = kimage.inspect_release(board, data)
    kimage_rom = [p for p in rel.partitions if p.label == "romfs"]
    check_layout(board, rel.partitions, board.flash_size)
    mp_out = out / "micropython.bin"
    mp_out.write_bytes(data)
    rom_path = None
    rom_size = 0
    if code == "romfs":
        say(f"compiling the firmware for {board.name} into a ROMFS image")
        result = kbuild.build(board, out / "keyhook", progress=say, **(build_kw or {"trust": False}))
        image = kromfs.build_image(result.stage)
        if len(image) > kimage_rom[0].size:
            raise KeyhookError(f"the firmware's ROMFS image is {len(image)} bytes, the partition {kimage_rom[0].size}",
                               hint=f"make the romfs row of {board.partitions_csv} bigger (and the app smaller)")
        rom_path = out / kromfs.IMAGE_NAME
        rom_path.write_bytes(image)
        rom_size = len(image)
    fb = FirmwareBuild(board=board.name, code=code, out=out, micropython=mp_out, romfs_image=rom_path,
                       romfs_size=rom_size,
                       partitions=[{"label": p.label, "offset": p.offset, "size": p.size} for p in rel.partitions])
    (out / "firmware.json").write_text(json.dumps({**fb.__dict__, "out": str(out), "micropython": str(mp_out),
                                                   "romfs_image": str(rom_path) if rom_path else None}, indent=1))
    return fb
