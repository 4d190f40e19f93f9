"""OAuth 2.0 end to end: `keyhook fire` (the firmware engine under the MicroPython unix port,
real mbedTLS) against the local token server and a recording receiver over TLS on 127.0.0.1.
Each step asserts what the servers received and what the state directory holds afterwards."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from keyhook.lab.devpki import make_pki
from keyhook.lab.receiver import Receiver, Respond, server_context
from keyhook.lab.tokenserver import TokenServer

KEYHOOK = Path(sys.executable).parent / "keyhook"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


class Fire:
    """Runs `keyhook fire FILE --state DIR [--trust root.pem]` (public roots left out, so the
    test CA is the only one) and returns its JSON result."""

    def __init__(self, tmp_path: Path, pki):
        self.tmp_path = tmp_path
        self.pki = pki
        self.state = tmp_path / "state"
        self.n = 0
        self.outputs: list[str] = []

    def __call__(self, webhook: dict, *, trust: bool = True) -> dict:
        self.n += 1
        f = self.tmp_path / f"webhook{self.n}.json"
        f.write_text(json.dumps(webhook))
        cmd = [str(KEYHOOK), "fire", str(f), "--state", str(self.state), "--no-public-roots"]
        if trust:
            cmd += ["--trust", str(self.pki.root.cert_path)]
        p = subprocess.run(cmd, capture_output=True, timeout=120)
        out = p.stdout.decode()
        self.outputs.append(out + p.stderr.decode())
        lines = [ln for ln in out.strip().splitlines() if ln.startswith("{")]
        assert lines, f"no JSON result (exit {p.returncode}):\n{out}\n{p.stderr.decode()}"
        res = json.loads(lines[-1])
        assert (p.returncode == 0) == (res["status"] is not None), (p.returncode, res)
        return res

    def state_file(self, wh: dict | None = None) -> dict | None:
        """The OAuth state of `wh`'s token chain (without `wh`: the only one in the state
        directory), parsed; None when there is none."""
        if wh is not None:
            f = self.state / f"oauth-{chain_fingerprint(wh)}.json"
            return json.loads(f.read_text()) if f.exists() else None
        files = sorted(self.state.rglob("oauth-*.json")) if self.state.exists() else []
        assert len(files) <= 1, files
        return json.loads(files[0].read_text()) if files else None

    def assert_no_secret(self, *secrets: str) -> None:
        for out in self.outputs:
            for s in secrets:
                assert s not in out, "a token appeared in keyhook fire's output"


def chain_fingerprint(wh: dict) -> str:
    """The firmware's chain fingerprint (kh/oauth/tokens.py), computed independently."""
    d = wh["definition"]
    a = d["authentication"]
    h = hashlib.sha256(b"kh-oauth-chain1")
    u = urlsplit(d["url"])
    origin = f"{u.scheme.lower()}://{u.hostname}:{u.port or (443 if u.scheme.lower() == 'https' else 80)}"
    parts = [a["refreshToken"], a.get("tokenEndpoint") or a.get("tokenEndoint"), a.get("clientId"), a.get("scope"),
             origin]
    level = d.get("securityLevel") or "TlsWithCACheck"
    if level != "TlsWithCACheck" or d.get("allowInsecureRemote"):  # how the servers are verified
        parts += [level, d.get("pinnedCertificate"), "remote" if d.get("allowInsecureRemote") else None]
    for part in parts:
        h.update(b"\0" + (str(part).encode() if part else b""))
    return h.digest()[:8].hex()


@pytest.fixture
def fire(tmp_path, pki) -> Fire:
    return Fire(tmp_path, pki)


@pytest.fixture
def started():
    """Start servers through this; all are stopped at the end of the test."""
    running = []

    def start(server):
        server.start()
        running.append(server)
        return server

    yield start
    for s in running:
        s.stop()


def tls_token_server(pki, name="leaf", **kw) -> TokenServer:
    item = getattr(pki, name)
    chain = item.chain_path if item.chain else item.cert_path
    return TokenServer(certfile=chain, keyfile=item.key_path, **kw)


def webhook(url: str, token_url: str, level="TlsWithCACheck", refresh="rt-initial", **extra) -> dict:
    auth = {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": refresh,
            "tokenEndpoint": token_url, "clientId": "keyhook-test", "scope": "hooks offline_access"}
    auth.update(extra.pop("auth", {}))
    d = {"method": "Post", "url": url, "securityLevel": level, "timeout": 5000,
         "body": {"contentType": "application/json", "content": "{\"open\": true}"},
         "authentication": auth}
    d.update(extra)
    return {"functionName": "Open garage", "definition": d}


