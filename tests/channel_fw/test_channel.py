"""The firmware's channel (under MicroPython) against the host's pairing client and a byte-level
app: pairing, refusals and the rate limit, the pairing window, sessions, revocation, tampering."""

from __future__ import annotations

import asyncio
import json
import os
import zlib

import pytest

from fw_app import SessionApp, payload, u8len
from fwpipe import CODE, PipeLink
from keyhook.session import LockedOut, PairingClosed, RateLimited, WrongCode, open_session, pair

ERR = {"bad_record": 1, "not_paired": 2, "wrong_code": 3, "rate_limited": 4, "locked_out": 5,
       "pairing_closed": 6, "auth_failed": 7, "too_large": 8, "bad_frame": 10}


def do_pair(pipe, keystore, code=CODE):
    return asyncio.run(pair(PipeLink(pipe), code, keystore))


def session_app(pipe, keystore):
    dev = pipe.state()["device_id"]
    app = SessionApp(pipe, keystore.app_id, keystore.get(dev).key)
    app.open_session()
    return app


def error_of(records):
    assert len(records) == 1 and records[0][0] == 0x7F, records
    return records[0][1], int.from_bytes(records[0][2:4], "big"), records[0][4:].decode()


def test_pair_session_and_messages(fw, keystore, tmp_path):
    pipe = fw()
    p = do_pair(pipe, keystore)
    st = pipe.state()
    assert st["paired"] == [keystore.app_id] and p.device_id == st["device_id"]
    # the device stored the same key the app stored
    stored = json.loads((tmp_path / "store" / "pairings.json").read_text())
    assert stored[keystore.app_id]["pk"] == p.key.hex() and stored[keystore.app_id]["admin"] is True

    async def talk():
        s = await open_session(PipeLink(pipe), keystore)
        r1 = await s.request("info")
        r2 = await s.request("rules_put", rules=[{"name": "x" * 50}] * 40)  # compressed by the host
        return r1, r2

    r1, r2 = asyncio.run(talk())
    assert r1["echo"] == {"id": r1["id"], "op": "info"} and r2["echo"]["rules"][0] == {"name": "x" * 50}
    assert [m["op"] for m in pipe.messages] == ["info", "rules_put"]
    assert pipe.state()["session"] is True


def test_device_frames_counters_and_keys(fw, keystore):
    pipe = fw()
    do_pair(pipe, keystore)
    app = session_app(pipe, keystore)
    for i in range(3):
        out, _ = pipe.record(app.seal(payload({"id": i, "op": "ping"})))
        assert len(out) == 1 and out[0][1:9] == i.to_bytes(8, "big")
        assert app.open(out[0]) == {"id": i, "ok": True, "echo": {"id": i, "op": "ping"}}


def test_wrong_code_stores_nothing_and_rate_limit_grows(fw, keystore, tmp_path):
    pipe = fw()
    store = tmp_path / "store"
    pipe.state()  # the device is up and has written its identity
    before = sorted(p.name for p in store.iterdir())
    for k in range(1, 10):
        with pytest.raises(WrongCode):
            do_pair(pipe, keystore, "87654321")
        st = pipe.state()
        assert st["failures"] == k and st["paired"] == [] and not st["locked"]
        assert keystore.list() == []
        # refused for min(2**(k-1), 60) s, stated in retry_after_s
        delay = min(2 ** (k - 1), 60)
        out, _ = pipe.record(b"\x01" + u8len(b"keyhook-app:" + keystore.app_id.encode()))
        code, retry, message = error_of(out)
        assert (code, retry) == (ERR["rate_limited"], delay) and "try again" in message
        if delay > 1:
            pipe.control({"advance_s": delay - 1})
            with pytest.raises(RateLimited):
                do_pair(pipe, keystore)
        pipe.control({"advance_s": 1})
    assert sorted(p.name for p in store.iterdir()) == before  # no pairings file appeared
    # the 10th failure locks out; time does not lift it, the button does
    with pytest.raises(WrongCode):
        do_pair(pipe, keystore, "00000000")
    pipe.control({"advance_s": 3600})
    with pytest.raises(LockedOut):
        do_pair(pipe, keystore)
    assert pipe.state()["locked"] is True
    pipe.control({"button": True})
    do_pair(pipe, keystore)
    st = pipe.state()
    assert st["failures"] == 0 and st["paired"] == [keystore.app_id]


