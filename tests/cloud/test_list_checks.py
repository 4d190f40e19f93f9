"""The list call (GET systems/{id}/function-webhooks), the one Home Assistant polls, has a fast
path of its own: every check the other calls make must hold on it too, each with its own status
and message: no token, a malformed header, an unknown, expired or revoked token, the app's token,
another owner's system, an unknown system; and only the calling client's webhooks, with and
without a trailing slash."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import update

from keyhook.cloud import admin
from keyhook.cloud.models import OAuthToken

from cloudkit import bearer, enable, webhook

API = "/3rd-party/api"


def hooks_url(system_id: str, slash: bool = False) -> str:
    return f"{API}/systems/{system_id}/function-webhooks" + ("/" if slash else "")


def problem(r, status: int, words: str):
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == status and words in r.json()["detail"], r.json()


@pytest.mark.parametrize("slash", [False, True])
def test_list_shows_only_the_callers_webhooks(api, cloud, slash):
    enable(api, cloud)
    mine, theirs = bearer(cloud.token()), bearer(cloud.token(cloud.client2["client_id"]))
    assert api.get(hooks_url(cloud.system_id, slash), headers=mine).json() == []
    ids = [api.post(hooks_url(cloud.system_id), headers=mine, json=webhook(f"f{i}")).json()["functionWebhookId"]
           for i in range(3)]
    api.post(hooks_url(cloud.system_id), headers=theirs, json=webhook("theirs"))
    r = api.get(hooks_url(cloud.system_id, slash), headers=mine)
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert sorted(w["functionWebhookId"] for w in r.json()) == sorted(ids)
    assert {"functionWebhookId": ids[0], "integrationName": "Home Assistant", "locationName": "Front door",
            "functionName": "f0", "expiresAt": None, "modificationState": None} in r.json()
    assert [w["functionName"] for w in api.get(hooks_url(cloud.system_id, slash), headers=theirs).json()] == ["theirs"]


def test_list_without_or_with_a_malformed_token_is_401(api, cloud):
    url = hooks_url(cloud.system_id)
    r = api.get(url)
    problem(r, 401, "Bearer")
    assert r.headers["www-authenticate"] == 'Bearer realm="keyhook"'  # RFC 6750 3: no error code
    for header in ("Basic dXNlcjpwdw==", "Bearer ", "Bearer"):
        r = api.get(url, headers={"Authorization": header})
        problem(r, 401, "Bearer")
        assert 'error="invalid_request"' in r.headers["www-authenticate"]
    r = api.get(url, headers=bearer("not-a-token"))
    problem(r, 401, "not known")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_list_with_an_expired_or_revoked_token_is_401(api, cloud):
    url = hooks_url(cloud.system_id)
    token = cloud.token()
    assert api.get(url, headers=bearer(token)).status_code == 200
    with cloud.db.write() as s:  # 45 minutes pass
        s.execute(update(OAuthToken).values(access_expires_at=int(time.time()) - 1))
    problem(api.get(url, headers=bearer(token)), 401, "expired")
    token = cloud.token()
    with cloud.db.write() as s:  # a reused refresh token revoked the family
        s.execute(update(OAuthToken).values(revoked=True))
    r = api.get(url, headers=bearer(token))
    problem(r, 401, "revoked")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_list_refuses_the_apps_token_other_owners_and_unknown_systems(api, cloud):
    enable(api, cloud)
    api.post(hooks_url(cloud.system_id), headers=bearer(cloud.token()), json=webhook())
    problem(api.get(hooks_url(cloud.system_id), headers=bearer(cloud.token(admin.APP_CLIENT_ID))), 403, "app")
    problem(api.get(hooks_url(cloud.other_system_id), headers=bearer(cloud.token())), 403, "not one of")
    problem(api.get(hooks_url(cloud.system_id), headers=bearer(cloud.token(user=cloud.other_owner))), 403, "not one of")
    problem(api.get(hooks_url("no-such-system"), headers=bearer(cloud.token())), 404, "no-such-system")
