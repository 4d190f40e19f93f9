"""`keyhook sim`: run a simulated device (the real firmware, radio simulated) until stopped."""

from __future__ import annotations

import sys

import click

from keyhook.sim.code import FORMS
from keyhook.sim.device import run_forever
from keyhook.sim.faults import env_value


@click.command()
@click.option("--state", default="keyhook-state", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the device's flash image and unique id (same dir: same device).")
@click.option("--name", default=None, help="Advertised name (default keyhook-XXXXXX).")
@click.option("--certs", default=None, type=click.Path(file_okay=False),
              help="Trust store directory (DER roots as `keyhook build` writes them).")
@click.option("--code", "code", type=click.Choice(FORMS), default="mpy", show_default=True,
              help="How the firmware's code is held: .py source, .mpy files on the file system "
                   "(bytecode in the GC heap), or a ROMFS image run in place.")
@click.option("--heap", "heap", type=click.IntRange(16, 65536), default=None, metavar="KIB",
              help="GC heap the firmware may use, in KiB (the interpreter's -X heapsize; with "
                   "--code romfs the image's size is added, standing for flash). "
                   "KEYHOOK_MICROPYTHON picks the interpreter, e.g. a 32-bit build.")
@click.option("--fault", "faults", multiple=True, metavar="SPEC",
              help="Inject a fault, as an ESP32 meets them under load (repeatable): irq-memoryerror:N "
                   "(the N-th gatts_read raises MemoryError), link-stall:MS@N (nothing goes on air for MS ms "
                   "after the N-th notification), drop-write:N (the N-th write from the app is lost).")
@click.pass_context
def sim(ctx: click.Context, state: str, name: str | None, certs: str | None, code: str,
        heap: int | None, faults: tuple[str, ...]) -> None:
    """Run a simulated device on the virtual radio (--radio, default ./keyhook-radio).

    While unpaired it prints its setup code, as a real device does on its serial console.
    """
    radio = (ctx.find_root().obj or {}).get("radio") or "keyhook-radio"
    env_value(faults)  # a bad spec: KeyhookError (error and hint) before anything starts
    sys.exit(run_forever(radio, state, name, certs, faults, code=code, heap_kib=heap))
