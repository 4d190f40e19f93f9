"""Webhook rules on the host: load, validate, normalise and warn, before anything is pushed.

A rule is one webhook object of `shared/spec/webhook-definition.md` (keyed by its
`functionName`) plus the device events that fire it. The device validates again; this module
exists so that an integrator hears about a mistake at push time, with the field named.
"""

from __future__ import annotations

import base64
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

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH", "HEAD")
LEVELS = ("TlsWithCACheck", "TlsPinnedCertificate", "TlsAllowSelfSigned", "AllowHttp")
INSECURE_LEVELS = ("TlsAllowSelfSigned", "AllowHttp")
AUTH_TYPES = ("None", "OAuth2IssuedAccessToken", "OAuth2IssuedRefreshToken")
DEFAULT_EVENTS = ("trigger",)
EVENT_RE = re.compile(r"^(trigger|button:[A-Za-z0-9_-]{1,16}|finger:[A-Za-z0-9_-]{1,32}(:[0-9]{1,2})?)$")
MAX_TIMEOUT_MS = 60_000
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


def load_rules(path: str | Path) -> list[dict]:
    """Read one webhook object or a JSON list of them."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RuleError(f"{path}: no such file", hint="give the path of a webhook JSON file") from None
    except json.JSONDecodeError as e:
        raise RuleError(f"{path}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})",
                        hint="fix the JSON; `python -m json.tool FILE` shows where") from None
    rules = data if isinstance(data, list) else [data]
    if not rules:
        raise RuleError(f"{path}: the list is empty", hint="put at least one webhook object in it")
    return rules


def pin_to_der(pin: str) -> bytes:
    """A pinned certificate given as PEM or as base64 DER, as DER bytes (validated)."""
    text = pin.strip()
    if "-----BEGIN" in text:
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
    # The device's rule (DESIGN.md): loopback, link-local, RFC 1918, RFC 4193. Python's
    # `is_private` also counts documentation and reserved ranges, so it is not used.
    return any(ip in net for net in LOCAL_NETWORKS if net.version == ip.version)


def normalise(webhook: dict, events: tuple[str, ...] | list[str] | None = None) -> tuple[dict, list[Warning_]]:
    """Validate one webhook object; return the form that is pushed, and warnings.

    Raises RuleError naming the field for anything the device would refuse.
    """
    if not isinstance(webhook, dict):
        raise RuleError("a rule must be a JSON object (a webhook definition)")
    name = webhook.get("functionName")
    if not isinstance(name, str) or not name.strip() or len(name) > 64:
        raise RuleError("functionName: missing, empty or longer than 64 characters",
                        hint="every rule needs a functionName; the device keys rules by it")
    label = repr(name)

    def fail(field: str, what: str, hint: str | None = None) -> RuleError:
        return RuleError(f"rule {label}: {field}: {what}", hint=hint)

    d = webhook.get("definition")
    if not isinstance(d, dict):
        raise fail("definition", "missing or not an object")
    warnings: list[Warning_] = []
    out_def: dict[str, Any] = {}

    method = d.get("method")
    if not isinstance(method, str) or method.upper() not in METHODS:
        raise fail("definition.method", f"{method!r} is not one of {', '.join(m.title() for m in METHODS)}")
    out_def["method"] = method.upper()

    url = d.get("url")
    if not isinstance(url, str):
        raise fail("definition.url", "missing")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise fail("definition.url", f"malformed ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise fail("definition.url", f"{url!r} is not an http:// or https:// URL with a host")
    if any(c.isspace() for c in url) or port == 0:
        raise fail("definition.url", "spaces and port 0 are not allowed", hint="percent-encode spaces as %20")
    out_def["url"] = url

    # Integrators' clients send explicit nulls for unused fields: null means "not given".
    level = d.get("securityLevel") if d.get("securityLevel") is not None else "TlsWithCACheck"
    if level not in LEVELS:
        raise fail("definition.securityLevel", f"{level!r} is not one of {', '.join(LEVELS)}")
    out_def["securityLevel"] = level
    if (parts.scheme == "http") != (level == "AllowHttp"):
        raise fail("definition.url", f"an {parts.scheme}:// URL does not go with level {level}",
                   hint="use https:// with the TLS levels, http:// only with AllowHttp")
    if level == "TlsPinnedCertificate":
        pin = d.get("pinnedCertificate")
        if not isinstance(pin, str) or not pin.strip():
            raise fail("definition.pinnedCertificate", "missing (TlsPinnedCertificate needs it)",
                       hint="`keyhook pin URL` prints the server's candidate pins")
        try:
            out_def["pinnedCertificate"] = base64.b64encode(pin_to_der(pin)).decode()
        except ValueError as e:
            raise fail("definition.pinnedCertificate", str(e)) from None
    if level in INSECURE_LEVELS:
        private = is_private_host(parts.hostname)
        if d.get("allowInsecureRemote") is True:
            out_def["allowInsecureRemote"] = True
            warnings.append(Warning_(name, f"{level} with allowInsecureRemote: the device sends this "
                                           "request to ANY address without a verified certificate"))
        elif private is False:
            warnings.append(Warning_(name, f"{level} to a public address: the device will refuse it "
                                           "(insecure_remote) unless allowInsecureRemote is true"))
        else:
            warnings.append(Warning_(name, f"{level} is not recommended: anyone on the network can read "
                                           "or change this request; use TlsPinnedCertificate"))

    body = d.get("body")
    if body is not None:
        if not isinstance(body, dict) or "content" not in body:
            raise fail("definition.body", "must be null or an object with contentType and content")
        content = body["content"]
        if not isinstance(content, str):
            content = json.dumps(content, separators=(",", ":"))
        out_def["body"] = {"contentType": str(body.get("contentType") or "application/octet-stream"),
                           "content": content}
    headers = d.get("additionalHttpHeaders") or {}
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise fail("definition.additionalHttpHeaders", "must be an object of string values")
    for k, v in headers.items():
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", k) or "\r" in v or "\n" in v:
            raise fail("definition.additionalHttpHeaders", f"header {k!r} has a forbidden character")
    if headers:
        out_def["additionalHttpHeaders"] = dict(headers)
    timeout = d.get("timeout") if d.get("timeout") is not None else 3000
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 1 <= timeout <= MAX_TIMEOUT_MS:
        raise fail("definition.timeout", f"{timeout!r} is not a number of milliseconds from 1 to {MAX_TIMEOUT_MS}")
    out_def["timeout"] = timeout

    auth = d.get("authentication") or {"apiAuthenticationType": "None"}
    if not isinstance(auth, dict):
        raise fail("definition.authentication", "must be an object")
    kind = auth.get("apiAuthenticationType", "None")
    if kind not in AUTH_TYPES:
        raise fail("definition.authentication.apiAuthenticationType", f"{kind!r} is not one of {', '.join(AUTH_TYPES)}")
    out_auth: dict[str, Any] = {"apiAuthenticationType": kind}
    if kind == "OAuth2IssuedAccessToken":
        if not isinstance(auth.get("accessToken"), str) or not auth["accessToken"]:
            raise fail("definition.authentication.accessToken", "missing")
        out_auth["accessToken"] = auth["accessToken"]
    elif kind == "OAuth2IssuedRefreshToken":
        endpoint = auth.get("tokenEndpoint") or auth.get("tokenEndoint")  # a client's spelling, in the wild
        if not isinstance(auth.get("refreshToken"), str) or not auth["refreshToken"]:
            raise fail("definition.authentication.refreshToken", "missing")
        if not isinstance(endpoint, str) or urlsplit(endpoint).scheme not in ("http", "https"):
            raise fail("definition.authentication.tokenEndpoint", "missing or not an http(s) URL")
        out_auth["refreshToken"] = auth["refreshToken"]
        out_auth["tokenEndpoint"] = endpoint
        for key in ("clientId", "scope"):
            if isinstance(auth.get(key), str):
                out_auth[key] = auth[key]
        if isinstance(auth.get("expiresIn"), int):
            out_auth["expiresIn"] = auth["expiresIn"]
        if urlsplit(endpoint).scheme == "http":
            warnings.append(Warning_(name, "the token endpoint is plain http: the refresh token travels unencrypted"))
    out_def["authentication"] = out_auth

    chosen = list(events or webhook.get("events") or DEFAULT_EVENTS)
    for ev in chosen:
        if not isinstance(ev, str) or not EVENT_RE.match(ev):
            raise fail("events", f"{ev!r} is not an event (trigger, button:NAME, finger:USER[:N])")
    rule = {k: webhook[k] for k in ("integrationName", "locationName", "functionName",
                                    "functionWebhookId", "expiresAt") if webhook.get(k) is not None}
    rule["definition"] = out_def
    rule["events"] = chosen
    return rule, warnings


def normalise_all(webhooks: list[dict], events=None) -> tuple[list[dict], list[Warning_]]:
    """Validate a list of rules; two rules with one functionName are refused."""
    rules, warnings, seen = [], [], set()
    for wh in webhooks:
        rule, w = normalise(wh, events)
        if rule["functionName"] in seen:
            raise RuleError(f"rule {rule['functionName']!r} appears twice", hint="functionName must be unique")
        seen.add(rule["functionName"])
        rules.append(rule)
        warnings += w
    return rules, warnings
