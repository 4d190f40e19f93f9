"""`keyhook pin URL`: print the candidate pins a server presents, as PEM."""

from __future__ import annotations

import json

import click

from keyhook.rules import PROBE_CODES
from keyhook.rules.devicecheck import ask_device
from keyhook.rules.pin import fetch_chain


@click.command()
@click.argument("url")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of {role, subject, pem}.")
def pin(url: str, as_json: bool) -> None:
    """Fetch the chain URL's server presents and print each certificate as a candidate pin.

    Pin the leaf for a self-signed device certificate; pin your own CA (root or intermediate)
    to survive leaf renewals. The chain is NOT verified here: compare it with what you expect.
    """
    chain = fetch_chain(url)
    # what the device makes of the same server and certificates (its own TLS code, unix port)
    answer = ask_device(probe=[url], certs=[c.der for c in chain])
    probe = answer["probe"][0]
    if probe and probe.get("code") in PROBE_CODES:
        click.echo(f"warning: a device cannot talk to this server ({probe['code']}): {probe['message']}", err=True)
    unusable = answer.get("certs") or [None] * len(chain)
    if as_json:
        click.echo(json.dumps([{"role": c.role, "subject": c.cert.subject.rfc4514_string(), "pem": c.pem,
                                "device_can_use": why is None}
                               for c, why in zip(chain, unusable)], indent=2))
        return
    for c, why in zip(chain, unusable):
        click.echo(f"# {c.role}: {c.cert.subject.rfc4514_string()}")
        click.echo(f"#   issuer: {c.cert.issuer.rfc4514_string()}; valid until {c.cert.not_valid_after_utc:%Y-%m-%d}")
        if why:
            click.echo(f"#   NOT usable as a pin: the device's TLS library cannot parse it (mbedTLS: {why})")
        click.echo(c.pem)
    if chain and chain[-1].role != "root":
        click.echo("# the server does not send its root; pin the intermediate, or the root from your own files")
