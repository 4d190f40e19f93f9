"""The BLE commands: scan, onboard, and everything a paired app asks of a device.

Each command is a thin wrapper over `keyhook.device.DeviceClient`; `--json` prints one JSON
document for scripts. `--radio PATH` (global) talks to a simulated device instead of the adapter.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from keyhook import KeyhookError, ble
from keyhook import rules as rules_mod
from keyhook.device import DeviceClient, onboard as onboard_device
from keyhook.text import plain, shown  # what a device or a rule says, shown as inert text

out = Console()
err = Console(stderr=True)


def _radio(ctx: click.Context) -> str | None:
    return (ctx.find_root().obj or {}).get("radio")


def _emit(as_json: bool, data: Any, human) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        human(data)


def _run(coro):
    return asyncio.run(coro)


async def _with_device(ctx: click.Context, address: str, fn):
    async with DeviceClient(address, radio=_radio(ctx)) as dev:
        return await fn(dev)


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


@click.command()
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to listen.")
@json_option
@click.pass_context
def scan(ctx: click.Context, timeout: float, as_json: bool) -> None:
    """List keyhook devices in range (name, address, paired, signal)."""
    found = _run(ble.scan(radio=_radio(ctx), timeout=timeout))
    rows = [{"address": d.address, "name": d.name, "paired": d.paired, "rssi": d.rssi} for d in found]

    def human(rows):
        if not rows:
            out.print("no keyhook device found; is it powered and in range? (`--timeout` listens longer)")
            return
        t = Table("address", "name", "paired", "rssi")
        for r in rows:
            t.add_row(r["address"], shown(r["name"] or ""), "yes" if r["paired"] else "no", str(r["rssi"]))
        out.print(t)
    _emit(as_json, rows, human)


@click.command()
@click.argument("address")
@click.option("--code", required=True, help="The device's 8-digit setup code (serial console or label).")
@json_option
@click.pass_context
def onboard(ctx: click.Context, address: str, code: str, as_json: bool) -> None:
    """Pair with a device using its setup code (SPAKE2: the code never crosses the radio)."""
    code = code.replace("-", "").replace(" ", "")
    if len(code) != 8 or not code.isdigit():
        raise KeyhookError("the setup code must be 8 digits", hint="read it from the device's serial console or label")
    with err.status(f"pairing with {address} ..."):
        info = _run(onboard_device(address, code, radio=_radio(ctx)))
    _emit(as_json, info, lambda i: out.print(
        f"paired with [bold]{shown(i.get('name'))}[/bold] ({shown(i.get('device_id'))}), firmware {shown(i.get('firmware'))}"))


@click.command()
@click.argument("address")
@json_option
@click.pass_context
def info(ctx: click.Context, address: str, as_json: bool) -> None:
    """Show a paired device's name, firmware, memory, clock, Wi-Fi and rule count."""
    data = _run(_with_device(ctx, address, lambda d: d.info()))

    def human(i):
        t = Table(show_header=False)
        for k in ("name", "device_id", "firmware", "mem_free", "clock", "wifi", "rules", "pairings"):
            t.add_row(k, shown(json.dumps(i.get(k)) if isinstance(i.get(k), dict) else i.get(k)))
        out.print(t)
    _emit(as_json, data, human)


@click.group()
def rules() -> None:
    """Push, list and remove the webhook rules on a device."""


@rules.command("push")
@click.argument("address")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--event", "events", multiple=True,
              help="Event that fires the rules: trigger, button:NAME, finger:USER[:N] (default: the file's, else trigger).")
@click.option("--check-pins/--no-check-pins", default=True, show_default=True,
              help="Compare each pinned certificate with what its server presents.")
@json_option
@click.pass_context
def rules_push(ctx: click.Context, address: str, file: str, events: tuple[str, ...], check_pins: bool,
               as_json: bool) -> None:
    """Validate FILE (one webhook object or a list) and store it on the device atomically."""
    normalised, warnings = rules_mod.normalise_all(rules_mod.load_rules(file), list(events) or None)
    if check_pins:
        warnings += _pin_warnings(normalised)
    for w in warnings:
        err.print(f"[yellow]warning:[/yellow] {shown(w)}")
    with Progress(TextColumn("pushing rules"), BarColumn(), DownloadColumn(), console=err,
                  transient=True, disable=as_json) as bar:
        task = bar.add_task("push", total=None)
        stored = _run(_with_device(ctx, address, lambda d: d.put_rules(
            normalised, progress=lambda done, total: bar.update(task, completed=done, total=total))))
    _emit(as_json, {"stored": stored, "warnings": [str(w) for w in warnings]},
          lambda r: out.print(f"stored {len(r['stored'])} rule(s): {shown(', '.join(map(str, r['stored'])))}"))


