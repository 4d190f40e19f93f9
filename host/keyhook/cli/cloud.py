"""`keyhook cloud ...` (serve, admin, login), `keyhook integration enable`, `keyhook webhooks ...`.

Thin over `keyhook.cloud`: the service (`api`, `serve`, `admin`) and the app's side (`appside`).
Every command takes `--json`.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import click
import platformdirs
from rich.console import Console
from rich.table import Table

from keyhook import KeyhookError
from keyhook.text import shown
from keyhook.cli._options import ADDRESS

# What the cloud, an integrator or a device says is printed as inert text (keyhook.text.shown)
out = Console(emoji=False)
err = Console(stderr=True, emoji=False)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")


def _emit(as_json: bool, data: Any, human=None) -> None:
    if as_json or human is None:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    else:
        human(data)


def _default_db() -> str:
    return str(Path(platformdirs.user_data_dir("keyhook")) / "cloud.db")


db_option = click.option("--db", "db_url", envvar="KEYHOOK_CLOUD_DB", default=None, metavar="URL",
                         help="SQLite file or postgresql://... URL (default: keyhook's data dir cloud.db; "
                              "env KEYHOOK_CLOUD_DB).")


def _db(db_url: str | None):
    from keyhook.cloud.db import Database
    url = db_url or _default_db()
    if "://" not in url:
        Path(url).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return Database(url)


@click.group()
def cloud() -> None:
    """The keyhook cloud: serve the integrator API, administer it, sign the app in."""


@cloud.command()
@db_option
@click.option("--bind", default="127.0.0.1:8443", show_default=True, help="HOST:PORT to listen on.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True), help="Certificate chain (PEM).")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True), help="Its private key (PEM).")
@click.option("--workers", default=1, show_default=True, help="Worker processes (they share only the database).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(db_url, bind, tls_cert, tls_key, workers, log_level) -> None:
    """Serve the integrator API (/3rd-party/api), the app API and OAuth 2.0 over HTTPS."""
    from keyhook.cloud import serve as serve_mod
    from keyhook.cloud.tlscert import make_self_signed, spki_pin
    host, port = serve_mod.parse_bind(bind)
    db = _db(db_url)
    db.check_migrated()
    if bool(tls_cert) != bool(tls_key):
        raise KeyhookError("--tls-cert and --tls-key go together", hint="give both, or neither for a self-made certificate")
    if not tls_cert:
        from keyhook.session.keystore import config_dir
        where = Path(db.url.removeprefix("sqlite:///")).parent if db.is_sqlite else config_dir()
        tls_cert, tls_key = (str(p) for p in make_self_signed(where / "cloud-tls"))
    pin = spki_pin(Path(tls_cert).read_bytes())
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"keyhook cloud on https://{shown}:{port} (database {db.safe_url()})")
    click.echo(f"integrator API: https://{shown}:{port}/3rd-party/api")
    click.echo(f"certificate: {tls_cert}")
    click.echo(f"pin: sha256/{pin}", nl=True)
    db.dispose()
    serve_mod.serve(db.url, host, port, tls_cert, tls_key, workers=workers, log_level=log_level)


@cloud.command()
@click.argument("url")
@click.option("--pin", help="The server key pin that `keyhook cloud serve` printed (sha256/...).")
@click.option("--cafile", type=click.Path(dir_okay=False, exists=True), help="Trust this CA (PEM) for the cloud.")
@json_option
def login(url, pin, cafile, as_json) -> None:
    """Sign this app in to the cloud at URL (OAuth 2.0 device authorization grant, RFC 8628)."""
    from keyhook.cloud.appside import CloudApp

    def show(grant):
        # Shown on stderr even with --json: the user must read it to sign in.
        click.echo(f"open {grant['verification_uri']} and enter the code {grant['user_code']}", err=True)
        click.echo(f"(or open {grant['verification_uri_complete']})", err=True)
    result = CloudApp().login(url, pin=pin, cafile=cafile, show=show)
    _emit(as_json, result, lambda d: out.print(f"signed in to {d['url']}"))


@cloud.group()
@db_option
@click.pass_context
def admin(ctx, db_url) -> None:
    """Owner-side administration of the cloud's database (scriptable, --json)."""
    ctx.obj = dict(ctx.obj or {}, db_url=db_url)


def _admin_db(ctx):
    return _db(ctx.find_object(dict).get("db_url"))


@admin.command()
@json_option
@click.pass_context
def migrate(ctx, as_json) -> None:
    """Create or upgrade the schema (Alembic) and the app's OAuth client."""
    from keyhook.cloud import admin as a
    _emit(as_json, a.migrate(_admin_db(ctx)), lambda d: out.print(f"{d['database']}: schema at revision {d['revision']}"))


@admin.group()
def user() -> None:
    """Users (system owners)."""


@user.command("add")
@click.argument("email")
@click.option("--password", envvar="KEYHOOK_CLOUD_PASSWORD", help="Sign-in password (env KEYHOOK_CLOUD_PASSWORD).")
@json_option
@click.pass_context
def user_add(ctx, email, password, as_json) -> None:
    """Add a user who can sign in on the login pages."""
    from keyhook.cloud import admin as a
    _emit(as_json, a.user_add(_admin_db(ctx), email, password), lambda d: out.print(f"user {d['email']} added"))


