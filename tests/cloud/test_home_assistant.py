"""Home Assistant's `ekeybionyx` integration, reproduced call for call against `keyhook cloud
serve` on 127.0.0.1 over HTTPS.

The integration itself runs only on Home Assistant (Python 3.13 or later); `make interop` runs
the real one where that runtime exists (tests/interop/). This test does what its source does,
in the same order and with the same requests, read from Home Assistant's
`homeassistant/components/ekeybionyx/config_flow.py` and the OAuth 2.0 implementation it uses
(`homeassistant/helpers/config_entry_oauth2_flow.py`, `LocalOAuth2Implementation`):

1. the authorization URL: `response_type=code`, `client_id`, `redirect_uri`, a JWT `state` and
   ekey's own `scope` (a URL), opened in the owner's browser;
2. the token request: a form POST with `grant_type=authorization_code`, `code`, `redirect_uri`,
   `client_id` and `client_secret` (a confidential client); `expires_in` must be an integer;
3. `GET systems` through `ekey-bionyxpy`, keeping `ownSystem` systems, giving up when
   `free == 0 and used == 0`;
4. when `used > 0`: every webhook of the list deleted (202), then `GET systems` polled until
   `used == 0` (Home Assistant waits 5 s between polls; the owner approves in the app meanwhile);
5. one webhook added per name: `integrationName` and `locationName` "Home Assistant", the
   definition with only the keys Home Assistant sends (no explicit nulls), `securityLevel`
   `AllowHttp`, no authentication, `content` a JSON *string*; 201 with its id;
6. the refresh Home Assistant's OAuth2 session does when the access token nears expiry: a form
   POST with `grant_type=refresh_token`, `client_id`, `client_secret`, `refresh_token`.

Setting up the config entry afterwards calls nothing in the cloud (it registers Home Assistant's
own webhooks), so there is nothing more to reproduce."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import ssl
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import httpx
import pytest
from ekey_bionyxpy import AbstractAuth, BionyxAPI

from keyhook.cloud import admin

from cloudkit import PASSWORD, app_signed_in, webhook

pytestmark = pytest.mark.timeout(180)

SCOPE = "https://ekeybionyxprod.onmicrosoft.com/3rd-party-api/api-access"  # ekey's, as Home Assistant sends it
REDIRECT = "https://my.home-assistant.io/redirect/oauth"
POLL_SECONDS = 0.2  # Home Assistant waits 5 s between polls; the calls are the same


class ConfigFlowAuth(AbstractAuth):
    """What the integration's config flow hands ekey-bionyxpy: the fresh access token."""

    def __init__(self, websession, host, token):
        super().__init__(websession, host)
        self._token = token

    async def async_get_access_token(self) -> str:
        return self._token["access_token"]


def jwt_like_state() -> str:
    """Home Assistant's state is a signed JWT (header.payload.signature, base64url)."""
    part = lambda n: base64.urlsafe_b64encode(secrets.token_bytes(n)).rstrip(b"=").decode()  # noqa: E731
    return f"{part(27)}.{part(90)}.{part(32)}"


def browser_consents(served, authorize_url: str) -> dict:
    """The owner's browser: the consent page, sign in, allow; returns the redirect's query."""
    with httpx.Client(verify=ssl.create_default_context(cafile=served.cert), timeout=30) as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200, page.text
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
        r = browser.post(authorize_url.split("?")[0], data={**hidden, "email": "owner@example.org",
                                                            "password": PASSWORD, "decision": "allow"})
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def token_request(http: aiohttp.ClientSession, token_url: str, data: dict) -> dict:
    """LocalOAuth2Implementation._token_request: a form POST, an error status fails the flow."""
    async with http.post(token_url, data=data) as resp:
        assert resp.status < 400, await resp.text()
        return await resp.json()


def creation_step(token: dict) -> dict:
    """AbstractOAuth2FlowHandler.async_step_creation: expires_in must be there, an integer."""
    assert "expires_in" in token
    token["expires_in"] = int(token["expires_in"])
    token["expires_at"] = time.time() + token["expires_in"]
    return token


