"""The host implementation against the real firmware channel (MicroPython unix port).

Every scenario checks what a user would: what the device delivered (its "message" events),
the ERROR it answered, what both sides stored, and the device's rate-limit state.
"""

from __future__ import annotations

import asyncio
import json
import os
import zlib

import pytest

from keyhook.session import (AuthenticationError, AuthFailed, BadFrame, BadRecord, LockedOut, NotPaired,
                             PairingClosed, ProtocolError, RateLimited, WrongCode, open_session,
                             pair, records)

from .pipe import FirmwareDevice, PipeLink

CODE = "12345678"


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def device(tmp_path):
    with FirmwareDevice(tmp_path / "store", code=CODE) as dev:
        yield dev


@pytest.fixture
def paired(device, keystore):
    run(pair(PipeLink(device), CODE, keystore))
    return device, keystore


def device_pairings(device) -> dict:
    raw = device.stored().get("pairings.json")
    return json.loads(raw) if raw else {}


def stable_state(device) -> dict:
    st = device.state()
    st.pop("session")
    st.pop("app_id")
    return st


# -- pairing --------------------------------------------------------------------------------

def test_pairing_with_the_right_code_stores_the_same_key_on_both_sides(device, keystore):
    link = PipeLink(device)
    p = run(pair(link, CODE, keystore))
    st = device.state()
    assert st["paired"] == [keystore.app_id] and st["failures"] == 0
    assert p.device_id == st["device_id"]
    assert keystore.get(st["device_id"]).key.hex() == device_pairings(device)[keystore.app_id]["pk"]
    # the setup code never crossed the link
    assert all(CODE.encode() not in r for r in link.sent + link.inbox)


def test_wrong_code_fails_stores_nothing_and_the_limit_grows_to_a_lock_out(device, keystore, make_keystore):
    before = device.stored()
    waits = []
    for k in range(1, 11):
        with pytest.raises(WrongCode) as e:
            run(pair(PipeLink(device), "87654321", keystore))
        assert "code is wrong" in str(e.value) and "rate limited" in e.value.hint
        assert keystore.list() == [] and device.stored() == before
        st = device.state()
        assert st["failures"] == k and st["paired"] == []
        if k == 10:
            break
        # refused at once, for min(2**(k-1), 60) s, even with the right code
        with pytest.raises(RateLimited) as e:
            run(pair(PipeLink(device), CODE, keystore))
        waits.append(e.value.retry_after_s)
        assert f"wait {e.value.retry_after_s} s" in e.value.hint
        device.control(advance_s=e.value.retry_after_s)
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    # locked out: time does not help, the right code does not help
    device.control(advance_s=3600)
    with pytest.raises(LockedOut) as e:
        run(pair(PipeLink(device), CODE, keystore))
    assert "button" in e.value.hint and "power-cycle" in e.value.hint
    assert keystore.list() == [] and device.stored() == before and device.state()["locked"]
    # the button lifts it
    device.control(button=True)
    p = run(pair(PipeLink(device), CODE, keystore))
    assert device.state()["paired"] == [keystore.app_id] and keystore.get(p.device_id)


def test_a_power_cycle_lifts_the_lock_out(device, keystore):
    for _ in range(10):
        with pytest.raises(WrongCode):
            run(pair(PipeLink(device), "00000000", keystore))
        device.control(advance_s=60)
    with pytest.raises(LockedOut):
        run(pair(PipeLink(device), CODE, keystore))
    device.restart()
    run(pair(PipeLink(device), CODE, keystore))
    assert device.state()["paired"] == [keystore.app_id]


def test_a_success_resets_the_count(device, keystore):
    with pytest.raises(WrongCode):
        run(pair(PipeLink(device), "00000000", keystore))
    device.control(advance_s=1)
    run(pair(PipeLink(device), CODE, keystore))
    assert device.state()["failures"] == 0


