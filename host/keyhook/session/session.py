"""Forward-secret sessions (PROTOCOL.md sections 4 to 6).

HELLO / HELLO_DEV / HELLO_APP with fresh X25519 keys authenticated by the pairing key, then
DATA frames carrying JSON requests and responses. HELLO names no app: the app proves the
pairing key first (HELLO_APP), and the device proves it with its first DATA frame.
"""

from __future__ import annotations

import asyncio
import logging

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from keyhook.session import records
from keyhook.session.errors import (AuthenticationError, AuthFailed, ChannelError, NotPaired, ProtocolError,
                                    RequestFailed)
from keyhook.session.frames import FrameOpener, FrameSealer, decode_payload, encode_payload
from keyhook.session.link import RecordLink
from keyhook.session.spake2 import hkdf_sha256, hmac_sha256, sha256

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

TH_LABEL = b"keyhook-session-v2"
KEYS_INFO = b"keyhook-session-keys-v1"
HANDSHAKE_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 30.0


def transcript_hash(id_a: bytes, e_app: bytes, e_dev: bytes) -> bytes:
    """`TH` of PROTOCOL.md section 4: SHA-256 over the label, `u8len(A)`, `eA` and `eD`."""
    return sha256(TH_LABEL + records.u8len(id_a) + e_app + e_dev)


def session_keys(th: bytes, ss: bytes, pk: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """(k_enc_a2d, k_mac_a2d, k_enc_d2a, k_mac_d2a)."""
    okm = hkdf_sha256(ss + pk, th, KEYS_INFO, 128)
    return okm[0:32], okm[32:64], okm[64:96], okm[96:128]


def x25519_public(private: X25519PrivateKey) -> bytes:
    return private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class Session:
    """An authenticated, encrypted session with one device.

    `request` sends `{"id": n, "op": op, **fields}` and returns the device's matching response.
    Any failure (bad frame, device ERROR, time-out) closes the session for good.
    """

    def __init__(self, link: RecordLink, device_id: str, keys: tuple[bytes, bytes, bytes, bytes]) -> None:
        self.link = link
        # the device proves the pairing key with its first DATA frame (PROTOCOL.md section 4)
        self.confirmed = False
        self.device_id = device_id
        self._out = FrameSealer(keys[0], keys[1])
        self._in = FrameOpener(keys[2], keys[3])
        self._next_id = 1
        self._lock = asyncio.Lock()
        self.closed: ChannelError | None = None

    def _fail(self, err: ChannelError) -> ChannelError:
        self.closed = err
        self._out = self._in = None  # type: ignore[assignment]  # drop the keys
        return err

    def close(self) -> None:
        """Forget the session keys; later requests raise."""
        if self.closed is None:
            self._fail(ChannelError("the session is closed", hint="open a new session"))

    async def send_message(self, message: dict) -> None:
        """Seal one JSON message into a DATA frame and send it (no response awaited)."""
        self._check_open()
        payload = encode_payload(message)  # too large: refused before sending; the session stays usable
        try:
            record = self._out.seal(payload)
            await self.link.send(record)
        except ChannelError as e:
            raise self._fail(e)

    async def recv_message(self, timeout: float = REQUEST_TIMEOUT_S) -> dict:
        """Receive and open the next DATA frame."""
        self._check_open()
        try:
            record = await self.link.recv(timeout)
            if not self.confirmed:
                plain = self._first_frame(record)
                self.confirmed = True
                return decode_payload(plain)
            records.raise_if_error(record)
            return decode_payload(self._in.open(record))
        except ChannelError as e:
            raise self._fail(e)

    def _first_frame(self, record: bytes) -> bytes:
        # the answer to HELLO_APP and the app's first frame: auth_failed when the device holds no
        # pairing that this key opens; a frame whose tag fails when whoever answers does not
        # hold the key
        try:
            records.raise_if_error(record)
        except AuthFailed as e:
            raise NotPaired(
                f"device {self.device_id} did not accept this app's pairing key",
                hint="the pairing may have been removed (unpair, pairing.remove) or the device reset: "
                     "onboard it again (`keyhook onboard`)", device_message=e.device_message) from e
        try:
            return self._in.open(record)
        except ProtocolError as e:
            raise AuthenticationError(
                f"device {self.device_id} could not prove it holds this app's pairing key ({e})",
                hint="the device may have been reset or the pairing removed: remove the pairing here "
                     "and pair again; if not, someone may be impersonating the device") from e

    async def request(self, op: str, timeout: float = REQUEST_TIMEOUT_S, **fields) -> dict:
        """Send one request and return its response (`ok: true`), or raise `RequestFailed`."""
        if "id" in fields or "op" in fields:
            raise ValueError("`id` and `op` belong to the request envelope; name the field otherwise")
        async with self._lock:
            rid = self._next_id
            self._next_id += 1
            await self.send_message({"id": rid, "op": op, **fields})
            while True:
                response = await self.recv_message(timeout)
                got = response.get("id")
                if isinstance(got, int) and got < rid:
                    log.debug("dropping a late response to request %s", got)
                    continue
                if got != rid:
                    raise self._fail(ProtocolError(f"the device answered request {got!r} while {rid} was pending"))
                break
        if response.get("ok") is True:
            return response
        raise RequestFailed(op, str(response.get("error", "error")), str(response.get("message", "")), response)

    def _check_open(self) -> None:
        if self.closed is not None:
            raise ChannelError("the session is closed: " + str(self.closed), hint="open a new session")


async def open_session(link: RecordLink, keystore, device_id: str | None = None,
                       timeout: float = HANDSHAKE_TIMEOUT_S) -> Session:
    """Run the handshake with the device on `link` and return the session.

    `device_id`, when given, is the device this app means to talk to; a different device
    answering is refused. Raises `NotPaired` when this app holds no key for the device that
    answers, `Busy`... from the device. The device proves the pairing key with its first DATA
    frame: the session's first response raises `NotPaired` when the device did not accept this
    app's key, `AuthenticationError` when the answer is not made with it.
    """
    ephemeral = X25519PrivateKey.generate()
    e_app = x25519_public(ephemeral)
    await link.send(bytes([records.HELLO]) + e_app)  # no app identity on the air

    body = records.expect(await link.recv(timeout), records.HELLO_DEV)
    id_a, off = records.take_u8len(body)
    dev = records.device_id_of(id_a)
    if len(body) - off != records.X25519_LEN:
        raise ProtocolError("the device sent a HELLO_DEV of the wrong length")
    e_dev = body[off:]
    if device_id is not None and dev != device_id:
        raise AuthenticationError(f"device {dev} answered where {device_id} was expected",
                                  hint="connect to the right device")
    pairing = keystore.get(dev)
    if pairing is None:
        raise NotPaired(f"this app is not paired with device {dev} (it holds no pairing key for it)",
                        hint="pair with the device's setup code first, or ask an admin app to open a pairing window")
    try:
        ss = ephemeral.exchange(X25519PublicKey.from_public_bytes(e_dev))
    except ValueError as e:  # all-zero shared secret (a low-order point)
        raise ProtocolError("the device sent a degenerate ephemeral key") from e
    if ss == bytes(32):
        raise ProtocolError("the device sent a degenerate ephemeral key")
    th = transcript_hash(id_a, e_app, e_dev)
    keys = session_keys(th, ss, pairing.key)
    del ephemeral, ss
    await link.send(bytes([records.HELLO_APP]) + hmac_sha256(pairing.key, b"app" + th))
    log.info("session open with device %s", dev)
    return Session(link, dev, keys)
