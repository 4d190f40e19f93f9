# AES-256-CTR from cryptolib ECB blocks, with the counter block of PROTOCOL.md section 5:
# block i of a frame is ctr(8) || i(8), both big-endian. The counter blocks, the keystream and
# the XOR are built as big integers, so the work per frame happens in C, not in a byte loop.
from cryptolib import aes
from micropython import const

_ECB = const(1)
_MAX_BLOCKS = const(1040)  # 16.6 KiB per call; more than any record carries

# Templates over the largest frame: block i holds 0(8) || i(8), and 1 at byte 7 (so that
# ctr * _ONES puts ctr in the first half of every block). A frame of n blocks uses the
# first 16 * n bytes of each.
_idx = None
_ones = None


def _templates():
    global _idx, _ones
    if _idx is None:
        idx = bytearray(16 * _MAX_BLOCKS)
        for i in range(_MAX_BLOCKS):
            idx[16 * i + 14] = i >> 8
            idx[16 * i + 15] = i & 0xFF
        ones = bytearray(16 * _MAX_BLOCKS)
        for i in range(_MAX_BLOCKS):
            ones[16 * i + 7] = 1
        _idx = bytes(idx)
        _ones = bytes(ones)
    return _idx, _ones


class AesCtr:
    def __init__(self, key):
        if len(key) != 32:
            raise ValueError("AES-256 key")
        self._ecb = aes(key, _ECB)

    # XOR data with the keystream of frame counter ctr; returns new bytes.
    def xor(self, ctr, data):
        n = len(data)
        if n == 0:
            return b""
        blocks = (n + 15) >> 4
        if blocks > _MAX_BLOCKS:
            raise ValueError("frame too large")
        idx, ones = _templates()
        size = blocks << 4
        cb = (ctr * int.from_bytes(ones[:size], "big") + int.from_bytes(idx[:size], "big")).to_bytes(size, "big")
        ks = bytearray(size)
        self._ecb.encrypt(cb, ks)
        x = int.from_bytes(data, "big") ^ int.from_bytes(ks[:n], "big")
        return x.to_bytes(n, "big")
