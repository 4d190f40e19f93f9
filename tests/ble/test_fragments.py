"""Host-side fragmentation and reassembly (PROTOCOL.md section 1), without a device."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from keyhook.ble import MAX_RECORD, FragmentError, Reassembler, fragment


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=MAX_RECORD), st.sampled_from([20, 21, 100, 185, 244]))
def test_fragments_round_trip_and_fit(record, size):
    frags = fragment(record, size)
    assert all(len(f) <= size for f in frags)
    assert frags[0][0] & 0x80 and frags[-1][0] & 0x40
    assert all(f[0] & 0x3F == 0 for f in frags)
    r = Reassembler()
    out = [r.feed(f) for f in frags]
    assert out[:-1] == [None] * (len(frags) - 1) and out[-1] == record
    assert not r.open


def test_single_fragment_record_layout():
    assert fragment(b"\x01abc", 20) == [b"\xc0\x00\x04\x01abc"]


@pytest.mark.parametrize("frags, why", [
    ([b"\x00abc"], "continuation without a START"),
    ([b"\xc0\x20\x41" + b"x" * 17], "record of 8257 bytes"),
    ([b"\x80\x00\x10abc", b"\x80\x00\x02ab"], "new record started"),
    ([b"\x80\x00\x10abc", b"\x40abc"], "END after 6 of 16"),
    ([b"\x80\x00\x04abc", b"\x00abc"], "more data than"),
    ([b"\xc1\x00\x01a"], "reserved"),
    ([b"\x80\x00"], "without its length"),
])
def test_rejections(frags, why):
    r = Reassembler()
    with pytest.raises(FragmentError, match=why):
        for f in frags:
            r.feed(f)
    assert not r.open  # the partial record is gone
    assert r.feed(b"\xc0\x00\x01z") == b"z"


def test_reset_discards_partial():
    r = Reassembler()
    assert r.feed(b"\x80\x00\x05ab") is None
    r.reset()
    with pytest.raises(FragmentError):
        r.feed(b"\x40cde")


def test_fragment_refuses_empty_and_oversized():
    with pytest.raises(ValueError):
        fragment(b"", 20)
    with pytest.raises(ValueError):
        fragment(b"x" * (MAX_RECORD + 1), 244)
