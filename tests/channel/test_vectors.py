"""The host implementation against RFC 9382 (SPAKE2) and RFC 7748 (X25519) vectors."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyhook.session import spake2
from keyhook.session.errors import ProtocolError

from .vectors import SPAKE2_P256, X25519_DH, X25519_ITER_1, X25519_ITER_1000, X25519_SCALARMULT


@pytest.mark.parametrize("v", SPAKE2_P256, ids=lambda v: f"A={v['A']!r},B={v['B']!r}")
def test_spake2_rfc9382_appendix_b(v):
    w = int(v["w"], 16)
    a = spake2.Spake2("A", w, v["A"], v["B"], scalar=int(v["x"], 16))
    b = spake2.Spake2("B", w, v["A"], v["B"], scalar=int(v["y"], 16))
    assert a.message.hex() == v["pA"]
    assert b.message.hex() == v["pB"]
    ka = a.finish(b.message)
    kb = b.finish(a.message)
    assert ka == kb
    # K is inside TT; check it at its place: after le64len(A)||A||le64len(B)||B||le64len(pA)||pA||le64len(pB)||pB
    off = 8 + len(v["A"]) + 8 + len(v["B"]) + 8 + 65 + 8 + 65 + 8
    assert ka.tt[off:off + 65].hex() == v["K"]
    assert ka.ke.hex() == v["Ke"] and ka.ka.hex() == v["Ka"]
    assert ka.kc_a.hex() == v["KcA"] and ka.kc_b.hex() == v["KcB"]
    assert ka.conf_a.hex() == v["cA"] and ka.conf_b.hex() == v["cB"]


def test_spake2_rfc_m_and_n_are_the_published_points():
    assert spake2.M.to_bytes("compressed") == spake2.M_BYTES
    assert spake2.N.to_bytes("compressed") == spake2.N_BYTES


def test_spake2_wrong_password_disagrees():
    a = spake2.Spake2("A", 1234, b"dev", b"app")
    b = spake2.Spake2("B", 1235, b"dev", b"app")
    assert a.finish(b.message).conf_b != b.finish(a.message).conf_b


def test_spake2_aad_changes_confirmations_only():
    v = SPAKE2_P256[0]
    w, x, y = (int(v[k], 16) for k in ("w", "x", "y"))
    plain = spake2.Spake2("A", w, v["A"], v["B"], scalar=x).finish(bytes.fromhex(v["pB"]))
    aad = spake2.Spake2("A", w, v["A"], v["B"], aad=b"keyhook-pair-v1", scalar=x).finish(bytes.fromhex(v["pB"]))
    assert aad.ke == plain.ke and aad.conf_a != plain.conf_a


@pytest.mark.parametrize("bad", [
    b"", b"\x04" + bytes(64), b"\x00", bytes.fromhex(SPAKE2_P256[0]["pA"])[:-1],
    bytes.fromhex("02886e2f97ace46e55ba9dd7242579f2993b64e16ef3dcab95afd497333d8fa12f"),  # compressed
    b"\x04" + bytes.fromhex(SPAKE2_P256[0]["pA"])[1:33] + bytes(32),  # off the curve
])
def test_spake2_refuses_bad_points(bad):
    a = spake2.Spake2("A", 5, b"dev", b"app")
    with pytest.raises(ProtocolError):
        a.finish(bad)


def test_spake2_refuses_a_point_that_cancels_the_blinding():
    # pB = w*N makes pB - w*N the identity: K would be the identity.
    w = 77
    a = spake2.Spake2("A", w, b"dev", b"app")
    with pytest.raises(ProtocolError):
        a.finish((spake2.N * w).to_bytes("uncompressed"))


def _x25519(k: str | bytes, u: str | bytes) -> bytes:
    k = bytes.fromhex(k) if isinstance(k, str) else k
    u = bytes.fromhex(u) if isinstance(u, str) else u
    return X25519PrivateKey.from_private_bytes(k).exchange(X25519PublicKey.from_public_bytes(u))


@pytest.mark.parametrize("k,u,out", X25519_SCALARMULT)
def test_x25519_rfc7748_scalarmult(k, u, out):
    assert _x25519(k, u).hex() == out


def test_x25519_rfc7748_iterated():
    k = u = bytes.fromhex("09" + "00" * 31)
    for i in range(1000):
        k, u = _x25519(k, u), k
        if i == 0:
            assert k.hex() == X25519_ITER_1
    assert k.hex() == X25519_ITER_1000


def test_x25519_rfc7748_diffie_hellman():
    d = X25519_DH
    for priv, pub in (("alice_priv", "alice_pub"), ("bob_priv", "bob_pub")):
        key = X25519PrivateKey.from_private_bytes(bytes.fromhex(d[priv]))
        assert key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex() == d[pub]
    assert _x25519(d["alice_priv"], d["bob_pub"]).hex() == d["shared"]
    assert _x25519(d["bob_priv"], d["alice_pub"]).hex() == d["shared"]
