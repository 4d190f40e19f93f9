"""The host implementation against the real firmware channel (MicroPython unix port)."""

from __future__ import annotations

import asyncio

import pytest

from keyhook.session import open_session, pair, records

from .pipe import FirmwareDevice, PipeLink


@pytest.fixture
def device(tmp_path):
    with FirmwareDevice(tmp_path / "store") as dev:
        yield dev


def test_smoke_pair_and_session(device, keystore):
    p = asyncio.run(pair(PipeLink(device), "12345678", keystore))
    st = device.state()
    assert st["paired"] == [keystore.app_id] and p.device_id == st["device_id"]

    async def go():
        link = PipeLink(device)
        s = await open_session(link, keystore)
        r = await s.request("info", hello="world")
        return link, r
    link, r = asyncio.run(go())
    assert r["echo"] == {"id": 1, "op": "info", "hello": "world"}
    assert link.messages() == [{"id": 1, "op": "info", "hello": "world"}]
