"""`keyhook sim`: run a simulated device (the real firmware, radio simulated) until stopped."""

from __future__ import annotations

import sys

import click

from keyhook.sim.device import run_forever


@click.command()
@click.option("--state", default="keyhook-state", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the device's flash image and unique id (same dir: same device).")
@click.option("--name", default=None, help="Advertised name (default keyhook-XXXXXX).")
@click.option("--certs", default=None, type=click.Path(file_okay=False),
              help="Trust store directory (DER roots as `keyhook build` writes them).")
@click.pass_context
def sim(ctx: click.Context, state: str, name: str | None, certs: str | None) -> None:
    """Run a simulated device on the virtual radio (--radio, default ./keyhook-radio).

    While unpaired it prints its setup code, as a real device does on its serial console.
    """
    radio = (ctx.find_root().obj or {}).get("radio") or "keyhook-radio"
    sys.exit(run_forever(radio, state, name, certs))