def test_a_paired_device_refuses_new_apps_until_a_window_opens(paired, make_keystore):
    device, first = paired
    second, third = make_keystore(), make_keystore()
    with pytest.raises(PairingClosed) as e:
        run(pair(PipeLink(device), CODE, second))
    assert "admin app" in e.value.hint and second.list() == []
    window = device.control(open_window=300)["code"]
    p = run(pair(PipeLink(device), window, second))
    assert sorted(device.state()["paired"]) == sorted([first.app_id, second.app_id])
    assert second.get(p.device_id).key != first.get(p.device_id).key
    assert not device.state()["window_open"]  # one-time
    with pytest.raises(PairingClosed):
        run(pair(PipeLink(device), window, third))

    async def both():
        out = []
        for ks in (first, second):
            s = await open_session(PipeLink(device), ks)
            out.append((await s.request("ping", who=ks.app_id))["echo"]["who"])
        return out
    assert run(both()) == [first.app_id, second.app_id]


def test_a_pairing_window_expires(paired, make_keystore):
    device, _ = paired
    window = device.control(open_window=5)["code"]
    device.control(advance_s=6)
    with pytest.raises(PairingClosed):
        run(pair(PipeLink(device), window, make_keystore()))


def test_a_wrong_code_in_a_window_counts_as_a_failure(paired, make_keystore):
    device, _ = paired
    device.control(open_window=300)
    other = make_keystore()
    with pytest.raises(WrongCode):
        run(pair(PipeLink(device), "00000000", other))
    assert device.state()["failures"] == 1 and other.list() == []


# -- sessions -------------------------------------------------------------------------------

def test_sessions_carry_messages_both_ways(paired):
    device, ks = paired

    async def go():
        link = PipeLink(device)
        s = await open_session(link, ks, device_id=device.state()["device_id"])
        small = await s.request("info")
        big = await s.request("rules.put", rules=[{"functionName": f"r{i}", "url": "https://example.org/" + "a" * 40}
                                                  for i in range(60)])
        return link, small, big
    link, small, big = run(go())
    assert small == {"id": 1, "ok": True, "echo": {"id": 1, "op": "info"}}
    assert big["id"] == 2 and len(big["echo"]["rules"]) == 60
    assert [m["id"] for m in link.messages()] == [1, 2]
    # the large request went compressed, and nothing readable crossed the link
    data = [r for r in link.sent if r[0] == records.DATA]
    assert len(data) == 2 and len(data[1]) < 2000
    assert all(b"functionName" not in r and b"example.org" not in r for r in link.sent + link.inbox)


def test_every_session_has_fresh_keys(paired):
    device, ks = paired

    async def go():
        frames = []
        for _ in range(2):
            link = PipeLink(device)
            s = await open_session(link, ks)
            await s.request("info")
            frames.append([r for r in link.sent if r[0] == records.DATA][0])
            link.close()
        return frames
    a, b = run(go())
    assert a[:9] == b[:9] and a[9:] != b[9:]  # same counter 0, different ciphertext and tag


def test_removing_a_pairing_revokes_it_at_once(paired, make_keystore):
    device, ks = paired
    window = device.control(open_window=60)["code"]
    other = make_keystore()
    run(pair(PipeLink(device), window, other))

    async def go():
        link = PipeLink(device)
        s = await open_session(link, ks)
        await s.request("info")
        assert device.control(remove=ks.app_id)["removed"] is True
        with pytest.raises(NotPaired) as e:
            await s.request("rules.list")
        return link, e.value
    link, err = run(go())
    assert [m["op"] for m in link.messages()] == ["info"]  # the request after removal was not delivered
    assert device.state()["paired"] == [other.app_id]
    with pytest.raises(NotPaired, match="did not accept"):
        run(_one_request(device, ks))
    # the other app is untouched
    assert run(_one_request(device, other))["ok"] is True


async def _one_request(device, ks, op="info"):
    s = await open_session(PipeLink(device), ks)
    return await s.request(op)


def test_a_local_removal_needs_a_new_pairing(paired):
    device, ks = paired
    ks.remove(device.state()["device_id"])
    with pytest.raises(NotPaired) as e:
        run(open_session(PipeLink(device), ks))
    assert "pair" in e.value.hint


