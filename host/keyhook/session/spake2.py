"""SPAKE2 (RFC 9382), suite P256-SHA256-HKDF-HMAC.

Hashes, HKDF and HMAC come from `cryptography`; P-256 point arithmetic, which `cryptography`
has no API for, comes from `ecdsa`. The group order is prime (cofactor h = 1), so no
cofactor clearing is needed; received points are validated on the curve and the identity is
refused.
"""

from __future__ import annotations

import hmac as _hmac
import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from ecdsa.curves import NIST256p
from ecdsa.ellipticcurve import INFINITY, PointJacobi

from keyhook.session.errors import ProtocolError

CURVE = NIST256p.curve
G: PointJacobi = NIST256p.generator
ORDER: int = NIST256p.order

# The RFC's M and N for P-256 (RFC 9382 section 6), SEC1 compressed.
M_BYTES = bytes.fromhex("02886e2f97ace46e55ba9dd7242579f2993b64e16ef3dcab95afd497333d8fa12f")
N_BYTES = bytes.fromhex("03d8bbd6c639c62937b04d997f38c3770719c629d7014d49a24b4f98baa1292b49")
M = PointJacobi.from_bytes(CURVE, M_BYTES, order=ORDER)
N = PointJacobi.from_bytes(CURVE, N_BYTES, order=ORDER)

POINT_LEN = 65


def sha256(data: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    h.update(data)
    return h.finalize()


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    h = c_hmac.HMAC(key, hashes.SHA256())
    h.update(data)
    return h.finalize()


def hkdf_sha256(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    # An empty salt is the RFC 5869 default (HashLen zero bytes) under HMAC's key padding.
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(ikm)


def encode_point(point: PointJacobi) -> bytes:
    """SEC1 uncompressed, 65 bytes."""
    if point == INFINITY:
        raise ProtocolError("SPAKE2 produced the identity point")
    return point.to_bytes("uncompressed")


def decode_point(data: bytes) -> PointJacobi:
    """A peer's point: exactly 65 bytes, uncompressed, coordinates below p, on the curve.

    The curve equation is checked here rather than trusted to `ecdsa`, which decodes
    `04 || 0^64` (not a curve point) without complaint.
    """
    if len(data) != POINT_LEN or data[0] != 0x04:
        raise ProtocolError("the peer's SPAKE2 point is not an uncompressed P-256 point")
    x = int.from_bytes(data[1:33], "big")
    y = int.from_bytes(data[33:65], "big")
    p = CURVE.p()
    if x >= p or y >= p or (y * y - (x * x * x + CURVE.a() * x + CURVE.b())) % p:
        raise ProtocolError("the peer's SPAKE2 point is not on P-256")
    point = PointJacobi(CURVE, x, y, 1, ORDER)
    if point == INFINITY:
        raise ProtocolError("the peer's SPAKE2 point is the identity")
    return point


def le64len(data: bytes) -> bytes:
    return len(data).to_bytes(8, "little") + data


def transcript(id_a: bytes, id_b: bytes, p_a: bytes, p_b: bytes, k: bytes, w: int) -> bytes:
    """TT of RFC 9382 section 4 (lengths as 8-byte little-endian, w as 32 bytes big-endian)."""
    return b"".join(le64len(x) for x in (id_a, id_b, p_a, p_b, k, w.to_bytes(32, "big")))


def derive_w(code: bytes, salt: bytes, info: bytes) -> int:
    """w = int(HKDF-SHA256(salt, ikm=code, info, L=40)) mod n (40 bytes: unbiased)."""
    return int.from_bytes(hkdf_sha256(code, salt, info, 40), "big") % ORDER


@dataclass(frozen=True)
class KeySchedule:
    """RFC 9382 section 4: everything derived from the transcript."""

    tt: bytes
    ke: bytes = field(repr=False)
    ka: bytes = field(repr=False)
    kc_a: bytes = field(repr=False)
    kc_b: bytes = field(repr=False)
    conf_a: bytes
    conf_b: bytes

    @classmethod
    def from_transcript(cls, tt: bytes, aad: bytes = b"") -> "KeySchedule":
        digest = sha256(tt)
        ke, ka = digest[:16], digest[16:]
        kc = hkdf_sha256(ka, b"", b"ConfirmationKeys" + aad, 32)
        kc_a, kc_b = kc[:16], kc[16:]
        return cls(tt, ke, ka, kc_a, kc_b, hmac_sha256(kc_a, tt), hmac_sha256(kc_b, tt))


class Spake2:
    """One side of a SPAKE2 exchange: `A` sends pA = x*G + w*M, `B` sends pB = y*G + w*N."""

    def __init__(self, role: str, w: int, id_a: bytes, id_b: bytes, aad: bytes = b"",
                 scalar: int | None = None) -> None:
        if role not in ("A", "B"):
            raise ValueError("role must be 'A' or 'B'")
        if not 0 <= w < ORDER:
            raise ValueError("w out of range")
        self.role = role
        self.w = w
        self.id_a = id_a
        self.id_b = id_b
        self.aad = aad
        self._scalar = scalar if scalar is not None else secrets.randbelow(ORDER - 1) + 1
        if not 0 < self._scalar < ORDER:
            raise ValueError("scalar out of range")
        own_blind, self._peer_blind = (M, N) if role == "A" else (N, M)
        self.message = encode_point(G * self._scalar + own_blind * w)

    def finish(self, peer_message: bytes) -> KeySchedule:
        """Compute K from the peer's point and derive the key schedule."""
        peer = decode_point(peer_message)
        k_point = (peer + (-(self._peer_blind * self.w))) * self._scalar
        if k_point == INFINITY:
            raise ProtocolError("the peer's SPAKE2 point gives the identity")
        k = encode_point(k_point)
        self._scalar = 0
        p_a, p_b = (self.message, bytes(peer_message)) if self.role == "A" else (bytes(peer_message), self.message)
        return KeySchedule.from_transcript(transcript(self.id_a, self.id_b, p_a, p_b, k, self.w), self.aad)


def confirm_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison."""
    return _hmac.compare_digest(a, b)
