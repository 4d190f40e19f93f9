"""`keyhook build --board B [-o DIR]`: compiled firmware, trust store and littlefs image."""

from __future__ import annotations

import json
from pathlib import Path

import click

from keyhook import boards
from keyhook.boards import build as kbuild
from keyhook.cli._boardopts import BOARD_HELP, build_kw, flash_size_arg, trust_options


@click.command("build")
@click.option("--board", "board_name", required=True, help=BOARD_HELP)
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (default: build/BOARD). fs/ is the device tree, vfs.img the littlefs image.")
@trust_options
@click.option("-O", "--opt", type=click.IntRange(0, 3), default=0, show_default=True,
              help="mpy-cross optimisation level; 3 drops line numbers from tracebacks (smaller .mpy).")
@click.option("--list-cas", is_flag=True, help="List the roots the selection gives, and build nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the build summary as JSON.")
def build(board_name: str, out: Path | None, ca_bundle: Path | None, select: tuple[str, ...], no_trust: bool,
          flash_size: str | None, opt: int, list_cas: bool, as_json: bool) -> None:
    """Compile the firmware for BOARD with mpy-cross and write its file system image.

    main.py stays source; every other module becomes .mpy for the board's architecture. The
    trust store holds the CA roots as DER with an index. No secret is ever put in the image:
    Wi-Fi credentials and rules reach the device over the secure channel.
    """
    board = boards.load(board_name)
    if list_cas:
        for subject, der in kbuild.load_roots(ca_bundle, select):
            click.echo(f"{len(der):5d}  {subject}")
        return
    say = (lambda s: None) if as_json else (lambda s: click.echo(s, err=True))
    result = kbuild.build(board, out, flash_size=flash_size_arg(flash_size), opt=opt, progress=say,
                          **build_kw(ca_bundle, select, no_trust))
    if as_json:
        click.echo(json.dumps(result.summary(), indent=1))
        return
    budget = board.firmware_budget
    mark = "" if result.mpy_total <= budget else f"  (over the {budget // 1024} KiB budget)"
    click.echo(f"board       {board.name} ({board.chip or 'simulated'}, {board.mpy_arch})")
    click.echo(f"firmware    {sum(1 for f in result.files if f.kind in ('mpy', 'py'))} files, "
               f"{result.mpy_total} bytes{mark}")
    click.echo(f"trust store {result.trust.get('roots', 0)} roots, {result.trust_total} bytes")
    click.echo(f"image       {result.image} ({result.vfs_size} bytes for the partition at {result.vfs_offset:#x})")
    if not board.simulated:
        click.echo(f"next        keyhook image --board {board.name} --micropython {board.micropython_image} "
                   f"-o {board.name}-keyhook.bin")
