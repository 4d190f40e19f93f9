"""ekey's own sample client for the third-party API (`api_operation_sample.py` in ekey's public
`ekey-bionyx-third-party-api-sample-client` repository), reproduced request for request against
`keyhook cloud serve` on 127.0.0.1. `make interop` runs the sample itself, unchanged, when a
checkout of it is given (tests/interop/); this test needs nothing but the project.

What the sample does, in its own order:
- builds the authorization URL by hand: `response_type=code`, `client_id`, `redirect_uri` and
  `scope` (URL-quoted), `response_mode=query` and a 5-digit `state`;
- has the user paste the redirected URL and takes *everything after* "code=" as the code;
- sends the token request with every parameter in the query string (no body), with
  `Accept: application/json`, adding `client_secret` when it has one; reads `access_token`;
- calls `{api_url}api/systems/` (trailing slash) and works on the first system;
- creates (POST), lists, gets, deletes (DELETE), renames (PATCH .../name) and updates (PUT)
  function webhooks, each as JSON, treating any status below 400 as success."""

from __future__ import annotations

import random
import re
import ssl
from urllib.parse import parse_qs, quote_plus, urlsplit

import httpx

from keyhook.cloud import admin

from cloudkit import PASSWORD, app_signed_in

SCOPE = "https://ekeybionyxprod.onmicrosoft.com/3rd-party-api/api-access"
REDIRECT = "http://127.0.0.1:9/nativeclient/"  # never followed: the user copies it from the browser

# The two kinds of webhook file the sample ships, in the same shape (own values): a simple GET
# with explicit nulls, and a full one whose OAuth2IssuedAccessToken carries a refresh token and
# token endpoint but no access token, and a stray functionWebhookId.
SIMPLE = {"definition": {"method": "Get", "url": "https://lock.example.local/open?door=1#frag", "body": None,
                         "securityLevel": "TlsWithCACheck", "timeout": None, "additionalHttpHeaders": None,
                         "authentication": {"apiAuthenticationType": "None", "expiresIn": None}},
          "integrationName": "Sample integration", "locationName": "At home", "functionName": "Open the door"}
FULL_WITHOUT_ACCESS_TOKEN = {
    "definition": {"method": "Post", "url": "https://lock.example.local/api?x=1",
                   "body": {"contentType": "application/json", "content": "{ \"open\": true }"},
                   "securityLevel": "TlsAllowSelfSigned", "timeout": 2500,
                   "additionalHttpHeaders": {"X-One": "first", "X-Two": "with \\/ odd characters"},
                   "authentication": {"refreshToken": "rt-not-an-access-token",
                                      "tokenEndpoint": "https://auth.example.local/token", "scope": "open",
                                      "clientId": "lock-client", "apiAuthenticationType": "OAuth2IssuedAccessToken",
                                      "expiresIn": None}},
    "functionWebhookId": "00000000-0000-0000-0000-000000000000",
    "integrationName": "Sample integration", "locationName": "At home", "functionName": "Open something"}


def test_ekey_sample_client_requests(served, cloud, tmp_path):
    client = admin.client_add(cloud.db, "ekey sample client", [REDIRECT])
    app = app_signed_in(tmp_path / "app", served, cloud)
    app.enable("Home")
    config = {"authorize_url": f"{served.url}/oauth/authorize", "token_url": f"{served.url}/oauth/token",
              "api_url": f"{served.url}/3rd-party/", "scope": SCOPE, "redirect_url": REDIRECT,
              "client_id": client["client_id"], "client_secret": client["client_secret"]}
    http = httpx.Client(verify=ssl.create_default_context(cafile=served.cert), timeout=30)

    # request_authorization: the URL as the sample concatenates it.
    request_url = (config["authorize_url"] + "?response_type=code&client_id=" + config["client_id"] +
                   "&redirect_uri=" + quote_plus(config["redirect_url"]) + "&scope=" + quote_plus(config["scope"]) +
                   "&response_mode=query&state=" + str(random.randint(10000, 99999)))
    page = http.get(request_url)  # the user's browser
    assert page.status_code == 200 and "ekey sample client" in page.text
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    r = http.post(config["authorize_url"], data={**hidden, "email": cloud.owner, "password": PASSWORD,
                                                 "decision": "allow"})
    assert r.status_code == 302
    raw_code = r.headers["location"]  # what the user pastes
    assert raw_code.startswith(REDIRECT + "?")
    pos = raw_code.find("code=")
    authorization_code = raw_code[pos + 5:] if pos > 0 else raw_code
    # The code is the redirect's last parameter, so the sample's cut leaves exactly the code.
    assert authorization_code == parse_qs(urlsplit(raw_code).query)["code"][0]

    # request_access_token: every parameter in the query string, no body.
    params = {"grant_type": "authorization_code", "code": authorization_code, "redirect_uri": config["redirect_url"],
              "client_id": config["client_id"], "client_secret": config["client_secret"]}
    r = http.post(config["token_url"], params=params, headers={"Accept": "application/json"})
    assert r.status_code < 400, r.text
    headers = {"Authorization": "Bearer " + r.json()["access_token"]}

    # get_all_systems, with the trailing slash.
    r = http.get(config["api_url"] + "api/systems/", headers=headers)
    assert r.status_code == 200
    system = r.json()[0]
    assert system["systemId"] == cloud.system_id and "systemName" in system
    hooks = config["api_url"] + "api/systems/" + system["systemId"] + "/function-webhooks"

    # create_webhook with each kind of sample file.
    r = http.post(hooks, json=SIMPLE, headers=headers)
    assert r.status_code == 201, r.text
    webhook_id = r.json()["functionWebhookId"]
    assert webhook_id != "00000000-0000-0000-0000-000000000000"
    r = http.post(hooks, json=FULL_WITHOUT_ACCESS_TOKEN, headers=headers)
    # An access-token webhook without its access token cannot be fired: refused at arrival, the
    # field named, nothing stored (the sample prints the status and this text).
    assert r.status_code == 400 and r.json()["field"] == "definition.authentication.accessToken", r.text
    assert "rt-not-an-access-token" not in r.text

    # enumerate_webhooks, get_webhook: the fields the sample prints.
    r = http.get(hooks, headers=headers)
    assert r.status_code == 200 and [(w["integrationName"], w["functionWebhookId"]) for w in r.json()] == [
        ("Sample integration", webhook_id)]
    r = http.get(hooks + "/" + webhook_id, headers=headers)
    assert r.status_code == 200 and r.json()["functionName"] == "Open the door"

    # update_webhook_name: the JSON the sample builds by string concatenation.
    r = http.patch(hooks + "/" + webhook_id + "/name",
                   json={"locationName": "Front door", "functionName": "Open it"}, headers=headers)
    assert r.status_code == 204
    # update_webhook, then delete_webhook: both wait for the owner.
    r = http.put(hooks + "/" + webhook_id, json={**SIMPLE, "functionName": "Open it"}, headers=headers)
    assert r.status_code < 400 and http.get(hooks + "/" + webhook_id, headers=headers).json()[
        "modificationState"] == "UpdateRequested"
    assert app.decide(webhook_id, True)["result"] == "updated"
    r = http.delete(hooks + "/" + webhook_id, headers=headers)
    assert r.status_code == 202
    assert app.decide(webhook_id, True)["result"] == "deleted"
    assert http.get(hooks, headers=headers).json() == []
    http.close()
