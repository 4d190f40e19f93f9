"""What every BLE command shares: the ADDRESS argument, `--timeout`, `--json`, the radio it uses
and the line that says what it is waiting for."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator

import click

from keyhook import KeyhookError
from keyhook.ble.backend import choose_radio

# A Bluetooth device address (six hex octets, as BlueZ and Windows show it), or the UUID that
# macOS's CoreBluetooth gives a peripheral instead (bleak passes both through as `address`).
_MAC_RE = re.compile(r"^[0-9A-Fa-f]{2}([:-])[0-9A-Fa-f]{2}(\1[0-9A-Fa-f]{2}){4}$")
_UUID_RE = re.compile(r"^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$")


class Interrupted(KeyhookError):
    """Ctrl-C: exit status 130."""

    exit_code = 130


def check_address(value: str) -> str:
    """A device address in its canonical form (upper case, colons); KeyhookError if malformed."""
    v = value.strip()
    if _MAC_RE.match(v):
        return v.replace("-", ":").upper()
    if _UUID_RE.match(v):
        return v.upper()
    raise KeyhookError(f"{value!r} is not a Bluetooth address",
                       hint="give it as six hex pairs, e.g. 24:6F:28:00:00:03 (`keyhook scan` lists the devices)")


class Address(click.ParamType):
    """The ADDRESS argument: refused at once when malformed, before any radio is touched."""

    name = "address"

    def convert(self, value, param, ctx):
        return check_address(value) if isinstance(value, str) else value


ADDRESS = Address()

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Print JSON for scripts (a failure too: {error, message, hint}).")


def timeout_option(default: float = 20.0, what: str = "Seconds to wait for the device."):
    return click.option("--timeout", type=click.FloatRange(min=0.1), default=default, show_default=True,
                        metavar="SECONDS", help=what)


def radio_for(ctx: click.Context, *, say: bool = True) -> str | None:
    """The virtual radio directory this command uses, or None for the Bluetooth adapter; says which."""
    radio, why = choose_radio((ctx.find_root().obj or {}).get("radio"))
    if say:
        where = f"virtual radio {radio}" if radio else "this host's Bluetooth adapter"
        click.echo(f"radio: {where} ({why})", err=True)
    return radio


@contextlib.contextmanager
def waiting(message: str) -> Iterator[None]:
    """Say at once what the command waits for: a spinner on a terminal, one line otherwise."""
    if sys.stderr.isatty():
        from rich.console import Console

        with Console(stderr=True).status(message):
            yield
    else:
        click.echo(message, err=True)
        yield