def bearer(req) -> str | None:
    return req.header("Authorization")


# -- rotation and caching ---------------------------------------------------------------------

def test_refresh_rotation_and_cache_across_runs(fire, pki, started):
    ts = started(tls_token_server(pki, rotate=True, expires_in=3600, client_id="keyhook-test"))
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)))
    wh = webhook(rx.url("/hook"), ts.token_url)

    r1 = fire(wh)
    assert (r1["status"], r1["error"]) == (200, None)
    rx.settle()
    at1 = ts.issued_access_tokens[0]
    assert [bearer(q) for q in rx.requests] == [f"Bearer {at1}"]
    # The device redeemed the definition's token with a proper form, over TLS.
    g = ts.token_requests
    assert len(g) == 1 and g[0].tls
    assert g[0].headers["content-type"] == "application/x-www-form-urlencoded"
    assert g[0].form == {"grant_type": "refresh_token", "refresh_token": "rt-initial",
                         "client_id": "keyhook-test", "scope": "hooks offline_access"}
    st = fire.state_file()
    assert st["rt"] == ts.current_refresh_token != "rt-initial"
    assert st["at"] == at1

    # A new run with the same state: the cached access token, no grant.
    r2 = fire(wh)
    assert r2["status"] == 200
    rx.settle()
    assert [bearer(q) for q in rx.requests] == [f"Bearer {at1}"] * 2
    assert len(ts.token_requests) == 1
    assert fire.state_file() == st

    fire.assert_no_secret(at1, "rt-initial", ts.current_refresh_token)


def test_expired_access_token_is_refreshed_with_the_rotated_token(fire, pki, started):
    ts = started(tls_token_server(pki, rotate=True, expires_in=1))
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)))
    wh = webhook(rx.url("/hook"), ts.token_url)
    assert fire(wh)["status"] == 200
    rt1 = ts.current_refresh_token
    assert fire.state_file()["rt"] == rt1
    time.sleep(2.1)  # let the 1-second access token expire (a state change, not a timing check)
    assert fire(wh)["status"] == 200
    rx.settle()
    at1, at2 = ts.issued_access_tokens
    assert [bearer(q) for q in rx.requests] == [f"Bearer {at1}", f"Bearer {at2}"]
    # The second grant redeemed the rotated token; the state now holds the next one.
    assert [q.form["refresh_token"] for q in ts.token_requests] == ["rt-initial", rt1]
    st = fire.state_file()
    assert (st["rt"], st["at"]) == (ts.current_refresh_token, at2)


def test_no_expires_in_uses_the_definition_hint(fire, pki, started):
    ts = started(tls_token_server(pki, expires_in=None))
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)))
    wh = webhook(rx.url("/hook"), ts.token_url, auth={"expiresIn": 0})
    assert fire(wh)["status"] == 200
    assert fire(wh)["status"] == 200
    # expiresIn 0: never cached, so each fire redeemed (the refresh token did not rotate).
    assert [q.form["refresh_token"] for q in ts.token_requests] == ["rt-initial", "rt-initial"]
    assert "rt" not in fire.state_file()


def test_new_definition_token_starts_a_new_chain(fire, pki, started):
    ts = started(tls_token_server(pki, refresh_token="first", rotate=True))
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)))
    first = webhook(rx.url(), ts.token_url, refresh="first")
    assert fire(first)["status"] == 200
    rt1 = ts.current_refresh_token
    assert fire.state_file(first)["rt"] == rt1
    # The integrator re-authorised and pushed a new refresh token (here: one the server knows).
    ts.accept_refresh_token("second")
    second = webhook(rx.url(), ts.token_url, refresh="second")
    assert fire(second)["status"] == 200
    # The stored rt1 did not win over the new definition token: a new chain started from it.
    assert [q.form["refresh_token"] for q in ts.token_requests] == ["first", "second"]
    assert fire.state_file(second)["rt"] == ts.current_refresh_token
    assert fire.state_file(first)["rt"] == rt1  # the old chain's file (pruned on a device)


# -- 401 --------------------------------------------------------------------------------------

