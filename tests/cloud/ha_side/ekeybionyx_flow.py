"""Run by Home Assistant's pytest (pytest-homeassistant-custom-component), inside Home Assistant's
own runtime, by tests/cloud/test_interop_home_assistant.py; not collected by keyhook's suite.

Home Assistant's `ekeybionyx` integration, unchanged, against a `keyhook cloud serve` on
127.0.0.1 (KEYHOOK_INTEROP names a JSON file: the cloud's URL and certificate, the OAuth client
registered for Home Assistant, the owner's sign-in and an app token to approve deletions). The
integration's endpoints are constants for ekey's cloud; they are pointed at this cloud, which is
what configuring a base URL means here. REQUESTS_CA_BUNDLE, set by the caller and read by Home
Assistant's SSL helper, makes Home Assistant trust the cloud's self-made certificate. Home Assistant's test harness lets
sockets reach 127.0.0.1 only, so nothing here can reach another address.

1. A fresh installation: the config flow through Home Assistant's OAuth 2.0 implementation (the
   owner's consent in a browser played here, the callback, the token request with the client
   secret), its systems call, the webhooks step creating one webhook, and the entry's setup (an
   event entity and Home Assistant's own webhook).
2. The refresh Home Assistant's implementation sends, with the token from step 1.
3. A reinstallation: the flow finds `used > 0`, deletes every webhook, polls until `used == 0`
   while the owner approves the deletion, and creates a new one."""

import asyncio
import json
import os
import re
from unittest.mock import patch

import aiohttp
from homeassistant import config_entries
from homeassistant.components.application_credentials import ClientCredential, async_import_client_credential
from homeassistant.components.ekeybionyx import application_credentials, config_flow
from homeassistant.components.ekeybionyx.const import DOMAIN
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import config_entry_oauth2_flow
from homeassistant.setup import async_setup_component
import pytest

CLOUD = json.loads(open(os.environ["KEYHOOK_INTEROP"]).read())


@pytest.fixture(autouse=True)
def this_cloud():
    url = CLOUD["url"]
    with patch.object(application_credentials, "OAUTH2_AUTHORIZE", f"{url}/oauth/authorize"), \
            patch.object(application_credentials, "OAUTH2_TOKEN", f"{url}/oauth/token"), \
            patch.object(config_flow, "API_URL", f"{url}/3rd-party/api"):
        yield


async def owner_consents(authorize_url: str) -> dict:
    """The owner's browser: the consent page, sign in, allow; the redirect's query."""
    import ssl
    ctx = ssl.create_default_context(cafile=CLOUD["cafile"])
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as browser:
        async with browser.get(authorize_url) as page:
            assert page.status == 200, await page.text()
            text = await page.text()
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', text))
        assert hidden["scope"].startswith("https://") and hidden["response_type"] == "code"
        form = {**hidden, "email": CLOUD["email"], "password": CLOUD["password"], "decision": "allow"}
        async with browser.post(authorize_url.split("?")[0], data=form, allow_redirects=False) as r:
            assert r.status == 302, await r.text()
            location = r.headers["Location"]
    from urllib.parse import parse_qs, urlsplit
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def approve_deletions(system_id: str) -> int:
    """The owner's app approves every waiting deletion (app API, the app's token)."""
    import ssl
    ctx = ssl.create_default_context(cafile=CLOUD["cafile"])
    headers = {"Authorization": f"Bearer {CLOUD['app_token']}"}
    base = f"{CLOUD['url']}/app/api/systems/{system_id}/function-webhooks"
    n = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
        async with http.get(base, headers=headers) as r:
            hooks = (await r.json())["functionWebhooks"]
        for w in hooks:
            if w["modificationState"] == "DeleteRequested":
                async with http.post(f"{base}/{w['functionWebhookId']}/approve", headers=headers) as r:
                    assert r.status == 200, await r.text()
                    n += 1
    return n