def test_restart_lifts_lock_out_and_keeps_code(fw, keystore):
    pipe = fw()
    for _ in range(10):
        with pytest.raises(WrongCode):
            do_pair(pipe, keystore, "11111111")
        pipe.control({"advance_s": 60})
    assert pipe.state()["locked"]
    pipe.close()
    pipe = fw()  # power cycle: same store
    st = pipe.state()
    assert st["failures"] == 0 and not st["locked"] and st["paired"] == []
    do_pair(pipe, keystore)


def test_setup_code_made_once_and_kept(fw, keystore, tmp_path):
    pipe = fw(code=None)
    st = pipe.state()
    code, dev = st["setup_code"], st["device_id"]
    assert len(code) == 8 and code.isdigit() and len(dev) == 12
    log = pipe.close()
    assert code in log  # printed on the console while unpaired
    pipe = fw(code=None)
    st = pipe.state()
    assert (st["setup_code"], st["device_id"]) == (code, dev)
    do_pair(pipe, keystore, code)
    pipe.close()
    pipe = fw(code=None)
    assert pipe.state()["setup_code"] == code
    assert code not in pipe.close()  # not printed once paired
    other = fw("other", code=None)
    assert other.state()["setup_code"] != code or other.state()["device_id"] != dev


def test_pairing_window_for_a_second_app(fw, make_keystore):
    admin, second, third = make_keystore("admin"), make_keystore("second"), make_keystore("third")
    pipe = fw()
    do_pair(pipe, admin)
    with pytest.raises(PairingClosed):
        do_pair(pipe, second)
    code = pipe.control({"open_window": 300})["code"]
    assert len(code) == 8 and code.isdigit()
    with pytest.raises(WrongCode):  # the setup code no longer pairs
        do_pair(pipe, second, CODE)
    pipe.control({"advance_s": 1})
    do_pair(pipe, second, code)
    st = pipe.state()
    assert sorted(st["paired"]) == sorted([admin.app_id, second.app_id]) and not st["window_open"]
    with pytest.raises(PairingClosed):  # one-time: the window closed with its use
        do_pair(pipe, third, code)
    code = pipe.control({"open_window": 30})["code"]
    pipe.control({"advance_s": 31})
    with pytest.raises(PairingClosed):
        do_pair(pipe, third, code)
    # both apps hold working pairings
    for ks in (admin, second):
        session_app(pipe, ks)
        pipe.drop()


def test_removing_a_pairing_revokes_at_once(fw, make_keystore):
    admin, other = make_keystore("admin"), make_keystore("other")
    pipe = fw()
    do_pair(pipe, admin)
    code = pipe.control({"open_window": 60})["code"]
    do_pair(pipe, other, code)
    app = session_app(pipe, other)
    out, _ = pipe.record(app.seal(payload({"id": 1, "op": "info"})))
    assert len(out) == 1
    assert pipe.control({"remove": other.app_id})["removed"] is True
    n = len(pipe.messages)
    out, _ = pipe.record(app.seal(payload({"id": 2, "op": "info"})))
    assert error_of(out)[0] == ERR["not_paired"] and len(pipe.messages) == n
    with pytest.raises(Exception):
        session_app(pipe, other)
    assert pipe.closed[-1] == ERR["auth_failed"]  # its key opens no pairing any more
    assert pipe.state()["paired"] == [admin.app_id]


@pytest.fixture
def live(fw, keystore):
    pipe = fw()
    do_pair(pipe, keystore)
    app = session_app(pipe, keystore)
    out, _ = pipe.record(app.seal(payload({"id": 0, "op": "first"})))
    assert app.open(out[0])["echo"] == {"id": 0, "op": "first"}
    return pipe, app


