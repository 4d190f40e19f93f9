"""Random and mutated records against the firmware's channel: 10,000 cases, no crash, no state
change, a clear ERROR (and a closed channel) for every refused record."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import random

import pytest

from fw_app import SessionApp, payload, u8len
from fwpipe import CODE, PipeLink
from keyhook.session import pair

TYPES = [0x01, 0x02, 0x03, 0x04, 0x10, 0x11, 0x12, 0x20, 0x7F]


def _mutate(rng: random.Random, rec: bytes) -> bytes:
    b = bytearray(rec)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2 and len(b) > 1:
            del b[rng.randrange(len(b)):][: rng.randint(1, 40)]
        elif op == 3:
            i = rng.randrange(len(b) + 1)
            b[i:i] = os.urandom(rng.randint(1, 40))
        else:
            b = b[: rng.randrange(len(b) + 1)]
    return bytes(b)


def _check_refusal(out, events):
    assert len(out) == 1 and out[0][0] == 0x7F and 1 <= out[0][1] <= 11, out
    assert len(out[0]) <= 4 + 200
    out[0][4:].decode()  # a UTF-8 message
    assert events[-1] == {"event": "closed", "error": out[0][1]}


@pytest.mark.slow
def test_fuzz_channel(fw, keystore, tmp_path):
    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    pipe = fw()
    asyncio.run(pair(PipeLink(pipe), CODE, keystore))
    before = pipe.state()
    pairings_file = (tmp_path / "store" / "pairings.json").read_bytes()
    dev_id = before["device_id"]
    id_b = b"keyhook-app:" + keystore.app_id.encode()
    stranger = b"keyhook-app:" + os.urandom(16).hex().encode()
    seeds = [b"\x01" + u8len(id_b), b"\x01" + u8len(stranger), b"\x10" + os.urandom(32),
             b"\x10" + u8len(stranger) + os.urandom(32), b"\x03" + os.urandom(97), b"\x12" + os.urandom(32),
             b"\x20" + os.urandom(8) + os.urandom(60)]
    cases = 0
    # 1. random and mutated records on a fresh connection
    for _ in range(8700):
        r = rng.random()
        if r < 0.3:
            rec = bytes([rng.choice(TYPES)]) + os.urandom(rng.randint(0, 120))
        elif r < 0.35:
            rec = os.urandom(rng.choice([0, 1, 2, 300, 8256, 8257, 9000]))
        else:
            rec = _mutate(rng, rng.choice(seeds))
        out, events = pipe.record(rec)
        cases += 1
        if out and out[0][0] == 0x11:  # a HELLO that parsed: the device waits for HELLO_APP
            pipe.drop()
            continue
        _check_refusal(out, events)
    # 2. mutated handshake answers and mutated DATA frames inside a live session
    key = keystore.get(dev_id).key
    for i in range(1500):
        app = SessionApp(pipe, keystore.app_id, key)
        out = app.hello()
        if i % 5 == 0:
            n = out[0][1]
            e_d = out[0][2 + n:2 + n + 32]
            th = hashlib.sha256(b"keyhook-session-v2" + u8len(out[0][2:2 + n]) + app.e_a + e_d).digest()
            mac_a = hmac.new(key, b"app" + th, hashlib.sha256).digest()
            good = b"\x12" + mac_a
            bad = _mutate(rng, good)
            if bad == good:
                pipe.drop()
                continue
            out, events = pipe.record(bad)
            cases += 1
            _check_refusal(out, events)
            continue
        assert app.finish(out[0]) == []
        frame = app.seal(payload({"id": i, "op": "x", "v": os.urandom(rng.randint(0, 64)).hex()}, rng.random() < 0.5))
        bad = _mutate(rng, frame)
        if bad == frame:
            pipe.drop()
            continue
        out, events = pipe.record(bad)
        cases += 1
        _check_refusal(out, events)
    assert cases >= 10_000
    after = pipe.state()
    assert pipe.messages == []
    assert (after["paired"], after["failures"], after["locked"]) == (before["paired"], 0, False)
    assert (tmp_path / "store" / "pairings.json").read_bytes() == pairings_file
    assert pipe.proc.poll() is None
