"""The system key on the simulated device (issue 13, "Sealing"): the admin app gives it over the
secure channel, the device proves it holds it with a key check value and never sends it back;
guests, rogue centrals and malformed requests change nothing; it survives a reboot, and a
removal or a reset leaves no byte of it on flash."""

from __future__ import annotations

import base64
import json
import os

import pytest

from keyhook import ble
from keyhook.session import RequestFailed, pair
from keyhook.session.device import system_key_check
from keyhook.session.keystore import Keystore

from e2ekit import client, run

pytestmark = pytest.mark.timeout(240)

SYSTEM = "3f6c2a9e-51b4-4c1e-9d0a-7b2e8f1c4d55"


def forms(key: bytes) -> list[bytes]:
    """Every way the key could show up in bytes an attacker reads."""
    b64 = base64.b64encode(key)
    return [key, key.hex().encode(), key.hex().upper().encode(), b64, b64.rstrip(b"="),
            base64.urlsafe_b64encode(key).rstrip(b"=")]


def ask(dev, keystore, *calls):
    """Run (op, fields) requests in one session; each answer, or the RequestFailed it raised."""
    async def go():
        out = []
        async with client(dev, keystore) as d:
            for op, fields in calls:
                try:
                    out.append(await d.request(op, **fields))
                except RequestFailed as e:
                    out.append(e)
        return out
    return run(go())


def held(dev, keystore):
    async def go():
        async with client(dev, keystore) as d:
            return await d.system_key()
    return run(go())


def give(dev, keystore, system_id, key):
    async def go():
        async with client(dev, keystore) as d:
            return await d.set_system_key(system_id, key)
    return run(go())


def guest_of(dev, keystore, tmp_path) -> Keystore:
    async def window():
        async with client(dev, keystore) as d:
            return await d.open_pairing(60)
    code = run(window())
    guest = Keystore(tmp_path / "guest")

    async def go():
        async with ble.connect(dev.address, radio=str(dev.radio)) as link:
            await pair(link, code, guest)
    run(go())
    return guest


def test_the_device_receives_the_key_and_proves_it_without_sending_it_back(paired, keystore):
    dev = paired
    assert held(dev, keystore) is None  # a new device belongs to no system
    key, key2 = os.urandom(32), os.urandom(32)
    b64 = base64.b64encode(key).decode()
    answers = ask(dev, keystore, ("system.set", {"system_id": SYSTEM, "key": b64}),
                  ("system.get", {}), ("system.set", {"system_id": SYSTEM, "key": b64}),
                  ("system.set", {"system_id": SYSTEM, "key": base64.b64encode(key2).decode()}),
                  ("system.get", {}))
    first, got, again, replaced, got2 = answers
    assert (first["system_id"], first["key_check"], first["changed"]) == (SYSTEM, system_key_check(key, SYSTEM), True)
    assert got["system"] == {"system_id": SYSTEM, "key_check": system_key_check(key, SYSTEM)}
    assert again["changed"] is False and again["key_check"] == first["key_check"]
    assert replaced["changed"] is True and replaced["key_check"] == system_key_check(key2, SYSTEM) != first["key_check"]
    assert got2["system"]["key_check"] == replaced["key_check"]
    # the check value binds the system id too: the same key under another id checks differently
    assert system_key_check(key2, SYSTEM + "x") != replaced["key_check"]
    # no answer carries the key, in any form
    text = json.dumps(answers).encode()
    for k in (key, key2):
        assert [f for f in forms(k) if f in text] == []
    # removal: the key is gone, a second removal says so
    removed, after, again = ask(dev, keystore, ("system.remove", {}), ("system.get", {}), ("system.remove", {}))
    assert removed["removed"] is True and after["system"] is None and again["removed"] is False


def test_the_key_survives_a_reboot(paired, keystore):
    dev = paired
    key = os.urandom(32)
    assert give(dev, keystore, SYSTEM, key)["changed"] is True
    dev.power_cycle()
    assert held(dev, keystore) == {"system_id": SYSTEM, "key_check": system_key_check(key, SYSTEM)}


def test_a_guest_app_is_refused_and_nothing_changes(paired, keystore, tmp_path):
    dev = paired
    key = os.urandom(32)
    give(dev, keystore, SYSTEM, key)
    guest = guest_of(dev, keystore, tmp_path)
    own = os.urandom(32)
    answers = ask(dev, guest, ("system.set", {"system_id": SYSTEM, "key": base64.b64encode(own).decode()}),
                  ("system.set", {"system_id": "guest-system", "key": base64.b64encode(own).decode()}),
                  ("system.remove", {}), ("system.get", {}))
    assert [a.code if isinstance(a, RequestFailed) else "ok" for a in answers] == ["forbidden"] * 3 + ["ok"]
    assert "only the admin app" in str(answers[0])
    # a guest may see which system the device belongs to (as `info` shows its state), never the key
    assert answers[3]["system"] == {"system_id": SYSTEM, "key_check": system_key_check(key, SYSTEM)}
    assert held(dev, keystore)["key_check"] == system_key_check(key, SYSTEM)


def test_a_guest_is_refused_before_the_admin_ever_set_a_key(paired, keystore, tmp_path):
    dev = paired
    guest = guest_of(dev, keystore, tmp_path)
    [refused] = ask(dev, guest, ("system.set", {"system_id": SYSTEM, "key": base64.b64encode(os.urandom(32)).decode()}))
    assert isinstance(refused, RequestFailed) and refused.code == "forbidden"
    assert held(dev, keystore) is None


