"""The BLE commands: scan, onboard, and everything a paired app asks of a device.

Each command is a thin wrapper over `keyhook.session.device.DeviceClient`; `--json` prints one JSON
document for scripts. `--radio PATH` (global) talks to a simulated device instead of the adapter;
without it, a simulated device running on the default virtual radio is found there. Every
command says on stderr which radio it uses and what it waits for; `--timeout` bounds the wait.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn
from rich.table import Table

from keyhook import KeyhookError, ble
from keyhook import rules as rules_mod
from keyhook.cli._options import ADDRESS, Interrupted, json_option, radio_for, timeout_option, waiting
from keyhook.session.device import TRIGGER_TIMEOUT_S, DeviceClient, onboard as onboard_device
from keyhook.text import plain, shown  # what a device or a rule says, shown as inert text

out = Console(emoji=False, soft_wrap=True)  # no :ab: emoji codes in addresses, no wrapping in pipes
err = Console(stderr=True, emoji=False)


def _radio(ctx: click.Context) -> str | None:
    obj = ctx.find_root().obj
    if "chosen_radio" not in obj:
        obj["chosen_radio"] = radio_for(ctx)
    return obj["chosen_radio"]


def _date(unix: Any) -> str:
    """Seconds since 1970 as an ISO 8601 UTC date; other values as they are."""
    if isinstance(unix, (int, float)) and not isinstance(unix, bool) and unix > 0:
        return datetime.datetime.fromtimestamp(unix, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(unix)


def _emit(as_json: bool, data: Any, human) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        human(data)


def _run(coro):
    return asyncio.run(coro)


def _with_device(ctx: click.Context, address: str, fn, timeout: float = 20.0, what: str | None = None):
    """Connect, open a session, run `fn(dev)`; say what it waits for while it does."""
    radio = _radio(ctx)

    async def go():
        async with DeviceClient(address, radio=radio, timeout=timeout) as dev:
            return await fn(dev)
    with waiting(what or f"connecting to {address} (up to {timeout:g} s; --timeout)"):
        return _run(go())


@click.command()
@timeout_option(5.0, "Seconds to listen.")
@json_option
@click.pass_context
def scan(ctx: click.Context, timeout: float, as_json: bool) -> None:
    """List keyhook devices in range (name, address, paired, signal)."""
    radio = _radio(ctx)
    with waiting(f"listening for keyhook devices for {timeout:g} s (--timeout)"):
        found = _run(ble.scan(radio=radio, timeout=timeout))
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
@click.argument("address", type=ADDRESS)
@click.option("--code", required=True, help="The device's 8-digit setup code (serial console or label).")
@timeout_option()
@json_option
@click.pass_context
def onboard(ctx: click.Context, address: str, code: str, timeout: float, as_json: bool) -> None:
    """Pair with a device using its setup code (SPAKE2: the code never crosses the radio)."""
    code = code.replace("-", "").replace(" ", "")
    if len(code) != 8 or not code.isdigit():
        raise KeyhookError("the setup code must be 8 digits", hint="read it from the device's serial console or label")
    radio = _radio(ctx)
    with waiting(f"pairing with {address} (up to {timeout:g} s per step; --timeout)"):
        info = _run(onboard_device(address, code, radio=radio, timeout=timeout))

    def human(i):
        if i.get("already_paired"):
            out.print(f"already paired with [bold]{shown(i.get('name'))}[/bold] ({shown(i.get('device_id'))}); nothing to do "
                      f"(to pair again: `keyhook unpair {address}`, then onboard)")
        else:
            out.print(f"paired with [bold]{shown(i.get('name'))}[/bold] ({shown(i.get('device_id'))}), firmware {shown(i.get('firmware'))}")
    _emit(as_json, info, human)


@click.command()
@click.argument("address", type=ADDRESS)
@timeout_option()
@json_option
@click.pass_context
def info(ctx: click.Context, address: str, timeout: float, as_json: bool) -> None:
    """Show a paired device's name, firmware, memory, clock, Wi-Fi and rule count."""
    data = _with_device(ctx, address, lambda d: d.info(), timeout)

    def human(i):
        t = Table(show_header=False)
        for k in ("name", "device_id", "firmware", "clock", "wifi", "rules", "pairings"):
            v = i.get(k)
            t.add_row(k, _date(v) if k == "clock" and v else shown(json.dumps(v) if isinstance(v, dict) else v))
        heap = i.get("heap")
        if isinstance(heap, dict):
            t.add_row("heap", "{:.1f} KiB, {:.1f} KiB free, largest free block {:.1f} KiB, lowest free since "
                      "boot {:.1f} KiB".format(*(float(heap.get(k) or 0) / 1024 for k in
                                                   ("size", "free", "largest_free", "lowest_free"))))
        else:
            t.add_row("mem_free", str(i.get("mem_free")))
        out.print(t)
    _emit(as_json, data, human)


