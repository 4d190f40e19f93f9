"""The firmware boots from the image `keyhook build --board unix` wrote: every firmware module
is loaded from the image's .mpy files (firmware/ is not on the path), the device prints its
setup code, and it advertises on the simulated radio under the board's name prefix."""

from __future__ import annotations

import asyncio
import re


import bootimage
from keyhook import boards
from keyhook.boards import build
from keyhook.sim import radio as vradio


def test_firmware_boots_from_the_built_image_on_the_simulated_radio(tmp_path):
    board = boards.load("unix")
    result = build.build(board, tmp_path / "out", select=["ISRG Root X1"])
    radio = tmp_path / "radio"
    proc, report, lines = bootimage.boot(result.image, tmp_path / "run", radio, board.vfs_block_count)
    try:
        out = "\n".join(lines)
        assert report, f"the firmware did not come up idle; it printed:\n{out[-3000:]}"
        mods = report["modules"]
        assert mods["main"] == "/img/main.py"
        assert mods["kh"] == "/img/kh/__init__.mpy"
        not_from_image = {k: v for k, v in mods.items() if not v.startswith("/img/")}
        assert not not_from_image, f"modules not loaded from the image: {not_from_image}"
        assert all(v.endswith(".mpy") for k, v in mods.items() if k != "main")
        code = re.search(r"keyhook ([0-9a-f]{12}): not paired; setup code (\d{8})", out)
        assert code, out
        ads = asyncio.run(vradio.scan_once(radio))
        assert [a.local_name for a in ads] == [board.name_prefix + code.group(1)[-6:]]
        assert ads[0].connectable
    finally:
        bootimage.stop(proc)
