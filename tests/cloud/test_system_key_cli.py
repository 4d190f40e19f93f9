"""The system key reaches the system's devices (issue 13, "Sealing"), through the real command
line: `keyhook integration enable SYSTEM --device`, `keyhook system key push|show|rm`, and
`keyhook webhooks assign`, which gives the key first when the device's check value differs."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from keyhook.session import pair
from keyhook.session.device import DeviceClient, onboard, system_key_check
from keyhook.session.keystore import Keystore
from keyhook.sim.device import SimDevice

from cloudkit import app_signed_in, webhook

pytestmark = pytest.mark.timeout(300)


def cli(*args, config: Path, radio: Path, check=True) -> subprocess.CompletedProcess:
    env = dict(os.environ, KEYHOOK_CONFIG=str(config), KEYHOOK_RADIO=str(radio))
    p = subprocess.run([sys.executable, "-m", "keyhook", *args], env=env, capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"keyhook {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture
def backend() -> str:
    """These tests are about the device and the app, not the database: SQLite only (the
    PostgreSQL runs of the other cloud tests cover the API the app calls)."""
    return "sqlite"


@pytest.fixture
def radio():
    with tempfile.TemporaryDirectory(prefix="khr-") as d:  # unix socket paths are short
        yield Path(d)


@pytest.fixture
def device(tmp_path, radio):
    dev = SimDevice(radio, tmp_path / "state")
    dev.start()
    yield dev
    dev.stop()


@pytest.fixture
def app(tmp_path, served, cloud, device):
    """The owner's app: signed in to the cloud and the admin of the simulated device."""
    config = tmp_path / "app"
    a = app_signed_in(config, served, cloud)
    asyncio.run(onboard(device.address, device.setup_code, radio=str(device.radio), keystore=Keystore(config)))
    return a


def on_device(device, config: Path):
    async def go():
        async with DeviceClient(device.address, radio=str(device.radio), keystore=Keystore(config)) as d:
            return await d.system_key()
    return asyncio.run(go())


def test_enable_with_device_gives_it_the_key(app, cloud, device, radio):
    out = json.loads(cli("integration", "enable", "Home", "--device", device.address, "--json",
                         config=app.root, radio=radio).stdout)
    key = app.system_key(cloud.system_id)
    want = system_key_check(key, cloud.system_id)
    assert out["devices"] == [{"systemId": cloud.system_id, "device": device.address, "keyCheck": want, "changed": True}]
    assert on_device(device, app.root) == {"system_id": cloud.system_id, "key_check": want}
    shown = json.loads(cli("system", "key", "show", device.address, "--json", config=app.root, radio=radio).stdout)
    assert shown == {"device": device.address, "systemId": cloud.system_id, "keyCheck": want, "matches": True}
    # pushing again (by name) sends nothing: the device's check value is already this app's
    again = json.loads(cli("system", "key", "push", "Home", "--device", device.address, "--json",
                           config=app.root, radio=radio).stdout)
    assert again == [{**out["devices"][0], "changed": False}]
    human = cli("system", "key", "show", device.address, config=app.root, radio=radio).stdout
    assert f"holds the system key of {cloud.system_id}" in human and "the same key as this app's" in human
    assert key.hex() not in human + json.dumps([out, again, shown])


