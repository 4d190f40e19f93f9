"""`keyhook image --board B --micropython FILE.bin -o OUT.bin`: one file to flash."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from keyhook import boards
from keyhook.boards import flash as kflash
from keyhook.boards import image as kimage
from keyhook.cli._boardopts import BOARD_HELP, build_kw, flash_size_arg, trust_options


@click.command("image")
@click.option("--board", "board_name", required=True, help=BOARD_HELP)
@click.option("--micropython", "micropython", required=True,
              type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="The MicroPython release image for the board (e.g. ESP32_GENERIC-v1.29.0.bin).")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The merged image to write.")
@click.option("--fs", "fs_image", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="Use this littlefs image (vfs.img of an earlier `keyhook build`) instead of building.")
@click.option("--info", "show_info", is_flag=True,
              help="Also print esptool's image_info for the bootloader and app in OUT.")
@trust_options
def image(board_name: str, micropython: Path, out: Path, fs_image: Path | None, show_info: bool,
          ca_bundle: Path | None, select: tuple[str, ...], no_trust: bool, flash_size: str | None) -> None:
    """Merge the MicroPython image and keyhook's file system into OUT (esptool merge-bin).

    OUT is written at the board's image offset, like the MicroPython image itself
    (0x1000 on the ESP32, 0x0 on the S3 and C3); `keyhook flash --image OUT` does that.
    """
    board = boards.load(board_name)
    size = flash_size_arg(flash_size)
    mp = kimage.read_file(micropython, "MicroPython image")
    if fs_image is not None:
        vfs = kimage.read_file(fs_image, "littlefs image")
        rel = kimage.merge(board, mp, vfs, out, size)
    else:
        # With a ROMFS partition in the MicroPython image (make firmware), the firmware goes there.
        with tempfile.TemporaryDirectory(prefix="keyhook-image-") as tmp:
            kflash.build_and_merge(board, mp, out, Path(tmp), flash_size=size, build_kw=build_kw(ca_bundle, select,
                                                                                                  no_trust),
                                   progress=lambda s: click.echo(s, err=True))
        rel = kimage.inspect_release(board, mp, size)
    if show_info:
        for line in kimage.describe(board, out.read_bytes()):
            click.echo(line)
    click.echo(f"wrote {out}: MicroPython at {board.image_offset:#x} ({rel.size} bytes, app at {rel.app_offset:#x}), "
               f"littlefs at {rel.vfs_offset:#x} ({rel.vfs_size} bytes)")
    click.echo(f"flash it with: keyhook flash --board {board.name} --port PORT --image {out}")
    click.echo(f"  (or: esptool --chip {board.chip} write-flash {board.image_offset:#x} {out})")