def _flip(rec: bytes, i: int) -> bytes:
    b = bytearray(rec)
    b[i] ^= 0x01
    return bytes(b)


TAMPER = {
    "ciphertext bit": lambda app, f: _flip(f, 12),
    "tag bit": lambda app, f: _flip(f, len(f) - 1),
    "counter bit": lambda app, f: _flip(f, 8),
    "truncated": lambda app, f: f[:-1],
    "extended": lambda app, f: f + b"\x00",
    "tag only": lambda app, f: f[:1] + f[-32:],
    "replayed": lambda app, f: app.replay,
    "reordered": lambda app, f: app.seal(payload({"id": 9}), ctr=app.ctr_out + 1),
    "wrong key direction": lambda app, f: f[:-32] + __import__("hmac").new(app.k_mac_d2a, f[:-32], "sha256").digest(),
}


@pytest.mark.parametrize("kind", sorted(TAMPER))
def test_tampered_frames_refused_and_nothing_acted_on(live, kind):
    pipe, app = live
    app.replay = app.seal(payload({"id": 1, "op": "second"}))
    out, _ = pipe.record(app.replay)
    assert len(out) == 1
    n = len(pipe.messages)
    frame = app.seal(payload({"id": 2, "op": "delete_everything"}))
    out, events = pipe.record(TAMPER[kind](app, frame))
    code, _, message = error_of(out)
    assert code == ERR["bad_frame"], message
    assert len(pipe.messages) == n and {"event": "closed", "error": code} in events
    assert pipe.state()["session"] is False
    # the session is gone: even the untouched frame is not accepted now
    out, _ = pipe.record(frame)
    assert error_of(out)[0] == ERR["bad_record"] and len(pipe.messages) == n


BAD_PAYLOADS = {
    "unknown flags": (b"\x02{}", "bad_frame"),
    "empty": (b"", "bad_frame"),
    "not JSON": (b"\x00{not json", "bad_frame"),
    "JSON array": (b"\x00[1, 2]", "bad_frame"),
    "bad UTF-8": (b"\x00{\"a\": \"\xff\xfe\"}", "bad_frame"),
    "bad zlib": (b"\x01" + b"\x78\x9c garbage", "bad_frame"),
    "zlib bad checksum": (b"\x01" + zlib.compress(b"{}")[:-1] + b"\x00", "bad_frame"),
    "zlib truncated": (b"\x01" + zlib.compress(b"{\"a\": 1}")[:-3], "bad_frame"),
    "zlib trailing data": (b"\x01" + zlib.compress(b"{}") + b"x", "bad_frame"),
    "body over MAX_PAYLOAD": (b"\x00" + json.dumps({"a": "x" * 8190}).encode(), "too_large"),
    "zlib bomb": (b"\x01" + zlib.compress(json.dumps({"a": "x" * 200000}).encode(), 9), "too_large"),
}


@pytest.mark.parametrize("kind", sorted(BAD_PAYLOADS))
def test_bad_payloads_refused(live, kind):
    pipe, app = live
    p, want = BAD_PAYLOADS[kind]
    n = len(pipe.messages)
    out, _ = pipe.record(app.seal(p))
    assert error_of(out)[0] == ERR[want] and len(pipe.messages) == n and pipe.state()["session"] is False


def test_payload_limits_exact(live):
    pipe, app = live
    body = json.dumps({"id": 5, "a": "x" * (8192 - 18)}).encode()
    assert len(body) == 8192
    out, _ = pipe.record(app.seal(b"\x00" + body))
    assert pipe.messages[-1]["id"] == 5
    assert app.open(out[0]) == {"id": 5, "ok": False, "error": "too_large"}  # the echo would not fit
    out, _ = pipe.record(app.seal(b"\x01" + zlib.compress(body)))
    assert pipe.messages[-1]["id"] == 5 and len(out) == 1
    rec = app.seal(b"\x00" + b"x" * (8256 - 41))
    assert len(rec) > 8256
    out, _ = pipe.record(rec)
    assert error_of(out)[0] == ERR["bad_record"]