async def start_flow(hass: HomeAssistant, hass_client_no_auth) -> dict:
    """The user flow up to the integration's first own step, through the real OAuth exchange."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": config_entries.SOURCE_USER})
    assert result["type"] is FlowResultType.EXTERNAL_STEP, result
    back = await owner_consents(result["url"])
    client = await hass_client_no_auth()
    resp = await client.get(f"/auth/external/callback?code={back['code']}&state={back['state']}")
    assert resp.status == 200
    return await hass.config_entries.flow.async_configure(result["flow_id"])


async def test_config_flow_setup_refresh_and_reinstall(hass: HomeAssistant, hass_client_no_auth,
                                                       current_request_with_host) -> None:
    assert await async_setup_component(hass, "application_credentials", {})
    assert await async_setup_component(hass, "webhook", {})
    await async_import_client_credential(hass, DOMAIN, ClientCredential(CLOUD["client_id"], CLOUD["client_secret"]))

    tokens = []
    real = config_entry_oauth2_flow.LocalOAuth2Implementation._token_request

    async def spy(self, data):
        tokens.append(await real(self, data))
        return tokens[-1]

    with patch.object(config_entry_oauth2_flow.LocalOAuth2Implementation, "_token_request", spy):
        # 1. A fresh installation: one system, nothing used, the webhooks form.
        flow = await start_flow(hass, hass_client_no_auth)
        assert flow.get("step_id") == "webhooks", flow
        assert flow["description_placeholders"]["webhooks_available"] == "5"
        done = await hass.config_entries.flow.async_configure(
            flow["flow_id"], {"webhook1": "Front door", "url": "http://127.0.0.1:8123"})
        assert done["type"] is FlowResultType.CREATE_ENTRY, done
        await hass.async_block_till_done()
        entry = hass.config_entries.async_entries(DOMAIN)[0]
        assert entry.unique_id == CLOUD["system_id"] and entry.state is config_entries.ConfigEntryState.LOADED
        assert [w["name"] for w in entry.data["webhooks"]] == ["Front door"]
        assert hass.states.get("event.front_door") is not None

        # 2. The refresh of Home Assistant's OAuth2 implementation.
        assert tokens and tokens[0]["token_type"] == "Bearer" and isinstance(tokens[0]["expires_in"], int)
        impl = (await config_entry_oauth2_flow.async_get_implementations(hass, DOMAIN))
        impl = next(iter(impl.values()))
        refreshed = await impl.async_refresh_token({**tokens[0], "expires_at": 0})
        assert refreshed["access_token"] != tokens[0]["access_token"]
        assert refreshed["refresh_token"] != tokens[0]["refresh_token"]

        # 3. A reinstallation: the old webhook is deleted and waited for, then a new one made.
        assert await hass.config_entries.async_remove(entry.entry_id)
        await hass.async_block_till_done()
        flow = await start_flow(hass, hass_client_no_auth)
        assert flow.get("step_id") == "delete_webhooks", flow
        flow = await hass.config_entries.flow.async_configure(flow["flow_id"], {})
        assert flow["type"] is FlowResultType.SHOW_PROGRESS, flow
        approved = 0
        for _ in range(60):  # the integration polls every 5 s
            approved += await approve_deletions(CLOUD["system_id"])
            await asyncio.sleep(1)
            await hass.async_block_till_done()
            flow = hass.config_entries.flow.async_get(flow["flow_id"])
            if flow["step_id"] != "wait_for_deletion":
                break
        assert approved == 1
        flow = await hass.config_entries.flow.async_configure(flow["flow_id"])
        assert flow.get("step_id") == "webhooks", flow
        done = await hass.config_entries.flow.async_configure(
            flow["flow_id"], {"webhook1": "Garage", "url": "http://127.0.0.1:8123"})
        assert done["type"] is FlowResultType.CREATE_ENTRY, done
        await hass.async_block_till_done()
        assert hass.states.get("event.garage") is not None
