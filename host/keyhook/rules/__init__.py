"""Webhook rules on the host: load, validate and warn, before anything is pushed.

A rule is one webhook object (the webhook definition format, keyed by its `functionName`) plus
the device events that fire it. What a rule is has one definition: the device's validator
(`firmware/kh/store/schema.py`), which this module runs under the MicroPython unix port
(`keyhook.rules.devicecheck`), so that `rules push`, `fire` and the device accept and refuse the same
rules with the same message. This module adds what only the host can say: warnings about what
the device accepts but is probably wrong.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from keyhook import KeyhookError

# the names the rule format defines (docs/rule-format.md); the device's validator checks them
LEVELS = ("TlsWithCACheck", "TlsPinnedCertificate", "TlsAllowSelfSigned", "AllowHttp")
AUTH_TYPES = ("None", "OAuth2IssuedAccessToken", "OAuth2IssuedRefreshToken")
INSECURE_LEVELS = ("TlsAllowSelfSigned", "AllowHttp")
LOCAL_NETWORKS = [ipaddress.ip_network(n) for n in (
    "127.0.0.0/8", "169.254.0.0/16", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
    "::1/128", "fe80::/10", "fc00::/7")]


class RuleError(KeyhookError):
    """A rule that the device would refuse; the message names the rule and the field."""


@dataclass
class Warning_:
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.message}"


# A rules file far beyond what any device holds is refused before it is parsed (the device's
# own size check names the rule for anything smaller).
MAX_FILE_BYTES = 16 << 20


def read_json(path: str | Path) -> Any:
    """A JSON file as integrators write it: UTF-8 with or without a BOM, or UTF-16/UTF-32 (with
    a BOM or not, as RFC 8259 section 8.1 readers detect it). Raises RuleError."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_FILE_BYTES:
            raise RuleError(f"{path}: {p.stat().st_size} bytes is far more than a device holds",
                            hint="a rule may be at most 7500 bytes of JSON; give the rules file")
        raw = p.read_bytes()
    except FileNotFoundError:
        raise RuleError(f"cannot read {path}: no such file", hint="give the path of a webhook JSON file") from None
    except OSError as e:
        raise RuleError(f"{path}: cannot read it ({e.strerror})", hint="give the path of a webhook JSON file") from None
    return parse_json(raw, str(path))


