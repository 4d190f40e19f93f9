"""`keyhook fire FILE`: fire one webhook definition with the device's own engine.

The firmware's request engine (`firmware/kh/engine/fire.py`) runs unchanged under the
MicroPython unix port (`boards/unix/fire.py`), with a trust store made of the public roots a
device ships with plus any `--trust` CA. One JSON object is printed on stdout; the exit status
is 0 if and only if a response was received (any HTTP status), 1 if the fire failed or was
refused, 2 for bad input.
"""

from __future__ import annotations

import ipaddress
import json
import sys
import tempfile
from pathlib import Path

import click

from keyhook import KeyhookError
from keyhook.boards import mp
from keyhook.paths import UNIX_BOARD
from keyhook.rules.truststore import default_roots, load_certificates, write_trust_store

FIRE_SCRIPT = UNIX_BOARD / "fire.py"


def _read_definition(path: Path) -> dict:
    from keyhook.rules import parse_json, read_json

    # UTF-8 with or without a BOM, UTF-16, UTF-32; `-` is standard input
    data = parse_json(sys.stdin.buffer.read()) if str(path) == "-" else read_json(path)
    if not isinstance(data, dict):
        raise KeyhookError(f"{path} holds a JSON {type(data).__name__}, not an object",
                           hint="give a webhook object, or just its \"definition\" object")
    return data


def _parse_resolve(entries: tuple[str, ...]) -> list[str]:
    out = []
    for e in entries:
        name, sep, addr = e.rpartition(":") if e.count(":") == 1 else e.partition(":")
        if not sep or not name or not addr:
            raise KeyhookError(f"--resolve {e!r} is not NAME:ADDRESS", hint="for example --resolve api.local:192.168.1.20")
        try:
            ipaddress.ip_address(addr.strip("[]"))
        except ValueError as err:
            raise KeyhookError(f"--resolve {e!r}: {addr!r} is not an IP address",
                               hint="give a literal IPv4 or IPv6 address after the colon") from err
        out.append(f"{name.lower()}:{addr.strip('[]')}")
    return out


def prepare_trust_store(trust: tuple[str, ...] | list[str], outdir: Path, public_roots: bool = True) -> dict:
    """The device trust store for a fire: public roots (optional) plus each `--trust` file."""
    ders: list[bytes] = default_roots() if public_roots else []
    added: list[tuple[str, bytes]] = []
    for t in trust:
        added += [(str(t), d) for d in load_certificates(t)]
    if added:
        # refused where it enters: a root the device's TLS library cannot load would only
        # show up later as an untrusted chain
        from keyhook.rules.devicecheck import ask_device

        why = ask_device(certs=[d for _, d in added])["certs"]
        for (name, der), reason in zip(added, why):
            if reason:
                raise KeyhookError(f"{name}: the device's TLS library cannot use this certificate "
                                   f"(mbedTLS: {reason})",
                                   hint="it has an RSA-PSS signature or a critical extension such as name "
                                        "constraints; use a CA certificate without them")
    ders += [d for _, d in added]
    return write_trust_store(ders, outdir)


