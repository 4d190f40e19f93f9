"""Security review fixes (B, C): a rule file that the device cannot honour exactly is refused with
a clear error, by the device itself and by the host's `keyhook` command line, and nothing is
stored. (A, the OAuth chain bound to the request's origin: tests/oauth/test_e2e.py.)"""

from __future__ import annotations

import json

import pytest

from keyhook.session import RequestFailed
from e2ekit import cli, client, run


def hook(name, url, **top):
    d = {"method": "Post", "url": url, "securityLevel": "AllowHttp", "timeout": 5000}
    return {"functionName": name, "definition": d, **top}


BAD_EXPIRES = ["2020-01-01", "SECRETDATE", "2027-01-01T00:00:00", "2027-01-01 00:00:00Z",
               "2027-02-30T00:00:00Z", "2027-01-01T24:00:00Z", "2027-01-01T00:00:00+1:00",
               "2027-01-01T00:00:00.Z", "20270101T000000Z", "2027-01-01T00:00:00Zjunk"]


def _names(dev, keystore):
    async def go():
        async with client(dev, keystore) as d:
            return sorted(r["name"] if isinstance(r, dict) else r for r in await d.list_rules())
    return run(go())


# ---- B: an expiresAt the device cannot read is refused, not stored as "never expires" ----

def test_device_refuses_an_unreadable_expires_at(paired, keystore, plain):
    # A central that skips the host tool's checks sends rules.put itself.
    dev = paired
    before = _names(dev, keystore)

    async def put(rule):
        async with client(dev, keystore) as d:
            try:
                await d.put_rules([rule])
            except RequestFailed as e:
                return e.code, str(e)
        return None, "stored"

    for i, exp in enumerate(BAD_EXPIRES):
        code, msg = put_result = run(put(hook(f"exp{i}", plain.url("/x"), expiresAt=exp)))
        assert code == "invalid_rule", (exp, put_result)
        assert "expiresAt" in msg and "RFC 3339" in msg, msg
        assert exp not in msg, msg  # the value is not echoed (it may be anything)
    assert _names(dev, keystore) == before
    # RFC 3339 date-times with Z or an offset (and a fraction) are taken
    good = [hook("z", plain.url("/x"), expiresAt="2099-01-01T00:00:00Z"),
            hook("off", plain.url("/x"), expiresAt="2099-01-01t01:00:00.25-05:30")]

    async def put_good():
        async with client(dev, keystore) as d:
            return await d.put_rules(good)
    assert sorted(run(put_good())) == ["off", "z"]


def test_push_refuses_an_unreadable_expires_at(paired, keystore, tmp_path, plain):
    dev = paired
    before = _names(dev, keystore)
    for exp in ("2020-01-01", "SECRETDATE"):
        f = tmp_path / "r.json"
        f.write_text(json.dumps(hook("dated", plain.url("/x"), expiresAt=exp)))
        out = cli("rules", "push", dev.address, str(f), radio=dev.radio, config=keystore.root, check=False)
        text = out.stdout + out.stderr
        assert out.returncode == 2, text
        assert "error:" in text and "expiresAt" in text and "RFC 3339" in text, text
        assert exp not in text, text
        assert "Traceback" not in text, text
    assert _names(dev, keystore) == before


# ---- C: hostile rule files give error:/hint: lines and exit 2, never a traceback ----

def _hostile(url):
    good = json.dumps(hook("ok", url))
    d = '"definition": {"method": "Post", "url": "%s", "securityLevel": "AllowHttp"' % url
    return {
        "long_int": '{"functionName": "a", %s, "timeout": %s}}' % (d, "9" * 5000),
        "deep_list": "[" * 100000 + "]" * 100000,
        "deep_inside": '{"functionName": "a", "definition": %s}' % ("[" * 100000 + "]" * 100000),
        "nan": '{"functionName": "a", %s, "timeout": NaN}}' % d,
        "infinity": '[%s, {"functionName": "b", %s, "timeout": -Infinity}}]' % (good, d),
        "lone_surrogate": '{"functionName": "a\\ud800", %s}}' % d,
        "lone_in_body": '{"functionName": "a", %s, "body": {"content": "x\\udc00"}}}' % d,
        # the validator's answer quotes the event: U+2028 in it must not split the answer
        "u2028_event": json.dumps(hook("a", url, events=["button:\u2028"]), ensure_ascii=False),
        "u2028_name": json.dumps(hook("a\u2028b", url), ensure_ascii=False),
        "u0085_name": json.dumps(hook("a\u0085b", url), ensure_ascii=False),
    }


def test_hostile_rule_files_are_refused_cleanly(paired, keystore, tmp_path, plain):
    dev = paired
    before = _names(dev, keystore)
    problems = []  # every case is tried; the assertion lists all that went wrong
    for name, text in _hostile(plain.url("/x")).items():
        f = tmp_path / f"{name}.json"
        f.write_text(text, encoding="utf-8")
        for args in (("rules", "push", dev.address, str(f)), ("fire", str(f))):
            out = cli(*args, radio=dev.radio, config=keystore.root, check=False)
            text_out = out.stdout + out.stderr
            case = (name, args[0])
            if "Traceback" in text_out:
                problems.append((case, "traceback", text_out[-300:]))
                continue
            if args[0] == "fire" and name in ("u2028_name", "u0085_name", "u2028_event"):
                # read fine; the device's engine refuses the definition: fire's JSON result
                try:
                    res = json.loads(out.stdout.strip().split("\n")[-1])
                except ValueError:
                    problems.append((case, "no JSON result", text_out[-300:]))
                    continue
                if not (out.returncode == 1 and res["error"] == "invalid_definition" and not res["sent"]):
                    problems.append((case, out.returncode, res))
                continue
            lines = out.stderr.strip().split("\n")
            if out.returncode != 2 or not any(ln.startswith("error: ") for ln in lines) or \
                    not any(ln.startswith("hint: ") for ln in lines):
                problems.append((case, out.returncode, text_out[-300:]))
    assert problems == []
    assert _names(dev, keystore) == before
    plain.settle()
    assert plain.requests == []


def test_a_validator_that_stops_shows_the_end_of_its_output():
    # MicroPython writes an uncaught exception's traceback to stdout: the error shows its end
    # (here the device's reader refusing a lone surrogate, which the host lets through to it)
    from keyhook import KeyhookError
    from keyhook.rules.devicecheck import ask_device

    with pytest.raises(KeyhookError) as e:
        ask_device(each=[{"functionName": "a\ud800", "definition": {}}])
    assert "lone surrogate" in str(e.value)