def _pin_warnings(rules: list[dict]) -> list[rules_mod.Warning_]:
    import base64

    from keyhook.pin import fetch_chain, pin_matches
    found = []
    for r in rules:
        d = r["definition"]
        if d["securityLevel"] != "TlsPinnedCertificate":
            continue
        try:
            role = pin_matches(base64.b64decode(d["pinnedCertificate"]), fetch_chain(d["url"], timeout=3))
        except KeyhookError as e:
            found.append(rules_mod.Warning_(r["functionName"], f"could not check the pin: {e}"))
            continue
        if role is None:
            found.append(rules_mod.Warning_(r["functionName"], "the pinned certificate is not in the chain the server "
                                                               "presents now: the device will refuse it "
                                                               "(`keyhook pin URL` shows the candidates)"))
    return found


@rules.command("list")
@click.argument("address")
@json_option
@click.pass_context
def rules_list(ctx: click.Context, address: str, as_json: bool) -> None:
    """List the rules on a device (metadata only; secrets never leave it)."""
    data = _run(_with_device(ctx, address, lambda d: d.list_rules()))

    def human(rs):
        if not rs:
            out.print("no rules; add some with `keyhook rules push ADDRESS FILE`")
            return
        t = Table("name", "host", "level", "auth", "events")
        for r in rs:
            t.add_row(*(shown(r.get(k, "")) if not isinstance(r.get(k), list) else shown(", ".join(map(str, r[k])))
                        for k in ("name", "host", "level", "auth", "events")))
        out.print(t)
    _emit(as_json, data, human)


@rules.command("rm")
@click.argument("address")
@click.argument("function")
@click.pass_context
def rules_rm(ctx: click.Context, address: str, function: str) -> None:
    """Remove the rule FUNCTION from a device."""
    deleted = _run(_with_device(ctx, address, lambda d: d.delete_rule(function)))
    if not deleted:
        raise KeyhookError(f"the device has no rule {function!r}", hint="`keyhook rules list ADDRESS` shows its rules")
    out.print(f"removed {shown(repr(function))}")


@click.command()
@click.argument("address")
@click.argument("function")
@click.option("--no-wait", is_flag=True, help="Queue the fire and return at once.")
@json_option
@click.pass_context
def trigger(ctx: click.Context, address: str, function: str, no_wait: bool, as_json: bool) -> None:
    """Fire the rule FUNCTION now, as the device would on its event. Exit 1 if no response came back."""
    result = _run(_with_device(ctx, address, lambda d: d.trigger(function, wait=not no_wait)))

    def human(r):
        if r.get("queued") and no_wait:
            out.print("queued")
        elif r.get("queued"):
            out.print(f"{shown(function)}: still queued or retrying; is the device on Wi-Fi (`keyhook info`)? "
                      "`keyhook log` shows how it ends")
        elif r.get("error"):
            out.print(f"[red]{shown(function)}: {shown(r['error'])}[/red] {shown(r.get('message', ''))} "
                      f"(sent: {shown(r.get('sent'))})")
        else:
            out.print(f"{shown(function)}: HTTP {shown(r.get('status'))} in {shown(r.get('elapsed_ms'))} ms")
    _emit(as_json, result, human)
    if not no_wait and result.get("status") is None:
        ctx.exit(1)


@click.command()
@click.argument("address")
@click.option("--ssid", required=True)
@click.option("--password", prompt=True, hide_input=True, default="", help="Asked for when not given.")
@click.pass_context
def wifi(ctx: click.Context, address: str, ssid: str, password: str) -> None:
    """Give the device Wi-Fi credentials (over the encrypted session only)."""
    _run(_with_device(ctx, address, lambda d: d.wifi(ssid, password)))
    out.print(f"Wi-Fi {shown(repr(ssid))} stored; the device connects now")


