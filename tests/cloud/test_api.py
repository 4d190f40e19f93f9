"""The integrator API as its existing clients use it: shapes, status codes, problem+json errors,
who sees what, the quota, validation at arrival, and changes that wait for the owner."""

from __future__ import annotations

import base64
import time

import pytest
from sqlalchemy import func, select, update

from keyhook.cloud import admin, sealing
from keyhook.cloud.models import OAuthToken, Webhook

from cloudkit import bearer, enable, webhook

API = "/3rd-party/api"
WEBHOOK_KEYS = {"functionWebhookId", "integrationName", "locationName", "functionName", "expiresAt", "modificationState"}


def hooks_url(cloud, system_id=None):
    return f"{API}/systems/{system_id or cloud.system_id}/function-webhooks"


def count_rows(cloud) -> int:
    with cloud.db.read() as s:
        return s.scalar(select(func.count()).select_from(Webhook))


def app_view(api, cloud) -> dict:
    r = api.get(f"/app/api/systems/{cloud.system_id}/function-webhooks", headers=bearer(cloud.token(admin.APP_CLIENT_ID)))
    assert r.status_code == 200, r.text
    return {w["functionWebhookId"]: w for w in r.json()["functionWebhooks"]}


def test_systems_shape_quota_and_trailing_slash(api, cloud):
    h = bearer(cloud.token())
    for path in (f"{API}/systems", f"{API}/systems/"):
        r = api.get(path, headers=h)
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        assert r.json() == [{"systemId": cloud.system_id, "systemName": "Home", "ownSystem": True,
                             "functionWebhookQuotas": {"free": 5, "used": 0}}]


def test_register_list_get_rename_update_delete(api, cloud):
    sk, _ = enable(api, cloud)
    h = bearer(cloud.token())
    assert api.get(hooks_url(cloud), headers=h).json() == []

    r = api.post(hooks_url(cloud), headers=h, json=webhook())
    assert r.status_code == 201, r.text
    created = r.json()
    assert set(created) == WEBHOOK_KEYS and created["modificationState"] is None
    assert created["functionName"] == "Open garage" and created["expiresAt"] is None
    wid = created["functionWebhookId"]
    assert "definition" not in r.text and "s3cr3t" not in r.text

    assert api.get(hooks_url(cloud) + "/", headers=h).json() == [created]
    assert api.get(f"{hooks_url(cloud)}/{wid}/", headers=h).json() == created
    assert api.get(f"{API}/systems/", headers=h).json()[0]["functionWebhookQuotas"] == {"free": 4, "used": 1}

    r = api.patch(f"{hooks_url(cloud)}/{wid}/name", headers=h, json={"locationName": "Garage", "functionName": "Open it"})
    assert r.status_code == 204 and r.content == b""
    got = api.get(f"{hooks_url(cloud)}/{wid}", headers=h).json()
    assert (got["locationName"], got["functionName"], got["modificationState"]) == ("Garage", "Open it", None)

    new = webhook("Open it", url="https://ha.example.org:8123/api/webhook/NEW")
    r = api.put(f"{hooks_url(cloud)}/{wid}", headers=h, json=new)
    assert r.status_code == 202 and r.json()["modificationState"] == "UpdateRequested"
    # Until the owner approves, the stored definition is the old one.
    w = app_view(api, cloud)[wid]
    assert sealing.open_definition(base64.b64decode(w["sealed"]), sk, system_id=cloud.system_id, webhook_id=wid,
                                   version=1, key_id=w["keyId"])["url"].endswith("/abc")
    approve = api.post(f"/app/api/systems/{cloud.system_id}/function-webhooks/{wid}/approve",
                       headers=bearer(cloud.token(admin.APP_CLIENT_ID)))
    assert approve.json() == {"functionWebhookId": wid, "result": "updated", "version": 2}
    w = app_view(api, cloud)[wid]
    assert sealing.open_definition(base64.b64decode(w["sealed"]), sk, system_id=cloud.system_id, webhook_id=wid,
                                   version=2, key_id=w["keyId"])["url"].endswith("/NEW")
    assert api.get(f"{hooks_url(cloud)}/{wid}", headers=h).json()["modificationState"] is None

    r = api.delete(f"{hooks_url(cloud)}/{wid}", headers=h)
    assert r.status_code == 202 and r.json()["modificationState"] == "DeleteRequested"
    # Home Assistant polls the quota until `used` is 0: it stays 1 until the owner approves.
    assert api.get(f"{API}/systems", headers=h).json()[0]["functionWebhookQuotas"]["used"] == 1
    reject = api.post(f"/app/api/systems/{cloud.system_id}/function-webhooks/{wid}/reject",
                      headers=bearer(cloud.token(admin.APP_CLIENT_ID)))
    assert reject.json()["result"] == "rejected"
    assert api.get(f"{hooks_url(cloud)}/{wid}", headers=h).json()["modificationState"] is None
    api.delete(f"{hooks_url(cloud)}/{wid}", headers=h)
    api.post(f"/app/api/systems/{cloud.system_id}/function-webhooks/{wid}/approve",
             headers=bearer(cloud.token(admin.APP_CLIENT_ID)))
    assert api.get(f"{hooks_url(cloud)}/{wid}", headers=h).status_code == 404
    assert api.get(f"{API}/systems", headers=h).json()[0]["functionWebhookQuotas"] == {"free": 5, "used": 0}


