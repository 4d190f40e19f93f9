"""`keyhook console --port PORT`: the board's serial console (setup code, logs, REPL)."""

from __future__ import annotations

import click

from keyhook.boards import console as kconsole


@click.command("console")
@click.option("--port", required=True, help="Serial port of the board.")
@click.option("--baud", type=int, default=115200, show_default=True)
@click.option("--reset", "do_reset", is_flag=True, help="Reset the board first, to see it start (and its setup code).")
def console(port: str, baud: int, do_reset: bool) -> None:
    """Show the board's serial output and type into its REPL; Ctrl-] quits.

    At first boot (and while unpaired) keyhook prints its 8-digit setup code here.
    """
    kconsole.run(port, baud=baud, reset=do_reset)
