"""Review 2: a webhook's functionName is metadata that any integrator renames without the
owner's approval (PATCH .../name, 204), and a device keys its rules by that name. Before,
`webhooks assign` of a webhook renamed to the name of a rule already on the device (the owner's
own, or another integrator's webhook assigned earlier) silently replaced that rule with the
integrator's definition."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest

from keyhook.cloud.appside import CloudError
from keyhook.session.device import DeviceClient, onboard
from keyhook.session.keystore import Keystore
from keyhook.sim.device import SimDevice

from cloudkit import app_signed_in, webhook

pytestmark = pytest.mark.timeout(240)


def test_assign_never_replaces_a_rule_of_another_webhook_or_of_the_owner(served, cloud, tmp_path):
    config = tmp_path / "app"
    app = app_signed_in(config, served, cloud)
    app.enable("Home")
    path = f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks"
    h = {"Authorization": f"Bearer {cloud.token()}"}
    with served.client() as http:
        r = http.post(path, json=webhook("Garage light", url="https://evil.example/light"), headers=h)
        assert r.status_code == 201, r.text
        wid = r.json()["functionWebhookId"]
        # the integrator renames it to the name of the owner's rule: no approval needed
        assert http.patch(f"{path}/{wid}/name", json={"functionName": "Open garage"}, headers=h).status_code == 204
    with tempfile.TemporaryDirectory(prefix="khr-") as radio:
        device = SimDevice(radio, tmp_path / "state")
        device.start()
        try:
            ks = Keystore(config)

            async def owner_rule():
                await onboard(device.address, device.setup_code, radio=radio, keystore=ks)
                async with DeviceClient(device.address, radio=radio, keystore=ks) as dev:
                    own = webhook("Open garage", url="https://garage.example/open")
                    await dev.put_rules([{"functionName": own["functionName"], "definition": own["definition"]}])
            asyncio.run(owner_rule())

            with pytest.raises(CloudError) as e:
                asyncio.run(app.assign(wid, device.address, radio=radio, keystore=ks))
            assert "Open garage" in str(e.value)

            async def listed():
                async with DeviceClient(device.address, radio=radio, keystore=ks) as dev:
                    return await dev.list_rules()
            rules = asyncio.run(listed())
            assert [(r["name"], r["host"]) for r in rules] == [("Open garage", "garage.example")]  # the owner's, unchanged

            # the same webhook assigned again under its own name replaces only itself
            with served.client() as http:
                assert http.patch(f"{path}/{wid}/name", json={"functionName": "Garage light"}, headers=h).status_code == 204
            assert asyncio.run(app.assign(wid, device.address, radio=radio, keystore=ks))["stored"] == ["Garage light"]
            assert asyncio.run(app.assign(wid, device.address, radio=radio, keystore=ks))["stored"] == ["Garage light"]
        finally:
            device.stop()