def run_fire(definition: dict | Path | list[dict], *, trust: tuple[str, ...] | list[str] = (),
             state: Path | None = None, resolve: tuple[str, ...] | list[str] = (), public_roots: bool = True,
             timeout: float = 300, repeat: int = 1) -> list[dict]:
    """Fire definitions (a dict, a JSON file, or a list of dicts fired in order on one keep-alive
    pool) through the firmware engine; return one result per fire.

    Raises KeyhookError if the interpreter could not run the fire at all.
    """
    answers = _parse_resolve(tuple(resolve))
    if isinstance(definition, Path):
        definition = _read_definition(definition)
    definitions = definition if isinstance(definition, list) else [definition]
    if state is not None:
        # the engine runs in a temporary working directory: a relative DIR would put the rotated
        # refresh token there, and lose it
        state = Path(state).expanduser().resolve()
    size = 0
    with tempfile.TemporaryDirectory(prefix="keyhook-fire-") as tmp:
        tmpdir = Path(tmp)
        args = []
        for i, d in enumerate(definitions):
            p = tmpdir / f"definition{i}.json"
            text = json.dumps(d)  # ensure_ascii: the device's reader joins surrogate pairs
            size += len(text)
            p.write_text(text)
            args.append(str(p))
        trust_dir = tmpdir / "trust"
        prepare_trust_store(trust, trust_dir, public_roots)
        args += ["--trust-dir", str(trust_dir)]
        if state is not None:
            # It will hold refresh and access tokens in plain text: the owner only.
            state.mkdir(mode=0o700, parents=True, exist_ok=True)
            state.chmod(0o700)
            args += ["--state", str(state)]
        for a in answers:
            args += ["--resolve", a]
        if repeat > 1:
            args += ["--repeat", str(repeat)]
        # heap enough to read any file the host accepts; the device's validator then refuses
        # what a device could not hold, with its own message
        proc = mp.run_micropython(FIRE_SCRIPT, args, timeout=timeout, cwd=tmpdir,
                                  heapsize=max(2 << 20, 12 * size) if size > 65536 else None)
    results = []
    # split on "\n" only: str.splitlines() also splits inside a JSON string at U+2028, U+0085...
    for line in proc.stdout.decode(errors="replace").split("\n"):
        if line.startswith("{"):
            try:
                results.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    if len(results) < len(definitions) * repeat:
        tail = [ln for ln in proc.stderr.decode(errors="replace").strip().split("\n") if ln][-5:] or \
            proc.stdout.decode(errors="replace").strip().split("\n")[-5:]
        raise KeyhookError("the firmware engine stopped without a result:\n  " + "\n  ".join(tail),
                           hint="this is a bug in keyhook; please report it with the definition (tokens removed)")
    return results


@click.command()
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, allow_dash=True))
@click.option("--trust", "trust", multiple=True, type=click.Path(dir_okay=False), metavar="CA.pem",
              help="Add the CA certificate(s) in this PEM or DER file to the trust store (repeatable).")
@click.option("--state", type=click.Path(path_type=Path, file_okay=False), default=None, metavar="DIR",
              help="Keep the device state (OAuth token cache, CA hints) in DIR between runs.")
@click.option("--resolve", "resolve", multiple=True, metavar="NAME:ADDR",
              help="Answer NAME with ADDR instead of asking DNS (like curl --resolve; repeatable).")
@click.option("--no-public-roots", is_flag=True, help="Trust only the --trust CAs, not the public roots.")
def fire(file: Path, trust: tuple[str, ...], state: Path | None, resolve: tuple[str, ...],
         no_public_roots: bool) -> None:
    """Fire the webhook definition in FILE once, as the device would, and print the result.

    FILE holds a full webhook object or just its "definition" (- reads standard input). The request runs through the
    device firmware's own engine (MicroPython), with the same checks for every security level:
    use it to test a definition and its pin before you push it. Prints one JSON object with
    sent, status, error, message and elapsed_ms; exits 0 if and only if a response came back.
    """
    definition = _read_definition(file)
    inner = definition.get("definition", definition) if isinstance(definition, dict) else {}
    auth = (inner.get("authentication") or {}) if isinstance(inner, dict) else {}
    if auth.get("apiAuthenticationType") == "OAuth2IssuedRefreshToken" and state is None:
        click.echo("warning: without --state DIR a rotated refresh token is lost when this run ends, and the "
                   "token endpoint may already have retired the one in FILE", err=True)
    [result] = run_fire(definition, trust=trust, state=state, resolve=resolve,
                        public_roots=not no_public_roots)[-1:]
    first = ("sent", "status", "error", "message", "elapsed_ms")
    ordered = {k: result[k] for k in first if k in result} | {k: v for k, v in result.items() if k not in first}
    click.echo(json.dumps(ordered))
    if result.get("status") is None:
        sys.exit(1)  # click's Exit would be swallowed in keyhook's non-standalone main
