"""`make demo`: sample webhook definitions fired by the device firmware, shown in a table.

Everything runs on this machine: a throw-away PKI, recording HTTPS/HTTP receivers and an OAuth
token server on 127.0.0.1, and the firmware's own request engine under the MicroPython unix
port (the same code that runs on the ESP32). One rule per security level and per
authentication mode fires, plus rules the device must refuse; the table shows what the device
reported and what each server actually received (header names only: values are secrets).

By default the rules travel to a simulated device over BLE (`keyhook.lab.demo_ble`): onboarding
with the setup code, one atomic push, a trigger per rule. `--engine` fires them with the engine
alone, as `keyhook fire` does. The steps are separate functions:

    with Stage() as stage:
        rules = sample_rules(stage)
        results = fire_over_ble(stage, rules, console)   # or fire_on_unix_port(stage, rules)
        print_table(stage, rules, results)
"""

from __future__ import annotations

import json
from typing import Callable

from rich.console import Console
from rich.table import Table

from keyhook.lab.receiver import Receiver
from keyhook.lab.stage import Rule, Stage, start_servers  # noqa: F401 (re-exported)


def sample_rules(stage: Stage) -> list[Rule]:
    """One rule per security level and per authentication mode, and some that must be refused."""
    pki, sv = stage.pki, stage.servers
    https, selfsigned, plain, oauth = sv["https"], sv["self-signed"], sv["http"], sv["oauth"]
    rules: list[Rule] = []

    def add(title: str, server: str, url_of: Callable[[str], str], expect: str = "accepted", **d) -> None:
        marker = f"r{len(rules) + 1}"
        definition = {"method": "Post", "url": url_of(marker), "timeout": 3000,
                      "body": {"contentType": "application/json", "content": {"event": "button", "rule": marker}},
                      "authentication": {"apiAuthenticationType": "None"}}
        definition.update(d)
        rules.append(Rule(title, {"integrationName": "keyhook demo", "locationName": "Lab",
                                  "functionName": title, "definition": definition}, expect, server, marker))

    def on(rx: Receiver, host: str = "localhost") -> Callable[[str], str]:
        return lambda m: rx.url(f"/hook/{m}", host=host)

    add("CA-checked HTTPS", "https", on(https), securityLevel="TlsWithCACheck",
        additionalHttpHeaders={"X-Api-Key": "demo-key"})
    add("CA-checked HTTPS, again", "https", on(https), securityLevel="TlsWithCACheck",
        additionalHttpHeaders={"X-Api-Key": "demo-key"})
    add("Pinned intermediate CA", "https", on(https), securityLevel="TlsPinnedCertificate",
        pinnedCertificate=pki.intermediate.pem)
    add("Pinned leaf (self-signed device)", "self-signed", on(selfsigned), securityLevel="TlsPinnedCertificate",
        pinnedCertificate=pki.self_signed.pem)
    add("Self-signed allowed (LAN)", "self-signed", on(selfsigned), securityLevel="TlsAllowSelfSigned")
    add("Plain HTTP (LAN)", "http", on(plain, "127.0.0.1"), securityLevel="AllowHttp", method="Put")
    add("OAuth access token", "https", on(https), securityLevel="TlsWithCACheck",
        authentication={"apiAuthenticationType": "OAuth2IssuedAccessToken", "accessToken": "demo-access-token"})
    add("OAuth refresh token (rotating)", "oauth", lambda m: oauth.resource_url, securityLevel="TlsPinnedCertificate",
        pinnedCertificate=pki.intermediate.pem,
        authentication={"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "demo-refresh-0",
                        "tokenEndpoint": oauth.token_url, "clientId": "keyhook-demo"})
    # what the device must refuse, without sending a byte of the request
    add("Wrong pin (sibling leaf)", "https", on(https), "tls_pin_mismatch", securityLevel="TlsPinnedCertificate",
        pinnedCertificate=pki.sibling.pem)
    add("CA check vs self-signed server", "self-signed", on(selfsigned), "tls_untrusted", securityLevel="TlsWithCACheck")
    # A public (TEST-NET-3) literal: the device refuses it before it connects, so no packet is sent.
    add("Plain HTTP to a public address", "", lambda m: f"http://203.0.113.7/hook/{m}", "insecure_remote",
        securityLevel="AllowHttp")
    add("Malformed pin", "", on(https), "invalid_definition", securityLevel="TlsPinnedCertificate",
        pinnedCertificate="-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----")
    return rules


