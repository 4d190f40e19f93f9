# DATA frames (PROTOCOL.md section 5): AES-256-CTR then HMAC-SHA256 over 0x20 || ctr || C,
# one key pair and one 64-bit counter per direction; payload = flags(1) || body, body JSON,
# zlib-compressed (flag bit 0) when that is shorter.
import io
import json

from micropython import const

from kh.crypto import ct
from kh.crypto.aesctr import AesCtr
from kh.crypto.hmac import Hmac
from kh.session import errors
from kh.session.errors import ChannelError
from kh.store import jsontext

try:
    import deflate
except ImportError:
    deflate = None

DATA = const(0x20)
MAX_RECORD = const(8256)
MAX_PAYLOAD = const(8192)
_TAG = const(32)
_MIN_FRAME = const(42)  # type, ctr(8), flags(1), tag(32)
_INFLATE_CHUNK = const(256)
_ZLIB_WBITS = const(13)  # the largest window accepted (8 KiB: enough for any MAX_PAYLOAD body)
_CTR_LIMIT = 1 << 64


class Direction:
    # one direction of a session: its keys and its counter
    def __init__(self, k_enc, k_mac):
        self._aes = AesCtr(k_enc)
        self._mac = Hmac(k_mac)
        self.ctr = 0

    def seal(self, payload, flags=None):
        # payload: the plaintext (bytes-like); or, with flags (the payload's first byte), the
        # rest of it, so that a body is not joined to its flags byte in one more copy
        ctr = self.ctr
        if ctr >= _CTR_LIMIT - 1:
            raise ChannelError(errors.INTERNAL, "counter exhausted")
        # one allocation: type, counter, plaintext then tag; the plaintext encrypted in place
        p = 9 if flags is None else 10
        n = p - 9 + len(payload)
        rec = bytearray(9 + n + _TAG)
        rec[0] = DATA
        rec[1:9] = ctr.to_bytes(8, "big")
        if flags is not None:
            rec[9] = flags
        rec[p : 9 + n] = payload
        mv = memoryview(rec)
        self._aes.xor(ctr, mv[9 : 9 + n], mv[9 : 9 + n])
        rec[9 + n :] = self._mac.digest(mv[: 9 + n])
        self.ctr = ctr + 1
        return rec

    # a DATA record -> the plaintext payload, decrypted in place: a memoryview into the record
    # (the device's GATT layer hands over a buffer of the record's own; a record given as bytes
    # is decrypted in a copy). ChannelError(bad_frame) on any mismatch, before anything is
    # decrypted.
    def open(self, record, max_record=MAX_RECORD):
        n = len(record)
        if n < _MIN_FRAME or record[0] != DATA:
            raise ChannelError(errors.BAD_FRAME, "frame too short")
        if n > max_record:
            raise ChannelError(errors.TOO_LARGE, "frame too large")
        mv = memoryview(record)
        tag = self._mac.digest(mv[: n - _TAG])
        if not ct.equal(tag, mv[n - _TAG :]):
            raise ChannelError(errors.BAD_FRAME, "frame authentication failed")
        ctr = int.from_bytes(mv[1:9], "big")
        if ctr != self.ctr:
            raise ChannelError(errors.BAD_FRAME, "frame out of sequence")
        self.ctr = ctr + 1
        if isinstance(record, bytes):
            mv = memoryview(bytearray(record))
        out = mv[9 : n - _TAG]
        self._aes.xor(ctr, out, out)
        return out


def _inflate(body, limit):
    # -> the inflated body, a bytearray grown _INFLATE_CHUNK bytes at a time (no buffer of
    # `limit` bytes is allocated up front: a small message costs a small allocation)
    # The decompressor allocates a window of 2**wbits bytes: the sender's (RFC 1950 CINFO) when
    # smaller than 8 KiB (the app uses 1 KiB), else 8 KiB, which no body of MAX_PAYLOAD bytes
    # can reach back beyond.
    wbits = (body[0] >> 4) + 8 if len(body) else _ZLIB_WBITS
    if wbits > _ZLIB_WBITS:
        wbits = _ZLIB_WBITS
    src = io.BytesIO(body)
    out = bytearray()
    try:
        d = deflate.DeflateIO(src, deflate.ZLIB, wbits)
        chunk = bytearray(_INFLATE_CHUNK)
        while True:
            k = d.readinto(chunk)
            if not k:
                break
            if len(out) + k > limit:
                raise ChannelError(errors.TOO_LARGE, "payload over %d bytes" % limit)
            out.extend(chunk if k == _INFLATE_CHUNK else memoryview(chunk)[:k])
    except (MemoryError, ChannelError):
        raise
    except Exception:
        raise ChannelError(errors.BAD_FRAME, "bad zlib stream")
    if src.read(1):
        raise ChannelError(errors.BAD_FRAME, "data after the zlib stream")
    return out


def _deflate(body):
    # None where this build cannot compress (the unix and ESP32 ports read zlib only)
    if deflate is None:
        return None
    try:
        dst = io.BytesIO()
        d = deflate.DeflateIO(dst, deflate.ZLIB, _ZLIB_WBITS)
        d.write(body)
        d.close()
        return dst.getvalue()
    except (AttributeError, OSError):
        return None


def decode_payload(p, limit=MAX_PAYLOAD):
    if len(p) < 1:
        raise ChannelError(errors.BAD_FRAME, "empty payload")
    flags = p[0]
    if flags & 0xFE:
        raise ChannelError(errors.BAD_FRAME, "unknown payload flags")
    body = memoryview(p)[1:]
    if flags & 1:
        body = _inflate(body, limit)
    elif len(body) > limit:
        raise ChannelError(errors.TOO_LARGE, "payload over %d bytes" % limit)
    try:
        # json reads the buffer in place and checks the UTF-8 of every string it makes
        # surrogate pairs joined, lone surrogates refused; the scan looks at p (no copy)
        msg = jsontext.loads(body, None if flags & 1 else p)
    except MemoryError:
        raise
    except Exception:  # hostile input: ValueError, UnicodeError, and whatever json meets
        raise ChannelError(errors.BAD_FRAME, "payload is not UTF-8 JSON")
    if not isinstance(msg, dict):
        raise ChannelError(errors.BAD_FRAME, "payload is not a JSON object")
    return msg


def seal_message(direction, obj, limit=MAX_PAYLOAD):
    # encode_payload then direction.seal, without the intermediate copies: the JSON text is
    # written into the record as it is (a str is a buffer of its UTF-8 bytes)
    body = memoryview(json.dumps(obj))
    if len(body) > limit:
        raise ValueError("payload over %d bytes" % limit)
    z = _deflate(body) if len(body) > 64 else None
    if z is not None and len(z) < len(body):
        return direction.seal(z, 1)
    return direction.seal(body, 0)


def encode_payload(obj, limit=MAX_PAYLOAD):
    body = json.dumps(obj).encode()
    if len(body) > limit:
        raise ValueError("payload over %d bytes" % limit)
    z = _deflate(body) if len(body) > 64 else None
    if z is not None and len(z) < len(body):
        return b"\x01" + z
    return b"\x00" + body
