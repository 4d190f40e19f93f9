"""DATA frames (PROTOCOL.md section 5): AES-256-CTR then HMAC-SHA256, a counter per direction.

`C = P xor AES-256-CTR(k_enc, block i = ctr(8) || i(8))`, `T = HMAC-SHA256(k_mac, 0x20 || ctr || C)`,
`P = flags(1) || body`, flag bit 0 = body is zlib (RFC 1950).
"""

from __future__ import annotations

import hmac as _hmac
import json
import zlib

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import hmac as c_hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from keyhook.session import records
from keyhook.session.errors import ProtocolError

FLAG_ZLIB = 0x01
TAG_LEN = 32
CTR_LEN = 8
OVERHEAD = 1 + CTR_LEN + TAG_LEN  # type, counter, tag
MAX_CIPHERTEXT = records.MAX_RECORD - OVERHEAD
# The zlib window the sender uses: 2**10 bytes keeps the device's decompressor small.
ZLIB_WBITS = 10
# A body of at most this many bytes goes uncompressed: the device then parses it in place, in
# the buffer the record arrived in, where inflating would cost it a window and a second buffer
# (a rules push is sent in parts of this size or less). A larger body saves air time compressed.
COMPRESS_ABOVE = 2048


def _ctr_xor(key: bytes, ctr: int, data: bytes) -> bytes:
    # The 128-bit counter block starts at ctr(8) || 0(8) and counts up in its low 64 bits.
    enc = Cipher(algorithms.AES(key), modes.CTR(ctr.to_bytes(8, "big") + bytes(8))).encryptor()
    return enc.update(data) + enc.finalize()


def _tag(key: bytes, ctr_bytes: bytes, ciphertext: bytes) -> bytes:
    h = c_hmac.HMAC(key, hashes.SHA256())
    h.update(bytes([records.DATA]) + ctr_bytes + ciphertext)
    return h.finalize()


def encode_payload(message: dict, compress: bool = True) -> bytes:
    """`flags || body`: compact UTF-8 JSON; zlib-compressed when longer than COMPRESS_ABOVE
    bytes and compression makes it shorter (PROTOCOL.md section 5)."""
    body = json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > records.MAX_PAYLOAD:
        raise ProtocolError(f"the message is {len(body)} bytes of JSON; the device accepts at most "
                            f"{records.MAX_PAYLOAD}", hint="send less data per request")
    if compress and len(body) > COMPRESS_ABOVE:
        c = zlib.compressobj(9, zlib.DEFLATED, ZLIB_WBITS)
        packed = c.compress(body) + c.flush()
        if len(packed) < len(body):
            return bytes([FLAG_ZLIB]) + packed
    return b"\x00" + body


def decode_payload(plain: bytes) -> dict:
    """Inverse of `encode_payload`, with the MAX_PAYLOAD cap enforced while decompressing."""
    if not plain:
        raise ProtocolError("the device sent an empty frame")
    flags, body = plain[0], plain[1:]
    if flags & ~FLAG_ZLIB:
        raise ProtocolError("the device sent a frame with unknown flags")
    if flags & FLAG_ZLIB:
        d = zlib.decompressobj()
        try:
            body = d.decompress(body, records.MAX_PAYLOAD + 1)
        except zlib.error as e:
            raise ProtocolError("the device sent a frame that does not decompress") from e
        if len(body) > records.MAX_PAYLOAD or d.unconsumed_tail or not d.eof or d.unused_data:
            raise ProtocolError("the device sent a bad or oversized compressed frame")
    if len(body) > records.MAX_PAYLOAD:
        raise ProtocolError("the device sent an oversized frame")
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError("the device sent a frame that is not UTF-8 JSON") from e
    if not isinstance(message, dict):
        raise ProtocolError("the device sent a frame that is not a JSON object")
    return message


class FrameSealer:
    """The sending half of one direction: counts from 0."""

    def __init__(self, k_enc: bytes, k_mac: bytes) -> None:
        self._k_enc, self._k_mac, self.counter = k_enc, k_mac, 0

    def seal(self, plain: bytes) -> bytes:
        if len(plain) > MAX_CIPHERTEXT:
            raise ProtocolError("frame too large for one record")
        if self.counter >= 1 << 64:
            raise ProtocolError("frame counter exhausted", hint="reconnect to start a fresh session")
        ctr = self.counter.to_bytes(CTR_LEN, "big")
        ciphertext = _ctr_xor(self._k_enc, self.counter, plain)
        self.counter += 1
        return bytes([records.DATA]) + ctr + ciphertext + _tag(self._k_mac, ctr, ciphertext)


class FrameOpener:
    """The receiving half of one direction: accepts exactly the next counter, tag checked first."""

    def __init__(self, k_enc: bytes, k_mac: bytes) -> None:
        self._k_enc, self._k_mac, self.counter = k_enc, k_mac, 0

    def open(self, record: bytes) -> bytes:
        if len(record) > records.MAX_RECORD:
            raise ProtocolError("the device sent an oversized frame")
        if len(record) < OVERHEAD + 1 or record[0] != records.DATA:
            raise ProtocolError("the device sent a truncated or malformed frame")
        ctr = bytes(record[1:1 + CTR_LEN])
        ciphertext = bytes(record[1 + CTR_LEN:-TAG_LEN])
        tag = bytes(record[-TAG_LEN:])
        if not _hmac.compare_digest(tag, _tag(self._k_mac, ctr, ciphertext)):
            raise ProtocolError("a frame from the device failed authentication; the session is closed",
                                hint="reconnect; if it keeps happening, something on the link is altering data")
        if int.from_bytes(ctr, "big") != self.counter:
            raise ProtocolError("the device sent a replayed or reordered frame; the session is closed")
        self.counter += 1
        return _ctr_xor(self._k_enc, int.from_bytes(ctr, "big"), ciphertext)
