"""The host side against a pure-host device stand-in: flows, refusals and what gets stored."""

from __future__ import annotations

import asyncio
import os
import stat

import pytest

from keyhook import KeyhookError
from keyhook.session import (AuthenticationError, LockedOut, NotPaired, PairingClosed, ProtocolError,
                             RequestFailed, WrongCode, open_session, pair, records)

from .standin import StandInDevice, StandInLink


def run(coro):
    return asyncio.run(coro)


def test_pair_then_session_round_trip(keystore):
    dev = StandInDevice()
    p = run(pair(StandInLink(dev), "1234-5678", keystore))
    assert p.device_id == dev.device_id
    assert keystore.get(dev.device_id).key == dev.pairings[keystore.app_id]

    async def go():
        s = await open_session(StandInLink(dev), keystore)
        r1 = await s.request("echo", data="hi")
        r2 = await s.request("echo", data="x" * 5000)  # compressed on the way in and out
        return r1, r2
    r1, r2 = run(go())
    assert r1 == {"id": 1, "ok": True, "echo": "hi"}
    assert r2["echo"] == "x" * 5000 and r2["id"] == 2
    assert dev.received[1]["data"] == "x" * 5000


def test_keystore_files_are_private(keystore):
    dev = StandInDevice()
    run(pair(StandInLink(dev), "12345678", keystore))
    root = keystore.root
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(root / "pairings").st_mode) == 0o700
    for path in (root / "app.json", root / "pairings" / f"{dev.device_id}.json"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert [p.device_id for p in keystore.list()] == [dev.device_id]
    assert keystore.remove(dev.device_id) and not keystore.remove(dev.device_id)
    assert keystore.list() == []


def test_keystore_refuses_a_world_readable_key(keystore):
    dev = StandInDevice()
    run(pair(StandInLink(dev), "12345678", keystore))
    path = keystore.root / "pairings" / f"{dev.device_id}.json"
    os.chmod(path, 0o644)
    with pytest.raises(KeyhookError, match="readable by other users") as e:
        keystore.get(dev.device_id)
    assert "chmod 600" in e.value.hint


def test_wrong_code_stores_nothing(keystore):
    dev = StandInDevice()
    with pytest.raises(WrongCode) as e:
        run(pair(StandInLink(dev), "12345670", keystore))
    assert "8-digit code" in e.value.hint
    assert keystore.list() == [] and dev.pairings == {} and dev.failures == 1


@pytest.mark.parametrize("code", ["1234567", "123456789", "abcdefgh", ""])
def test_code_must_be_8_digits(keystore, code):
    dev = StandInDevice()
    link = StandInLink(dev)
    with pytest.raises(KeyhookError, match="not a setup code"):
        run(pair(link, code, keystore))
    assert link.sent == []


def test_device_errors_carry_hints(keystore):
    dev = StandInDevice()
    dev.failures = 10
    with pytest.raises(LockedOut) as e:
        run(pair(StandInLink(dev), "12345678", keystore))
    assert "button" in e.value.hint and "power-cycle" in e.value.hint
    dev.failures = 0
    run(pair(StandInLink(dev), "12345678", keystore))
    with pytest.raises(PairingClosed) as e:
        run(pair(StandInLink(dev), "12345678", keystore))
    assert "admin app" in e.value.hint


def test_device_that_cannot_prove_the_code_is_refused_and_nothing_stored(keystore):
    dev = StandInDevice()

    def forge_ok(rec):
        return bytes([records.PAIR_OK]) + bytes(32) if rec[0] == records.PAIR_OK else rec
    with pytest.raises(AuthenticationError, match="could not prove"):
        run(pair(StandInLink(dev, forge_ok), "12345678", keystore))
    assert keystore.list() == []


def test_session_needs_a_local_pairing(keystore):
    dev = StandInDevice()
    with pytest.raises(NotPaired):
        run(open_session(StandInLink(dev), keystore))


def test_session_refuses_a_device_without_the_pairing_key(keystore, make_keystore):
    dev = StandInDevice()
    run(pair(StandInLink(dev), "12345678", keystore))
    dev.pairings[keystore.app_id] = os.urandom(32)  # an impostor that knows the app id only
    dev.accept_any_mac = True

    async def go():
        s = await open_session(StandInLink(dev), keystore)
        with pytest.raises(AuthenticationError, match="could not prove it holds"):
            await s.request("echo", data="a")
        assert s.closed is not None
    run(go())


def test_a_device_that_does_not_accept_the_key_reads_as_not_paired(keystore):
    # the device answers HELLO_APP with auth_failed (the pairing was removed, the device reset)
    dev = StandInDevice()
    run(pair(StandInLink(dev), "12345678", keystore))
    dev.pairings.clear()

    async def go():
        s = await open_session(StandInLink(dev), keystore)
        with pytest.raises(NotPaired, match="did not accept this app's pairing key") as e:
            await s.request("echo", data="a")
        assert "onboard" in e.value.hint
    run(go())


def test_session_refuses_another_device(keystore):
    dev = StandInDevice()
    run(pair(StandInLink(dev), "12345678", keystore))
    with pytest.raises(AuthenticationError, match="was expected"):
        run(open_session(StandInLink(dev), keystore, device_id="ffffffffffff"))


def _session_with(tamper, keystore):
    # the device's first frame goes through untouched: it proves the pairing key (a first
    # frame that fails is "could not prove", test_session_refuses_a_device_without_the_pairing_key)
    dev = StandInDevice()
    run(pair(StandInLink(dev), "12345678", keystore))
    seen = []

    def after_the_first(rec):
        if rec[0] == records.DATA and not seen:
            seen.append(rec)
            return rec
        return tamper(rec)

    async def go():
        s = await open_session(StandInLink(dev, after_the_first), keystore)
        await s.request("echo", data="first")
        with pytest.raises(ProtocolError) as e:
            await s.request("echo", data="a")
        with pytest.raises(KeyhookError, match="session is closed"):
            await s.request("echo", data="b")
        return e.value
    return run(go())


@pytest.mark.parametrize("where", [0, 1, 8, 9, 12, -32, -1])
def test_host_rejects_altered_frames(keystore, where):
    def flip(rec):
        if rec[0] != records.DATA:
            return rec
        b = bytearray(rec)
        b[where] ^= 0x01
        return bytes(b)
    err = _session_with(flip, keystore)
    assert "authentication" in str(err) or "malformed" in str(err)


def test_host_rejects_truncated_and_replayed_frames(keystore):
    _session_with(lambda r: r[:-1] if r[0] == records.DATA else r, keystore)
    seen = []

    def replay(rec):
        if rec[0] == records.DATA:
            seen.append(rec)
            return seen[0]
        return rec
    dev = StandInDevice()
    run(pair(StandInLink(dev), "12345678", keystore))

    async def go():
        s = await open_session(StandInLink(dev, replay), keystore)
        await s.request("echo", data="a")
        with pytest.raises(ProtocolError, match="replayed or reordered"):
            await s.request("echo", data="b")
    run(go())


def test_too_large_request_is_refused_before_sending(keystore):
    dev = StandInDevice()
    run(pair(StandInLink(dev), "12345678", keystore))

    async def go():
        s = await open_session(StandInLink(dev), keystore)
        with pytest.raises(ProtocolError, match="at most 8192"):
            await s.request("echo", data=os.urandom(5000).hex())
        return await s.request("echo", data="still open")
    assert run(go())["echo"] == "still open"


def test_request_failure_is_reported(keystore):
    dev = StandInDevice()
    run(pair(StandInLink(dev), "12345678", keystore))

    async def go():
        s = await open_session(StandInLink(dev), keystore)
        with pytest.raises(RequestFailed) as e:
            await s.request("nope")
        return e.value
    err = run(go())
    assert err.code == "unknown_op" and "nope" in str(err)


def test_pairing_refuses_another_device_before_trying_the_code(keystore):
    dev = StandInDevice()
    link = StandInLink(dev)
    with pytest.raises(AuthenticationError, match="was expected"):
        run(pair(link, "12345678", keystore, device_id="ffffffffffff"))
    assert [r[0] for r in link.sent] == [records.PAIR_REQ]  # no PAIR_B: no guess spent
    assert keystore.list() == [] and dev.failures == 0


def test_keystore_resolves_a_device_by_id_suffix_or_name(keystore):
    with pytest.raises(KeyhookError, match="no pairing"):
        keystore.resolve()
    keystore.save("a1b2c3d4e5f6", os.urandom(32))
    assert keystore.resolve().device_id == "a1b2c3d4e5f6"
    keystore.save("0000001234ab", os.urandom(32))
    with pytest.raises(KeyhookError, match="several") as e:
        keystore.resolve()
    assert "full 12-digit id" in e.value.hint
    assert keystore.resolve("keyhook-D4E5F6").device_id == "a1b2c3d4e5f6"
    assert keystore.resolve("0000001234ab").device_id == "0000001234ab"
    with pytest.raises(KeyhookError, match="no pairing"):
        keystore.resolve("ffffff")


def test_keystore_app_id_is_made_once(keystore, tmp_path):
    from keyhook.session.keystore import Keystore
    first = keystore.app_id
    assert len(first) == 32 and Keystore(keystore.root).app_id == first
