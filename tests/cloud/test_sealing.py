"""HPKE sealing (RFC 9180): the RFC's own test vector, a second implementation (pyhpke) both
ways, and the binding of each sealed definition to its system, webhook, version and key."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyhpke import AEADId, CipherSuite, KDFId, KEMId

from keyhook.cloud import sealing

# RFC 9180 appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, base mode,
# the first encryption (sequence number 0).
A11 = {
    "info": "4f6465206f6e2061204772656369616e2055726e",
    "ikmR": "6db9df30aa07dd42ee5e8181afdb977e538f5e1fec8a06223f33f7013e525037",
    "pkRm": "3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d",
    "skRm": "4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8",
    "enc": "37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431",
    "pt": "4265617574792069732074727574682c20747275746820626561757479",
    "aad": "436f756e742d30",
    "ct": "f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a",
}
V = {k: bytes.fromhex(v) for k, v in A11.items()}
IDS = dict(system_id="sys-1", webhook_id="wh-1", version=3, key_id=1)


def pyhpke_suite():
    return CipherSuite.new(KEMId.DHKEM_X25519_HKDF_SHA256, KDFId.HKDF_SHA256, AEADId.AES128_GCM)


def test_the_suite_is_the_rfc_a11_suite_and_opens_its_vector():
    # The single-shot API has no AAD; its private helper (which cryptography's own vector tests
    # use) opens the RFC's ciphertext, which carries AAD "Count-0".
    sk = X25519PrivateKey.from_private_bytes(V["skRm"])
    assert sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw) == V["pkRm"]
    from cryptography.hazmat.bindings._rust import openssl as rust_openssl
    pt = rust_openssl.hpke._decrypt_with_aad(sealing.SUITE, V["enc"] + V["ct"], sk, info=V["info"], aad=V["aad"])
    assert pt == V["pt"]
    with pytest.raises(Exception):
        rust_openssl.hpke._decrypt_with_aad(sealing.SUITE, V["enc"] + V["ct"], sk, info=V["info"] + b"x", aad=V["aad"])


def test_pyhpke_agrees_with_the_rfc_vector():
    suite = pyhpke_suite()
    assert suite.kem.derive_key_pair(V["ikmR"]).public_key.to_public_bytes() == V["pkRm"]
    skr = suite.kem.deserialize_private_key(V["skRm"])
    assert suite.create_recipient_context(V["enc"], skr, info=V["info"]).open(V["ct"], aad=V["aad"]) == V["pt"]


def test_sealed_by_the_cloud_opens_with_pyhpke_and_the_other_way_round():
    sk, pk = sealing.new_key_pair()
    d = {"method": "Post", "url": "https://x.example/hook", "secret": os.urandom(8).hex()}
    sealed = sealing.seal_definition(d, pk, **IDS)
    assert len(sealed) == sealing.ENC_LEN + len(sealing.json.dumps(d, separators=(",", ":"), sort_keys=True)) + sealing.TAG_LEN

    suite = pyhpke_suite()
    skr = suite.kem.deserialize_private_key(sk.private_bytes_raw())
    pt = suite.create_recipient_context(sealed[:32], skr, info=sealing.info(**IDS)).open(sealed[32:])
    assert sealing.json.loads(pt) == d

    enc, ctx = suite.create_sender_context(suite.kem.deserialize_public_key(pk), info=sealing.info(**IDS))
    ct = ctx.seal(b'{"from":"pyhpke"}')
    assert sealing.open_definition(enc + ct, sk, **IDS) == {"from": "pyhpke"}


@pytest.mark.parametrize("field,value", [("system_id", "sys-2"), ("webhook_id", "wh-2"), ("version", 4), ("key_id", 2)])
def test_a_sealed_definition_opens_only_where_it_was_sealed(field, value):
    sk, pk = sealing.new_key_pair()
    sealed = sealing.seal_definition({"a": 1}, pk, **IDS)
    with pytest.raises(sealing.SealError, match="does not open"):
        sealing.open_definition(sealed, sk, **{**IDS, field: value})


def test_altered_bytes_or_another_key_do_not_open():
    sk, pk = sealing.new_key_pair()
    sealed = bytearray(sealing.seal_definition({"a": 1}, pk, **IDS))
    for i in (0, 31, 32, len(sealed) - 1):
        bad = bytearray(sealed)
        bad[i] ^= 1
        with pytest.raises(sealing.SealError):
            sealing.open_definition(bytes(bad), sk, **IDS)
    with pytest.raises(sealing.SealError):
        sealing.open_definition(bytes(sealed), sealing.new_key_pair()[0], **IDS)


def test_the_private_key_opens_only_with_its_system_key_and_system():
    sk, pk = sealing.new_key_pair()
    key = os.urandom(32)
    blob = sealing.seal_private_key(sk, key, "sys-1")
    assert sk.private_bytes_raw() not in blob
    assert sealing.open_private_key(blob, key, "sys-1").private_bytes_raw() == sk.private_bytes_raw()
    with pytest.raises(sealing.SealError):
        sealing.open_private_key(blob, os.urandom(32), "sys-1")
    with pytest.raises(sealing.SealError):
        sealing.open_private_key(blob, key, "sys-2")


def test_cryptography_is_new_enough_for_hpke():
    assert hpke.Suite is sealing.Suite
