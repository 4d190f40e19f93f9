"""The whole path, through the real command line: an integrator registers a webhook carrying
secrets; the database holds no byte of them; the app signs in (device grant), pulls, opens and
assigns it; the simulated device (real firmware) fires; the local receiver gets exactly the
defined request. Also: what a stolen database and a stolen integrator token give an attacker."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from keyhook.session.device import DeviceClient, onboard
from keyhook.session.keystore import Keystore
from keyhook.lab.receiver import Receiver
from keyhook.sim.device import SimDevice

from cloudkit import PASSWORD, SECRET, raw_database_bytes, webhook

pytestmark = pytest.mark.timeout(300)


def cli(*args, config: Path, radio: Path | None = None, check=True) -> subprocess.CompletedProcess:
    env = dict(os.environ, KEYHOOK_CONFIG=str(config))
    if radio:
        env["KEYHOOK_RADIO"] = str(radio)
    p = subprocess.run([sys.executable, "-m", "keyhook", *args], env=env, capture_output=True, text=True, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"keyhook {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def login(served, config: Path) -> dict:
    """`keyhook cloud login URL --pin PIN`, with the owner entering the code on the device page."""
    env = dict(os.environ, KEYHOOK_CONFIG=str(config))
    proc = subprocess.Popen([sys.executable, "-m", "keyhook", "cloud", "login", served.url, "--pin", served.pin, "--json"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert "enter the code" in line, line + proc.stderr.read()
    code = line.split()[-1]
    with served.client() as http:
        r = http.post("/oauth/device", data={"user_code": code, "email": "owner@example.org", "password": PASSWORD,
                                             "decision": "allow"})
        assert r.status_code == 200, r.text
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out)


def secrets_of(marker: str) -> list[bytes]:
    return [marker.encode(), marker[::-1].encode(), base64.b64encode(marker.encode())]


def test_register_seal_pull_assign_fire(served, cloud, tmp_path):
    config = tmp_path / "app"
    assert login(served, config)["url"] == served.url
    enabled = json.loads(cli("integration", "enable", "Home", "--json", config=config).stdout)
    assert enabled["systemId"] == cloud.system_id

    with Receiver() as rx, tempfile.TemporaryDirectory(prefix="khr-") as radio:
        radio = Path(radio)
        # The integrator registers a webhook whose URL path, body, header and token are secrets.
        body = webhook("Open garage", url=rx.url(f"/api/webhook/{SECRET}-path"), securityLevel="AllowHttp")
        body["definition"]["timeout"] = 5000
        with served.client() as http:
            r = http.post(f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks", json=body,
                          headers={"Authorization": f"Bearer {cloud.token()}"})
        assert r.status_code == 201, r.text
        wid = r.json()["functionWebhookId"]

        # No byte of any secret in the database files, nor in the server's output.
        raw = raw_database_bytes(cloud.db)
        assert wid.encode() in raw  # we are reading the right database
        for s in secrets_of(SECRET) + [b"at-" + SECRET.encode()]:
            assert s not in raw
            assert s.decode() not in served.output()

        pulled = json.loads(cli("webhooks", "pull", "--json", config=config).stdout)
        assert [(w["functionWebhookId"], w["functionName"], w["modificationState"]) for w in pulled] == [
            (wid, "Open garage", None)]
        assert pulled[0]["target"].startswith(f"POST http://127.0.0.1:{rx.port}/")
        assert SECRET not in json.dumps(pulled)  # the owner's listing shows no secret either

        device = SimDevice(radio, tmp_path / "state")
        device.start()
        try:
            async def pair_it():
                ks = Keystore(config)
                await onboard(device.address, device.setup_code, radio=str(radio), keystore=ks)
                async with DeviceClient(device.address, radio=str(radio), keystore=ks) as dev:
                    await dev.wifi("lab", "wifi-pw")
            asyncio.run(pair_it())

            assigned = json.loads(cli("webhooks", "assign", wid, "--device", device.address, "--json",
                                      config=config, radio=radio).stdout)
            assert assigned["stored"] == ["Open garage"] and assigned["events"] == ["trigger"]
            fired = json.loads(cli("trigger", device.address, "Open garage", "--json", config=config, radio=radio).stdout)
            assert fired["status"] == 200, fired
        finally:
            device.stop()
        rx.settle()
        [req] = rx.requests
        assert (req.method, req.target) == ("POST", f"/api/webhook/{SECRET}-path")
        assert req.header("X-Api-Key") == SECRET[::-1]
        assert req.header("Authorization") == f"Bearer at-{SECRET}"
        assert req.header("Content-Type") == "application/json"
        assert json.loads(req.body) == {"auth": SECRET, "event": "open"}


def test_a_stolen_database_and_integrator_token_open_nothing(served, cloud, tmp_path):
    from cloudkit import app_signed_in
    from keyhook.cloud import sealing
    app = app_signed_in(tmp_path / "app", served, cloud)
    app.enable("Home")
    token = cloud.token()
    with served.client() as http:
        h = {"Authorization": f"Bearer {token}"}
        r = http.post(f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks", json=webhook(), headers=h)
        wid = r.json()["functionWebhookId"]
        # With the integrator's token: metadata only, anywhere it can reach.
        for path in ("/3rd-party/api/systems", f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks",
                     f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks/{wid}"):
            r = http.get(path, headers=h)
            assert r.status_code == 200 and SECRET not in r.text and "definition" not in r.text and "sealed" not in r.text
        assert http.get(f"/app/api/systems/{cloud.system_id}/function-webhooks", headers=h).status_code == 403
    # With the database: ciphertext, and a private key sealed under a system key it does not hold.
    raw = raw_database_bytes(cloud.db)
    system_key = app.system_key(cloud.system_id)
    assert system_key not in raw and system_key.hex().encode() not in raw
    from keyhook.cloud.models import System, Webhook
    with cloud.db.read() as s:
        system = s.get(System, cloud.system_id)
        w = s.get(Webhook, wid)
    for guess in (os.urandom(32), bytes(32), system.public_key):
        with pytest.raises(sealing.SealError):
            sealing.open_private_key(system.sealed_private_key, guess, cloud.system_id)
    # The owner's app, holding the system key, opens it.
    sk = sealing.open_private_key(system.sealed_private_key, system_key, cloud.system_id)
    assert sealing.open_definition(w.sealed, sk, system_id=cloud.system_id, webhook_id=wid, version=1,
                                   key_id=w.key_id)["body"]["content"]["auth"] == SECRET


def test_the_server_output_holds_no_secret(served, cloud, tmp_path):
    """uvicorn's access log prints query strings; the sample client sends its secret there."""
    from cloudkit import app_signed_in
    app_signed_in(tmp_path / "app", served, cloud).enable("Home")
    c = cloud.client
    t = __import__("keyhook.cloud.admin", fromlist=["x"]).token_issue(cloud.db, cloud.owner, c["client_id"])
    with served.client() as http:
        r = http.post("/oauth/token", params={"grant_type": "refresh_token", "refresh_token": t["refresh_token"],
                                              "client_id": c["client_id"], "client_secret": c["client_secret"]})
        assert r.status_code == 200, r.text
        h = {"Authorization": f"Bearer {r.json()['access_token']}"}
        path = f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks"
        assert http.post(path, json=webhook(), headers=h).status_code == 201
        bad = webhook("bad", url=f"ftp://ha.example.org/{SECRET}")
        r = http.post(path, json=bad, headers=h)
        assert r.status_code == 400 and r.json()["field"] == "definition.url"
        assert SECRET not in r.text  # the error names the field, not the value
        http.get("/no/such/path?token=" + SECRET)
    time.sleep(0.5)
    out = served.output()
    assert '"POST /oauth/token" 200' in out and f'"POST {path}" 201' in out and f'"POST {path}" 400' in out
    for s in (c["client_secret"], t["refresh_token"], r.request.headers.get("authorization", "x")[7:] or "x",
              SECRET, SECRET[::-1]):
        assert s not in out


