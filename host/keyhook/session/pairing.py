"""Onboarding: SPAKE2 over PAIR_REQ / PAIR_A / PAIR_B / PAIR_OK (PROTOCOL.md section 3)."""

from __future__ import annotations

import logging
import re

from keyhook import KeyhookError
from keyhook.session import records
from keyhook.session.errors import AuthenticationError, ProtocolError
from keyhook.session.link import RecordLink
from keyhook.session.spake2 import Spake2, confirm_equal, derive_w, hkdf_sha256

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

W_SALT = b"keyhook-spake2-w-v1"
PK_SALT = b"keyhook-pairing-key-v1"
AAD = b"keyhook-pair-v1"
PAIR_TIMEOUT_S = 30.0
_CODE = re.compile(r"[0-9]{8}")


def check_code(code: str) -> str:
    """The setup code with spaces and dashes removed; KeyhookError unless it is 8 digits."""
    cleaned = re.sub(r"[\s-]", "", code or "")
    if not _CODE.fullmatch(cleaned):
        raise KeyhookError(f"{code!r} is not a setup code",
                           hint="a setup code is 8 decimal digits, as printed on the device's label or serial console")
    return cleaned


def ids_info(id_a: bytes, id_b: bytes) -> bytes:
    return records.u8len(id_a) + records.u8len(id_b)


def password_scalar(code: str, id_a: bytes, id_b: bytes) -> int:
    return derive_w(code.encode("ascii"), W_SALT, ids_info(id_a, id_b))


def pairing_key(ke: bytes, id_a: bytes, id_b: bytes) -> bytes:
    return hkdf_sha256(ke, PK_SALT, ids_info(id_a, id_b), 32)


async def pair(link: RecordLink, code: str, keystore, timeout: float = PAIR_TIMEOUT_S,
               device_id: str | None = None):
    """Pair this app with the device at the other end of `link` using its setup code.

    The app proves knowledge of the code first; the device stores the pairing when that
    proof checks, then proves its own, and only then does the keystore store the key.

    `device_id`, when given, is the device the user means (from its name `keyhook-XXXXXX` or
    a scan); another device answering is refused before any guess of the code is spent on it.

    Returns the stored `keystore.Pairing`. Raises a `DeviceError` subclass for the device's
    refusals (`WrongCode`, `RateLimited`, `LockedOut`, `PairingClosed`, ...), `AuthenticationError`
    if the device cannot prove the code, `ProtocolError` on a malformed answer.
    """
    code = check_code(code)
    id_b = records.app_identity(keystore.app_id)
    await link.send(bytes([records.PAIR_REQ]) + records.u8len(id_b))

    body = records.expect(await link.recv(timeout), records.PAIR_A)
    id_a, off = records.take_u8len(body)
    found = records.device_id_of(id_a)
    if device_id is not None and found != device_id:
        raise AuthenticationError(f"device {found} answered where {device_id} was expected; the code was not tried",
                                  hint="connect to the right device and try again")
    device_id = found
    if len(body) - off != records.POINT_LEN:
        raise ProtocolError("the device sent a PAIR_A of the wrong length")
    p_a = body[off:]

    spake = Spake2("B", password_scalar(code, id_a, id_b), id_a, id_b, AAD)
    keys = spake.finish(p_a)
    await link.send(bytes([records.PAIR_B]) + spake.message + keys.conf_b)

    body = records.expect(await link.recv(timeout), records.PAIR_OK, records.MAC_LEN)
    if not confirm_equal(body, keys.conf_a):
        raise AuthenticationError(
            "the device could not prove that it knows the setup code; nothing was stored here",
            hint="make sure you are next to the right device; someone may be impersonating it. "
                 "If the device now lists this app, remove that pairing with an admin app")
    pk = pairing_key(keys.ke, id_a, id_b)
    log.info("paired with device %s", device_id)
    return keystore.save(device_id, pk)
