"""The local token server (host/keyhook/lab/tokenserver.py) itself, from CPython: the grants it
answers, rotation, failure modes, the bearer-protected resource, keep-alive and TLS."""

from __future__ import annotations

import http.client
import json
import ssl
from urllib.parse import urlencode

import pytest

from keyhook import KeyhookError
from keyhook.lab.devpki import make_pki
from keyhook.lab.tokenserver import TokenServer


def grant(conn: http.client.HTTPConnection, path="/oauth2/token", **form) -> tuple[int, dict | bytes]:
    body = urlencode({"grant_type": "refresh_token", **form})
    conn.request("POST", path, body, {"Content-Type": "application/x-www-form-urlencoded"})
    r = conn.getresponse()
    data = r.read()
    try:
        return r.status, json.loads(data)
    except ValueError:
        return r.status, data


def get(conn, token=None) -> int:
    conn.request("GET", "/resource", headers={"Authorization": f"Bearer {token}"} if token else {})
    r = conn.getresponse()
    r.read()
    return r.status


def test_grant_rotation_and_resource():
    with TokenServer(refresh_token="rt0", rotate=True, expires_in=600) as ts:
        assert ts.token_url.startswith("http://127.0.0.1:")
        c = http.client.HTTPConnection("127.0.0.1", ts.port, timeout=5)  # one kept-alive connection
        s, doc = grant(c, refresh_token="rt0", client_id="c", scope="a b")
        assert s == 200 and doc["token_type"] == "Bearer" and doc["expires_in"] == 600
        assert doc["refresh_token"] == ts.current_refresh_token != "rt0"
        assert doc["scope"] == "a b"
        assert get(c, doc["access_token"]) == 200
        assert get(c, "nope") == 401 and get(c) == 401
        s2, err = grant(c, refresh_token="rt0")           # the used token is retired
        assert (s2, err["error"]) == (400, "invalid_grant")
        s3, doc3 = grant(c, refresh_token=doc["refresh_token"])
        assert s3 == 200
        ts.revoke_access_tokens()
        assert get(c, doc3["access_token"]) == 401
        assert [r.form["refresh_token"] for r in ts.token_requests] == ["rt0", "rt0", doc["refresh_token"]]
        assert ts.token_requests[0].form == {"grant_type": "refresh_token", "refresh_token": "rt0",
                                             "client_id": "c", "scope": "a b"}
        assert [r.status for r in ts.resource_requests] == [200, 401, 401, 401]


def test_no_rotation_no_expiry_and_client_check():
    with TokenServer(refresh_token="rt0", expires_in=None, client_id="me") as ts:
        c = http.client.HTTPConnection("127.0.0.1", ts.port, timeout=5)
        s, doc = grant(c, refresh_token="rt0", client_id="me")
        assert s == 200 and "refresh_token" not in doc and "expires_in" not in doc
        assert grant(c, refresh_token="rt0", client_id="me")[0] == 200   # reusable
        s, err = grant(c, refresh_token="rt0", client_id="you")
        assert (s, err["error"]) == (401, "invalid_client")


@pytest.mark.parametrize("mode, status", [("invalid_grant", 400), ("invalid_client", 401),
                                          ("500", 500), ("garbage", 200)])
def test_failure_modes(mode, status):
    with TokenServer(refresh_token="rt0") as ts:
        ts.fail = mode
        c = http.client.HTTPConnection("127.0.0.1", ts.port, timeout=5)
        s, doc = grant(c, refresh_token="rt0")
        assert s == status
        if mode == "garbage":
            assert isinstance(doc, bytes)
        assert ts.issued_access_tokens == []


def test_wrong_content_type_and_grant_type():
    with TokenServer() as ts:
        c = http.client.HTTPConnection("127.0.0.1", ts.port, timeout=5)
        c.request("POST", "/oauth2/token", json.dumps({"grant_type": "refresh_token"}),
                  {"Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 400 and json.loads(r.read())["error"] == "invalid_request"
        s, err = grant(c, grant_type="password")
        assert err["error"] == "unsupported_grant_type"


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(KeyhookError):
        TokenServer(fail="teapot")


def test_https(tmp_path):
    pki = make_pki(tmp_path / "pki")
    with TokenServer(refresh_token="rt0", certfile=pki.leaf.chain_path, keyfile=pki.leaf.key_path) as ts:
        assert ts.token_url.startswith("https://127.0.0.1:")
        ctx = ssl.create_default_context(cafile=str(pki.root.cert_path))
        c = http.client.HTTPSConnection("127.0.0.1", ts.port, context=ctx, timeout=5)
        s, doc = grant(c, refresh_token="rt0")
        assert s == 200 and ts.requests[0].tls
        bad = http.client.HTTPSConnection("127.0.0.1", ts.port, timeout=5,
                                          context=ssl.create_default_context(cafile=str(pki.unrelated_root.cert_path)))
        with pytest.raises(ssl.SSLError):
            grant(bad, refresh_token="rt0")
        assert len(ts.requests) == 1