def test_bad_input_is_refused_and_changes_nothing(paired, keystore):
    dev = paired
    key = os.urandom(32)
    give(dev, keystore, SYSTEM, key)
    good = base64.b64encode(os.urandom(32)).decode()
    b64 = base64.b64encode
    bad = [
        {"key": good},                                          # no system id
        {"system_id": 42, "key": good},                         # wrong type
        {"system_id": "", "key": good},
        {"system_id": "x" * 65, "key": good},                   # too long
        {"system_id": "home/../../etc", "key": good},           # not an id
        {"system_id": "h\u00e9me", "key": good},                # not ASCII
        {"system_id": SYSTEM},                                  # no key
        {"system_id": SYSTEM, "key": None},
        {"system_id": SYSTEM, "key": list(os.urandom(32))},     # bytes as a list
        {"system_id": SYSTEM, "key": b64(os.urandom(31)).decode()},
        {"system_id": SYSTEM, "key": b64(os.urandom(33)).decode()},
        {"system_id": SYSTEM, "key": os.urandom(32).hex()},     # hex, not base64
        {"system_id": SYSTEM, "key": "!" + good[1:]},           # a character outside base64
        {"system_id": SYSTEM, "key": good[:-1] + "\n"},         # not canonical
        {"system_id": SYSTEM, "key": b64(bytes(32)).decode()},  # all zeros
    ]
    answers = ask(dev, keystore, *[("system.set", fields) for fields in bad], ("system.get", {}))
    codes = [a.code if isinstance(a, RequestFailed) else "stored" for a in answers[:-1]]
    assert codes == ["bad_request"] * len(bad)
    messages = [str(a) for a in answers[:-1]]
    assert all(("system_id" in m) or ("key" in m) for m in messages)  # each names its field
    assert answers[-1]["system"] == {"system_id": SYSTEM, "key_check": system_key_check(key, SYSTEM)}


def test_a_rogue_central_gets_nothing_of_the_key(paired, keystore, tmp_path, monkeypatch):
    """A listener records the session that carries the key (BLE link-layer encryption is not
    used); rogue apps with keys of their own making, one claiming the admin's identity, then ask
    for it. Nothing they see holds the key; the device still holds it."""
    from keyhook.ble.link import BleRecordLink
    from keyhook.session import ChannelError
    dev = paired
    seen: list[bytes] = []
    send, on_notify = BleRecordLink.send, BleRecordLink.on_notify

    async def tapped_send(self, record):
        seen.append(bytes(record))
        return await send(self, record)

    def tapped_notify(self, char, data):
        seen.append(bytes(data))
        return on_notify(self, char, data)
    monkeypatch.setattr(BleRecordLink, "send", tapped_send)
    monkeypatch.setattr(BleRecordLink, "on_notify", tapped_notify)

    key = os.urandom(32)
    give(dev, keystore, SYSTEM, key)
    assert len(b"".join(seen)) > 100  # the recording holds the session

    device_id = keystore.list()[0].device_id
    outcomes = []
    for name, app_id in (("rogue-admin", keystore.app_id), ("rogue", None)):
        ks = Keystore(tmp_path / name)
        if app_id:
            ks._app_id = app_id
        ks.save(device_id, os.urandom(32))
        for op, fields in (("system.get", {}), ("system.set", {"system_id": "evil", "key": base64.b64encode(os.urandom(32)).decode()}),
                           ("system.remove", {})):
            try:
                outcomes.append(ask(dev, ks, (op, fields)))
            except ChannelError as e:
                outcomes.append(type(e).__name__)
    assert outcomes == ["NotPaired"] * 6  # the device did not accept their keys: no session, no answer
    everything = b"".join(seen)
    assert [f for f in forms(key) if f in everything] == []
    assert held(dev, keystore)["key_check"] == system_key_check(key, SYSTEM)


def test_the_key_never_reaches_the_log_and_a_removal_or_reset_erases_it(paired, keystore):
    dev = paired
    image = dev.state / "flash.img"
    key, key2 = os.urandom(32), os.urandom(32)
    give(dev, keystore, SYSTEM, key)
    flash = image.read_bytes()
    assert key.hex().encode() in flash  # stored (the search works)
    give(dev, keystore, SYSTEM, key2)

    async def lines():
        async with client(dev, keystore) as d:
            return await d.log(100)
    log = run(lines())
    assert any("system key" in line for line in log)
    text = ("\n".join(log) + dev.output()).encode()
    for k in (key, key2):
        assert [f for f in forms(k) if f in text] == []
    dev.stop()
    flash = image.read_bytes()
    assert key.hex().encode() not in flash and key2.hex().encode() in flash  # the replaced key is overwritten
    dev.start()
    [removed] = ask(dev, keystore, ("system.remove", {}))
    assert removed["removed"] is True
    dev.stop()
    assert [f for f in forms(key2) if f in image.read_bytes()] == []
    dev.start()
    give(dev, keystore, SYSTEM, key)

    async def reset():
        async with client(dev, keystore) as d:
            await d.reset()
    run(reset())
    dev.proc.wait(10)
    assert [f for f in forms(key) if f in image.read_bytes()] == []