def test_assign_gives_the_key_when_the_device_lacks_it(app, cloud, served, device, radio):
    app.enable("Home")
    with served.client() as http:
        r = http.post(f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks", json=webhook("Open garage"),
                      headers={"Authorization": f"Bearer {cloud.token()}"})
    assert r.status_code == 201, r.text
    wid = r.json()["functionWebhookId"]
    assert on_device(device, app.root) is None
    want = system_key_check(app.system_key(cloud.system_id), cloud.system_id)
    first = json.loads(cli("webhooks", "assign", wid, "--device", device.address, "--json",
                           config=app.root, radio=radio).stdout)
    assert first["stored"] == ["Open garage"]
    assert first["systemKey"] == {"systemId": cloud.system_id, "device": device.address, "keyCheck": want, "changed": True}
    assert on_device(device, app.root) == {"system_id": cloud.system_id, "key_check": want}
    second = json.loads(cli("webhooks", "assign", wid, "--device", device.address, "--json",
                            config=app.root, radio=radio).stdout)
    assert second["systemKey"]["changed"] is False  # the same check value: nothing sent
    # a device whose key differs (another app's key for the same system) gets this app's key
    other = os.urandom(32)

    async def swap():
        async with DeviceClient(device.address, radio=str(radio), keystore=Keystore(app.root)) as d:
            await d.set_system_key(cloud.system_id, other)
    asyncio.run(swap())
    shown = json.loads(cli("system", "key", "show", device.address, "--json", config=app.root, radio=radio).stdout)
    assert shown["matches"] is False
    third = json.loads(cli("webhooks", "assign", wid, "--device", device.address, "--json",
                           config=app.root, radio=radio).stdout)
    assert third["systemKey"]["changed"] is True and on_device(device, app.root)["key_check"] == want


def test_a_device_of_another_system_moves_only_with_replace(app, cloud, device, radio):
    app.enable("Home")
    cli("system", "key", "push", cloud.system_id, "--device", device.address, config=app.root, radio=radio)
    app.system_key("garden-shed", create=True)  # a second system this app holds a key for
    p = cli("system", "key", "push", "garden-shed", "--device", device.address, config=app.root, radio=radio, check=False)
    assert p.returncode == 2
    assert f"error: the device {device.address} belongs to system {cloud.system_id}" in p.stderr
    assert "hint:" in p.stderr and "--replace" in p.stderr
    assert on_device(device, app.root)["system_id"] == cloud.system_id  # unchanged
    moved = json.loads(cli("system", "key", "push", "garden-shed", "--device", device.address, "--replace", "--json",
                           config=app.root, radio=radio).stdout)
    assert moved == [{"systemId": "garden-shed", "device": device.address, "changed": True,
                      "keyCheck": system_key_check(app.system_key("garden-shed"), "garden-shed")}]
    removed = json.loads(cli("system", "key", "rm", device.address, "--json", config=app.root, radio=radio).stdout)
    assert removed == {"device": device.address, "removed": True}
    assert on_device(device, app.root) is None
    shown = cli("system", "key", "show", device.address, config=app.root, radio=radio).stdout
    assert "holds no system key" in shown


def test_clear_errors(app, cloud, served, device, radio, tmp_path):
    # a system this app holds no key for: said before any radio work
    p = cli("system", "key", "push", cloud.system_id, "--device", device.address, "--json",
            config=app.root, radio=radio, check=False)
    assert p.returncode == 2
    err = json.loads(p.stdout)
    assert err["message"] == f"this app has no key for system {cloud.system_id}" and "integration enable" in err["hint"]
    p = cli("system", "key", "push", "Home", "--device", "not-an-address", config=app.root, radio=radio, check=False)
    assert p.returncode == 2 and "is not a Bluetooth address" in p.stderr
    # a guest app (paired through the admin's window) may not give the key
    async def window():
        async with DeviceClient(device.address, radio=str(radio), keystore=Keystore(app.root)) as d:
            return await d.open_pairing(60)
    code = asyncio.run(window())
    guest = tmp_path / "guest"
    app_signed_in(guest, served, cloud)  # the owner, signed in on a second phone

    async def pair_guest():
        from keyhook import ble
        async with ble.connect(device.address, radio=str(radio)) as link:
            await pair(link, code, Keystore(guest))
    asyncio.run(pair_guest())
    p = cli("integration", "enable", "Home", "--device", device.address, config=guest, radio=radio, check=False)
    assert p.returncode == 2
    assert f"error: the integration of {cloud.system_id} is enabled, but a device did not get the system key: " \
           "the device refused `system.set`: only the admin app" in p.stderr
    assert "hint:" in p.stderr and f"`keyhook system key push {cloud.system_id} --device ADDRESS`" in p.stderr
    p = cli("system", "key", "push", cloud.system_id, "--device", device.address, config=guest, radio=radio, check=False)
    assert p.returncode == 2
    assert "error: the device refused `system.set`: only the admin app" in p.stderr and "hint:" in p.stderr
    assert on_device(device, app.root) is None
