"""The `keyhook` command line: thin commands over the `keyhook` library.

Expected failures raise `KeyhookError`; `main` prints them to stderr with a hint and exits 2.
"""

from __future__ import annotations

import sys

import click

from keyhook import KeyhookError, __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keyhook")
@click.option(
    "--radio",
    envvar="KEYHOOK_RADIO",
    type=click.Path(file_okay=False),
    metavar="PATH",
    default=None,
    help="Use the virtual radio directory PATH (simulated devices) instead of the Bluetooth adapter.",
)
@click.pass_context
def cli(ctx: click.Context, radio: str | None) -> None:
    """keyhook: secure webhook devices on ESP32 with Bluetooth LE."""
    ctx.ensure_object(dict)
    ctx.obj["radio"] = radio


def _register() -> None:
    # Each command lives in its own module under keyhook.commands; one import line per module.
    # COMMANDS-BEGIN
    from keyhook.commands import pin; cli.add_command(pin.pin)
    from keyhook.commands import qr; cli.add_command(qr.qr)
    from keyhook.commands import build; cli.add_command(build.build)
    from keyhook.commands import image; cli.add_command(image.image)
    from keyhook.commands import flash; cli.add_command(flash.flash)
    from keyhook.commands import deploy; cli.add_command(deploy.deploy)
    from keyhook.commands import console; cli.add_command(console.console)
    from keyhook.commands import sim; cli.add_command(sim.sim)
    from keyhook.commands import fire; cli.add_command(fire.fire)
    from keyhook.commands import device
    for command in device.COMMANDS:
        cli.add_command(command)
    from keyhook.commands import cloud
    for command in cloud.COMMANDS:
        cli.add_command(command)
    # COMMANDS-END
    pass


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        # standalone_mode=False: ctx.exit(n) comes back as the return value.
        rv = cli.main(args=argv, prog_name="keyhook", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyhookError as e:
        click.echo(f"error: {e}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)