def test_401_refreshes_once_and_retries(fire, pki, started):
    # The token server is also the resource (same origin): it rejects revoked tokens with 401.
    ts = started(tls_token_server(pki, rotate=True))
    wh = webhook(ts.resource_url, ts.token_url)
    r1 = fire(wh)
    assert (r1["status"], r1["retried_401"]) == (200, False)
    at1 = ts.issued_access_tokens[0]
    rt1 = ts.current_refresh_token
    ts.revoke_access_tokens()  # e.g. the resource server rolled its keys

    r2 = fire(wh)
    assert (r2["status"], r2["retried_401"], r2["error"]) == (200, True, None)
    at2 = ts.issued_access_tokens[1]
    assert [r.authorization for r in ts.resource_requests] == [f"Bearer {at1}"] * 2 + [f"Bearer {at2}"]
    assert [r.status for r in ts.resource_requests] == [200, 401, 200]
    assert [q.form["refresh_token"] for q in ts.token_requests] == ["rt-initial", rt1]
    st = fire.state_file()
    assert (st["rt"], st["at"]) == (ts.current_refresh_token, at2)
    fire.assert_no_secret(at1, at2, rt1, ts.current_refresh_token)


def test_401_twice_is_reported_not_looped(fire, pki, started):
    ts = started(tls_token_server(pki))
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path),
                          respond=Respond(status=401, reason="Unauthorized", body=b"no")))
    r = fire(webhook(rx.url(), ts.token_url))
    assert (r["status"], r["retried_401"], r["error"]) == (401, True, None)
    rx.settle()
    at1, at2 = ts.issued_access_tokens
    assert [bearer(q) for q in rx.requests] == [f"Bearer {at1}", f"Bearer {at2}"]
    assert len(ts.token_requests) == 2


def test_401_then_refresh_refused(fire, pki, started):
    # The resource rejects the cached token and the identity provider has revoked the refresh
    # token meanwhile: the fire reports the token endpoint's failure (what the integrator must
    # fix), after one request that did reach the resource.
    ts = started(tls_token_server(pki))
    wh = webhook(ts.resource_url, ts.token_url)
    assert fire(wh)["status"] == 200
    ts.revoke_access_tokens()
    ts.fail = "invalid_grant"
    r = fire(wh)
    assert (r["error"], r["sent"], r["status"]) == ("token_endpoint", True, None)
    assert "invalid_grant" in r["message"] and "new refresh token" in r["message"]
    assert [q.status for q in ts.resource_requests] == [200, 401]


# -- token endpoint failures: nothing reaches the resource server -----------------------------

@pytest.mark.parametrize("mode, words", [
    ("invalid_grant", ["HTTP 400", "invalid_grant"]),
    ("invalid_client", ["HTTP 401", "invalid_client", "clientId"]),
    ("500", ["HTTP 500"]),
    ("garbage", ["not a JSON object"]),
])
def test_token_endpoint_failure_sends_nothing(fire, pki, started, mode, words):
    ts = started(tls_token_server(pki, fail=mode))
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)))
    r = fire(webhook(rx.url(), ts.token_url))
    assert (r["error"], r["status"], r["sent"]) == ("token_endpoint", None, False)
    for w in words:
        assert w in r["message"]
    rx.settle()
    assert rx.connections == [] and rx.received == b""
    assert len(ts.token_requests) == 1
    assert fire.state_file() is None
    fire.assert_no_secret("rt-initial")


@pytest.mark.parametrize("id_token_bytes", [1500, 6000, 12000, 20000])
def test_large_answers(fire, pki, started, id_token_bytes):
    # OpenID providers add an id_token, Azure AD and Keycloak group claims (4 to 6 KB in all):
    # an answer up to the stated bound (16 KiB) is kept whole; a longer one is reported clearly
    # (and nothing is sent).
    ts = started(tls_token_server(pki, id_token_bytes=id_token_bytes))
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)))
    r = fire(webhook(rx.url(), ts.token_url))
    rx.settle()
    if id_token_bytes < 16000:
        assert (r["status"], r["error"]) == (200, None)
        assert bearer(rx.requests[0]) == f"Bearer {ts.issued_access_tokens[0]}"
    else:
        assert (r["error"], r["sent"]) == ("token_endpoint", False)
        assert "longer than the 16384 bytes" in r["message"] and "openid" not in r["message"]
        assert rx.received == b""


def test_failure_after_rotation_keeps_the_chain(fire, pki, started):
    ts = started(tls_token_server(pki, rotate=True, expires_in=1))
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)))
    wh = webhook(rx.url(), ts.token_url)
    assert fire(wh)["status"] == 200
    before = fire.state_file()
    time.sleep(2.1)
    ts.fail = "500"
    r = fire(wh)
    assert (r["error"], r["sent"]) == ("token_endpoint", False)
    assert fire.state_file() == before  # the rotated refresh token is still there
    ts.fail = None
    assert fire(wh)["status"] == 200
    assert ts.token_requests[-1].form["refresh_token"] == before["rt"]
    rx.settle()
    assert len(rx.requests) == 2


