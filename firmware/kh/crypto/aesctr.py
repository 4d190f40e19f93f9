# AES-256-CTR from cryptolib ECB blocks, with the counter block of PROTOCOL.md section 5:
# block i of a frame is ctr(8) || i(8), both big-endian. The work goes in chunks of 16 blocks
# (256 bytes): each chunk's counter blocks are one big-integer expression, encrypted by one
# ECB call into a reused buffer, and XORed as big integers, so it runs in C, not in a byte
# loop, and the garbage per chunk stays around 1 KiB whatever the frame size. (64-block
# chunks ran an 8 KiB frame about a fifth faster but kept 3 KiB of tables and buffer resident.)
from cryptolib import aes
from micropython import const

_ECB = const(1)
_CHUNK = const(16)  # blocks
_R = 1 << 128
# sum over j < _CHUNK of 2**(128 * j): a 1 in the low half of every block (built at import: as
# a literal the compiler would fold it into decimal digits in the .mpy)
_ONES = int.from_bytes((bytes(15) + b"\x01") * _CHUNK, "big")
# block j (from the top) holds j: sum over k < _CHUNK of (_CHUNK - 1 - k) * 2**(128 * k)
_IDX = ((_R << (128 * (_CHUNK - 1))) - _CHUNK * _R + (_CHUNK - 1)) // ((_R - 1) * (_R - 1))


# the keystream chunk buffer, shared by every instance (xor never yields half-way)
_KS = bytearray(16 * _CHUNK)


class AesCtr:
    def __init__(self, key):
        if len(key) != 32:
            raise ValueError("AES-256 key")
        self._ecb = aes(key, _ECB)

    # XOR data with the keystream of frame counter ctr into out (a writable buffer of at least
    # len(data) bytes; it may be data itself), or into a new bytearray; returns it.
    def xor(self, ctr, data, out=None):
        n = len(data)
        if out is None:
            out = bytearray(n)
        if n == 0:
            return out
        if ctr >> 64 or (n + 15) >> 4 >= 1 << 64:
            raise ValueError("counter out of range")
        src = memoryview(data)
        ksv = memoryview(_KS)
        base = ctr << 64
        off = 0
        block = 0
        while off < n:
            m = min(n - off, 16 * _CHUNK)
            k = (m + 15) >> 4
            drop = 128 * (_CHUNK - k)
            cb = ((base | block) * (_ONES >> drop) + (_IDX >> drop)).to_bytes(16 * k, "big")
            self._ecb.encrypt(cb, ksv[: 16 * k])
            x = int.from_bytes(src[off : off + m], "big") ^ int.from_bytes(ksv[:m], "big")
            out[off : off + m] = x.to_bytes(m, "big")
            off += m
            block += k
        return out
