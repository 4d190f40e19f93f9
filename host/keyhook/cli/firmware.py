"""`keyhook firmware --board B [--code romfs|frozen]`: keyhook's MicroPython image, built with ESP-IDF
(what `make firmware BOARD=B` runs)."""

from __future__ import annotations

from pathlib import Path

import click

from keyhook import boards
from keyhook.boards import firmware as kfirmware
from keyhook.cli._boardopts import BOARD_HELP


@click.command("firmware")
@click.option("--board", "board_name", required=True, help=BOARD_HELP)
@click.option("--code", type=click.Choice(kfirmware.CODE_FORMS), default="romfs", show_default=True,
              help="romfs: a ROMFS partition for the firmware, which runs in place from it; "
                   "frozen: the firmware frozen into the MicroPython app.")
@click.option("--micropython-src", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="MICROPY_DIR", help="MicroPython's source tree (default: $MICROPY_DIR).")
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: build/firmware/BOARD).")
def firmware(board_name: str, code: str, micropython_src: Path | None, out: Path | None) -> None:
    """Build MicroPython for BOARD with a ROMFS partition, TLS 1.3 and X25519 (needs ESP-IDF).

    The stock board's configuration plus boards/sdkconfig.keyhook and the board's
    partitions-romfs.csv; without ESP-IDF (idf.py) or a MicroPython source tree it stops and
    says what to install.
    """
    board = boards.load(board_name)
    fb = kfirmware.build_firmware(board, code=code, micropython_src=micropython_src, out=out,
                                  progress=lambda s: click.echo(s, err=True))
    click.echo(f"MicroPython for {fb.board} with a ROMFS partition: {fb.micropython}")
    if fb.romfs_image:
        click.echo(f"the firmware's ROMFS image: {fb.romfs_image} ({fb.romfs_size} bytes)")
    click.echo(f"next: keyhook flash --board {fb.board} --port PORT --micropython {fb.micropython} --erase")
    if code == "romfs":
        click.echo("      (flash writes the firmware into the ROMFS partition; keyhook deploy updates it there)")