@admin.group()
def system() -> None:
    """Systems (an owner's installation)."""


@system.command("add")
@click.argument("name")
@click.option("--owner", required=True, help="The owner's e-mail.")
@click.option("--quota", default=5, show_default=True, help="Webhooks per OAuth client on this system.")
@json_option
@click.pass_context
def system_add(ctx, name, owner, quota, as_json) -> None:
    """Add a system owned by --owner."""
    from keyhook.cloud import admin as a
    _emit(as_json, a.system_add(_admin_db(ctx), owner, name, quota), lambda d: out.print(f"system {d['systemId']}"))


@admin.group()
def client() -> None:
    """OAuth clients (integrations such as Home Assistant)."""


@client.command("add")
@click.argument("name")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True, help="Allowed redirect URI (repeatable).")
@click.option("--public", is_flag=True, help="A public client (no secret; PKCE required).")
@json_option
@click.pass_context
def client_add(ctx, name, redirect_uris, public, as_json) -> None:
    """Register an OAuth client; prints client_id and client_secret (shown once)."""
    from keyhook.cloud import admin as a
    _emit(as_json, a.client_add(_admin_db(ctx), name, list(redirect_uris), public=public),
          lambda d: out.print(f"client_id {d['client_id']}\nclient_secret {d['client_secret']}"))


@admin.group()
def token() -> None:
    """Tokens for scripts and tests."""


@token.command("issue")
@click.option("--user", "email", required=True, help="The user's e-mail.")
@click.option("--client", "client_id", required=True, help="The OAuth client_id.")
@json_option
@click.pass_context
def token_issue(ctx, email, client_id, as_json) -> None:
    """Issue an access and refresh token pair, as if the user had consented."""
    from keyhook.cloud import admin as a
    _emit(as_json, a.token_issue(_admin_db(ctx), email, client_id),
          lambda d: out.print(f"access_token {d['access_token']}\nrefresh_token {d['refresh_token']}"))


@admin.group()
def quota() -> None:
    """Webhook quotas."""


@quota.command("set")
@click.argument("system_id")
@click.argument("count", type=int)
@click.option("--client", "client_id", help="Only for this OAuth client (default: every client of the system).")
@json_option
@click.pass_context
def quota_set(ctx, system_id, count, client_id, as_json) -> None:
    """Set how many webhooks each client may register on SYSTEM_ID."""
    from keyhook.cloud import admin as a
    _emit(as_json, a.quota_set(_admin_db(ctx), system_id, count, client_id), lambda d: out.print("quota set"))


# ---------------------------------------------------------------------- the app's side
@click.group()
def integration() -> None:
    """The smart-home integration of a system (the app's side)."""


@integration.command("enable")
@click.argument("system")
@click.option("--device", "addresses", multiple=True, type=ADDRESS, metavar="ADDRESS",
              help="Also give this paired device the system key (repeatable; needs the device's admin app).")
@json_option
@click.pass_context
def integration_enable(ctx, system, addresses, as_json) -> None:
    """Make the system's integration key pair and give the cloud its public half (the private
    half sealed under the system key); with --device, give those devices the system key."""
    from keyhook.cloud.appside import CloudApp
    app = CloudApp()
    result = app.enable(system)
    if addresses:
        try:
            result["devices"] = _push_keys(ctx, app, result["systemId"], addresses, replace=False)
        except KeyhookError as e:
            sid = result["systemId"]
            err = KeyhookError(f"the integration of {sid} is enabled, but a device did not get the system key: {e}",
                               hint=(e.hint + "; then " if e.hint else "") +
                               f"`keyhook system key push {sid} --device ADDRESS`")
            err.code = getattr(e, "code", None)  # the device's error code, for --json
            raise err from e

    def human(d):
        out.print(f"integration enabled for {shown(d['systemId'])} (key {shown(d['keyId'])})")
        for r in d.get("devices", []):
            _say_pushed(r)
    _emit(as_json, result, human)


# ---------------------------------------------------------------------- the system key on devices
def _push_keys(ctx, app, system, addresses, *, replace: bool) -> list[dict]:
    from keyhook.cli._options import radio_for, waiting
    radio = radio_for(ctx)
    done = []
    for address in addresses:
        with waiting(f"giving {address} the system key (up to 20 s per step, longer while it erases free flash)"):
            done.append(asyncio.run(app.push_system_key(system, address, replace=replace, radio=radio)))
    return done


def _say_pushed(r: dict) -> None:
    what = "now holds" if r["changed"] else "already held"
    out.print(f"{shown(r['device'])} {what} the system key of {shown(r['systemId'])} (check {shown(r['keyCheck'])})")


@click.group("system")
def system_group() -> None:
    """The system key: the secret that a system's devices share with the app."""


@system_group.group("key")
def system_key() -> None:
    """Give a device the system key, show which one it holds, remove it (admin app)."""