def test_unreachable_token_endpoint(fire, pki, started):
    ts = tls_token_server(pki).start()
    url = ts.token_url
    ts.stop()  # nothing listens there now
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)))
    r = fire(webhook(rx.url(), url))
    assert (r["error"], r["sent"]) == ("token_endpoint", False)
    assert "could not reach the token endpoint" in r["message"]
    rx.settle()
    assert rx.received == b""


# -- how the token endpoint is verified --------------------------------------------------------

def test_same_origin_uses_the_requests_level(fire, pki, started):
    # A self-signed server that is both token endpoint and resource, fired with
    # TlsAllowSelfSigned: the grant goes out under that level too.
    ts = started(tls_token_server(pki, name="self_signed"))
    r = fire(webhook(ts.resource_url, ts.token_url, level="TlsAllowSelfSigned"), trust=False)
    assert (r["status"], r["error"]) == (200, None)
    assert len(ts.token_requests) == 1
    assert ts.resource_requests[0].authorization == f"Bearer {ts.issued_access_tokens[0]}"


def test_other_origin_is_verified_against_the_trust_store(fire, pki, started):
    # The same self-signed token endpoint, but the request goes elsewhere: the token endpoint
    # must pass TlsWithCACheck, fails, and neither server receives a byte of a request.
    ts = started(tls_token_server(pki, name="self_signed"))
    rx = started(Receiver(tls=server_context(pki.self_signed.cert_path, pki.self_signed.key_path)))
    r = fire(webhook(rx.url(), ts.token_url, level="TlsAllowSelfSigned"))
    assert (r["error"], r["sent"]) == ("token_endpoint", False)
    assert "tls_untrusted" in r["message"] and "another origin" in r["message"]
    rx.settle()
    assert ts.requests == [] and rx.received == b""


def test_same_origin_pinned_leaf(fire, pki, started):
    # Pinned leaf, no trust store: the token endpoint on the same origin is accepted by the pin.
    ts = started(tls_token_server(pki))
    wh = webhook(ts.resource_url, ts.token_url, level="TlsPinnedCertificate",
                 pinnedCertificate=pki.leaf.pem)
    r = fire(wh, trust=False)
    assert (r["status"], r["error"]) == (200, None)
    assert len(ts.token_requests) == 1


@pytest.mark.parametrize("trusted", [False, True])
def test_other_host_name_is_another_origin(fire, pki, started, trusted):
    # Same server, but the token URL says localhost and the request 127.0.0.1: another origin,
    # so the pin does not apply to it; it needs the CA in the trust store.
    ts = started(tls_token_server(pki))
    wh = webhook(ts.resource_url, ts.origin_for("localhost") + "/oauth2/token",
                 level="TlsPinnedCertificate", pinnedCertificate=pki.leaf.pem)
    r = fire(wh, trust=trusted)
    if trusted:
        assert (r["status"], r["error"]) == (200, None)
        assert len(ts.token_requests) == 1
    else:
        assert (r["error"], r["sent"]) == ("token_endpoint", False)
        assert "tls_untrusted" in r["message"]
        assert ts.requests == []


def test_plain_http_token_endpoint_on_another_origin_is_refused(fire, pki, started):
    ts = started(TokenServer())
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)))
    r = fire(webhook(rx.url(), ts.token_url))
    assert (r["error"], r["sent"]) == ("token_endpoint", False)
    assert "plain http" in r["message"]
    rx.settle()
    assert ts.requests == [] and rx.received == b""


def test_plain_http_same_origin_with_allow_http(fire, started):
    ts = started(TokenServer(rotate=True))
    r = fire(webhook(ts.resource_url, ts.token_url, level="AllowHttp"), trust=False)
    assert (r["status"], r["error"]) == (200, None)
    assert not ts.token_requests[0].tls
    assert fire.state_file()["rt"] == ts.current_refresh_token


# -- quirks in the wild -------------------------------------------------------------------------

def test_quirk_token_endoint_spelling(fire, pki, started):
    ts = started(tls_token_server(pki))
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)))
    wh = webhook(rx.url(), ts.token_url)
    a = wh["definition"]["authentication"]
    a["tokenEndoint"] = a.pop("tokenEndpoint")
    assert fire(wh)["status"] == 200
    rx.settle()
    assert bearer(rx.requests[0]) == f"Bearer {ts.issued_access_tokens[0]}"


