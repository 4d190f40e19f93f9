"""`keyhook deploy --port PORT [--board B]`: update the files of a board that runs MicroPython."""

from __future__ import annotations

from pathlib import Path

import click

from keyhook import boards
from keyhook.boards import deploy as kdeploy
from keyhook.cli._boardopts import build_kw


@click.command("deploy")
@click.option("--port", required=True, help="Serial port of a board that already runs MicroPython.")
@click.option("--board", "board_name", default=None,
              help="Board; default: the one named in the device's board.json, else guessed from its chip.")
@click.option("--ca-bundle", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="PEM CA bundle for the trust store (default: certifi's).")
@click.option("--ca", "select", multiple=True, metavar="PATTERN", help="Only the roots matching PATTERN; repeatable.")
@click.option("--no-trust", is_flag=True, help="Do not touch the trust store.")
@click.option("--no-reset", is_flag=True, help="Do not reset the board afterwards.")
@click.option("--dry-run", is_flag=True, help="Show what would change, change nothing.")
@click.option("--code", type=click.Choice(kdeploy.CODE_FORMS), default="auto", show_default=True,
              help="romfs: the firmware runs in place from the board's ROMFS partition; mpy: .mpy files on "
                   "the file system (loaded into the heap); auto: romfs when the board has a partition for it.")
def deploy(port: str, board_name: str | None, ca_bundle: Path | None, select: tuple[str, ...], no_trust: bool,
           no_reset: bool, dry_run: bool, code: str) -> None:
    """Bring the board's firmware up to date over mpremote, then reset it.

    On a MicroPython with a ROMFS partition (a keyhook image from `make firmware`) the compiled
    firmware is written there as one image and runs in place; otherwise the changed .mpy files
    are copied to the file system, with a warning saying what that costs in heap. Only files
    whose SHA-256 differs from the device's copy are sent; firmware modules that no longer
    exist are removed from kh/. Rules, pairings and settings on the device are kept. A warning
    comes first when the board's heap (read over the REPL) is too small for the firmware.
    """
    board = boards.load(board_name) if board_name else None
    report = kdeploy.deploy(port, board, build_kw=build_kw(ca_bundle, select, no_trust), reset=not no_reset,
                            dry_run=dry_run, code=code, progress=lambda s: click.echo(s, err=True),
                            warn=lambda w: click.secho(f"warning: {w}", fg="yellow", err=True))
    if report.heap is not None:
        click.echo(f"heap: {report.heap.describe()}", err=True)
    verb = "would copy" if dry_run else "copied"
    for p in report.copied:
        click.echo(f"{verb} {p}")
    for p in report.removed:
        click.echo(f"{'would remove' if dry_run else 'removed'} {p}")
    if report.code == "romfs":
        state = "unchanged" if not report.romfs_changed else ("would be written" if dry_run else "written")
        click.echo(f"firmware in place: ROMFS image of {report.romfs_size} bytes {state}")
    click.echo(f"{report.board} on {port}: {len(report.copied)} files {verb}, {len(report.removed)} removed, "
               f"{report.unchanged} unchanged{'; board reset' if report.reset else ''}")