def fire_on_unix_port(stage: Stage, rules: list[Rule]) -> list[dict]:
    """Fire every rule in order through the firmware engine (one MicroPython process, one pool)."""
    from keyhook.cli.fire import run_fire

    trust = [str(stage.pki.root.cert_path)]
    return run_fire([r.webhook for r in rules], trust=trust, state=stage.state_dir, public_roots=False)


def received_by(stage: Stage, rule: Rule) -> str:
    """What the rule's server received, with header values left out."""
    if not rule.server:
        return "-"
    srv = stage.servers[rule.server]
    if rule.server == "oauth":
        reqs = srv.requests  # TokenServer.Recorded
        if not reqs:
            return "nothing"
        parts = []
        for r in reqs:
            what = "token grant" if r.form is not None else "webhook"
            auth = " + Bearer" if r.authorization else ""
            parts.append(f"{r.method} {r.path} ({what}{auth}) -> {r.status}")
        return "\n".join(parts)
    srv.settle(quiet_s=0.05, timeout_s=1)
    mine = [r for r in srv.requests if f"/{rule.marker}" in r.target]
    if not mine:
        return "nothing (0 bytes of the request)"
    r = mine[0]
    names = ", ".join(k for k, _ in r.headers if k.lower() not in ("host", "user-agent", "content-length"))
    return f"{r.method} {r.target} [{names}] {len(r.body)} B body"


def print_table(stage: Stage, rules: list[Rule], results: list[dict], console: Console | None = None) -> bool:
    """Render the results; returns True if every rule behaved as expected."""
    console = console or Console()
    table = Table(title="keyhook demo: the device firmware fires sample rules at local servers", show_lines=True)
    for col, kw in (("rule", {"max_width": 24}), ("level / auth", {}), ("device reported", {"max_width": 44}),
                    ("sent", {}), ("ms", {"justify": "right"}), ("server received (header names only)", {}), ("ok", {})):
        table.add_column(col, overflow="fold", **kw)
    all_ok = True
    for rule, res in zip(rules, results):
        d = rule.definition
        auth = d.get("authentication", {}).get("apiAuthenticationType", "None")
        got = "accepted" if res.get("status") is not None else res.get("error")
        ok = got == rule.expect
        all_ok &= ok
        reported = (f"HTTP {res['status']}" if res.get("status") is not None
                    else f"[red]{res['error']}[/red]\n{res.get('message', '')}")
        if res.get("reused"):
            reported += " (kept-alive)"
        if res.get("retried_401"):
            reported += " (401, refreshed)"
        table.add_row(rule.title, f"{d.get('securityLevel')}\n[dim]{auth}[/dim]", reported, "yes" if res.get("sent") else "no",
                      str(res.get("elapsed_ms")), received_by(stage, rule),
                      "[green]yes[/green]" if ok else f"[red]NO, expected {rule.expect}[/red]")
    console.print(table)
    state = sorted(p.name for p in stage.state_dir.iterdir()) if stage.state_dir else []
    if state:
        console.print(f"engine state after the run: {', '.join(state)} "
                      "(token cache and rotated refresh token, stored atomically)")
    return all_ok


def main(argv: list[str] | None = None) -> int:
    """Default: the whole device over BLE. `--engine`: the engine alone, as `keyhook fire` runs it."""
    import sys

    args = sys.argv[1:] if argv is None else argv
    engine_only = "--engine" in args
    console = Console()
    if not console.is_terminal and console.width < 160:
        console = Console(width=160)
    with Stage() as stage:
        rules = sample_rules(stage)
        if engine_only:
            console.print(f"firing {len(rules)} rules through firmware/kh/engine under the MicroPython unix port ...")
            results = fire_on_unix_port(stage, rules)
        else:
            from keyhook.lab.demo_ble import fire_over_ble

            console.print(f"{len(rules)} sample rules go to a simulated device (the real firmware, radio simulated) "
                          "over BLE ...")
            results = fire_over_ble(stage, rules, console)
        ok = print_table(stage, rules, results, console)
    if not ok:
        console.print("[red]some rules did not behave as expected[/red]")
        return 1
    console.print("[green]every rule behaved as the level table says[/green]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
