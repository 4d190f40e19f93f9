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