def test_handshake_refusals(fw, keystore, make_keystore):
    pipe = fw()
    do_pair(pipe, keystore)
    stranger = make_keystore("stranger")
    # an app the device does not know: answered as a paired one until its MAC is checked
    unknown = SessionApp(pipe, stranger.app_id, os.urandom(32))
    out = unknown.hello()
    assert len(out) == 1 and out[0][0] == 0x11
    assert error_of(unknown.finish(out[0]))[0] == ERR["auth_failed"]
    # a low-order eA (all-zero shared secret)
    app = SessionApp(pipe, keystore.app_id, keystore.get(pipe.state()["device_id"]).key)
    assert error_of(app.hello(e_pub=bytes(32)))[0] == ERR["bad_record"]
    # a wrong macA (a stranger holding another key)
    out = app.hello()
    assert error_of(app.finish(out[0], mac_a=bytes(32)))[0] == ERR["auth_failed"]
    # DATA before HELLO_APP; HELLO_APP before HELLO
    out = app.hello()
    app.k_enc_a2d = app.k_mac_a2d = bytes(32)
    assert error_of(pipe.record(app.seal(payload({"id": 1})))[0])[0] == ERR["bad_record"]
    assert error_of(pipe.record(b"\x12" + bytes(32))[0])[0] == ERR["bad_record"]
    assert pipe.messages == [] and pipe.state()["paired"] == [keystore.app_id]


MALFORMED = {
    "empty": b"",
    "unknown type": b"\x55hello",
    "error from app": b"\x7f\x01\x00\x00",
    "PAIR_REQ no id": b"\x01",
    "PAIR_REQ short": b"\x01\x2c" + b"keyhook-app:",
    "PAIR_REQ long": b"\x01\x2c" + b"keyhook-app:" + b"a" * 32 + b"x",
    "PAIR_REQ bad prefix": b"\x01\x2c" + b"keyhook-xxx:" + b"a" * 32,
    "PAIR_REQ upper hex": b"\x01\x2c" + b"keyhook-app:" + b"A" * 32,
    "PAIR_REQ id > 64": b"\x01\x41" + b"keyhook-app:" + b"a" * 53,
    "PAIR_B first": b"\x03" + bytes(97),
    "PAIR_OK from app": b"\x04" + bytes(32),
    "HELLO short": b"\x10" + bytes(31),
    "HELLO long": b"\x10" + bytes(33),
    "HELLO naming an app (the earlier format)": b"\x10\x2c" + b"keyhook-app:" + b"a" * 32 + bytes(32),
    "over MAX_RECORD": b"\x10" + bytes(8256),
}


def test_malformed_records(fw):
    pipe = fw()
    for name, rec in MALFORMED.items():
        out, events = pipe.record(rec)
        assert error_of(out)[0] == ERR["bad_record"], name
        assert events[-1] == {"event": "closed", "error": ERR["bad_record"]}
    st = pipe.state()
    assert st["paired"] == [] and st["failures"] == 0


def test_bad_pb_point_is_not_a_guess(fw, keystore):
    pipe = fw()
    id_b = b"keyhook-app:" + keystore.app_id.encode()
    for bad in (bytes(65), b"\x04" + b"\x11" * 64, b"\x05" + bytes(64)):
        out, _ = pipe.record(b"\x01" + u8len(id_b))
        assert out[0][0] == 0x02
        out, _ = pipe.record(b"\x03" + bad + bytes(32))
        assert error_of(out)[0] == ERR["bad_record"]
        pipe.control({"advance_s": 3})  # past the gap after an abandoned attempt
    st = pipe.state()
    assert st["failures"] == 0 and st["paired"] == []
    # a second PAIR_REQ mid-pairing, and a disconnect mid-pairing, leave nothing behind
    pipe.record(b"\x01" + u8len(id_b))
    assert error_of(pipe.record(b"\x01" + u8len(id_b))[0])[0] == ERR["bad_record"]
    pipe.control({"advance_s": 3})
    pipe.record(b"\x01" + u8len(id_b))
    pipe.drop()
    pipe.control({"advance_s": 3})
    assert error_of(pipe.record(b"\x03" + bytes(97))[0])[0] == ERR["bad_record"]
    do_pair(pipe, keystore)


