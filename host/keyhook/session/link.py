"""The transport the channel runs over: whole records, in order, both ways."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class RecordLink(Protocol):
    """Carries whole records; the BLE layer implements it over GATT fragments.

    `recv` raises `LinkTimeout` when nothing arrives within `timeout` seconds and `LinkClosed`
    when the device disconnects.
    """

    async def send(self, record: bytes) -> None: ...

    async def recv(self, timeout: float) -> bytes: ...