def test_an_unknown_app_is_not_paired(paired, make_keystore):
    device, _ = paired
    with pytest.raises(NotPaired):
        run(open_session(PipeLink(device), make_keystore()))


# -- tampering, app -> device -------------------------------------------------------------

def _flip(index):
    def tamper(rec):
        if rec[0] != records.DATA:
            return rec
        b = bytearray(rec)
        b[index] ^= 0x01
        return bytes(b)
    return tamper


def _check_rejected(device, link, before, expected_error):
    closed = [e for e in link.events if e["event"] == "closed"]
    assert closed and closed[-1]["error"] == expected_error, link.events
    assert link.messages() == []
    assert device.state()["session"] is False
    assert stable_state(device) == before["state"] and device.stored() == before["stored"]


def _snapshot(device):
    return {"state": stable_state(device), "stored": device.stored()}


# (name, tamper on outgoing DATA records, expected device ERROR class, code)
TAMPERING = [
    ("type byte", _flip(0), BadRecord, 1),
    *[(f"counter byte {i}", _flip(1 + i), BadFrame, 10) for i in range(8)],
    ("first ciphertext byte (flags)", _flip(9), BadFrame, 10),
    ("middle ciphertext byte", _flip(20), BadFrame, 10),
    ("last ciphertext byte", _flip(-33), BadFrame, 10),
    ("first tag byte", _flip(-32), BadFrame, 10),
    ("last tag byte", _flip(-1), BadFrame, 10),
    ("truncated by one", lambda r: r[:-1] if r[0] == records.DATA else r, BadFrame, 10),
    ("truncated to the tag", lambda r: r[:1] + r[-32:] if r[0] == records.DATA else r, BadFrame, 10),
    ("type only", lambda r: r[:1] if r[0] == records.DATA else r, BadFrame, 10),
    ("extended by one", lambda r: r + b"\x00" if r[0] == records.DATA else r, BadFrame, 10),
    ("oversized", lambda r: r + bytes(records.MAX_RECORD) if r[0] == records.DATA else r, BadRecord, 1),
]


@pytest.mark.parametrize("name,tamper,exc,code", TAMPERING, ids=[t[0] for t in TAMPERING])
def test_altered_frames_are_rejected(paired, name, tamper, exc, code):
    device, ks = paired
    before = _snapshot(device)

    async def go():
        link = PipeLink(device, tamper_out=tamper)
        s = await open_session(link, ks)
        with pytest.raises(exc) as e:
            await s.request("rules.delete", functionName="x")
        return link, e.value
    link, err = run(go())
    assert err.device_message  # the device said what was wrong
    _check_rejected(device, link, before, code)
    # the device is fine afterwards
    assert run(_one_request(device, ks))["ok"] is True


def _session_sealer_test(device, ks, build):
    """Open a session, send the DATA records that `build(sealer)` makes, return link and replies."""
    async def go():
        link = PipeLink(device)
        s = await open_session(link, ks)
        replies = []
        for rec in build(s):
            replies.append(device.record(rec))
        return link, replies
    return run(go())


def _seal(s, message: dict, compress=False) -> bytes:
    from keyhook.session.frames import encode_payload
    return s._out.seal(encode_payload(message, compress))


def test_a_replayed_frame_is_rejected_and_not_acted_on_twice(paired):
    device, ks = paired
    before = _snapshot(device)

    def build(s):
        rec = _seal(s, {"id": 1, "op": "trigger", "functionName": "door"})
        return [rec, rec]
    link, replies = _session_sealer_test(device, ks, build)
    (r1, e1), (r2, e2) = replies
    assert [e["msg"]["id"] for e in e1 if e["event"] == "message"] == [1]
    assert r2[0][0] == records.ERROR and r2[0][1] == 10
    assert not [e for e in e2 if e["event"] == "message"]
    assert {"event": "closed", "error": 10} in e2
    assert stable_state(device) == before["state"] and device.stored() == before["stored"]


