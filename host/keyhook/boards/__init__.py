"""Board definitions: `boards/<NAME>/board.json`, loaded and validated.

One small JSON file per board describes what the host tool needs to build, merge and flash an
image for it (the format is documented in `boards/README.md`): the chip name esptool uses, the
MicroPython image's flash offset, the littlefs ("vfs") partition of MicroPython's default
layout, the `mpy-cross` architecture, default pins, the BLE device-name prefix and the memory
budget. A board without Bluetooth LE is refused: keyhook talks to the app over BLE only.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from keyhook import KeyhookError
from keyhook.paths import BOARDS

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

FORMAT = 1
SUPPORTED = ("ESP32_GENERIC", "ESP32_GENERIC_S3", "ESP32_GENERIC_C3")
# MicroPython's stock images for modules with PSRAM (its "SPIRAM" variants).
PSRAM_BOARDS = ("ESP32_GENERIC-SPIRAM", "ESP32_GENERIC_S3-SPIRAM_OCT")
# esptool chip names of the BLE-capable chips MicroPython's esp32 port supports.
BLE_CHIPS = ("esp32", "esp32s3", "esp32c3", "esp32c2", "esp32c5", "esp32c6", "esp32h2", "esp32p4")
# Chips (and MicroPython boards) that have no Bluetooth LE radio at all.
NO_BLE_CHIPS = {"esp32s2": "ESP32-S2", "esp8266": "ESP8266"}
MPY_ARCHS = ("x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
             "xtensa", "xtensawin", "rv32imc", "rv64imc")
# .mpy header byte 2 carries the native architecture in its upper 6 bits (py/persistentcode.h).
MPY_ARCH_CODE = {name: i + 1 for i, name in enumerate(MPY_ARCHS)}
_SIZE_UNITS = {"KB": 1024, "MB": 1024 * 1024}


def _no_ble_message(name: str, chip: str) -> KeyhookError:
    return KeyhookError(
        f"board {name}: the {NO_BLE_CHIPS.get(chip, chip)} has no Bluetooth LE radio, and keyhook "
        "is onboarded and managed over BLE only",
        hint=f"use one of {', '.join(SUPPORTED)} (ESP32, ESP32-S3 or ESP32-C3 all have BLE)",
    )


def parse_int(value: Any, what: str) -> int:
    """An offset or size from board.json: an int, or a string like "0x1000" or "4096"."""
    if isinstance(value, bool):
        raise KeyhookError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 0)
        except ValueError:
            pass
    raise KeyhookError(f"{what}: expected a number such as 4096 or \"0x1000\", got {value!r}")


def parse_size(value: str | int, what: str = "flash size") -> int:
    """A flash size such as "4MB", "8MB", "512KB" or a byte count; returns bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    m = re.fullmatch(r"\s*(\d+)\s*([KkMm][Bb])\s*", str(value))
    if m:
        return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]
    return parse_int(value, what)


def size_name(n: int) -> str:
    """Bytes as esptool's flash-size spelling ("4MB") when exact, else a hex number."""
    mib = 1024 * 1024
    return f"{n // mib}MB" if n % mib == 0 else hex(n)


@dataclass(frozen=True)
class Pin:
    """A default pin: GPIO number, polarity, kind ("gpio" or "ws2812") and a human label."""

    gpio: int
    active_low: bool = False
    kind: str = "gpio"
    label: str = ""


@dataclass(frozen=True)
class Board:
    """One validated board definition."""

    name: str
    path: Path
    description: str
    chip: str | None
    ble: bool
    mpy_arch: str
    micropython_release: str
    micropython_image: str | None
    micropython_download: str
    flash_size: int
    image_offset: int
    partition_table_offset: int | None
    app_offset: int | None
    vfs_offset: int
    vfs_size: int
    vfs_block_size: int
    button: Pin
    led: Pin
    name_prefix: str
    memory: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)
    # `make firmware`: the ROMFS partition of keyhook's MicroPython image (None: no definition)
    # and the stock MicroPython board and variant it is built from.
    romfs_offset: int | None = None
    romfs_size: int | None = None
    partitions_csv: Path | None = None
    micropython_board: str | None = None
    micropython_variant: str | None = None

    @property
    def simulated(self) -> bool:
        """True for the unix board (no chip, nothing to flash)."""
        return self.chip is None

    @property
    def vfs_block_count(self) -> int:
        return self.vfs_size // self.vfs_block_size

    @property
    def mpy_arch_code(self) -> int:
        return MPY_ARCH_CODE[self.mpy_arch]

    @property
    def firmware_budget(self) -> int:
        """Most bytes the compiled firmware may take (the 64 KiB goal unless the board says)."""
        return int(self.memory.get("firmware_mpy_max_kib", 64)) * 1024

    def vfs_for_flash(self, flash_size: int | None) -> tuple[int, int]:
        """(offset, size) of the littlefs partition on a chip with `flash_size` bytes of flash.

        MicroPython's esp32 port (v1.28+) has no "vfs" row in its partition table: at boot it
        registers a "vfs" partition from the end of the last partition to the end of the
        physical flash. So the offset is fixed and the size follows the chip's flash size.
        """
        if flash_size is None or flash_size == self.flash_size:
            return self.vfs_offset, self.vfs_size
        if self.simulated:
            return 0, flash_size
        size = flash_size - self.vfs_offset
        if size < self.vfs_block_size * 8:
            raise KeyhookError(
                f"board {self.name}: a {size_name(flash_size)} flash leaves no room for the file "
                f"system (MicroPython's starts at {self.vfs_offset:#x})",
                hint="pass the flash size your module really has, e.g. --flash-size 4MB",
            )
        return self.vfs_offset, size

    def device_info(self) -> dict[str, Any]:
        """What goes into the image as /board.json for the firmware: name, pins, prefix, budget."""
        return {
            "format": FORMAT,
            "name": self.name,
            "chip": self.chip,
            "name_prefix": self.name_prefix,
            "pins": self.raw.get("pins", {}),
            "memory": self.memory,
        }


