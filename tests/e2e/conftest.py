"""End-to-end fixtures: the real firmware as a simulated device on a virtual radio, a paired
keystore, a test PKI and recording HTTP(S) receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from keyhook.session.device import DeviceClient, onboard  # noqa: F401
from keyhook.lab.devpki import make_pki
from keyhook.session.keystore import Keystore
from keyhook.lab.receiver import Receiver, server_context
from keyhook.sim.device import SimDevice
from keyhook.rules.truststore import write_trust_store

from e2ekit import IDLE_MS, PREAUTH_MS, run


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def radio():
    # Unix socket paths are short (108 bytes): keep the radio out of pytest's long tmp paths.
    with tempfile.TemporaryDirectory(prefix="khr-") as d:
        yield Path(d)


@pytest.fixture
def certs(tmp_path, pki):
    d = tmp_path / "certs"
    write_trust_store([pki.root.der], d)
    return d


@pytest.fixture
def device(tmp_path, radio, certs):
    dev = SimDevice(radio, tmp_path / "state", certs=certs)
    dev.start()
    yield dev
    dev.stop()


@pytest.fixture
def keystore(tmp_path) -> Keystore:
    return Keystore(tmp_path / "app-config")


@pytest.fixture
def paired(device, keystore):
    """The device, onboarded by `keystore`'s app, with Wi-Fi set (so fires go out)."""
    code = device.setup_code
    assert code, "an unpaired device prints its setup code"

    async def go():
        await onboard(device.address, code, radio=str(device.radio), keystore=keystore)
        async with DeviceClient(device.address, radio=str(device.radio), keystore=keystore) as dev:
            await dev.wifi("lab", "secret-wifi-pw")
    asyncio.run(go())
    return device


@pytest.fixture
def https(pki):
    with Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)) as rx:
        yield rx


@pytest.fixture
def selfsigned(pki):
    with Receiver(tls=server_context(pki.self_signed.chain_path, pki.self_signed.key_path)) as rx:
        yield rx


@pytest.fixture
def plain():
    with Receiver() as rx:
        yield rx


@pytest.fixture
def bounded(tmp_path, radio, certs, keystore, monkeypatch):
    """A paired device whose link time bounds are short (the firmware's are 60 s and 120 s)."""
    from keyhook.session.device import onboard
    from keyhook.sim.device import SimDevice

    monkeypatch.setenv("KEYHOOK_SIM_PREAUTH_MS", str(PREAUTH_MS))
    monkeypatch.setenv("KEYHOOK_SIM_IDLE_MS", str(IDLE_MS))
    dev = SimDevice(radio, tmp_path / "state", certs=certs)
    dev.start()
    try:
        run(onboard(dev.address, dev.setup_code, radio=str(dev.radio), keystore=keystore))
        yield dev
    finally:
        dev.stop()
