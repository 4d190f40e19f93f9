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


def test_pull_prints_integrator_names_as_inert_text(served, cloud, tmp_path):
    """Names come from any integrator: the owner's terminal must not act on them (an escape
    sequence clears the screen or sets the title, rich markup draws a fake hyperlink or hides
    text), as the README promises for whatever a device, a rule or a server says."""
    import os
    import subprocess
    import sys

    config = tmp_path / "app"
    app = app_signed_in(config, served, cloud)
    app.enable("Home")
    body = webhook("Open [link=https://evil.example]garage[/link]", url="https://ha.example.org/hook")
    with served.client() as http:
        r = http.post(f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks", json=body,
                      headers={"Authorization": f"Bearer {cloud.token()}"})
    assert r.status_code == 201, r.text
    # the cloud now refuses control characters in names at arrival; a hostile cloud (or one
    # that stored them before) still sends them, and the app must print them inert
    from sqlalchemy import update
    from keyhook.cloud.models import Webhook
    with cloud.db.write() as s:
        s.execute(update(Webhook).where(Webhook.id == r.json()["functionWebhookId"])
                  .values(integration_name="[bold]HA\x1b]0;owned\x07\x1b[2J", location_name="Hall\u202e"))
    env = dict(os.environ, KEYHOOK_CONFIG=str(config), COLUMNS="400")
    p = subprocess.run([sys.executable, "-m", "keyhook", "webhooks", "pull"], env=env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "\x1b" not in p.stdout and "\x07" not in p.stdout  # nothing the terminal would act on
    assert "[link=https://evil.example]garage[/link]" in p.stdout  # the markup shown, not rendered
    assert "[bold]HA\\x1b]0;owned\\x07\\x1b[2J" in p.stdout


@pytest.mark.parametrize("key", ["integrationName", "locationName", "functionName"])
def test_names_with_control_characters_are_refused_naming_the_field(served, cloud, tmp_path, key):
    app_signed_in(tmp_path / "app", served, cloud).enable("Home")
    body = webhook("Open garage")
    body[key] = "Front\x1b[2Jdoor"
    path = f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks"
    h = {"Authorization": f"Bearer {cloud.token()}"}
    with served.client() as http:
        r = http.post(path, json=body, headers=h)
        assert r.status_code == 400, r.text
        assert r.json()["field"] == key, r.json()
        assert "control character" in r.json()["detail"]
        good = http.post(path, json=webhook("Open garage"), headers=h)
        assert good.status_code == 201
        wid = good.json()["functionWebhookId"]
        r = http.patch(f"{path}/{wid}/name", json={key: "Hall\x07"}, headers=h)
        assert r.status_code == 400 and r.json()["field"] == key, r.text
        assert http.get(f"{path}/{wid}", headers=h).json()[key] != "Hall\x07"  # nothing changed
