"""The OAuth 2.0 server as integrators' clients meet it: the authorization code flow with the
login and consent page (client secret in the Basic header, the form and the query; PKCE for
public clients), refresh rotation with reuse detection, the device grant, tokens kept as hashes."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import text

from keyhook.cloud import admin

from cloudkit import PASSWORD, bearer, enable

REDIRECT = "https://my.home-assistant.io/redirect/oauth"


def authorize(api, client_id, redirect_uri=REDIRECT, *, password=PASSWORD, decision="allow", **extra):
    """What a browser does: open the consent page, sign in, allow. Returns the redirect's query."""
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "state": "st-1", **extra}
    page = api.get("/oauth/authorize", params=params)
    assert page.status_code == 200 and "<form" in page.text, page.text
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    assert hidden == params
    r = api.post("/oauth/authorize", data={**hidden, "email": "owner@example.org", "password": password,
                                            "decision": decision}, follow_redirects=False)
    return r


def code_from(r) -> str:
    assert r.status_code == 302, r.text
    q = parse_qs(urlsplit(r.headers["location"]).query)
    assert q["state"] == ["st-1"]
    return q["code"][0]


def check_token(body):
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and body["expires_in"] == 45 * 60
    assert body["access_token"] and body["refresh_token"]


@pytest.mark.parametrize("how", ["form", "query", "basic"])
def test_confidential_client_code_flow(api, cloud, how):
    c = cloud.client
    code = code_from(authorize(api, c["client_id"]))
    fields = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    creds = {"client_id": c["client_id"], "client_secret": c["client_secret"]}
    if how == "form":
        r = api.post("/oauth/token", data={**fields, **creds})
    elif how == "query":  # as ekey's sample client sends it
        r = api.post("/oauth/token", params={**fields, **creds})
    else:
        basic = base64.b64encode(f"{c['client_id']}:{c['client_secret']}".encode()).decode()
        r = api.post("/oauth/token", data=fields, headers={"Authorization": f"Basic {basic}"})
    assert r.status_code == 200, r.text
    check_token(r.json())
    assert api.get("/3rd-party/api/systems", headers=bearer(r.json()["access_token"])).status_code == 200
    # A code is good once.
    again = api.post("/oauth/token", data={**fields, **creds})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_wrong_secret_wrong_password_and_denial(api, cloud):
    c = cloud.client
    r = authorize(api, c["client_id"], password="wrong")
    assert r.status_code == 401 and "Wrong e-mail or password" in r.text
    r = authorize(api, c["client_id"], decision="deny")
    assert r.status_code == 302 and "error=access_denied" in r.headers["location"]
    code = code_from(authorize(api, c["client_id"]))
    r = api.post("/oauth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                       "client_id": c["client_id"], "client_secret": "guess"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"
    page = api.get("/oauth/authorize", params={"response_type": "code", "client_id": c["client_id"],
                                               "redirect_uri": "https://evil.example/cb"})
    assert page.status_code == 400  # never redirects to an unregistered URI


def test_public_client_needs_pkce(api, cloud):
    c = cloud.public_client
    redirect = "http://127.0.0.1:9/cb"
    code = code_from(authorize(api, c["client_id"], redirect))
    r = api.post("/oauth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                                       "client_id": c["client_id"]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    code = code_from(authorize(api, c["client_id"], redirect, code_challenge=challenge, code_challenge_method="S256"))
    bad = api.post("/oauth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                                         "client_id": c["client_id"], "code_verifier": secrets.token_urlsafe(48)})
    assert bad.status_code == 400
    code = code_from(authorize(api, c["client_id"], redirect, code_challenge=challenge, code_challenge_method="S256"))
    r = api.post("/oauth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
                                       "client_id": c["client_id"], "code_verifier": verifier})
    assert r.status_code == 200, r.text
    check_token(r.json())


def test_refresh_rotates_and_reuse_revokes_the_family(api, cloud):
    enable(api, cloud)
    c = cloud.client
    t1 = admin.token_issue(cloud.db, cloud.owner, c["client_id"])
    creds = {"client_id": c["client_id"], "client_secret": c["client_secret"]}
    r = api.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": t1["refresh_token"], **creds})
    assert r.status_code == 200, r.text
    t2 = r.json()
    check_token(t2)
    assert t2["refresh_token"] != t1["refresh_token"] and t2["access_token"] != t1["access_token"]
    assert api.get("/3rd-party/api/systems", headers=bearer(t2["access_token"])).status_code == 200

    # An attacker replays the first refresh token: refused, and every token of the grant dies.
    r = api.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": t1["refresh_token"], **creds})
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = api.get("/3rd-party/api/systems", headers=bearer(t2["access_token"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    r = api.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": t2["refresh_token"], **creds})
    assert r.status_code == 400
    # Another grant of the same user and client is not touched.
    assert api.get("/3rd-party/api/systems", headers=bearer(cloud.token())).status_code == 200


def test_another_clients_refresh_token_is_refused(api, cloud):
    t = admin.token_issue(cloud.db, cloud.owner, cloud.client["client_id"])
    c2 = cloud.client2
    r = api.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": t["refresh_token"],
                                       "client_id": c2["client_id"], "client_secret": c2["client_secret"]})
    assert r.status_code == 400


def test_device_grant(api, cloud):
    r = api.post("/oauth/device_authorization", data={"client_id": admin.APP_CLIENT_ID})
    assert r.status_code == 200
    grant = r.json()
    assert grant["verification_uri"] == "https://testserver/oauth/device" and grant["interval"] == 5
    poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": grant["device_code"],
            "client_id": admin.APP_CLIENT_ID}
    assert api.post("/oauth/token", data=poll).json()["error"] == "authorization_pending"
    assert api.post("/oauth/token", data=poll).json()["error"] == "slow_down"  # polled faster than 5 s
    page = api.get("/oauth/device", params={"user_code": grant["user_code"]})
    assert grant["user_code"] in page.text
    r = api.post("/oauth/device", data={"user_code": grant["user_code"], "email": "owner@example.org",
                                        "password": PASSWORD, "decision": "allow"})
    assert r.status_code == 200 and "Done" in r.text
    r = api.post("/oauth/token", data=poll)
    assert r.status_code == 200, r.text
    check_token(r.json())
    assert api.get("/app/api/systems", headers=bearer(r.json()["access_token"])).json()[0]["systemName"] == "Home"
    assert api.post("/oauth/token", data=poll).status_code == 400  # redeemed once

    # Denied at the page: the app hears access_denied.
    grant = api.post("/oauth/device_authorization", data={"client_id": admin.APP_CLIENT_ID}).json()
    api.post("/oauth/device", data={"user_code": grant["user_code"], "email": "owner@example.org",
                                    "password": PASSWORD, "decision": "deny"})
    r = api.post("/oauth/token", data={**poll, "device_code": grant["device_code"]})
    assert r.json()["error"] == "access_denied"


def test_integrators_cannot_use_the_device_grant(api, cloud):
    r = api.post("/oauth/device_authorization", data={"client_id": cloud.public_client["client_id"]})
    grant = r.json()
    api.post("/oauth/device", data={"user_code": grant["user_code"], "email": "owner@example.org",
                                    "password": PASSWORD, "decision": "allow"})
    r = api.post("/oauth/token", data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                       "device_code": grant["device_code"], "client_id": cloud.public_client["client_id"]})
    assert r.status_code in (400, 401) and r.json()["error"] == "unauthorized_client"


def test_tokens_codes_secrets_and_passwords_are_stored_only_as_hashes(api, cloud):
    c = cloud.client
    code = code_from(authorize(api, c["client_id"]))
    t = api.post("/oauth/token", data={"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
                                       "client_id": c["client_id"], "client_secret": c["client_secret"]}).json()
    issued = admin.token_issue(cloud.db, cloud.owner, c["client_id"])
    dump = dump_database(cloud.db)
    for secret in (t["access_token"], t["refresh_token"], issued["access_token"], issued["refresh_token"],
                   c["client_secret"], PASSWORD, code):
        assert secret not in dump
    assert hashlib.sha256(t["access_token"].encode()).hexdigest() in dump


def test_metadata(api):
    m = api.get("/.well-known/oauth-authorization-server").json()
    assert m["token_endpoint"] == "https://testserver/oauth/token"
    assert "urn:ietf:params:oauth:grant-type:device_code" in m["grant_types_supported"]


def dump_database(db) -> str:
    """Every row of every table, as text (what a stolen database shows)."""
    from sqlalchemy import inspect
    out = []
    with db.engine.connect() as conn:
        for table in inspect(db.engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                out.append(repr(tuple(row)))
    return "\n".join(out)


def test_wrong_passwords_in_a_row_slow_sign_in_down(api, cloud):
    from sqlalchemy import select, update
    from keyhook.cloud.models import User
    c = cloud.client
    for _ in range(5):
        assert authorize(api, c["client_id"], password="guess").status_code == 401
    r = authorize(api, c["client_id"])  # even the right password, while locked
    assert r.status_code == 429 and "try again in" in r.json()["detail"]
    r = api.post("/oauth/device", data={"user_code": "XXXX-XXXX", "email": "owner@example.org", "password": PASSWORD})
    assert r.status_code == 429
    with cloud.db.write() as s:  # the lock-out passes
        s.execute(update(User).values(locked_until=0))
    code_from(authorize(api, c["client_id"]))
    with cloud.db.read() as s:
        assert s.scalar(select(User.failed_logins).where(User.email == "owner@example.org")) == 0
    # An unknown e-mail reads exactly like a wrong password (no user enumeration).
    params = {"response_type": "code", "client_id": c["client_id"], "redirect_uri": REDIRECT}
    r = api.post("/oauth/authorize", data={**params, "email": "nobody@example.org", "password": "x", "decision": "allow"})
    assert r.status_code == 401 and "Wrong e-mail or password" in r.text
