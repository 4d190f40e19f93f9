"""Fuzzing the firmware's channel through the pipe: random and mutated records in every state.

10,500 cases in four batches (one MicroPython process each): on a fresh connection, in the
middle of the handshake, inside a session, and in the middle of a pairing (window open). For
each case the device must answer exactly what the protocol says: a clear ERROR (known code,
a UTF-8 message) that closes the channel, and nothing delivered, no state changed; or, where
the mutant happens to be a well-formed opening record, the protocol's answer to it. Seeds are
fixed (override with KEYHOOK_FUZZ_SEED) so that a failure can be replayed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import zlib

import pytest

from keyhook.session import open_session, pair, records
from keyhook.session.frames import encode_payload
from keyhook.session.pairing import AAD, password_scalar
from keyhook.session.spake2 import Spake2

from .pipe import FirmwareDevice, PipeLink

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("KEYHOOK_FUZZ_SEED", "20261128"))
CODE = "12345678"
CHECK_EVERY = 250
CODES = set(range(1, 12))


def run(coro):
    return asyncio.run(coro)


# -- mutations ------------------------------------------------------------------------------

def mutate(rng: random.Random, rec: bytes) -> bytes:
    """One to three random edits of `rec`; never returns `rec` itself."""
    for _ in range(20):
        b = bytearray(rec)
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            op = rng.randrange(10)
            if op == 0 and b:  # flip one bit
                i = rng.randrange(len(b))
                b[i] ^= 1 << rng.randrange(8)
            elif op == 1 and b:  # set one byte
                b[rng.randrange(len(b))] = rng.randrange(256)
            elif op == 2 and b:  # truncate
                del b[rng.randrange(len(b)):]
            elif op == 3:  # extend
                b += rng.randbytes(rng.choice((1, 2, 16, 100, rng.randrange(1, 9000))))
            elif op == 4 and b:  # delete a byte
                del b[rng.randrange(len(b))]
            elif op == 5:  # insert a byte
                b.insert(rng.randrange(len(b) + 1), rng.randrange(256))
            elif op == 6 and b:  # another record type
                b[0] = rng.choice((0x00, 0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x20, 0x7F, 0xFF))
            elif op == 7 and len(b) > 2:  # a length or count field at a boundary value
                b[1] = rng.choice((0, 1, 63, 64, 65, 127, 255))
            elif op == 8 and len(b) > 9:  # a counter field
                b[1:9] = rng.choice((bytes(8), b"\xff" * 8, rng.randbytes(8), (1).to_bytes(8, "big")))
            elif op == 9:  # random bytes
                b = bytearray(rng.randbytes(rng.randrange(0, 200)))
        if bytes(b) != rec:
            return bytes(b)
    return rec + b"\x00"


def random_record(rng: random.Random) -> bytes:
    n = rng.choice((0, 1, 2, 33, 42, 98, rng.randrange(300), records.MAX_RECORD, records.MAX_RECORD + 1))
    return rng.randbytes(n)


def check_error(recs: list[bytes], events: list[dict], allowed: set[int]) -> int:
    """Exactly one ERROR record with an allowed code and a clear message; the channel closed."""
    assert len(recs) == 1, (recs, events)
    err = recs[0]
    assert err[0] == records.ERROR and len(err) >= 5, err
    code = err[1]
    assert code in allowed, (code, err, events)
    message = err[4:].decode("utf-8")
    assert 0 < len(err) - 4 <= records.ERROR_MESSAGE_MAX and message.strip()
    assert {"event": "closed", "error": code} in events, events
    assert not [e for e in events if e["event"] == "message"], events
    return code


class Fuzz:
    """A device paired with one app, and what must not change while it is fuzzed."""

    def __init__(self, tmp_path, make_keystore, window: bool = False):
        self.device = FirmwareDevice(tmp_path / "store", code=CODE)
        self.ks = make_keystore()
        run(pair(PipeLink(self.device), CODE, self.ks))
        self.device_id = self.device.state()["device_id"]
        self.app_b = records.app_identity(self.ks.app_id)
        self.stored = self.device.stored()
        self.cases = 0
        self.outcomes: dict[str, int] = {}

    def note(self, outcome: str) -> None:
        self.cases += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if self.cases % CHECK_EVERY == 0:
            self.check_unchanged()

    def check_unchanged(self) -> None:
        st = self.device.state()
        assert st["paired"] == [self.ks.app_id], st
        assert st["failures"] == 0 and not st["locked"], st
        assert self.device.stored() == self.stored

    def finish(self) -> None:
        self.check_unchanged()

        async def works():
            s = await open_session(PipeLink(self.device), self.ks)
            return await s.request("info", n=self.cases)
        assert run(works())["echo"]["n"] == self.cases
        self.device.stop()


def _well_formed_app_identity(body: bytes) -> tuple[str | None, int]:
    if not body:
        return None, 0
    n = body[0]
    b = body[1:1 + n]
    if n > 64 or len(b) != n or not b.startswith(records.APP_PREFIX):
        return None, 0
    app_id = b[len(records.APP_PREFIX):]
    if len(app_id) != 32 or any(c not in b"0123456789abcdef" for c in app_id):
        return None, 0
    return app_id.decode(), 1 + n


@pytest.fixture
def fuzz(tmp_path, make_keystore):
    f = Fuzz(tmp_path, make_keystore)
    yield f
    if f.device.proc is not None:
        f.device.stop()


def test_fuzz_fresh_connection(fuzz):
    """5,000 random and mutated records as the first record of a connection."""
    rng = random.Random(SEED)
    d = fuzz.device
    other_b = records.app_identity(os.urandom(16).hex())
    seeds = [
        bytes([records.PAIR_REQ]) + records.u8len(fuzz.app_b),
        bytes([records.HELLO]) + os.urandom(32),
        bytes([records.HELLO]) + records.u8len(other_b) + os.urandom(32),  # the earlier HELLO, naming an app
        bytes([records.PAIR_B]) + os.urandom(97),
        bytes([records.HELLO_APP]) + os.urandom(32),
        bytes([records.DATA]) + bytes(8) + os.urandom(60),
        records.error_record(1, 0, "x"),
    ]
    for i in range(5000):
        rec = random_record(rng) if i % 10 == 0 else mutate(rng, rng.choice(seeds))
        d.disconnect()
        recs, events = d.record(rec)
        # the oracle: what PROTOCOL.md says this record deserves on a fresh connection
        if rec[:1] == bytes([records.PAIR_REQ]) and len(rec) <= records.MAX_RECORD:
            app_id, end = _well_formed_app_identity(rec[1:])
            if app_id and 1 + end == len(rec):
                fuzz.note("pairing_closed" if check_error(recs, events, {6}) else "")
                continue
        if rec[:1] == bytes([records.HELLO]) and len(rec) == 33:
            # HELLO names no app: every well-formed one gets HELLO_DEV (a low-order eA: bad_record)
            if recs and recs[0][0] == records.HELLO_DEV:
                assert len(recs) == 1 and not events
                body = recs[0][1:]
                assert body == records.u8len(records.device_identity(fuzz.device_id)) + body[-32:]
                fuzz.note("hello_dev")
            else:
                check_error(recs, events, {1})
                fuzz.note("refused hello")
            continue
        check_error(recs, events, {1})
        fuzz.note("bad_record")
    assert fuzz.cases == 5000
    fuzz.finish()


def test_fuzz_during_the_handshake(fuzz):
    """1,500 mutated HELLO_APP (and other) records after a genuine HELLO / HELLO_DEV."""
    rng = random.Random(SEED + 1)
    d = fuzz.device
    for i in range(1500):
        d.disconnect()
        recs, events = d.record(bytes([records.HELLO]) + os.urandom(32))
        assert recs[0][0] == records.HELLO_DEV
        genuine_shape = bytes([records.HELLO_APP]) + os.urandom(32)  # the right MAC is out of reach
        rec = mutate(rng, genuine_shape) if i % 4 else random_record(rng)
        recs, events = d.record(rec)
        code = check_error(recs, events, {1, 7})
        if len(rec) == 33 and rec[0] == records.HELLO_APP:
            assert code == 7
        fuzz.note(str(code))
        assert d.state()["session"] is False
    fuzz.finish()


def _authentic_bad_payload(rng: random.Random) -> bytes:
    body = json.dumps({"id": 1, "op": "info", "x": rng.randbytes(20).hex()}).encode()
    kind = rng.randrange(8)
    if kind == 0:
        return bytes([rng.choice((0x02, 0x03, 0x80, 0xFF))]) + body  # unknown flags
    if kind == 1:
        z = bytearray(zlib.compress(body))
        z[rng.randrange(len(z))] ^= 1 << rng.randrange(8)
        return b"\x01" + bytes(z)  # corrupted zlib
    if kind == 2:
        return b"\x01" + zlib.compress(body)[: rng.randrange(1, 10)]  # truncated zlib
    if kind == 3:
        return b"\x00" + body[: rng.randrange(1, len(body) - 1)]  # truncated JSON
    if kind == 4:
        return b"\x00" + rng.choice((b"[]", b"1", b'"s"', b"null", b"\xff\xfe", b"[" * 2000 + b"]" * 2000))
    if kind == 5:
        return b"\x01" + zlib.compress(b'{"a":"' + b"z" * rng.randrange(8200, 60000) + b'"}')  # too large
    if kind == 6:
        return b"\x00" + rng.randbytes(rng.randrange(0, 300))
    return b""


def test_fuzz_inside_a_session(fuzz):
    """3,500 mutated DATA frames (and frames with authentic tags but bad payloads) in a session."""
    rng = random.Random(SEED + 2)
    d = fuzz.device
    old_frames = []

    async def case(i):
        link = PipeLink(d)
        s = await open_session(link, fuzz.ks)
        genuine = s._out.seal(encode_payload({"id": 1, "op": "trigger", "n": i, "pad": "p" * rng.randrange(200)},
                                             compress=rng.random() < 0.5))
        kind = i % 10
        if kind < 7:
            rec, allowed = mutate(rng, genuine), {1, 8, 10}
        elif kind == 7 and old_frames:
            rec, allowed = rng.choice(old_frames), {10}  # a frame of an earlier session: replay
        elif kind == 8:
            rec, allowed = s._out.seal(_authentic_bad_payload(rng)), {8, 10, 11}
        else:
            rec, allowed = random_record(rng), {1, 10}
        old_frames.append(genuine)
        del old_frames[:-50]
        recs, events = d.record(rec)
        return check_error(recs, events, allowed)

    for i in range(3500):
        fuzz.note(str(run(case(i))))
    assert fuzz.outcomes.get("10", 0) > 2000
    fuzz.finish()


def test_fuzz_during_a_pairing(tmp_path, make_keystore):
    """500 mutated PAIR_B records while an admin-opened pairing window is open."""
    rng = random.Random(SEED + 3)
    f = Fuzz(tmp_path, make_keystore)
    d = f.device
    window = d.control(open_window=3600)["code"]
    device_a = records.device_identity(f.device_id)
    for i in range(500):
        d.disconnect()
        app_b = records.app_identity(rng.randbytes(16).hex())
        recs, events = d.record(bytes([records.PAIR_REQ]) + records.u8len(app_b))
        assert recs[0][0] == records.PAIR_A, (recs, events)
        p_a = recs[0][-65:]
        guess = window if i % 3 else "%08d" % rng.randrange(10**8)  # a third: a wrong code
        spake = Spake2("B", password_scalar(guess, device_a, app_b), device_a, app_b, AAD)
        genuine = bytes([records.PAIR_B]) + spake.message + spake.finish(p_a).conf_b
        if guess == window:
            rec = mutate(rng, genuine)
            if i % 3 == 1:  # aim at the confirmation only
                b = bytearray(genuine)
                b[66 + rng.randrange(32)] ^= 1 << rng.randrange(8)
                rec = bytes(b)
        else:
            rec = genuine
        recs, events = d.record(rec)
        code = check_error(recs, events, {1, 3})
        if len(rec) == 98 and rec[0] == records.PAIR_B and rec[1:66] == genuine[1:66]:
            assert code == 3  # a valid point with a wrong proof is a wrong code
        if code == 3:
            d.control(button=True)  # a wrong proof counts as a failed attempt, as it must
        elif code == 1:
            d.control(advance_s=3)  # a malformed PAIR_B abandons the attempt: a 2 s gap follows
        f.note(str(code))
        st = d.state()
        assert st["paired"] == [f.ks.app_id] and st["window_open"] and st["failures"] == 0
    assert f.outcomes.get("3", 0) > 100 and f.outcomes.get("1", 0) > 100
    f.finish()
