"""Fuzzing the host side: whatever a device (or anyone on the radio) answers, the app raises a
`ChannelError` with a message (never another exception), stores nothing unless the exchange
was genuine, and acts on no unauthenticated frame. Uses the pure-host device stand-in."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keyhook.session.keystore import Keystore
from keyhook.session import ChannelError, open_session, pair, records

from .standin import StandInDevice, StandInLink

pytestmark = pytest.mark.slow

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))


def mutation():
    """A function that rewrites one record: random bytes, or edits of the genuine one."""
    edit = st.one_of(
        st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(0, 7)),
        st.tuples(st.just("cut"), st.integers(0, 10_000)),
        st.tuples(st.just("add"), st.binary(min_size=1, max_size=64)),
        st.tuples(st.just("type"), st.sampled_from([0, 1, 2, 3, 4, 0x10, 0x11, 0x12, 0x20, 0x7F, 0xFF])),
    )
    return st.one_of(
        st.binary(max_size=300).map(lambda b: ("random", b)),
        st.lists(edit, min_size=1, max_size=3).map(lambda e: ("edits", e)),
    )


def apply(m, rec: bytes) -> bytes:
    kind, arg = m
    if kind == "random":
        return arg
    b = bytearray(rec)
    for e in arg:
        if e[0] == "flip" and b:
            b[e[1] % len(b)] ^= 1 << e[2]
        elif e[0] == "cut":
            del b[e[1] % (len(b) + 1):]
        elif e[0] == "add":
            b += e[1]
        elif e[0] == "type" and b:
            b[0] = e[1]
    return bytes(b)


def tamper_once(rtype: int, m):
    def tamper(rec):
        return apply(m, rec) if rec and rec[0] == rtype else rec
    return tamper


@pytest.mark.parametrize("stage", [records.PAIR_A, records.PAIR_OK])
def test_pairing_survives_any_answer(tmp_path_factory, stage):
    @SETTINGS
    @given(m=mutation())
    def check(m):
        ks = Keystore(tmp_path_factory.mktemp("ks"))
        dev = StandInDevice()
        link = StandInLink(dev, tamper_once(stage, m))
        try:
            p = asyncio.run(pair(link, "12345678", ks))
        except ChannelError as e:
            assert str(e)
            assert ks.list() == []
        else:  # only a genuine exchange gets here
            assert ks.get(p.device_id).key == dev.pairings[ks.app_id]
    check()


@pytest.mark.parametrize("stage", [records.HELLO_DEV, records.DATA])
def test_sessions_survive_any_answer(tmp_path_factory, stage):
    ks = Keystore(tmp_path_factory.mktemp("ks"))
    dev = StandInDevice()
    asyncio.run(pair(StandInLink(dev), "12345678", ks))

    @SETTINGS
    @given(m=mutation())
    def check(m):
        link = StandInLink(dev, tamper_once(stage, m))

        async def go():
            s = await open_session(link, ks)
            return await s.request("echo", data="x")
        try:
            r = asyncio.run(go())
        except ChannelError as e:
            assert str(e)
        else:
            assert r == {"id": 1, "ok": True, "echo": "x"}
    check()
