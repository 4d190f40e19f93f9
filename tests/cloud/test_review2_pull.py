"""Review 2: the owner's `webhooks pull` must show every webhook the cloud accepted. The rule
format accepts a definition without authentication: `"authentication": null` (explicit nulls
are a documented quirk), the key left out, or an object without `apiAuthenticationType`
(`None` is the default). One such webhook, registered by any integrator, made the app's
summary fail with a KeyError/TypeError: `keyhook webhooks pull` ended in a traceback and the
owner could see nothing else waiting."""

from __future__ import annotations

import pytest

from cloudkit import app_signed_in, webhook

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("auth", ["null", "absent", "no type"])
def test_pull_shows_webhooks_without_an_authentication_type(served, cloud, tmp_path, auth):
    app = app_signed_in(tmp_path / "app", served, cloud)
    app.enable("Home")
    body = webhook("No auth", url="https://ha.example.org/hook")
    d = body["definition"]
    if auth == "null":
        d["authentication"] = None
    elif auth == "absent":
        del d["authentication"]
    else:
        d["authentication"] = {"clientId": None}
    path = f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks"
    with served.client() as http:
        r = http.post(path, json=body, headers={"Authorization": f"Bearer {cloud.token()}"})
    assert r.status_code == 201, r.text  # the cloud accepts it, as the rule format says
    wid = r.json()["functionWebhookId"]

    pulled = {w["functionWebhookId"]: w for w in app.pull()}
    assert pulled[wid]["opened"] is True
    assert pulled[wid]["target"] == "POST https://ha.example.org/... (TlsWithCACheck, None)"