def parse_json(raw: bytes | str, source: str = "standard input") -> Any:
    """JSON from bytes (UTF-8 with or without a BOM, UTF-16, UTF-32, detected) or text; `source`
    names it in errors. Raises RuleError."""
    if len(raw) > MAX_FILE_BYTES * 4:
        raise RuleError(f"{source}: {len(raw)} bytes is far more than a device holds",
                        hint="a rule may be at most 7500 bytes of JSON; give the rules file")
    try:
        # bytes: the encoding and a BOM are detected; NaN and Infinity are not JSON (RFC 8259
        # section 6), and no device reads them
        data = json.loads(raw, parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise RuleError(f"{source}: not UTF-8, UTF-16 or UTF-32 text",
                        hint="save the file as UTF-8 JSON") from None
    except json.JSONDecodeError as e:
        raise RuleError(f"{source}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
                        hint="fix the JSON; `python -m json.tool FILE` shows where") from None
    except _Constant as e:
        raise RuleError(f"{source}: {e.args[0]} is not a JSON number (RFC 8259 section 6)",
                        hint="write a number, or the value as a string in quotes") from None
    except RecursionError:
        raise RuleError(f"{source}: arrays or objects nested too deeply to read",
                        hint="a webhook nests a few levels; fix the file") from None
    except ValueError as e:  # Python's limit on the digits of an integer (CVE-2020-10735)
        what = "a number with too many digits" if "digits" in str(e) else "a value it cannot read"
        raise RuleError(f"{source}: {what}", hint="no field of a webhook takes a number that long; fix the file") from None
    if _lone_surrogate(data):
        raise RuleError(f"{source}: a string holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape "
                        "without its pair), which is not text",
                        hint="escape a character outside the BMP as a pair (\\ud83d\\udeaa) or write it as UTF-8")
    return data


class _Constant(Exception):
    pass


def _no_constant(name: str) -> Any:
    raise _Constant(name)


def _lone_surrogate(data: Any) -> bool:
    """True when a string (or key) in `data` holds an unpaired surrogate (json joins pairs)."""
    todo = [data]
    while todo:
        x = todo.pop()
        if isinstance(x, str):
            if any("\ud800" <= c <= "\udfff" for c in x):
                return True
        elif isinstance(x, dict):
            todo += x.keys()
            todo += x.values()
        elif isinstance(x, list):
            todo += x
    return False


def load_rules(path: str | Path) -> list[dict]:
    """Read one webhook object or a JSON list of them."""
    return _as_list(read_json(path), str(path))


def parse_rules(text: bytes | str, source: str = "standard input") -> list[dict]:
    """One webhook object or a JSON list of them, from `text` (`source` names it in errors)."""
    return _as_list(parse_json(text, source), source)


def _as_list(data: Any, source: str) -> list[dict]:
    rules = data if isinstance(data, list) else [data]
    if not rules:
        raise RuleError(f"{source}: the list is empty", hint="put at least one webhook object in it")
    return rules


def pin_to_der(pin: str) -> bytes:
    """A pinned certificate given as PEM or as base64 DER, as DER bytes (validated)."""
    text = pin.strip()
    if "-----BEGIN" in text:
        text = text.replace("\\n", "\n")  # "\n" written out inside the JSON string: a line break
        try:
            return x509.load_pem_x509_certificate(text.encode()).public_bytes(Encoding.DER)
        except ValueError:
            raise ValueError("the PEM block is not a readable certificate (damaged base64 or not X.509)") from None
    try:
        der = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
        x509.load_der_x509_certificate(der)
    except (ValueError, TypeError) as e:
        raise ValueError(f"neither PEM nor base64 DER of a certificate ({e})") from None
    return der


def is_private_host(host: str) -> bool | None:
    """True/False for an IP literal (loopback, link-local or private), None for a name."""
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    # The device's rule (docs/design.md): loopback, link-local, RFC 1918, RFC 4193. Python's
    # `is_private` also counts documentation and reserved ranges, so it is not used.
    return any(ip in net for net in LOCAL_NETWORKS if net.version == ip.version)


MANAGED_HEADERS = ("host", "content-length", "transfer-encoding", "connection")


def _hint(code: str) -> str:
    if code == "too_many":
        return "split the file, or delete rules on the device first (`keyhook rules rm`)"
    return "fix the field named; the device refuses this rule the same way (its own validator said so)"


def normalise_all(webhooks: list[dict], events=None) -> tuple[list[dict], list[Warning_]]:
    """Validate rules with the device's own validator (`kh.store.rules`, run under the unix
    port) exactly as a `rules.put` would; return them as the device stores them, and warnings.

    `events` (if given) replaces every rule's events. Raises RuleError with the device's
    message (it names the rule and the field) for anything the device would refuse, including
    too many rules and rules too large for one message.
    """
    from keyhook.rules.devicecheck import ask_device

    if not isinstance(webhooks, list) or not webhooks:
        raise RuleError("give one webhook object or a non-empty list of them")
    sent = copy.deepcopy(webhooks)
    if events:
        for w in sent:
            if isinstance(w, dict):
                w["events"] = list(events)
    answer = ask_device(put=sent)["put"]
    if "error" in answer:
        e = answer["error"]
        raise RuleError(e["message"], hint=_hint(e["code"]))
    rules = answer["rules"]
    warnings: list[Warning_] = []
    for r in rules:
        warnings += rule_warnings(r)
    return rules, warnings


def normalise(webhook: dict, events: tuple[str, ...] | list[str] | None = None) -> tuple[dict, list[Warning_]]:
    """One rule: `normalise_all([webhook])`."""
    rules, warnings = normalise_all([webhook], events)
    return rules[0], warnings


def rule_warnings(rule: dict, now: dt.datetime | None = None) -> list[Warning_]:
    """What the device accepts but is probably wrong, for one rule the device validated."""
    name = rule["functionName"]
    d = rule["definition"]
    out: list[Warning_] = []

    def warn(text: str) -> None:
        out.append(Warning_(name, text))

    parts = urlsplit(d["url"])
    level = d.get("securityLevel", "TlsWithCACheck")
    if level in INSECURE_LEVELS:
        private = is_private_host(parts.hostname or "")
        if d.get("allowInsecureRemote") is True:
            warn(f"{level} with allowInsecureRemote: the device sends this request to ANY address "
                 "without a verified certificate")
        elif private is False:
            warn(f"{level} to a public address: the device will refuse it (insecure_remote) unless "
                 "allowInsecureRemote is true")
        else:
            warn(f"{level} is not recommended: anyone on the network can read or change this request; "
                 "use TlsPinnedCertificate")
    t = d.get("timeout")
    if isinstance(t, int) and t < 100:
        warn(f"timeout is {t} ms: did you mean {t} seconds? (timeout is in milliseconds; "
             f"{t * 1000} would be {t} s)")
    exp = rule.get("expiresAt")
    if isinstance(exp, str):
        try:
            when = dt.datetime.fromisoformat(exp.replace("Z", "+00:00"))
            if when.tzinfo is None:
                when = when.replace(tzinfo=dt.timezone.utc)
            if when < (now or dt.datetime.now(dt.timezone.utc)):
                warn(f"expiresAt {exp} is in the past: the definition has expired")
        except ValueError:
            warn("expiresAt is not an RFC 3339 date-time such as 2027-01-01T00:00:00Z")
    auth = (d.get("authentication") or {}).get("apiAuthenticationType", "None")
    body = d.get("body")
    for k in d.get("additionalHttpHeaders") or {}:
        low = k.lower()
        if low in MANAGED_HEADERS:
            warn(f"header {k} is written by the device itself; the one given is dropped")
        elif low == "authorization" and auth != "None":
            warn(f"header {k} is replaced by the {auth} bearer token")
        elif low == "content-type" and isinstance(body, dict) and body.get("contentType"):
            warn(f"header {k} gives way to body.contentType")
    if body is not None and d["method"].upper() in ("GET", "HEAD"):
        warn(f"a body on {d['method'].upper()}: many servers ignore or refuse it; use Post or Put")
    if auth == "OAuth2IssuedRefreshToken":
        ep = d["authentication"].get("tokenEndpoint") or d["authentication"].get("tokenEndoint") or ""
        if urlsplit(ep).scheme == "http":
            warn("the token endpoint is plain http: the refresh token travels unencrypted")
    return out


PROBE_CODES = ("tls_unsupported", "tls_unusable_certificate")


def probe_warnings(rules: list[dict], timeout: float = 60) -> list[Warning_]:
    """Try a TLS handshake with each https server of `rules` (request URL and token endpoint)
    exactly as the device offers it (its own TLS code under the unix port; no HTTP byte is
    sent), and warn about the servers it cannot talk to: TLS 1.3 only, X25519, ChaCha20 or DHE
    only, chains it cannot parse. Other failures (down, unreachable from here) are not warned
    about: the device may see another network."""
    from keyhook.rules.devicecheck import ask_device

    # (origin, level, pin) -> rule names; a token endpoint on another origin is verified with
    # TlsWithCACheck (docs/design.md), on the request's own origin with the rule's level
    targets: dict[tuple, list[str]] = {}
    for r in rules:
        d = r["definition"]
        auth = d.get("authentication") or {}
        level = d.get("securityLevel", "TlsWithCACheck")
        pin = d.get("pinnedCertificate") if level == "TlsPinnedCertificate" else None
        own = urlsplit(d.get("url", ""))._replace(path="/", query="", fragment="").geturl()
        for url in (d.get("url"), auth.get("tokenEndpoint") or auth.get("tokenEndoint")):
            if isinstance(url, str) and urlsplit(url).scheme.lower() == "https":
                origin = urlsplit(url)._replace(path="/", query="", fragment="").geturl()
                key = (origin, level, pin) if origin == own else (origin, "TlsWithCACheck", None)
                targets.setdefault(key, []).append(r["functionName"])
    if not targets:
        return []
    answers = ask_device(probe=[list(k) for k in targets], timeout=timeout)["probe"]
    out = []
    for ((origin, _level, _pin), names), a in zip(targets.items(), answers):
        if a and a.get("code") in PROBE_CODES:
            for name in dict.fromkeys(names):
                out.append(Warning_(name, f"{origin} cannot be reached by a device ({a['code']}): {a['message']}"))
    return out
