"""`keyhook sim`: run a simulated device (the real firmware, radio simulated) until stopped."""

from __future__ import annotations

import sys

import click

from keyhook.ble.backend import default_radio
from keyhook.sim.code import FORMS
from keyhook.sim.device import run_forever
from keyhook.sim.faults import env_value


@click.group(invoke_without_command=True)
@click.option("--state", default="keyhook-state", show_default=True, type=click.Path(file_okay=False),
              help="Directory for the device's flash image and unique id (same dir: same device).")
@click.option("--name", default=None, help="Advertised name (default keyhook-XXXXXX).")
@click.option("--certs", default=None, type=click.Path(file_okay=False),
              help="Trust store directory (DER roots as `keyhook build` writes them).")
@click.option("--code", "code", type=click.Choice(FORMS), default="mpy", show_default=True,
              help="How the firmware's code is held: .py source, .mpy files on the file system "
                   "(bytecode in the GC heap), a ROMFS image run in place, or frozen into the "
                   "interpreter (one built by `make mp32-frozen`, named by KEYHOOK_MICROPYTHON).")
@click.option("--heap", "heap", type=click.IntRange(16, 65536), default=None, metavar="KIB",
              help="GC heap the firmware may use, in KiB (the interpreter's -X heapsize; with "
                   "--code romfs the image's size is added, standing for flash). "
                   "KEYHOOK_MICROPYTHON picks the interpreter, e.g. a 32-bit build.")
@click.option("--fault", "faults", multiple=True, metavar="SPEC",
              help="Inject a fault, as an ESP32 meets them under load (repeatable): irq-memoryerror:N "
                   "(the N-th gatts_read raises MemoryError), link-stall:MS@N (nothing goes on air for MS ms "
                   "after the N-th notification), drop-write:N (the N-th write from the app is lost).")
@click.pass_context
def sim(ctx: click.Context, state: str, name: str | None, certs: str | None, code: str, heap: int | None,
        faults: tuple[str, ...]) -> None:
    """Run a simulated device on the virtual radio (--radio, else the default one it names).

    While unpaired it prints its setup code, as a real device does on its serial console.
    Ctrl-C, SIGTERM and SIGHUP stop it. `keyhook sim press ADDRESS` presses its button.
    """
    if ctx.invoked_subcommand is not None:
        return
    radio = (ctx.find_root().obj or {}).get("radio") or default_radio()
    click.echo(f"radio: virtual radio {radio}" + ("" if (ctx.find_root().obj or {}).get("radio") else
               f" (the default; BLE commands find a device running on it, or give --radio {radio})"), err=True)
    env_value(faults)  # a bad spec: KeyhookError (error and hint) before anything starts
    sys.exit(run_forever(radio, state, name, certs, faults, code=code, heap_kib=heap))


@sim.command("press")
@click.argument("address", required=False)
@click.option("--state", "state_dir", default=None, type=click.Path(file_okay=False),
              help="Press the button of the device with this state directory (instead of ADDRESS).")
@click.option("--hold", default=0.1, show_default=True, type=click.FloatRange(0.0, 30.0), metavar="SECONDS",
              help="How long the button is held down.")
@click.option("--pin", default=0, show_default=True, type=click.IntRange(0, 255),
              help="The GPIO the button is wired to (`pins.button` in boards/unix/board.json).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def press(ctx: click.Context, address: str | None, state_dir: str | None, hold: float, pin: int,
          as_json: bool) -> None:
    """Press the button of the simulated device ADDRESS (lifts a pairing lock-out, fires button:boot rules)."""
    import asyncio
    import json

    from keyhook import KeyhookError
    from keyhook.cli._options import check_address
    from keyhook.sim import radio as vradio

    if (address is None) == (state_dir is None):
        raise KeyhookError("give the device's ADDRESS or its --state DIR", hint="`keyhook scan` lists the addresses")
    if state_dir is not None:
        address = vradio.address_for_state(state_dir)
        if address is None:
            raise KeyhookError(f"{state_dir} holds no simulated device", hint="give the --state DIR `keyhook sim` runs with")
    address = check_address(address)
    radio = (ctx.find_root().obj or {}).get("radio") or default_radio()
    click.echo(f"radio: virtual radio {radio}", err=True)
    try:
        asyncio.run(vradio.press(radio, address, pin=pin, hold_s=hold))
    except vradio.RadioError as e:
        raise KeyhookError(str(e), hint="is `keyhook sim` running with this --radio? (`keyhook scan` lists devices)") from None
    if as_json:
        click.echo(json.dumps({"pressed": address, "pin": pin, "hold_s": hold}))
    else:
        click.echo(f"pressed the button of {address} for {hold:g} s")