def test_reordered_and_dropped_frames_are_rejected(paired):
    device, ks = paired
    for order in ([1, 0], [1], [0, 2]):
        def build(s, order=order):
            recs = [_seal(s, {"id": i + 1, "op": "info"}) for i in range(3)]
            return [recs[i] for i in order]
        link, replies = _session_sealer_test(device, ks, build)
        delivered = [e["msg"]["id"] for _, ev in replies for e in ev if e["event"] == "message"]
        assert delivered == ([1] if order == [0, 2] else [])
        recs, ev = replies[1 if order == [0, 2] else 0]
        assert recs[0][:2] == bytes([records.ERROR, 10]) and {"event": "closed", "error": 10} in ev
        # whatever follows on that connection is not acted on either
        assert all(not [e for e in ev if e["event"] == "message"] for _, ev in replies[2 if order == [0, 2] else 1:])


@pytest.mark.parametrize("name,plain,code", [
    ("unknown flag", b"\x02{}", 10),
    ("bad zlib", b"\x01not zlib at all", 10),
    ("zlib with trailing data", b"\x01" + zlib.compress(b'{"id":1}') + b"junk", 10),
    ("truncated zlib", b"\x01" + zlib.compress(b'{"id":1,"op":"info"}')[:-3], 10),
    ("not JSON", b"\x00{id: 1", 10),
    ("not UTF-8", b'\x00{"id":"\xff"}', 10),
    ("JSON array", b"\x00[1,2]", 10),
    ("empty payload", b"", 10),
    ("zlib bomb", b"\x01" + zlib.compress(b'{"a":"' + b"a" * 100000 + b'"}'), 8),
    ("body over MAX_PAYLOAD", b"\x00" + json.dumps({"a": "b" * 8200}).encode(), 8),
])
def test_authentic_frames_with_bad_payloads_are_rejected(paired, name, plain, code):
    device, ks = paired
    before = _snapshot(device)
    link, replies = _session_sealer_test(device, ks, lambda s: [s._out.seal(plain)])
    (recs, ev), = replies
    assert recs[0][:2] == bytes([records.ERROR, code]), (recs, ev)
    assert not [e for e in ev if e["event"] == "message"] and {"event": "closed", "error": code} in ev
    assert stable_state(device) == before["state"] and device.stored() == before["stored"]


def test_frames_before_the_handshake_are_rejected(paired):
    device, ks = paired
    before = _snapshot(device)
    # a DATA record on a fresh connection
    recs, ev = device.record(bytes([records.DATA]) + bytes(8) + b"\x00{}" + bytes(32))
    assert recs[0][:2] == bytes([records.ERROR, 1]) and {"event": "closed", "error": 1} in ev

    # a DATA record between HELLO_DEV and HELLO_APP, sealed with the right keys
    async def go():
        held = []
        link = PipeLink(device, tamper_out=lambda r: (held.append(r), None)[1] if r[0] == records.HELLO_APP else r)
        s = await open_session(link, ks)
        return device.record(_seal(s, {"id": 1, "op": "info"}))
    recs, ev = run(go())
    assert recs[0][:2] == bytes([records.ERROR, 1]) and not [e for e in ev if e["event"] == "message"]
    assert stable_state(device) == before["state"] and device.stored() == before["stored"]


def test_a_wrong_mac_in_the_handshake_is_rejected(paired):
    device, ks = paired
    before = _snapshot(device)

    def bad_mac(rec):
        if rec[0] == records.HELLO_APP:
            return rec[:-1] + bytes([rec[-1] ^ 0x80])
        return rec

    async def go():
        link = PipeLink(device, tamper_out=bad_mac)
        s = await open_session(link, ks)  # the app cannot tell yet
        with pytest.raises(NotPaired, match="did not accept this app's pairing key") as e:
            await s.request("info")  # the device's ERROR (auth_failed) is the answer the app reads next
        assert "onboard" in e.value.hint and "authentication failed" in e.value.device_message
        return link
    link = run(go())
    assert {"event": "closed", "error": 7} in link.events and link.messages() == []
    assert stable_state(device) == before["state"] and device.stored() == before["stored"]