def test_issued_access_token_with_stray_refresh_token(fire, pki, started):
    # The type decides: the access token is sent as is, the token endpoint is never asked, and
    # a 401 is reported without a retry.
    ts = started(tls_token_server(pki))
    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path),
                          respond=Respond(status=401, reason="Unauthorized", body=b"")))
    wh = webhook(rx.url(), ts.token_url, auth={"apiAuthenticationType": "OAuth2IssuedAccessToken",
                                               "accessToken": "issued-by-hand.0123"})
    r = fire(wh)
    assert (r["status"], r["retried_401"]) == (401, False)
    rx.settle()
    assert [bearer(q) for q in rx.requests] == ["Bearer issued-by-hand.0123"]
    assert ts.requests == []
    assert fire.state_file() is None
    fire.assert_no_secret("issued-by-hand.0123", "rt-initial")


# -- token state is bound to how its endpoint is verified (issue 9, Medium 5) ----------------

def test_a_weaker_rule_never_receives_a_stricter_chains_tokens(fire, pki, started):
    # A CA-checked rule redeems and rotates its refresh token. Then an impostor with a
    # self-signed certificate takes the token endpoint's address, and a new rule carries the
    # same refresh token, endpoint and client but TlsAllowSelfSigned: it must start its own
    # chain; the impostor gets neither the rotated refresh token nor the cached access token.
    ts = started(tls_token_server(pki, rotate=True, expires_in=3600, client_id="keyhook-test"))
    strict = webhook(ts.resource_url, ts.token_url)
    assert fire(strict)["status"] == 200
    live_rt, live_at = ts.current_refresh_token, ts.issued_access_tokens[-1]
    assert live_rt != "rt-initial"
    port = int(ts.token_url.split(":")[2].split("/")[0])
    ts.stop()

    impostor = started(tls_token_server(pki, name="self_signed", port=port, rotate=True, expires_in=3600))
    weak = webhook(impostor.resource_url, impostor.token_url, level="TlsAllowSelfSigned")
    assert weak["definition"]["authentication"]["tokenEndpoint"] == strict["definition"]["authentication"]["tokenEndpoint"]
    fire(weak)
    seen = json.dumps([r.form for r in impostor.token_requests]) + json.dumps(
        [r.authorization for r in impostor.resource_requests])
    assert live_rt not in seen and live_at not in seen
    assert [r.form["refresh_token"] for r in impostor.token_requests] == ["rt-initial"]  # its own chain
    fire.assert_no_secret(live_rt, live_at)


# -- token state is bound to the origin of the request (security review, Medium A) ---------

@pytest.mark.parametrize("level", ["TlsWithCACheck", "AllowHttp"])
def test_another_origin_never_receives_a_chains_cached_access_token(fire, pki, started, level):
    # The admin's rule redeems and rotates its refresh token; the access token is cached. A guest
    # who knows only the ORIGINAL refresh token (dead at the identity provider) pushes a rule with
    # the same refresh token, endpoint, client, scope and level but its own URL: a server it
    # controls on 127.0.0.1. The device must not hand it the admin chain's access token.
    tls = level != "AllowHttp"
    ts = started(tls_token_server(pki, rotate=True, expires_in=3600, client_id="keyhook-test") if tls
                 else TokenServer(rotate=True, expires_in=3600, client_id="keyhook-test"))
    admin = webhook(ts.resource_url, ts.token_url, level=level)
    assert fire(admin, trust=tls)["status"] == 200
    admin_at = ts.issued_access_tokens[-1]
    assert ts.current_refresh_token != "rt-initial"

    rx = started(Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path) if tls else None))
    guest = webhook(rx.url("/steal"), ts.token_url, level=level)
    assert guest["definition"]["authentication"] == admin["definition"]["authentication"]
    fire(guest, trust=tls)
    rx.settle()
    got = [bearer(q) for q in rx.requests]
    assert not any(g and admin_at in g for g in got), "the guest's server received the admin's access token"
    assert not any(g and any(t in g for t in ts.issued_access_tokens) for g in got)
    # The admin's chain still works, from its cache, for the admin's origin.
    assert fire(admin, trust=tls)["status"] == 200
    assert [r.authorization for r in ts.resource_requests][-1] == f"Bearer {admin_at}"
    fire.assert_no_secret(admin_at)
