"""The PyPI client `ekey-bionyxpy`, unchanged, against `keyhook cloud serve` on 127.0.0.1 over
HTTPS: every call it makes, and the owner's approval making changes take effect."""

from __future__ import annotations

import asyncio
import ssl

import aiohttp
import pytest
from ekey_bionyxpy import AbstractAuth, BionyxAPI

from cloudkit import app_signed_in, webhook

pytestmark = pytest.mark.timeout(180)


class TokenAuth(AbstractAuth):
    """The client's documented extension point: hand it an access token."""

    def __init__(self, websession, host, token):
        super().__init__(websession, host)
        self.token = token

    async def async_get_access_token(self) -> str:
        return self.token


def test_ekey_bionyxpy_end_to_end(served, cloud, tmp_path):
    app = app_signed_in(tmp_path / "app", served, cloud)
    app.enable("Home")
    token = cloud.token()

    async def go():
        ctx = ssl.create_default_context(cafile=served.cert)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as session:
            api = BionyxAPI(TokenAuth(session, f"{served.url}/3rd-party/api", token))
            systems = await api.get_systems()
            assert [(s.system_name, s.own_system, s.function_webhook_quotas) for s in systems] == [
                ("Home", True, {"free": 5, "used": 0})]
            system = systems[0]
            assert await system.get_webhooks() == []

            hook = await system.add_webhook(webhook("Open garage"))
            assert hook.webhook_function_name == "Open garage" and hook.modification_state is None
            assert [w.webhook_id for w in await system.get_webhooks()] == [hook.webhook_id]
            same = await system.get_webhook(hook.webhook_id)
            assert same.webhook_location_name == "Front door"

            await hook.update_name({"locationName": "Garage", "functionName": "Open it"})
            await hook.get_update()
            assert (hook.webhook_location_name, hook.webhook_function_name) == ("Garage", "Open it")

            await hook.update(webhook("Open it", url="https://ha.example.org:8123/api/webhook/v2"))
            await hook.get_update()
            assert hook.modification_state == "UpdateRequested"
            assert app.decide(hook.webhook_id, True)["result"] == "updated"
            await hook.get_update()
            assert hook.modification_state is None
            opened = {w["functionWebhookId"]: w for w in app.open_all()}[hook.webhook_id]
            assert opened["definition"]["url"].endswith("/v2") and opened["version"] == 2

            await hook.delete()
            await hook.get_update()
            assert hook.modification_state == "DeleteRequested"
            assert (await api.get_systems())[0].function_webhook_quotas == {"free": 4, "used": 1}
            assert app.decide(hook.webhook_id, True)["result"] == "deleted"
            assert await system.get_webhooks() == []
            assert (await api.get_systems())[0].function_webhook_quotas == {"free": 5, "used": 0}
            with pytest.raises(aiohttp.ClientResponseError) as e:
                await system.get_webhook(hook.webhook_id)
            assert e.value.status == 404

            bad = BionyxAPI(TokenAuth(session, f"{served.url}/3rd-party/api", "stolen-or-expired"))
            with pytest.raises(aiohttp.ClientResponseError) as e:
                await bad.get_systems()
            assert e.value.status == 401
    asyncio.run(go())
