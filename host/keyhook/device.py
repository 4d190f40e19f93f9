"""A keyhook device as the app sees it: onboard it, then give it commands over the secure session.

`DeviceClient` is the library under the BLE commands of the CLI: it connects over bleak (the
system adapter, or the virtual radio of a simulated device), opens a forward-secret session with
the stored pairing key, and sends the operations of PROTOCOL.md section 6.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

from keyhook import KeyhookError
from keyhook import ble
from keyhook.keystore import Keystore
from keyhook.session import open_session, pair

# Leave room inside MAX_PAYLOAD (8192) for the request envelope.
MESSAGE_BUDGET = 7600
# The device waits up to 15 s for a triggered fire (firmware/kh/app/commands.py); wait longer.
TRIGGER_TIMEOUT_S = 40.0


async def onboard(address: str, code: str, *, radio: str | None = None, keystore: Keystore | None = None,
                  timeout: float = 20.0) -> dict:
    """Pair with the device at `address` using its setup code; returns its `info`."""
    keystore = keystore or Keystore()
    async with ble.connect(address, radio=radio, timeout=timeout) as link:
        await pair(link, code, keystore)
    async with DeviceClient(address, radio=radio, keystore=keystore, timeout=timeout) as dev:
        return await dev.info()


ERASE_TIMEOUT_S = 120.0  # a 2 MB ESP32 data partition is overwritten in well under this
ERASING_OPS = frozenset({"rules.put", "rules.stage", "rules.commit", "rules.delete", "wifi", "unpair",
                         "pairing.remove", "reset"})


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

    async def __aenter__(self) -> "DeviceClient":
        extra = {"mtu": self.mtu} if self.mtu else {}
        self._link_cm = ble.connect(self.address, radio=self.radio, timeout=self.timeout, **extra)
        link = await self._link_cm.__aenter__()
        try:
            self.session = await open_session(link, self.keystore)
        except BaseException:
            await self._link_cm.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._link_cm is not None:
            await self._link_cm.__aexit__(*exc)

    async def request(self, op: str, **fields: Any) -> dict:
        """Send one operation; return the response (a refusal raises `RequestFailed`).

        Operations that may drop secrets wait up to `ERASE_TIMEOUT_S`: the device then
        overwrites its free flash before it answers (PROTOCOL.md section 7)."""
        if op in ERASING_OPS:
            return await self.session.request(op, timeout=ERASE_TIMEOUT_S, **fields)
        return await self.session.request(op, **fields)

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
            if batches[-1] and batch_bytes[-1] + size + 1 > MESSAGE_BUDGET:
                batches.append([])
                batch_bytes.append(0)
            batches[-1].append(r)
            batch_bytes[-1] += size + 1
        total = sum(sizes)
        if len(batches) == 1:
            reply = await self.request("rules.put", rules=rules)
            if progress:
                progress(total, total)
            return reply["stored"]
        # The first part opens the transaction, the last one commits it (PROTOCOL.md section 6).
        txn = None
        done = 0
        for i, batch in enumerate(batches):
            last = i == len(batches) - 1
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

    async def trigger(self, name: str, wait: bool = True) -> dict:
        reply = await self.session.request("trigger", timeout=TRIGGER_TIMEOUT_S, functionName=name, wait=wait)
        return reply.get("result") or {"queued": True}

    async def wifi(self, ssid: str, password: str) -> None:
        await self.request("wifi", ssid=ssid, password=password)

    async def set_time(self, unix: int | None = None) -> int:
        return (await self.request("time", unix=int(unix if unix is not None else time.time())))["clock"]

    async def log(self, lines: int = 20) -> list[str]:
        return (await self.request("log", lines=lines))["lines"]

    async def trust_add(self, der: bytes) -> str:
        return (await self.request("trust.add", der=base64.b64encode(der).decode()))["id"]

    async def trust_list(self) -> list[dict]:
        return (await self.request("trust.list"))["roots"]

    async def trust_remove(self, root_id: str) -> bool:
        return (await self.request("trust.remove", root=root_id))["removed"]

    async def open_pairing(self, seconds: int = 300) -> str:
        return (await self.request("pairing.open", seconds=seconds))["code"]

    async def hand_over_admin(self, app_id: str) -> str:
        """Make the paired app `app_id` the admin; this app becomes a guest (admin only)."""
        return (await self.request("pairing.admin", app_id=app_id))["admin"]

    async def unpair(self) -> None:
        """Remove this app's pairing on the device, then the local key. The admin must hand its
        role over first while other apps are paired; the last app to leave factory-resets the
        device (its rules, tokens and Wi-Fi go with it)."""
        await self.request("unpair")
        self.keystore.remove(self.session.device_id)

    async def reset(self) -> None:
        """Factory-reset the device (admin only); its pairings are gone, so the local key goes too."""
        await self.request("reset", confirm="reset")
        self.keystore.remove(self.session.device_id)