def test_home_assistant_config_flow(served, cloud, tmp_path):
    client = cloud.client  # registered with Home Assistant's redirect URI, with a secret
    app = app_signed_in(tmp_path / "app", served, cloud)
    app.enable("Home")
    # An earlier installation left two webhooks of this client behind: the flow must clean up.
    api_path = f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks"
    with served.client() as c:
        left = [c.post(api_path, json=webhook(f"old {i}"), headers={"Authorization": f"Bearer {cloud.token()}"})
                for i in range(2)]
    assert [r.status_code for r in left] == [201, 201]

    # 1. The authorization URL exactly as the integration builds it.
    state = jwt_like_state()
    authorize_url = f"{served.url}/oauth/authorize?" + urlencode(
        {"response_type": "code", "client_id": client["client_id"], "redirect_uri": REDIRECT, "state": state}) + \
        "&" + urlencode({"scope": SCOPE})
    back = browser_consents(served, authorize_url)
    assert back["state"] == state

    async def flow():
        ctx = ssl.create_default_context(cafile=served.cert)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            # 2. The token request, confidential client, form body.
            token = creation_step(await token_request(http, f"{served.url}/oauth/token", {
                "grant_type": "authorization_code", "code": back["code"], "redirect_uri": REDIRECT,
                "client_id": client["client_id"], "client_secret": client["client_secret"]}))
            assert token["token_type"] == "Bearer" and token["expires_in"] == 45 * 60

            # 3. Own systems only; the quota decides the next step.
            api = BionyxAPI(ConfigFlowAuth(http, f"{served.url}/3rd-party/api", token))
            systems = [s for s in await api.get_systems() if s.own_system]
            assert [s.system_id for s in systems] == [cloud.system_id]  # the neighbour's is not there
            system = systems[0]
            assert system.function_webhook_quotas == {"free": 3, "used": 2}
            assert not (system.function_webhook_quotas["free"] == 0 and system.function_webhook_quotas["used"] == 0)

            # 4. used > 0: delete every webhook, then poll until used == 0.
            for hook in await system.get_webhooks():
                await hook.delete()
            polls = 0
            while True:
                system = [s for s in await api.get_systems() if s.system_id == cloud.system_id][0]
                polls += 1
                if system.function_webhook_quotas["used"] == 0:
                    break
                assert polls < 10, "the deletions never took effect"
                if polls == 2:  # meanwhile the owner approves both deletions in the app
                    for w in app.open_all():
                        assert w["modificationState"] == "DeleteRequested"
                        assert app.decide(w["functionWebhookId"], True)["result"] == "deleted"
                await asyncio.sleep(POLL_SECONDS)
            assert polls >= 3 and system.function_webhook_quotas == {"free": 5, "used": 0}

            # 5. One webhook per name, the definition as the integration writes it.
            made = []
            for name in ("Front door", "Garage"):
                auth = secrets.token_hex(32)
                wh_def = {
                    "integrationName": "Home Assistant",
                    "functionName": name,
                    "locationName": "Home Assistant",
                    "definition": {
                        "url": "http://192.0.2.10:8123" + f"/api/webhook/{secrets.token_hex(32)}",
                        "authentication": {"apiAuthenticationType": "None"},
                        "securityLevel": "AllowHttp",
                        "method": "Post",
                        "body": {"contentType": "application/json", "content": json.dumps({"auth": auth})},
                    },
                }
                made.append((await system.add_webhook(wh_def)).webhook_id)
            assert all(made) and len(set(made)) == 2
            system = (await api.get_systems())[0]
            assert system.function_webhook_quotas == {"free": 3, "used": 2}
            assert sorted(w.webhook_id for w in await system.get_webhooks()) == sorted(made)

            # 6. The refresh Home Assistant's OAuth2 session sends; the rotated pair works.
            new = await token_request(http, f"{served.url}/oauth/token", {
                "grant_type": "refresh_token", "client_id": client["client_id"],
                "client_secret": client["client_secret"], "refresh_token": token["refresh_token"]})
            token = creation_step({**token, **new})
            assert new["refresh_token"] != back["code"] and token["access_token"] == new["access_token"]
            assert len(await api.get_systems()) == 1  # ConfigFlowAuth reads the merged token
            return made

    made = asyncio.run(flow())
    # What the owner's app sees: the two new webhooks, opened, exactly as sent.
    opened = {w["functionWebhookId"]: w for w in app.open_all()}
    assert set(opened) == set(made)
    d = opened[made[0]]["definition"]
    assert d["securityLevel"] == "AllowHttp" and d["authentication"]["apiAuthenticationType"] == "None"
    assert json.loads(d["body"]["content"]).keys() == {"auth"}


def test_home_assistant_gives_up_without_free_webhooks(served, cloud):
    """free == 0 and used == 0 is Home Assistant's "no_available_webhooks": the quota set to 0."""
    admin.quota_set(cloud.db, cloud.system_id, 0)

    async def go():
        ctx = ssl.create_default_context(cafile=served.cert)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as http:
            api = BionyxAPI(ConfigFlowAuth(http, f"{served.url}/3rd-party/api", {"access_token": cloud.token()}))
            systems = [s for s in await api.get_systems() if s.own_system]
            assert [s.function_webhook_quotas for s in systems] == [{"free": 0, "used": 0}]
    asyncio.run(go())
