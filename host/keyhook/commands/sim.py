"""`keyhook sim`: run a simulated device (the real firmware, radio simulated) until stopped."""

from __future__ import annotations

import sys

import click

from keyhook.sim.device import run_forever
from keyhook.sim.faults import env_value


@click.command()
@click.option("--state", default="keyhook-state", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the device's flash image and unique id (same dir: same device).")
@click.option("--name", default=None, help="Advertised name (default keyhook-XXXXXX).")
@click.option("--certs", default=None, type=click.Path(file_okay=False),
              help="Trust store directory (DER roots as `keyhook build` writes them).")
@click.option("--fault", "faults", multiple=True, metavar="SPEC",
              help="Inject a fault, as an ESP32 meets them under load (repeatable): irq-memoryerror:N "
                   "(the N-th gatts_read raises MemoryError), link-stall:MS@N (nothing goes on air for MS ms "
                   "after the N-th notification), drop-write:N (the N-th write from the app is lost).")
@click.pass_context
def sim(ctx: click.Context, state: str, name: str | None, certs: str | None, faults: tuple[str, ...]) -> None:
    """Run a simulated device on the virtual radio (--radio, default ./keyhook-radio).

    While unpaired it prints its setup code, as a real device does on its serial console.
    """
    radio = (ctx.find_root().obj or {}).get("radio") or "keyhook-radio"
    env_value(faults)  # a bad spec: KeyhookError (error and hint) before anything starts
    sys.exit(run_forever(radio, state, name, certs, faults))
