# SPAKE2 (RFC 9382), suite P256-SHA256-HKDF-HMAC, with the RFC's M and N, h = 1.
# Role A computes pA = x*G + w*M and K = x*(pB - w*N) = x*pB - (x*w)*N; role B the mirror.
# Both share the doublings of two scalar multiplications (p256.mul2).
import os
from hashlib import sha256

from kh.crypto import p256
from kh.crypto.hmac import hkdf, hmac_sha256

_M_SEC1 = b"\x02\x88\x6e\x2f\x97\xac\xe4\x6e\x55\xba\x9d\xd7\x24\x25\x79\xf2\x99\x3b\x64\xe1\x6e\xf3\xdc\xab\x95\xaf\xd4\x97\x33\x3d\x8f\xa1\x2f"
_N_SEC1 = b"\x03\xd8\xbb\xd6\xc6\x39\xc6\x29\x37\xb0\x4d\x99\x7f\x38\xc3\x77\x07\x19\xc6\x29\xd7\x01\x4d\x49\xa2\x4b\x4f\x98\xba\xa1\x29\x2b\x49"

def _base(name):
    # the packed table of G, M or N: constants of kh.crypto.p256tab (in place when frozen or
    # in ROMFS; loaded with this module otherwise)
    from kh.crypto import p256tab

    return getattr(p256tab, name)


def random_scalar():
    # uniform in [1, n): 40 random bytes reduced mod n-1, plus 1
    return int.from_bytes(os.urandom(40), "big") % (p256.N - 1) + 1


def _le64(n):
    return n.to_bytes(8, "little")


def transcript(idA, idB, pA, pB, K, w):
    wb = w.to_bytes(32, "big")
    parts = (idA, idB, pA, pB, K, wb)
    out = bytearray()
    for x in parts:
        out.extend(_le64(len(x)))
        out.extend(x)
    return bytes(out)


class Spake2:
    # role "A" or "B"; w an integer in [0, n); idA/idB/aad bytes; x a scalar (tests only)
    def __init__(self, role, w, idA, idB, aad=b"", x=None):
        if role not in ("A", "B"):
            raise ValueError("role")
        self.role = role
        self.w = w % p256.N
        self.idA = idA
        self.idB = idB
        self.aad = aad
        self._x = x if x is not None else random_scalar()
        mine, theirs = ("M", "N") if role == "A" else ("N", "M")
        self._theirs = theirs
        pt = p256.mul2(self._x, _base("G"), self.w, _base(mine))
        self.share = p256.encode(pt)

    # peer's share in -> (Ke, own confirmation, expected peer confirmation); ValueError when
    # the share is not a point of the curve or K is the identity
    def finish(self, peer_share):
        q = p256.decode(peer_share)
        # K = x*Q - (x*w)*N_or_M
        k2 = (-self._x * self.w) % p256.N
        K = p256.mul2(self._x, p256.table(q), k2, _base(self._theirs))
        self._x = None
        if K is None:
            raise ValueError("K is the identity")
        Kb = p256.encode(K)
        if self.role == "A":
            pA, pB = self.share, bytes(peer_share)
        else:
            pA, pB = bytes(peer_share), self.share
        tt = transcript(self.idA, self.idB, pA, pB, Kb, self.w)
        h = sha256(tt).digest()
        Ke, Ka = h[:16], h[16:]
        kc = hkdf(b"", Ka, b"ConfirmationKeys" + self.aad, 32)
        cA = hmac_sha256(kc[:16], tt)
        cB = hmac_sha256(kc[16:], tt)
        self.tt = tt
        self.K = Kb
        if self.role == "A":
            return Ke, cA, cB
        return Ke, cB, cA