def test_abandoned_pair_reqs_are_rate_limited_before_any_p256_work(fw, keystore):
    # issue 9, Low 9: PAIR_REQ, PAIR_A, then nothing (or a disconnect), over and over: after
    # each abandoned attempt the device refuses the next PAIR_REQ for 2 s without computing a
    # share; it is not a wrong code (no failure counted), and pairing works once the gap passed
    pipe = fw()
    id_b = b"keyhook-app:" + keystore.app_id.encode()
    out, _ = pipe.record(b"\x01" + u8len(id_b))
    assert out[0][0] == 0x02  # PAIR_A: the device did one P-256 share
    pipe.drop()
    shares = 0
    for _ in range(5):
        out, _ = pipe.record(b"\x01" + u8len(id_b))
        shares += out[0][0] == 0x02
        if out[0][0] == 0x7F:
            assert error_of(out)[0] == ERR["rate_limited"]
        pipe.drop()
    assert shares == 0  # what the flooder got: no more work out of the device
    assert pipe.state()["failures"] == 0
    pipe.control({"advance_s": 3})
    do_pair(pipe, keystore)


def test_store_files_replaced_atomically_and_damage_handled(fw, keystore, tmp_path):
    pipe = fw()
    do_pair(pipe, keystore)
    store = tmp_path / "store"
    assert sorted(p.name for p in store.iterdir()) == ["device.json", "pairings.json"]  # no .tmp left
    dev = json.loads((store / "device.json").read_text())
    assert dev == {"device_id": pipe.state()["device_id"], "setup_code": CODE}
    pipe.close()
    # a damaged pairings file is not trusted: the device comes up unpaired, and only the
    # setup code (on the label, so: physical access) pairs again
    (store / "pairings.json").write_bytes(b'{"' + keystore.app_id.encode() + b'": {"pk": "zz')
    pipe = fw()
    assert pipe.state()["paired"] == []
    do_pair(pipe, keystore)
    assert pipe.state()["paired"] == [keystore.app_id]


def test_factory_reset_forgets_pairings_keeps_code(fw, keystore):
    pipe = fw()
    do_pair(pipe, keystore)
    before = pipe.state()
    pipe.control({"factory_reset": True})
    st = pipe.state()
    assert st["paired"] == [] and (st["setup_code"], st["device_id"]) == (before["setup_code"], before["device_id"])
    old = SessionApp(pipe, keystore.app_id, keystore.get(before["device_id"]).key)
    out = old.hello()
    assert error_of(old.finish(out[0]))[0] == ERR["auth_failed"]
    do_pair(pipe, keystore)


