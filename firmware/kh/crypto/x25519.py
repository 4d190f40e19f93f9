# X25519 (RFC 7748, section 5): the Montgomery ladder over big integers.
# Big-integer arithmetic is not constant time; the keys here are ephemeral (one per session).
import os

_P = 2**255 - 19
_A24 = 121665


def _decode_scalar(k):
    if len(k) != 32:
        raise ValueError("X25519 scalar is 32 bytes")
    b = bytearray(k)
    b[0] &= 248
    b[31] &= 127
    b[31] |= 64
    return int.from_bytes(b, "little")


def _decode_u(u):
    if len(u) != 32:
        raise ValueError("X25519 point is 32 bytes")
    return int.from_bytes(u, "little") & ((1 << 255) - 1)


def x25519(k, u):
    p = _P
    k = _decode_scalar(k)
    x1 = _decode_u(u) % p
    x2, z2, x3, z3 = 1, 0, x1, 1
    swap = 0
    for t in range(254, -1, -1):
        kt = (k >> t) & 1
        if swap ^ kt:
            x2, x3 = x3, x2
            z2, z3 = z3, z2
        swap = kt
        A = x2 + z2
        AA = A * A % p
        B = x2 - z2
        BB = B * B % p
        E = AA - BB
        C = x3 + z3
        D = x3 - z3
        DA = D * A % p
        CB = C * B % p
        x3 = (DA + CB) * (DA + CB) % p
        z3 = x1 * (DA - CB) * (DA - CB) % p
        x2 = AA * BB % p
        z2 = E * (AA + _A24 * E) % p
    if swap:
        x2, x3 = x3, x2
        z2, z3 = z3, z2
    return (x2 * pow(z2, p - 2, p) % p).to_bytes(32, "little")


_BASE = b"\x09" + bytes(31)


def keypair():
    sk = os.urandom(32)
    return sk, x25519(sk, _BASE)


def public(sk):
    return x25519(sk, _BASE)