def test_a_hostile_cloud_cannot_swap_or_alter_what_the_app_opens(served, cloud, tmp_path):
    """The cloud (or a thief with write access) moves one webhook's ciphertext onto another,
    or replaces a pending update: the app refuses to open, approve or assign either."""
    from sqlalchemy import update
    from cloudkit import app_signed_in
    from keyhook.cloud import sealing
    from keyhook.cloud.appside import CloudError
    from keyhook.cloud.models import Webhook
    app = app_signed_in(tmp_path / "app", served, cloud)
    app.enable("Home")
    h = {"Authorization": f"Bearer {cloud.token()}"}
    path = f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks"
    with served.client() as http:
        a = http.post(path, json=webhook("A", url="https://a.example/hook"), headers=h).json()["functionWebhookId"]
        b = http.post(path, json=webhook("B", url="https://b.example/hook"), headers=h).json()["functionWebhookId"]
        assert http.put(f"{path}/{b}", json=webhook("B", url="https://b2.example/hook"), headers=h).status_code == 202
    with cloud.db.write() as s:
        sealed_a = s.get(Webhook, a).sealed
        s.execute(update(Webhook).where(Webhook.id == b).values(sealed=sealed_a))  # A's blob on B
    with cloud.db.write() as s:
        c = s.get(Webhook, a)
        c.modification_state, c.pending_sealed, c.pending_key_id = "UpdateRequested", sealed_a, c.key_id  # replayed as v2

    pulled = {w["functionWebhookId"]: w for w in app.pull()}
    assert pulled[a]["opened"] is False and pulled[b]["opened"] is False
    assert "does not open" in pulled[b]["target"]
    for wid in (a, b):
        with pytest.raises(sealing.SealError):
            app.decide(wid, True)
        with pytest.raises(sealing.SealError):
            app.rule_for(wid)
    # Rejecting needs nothing opened, and puts A back to what the integrator registered.
    assert app.decide(a, False)["result"] == "rejected"
    assert {w["functionWebhookId"]: w for w in app.pull()}[a]["target"].startswith("POST https://a.example/")
    with pytest.raises(CloudError):
        app.decide(a, False)  # nothing waits any more: 409
