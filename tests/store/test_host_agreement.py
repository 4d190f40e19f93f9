"""The device's rule validation agrees with the host's (host/keyhook/rules/__init__.py): whatever the
host would push, the device stores, but for the cases in DEVICE_STRICTER; what the host
refuses, the device refuses too (so a rule pushed by another app meets the same checks).
Since issue 11 the host runs the device's validator itself (keyhook.rules.devicecheck), so this
guards the host's path around it (copies, defaults, events); one interpreter run per case."""

from __future__ import annotations

import copy
import json
import random

import pytest

from keyhook import rules as host_rules
from storehelp import make_rule, write_json

VALIDATE = """
import json
from kh.store.schema import validate
from kh.store.errors import StoreError
out = []
for r in json.load(open("cases.json")):
    try:
        validate(r)
        out.append(None)
    except StoreError as e:
        out.append(e.message)
print(json.dumps(out))
"""

MUTATIONS = [
    lambda r: r["definition"].update(method=random.choice(["get", "POST", "Patch", "FETCH", "", 5])),
    lambda r: r["definition"].update(url=random.choice([
        "https://h.example/x", "http://10.0.0.2:8080/x", "https://[fe80::1]/x", "ftp://h/x", "https://",
        "https://h:0/x", "https://h:65535/", "https://h.example/a b", "HTTPS://H.EXAMPLE/", "https://u@h/"])),
    lambda r: r["definition"].update(securityLevel=random.choice(
        ["TlsWithCACheck", "TlsAllowSelfSigned", "AllowHttp", "tlswithcacheck", "None"])),
    lambda r: r["definition"].update(timeout=random.choice([1, 3000, 60000, 60001, 0, -5, "3000", True, 2.5])),
    lambda r: r["definition"].update(additionalHttpHeaders=random.choice([
        {}, {"X-A": "b"}, {"X A": "b"}, {"X-A": "b\r\nc"}, {"X-A": 5}, {"Content-Length": "3"}, [], None])),
    lambda r: r["definition"].update(body=random.choice([
        None, {"contentType": "text/plain", "content": "x"}, {"content": {"a": 1}}, "x", {"contentType": "a"}])),
    lambda r: r.update(events=random.choice([
        ["trigger"], ["button:a"], ["finger:bob"], ["finger:bob:10"], ["finger:bob:100"], ["button:"],
        ["button:" + "a" * 17], ["finger:" + "u" * 33], [], ["door"], "trigger", ["trigger", "button:x_y-z"]])),
    lambda r: r.update(functionName=random.choice(["ok", "", " ", "n" * 64, "n" * 65, 7])),
    lambda r: r["definition"].update(authentication=random.choice([
        None, {"apiAuthenticationType": "None"}, {"apiAuthenticationType": "OAuth2IssuedAccessToken"},
        {"apiAuthenticationType": "OAuth2IssuedAccessToken", "accessToken": "t"},
        {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "r",
         "tokenEndpoint": "https://idp/t"},
        {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "r", "tokenEndoint": "https://i/t"},
        {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "r"},
        {"apiAuthenticationType": "Basic"}])),
    lambda r: r["definition"].update(allowInsecureRemote=random.choice([True, False, "yes"])),
]


# Where the device is stricter than the host tool, on purpose: a URL with a raw space or control
# character would break the HTTP request line; port 0 cannot be connected to.
DEVICE_STRICTER = ("holds a space or a control character", "is not an http:// or https:// URL with a host")


def _stricter_ok(rule: dict, message: str) -> bool:
    url = rule["definition"]["url"]
    if DEVICE_STRICTER[0] in message:
        return any(ord(c) <= 32 for c in url)
    if DEVICE_STRICTER[1] in message:
        return ":0/" in url
    return False


def _cases(n: int, seed: int) -> list[dict]:
    random.seed(seed)
    out = []
    for i in range(n):
        r = make_rule(i % 5)
        for m in random.sample(MUTATIONS, random.randint(1, 3)):
            m(r)
        if r["definition"].get("securityLevel") == "AllowHttp" and random.random() < 0.7:
            r["definition"]["url"] = r["definition"].get("url", "").replace("https://", "http://")
        out.append(r)
    return out


@pytest.mark.parametrize("seed", [11, 12])
def test_device_accepts_what_the_host_pushes_and_refuses_what_it_refuses(micropython, tmp_path, seed):
    cases = _cases(80, seed)
    host_ok, pushed = [], []
    for r in cases:
        try:
            norm, _ = host_rules.normalise(copy.deepcopy(r))
            host_ok.append(True)
            pushed.append(norm)
        except host_rules.RuleError:
            host_ok.append(False)
    write_json(tmp_path, "cases.json", cases + pushed)
    res = micropython.json(VALIDATE)
    raw, after_host = res[:len(cases)], res[len(cases):]
    # everything the host would push (its normalised form) is stored by the device
    refused = [(p, m) for p, m in zip(pushed, after_host) if m is not None and not _stricter_ok(p, m)]
    assert not refused, json.dumps(refused[:3], indent=1)
    # what the host refuses, the device refuses (raw form)
    lenient = [(r, "host refuses") for r, ok, m in zip(cases, host_ok, raw) if not ok and m is None]
    assert not lenient, json.dumps(lenient[:3], indent=1)
    assert 0 < sum(host_ok) < len(cases)


FIRE_PREPARE = """
import json
from kh.store import rules
from kh.store.errors import StoreError
from kh.engine.fire import prepare
from kh.http.errors import FireError
out = []
for r in json.load(open("cases.json")):
    try:
        rules._check([r], set())      # validation plus the defaults a put stores
    except StoreError:
        continue
    try:
        prepare(r)
        out.append(None)
    except FireError as e:
        out.append([r["definition"].get("url"), e.code, e.message])
print(json.dumps(out))
"""


def test_every_stored_rule_is_one_the_engine_can_fire(micropython, tmp_path, cert_pem):
    """A rule the store accepts must pass the fire engine's own checks (kh/engine/fire.py
    prepare), or it would fail at every fire with invalid_definition."""
    cases = _cases(300, 21)
    random.seed(22)
    for r in random.sample(cases, 60):
        r["definition"]["securityLevel"] = "TlsPinnedCertificate"
        r["definition"]["pinnedCertificate"] = random.choice(
            [cert_pem, "".join(l for l in cert_pem.splitlines() if "CERT" not in l), cert_pem.replace("\n", "\\n")])
        r["definition"]["url"] = "https://pin.test/x"
    write_json(tmp_path, "cases.json", cases)
    res = micropython.json(FIRE_PREPARE)
    assert len(res) > 50
    bad = [x for x in res if x is not None]
    assert not bad, bad[:5]