@click.command("time")
@click.argument("address")
@click.pass_context
def time_(ctx: click.Context, address: str) -> None:
    """Set the device's clock from this computer's (TLS needs a correct clock)."""
    clock = _run(_with_device(ctx, address, lambda d: d.set_time()))
    out.print(f"device clock set to {shown(clock)}")


@click.command()
@click.argument("address")
@click.option("--lines", default=20, show_default=True)
@json_option
@click.pass_context
def log(ctx: click.Context, address: str, lines: int, as_json: bool) -> None:
    """Show the device's recent log lines (redacted: no tokens, headers or bodies)."""
    data = _run(_with_device(ctx, address, lambda d: d.log(lines)))
    _emit(as_json, data, lambda ls: [out.print(plain(line), markup=False, highlight=False) for line in ls])


@click.command()
@click.argument("address")
@click.pass_context
def unpair(ctx: click.Context, address: str) -> None:
    """Remove this app's pairing from the device and forget its key here."""
    _run(_with_device(ctx, address, lambda d: d.unpair()))
    out.print(f"unpaired from {address}")


@click.command()
@click.argument("address")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def reset(ctx: click.Context, address: str, yes: bool) -> None:
    """Return the device to factory state (rules, pairings, tokens, Wi-Fi are erased)."""
    if not yes:
        click.confirm(f"erase everything on {address}?", abort=True)
    _run(_with_device(ctx, address, lambda d: d.reset()))
    out.print("the device is back in factory state; onboard it again with its setup code")


@click.group()
def pairing() -> None:
    """Let a second app pair with a device (admin)."""


@pairing.command("open")
@click.argument("address")
@click.option("--seconds", default=300, show_default=True)
@click.pass_context
def pairing_open(ctx: click.Context, address: str, seconds: int) -> None:
    """Open a pairing window; prints a one-time setup code for the other app."""
    code = _run(_with_device(ctx, address, lambda d: d.open_pairing(seconds)))
    out.print(f"one-time setup code (valid {seconds} s): [bold]{shown(code)}[/bold]")


@pairing.command("admin")
@click.argument("address")
@click.argument("app_id")
@click.pass_context
def pairing_admin(ctx: click.Context, address: str, app_id: str) -> None:
    """Hand the admin role to the paired app APP_ID; this app becomes a guest."""
    _run(_with_device(ctx, address, lambda d: d.hand_over_admin(app_id)))
    out.print(f"{shown(app_id)} is the admin now; this app is a guest")


@click.group()
def trust() -> None:
    """Add, list and remove CA roots in a device's trust store (for TlsWithCACheck)."""


@trust.command("add")
@click.argument("address")
@click.argument("cert", type=click.Path(exists=True, dir_okay=False))
@click.pass_context
def trust_add(ctx: click.Context, address: str, cert: str) -> None:
    """Add the CA certificate in CERT (PEM or DER) to the device's trust store."""
    from keyhook.devpki import to_der

    ders = to_der(open(cert, "rb").read())
    if len(ders) != 1:
        raise KeyhookError(f"{cert} holds {len(ders)} certificates; give one CA certificate per call")
    root_id = _run(_with_device(ctx, address, lambda d: d.trust_add(ders[0])))
    out.print(f"added root {shown(root_id)}")


@trust.command("list")
@click.argument("address")
@json_option
@click.pass_context
def trust_list(ctx: click.Context, address: str, as_json: bool) -> None:
    """List the roots in the device's trust store (ids; `added` marks the ones an app added)."""
    roots = _run(_with_device(ctx, address, lambda d: d.trust_list()))
    _emit(as_json, roots, lambda rs: [out.print(f"{shown(r['id'])}{'  (added)' if r.get('added') else ''}") for r in rs])


@trust.command("rm")
@click.argument("address")
@click.argument("root_id")
@click.pass_context
def trust_rm(ctx: click.Context, address: str, root_id: str) -> None:
    """Remove the root ROOT_ID (from `keyhook trust list`) from the device's trust store."""
    if not _run(_with_device(ctx, address, lambda d: d.trust_remove(root_id))):
        raise KeyhookError(f"the device has no root {root_id!r}", hint="`keyhook trust list ADDRESS` shows the ids")
    out.print(f"removed root {shown(root_id)}")


COMMANDS = [scan, onboard, info, rules, trigger, wifi, time_, log, unpair, reset, pairing, trust]
