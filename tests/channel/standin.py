"""A pure-host stand-in for the device side, written from PROTOCOL.md, for host-only tests.

The real interop tests run the firmware under MicroPython (see `pipe.py`); this stand-in lets
the host side be tested quickly and lets tests play a misbehaving device.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os
import zlib

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from keyhook.session import frames, pairing, records, session, spake2
from keyhook.session.errors import LinkClosed, LinkTimeout


class StandInDevice:
    """One device: setup code, pairings, rate limit, one connection at a time."""

    def __init__(self, device_id: str = "a1b2c3d4e5f6", code: str = "12345678") -> None:
        self.device_id = device_id
        self.code = code
        self.id_a = records.device_identity(device_id)
        self.pairings: dict[str, bytes] = {}
        self.failures = 0
        self.window_code: str | None = None
        self.received: list[dict] = []
        # an impostor: takes any HELLO_APP and answers under the key it holds for the app
        self.accept_any_mac = False
        self.reset_connection()

    def reset_connection(self) -> None:
        self.state = "idle"
        self.spake = None
        self.app_id = None
        self.opener = self.sealer = None

    def _error(self, code: int, retry: int = 0, msg: str = "") -> list[bytes]:
        self.reset_connection()
        return [records.error_record(code, retry, msg)]

    def handle(self, rec: bytes) -> list[bytes]:
        if not rec or len(rec) > records.MAX_RECORD:
            return self._error(1)
        t = rec[0]
        try:
            if t == records.PAIR_REQ and self.state == "idle":
                return self._pair_req(rec)
            if t == records.PAIR_B and self.state == "pair_a":
                return self._pair_b(rec)
            if t == records.HELLO and self.state == "idle":
                return self._hello(rec)
            if t == records.HELLO_APP and self.state == "hello":
                return self._hello_app(rec)
            if t == records.DATA and self.state == "open":
                return self._data(rec)
        except Exception:
            return self._error(1)
        return self._error(10 if t == records.DATA else 1)

    def _pair_req(self, rec: bytes) -> list[bytes]:
        id_b, off = records.take_u8len(rec, 1)
        if off != len(rec) or not id_b.startswith(records.APP_PREFIX):
            return self._error(1)
        if self.failures >= 10:
            return self._error(5)
        code = self.code if not self.pairings else self.window_code
        if code is None:
            return self._error(6)
        self.app_id = id_b[len(records.APP_PREFIX):].decode()
        self.id_b = id_b
        self.spake = spake2.Spake2("A", pairing.password_scalar(code, self.id_a, id_b), self.id_a, id_b,
                                   pairing.AAD)
        self.state = "pair_a"
        return [bytes([records.PAIR_A]) + records.u8len(self.id_a) + self.spake.message]

    def _pair_b(self, rec: bytes) -> list[bytes]:
        if len(rec) != 1 + 65 + 32:
            return self._error(1)
        keys = self.spake.finish(rec[1:66])
        if not hmac.compare_digest(rec[66:], keys.conf_b):
            self.failures += 1
            return self._error(3)
        self.failures = 0
        self.window_code = None
        self.pairings[self.app_id] = pairing.pairing_key(keys.ke, self.id_a, self.id_b)
        self.reset_connection()
        return [bytes([records.PAIR_OK]) + keys.conf_a]

    def _hello(self, rec: bytes) -> list[bytes]:
        if len(rec) != 33:  # HELLO names no app: eA only
            return self._error(1)
        e_app = rec[1:]
        eph = X25519PrivateKey.generate()
        e_dev = session.x25519_public(eph)
        self.th = session.transcript_hash(self.id_a, e_app, e_dev)
        self.ss = eph.exchange(X25519PublicKey.from_public_bytes(e_app))
        self.state = "hello"
        return [bytes([records.HELLO_DEV]) + records.u8len(self.id_a) + e_dev]

    def _hello_app(self, rec: bytes) -> list[bytes]:
        found = None
        for app_id, pk in self.pairings.items():
            if len(rec) == 33 and hmac.compare_digest(rec[1:], spake2.hmac_sha256(pk, b"app" + self.th)):
                found = app_id, pk
        if found is None and self.accept_any_mac and self.pairings:
            found = next(iter(self.pairings.items()))
        if found is None:
            return self._error(7)
        self.app_id, pk = found
        k = session.session_keys(self.th, self.ss, pk)
        self.opener = frames.FrameOpener(k[0], k[1])
        self.sealer = frames.FrameSealer(k[2], k[3])
        self.state = "open"
        return []

    def _data(self, rec: bytes) -> list[bytes]:
        if self.app_id not in self.pairings:
            return self._error(2)
        if self.accept_any_mac:  # it cannot read the app's frame: it answers one of its own
            return [self.sealer.seal(b"\x00" + json.dumps({"id": 1, "ok": True}).encode())]
        try:
            plain = self.opener.open(rec)
            if plain[0] & 1:
                body = zlib.decompress(plain[1:])
            else:
                body = plain[1:]
            msg = json.loads(body)
        except Exception:
            return self._error(10)
        self.received.append(msg)
        rid, op = msg.get("id"), msg.get("op")
        if op == "echo":
            reply = {"id": rid, "ok": True, "echo": msg.get("data")}
        elif op == "info":
            reply = {"id": rid, "ok": True, "device_id": self.device_id, "pairings": len(self.pairings)}
        elif op == "pairing.open":
            self.window_code = "%08d" % (int.from_bytes(os.urandom(4), "big") % 10**8)
            reply = {"id": rid, "ok": True, "code": self.window_code}
        elif op == "pairing.remove":
            removed = self.pairings.pop(msg.get("app_id"), None) is not None
            reply = {"id": rid, "ok": True, "removed": removed}
        else:
            reply = {"id": rid, "ok": False, "error": "unknown_op", "message": op}
        return [self.sealer.seal(frames.encode_payload(reply))]


class StandInLink:
    """A RecordLink to a StandInDevice; `tamper_in` may rewrite what the device sends."""

    def __init__(self, device: StandInDevice, tamper_in=None) -> None:
        self.device = device
        self.inbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.sent: list[bytes] = []
        self.tamper_in = tamper_in
        self.closed = False
        device.reset_connection()

    async def send(self, record: bytes) -> None:
        if self.closed:
            raise LinkClosed()
        self.sent.append(record)
        for out in self.device.handle(bytes(record)):
            if self.tamper_in:
                out = self.tamper_in(out)
                if out is None:
                    continue
            self.inbox.put_nowait(out)

    async def recv(self, timeout: float) -> bytes:
        try:
            return await asyncio.wait_for(self.inbox.get(), timeout)
        except asyncio.TimeoutError:
            raise LinkTimeout() from None
