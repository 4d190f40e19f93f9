"""Bounded fuzzing of the OAuth layer under MicroPython: the form encoder against CPython's
form parser, and the token-answer parser against random and mutated answers (it must fail only
with FireError("token_endpoint"), never echo a byte of the answer)."""

from __future__ import annotations

import json
import random
from urllib.parse import parse_qsl

import pytest

ALPHABET = "aZ09-._~ +&=%/?#\u00e9\u20ac\U0001f511\n\r\t\"'\\"


@pytest.mark.slow
def test_form_encoding_round_trips_through_cpython(mpo, tmp_path):
    rnd = random.Random(7)
    values = ["".join(rnd.choice(ALPHABET) for _ in range(rnd.randint(0, 40))) for _ in range(400)]
    # raw UTF-8: MicroPython's json does not join \u surrogate pairs
    (tmp_path / "values.json").write_text(json.dumps(values, ensure_ascii=False), encoding="utf-8")
    out = mpo.json(f"""
        import json
        from kh.oauth import grant
        vals = json.load(open("{tmp_path}/values.json"))
        K.out([grant.encode([("v", v), ("w", "x")]).decode() for v in vals])
    """)
    for v, body in zip(values, out):
        assert set(body) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+%&=")
        assert parse_qsl(body, keep_blank_values=True, strict_parsing=True) == [("v", v), ("w", "x")]


@pytest.mark.slow
def test_answer_parser_fails_only_with_token_endpoint(mpo, tmp_path):
    rnd = random.Random(11)
    good = json.dumps({"access_token": "SECRETAT", "token_type": "Bearer", "expires_in": 60,
                       "refresh_token": "SECRETRT"}).encode()
    cases = []
    for _ in range(300):
        b = bytearray(good)
        for _ in range(rnd.randint(1, 6)):
            op = rnd.random()
            i = rnd.randrange(len(b)) if b else 0
            if op < 0.4 and b:
                b[i] = rnd.randrange(256)
            elif op < 0.7 and b:
                del b[i:i + rnd.randint(1, 8)]
            else:
                b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        cases.append([rnd.choice([200, 200, 200, 400, 401, 500, 302, 0, 99]), b.hex()])
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    out = mpo.json(f"""
        import json, binascii
        from kh.oauth import grant
        from kh.http.errors import FireError
        res = []
        for st, hx in json.load(open("{tmp_path}/cases.json")):
            try:
                at, rt, ttl = grant.parse(st, binascii.unhexlify(hx))
                res.append(["ok", at, rt])
            except FireError as e:
                res.append([e.code, e.message])
        K.out(res)
    """, timeout=120)
    assert len(out) == len(cases)
    for (status, _), r in zip(cases, out):
        if r[0] == "ok":
            assert 200 <= status <= 299
            assert all(33 <= ord(c) <= 126 for c in r[1])
        else:
            assert r[0] == "token_endpoint"
            assert "SECRET" not in r[1]