def boards_dir() -> Path:
    return BOARDS


def available() -> list[str]:
    """Names of the board folders that hold a board.json (the unix board included)."""
    return sorted(p.parent.name for p in BOARDS.glob("*/board.json"))


def _get(d: dict, key: str, what: str, types: type | tuple[type, ...], optional: bool = False) -> Any:
    if key not in d:
        if optional:
            return None
        raise KeyhookError(f"{what}: missing field {key!r}", hint="see boards/README.md for the format")
    value = d[key]
    if value is None and optional:
        return None
    if not isinstance(value, types):
        raise KeyhookError(f"{what}: field {key!r} has the wrong type ({type(value).__name__})",
                           hint="see boards/README.md for the format")
    return value


def _pin(d: Any, what: str) -> Pin:
    if not isinstance(d, dict):
        raise KeyhookError(f"{what}: expected an object with at least \"gpio\"")
    gpio = _get(d, "gpio", what, int)
    if not 0 <= gpio <= 63:
        raise KeyhookError(f"{what}: gpio {gpio} is out of range (0..63)")
    return Pin(gpio=gpio, active_low=bool(d.get("active_low", False)), kind=str(d.get("kind", "gpio")),
               label=str(d.get("label", "")))


def from_dict(d: dict[str, Any], path: Path) -> Board:
    """Validate a parsed board.json; raises KeyhookError naming the bad field."""
    what = str(path)
    if not isinstance(d, dict):
        raise KeyhookError(f"{what}: expected a JSON object")
    fmt = _get(d, "format", what, int)
    if fmt != FORMAT:
        raise KeyhookError(f"{what}: board format {fmt} is not supported (this keyhook reads format {FORMAT})",
                           hint="update keyhook, or rewrite the file after boards/README.md")
    name = _get(d, "name", what, str)
    if "chip" not in d:
        raise KeyhookError(f"{what}: missing field 'chip' (null for the simulated board)",
                           hint="see boards/README.md for the format")
    chip = _get(d, "chip", what, str, optional=True)
    if chip is not None:
        chip = chip.lower().replace("-", "")
        if chip in NO_BLE_CHIPS:
            raise _no_ble_message(name, chip)
        if chip not in BLE_CHIPS:
            raise KeyhookError(f"{what}: chip {chip!r} is not an ESP32 with Bluetooth LE that keyhook knows",
                               hint=f"use one of: {', '.join(BLE_CHIPS)}")
    if _get(d, "ble", what, bool) is not True:
        raise KeyhookError(f"board {name} has no Bluetooth LE, and keyhook is onboarded and managed over BLE only",
                           hint=f"use one of {', '.join(SUPPORTED)}")
    arch = _get(d, "mpy_arch", what, str)
    if arch not in MPY_ARCHS:
        raise KeyhookError(f"{what}: mpy_arch {arch!r} is not an mpy-cross architecture",
                           hint=f"one of: {', '.join(MPY_ARCHS)}")
    mp = _get(d, "micropython", what, dict)
    fl = _get(d, "flash", what, dict)
    fw = f"{what}: flash"
    flash_size = parse_size(_get(fl, "size", fw, (str, int)))
    image_offset = parse_int(_get(fl, "image_offset", fw, (str, int)), f"{fw}.image_offset")
    pt = fl.get("partition_table_offset")
    app = fl.get("app_offset")
    vfs_offset = parse_int(_get(fl, "vfs_offset", fw, (str, int)), f"{fw}.vfs_offset")
    vfs_size = parse_int(_get(fl, "vfs_size", fw, (str, int)), f"{fw}.vfs_size")
    block = parse_int(_get(fl, "vfs_block_size", fw, (str, int)), f"{fw}.vfs_block_size")
    if block <= 0 or block & (block - 1):
        raise KeyhookError(f"{fw}.vfs_block_size must be a power of two, got {block}")
    if vfs_offset % block or vfs_size % block or vfs_size <= 0:
        raise KeyhookError(f"{fw}: the vfs partition ({vfs_offset:#x}, {vfs_size:#x}) must be whole "
                           f"{block}-byte blocks")
    if vfs_offset + vfs_size > flash_size:
        raise KeyhookError(f"{fw}: the vfs partition ends at {vfs_offset + vfs_size:#x}, past the end "
                           f"of a {size_name(flash_size)} flash")
    if chip is not None and (pt is None or app is None):
        raise KeyhookError(f"{fw}: a real board needs partition_table_offset and app_offset")
    romfs = _get(d, "romfs", what, dict, optional=True)
    romfs_offset = romfs_size = csv = None
    if romfs is not None:
        rw = f"{what}: romfs"
        romfs_offset = parse_int(_get(romfs, "offset", rw, (str, int)), f"{rw}.offset")
        romfs_size = parse_int(_get(romfs, "size", rw, (str, int)), f"{rw}.size")
        csv = path.parent / _get(romfs, "partitions", rw, str)
        if romfs_size <= 0 or romfs_offset % 4096 or romfs_size % 4096:
            raise KeyhookError(f"{rw}: the ROMFS partition ({romfs_offset:#x}, {romfs_size:#x}) must be whole "
                               "4096-byte flash sectors")
        if romfs_offset + romfs_size > vfs_offset:
            raise KeyhookError(f"{rw}: the ROMFS partition ends at {romfs_offset + romfs_size:#x}, inside the file "
                               f"system at {vfs_offset:#x}")
    fwd = _get(d, "firmware", what, dict, optional=True) or {}
    pins = _get(d, "pins", what, dict)
    mem = _get(d, "memory", what, dict)
    prefix = _get(d, "name_prefix", what, str)
    if not prefix or len(prefix) > 16:
        raise KeyhookError(f"{what}: name_prefix must be 1 to 16 characters (the BLE name is the "
                           "prefix plus 6 hex digits, and must fit the scan response)")
    return Board(
        name=name,
        path=path.parent,
        description=str(d.get("description", "")),
        chip=chip,
        ble=True,
        mpy_arch=arch,
        micropython_release=str(mp.get("release", "")),
        micropython_image=mp.get("image"),
        micropython_download=str(mp.get("download", "")),
        flash_size=flash_size,
        image_offset=image_offset,
        partition_table_offset=None if pt is None else parse_int(pt, f"{fw}.partition_table_offset"),
        app_offset=None if app is None else parse_int(app, f"{fw}.app_offset"),
        vfs_offset=vfs_offset,
        vfs_size=vfs_size,
        vfs_block_size=block,
        button=_pin(pins.get("button"), f"{what}: pins.button"),
        led=_pin(pins.get("led"), f"{what}: pins.led"),
        name_prefix=prefix,
        memory=mem,
        raw=d,
        romfs_offset=romfs_offset,
        romfs_size=romfs_size,
        partitions_csv=csv,
        micropython_board=fwd.get("micropython_board"),
        micropython_variant=fwd.get("variant"),
    )


def load(name_or_path: str | Path) -> Board:
    """Load a board by name (a folder of `boards/`) or by a path to a folder or board.json.

    Raises:
        KeyhookError: unknown board, a board without BLE, or an invalid board.json.
    """
    text = str(name_or_path)
    p = Path(text)
    if p.suffix == ".json" and p.is_file():
        path = p
    elif p.is_dir() and (p / "board.json").is_file() and ("/" in text or p.is_absolute()):
        path = p / "board.json"
    else:
        upper = text.upper()
        if "ESP32_GENERIC_S2" in upper or upper.startswith("LOLIN_S2") or upper.startswith("ESP8266"):
            raise _no_ble_message(text, "esp8266" if upper.startswith("ESP8266") else "esp32s2")
        path = BOARDS / text / "board.json"
        if not path.is_file():
            raise KeyhookError(f"unknown board {text!r}",
                               hint=f"known boards: {', '.join(available())}; or give the path of a "
                                    "folder holding a board.json")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise KeyhookError(f"{path}: not valid JSON ({e})") from None
    except OSError as e:
        raise KeyhookError(f"{path}: cannot read ({e.strerror})") from None
    return from_dict(data, path)