@click.group()
def rules() -> None:
    """Push, list and remove the webhook rules on a device."""


@rules.command("push")
@click.argument("address", type=ADDRESS)
@click.argument("file", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@click.option("--event", "events", multiple=True,
              help="Event that fires the rules: trigger, button:NAME, finger:USER[:N] (default: the file's, else trigger).")
@click.option("--check-pins/--no-check-pins", default=True, show_default=True,
              help="Compare each pinned certificate with what its server presents.")
@click.option("--probe/--no-probe", default=True, show_default=True,
              help="Try a TLS handshake with each https server, offering what the device offers.")
@timeout_option()
@json_option
@click.pass_context
def rules_push(ctx: click.Context, address: str, file: str, events: tuple[str, ...], check_pins: bool,
               probe: bool, timeout: float, as_json: bool) -> None:
    """Validate FILE (one webhook object or a list; - reads standard input) with the device's own
    validator, warn about what is probably wrong, and store it on the device atomically."""
    loaded = rules_mod.parse_rules(sys.stdin.buffer.read()) if file == "-" else rules_mod.load_rules(file)
    normalised, warnings = rules_mod.normalise_all(loaded, list(events) or None)
    if probe:
        warnings += rules_mod.probe_warnings(normalised)
    if check_pins:
        warnings += _pin_warnings(normalised)
    for w in warnings:
        err.print(f"[yellow]warning:[/yellow] {shown(w)}")
    radio = _radio(ctx)
    client = DeviceClient(address, radio=radio, timeout=timeout)

    async def go(bar, task):
        async with client as dev:
            return await dev.put_rules(
                normalised, progress=lambda done, total: bar.update(task, completed=done, total=total))
    try:
        with waiting(f"connecting to {address} (up to {timeout:g} s; --timeout)"), \
                Progress(TextColumn("pushing rules"), BarColumn(), DownloadColumn(), console=err,
                         transient=True, disable=as_json or not err.is_terminal) as bar:
            stored = _run(go(bar, bar.add_task("push", total=None)))
    except KeyboardInterrupt:
        if client.commit_sent:
            raise Interrupted("interrupted; the device may hold the new rules",
                              hint=f"see what it holds: keyhook rules list {address}") from None
        raise Interrupted("interrupted before the device committed; it keeps the rules it had",
                          hint="push again") from None
    _emit(as_json, {"stored": stored, "warnings": [str(w) for w in warnings]},
          lambda r: out.print(f"stored {len(r['stored'])} rule(s): {shown(', '.join(map(str, r['stored'])))}"))


def _pin_warnings(rules: list[dict]) -> list[rules_mod.Warning_]:
    from keyhook.rules import pin_to_der
    from keyhook.rules.pin import fetch_chain, pin_matches
    found = []
    for r in rules:
        d = r["definition"]
        if d["securityLevel"] != "TlsPinnedCertificate":
            continue
        try:
            role = pin_matches(pin_to_der(d["pinnedCertificate"]), fetch_chain(d["url"], timeout=3))
        except KeyhookError as e:
            found.append(rules_mod.Warning_(r["functionName"], f"could not check the pin: {e}"))
            continue
        if role is None:
            found.append(rules_mod.Warning_(r["functionName"], "the pinned certificate is not in the chain the server "
                                                               "presents now: the device will refuse it "
                                                               "(`keyhook pin URL` shows the candidates)"))
    return found


@rules.command("list")
@click.argument("address", type=ADDRESS)
@timeout_option()
@json_option
@click.pass_context
def rules_list(ctx: click.Context, address: str, timeout: float, as_json: bool) -> None:
    """List the rules on a device (metadata only; secrets never leave it)."""
    data = _with_device(ctx, address, lambda d: d.list_rules(), timeout)

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
@click.argument("address", type=ADDRESS)
@click.argument("function")
@timeout_option()
@json_option
@click.pass_context
def rules_rm(ctx: click.Context, address: str, function: str, timeout: float, as_json: bool) -> None:
    """Remove the rule FUNCTION from a device."""
    deleted = _with_device(ctx, address, lambda d: d.delete_rule(function), timeout)
    if not deleted:
        raise KeyhookError(f"the device has no rule {function!r}", hint="`keyhook rules list ADDRESS` shows its rules")
    _emit(as_json, {"removed": function}, lambda r: out.print(f"removed {shown(repr(function))}"))


@click.command()
@click.argument("address", type=ADDRESS)
@click.argument("function")
@click.option("--no-wait", is_flag=True, help="Queue the fire and return at once.")
@timeout_option(TRIGGER_TIMEOUT_S, "Seconds to wait for the connection, then for the fire's result "
                                   "(the device retries for up to 15 s).")
@json_option
@click.pass_context
def trigger(ctx: click.Context, address: str, function: str, no_wait: bool, timeout: float, as_json: bool) -> None:
    """Fire the rule FUNCTION now, as the device would on its event. Exit 1 if no response came back."""
    what = (f"connecting to {address}, then waiting for {function!r} to fire "
            f"(with the device's retries; up to {timeout:g} s; --timeout)")
    result = _with_device(ctx, address, lambda d: d.trigger(function, wait=not no_wait, timeout=timeout),
                          timeout, what)

    def human(r):
        if r.get("queued") and no_wait:
            out.print("queued")
        elif r.get("queued"):
            out.print(f"{shown(function)}: still queued or retrying; is the device on Wi-Fi (`keyhook info`)? "
                      "`keyhook log` shows how it ends")
        elif r.get("error"):
            out.print(f"[red]{shown(function)}: {shown(r['error'])}[/red] {shown(r.get('message', ''))} (sent: {shown(r.get('sent'))})")
        else:
            out.print(f"{shown(function)}: HTTP {shown(r.get('status'))} in {shown(r.get('elapsed_ms'))} ms")
    _emit(as_json, result, human)
    if not no_wait and result.get("status") is None:
        ctx.exit(1)


@click.command()
@click.argument("address", type=ADDRESS)
@click.option("--ssid", required=True)
@click.option("--password", prompt=True, hide_input=True, default="", help="Asked for when not given.")
@timeout_option()
@json_option
@click.pass_context
def wifi(ctx: click.Context, address: str, ssid: str, password: str, timeout: float, as_json: bool) -> None:
    """Give the device Wi-Fi credentials (over the encrypted session only)."""
    _with_device(ctx, address, lambda d: d.wifi(ssid, password), timeout)
    _emit(as_json, {"ssid": ssid, "stored": True}, lambda r: out.print(f"Wi-Fi {shown(repr(ssid))} stored; the device connects now"))


@click.command("time")
@click.argument("address", type=ADDRESS)
@timeout_option()
@json_option
@click.pass_context
def time_(ctx: click.Context, address: str, timeout: float, as_json: bool) -> None:
    """Set the device's clock from this computer's (TLS needs a correct clock)."""
    clock = _with_device(ctx, address, lambda d: d.set_time(), timeout)
    _emit(as_json, {"clock": clock, "date": _date(clock)}, lambda r: out.print(f"device clock set to {r['date']}"))


@click.command()
@click.argument("address", type=ADDRESS)
@click.option("--lines", default=20, show_default=True)
@timeout_option()
@json_option
@click.pass_context
def log(ctx: click.Context, address: str, lines: int, timeout: float, as_json: bool) -> None:
    """Show the device's recent log lines (redacted: no tokens, headers or bodies)."""
    from keyhook.session.devicelog import parse_line

    data = _with_device(ctx, address, lambda d: d.log(lines), timeout)
    _emit(as_json, [parse_line(line) for line in data],
          lambda _: [out.print(plain(line), markup=False, highlight=False) for line in data])


@click.command()
@click.argument("address", type=ADDRESS)
@timeout_option()
@json_option
@click.pass_context
def unpair(ctx: click.Context, address: str, timeout: float, as_json: bool) -> None:
    """Remove this app's pairing from the device and forget its key here."""
    _with_device(ctx, address, lambda d: d.unpair(), timeout)
    _emit(as_json, {"unpaired": address}, lambda r: out.print(f"unpaired from {address}"))


@click.command()
@click.argument("address", type=ADDRESS)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@timeout_option()
@json_option
@click.pass_context
def reset(ctx: click.Context, address: str, yes: bool, timeout: float, as_json: bool) -> None:
    """Return the device to factory state (rules, pairings, tokens, Wi-Fi are erased)."""
    if not yes:
        click.confirm(f"erase everything on {address}?", abort=True)
    _with_device(ctx, address, lambda d: d.reset(), timeout)
    _emit(as_json, {"reset": address},
          lambda r: out.print("the device is back in factory state; onboard it again with its setup code"))


@click.group()
def pairing() -> None:
    """Let a second app pair with a device (admin)."""


@pairing.command("open")
@click.argument("address", type=ADDRESS)
@click.option("--seconds", default=300, show_default=True)
@timeout_option()
@json_option
@click.pass_context
def pairing_open(ctx: click.Context, address: str, seconds: int, timeout: float, as_json: bool) -> None:
    """Open a pairing window; prints a one-time setup code for the other app."""
    code = _with_device(ctx, address, lambda d: d.open_pairing(seconds), timeout)
    _emit(as_json, {"code": code, "seconds": seconds},
          lambda r: out.print(f"one-time setup code (valid {seconds} s): [bold]{shown(code)}[/bold]"))


@pairing.command("list")
@click.argument("address", type=ADDRESS)
@timeout_option()
@json_option
@click.pass_context
def pairing_list(ctx: click.Context, address: str, timeout: float, as_json: bool) -> None:
    """List the apps paired with the device (a guest sees only itself); marks this app."""
    data = _with_device(ctx, address, lambda d: d.request("pairing.list"), timeout)
    apps = [{"app_id": a, "this_app": a == data.get("you")} for a in data.get("apps") or []]
    _emit(as_json, apps, lambda rows: [out.print(shown(r["app_id"]) + ("  (this app)" if r["this_app"] else ""))
                                      for r in rows])


@pairing.command("rm")
@click.argument("address", type=ADDRESS)
@click.argument("app_id")
@timeout_option()
@json_option
@click.pass_context
def pairing_rm(ctx: click.Context, address: str, app_id: str, timeout: float, as_json: bool) -> None:
    """Remove the pairing of app APP_ID (admin; `keyhook pairing list` shows the ids)."""
    data = _with_device(ctx, address, lambda d: d.request("pairing.remove", app_id=app_id), timeout)
    if not data.get("removed"):
        raise KeyhookError(f"the device has no pairing for {app_id!r}", hint=f"`keyhook pairing list {address}` shows them")
    _emit(as_json, {"removed": app_id}, lambda r: out.print(f"removed the pairing of {shown(app_id)}"))


@pairing.command("admin")
@click.argument("address", type=ADDRESS)
@click.argument("app_id")
@timeout_option()
@json_option
@click.pass_context
def pairing_admin(ctx: click.Context, address: str, app_id: str, timeout: float, as_json: bool) -> None:
    """Hand the admin role to the paired app APP_ID; this app becomes a guest."""
    _with_device(ctx, address, lambda d: d.hand_over_admin(app_id), timeout)
    _emit(as_json, {"admin": app_id}, lambda r: out.print(f"{shown(app_id)} is the admin now; this app is a guest"))


@click.group()
def trust() -> None:
    """Add, list and remove CA roots in a device's trust store (for TlsWithCACheck)."""


def _roots_dir():
    from keyhook.session.keystore import config_dir
    return config_dir() / "roots"


@trust.command("add")
@click.argument("address", type=ADDRESS)
@click.argument("cert", type=click.Path(exists=True, dir_okay=False, allow_dash=True))
@timeout_option()
@json_option
@click.pass_context
def trust_add(ctx: click.Context, address: str, cert: str, timeout: float, as_json: bool) -> None:
    """Add the CA certificate in CERT (PEM or DER; - reads standard input) to the device's trust store."""
    from keyhook.lab.devpki import to_der
    from keyhook.rules.truststore import describe_roots, remember_root

    data = sys.stdin.buffer.read() if cert == "-" else open(cert, "rb").read()
    try:
        ders = to_der(data)
    except ValueError as e:
        raise KeyhookError(f"{cert if cert != '-' else 'standard input'} holds no readable certificate ({e})",
                           hint="give a PEM or DER CA certificate") from None
    if len(ders) != 1:
        raise KeyhookError(f"{cert} holds {len(ders)} certificates; give one CA certificate per call")
    root_id = _with_device(ctx, address, lambda d: d.trust_add(ders[0]), timeout)
    remember_root(ders[0], _roots_dir())
    [root] = describe_roots([{"id": root_id, "added": True}], _roots_dir())
    _emit(as_json, root, lambda r: out.print(
        plain(f"added root {r['id']} ({r['subject']}, expires {r['expires']}); remove it with "
              f"`keyhook trust rm {address} {r['id']}`"), markup=False, highlight=False))


@trust.command("list")
@click.argument("address", type=ADDRESS)
@timeout_option()
@json_option
@click.pass_context
def trust_list(ctx: click.Context, address: str, timeout: float, as_json: bool) -> None:
    """List the roots in the device's trust store: id, subject, expiry (`added`: an app added it)."""
    from keyhook.rules.truststore import describe_roots

    roots = describe_roots(_with_device(ctx, address, lambda d: d.trust_list(), timeout), _roots_dir())

    def human(rs):
        t = Table("id", "subject", "expires", "added")
        for r in rs:
            t.add_row(shown(r["id"]), shown(r["subject"] or "(unknown to this host)"), shown(r["expires"] or ""),
                      "yes" if r.get("added") else "")
        out.print(t)
    _emit(as_json, roots, human)


@trust.command("rm")
@click.argument("address", type=ADDRESS)
@click.argument("root_id")
@timeout_option()
@json_option
@click.pass_context
def trust_rm(ctx: click.Context, address: str, root_id: str, timeout: float, as_json: bool) -> None:
    """Remove the root ROOT_ID (from `keyhook trust list`) from the device's trust store."""
    if not _with_device(ctx, address, lambda d: d.trust_remove(root_id), timeout):
        raise KeyhookError(f"the device has no root {root_id!r}", hint="`keyhook trust list ADDRESS` shows the ids")
    _emit(as_json, {"removed": root_id}, lambda r: out.print(f"removed root {shown(root_id)}"))


COMMANDS = [scan, onboard, info, rules, trigger, wifi, time_, log, unpair, reset, pairing, trust]
