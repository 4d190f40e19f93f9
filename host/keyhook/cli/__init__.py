"""The `keyhook` command line: thin commands over the `keyhook` library.

Expected failures raise `KeyhookError`; `main` prints them to stderr with a hint and exits 2
(with `--json`: one JSON object `{error, message, hint}` on stdout, same exit status). Exit
statuses: 0 success, 1 a fire that got no response, 2 every expected failure, 130 Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys

import click

from keyhook import KeyhookError, __version__
from keyhook.cli._options import Interrupted
from keyhook.text import plain

# Options of the `keyhook` group that users also type after the subcommand
# (`keyhook scan --radio X`): moved in front of it before click parses.
GLOBAL_FLAGS = ("-v", "--verbose", "--debug")
GLOBAL_VALUED = ("--radio",)


def hoist_global_options(args: list[str]) -> list[str]:
    """`args` with the global options found after the subcommand moved before it (up to `--`)."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest += args[i:]
            break
        if a in GLOBAL_FLAGS:
            front.append(a)
        elif a in GLOBAL_VALUED and i + 1 < len(args):
            front += [a, args[i + 1]]
            i += 1
        elif a.split("=", 1)[0] in GLOBAL_VALUED and "=" in a:
            front.append(a)
        else:
            rest.append(a)
        i += 1
    return front + rest


class KeyhookGroup(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(list(args)))


@click.group(cls=KeyhookGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keyhook")
@click.option("-v", "--verbose", is_flag=True, help="Say what the tool and the link are doing (on stderr).")
@click.option("--debug", is_flag=True, help="Like -v, with every step of the link and of bleak.")
@click.option(
    "--radio",
    envvar="KEYHOOK_RADIO",
    type=click.Path(file_okay=False),
    metavar="PATH",
    default=None,
    help="Use the virtual radio directory PATH (simulated devices) instead of the Bluetooth adapter.",
)
@click.pass_context
def cli(ctx: click.Context, verbose: bool, debug: bool, radio: str | None) -> None:
    """keyhook: secure webhook devices on ESP32 with Bluetooth LE.

    Global options may also follow the command (`keyhook scan --radio DIR`).
    """
    ctx.ensure_object(dict)
    ctx.obj["radio"] = radio
    if verbose or debug:
        logging.basicConfig(stream=sys.stderr, format="%(name)s: %(message)s",
                            level=logging.DEBUG if debug else logging.WARNING)
        logging.getLogger("keyhook").setLevel(logging.DEBUG if debug else logging.INFO)


def _register() -> None:
    # Each command lives in its own module under keyhook.cli; one import line per module.
    # COMMANDS-BEGIN
    from keyhook.cli import pin; cli.add_command(pin.pin)
    from keyhook.cli import qr; cli.add_command(qr.qr)
    from keyhook.cli import build; cli.add_command(build.build)
    from keyhook.cli import image; cli.add_command(image.image)
    from keyhook.cli import flash; cli.add_command(flash.flash)
    from keyhook.cli import deploy; cli.add_command(deploy.deploy)
    from keyhook.cli import firmware; cli.add_command(firmware.firmware)
    from keyhook.cli import console; cli.add_command(console.console)
    from keyhook.cli import sim; cli.add_command(sim.sim)
    from keyhook.cli import fire; cli.add_command(fire.fire)
    from keyhook.cli import cloud
    for command in cloud.COMMANDS:
        cli.add_command(command)
    from keyhook.cli import device
    for command in device.COMMANDS:
        cli.add_command(command)
    # COMMANDS-END
    pass


def error_code(e: BaseException) -> str:
    """A failure's machine-readable name: the device's error code, else the exception's kind."""
    if isinstance(e, click.UsageError):
        return "usage"
    code = getattr(e, "code", None)
    if isinstance(code, str) and code:
        return code
    name = getattr(type(e), "name", None)
    if isinstance(name, str) and name and name != "error":
        return name
    kind = re.sub(r"(?<!^)(?=[A-Z])", "_", type(e).__name__).lower()
    return {"keyhook_error": "error", "rule_error": "invalid_rule", "interrupted": "interrupted"}.get(kind, kind)


def fail(e: BaseException, message: str, hint: str | None, exit_code: int, as_json: bool) -> None:
    """Report a failure (stderr lines, or one JSON object on stdout) and exit with `exit_code`."""
    if as_json:
        click.echo(json.dumps({"error": error_code(e), "message": message, "hint": hint}))
    else:
        click.echo(f"error: {plain(message)}", err=True)  # a device's or a rule's words, inert
        if hint:
            click.echo(f"hint: {plain(hint)}", err=True)
    if exit_code == 130:
        # Ctrl-C may land while asyncio builds or tears down a loop; leaving now spares the user
        # the interpreter's shutdown noise about it (everything that needed closing has been).
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)
    sys.exit(exit_code)


def _wants_json(argv: list[str]) -> bool:
    return "--json" in argv[:argv.index("--")] if "--" in argv else "--json" in argv


def main(argv: list[str] | None = None) -> None:
    _register()
    args = list(sys.argv[1:] if argv is None else argv)
    as_json = _wants_json(args)
    try:
        # standalone_mode=False: ctx.exit(n) comes back as the return value.
        rv = cli.main(args=args, prog_name="keyhook", standalone_mode=False)
    except click.exceptions.Abort as e:
        cause = e.__cause__ or e.__context__
        if isinstance(cause, KeyboardInterrupt):
            fail(Interrupted("interrupted"), "interrupted", None, 130, as_json)
        if isinstance(cause, EOFError):
            fail(e, "no answer: standard input is closed", "give the answer as an option (see --help)", 2, as_json)
        fail(e, "not confirmed; nothing was done", "add --yes to skip the question", 2, as_json)
    except KeyboardInterrupt:
        fail(Interrupted("interrupted"), "interrupted", None, 130, as_json)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        if not as_json:
            e.show()
            sys.exit(e.exit_code)
        hint = None
        if isinstance(e, click.UsageError) and e.ctx is not None:
            hint = f"`{e.ctx.command_path} --help` shows the usage"
        fail(e, e.format_message(), hint, e.exit_code, True)
    except KeyhookError as e:
        fail(e, str(e), e.hint, getattr(e, "exit_code", 2), as_json)
    sys.exit(rv if isinstance(rv, int) else 0)