@system_key.command("push")
@click.argument("system")
@click.option("--device", "addresses", multiple=True, required=True, type=ADDRESS, metavar="ADDRESS",
              help="The paired device (repeatable).")
@click.option("--replace", is_flag=True, help="Replace the key of another system that the device holds.")
@json_option
@click.pass_context
def system_key_push(ctx, system, addresses, replace, as_json) -> None:
    """Give each --device the system key of SYSTEM (id or name) over the secure channel; the
    device proves it holds it with a key check value, and never sends the key back."""
    from keyhook.cloud.appside import CloudApp
    rows = _push_keys(ctx, CloudApp(), system, addresses, replace=replace)
    _emit(as_json, rows, lambda rs: [_say_pushed(r) for r in rs])


@system_key.command("show")
@click.argument("address", type=ADDRESS)
@json_option
@click.pass_context
def system_key_show(ctx, address, as_json) -> None:
    """Which system's key the device at ADDRESS holds, and whether it is this app's."""
    from keyhook.cli._options import radio_for, waiting
    from keyhook.cloud.appside import CloudApp
    radio = radio_for(ctx)
    with waiting(f"asking {address} (up to 20 s)"):
        r = asyncio.run(CloudApp().device_system_key(address, radio=radio))

    def human(r):
        if r["systemId"] is None:
            out.print(f"{address} holds no system key (`keyhook system key push SYSTEM --device {address}`)")
            return
        same = {True: "the same key as this app's", False: "NOT this app's key for that system",
                None: "this app has no key for that system"}[r["matches"]]
        out.print(f"{address} holds the system key of {shown(r['systemId'])} (check {shown(r['keyCheck'])}): {same}")
    _emit(as_json, r, human)


@system_key.command("rm")
@click.argument("address", type=ADDRESS)
@json_option
@click.pass_context
def system_key_rm(ctx, address, as_json) -> None:
    """Remove the system key from the device at ADDRESS (its former blocks are overwritten)."""
    from keyhook.cli._options import radio_for, waiting
    from keyhook.session.device import DeviceClient

    async def go(radio):
        async with DeviceClient(address, radio=radio) as dev:
            return await dev.remove_system_key()
    radio = radio_for(ctx)
    with waiting(f"removing the system key from {address} (up to 20 s, longer while it erases free flash)"):
        removed = asyncio.run(go(radio))
    _emit(as_json, {"device": address, "removed": removed},
          lambda r: out.print(f"removed the system key from {address}" if removed else f"{address} held no system key"))


@click.group()
def webhooks() -> None:
    """Integrators' webhooks from the cloud: pull, approve, reject, assign to a device."""


@webhooks.command("pull")
@click.option("--system", help="Only this system (id or name).")
@json_option
def webhooks_pull(system, as_json) -> None:
    """Fetch and open the sealed definitions; show what waits for approval."""
    from keyhook.cloud.appside import CloudApp
    rows = CloudApp().pull(system)

    def human(rows):
        if not rows:
            out.print("no webhooks yet")
            return
        t = Table("id", "system", "integration", "function", "target", "waiting")
        for r in rows:
            t.add_row(*(shown(v) for v in (r["functionWebhookId"], r["systemName"], r["integrationName"],
                                            r["functionName"], r["target"] or "", r["modificationState"] or "")))
        out.print(t)
    _emit(as_json, rows, human)


@webhooks.command("approve")
@click.argument("webhook_id")
@json_option
def webhooks_approve(webhook_id, as_json) -> None:
    """Approve the update or deletion that waits on WEBHOOK_ID."""
    from keyhook.cloud.appside import CloudApp
    _emit(as_json, CloudApp().decide(webhook_id, True), lambda d: out.print(f"{shown(webhook_id)}: {shown(d['result'])}"))


@webhooks.command("reject")
@click.argument("webhook_id")
@json_option
def webhooks_reject(webhook_id, as_json) -> None:
    """Reject the change that waits on WEBHOOK_ID (the current definition stays)."""
    from keyhook.cloud.appside import CloudApp
    _emit(as_json, CloudApp().decide(webhook_id, False), lambda d: out.print(f"{shown(webhook_id)}: {shown(d['result'])}"))


@webhooks.command("assign")
@click.argument("webhook_id")
@click.option("--device", "address", required=True, help="The paired device's address.")
@click.option("--events", "events", multiple=True,
              help="Event that fires it: trigger, button:NAME, finger:USER[:N] (repeatable; default trigger).")
@json_option
@click.pass_context
def webhooks_assign(ctx, webhook_id, address, events, as_json) -> None:
    """Push WEBHOOK_ID's definition to a device over the secure channel (and, first, the system
    key of its system when the device does not hold it)."""
    from keyhook.cloud.appside import CloudApp
    radio = (ctx.find_root().obj or {}).get("radio")
    result = asyncio.run(CloudApp().assign(webhook_id, address, events=list(events) or None, radio=radio))

    def human(d):
        if d["systemKey"]["changed"]:
            _say_pushed(d["systemKey"])
        out.print(f"{shown(webhook_id)} stored on {address} as {shown(', '.join(d['stored']))}")
    _emit(as_json, result, human)


COMMANDS = [cloud, integration, webhooks, system_group]