def test_unauthenticated_bad_and_expired_tokens_get_401(api, cloud):
    enable(api, cloud)
    token = cloud.token()
    r = api.get(f"{API}/systems")
    assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert r.json()["status"] == 401 and "Bearer" in r.json()["detail"]
    r = api.get(f"{API}/systems", headers=bearer("not-a-token"))
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
    with cloud.db.write() as s:  # 45 minutes pass
        s.execute(update(OAuthToken).values(access_expires_at=int(time.time()) - 1))
    r = api.post(hooks_url(cloud), headers=bearer(token), json=webhook())
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    assert count_rows(cloud) == 0


def test_another_owners_system_is_403_and_unknown_ids_404(api, cloud):
    enable(api, cloud)
    h = bearer(cloud.token())
    r = api.get(hooks_url(cloud, cloud.other_system_id), headers=h)
    assert r.status_code == 403 and r.headers["content-type"] == "application/problem+json"
    assert api.post(hooks_url(cloud, cloud.other_system_id), headers=h, json=webhook()).status_code == 403
    assert api.get(hooks_url(cloud, "no-such-system"), headers=h).status_code == 404
    r = api.get(f"{hooks_url(cloud)}/no-such-webhook", headers=h)
    assert r.status_code == 404 and "no-such-webhook" in r.json()["detail"]
    assert api.get("/3rd-party/api/nothing", headers=h).status_code == 404
    assert count_rows(cloud) == 0


def test_another_clients_webhooks_are_invisible(api, cloud):
    enable(api, cloud)
    mine, theirs = bearer(cloud.token()), bearer(cloud.token(cloud.client2["client_id"]))
    wid = api.post(hooks_url(cloud), headers=mine, json=webhook()).json()["functionWebhookId"]
    assert api.get(hooks_url(cloud), headers=theirs).json() == []
    for call in (api.get, api.delete):
        assert call(f"{hooks_url(cloud)}/{wid}", headers=theirs).status_code == 404
    assert api.put(f"{hooks_url(cloud)}/{wid}", headers=theirs, json=webhook()).status_code == 404
    assert api.patch(f"{hooks_url(cloud)}/{wid}/name", headers=theirs, json={"functionName": "x"}).status_code == 404
    # The other owner's token on my system: 403, and my webhook unchanged.
    assert api.get(hooks_url(cloud), headers=bearer(cloud.token(user=cloud.other_owner))).status_code == 403
    assert api.get(f"{hooks_url(cloud)}/{wid}", headers=mine).json()["modificationState"] is None
    # The quota counts per client: the other integrator still has all 5.
    assert api.get(f"{API}/systems", headers=theirs).json()[0]["functionWebhookQuotas"] == {"free": 5, "used": 0}


def test_a_full_quota_is_refused_naming_the_quota(api, cloud):
    enable(api, cloud)
    h = bearer(cloud.token())
    for i in range(5):
        assert api.post(hooks_url(cloud), headers=h, json=webhook(f"f{i}")).status_code == 201
    r = api.post(hooks_url(cloud), headers=h, json=webhook("one too many"))
    assert 400 <= r.status_code < 500 and r.headers["content-type"] == "application/problem+json"
    assert "quota" in r.json()["detail"] and r.json()["quota"] == {"free": 0, "used": 5, "limit": 5}
    assert count_rows(cloud) == 5
    admin.quota_set(cloud.db, cloud.system_id, 6, cloud.client["client_id"])
    assert api.get(f"{API}/systems", headers=h).json()[0]["functionWebhookQuotas"] == {"free": 1, "used": 5}
    assert api.post(hooks_url(cloud), headers=h, json=webhook("now it fits")).status_code == 201