def test_records_as_memoryviews_of_a_reused_buffer(micropython, tmp_path):
    # the GATT layer may hand records over as memoryviews of its reassembly buffer, which it
    # then overwrites: the channel must copy what it keeps
    got = micropython.json("""
    import asyncio, json
    from hashlib import sha256
    from kh.crypto import spake2, x25519
    from kh.crypto.hmac import hkdf, hmac_sha256
    from kh.session import frames
    from kh.session.channel import Channel, derive_w, u8len
    from kh.session.device import Device
    buf = bytearray(9000)
    def feed(ch, rec):
        buf[:len(rec)] = rec
        r = asyncio.run(ch.receive(memoryview(buf)[:len(rec)]))
        for i in range(len(buf)):
            buf[i] = 0xEE
        return r
    dev = Device(ROOT, log=lambda s: None)
    dev.set_setup_code("12345678")
    B = b"keyhook-app:" + b"c" * 32
    ch = Channel(dev)
    r, _ = feed(ch, b"\\x01" + u8len(B))
    app = spake2.Spake2("B", derive_w("12345678", dev.identity, B), dev.identity, B, b"keyhook-pair-v1")
    ke, cb, ca = app.finish(r[0][2 + r[0][1]:])
    r, _ = feed(ch, b"\\x03" + app.share + cb)
    ok_pair = r[0] == b"\\x04" + ca
    sk, ea = x25519.keypair()
    r, _ = feed(ch, b"\\x10" + ea)
    n = r[0][1]
    ed = r[0][2 + n:2 + n + 32]
    th = sha256(b"keyhook-session-v2" + u8len(dev.identity) + ea + ed).digest()
    pk = dev.pairing_key("c" * 32)
    okm = hkdf(th, x25519.x25519(sk, ed) + pk, b"keyhook-session-keys-v1", 128)
    r, _ = feed(ch, b"\\x12" + hmac_sha256(pk, b"app", th))
    tx = frames.Direction(okm[0:32], okm[32:64])
    msgs = []
    for i in range(3):
        r, m = feed(ch, tx.seal(frames.encode_payload({"id": i, "v": "x" * (100 * i)})))
        msgs.append(m)
    print(json.dumps({"pair": ok_pair, "app": ch.app_id, "msgs": msgs}))
    """.replace("ROOT", repr(str(tmp_path / "mvstore"))))
    assert got["pair"] and got["app"] == "c" * 32
    assert got["msgs"] == [{"id": i, "v": "x" * (100 * i)} for i in range(3)]


def test_overlapping_attempts_cannot_share_a_delay(micropython, tmp_path):
    # two connections start pairing; the first guesses wrong: the second's PAIR_B is refused by
    # the rate limit instead of being a second guess inside the delay
    got = micropython.json("""
    import asyncio, json
    from kh.crypto import spake2
    from kh.session.channel import Channel, derive_w, u8len
    from kh.session.device import Device
    clock = [0]
    dev = Device(ROOT, clock_ms=lambda: clock[0], log=lambda s: None)
    dev.set_setup_code("12345678")
    B1 = b"keyhook-app:" + b"1" * 32
    B2 = b"keyhook-app:" + b"2" * 32
    def start(B, code):
        ch = Channel(dev)
        r, _ = asyncio.run(ch.receive(b"\\x01" + u8len(B)))
        app = spake2.Spake2("B", derive_w(code, dev.identity, B), dev.identity, B, b"keyhook-pair-v1")
        ke, cb, ca = app.finish(r[0][2 + r[0][1]:])
        return ch, b"\\x03" + app.share + cb
    ch1, pb1 = start(B1, "00000000")
    ch2, pb2 = start(B2, "12345678")
    r1, _ = asyncio.run(ch1.receive(pb1))
    r2, _ = asyncio.run(ch2.receive(pb2))
    clock[0] += 1000
    ch3, pb3 = start(B2, "12345678")
    r3, _ = asyncio.run(ch3.receive(pb3))
    print(json.dumps({"r1": r1[0][1], "r2": r2[0][1], "retry": r2[0][3], "r3": r3[0][0],
                      "paired": dev.pairings()}))
    """.replace("ROOT", repr(str(tmp_path / "overlap"))))
    assert (got["r1"], got["r2"], got["retry"]) == (3, 4, 1)  # wrong_code, then rate_limited 1 s
    assert got["r3"] == 0x04 and got["paired"] == ["2" * 32]


def test_lost_identity_drops_pairings_made_under_it(fw, keystore, tmp_path):
    pipe = fw()
    do_pair(pipe, keystore)
    pipe.close()
    (tmp_path / "store" / "device.json").write_bytes(b"{not json")
    pipe = fw()
    st = pipe.state()
    assert st["paired"] == [] and st["device_id"] != keystore.list()[0].device_id
    do_pair(pipe, keystore)  # the setup code (--code) pairs again
