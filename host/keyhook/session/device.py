"""A keyhook device as the app sees it: onboard it, then give it commands over the secure session.

`DeviceClient` is the library under the BLE commands of the CLI: it connects over bleak (the
system adapter, or the virtual radio of a simulated device), opens a forward-secret session with
the stored pairing key, and sends the operations of PROTOCOL.md section 6.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from keyhook import KeyhookError
from keyhook import ble
from keyhook.session import LinkClosed, LinkTimeout, NotPaired, open_session, pair
from keyhook.session.errors import AuthFailed, AuthenticationError
from keyhook.session.keystore import Keystore

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())

# Leave room inside MAX_PAYLOAD (8192) for the request envelope.
MESSAGE_BUDGET = 7600
# Rules are sent in parts of at most this many bytes of JSON (a larger rule goes alone): the
# device parses and validates one message at a time, so its heap peak follows the part's size.
BATCH_BUDGET = 1536
# The device waits up to 15 s for a triggered fire (firmware/kh/app/commands.py); wait longer.
TRIGGER_TIMEOUT_S = 40.0
# After an unanswered unpair: how long to keep asking the device whether it still holds the key
UNPAIR_CHECK_S = 15.0


async def onboard(address: str, code: str, *, radio: str | None = None, keystore: Keystore | None = None,
                  timeout: float = 20.0) -> dict:
    """Pair with the device at `address` using its setup code; returns its `info`.

    When this app is already paired with it (a session with the stored key works), nothing is
    tried and the `info` has ``"already_paired": True``.
    """
    keystore = keystore or Keystore()
    if keystore.list():
        try:
            async with DeviceClient(address, radio=radio, keystore=keystore, timeout=timeout) as dev:
                return {**await dev.info(), "already_paired": True}
        except (NotPaired, AuthFailed, AuthenticationError) as e:
            log.info("no working pairing with %s here (%s); pairing with the setup code", address, e)
    log.info("connecting to %s to pair", address)
    async with ble.connect(address, radio=radio, timeout=timeout) as link:
        await pair(link, code, keystore)
    async with DeviceClient(address, radio=radio, keystore=keystore, timeout=timeout) as dev:
        return {**await dev.info(), "already_paired": False}


ERASE_TIMEOUT_S = 120.0  # a 2 MB ESP32 data partition is overwritten in well under this
ERASING_OPS = frozenset({"rules.put", "rules.stage", "rules.commit", "rules.delete", "wifi", "unpair",
                         "pairing.remove", "reset", "system.set", "system.remove"})

SYSTEM_KEY_LEN = 32
SYSTEM_KEY_CHECK_LABEL = b"keyhook-system-key-check-v1"


def system_key_check(system_key: bytes, system_id: str) -> str:
    """The key check value a device reports for a system key: the first 16 bytes of
    HMAC-SHA256(system_key, label || system id), 32 hex digits (PROTOCOL.md section 6, "The
    system key"). It shows that the device holds `system_key` without the key crossing back."""
    import hashlib
    import hmac

    return hmac.new(system_key, SYSTEM_KEY_CHECK_LABEL + system_id.encode(), hashlib.sha256).digest()[:16].hex()


class DeviceClient:
    """A paired device: `async with DeviceClient(addr) as dev: await dev.info()`."""

    def __init__(self, address: str, *, radio: str | None = None, keystore: Keystore | None = None,
                 timeout: float = 20.0, mtu: int | None = None) -> None:
        self.address = address
        self.mtu = mtu
        self.radio = radio
        self.keystore = keystore or Keystore()
        self.timeout = timeout
        self._link_cm = None
        self.session = None
        self.commit_sent = False  # put_rules: the request that commits has started to go out

    async def __aenter__(self) -> "DeviceClient":
        extra = {"mtu": self.mtu} if self.mtu else {}
        log.info("connecting to %s", self.address)
        self._link_cm = ble.connect(self.address, radio=self.radio, timeout=self.timeout, **extra)
        link = await self._link_cm.__aenter__()
        try:
            log.info("connected (MTU %s); opening a session", getattr(link, "mtu", "?"))
            self.session = await open_session(link, self.keystore)
        except BaseException:
            await self._link_cm.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        cm, self._link_cm = self._link_cm, None  # idempotent: unpair may close the link early
        if cm is not None:
            await cm.__aexit__(*exc)

    async def request(self, op: str, **fields: Any) -> dict:
        """Send one operation; return the response (a refusal raises `RequestFailed`).

        Operations that may drop secrets wait up to `ERASE_TIMEOUT_S`: the device then
        overwrites its free flash before it answers (PROTOCOL.md section 8)."""
        log.info("request %s", op)  # the operation only: fields may hold secrets
        if op in ERASING_OPS:
            reply = await self.session.request(op, timeout=ERASE_TIMEOUT_S, **fields)
        else:
            reply = await self.session.request(op, **fields)
        log.debug("reply to %s: ok", op)
        return reply

    async def info(self) -> dict:
        reply = await self.request("info")
        return {k: v for k, v in reply.items() if k not in ("id", "ok")}

    async def put_rules(self, rules: list[dict], progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Store rules atomically: one message when they fit, else a staged transaction."""
        sizes = [len(json.dumps(r, separators=(",", ":"))) for r in rules]
        for r, size in zip(rules, sizes):
            if size > MESSAGE_BUDGET:
                raise KeyhookError(f"rule {r.get('functionName')!r} is {size} bytes; one rule may be at most "
                                   f"{MESSAGE_BUDGET}", hint="shorten its body or headers")
        batches: list[list[dict]] = [[]]
        batch_bytes = [0]  # JSON bytes of each batch, for progress
        for r, size in zip(rules, sizes):
            if batches[-1] and batch_bytes[-1] + size + 1 > BATCH_BUDGET:
                batches.append([])
                batch_bytes.append(0)
            batches[-1].append(r)
            batch_bytes[-1] += size + 1
        total = sum(sizes)
        if len(batches) == 1:
            self.commit_sent = True
            log.info("sending %d rule(s), %d bytes, in one message that commits", len(rules), total)
            reply = await self.request("rules.put", rules=rules)
            if progress:
                progress(total, total)
            return reply["stored"]
        # The first part opens the transaction, the last one commits it (PROTOCOL.md section 6).
        txn = None
        done = 0
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
            if last:
                self.commit_sent = True
            log.info("sending part %d of %d%s", i + 1, len(batches), " (commits)" if last else "")
            reply = await self.request("rules.stage", txn=txn, rules=batch, commit=last)
            txn = reply.get("txn", txn)
            done += batch_bytes[i] - len(batch)  # the sizes, without the separators
            if progress:
                progress(done, total)
        return reply["stored"]

    async def list_rules(self) -> list[dict]:
        return (await self.request("rules.list"))["rules"]

    async def delete_rule(self, name: str) -> bool:
        return (await self.request("rules.delete", functionName=name))["deleted"]

    async def trigger(self, name: str, wait: bool = True, timeout: float = TRIGGER_TIMEOUT_S) -> dict:
        """Fire the rule `name` now; with `wait`, its result (the device retries for up to 15 s)."""
        log.info("request trigger %r%s", name, "" if wait else " (no wait)")
        reply = await self.session.request("trigger", timeout=timeout, functionName=name, wait=wait)
        return reply.get("result") or {"queued": True}

    async def wifi(self, ssid: str, password: str) -> None:
        await self.request("wifi", ssid=ssid, password=password)

    async def set_time(self, unix: int | None = None) -> int:
        return (await self.request("time", unix=int(unix if unix is not None else time.time())))["clock"]

    async def log(self, lines: int = 20) -> list[str]:
        return (await self.request("log", lines=lines))["lines"]

    async def trust_add(self, der: bytes) -> str:
        return (await self.request("trust.add", der=base64.b64encode(der).decode()))["root"]

    async def trust_list(self) -> list[dict]:
        return (await self.request("trust.list"))["roots"]

    async def trust_remove(self, root_id: str) -> bool:
        return (await self.request("trust.remove", root=root_id))["removed"]

    async def system_key(self) -> dict | None:
        """The system the device belongs to, `{"system_id", "key_check"}`, or None (no key held)."""
        return (await self.request("system.get"))["system"]

    async def set_system_key(self, system_id: str, system_key: bytes) -> dict:
        """Give the device the system key of `system_id` (admin only), replacing any it holds.

        Returns `{"system_id", "key_check", "changed"}` once the device's key check value equals
        `system_key_check(system_key, system_id)`; raises `KeyhookError` if it does not (the key
        was not stored as sent), `RequestFailed` when the device refuses (`forbidden`: not the
        admin app; `bad_request`: a malformed id or key)."""
        if len(system_key) != SYSTEM_KEY_LEN:
            raise ValueError(f"a system key is {SYSTEM_KEY_LEN} bytes, not {len(system_key)}")
        reply = await self.request("system.set", system_id=system_id, key=base64.b64encode(system_key).decode())
        want = system_key_check(system_key, system_id)
        if reply.get("system_id") != system_id or reply.get("key_check") != want:
            raise KeyhookError(f"the device reports key check {reply.get('key_check')!r} for system "
                               f"{reply.get('system_id')!r}, not {want} for {system_id}",
                               hint="send the key again; if this persists, the device's firmware does not "
                                    "speak this protocol version")
        return {k: reply[k] for k in ("system_id", "key_check", "changed")}

    async def remove_system_key(self) -> bool:
        """Remove the device's system key (admin only); False when it held none."""
        return (await self.request("system.remove"))["removed"]

    async def open_pairing(self, seconds: int = 300) -> str:
        return (await self.request("pairing.open", seconds=seconds))["code"]

    async def hand_over_admin(self, app_id: str) -> str:
        """Make the paired app `app_id` the admin; this app becomes a guest (admin only)."""
        return (await self.request("pairing.admin", app_id=app_id))["admin"]

    async def unpair(self) -> None:
        """Remove this app's pairing on the device, then the local key. The admin must hand its
        role over first while other apps are paired; the last app to leave factory-resets the
        device (its rules, tokens and Wi-Fi go with it).

        If the answer does not arrive (the link drops first; NimBLE may discard a notification
        queued when a link ends), the host reconnects and asks: a device that does not accept this
        app's key (`auth_failed` to the handshake, `NotPaired` here) has removed the pairing, and
        the local key goes too. Raises `KeyhookError` when the device still holds the pairing or
        cannot be asked; the local key then stays.
        """
        device_id = self.session.device_id
        try:
            await self.request("unpair")
        except (LinkClosed, LinkTimeout) as e:
            await self.__aexit__(None, None, None)
            if await self._still_paired():
                raise KeyhookError(f"the device did not confirm the unpair ({e}); it still holds this app's "
                                   "pairing", hint="run `keyhook unpair` again") from e
        self.keystore.remove(device_id)

    async def _still_paired(self) -> bool:
        # a fresh session answers the question: the device accepts this app's key (still paired)
        # or does not (NotPaired: the pairing is gone); the first response of a session tells
        deadline = time.monotonic() + UNPAIR_CHECK_S
        while True:
            try:
                async with ble.connect(self.address, radio=self.radio, timeout=self.timeout, attempts=1) as link:
                    session = await open_session(link, self.keystore)
                    await session.request("info")
                    return True
            except NotPaired:
                return False
            except KeyhookError as e:  # busy (the device has not hung up yet), out of range
                if time.monotonic() >= deadline:
                    raise KeyhookError(f"could not ask the device whether the unpair happened: {e}",
                                       hint="run `keyhook unpair` again when the device is in range") from e
                await asyncio.sleep(0.5)

    async def reset(self) -> None:
        """Factory-reset the device (admin only); its pairings are gone, so the local key goes too.

        The device restarts right after it answers; if the answer is lost on the way, the host asks
        the restarted device as `unpair` does (`KeyhookError` when it still holds the pairing).
        """
        device_id = self.session.device_id
        try:
            await self.request("reset", confirm="reset")
        except (LinkClosed, LinkTimeout) as e:
            await self.__aexit__(None, None, None)
            if await self._still_paired():
                raise KeyhookError(f"the device did not confirm the factory reset ({e}); it still holds this "
                                   "app's pairing", hint="run `keyhook reset` again") from e
        self.keystore.remove(device_id)
