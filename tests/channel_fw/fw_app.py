"""A minimal app side of PROTOCOL.md sections 4 and 5, written here over `cryptography`, so that
tests can build (and tamper with) handshake records and DATA frames byte by byte. Pairing uses
the host's `keyhook.session.pair`."""

from __future__ import annotations

import hashlib
import hmac
import json
import zlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fwpipe import FirmwarePipe


def u8len(x: bytes) -> bytes:
    return bytes([len(x)]) + x


def ctr_xor(key: bytes, ctr: int, data: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.CTR(ctr.to_bytes(8, "big") + bytes(8))).encryptor()
    return enc.update(data) + enc.finalize()


def payload(obj, compress: bool = False) -> bytes:
    body = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
    return b"\x01" + zlib.compress(body) if compress else b"\x00" + body


class SessionApp:
    """Runs the HELLO handshake against the firmware pipe and seals/opens DATA frames."""

    def __init__(self, pipe: FirmwarePipe, app_id: str, pk: bytes) -> None:
        self.pipe = pipe
        self.id_b = b"keyhook-app:" + app_id.encode()
        self.pk = pk
        self.ctr_out = 0
        self.ctr_in = 0

    def hello(self, e_priv: X25519PrivateKey | None = None, e_pub: bytes | None = None) -> list[bytes]:
        self.e = e_priv or X25519PrivateKey.generate()
        self.e_a = e_pub if e_pub is not None else self.e.public_key().public_bytes_raw()
        out, _ = self.pipe.record(b"\x10" + self.e_a)  # HELLO names no app
        return out

    def finish(self, reply: bytes, mac_a: bytes | None = None) -> list[bytes]:
        assert reply[0] == 0x11
        n = reply[1]
        id_a = reply[2:2 + n]
        e_d = reply[2 + n:]
        assert len(e_d) == 32
        th = hashlib.sha256(b"keyhook-session-v2" + u8len(id_a) + self.e_a + e_d).digest()
        ss = self.e.exchange(X25519PublicKey.from_public_bytes(e_d))
        okm = HKDF(hashes.SHA256(), 128, th, b"keyhook-session-keys-v1").derive(ss + self.pk)
        self.k_enc_a2d, self.k_mac_a2d, self.k_enc_d2a, self.k_mac_d2a = (okm[i:i + 32] for i in range(0, 128, 32))
        if mac_a is None:
            mac_a = hmac.new(self.pk, b"app" + th, hashlib.sha256).digest()
        out, _ = self.pipe.record(b"\x12" + mac_a)
        return out

    def open_session(self) -> None:
        out = self.hello()
        assert len(out) == 1, out
        assert self.finish(out[0]) == []

    def seal(self, p: bytes, ctr: int | None = None) -> bytes:
        ctr = self.ctr_out if ctr is None else ctr
        if ctr == self.ctr_out:
            self.ctr_out += 1
        head = b"\x20" + ctr.to_bytes(8, "big")
        c = ctr_xor(self.k_enc_a2d, ctr, p)
        return head + c + hmac.new(self.k_mac_a2d, head + c, hashlib.sha256).digest()

    def open(self, record: bytes) -> dict:
        assert record[0] == 0x20
        ctr = int.from_bytes(record[1:9], "big")
        assert ctr == self.ctr_in
        self.ctr_in += 1
        c, tag = record[9:-32], record[-32:]
        assert hmac.compare_digest(tag, hmac.new(self.k_mac_d2a, record[:-32], hashlib.sha256).digest())
        p = ctr_xor(self.k_enc_d2a, ctr, c)
        body = zlib.decompress(p[1:]) if p[0] == 1 else p[1:]
        assert p[0] in (0, 1)
        return json.loads(body)