def test_auth_failed_maps_to_its_error(paired):
    device, ks = paired
    recs, ev = device.record(bytes([records.HELLO]) + os.urandom(32))
    assert recs[0][0] == records.HELLO_DEV
    recs, ev = device.record(bytes([records.HELLO_APP]) + bytes(32))
    with pytest.raises(AuthFailed) as e:
        records.raise_if_error(recs[0])
    assert "pair again" in e.value.hint


def test_a_wrong_pairing_proof_is_wrong_code_and_a_bad_point_is_bad_record(device, keystore):
    before = device.stored()
    ident = records.u8len(records.app_identity(keystore.app_id))
    assert device.record(bytes([records.PAIR_REQ]) + ident)[0][0][0] == records.PAIR_A
    recs, _ = device.record(bytes([records.PAIR_B]) + b"\x04" + bytes(64) + bytes(32))
    assert recs[0][:2] == bytes([records.ERROR, 1])
    assert device.state()["failures"] == 0 and device.stored() == before


# -- tampering, device -> app (the host's side, against real device records) -----------------

def test_host_refuses_a_forged_pair_ok_and_stores_nothing(device, keystore):
    def forge(rec):
        return rec[:-1] + bytes([rec[-1] ^ 1]) if rec[0] == records.PAIR_OK else rec
    with pytest.raises(AuthenticationError):
        run(pair(PipeLink(device, tamper_in=forge), CODE, keystore))
    assert keystore.list() == []


def test_a_forged_hello_dev_opens_no_session(paired):
    # eD changed on the way: the two sides' transcripts differ, the device refuses macA and
    # the app's first frame is never acted on
    device, ks = paired

    def forge(rec):
        return rec[:-1] + bytes([rec[-1] ^ 1]) if rec[0] == records.HELLO_DEV else rec
    link = PipeLink(device, tamper_in=forge)

    async def go():
        s = await open_session(link, ks)
        with pytest.raises(NotPaired):
            await s.request("info")
    run(go())
    assert {"event": "closed", "error": 7} in link.events and link.messages() == []


@pytest.mark.parametrize("index", [0, 1, 8, 9, -33, -32, -1])
def test_host_refuses_altered_device_frames(paired, index):
    device, ks = paired

    seen = []

    def flip(rec):
        if rec[0] != records.DATA:
            return rec
        b = bytearray(rec)
        b[index] ^= 1
        seen.append(rec)
        return bytes(b) if len(seen) != 1 else rec

    async def go():
        s = await open_session(PipeLink(device, tamper_in=flip), ks)
        await s.request("info")  # the device's first frame: it proves the pairing key
        with pytest.raises(ProtocolError):
            await s.request("info")
        with pytest.raises(Exception, match="session is closed"):
            await s.request("info")
    run(go())


def test_a_request_too_large_for_the_device_is_refused_by_the_host(paired):
    device, ks = paired

    async def go():
        link = PipeLink(device)
        s = await open_session(link, ks)
        with pytest.raises(ProtocolError, match="at most 8192"):
            await s.request("rules.put", blob=os.urandom(6000).hex())
        return link, await s.request("info")
    link, r = run(go())
    assert r["ok"] and [m["op"] for m in link.messages()] == ["info"]


def test_after_a_factory_reset_the_old_key_is_refused_and_the_setup_code_pairs_again(paired):
    device, ks = paired
    dev_id = device.state()["device_id"]
    old = ks.get(dev_id).key
    device.control(factory_reset=True)
    with pytest.raises(NotPaired) as e:
        run(_one_request(device, ks))
    assert "onboard" in e.value.hint
    run(pair(PipeLink(device), CODE, ks))
    assert ks.get(dev_id).key != old
    assert run(_one_request(device, ks))["ok"] is True


def test_non_ascii_text_round_trips(paired):
    device, ks = paired
    text = "Tür öffnen ✓ 🙂 \u0000 \"quoted\" \\ back"

    async def go():
        s = await open_session(PipeLink(device), ks)
        return await s.request("rules.delete", functionName=text)
    assert run(go())["echo"]["functionName"] == text
