"""`keyhook flash --board B --port PORT (--image OUT.bin | --micropython FILE.bin) [--erase]`."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from keyhook import boards
from keyhook.boards import flash as kflash
from keyhook.cli._boardopts import BOARD_HELP, build_kw, flash_size_arg, trust_options


@click.command("flash")
@click.option("--board", "board_name", required=True, help=BOARD_HELP)
@click.option("--port", required=True, help="Serial port of the board (e.g. /dev/ttyUSB0, COM3).")
@click.option("--image", "image_path", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A merged image from `keyhook image`.")
@click.option("--micropython", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A MicroPython release image: keyhook builds its file system and merges it first.")
@click.option("--erase", is_flag=True, help="Erase the whole flash first (also clears NVS and anything beyond the image).")
@click.option("--baud", type=int, default=kflash.DEFAULT_BAUD, show_default=True, help="Baud rate for writing.")
@click.option("--no-heap-check", is_flag=True,
              help="Do not read the board's heap over the REPL first (board.json's figures are used).")
@trust_options
def flash(board_name: str, port: str, image_path: Path | None, micropython: Path | None, erase: bool, baud: int,
          no_heap_check: bool, ca_bundle: Path | None, select: tuple[str, ...], no_trust: bool,
          flash_size: str | None) -> None:
    """Write keyhook (and MicroPython) to the board on PORT with esptool, then reset it.

    The chip found on PORT must be the board's chip; the module's flash size must be the one
    the image was built for. Watch it start with `keyhook console --port PORT`.

    The image holds a whole file system: flashing replaces the device's pairings, rules and
    setup code. To update a device and keep them, use `keyhook deploy`.

    With a MicroPython image that has a ROMFS partition (`make firmware`), the firmware goes
    there and runs in place. Before writing, the heap of the MicroPython the board runs now is
    read over the REPL (or taken from board.json), and a warning says when the firmware will
    not fit it.
    """
    board = boards.load(board_name)
    size = flash_size_arg(flash_size)
    data = kflash.image_for(board, image_path=image_path, micropython=micropython, flash_size=size,
                            build_kw=build_kw(ca_bundle, select, no_trust),
                            progress=lambda s: click.echo(s, err=True))
    form = kflash.code_form(board, data[:board.vfs_for_flash(size)[0] - board.image_offset], size)
    check = kflash.check_heap(board, port, form, ask=not no_heap_check)
    if check.heap is not None:
        click.echo(f"heap ({'read from the board' if check.source == 'board' else 'from board.json'}): "
                   f"{check.heap.describe()}", err=True)
    for w in check.warnings:
        click.secho(f"warning: {w}", fg="yellow", err=True)
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                  console=console, transient=False) as bar:
        tasks: dict[str, int] = {}

        def on_progress(done: int, total: int, label: str) -> None:
            key = label or "writing"
            if key not in tasks:
                tasks[key] = bar.add_task(key, total=total)
            bar.update(tasks[key], completed=done, total=total)

        sink = kflash.EsptoolLog(on_line=lambda s: console.print(s, markup=False, highlight=False),
                                 on_progress=on_progress)
        report = kflash.flash(board, port, data, erase=erase, baud=baud, flash_size=size, sink=sink)
    click.echo(f"flashed {report.size} bytes at {report.offset:#x} to the {report.chip} on {port}"
               f"{' (after a full erase)' if report.erased else ''}; the board was reset")
    click.echo(f"next: keyhook console --port {port}   (the setup code appears there at first boot)")
