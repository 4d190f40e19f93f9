"""Record types and their encodings (PROTOCOL.md section 2)."""

from __future__ import annotations

import re

from keyhook.session.errors import ProtocolError, device_error

PAIR_REQ = 0x01
PAIR_A = 0x02
PAIR_B = 0x03
PAIR_OK = 0x04
HELLO = 0x10
HELLO_DEV = 0x11
HELLO_APP = 0x12
DATA = 0x20
ERROR = 0x7F

NAMES = {
    PAIR_REQ: "PAIR_REQ", PAIR_A: "PAIR_A", PAIR_B: "PAIR_B", PAIR_OK: "PAIR_OK",
    HELLO: "HELLO", HELLO_DEV: "HELLO_DEV", HELLO_APP: "HELLO_APP", DATA: "DATA", ERROR: "ERROR",
}

MAX_RECORD = 8256
MAX_PAYLOAD = 8192
MAX_ID = 64
POINT_LEN = 65
MAC_LEN = 32
X25519_LEN = 32
ERROR_MESSAGE_MAX = 200

DEVICE_PREFIX = b"keyhook-device:"
APP_PREFIX = b"keyhook-app:"
_DEVICE_ID = re.compile(rb"[0-9a-f]{12}")
_APP_ID = re.compile(r"[0-9a-f]{32}")


def u8len(data: bytes) -> bytes:
    """One length byte, then the bytes (at most 64)."""
    if len(data) > MAX_ID:
        raise ValueError("identity longer than 64 bytes")
    return bytes([len(data)]) + data


def take_u8len(body: bytes, offset: int = 0) -> tuple[bytes, int]:
    """Read a `u8len` field at `offset`; return it and the offset after it."""
    if offset >= len(body):
        raise ProtocolError("the device sent a truncated record")
    n = body[offset]
    if n > MAX_ID or offset + 1 + n > len(body):
        raise ProtocolError("the device sent a record with a bad identity length")
    return bytes(body[offset + 1:offset + 1 + n]), offset + 1 + n


def app_identity(app_id: str) -> bytes:
    """`B` for an app id (32 lowercase hex digits)."""
    if not _APP_ID.fullmatch(app_id):
        raise ValueError(f"bad app id {app_id!r}")
    return APP_PREFIX + app_id.encode()


def device_id_of(identity: bytes) -> str:
    """The device id inside a device identity `A`, or ProtocolError if `A` is malformed."""
    if not identity.startswith(DEVICE_PREFIX) or not _DEVICE_ID.fullmatch(identity[len(DEVICE_PREFIX):]):
        raise ProtocolError("the device sent a malformed identity")
    return identity[len(DEVICE_PREFIX):].decode()


def device_identity(device_id: str) -> bytes:
    """`A` for a device id (12 lowercase hex digits)."""
    identity = DEVICE_PREFIX + device_id.encode()
    device_id_of(identity)
    return identity


def raise_if_error(record: bytes) -> None:
    """Raise the matching DeviceError if `record` is an ERROR record."""
    if record and record[0] == ERROR:
        if len(record) < 4:
            raise ProtocolError("the device sent a truncated ERROR record")
        code = record[1]
        retry = int.from_bytes(record[2:4], "big")
        message = bytes(record[4:4 + ERROR_MESSAGE_MAX]).decode("utf-8", "replace")
        raise device_error(code, retry, message)


def expect(record: bytes, rtype: int, length: int | None = None) -> bytes:
    """Check an incoming record's type (raising on ERROR) and size; return the body."""
    if len(record) > MAX_RECORD:
        raise ProtocolError(f"the device sent an oversized record ({len(record)} bytes)")
    raise_if_error(record)
    if not record or record[0] != rtype:
        got = NAMES.get(record[0], hex(record[0])) if record else "an empty record"
        raise ProtocolError(f"the device sent {got} where {NAMES[rtype]} was expected")
    body = bytes(record[1:])
    if length is not None and len(body) != length:
        raise ProtocolError(f"the device sent a {NAMES[rtype]} of the wrong length")
    return body


def error_record(code: int, retry_after_s: int = 0, message: str = "") -> bytes:
    """An ERROR record (used by test stand-ins of the device)."""
    return bytes([ERROR, code]) + retry_after_s.to_bytes(2, "big") + message.encode()[:ERROR_MESSAGE_MAX]
