"""Sealing webhook definitions to a system's integration key.

- `seal_definition` / `open_definition`: HPKE (RFC 9180) base mode, suite
  DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM (KEM 0x0020, KDF 0x0001, AEAD 0x0001),
  through `cryptography`'s single-shot HPKE. The output is `enc || ciphertext` (32 + len + 16
  bytes). The HPKE `info` binds the system id, webhook id, version and key id, so a sealed
  definition copied onto another webhook, system or version does not open (RFC 9180 section 5.1:
  info is part of the key schedule).
- `seal_private_key` / `open_private_key`: the app seals the integration private key under the
  system key (32 bytes, shared by the app and the system's devices) with AES-256-GCM, the
  system id as associated data.

The cloud only ever calls `seal_definition`; opening needs the private key, which the cloud never
sees in clear.
"""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hpke import AEAD, KDF, KEM, Suite
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat

from keyhook import KeyhookError

SUITE = Suite(KEM.X25519, KDF.HKDF_SHA256, AEAD.AES_128_GCM)
ENC_LEN = 32  # Nenc of DHKEM(X25519, HKDF-SHA256), RFC 9180 section 7.1
TAG_LEN = 16
INFO_LABEL = b"keyhook function-webhook v1"
KEY_LABEL = b"keyhook integration key v1"


class SealError(KeyhookError):
    """A sealed blob that does not open: wrong key, altered bytes, or another webhook's blob."""


def info(system_id: str, webhook_id: str, version: int, key_id: int) -> bytes:
    """The HPKE info string: label, then each field length-prefixed (no ambiguity)."""
    out = bytearray(INFO_LABEL)
    for field in (system_id.encode(), webhook_id.encode(), str(version).encode(), str(key_id).encode()):
        out += len(field).to_bytes(2, "big") + field
    return bytes(out)


def new_key_pair() -> tuple[X25519PrivateKey, bytes]:
    """A fresh integration key pair: (private key, raw 32-byte public key)."""
    sk = X25519PrivateKey.generate()
    return sk, sk.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def load_public_key(raw: bytes) -> X25519PublicKey:
    if len(raw) != 32:
        raise SealError(f"an X25519 public key is 32 bytes, not {len(raw)}")
    return X25519PublicKey.from_public_bytes(raw)


def seal_definition(definition: dict, public_key: bytes, *, system_id: str, webhook_id: str,
                    version: int, key_id: int) -> bytes:
    """Seal a definition (a JSON object) to `public_key`; returns enc || ct (RFC 9180 section 6.1)."""
    plaintext = json.dumps(definition, separators=(",", ":"), sort_keys=True).encode()
    return SUITE.encrypt(plaintext, load_public_key(public_key),
                         info=info(system_id, webhook_id, version, key_id))


def open_definition(sealed: bytes, private_key: X25519PrivateKey, *, system_id: str, webhook_id: str,
                    version: int, key_id: int) -> dict:
    """Open what `seal_definition` sealed; raises SealError if anything does not match."""
    try:
        plaintext = SUITE.decrypt(sealed, private_key, info=info(system_id, webhook_id, version, key_id))
    except (InvalidTag, ValueError):
        raise SealError(f"webhook {webhook_id}: the sealed definition does not open with this system's key",
                        hint="it was altered, or sealed for another webhook, version or key") from None
    return json.loads(plaintext)


def seal_private_key(private_key: X25519PrivateKey, system_key: bytes, system_id: str) -> bytes:
    """nonce(12) || AES-256-GCM(system_key, raw private key, aad=label || system id)."""
    raw = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    nonce = os.urandom(12)
    return nonce + AESGCM(system_key).encrypt(nonce, raw, KEY_LABEL + system_id.encode())


def open_private_key(sealed: bytes, system_key: bytes, system_id: str) -> X25519PrivateKey:
    try:
        raw = AESGCM(system_key).decrypt(sealed[:12], sealed[12:], KEY_LABEL + system_id.encode())
    except (InvalidTag, ValueError):
        raise SealError(f"system {system_id}: the sealed integration key does not open with this system key",
                        hint="this app holds another system key; enable the integration again from an app that has it") from None
    return X25519PrivateKey.from_private_bytes(raw)
