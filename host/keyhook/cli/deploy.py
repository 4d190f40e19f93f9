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
def deploy(port: str, board_name: str | None, ca_bundle: Path | None, select: tuple[str, ...], no_trust: bool,
           no_reset: bool, dry_run: bool) -> None:
    """Copy the changed .mpy files and trust store to the board with mpremote, then reset it.

    Only files whose SHA-256 differs from the device's copy are sent; firmware modules that no
    longer exist are removed from kh/. Rules, pairings and settings on the device are kept.
    """
    board = boards.load(board_name) if board_name else None
    report = kdeploy.deploy(port, board, build_kw=build_kw(ca_bundle, select, no_trust), reset=not no_reset,
                            dry_run=dry_run, progress=lambda s: click.echo(s, err=True))
    verb = "would copy" if dry_run else "copied"
    for p in report.copied:
        click.echo(f"{verb} {p}")
    for p in report.removed:
        click.echo(f"{'would remove' if dry_run else 'removed'} {p}")
    click.echo(f"{report.board} on {port}: {len(report.copied)} files {verb}, {len(report.removed)} removed, "
               f"{report.unchanged} unchanged{'; board reset' if report.reset else ''}")