@pytest.mark.parametrize("change,field", [
    (lambda w: w["definition"].update(method="Fetch"), "definition.method"),
    (lambda w: w["definition"].update(url="ftp://x/y"), "definition.url"),
    (lambda w: w["definition"].update(url="http://x/y"), "definition.url"),
    (lambda w: w["definition"].update(securityLevel="Yolo"), "definition.securityLevel"),
    (lambda w: w["definition"].update(securityLevel="TlsPinnedCertificate"), "definition.pinnedCertificate"),
    (lambda w: w["definition"].update(timeout=0), "definition.timeout"),
    (lambda w: w["definition"].update(additionalHttpHeaders={"X-Bad": "a\r\nb"}), "definition.additionalHttpHeaders"),
    (lambda w: w["definition"]["authentication"].update(accessToken=None), "definition.authentication.accessToken"),
    (lambda w: w["definition"]["authentication"].update(apiAuthenticationType="OAuth2IssuedRefreshToken"),
     "definition.authentication.refreshToken"),
    (lambda w: w.pop("definition"), "definition"),
    (lambda w: w.update(functionName="x" * 51), "functionName"),
    (lambda w: w.update(locationName="x" * 129), "locationName"),
    (lambda w: w.pop("integrationName"), "integrationName"),
    (lambda w: w.update(expiresAt="next tuesday"), "expiresAt"),
    (lambda w: w.update(expiresAt="2020-01-01"), "expiresAt"),           # what no device reads (review B)
    (lambda w: w.update(expiresAt="2027-01-01T00:00:00"), "expiresAt"),  # no offset
])
def test_malformed_definitions_get_400_naming_the_field_and_store_nothing(api, cloud, change, field):
    enable(api, cloud)
    h = bearer(cloud.token())
    body = webhook()
    change(body)
    r = api.post(hooks_url(cloud), headers=h, json=body)
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json", r.text
    assert r.json()["field"] == field and r.json()["detail"].startswith(field + ":")
    assert count_rows(cloud) == 0
    # The same check on PUT: the stored webhook is unchanged.
    wid = api.post(hooks_url(cloud), headers=h, json=webhook()).json()["functionWebhookId"]
    assert api.put(f"{hooks_url(cloud)}/{wid}", headers=h, json=body).status_code == 400
    assert api.get(f"{hooks_url(cloud)}/{wid}", headers=h).json()["modificationState"] is None


def test_bodies_that_are_not_json_objects(api, cloud):
    enable(api, cloud)
    h = bearer(cloud.token())
    for content in (b"{", b"[]", b"\xff\xfe", b"null"):
        r = api.post(hooks_url(cloud), headers={**h, "Content-Type": "application/json"}, content=content)
        assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"
    r = api.post(hooks_url(cloud), headers=h, content=b"{" + b" " * 70000 + b"}")
    assert r.status_code == 413
    assert count_rows(cloud) == 0


def test_the_quirks_of_clients_in_the_wild_are_accepted(api, cloud):
    sk, _ = enable(api, cloud)
    h = bearer(cloud.token())
    quirky = webhook()
    d = quirky["definition"]
    d["authentication"] = {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "rt-1",
                           "tokenEndoint": "https://idp.example.org/token", "clientId": "c", "scope": None,
                           "accessToken": None, "expiresIn": None, "authorizationEndpoint": None}
    d["body"] = {"contentType": "application/json", "content": "{\"already\": \"a string\"}"}
    d["method"] = "post"
    r = api.post(hooks_url(cloud), headers=h, json={**quirky, "expiresAt": "2027-01-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    assert r.json()["expiresAt"] == "2027-01-01T00:00:00Z"
    # A published sample sends a refreshToken with the access-token type: the type decides.
    sample = webhook("sample")
    sample["definition"]["authentication"]["refreshToken"] = "ignored"
    assert api.post(hooks_url(cloud), headers=h, json=sample).status_code == 201


def test_registering_before_the_owner_enables_the_integration_is_refused(api, cloud):
    r = api.post(hooks_url(cloud), headers=bearer(cloud.token()), json=webhook())
    assert r.status_code == 409 and "integration" in r.json()["detail"]
    assert count_rows(cloud) == 0


def test_tokens_are_confined_to_their_side(api, cloud):
    enable(api, cloud)
    integrator, app = bearer(cloud.token()), bearer(cloud.token(admin.APP_CLIENT_ID))
    wid = api.post(hooks_url(cloud), headers=integrator, json=webhook()).json()["functionWebhookId"]
    # An integrator token cannot read ciphertext nor approve anything.
    assert api.get(f"/app/api/systems/{cloud.system_id}/function-webhooks", headers=integrator).status_code == 403
    assert api.post(f"/app/api/systems/{cloud.system_id}/function-webhooks/{wid}/approve",
                    headers=integrator).status_code == 403
    assert api.get(f"{API}/systems", headers=app).status_code == 403
    # The other owner's app sees nothing of mine.
    assert api.get(f"/app/api/systems/{cloud.system_id}/function-webhooks",
                   headers=bearer(cloud.token(admin.APP_CLIENT_ID, cloud.other_owner))).status_code == 403


def test_enabling_twice_is_refused(api, cloud):
    enable(api, cloud)
    with pytest.raises(AssertionError):
        enable(api, cloud)
