# HMAC-SHA256 (RFC 2104) and HKDF-SHA256 (RFC 5869) over hashlib.sha256.
from hashlib import sha256
from micropython import const

_BLOCK = const(64)
_HLEN = const(32)
_IPAD = bytes(0x36 for _ in range(64))
_OPAD = bytes(0x5C for _ in range(64))


def _xor_pad(key, pad):
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    out = bytearray(pad)
    for i in range(len(key)):
        out[i] ^= key[i]
    return out


class Hmac:
    # A key prepared once (both pads), used for many messages.
    def __init__(self, key):
        self._i = _xor_pad(key, _IPAD)
        self._o = _xor_pad(key, _OPAD)

    def digest(self, *parts):
        h = sha256(self._i)
        for p in parts:
            h.update(p)
        o = sha256(self._o)
        o.update(h.digest())
        return o.digest()


def hmac_sha256(key, *parts):
    return Hmac(key).digest(*parts)


def hkdf_extract(salt, ikm):
    if not salt:
        salt = bytes(_HLEN)
    return hmac_sha256(salt, ikm)


def hkdf_expand(prk, info, length):
    if length > 255 * _HLEN:
        raise ValueError("hkdf length")
    mac = Hmac(prk)
    out = bytearray()
    t = b""
    n = 1
    while len(out) < length:
        t = mac.digest(t, info, bytes((n,)))
        out.extend(t)
        n += 1
    return bytes(out[:length])


def hkdf(salt, ikm, info, length):
    return hkdf_expand(hkdf_extract(salt, ikm), info, length)
