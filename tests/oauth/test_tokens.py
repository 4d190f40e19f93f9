"""The OAuth layer (firmware/kh/oauth) under the real MicroPython unix port, with a scripted
token endpoint in place of the http layer: what the endpoint was sent, what the caller got,
what the state file holds."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qs

import pytest

from keyhook.lab.devpki import make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def form(body: str) -> dict:
    return {k: v[0] for k, v in parse_qs(body, keep_blank_values=True, strict_parsing=True).items()}


def test_none_and_missing_authentication(mpo):
    r = mpo.json("""
        t = Tokens(None)
        ep = K.Endpoint()
        d = K.definition(apiAuthenticationType="None")
        a = K.run(t.header(d, "k", ep))
        b = K.run(t.after_401(d, "k", ep))
        d2 = K.definition(); del d2["authentication"]
        c = K.run(t.header(d2, "k", ep))
        K.out([a, b, c, len(ep.calls)])
    """)
    assert r == [None, None, None, 0]


def test_issued_access_token_ignores_stray_refresh_token(mpo):
    r = mpo.json("""
        t = Tokens(None)
        ep = K.Endpoint()
        d = K.definition(apiAuthenticationType="OAuth2IssuedAccessToken", accessToken="abc.DEF-123")
        K.out([K.run(t.header(d, "k", ep)), K.run(t.after_401(d, "k", ep)), len(ep.calls)])
    """)
    assert r == ["Bearer abc.DEF-123", None, 0]


@pytest.mark.parametrize("auth, field", [
    ('apiAuthenticationType="OAuth2IssuedAccessToken"', "accessToken"),
    ('apiAuthenticationType="OAuth2IssuedAccessToken", accessToken="a\\r\\nX-Evil: 1"', "accessToken"),
    ('refreshToken=""', "refreshToken"),
    ('tokenEndpoint=None', "tokenEndpoint"),
    ('apiAuthenticationType="Basic"', "apiAuthenticationType"),
])
def test_bad_definitions_are_invalid_definition(mpo, auth, field):
    r = mpo.json(f"""
        ep = K.Endpoint()
        K.out([K.error(Tokens(None).header(K.definition({auth}), "k", ep)), len(ep.calls)])
    """)
    assert r[0]["code"] == "invalid_definition"
    assert field in r[0]["message"]
    assert r[1] == 0


def test_refresh_grant_form_and_header(mpo):
    r = mpo.json("""
        t = Tokens(None)
        ep = K.Endpoint()
        d = K.definition(refreshToken="r/+= &%é", clientId="my client&id", scope="openid offline_access")
        K.out([K.run(t.header(d, "k", ep)), ep.calls])
    """)
    header, calls = r
    assert header == "Bearer AT1"
    assert len(calls) == 1
    body = calls[0]["body"]
    # Properly percent-encoded: only unreserved characters, "+" for space, %XX for the rest.
    assert body == ("grant_type=refresh_token&refresh_token=r%2F%2B%3D+%26%25%C3%A9"
                    "&client_id=my+client%26id&scope=openid+offline_access")
    assert form(body) == {"grant_type": "refresh_token", "refresh_token": "r/+= &%é",
                          "client_id": "my client&id", "scope": "openid offline_access"}
    assert calls[0]["url"] == "https://idp.example.test/oauth2/token"


def test_client_id_and_scope_omitted_when_absent(mpo):
    r = mpo.json("""
        ep = K.Endpoint()
        K.run(Tokens(None).header(K.definition(), "k", ep))
        K.out(ep.calls[0]["body"])
    """)
    assert form(r) == {"grant_type": "refresh_token", "refresh_token": "RT0"}


def test_quirk_token_endoint_spelling(mpo):
    r = mpo.json("""
        ep = K.Endpoint()
        d = K.definition(tokenEndpoint=None, tokenEndoint="https://idp.example.test/quirk")
        del d["authentication"]["tokenEndpoint"]
        K.out([K.run(Tokens(None).header(d, "k", ep)), ep.calls[0]["url"]])
    """)
    assert r == ["Bearer AT1", "https://idp.example.test/quirk"]


def test_access_token_cached_until_shortly_before_expiry(mpo, tmp_path):
    r = mpo.json(f"""
        clock = K.Clock(1000000)
        t = Tokens("{tmp_path}/st", clock=clock)
        ep = K.Endpoint(ttl=3600)
        d = K.definition()
        seen = [K.run(t.header(d, "k", ep))]
        clock.t += 3000
        seen.append(K.run(t.header(d, "k", ep)))      # still cached
        clock.t += 539                                # 1 s before the 60 s margin
        seen.append(K.run(t.header(d, "k", ep)))
        clock.t += 2                                  # within the margin: refresh
        seen.append(K.run(t.header(d, "k", ep)))
        K.out([seen, len(ep.calls)])
    """)
    assert r == [["Bearer AT1", "Bearer AT1", "Bearer AT1", "Bearer AT2"], 2]


def test_expiry_hint_and_default(mpo):
    r = mpo.json("""
        clock = K.Clock(1000000)
        t = Tokens(None, clock=clock)
        ep = K.Endpoint(ttl=None)
        hinted = K.definition(expiresIn=100, refreshToken="H")
        plain = K.definition()
        a = [K.run(t.header(hinted, "h", ep))]
        b = [K.run(t.header(plain, "p", ep))]
        clock.t += 89
        a.append(K.run(t.header(hinted, "h", ep)))   # 100 s hint, 10 s margin: cached
        clock.t += 2
        a.append(K.run(t.header(hinted, "h", ep)))   # refreshed
        b.append(K.run(t.header(plain, "p", ep)))    # default 300 s: still cached
        clock.t += 250
        b.append(K.run(t.header(plain, "p", ep)))    # 341 s: refreshed
        K.out([a, b])
    """)
    assert r == [["Bearer AT1", "Bearer AT1", "Bearer AT3"], ["Bearer AT2", "Bearer AT2", "Bearer AT4"]]


def test_expires_in_as_string_and_zero(mpo):
    r = mpo.json("""
        clock = K.Clock(1000000)
        t = Tokens(None, clock=clock)
        ep = K.Endpoint(answers=[(200, b'{"access_token":"A","expires_in":"120"}'),
                                 (200, b'{"access_token":"B","expires_in":0}'),
                                 (200, b'{"access_token":"C","token_type":"bearer"}')])
        d = K.definition()
        h = [K.run(t.header(d, "k", ep))]
        clock.t += 100
        h.append(K.run(t.header(d, "k", ep)))
        clock.t += 20
        h.append(K.run(t.header(d, "k", ep)))   # expired: B, which lives 0 s
        h.append(K.run(t.header(d, "k", ep)))   # so the next fire refreshes again
        K.out(h)
    """)
    assert r == ["Bearer A", "Bearer A", "Bearer B", "Bearer C"]


def test_clock_going_backwards_invalidates_cache(mpo, tmp_path):
    # A device that reboots before its clock is set reads the file with a clock near 2000.
    r = mpo.json(f"""
        ep = K.Endpoint()
        d = K.definition()
        K.run(Tokens("{tmp_path}/st", clock=K.Clock(1700000000)).header(d, "k", ep))
        h = K.run(Tokens("{tmp_path}/st", clock=K.Clock(100)).header(d, "k", ep))
        K.out([h, len(ep.calls)])
    """)
    assert r == ["Bearer AT2", 2]


def test_state_dir_reused_across_instances(mpo, tmp_path):
    # `keyhook fire --state DIR` runs a new interpreter each time: the file carries the cache.
    r = mpo.json(f"""
        clock = K.Clock(1000000)
        ep = K.Endpoint()
        d = K.definition()
        a = K.run(Tokens("{tmp_path}/st", clock=clock).header(d, "Open garage", ep))
        b = K.run(Tokens("{tmp_path}/st", clock=clock).header(d, "Open garage", ep))
        c = K.run(Tokens("{tmp_path}/st", clock=clock).header(K.definition(refreshToken="X"), "Other", ep))
        K.out([a, b, c, len(ep.calls)])
    """)
    assert r == ["Bearer AT1", "Bearer AT1", "Bearer AT2", 2]
    files = sorted(p.name for p in (tmp_path / "st").iterdir())
    assert len(files) == 2 and all(f.startswith("oauth-") and f.endswith(".json") for f in files)
    # The file names reveal nothing of the tokens.
    for f in files:
        assert "RT0" not in f and "X" not in f[6:-5]


def test_rules_sharing_a_refresh_token_share_the_chain(mpo, tmp_path):
    # Two rules registered with the same refresh token: when one rotates it, the other must
    # not redeem the retired token (an identity provider may then revoke the whole family).
    r = mpo.json(f"""
        clock = K.Clock(1000000)
        ep = K.Endpoint(rotate=True, ttl=60)
        t = Tokens("{tmp_path}/st", clock=clock)
        d1 = K.definition(url="https://a.test/one")
        d2 = K.definition(url="https://a.test/two")
        h = [K.run(t.header(d1, "one", ep)), K.run(t.header(d2, "two", ep))]
        clock.t += 120
        h.append(K.run(Tokens("{tmp_path}/st", clock=clock).header(d2, "two", ep)))
        h.append(K.run(Tokens("{tmp_path}/st", clock=clock).header(d1, "one", ep)))
        K.out([h, [c["body"] for c in ep.calls]])
    """)
    headers, bodies = r
    assert headers == ["Bearer AT1", "Bearer AT1", "Bearer AT2", "Bearer AT2"]
    assert [form(b)["refresh_token"] for b in bodies] == ["RT0", "RT1"]


def test_prune_removes_chains_no_rule_uses(mpo, tmp_path):
    r = mpo.json(f"""
        import os
        st = "{tmp_path}/st"
        t = Tokens(st)
        ep = K.Endpoint(rotate=True)
        old, new = K.definition(refreshToken="OLD"), K.definition(refreshToken="NEW")
        K.run(t.header(old, "k", ep))
        K.run(t.header(new, "k", ep))
        before = len(os.listdir(st))
        n = t.prune([new, K.definition(apiAuthenticationType="None")])
        after = K.stored(st)
        h = K.run(t.header(new, "k", ep))
        K.out([before, n, after["rt"], h, len(ep.calls)])
    """)
    assert r == [2, 1, "RT2", "Bearer AT2", 2]


def test_rotation_stored_before_use_and_newest_token_wins(mpo, tmp_path):
    r = mpo.json(f"""
        K.trace_writes()
        clock = K.Clock(1000000)
        st = "{tmp_path}/st"
        ep = K.Endpoint(rotate=True, ttl=60)
        d = K.definition()
        K.EVENTS.append("used:" + K.run(Tokens(st, clock=clock).header(d, "k", ep)))
        after1 = K.stored(st)["rt"]
        clock.t += 100
        K.EVENTS.append("used:" + K.run(Tokens(st, clock=clock).header(d, "k", ep)))
        after2 = K.stored(st)["rt"]
        K.out([K.EVENTS, after1, after2, [c["body"] for c in ep.calls]])
    """)
    events, after1, after2, bodies = r
    assert events == ["post", "write:RT1", "used:Bearer AT1", "post", "write:RT2", "used:Bearer AT2"]
    assert (after1, after2) == ("RT1", "RT2")
    # The second grant redeemed the rotated token, not the definition's.
    assert [form(b)["refresh_token"] for b in bodies] == ["RT0", "RT1"]


def test_rotated_token_not_used_when_it_cannot_be_stored(mpo, tmp_path):
    r = mpo.json(f"""
        from kh.store import files
        real = files.write_atomic
        def broken(path, data, *secret):
            raise OSError(28)
        clock = K.Clock(1000000)
        t = Tokens("{tmp_path}/st", clock=clock)
        ep = K.Endpoint(rotate=True)
        d = K.definition()
        files.write_atomic = broken
        first = K.error(t.header(d, "k", ep))
        files.write_atomic = real
        second = K.error(t.header(d, "k", ep))
        K.out([first, second, [c["body"] for c in ep.calls], K.stored("{tmp_path}/st")])
    """)
    first, second, bodies, stored = r
    assert first["code"] == "storage" and "AT1" not in first["message"] and "RT1" not in first["message"]
    assert second == {"value": "Bearer AT2"}
    # The chain was not lost: the second grant used RT1, kept in RAM.
    assert [form(b)["refresh_token"] for b in bodies] == ["RT0", "RT1"]
    assert stored["rt"] == "RT2" and stored["at"] == "AT2"


def test_unrotated_cache_failure_is_not_fatal(mpo, tmp_path):
    r = mpo.json(f"""
        from kh.store import files
        def broken(path, data, *secret):
            raise OSError(28)
        files.write_atomic = broken
        K.out(K.error(Tokens("{tmp_path}/st").header(K.definition(), "k", K.Endpoint())))
    """)
    assert r == {"value": "Bearer AT1"}


def test_changed_definition_starts_a_new_chain(mpo, tmp_path):
    r = mpo.json(f"""
        clock = K.Clock(1000000)
        st = "{tmp_path}/st"
        ep = K.Endpoint(rotate=True)
        a = K.run(Tokens(st, clock=clock).header(K.definition(refreshToken="OLD"), "k", ep))
        # Same definition token: the cached access token, the stored RT1 kept.
        b = K.run(Tokens(st, clock=clock).header(K.definition(refreshToken="OLD"), "k", ep))
        # The integrator pushed a new refresh token: start over from it.
        c = K.run(Tokens(st, clock=clock).header(K.definition(refreshToken="NEW"), "k", ep))
        # Another token endpoint: never send it the stored token.
        e = K.run(Tokens(st, clock=clock).header(
            K.definition(refreshToken="NEW", tokenEndpoint="https://other.example.test/t"), "k", ep))
        K.out([[a, b, c, e], [c["body"] for c in ep.calls]])
    """)
    headers, bodies = r
    assert headers == ["Bearer AT1", "Bearer AT1", "Bearer AT2", "Bearer AT3"]
    assert [form(b)["refresh_token"] for b in bodies] == ["OLD", "NEW", "NEW"]


def test_after_401_forces_one_refresh(mpo, tmp_path):
    r = mpo.json(f"""
        clock = K.Clock(1000000)
        t = Tokens("{tmp_path}/st", clock=clock)
        ep = K.Endpoint(rotate=True)
        d = K.definition()
        a = K.run(t.header(d, "k", ep))
        b = K.run(t.after_401(d, "k", ep))
        c = K.run(t.header(d, "k", ep))       # the refreshed token is now the cached one
        K.out([[a, b, c], [c["body"] for c in ep.calls], K.stored("{tmp_path}/st")["rt"]])
    """)
    headers, bodies, rt = r
    assert headers == ["Bearer AT1", "Bearer AT2", "Bearer AT2"]
    assert [form(b)["refresh_token"] for b in bodies] == ["RT0", "RT1"]
    assert rt == "RT2"


def test_concurrent_fires_redeem_once(mpo):
    # Two fires of one rule at once must not both redeem (a rotated token is single-use).
    r = mpo.json("""
        import asyncio
        class Slow(K.Endpoint):
            async def __call__(self, url, body, level, pin):
                await asyncio.sleep_ms(20)
                return await K.Endpoint.__call__(self, url, body, level, pin)
        t = Tokens(None)
        ep = Slow(rotate=True)
        d = K.definition()
        async def main():
            return await asyncio.gather(t.header(d, "k", ep), t.header(d, "k", ep))
        K.out([K.run(main()), len(ep.calls)])
    """)
    assert r == [["Bearer AT1", "Bearer AT1"], 1]


SECRET_DEF = 'K.definition(refreshToken="SECRET-RT", clientId="cid", scope="s")'


@pytest.mark.parametrize("answer, words", [
    ('(400, b\'{"error":"invalid_grant","error_description":"SECRET-RT is revoked"}\')',
     ["HTTP 400", "invalid_grant", "new refresh token"]),
    ('(401, b\'{"error":"invalid_client"}\')', ["HTTP 401", "invalid_client", "clientId"]),
    ('(400, b\'{"error":"SECRET-RT"}\')', ["HTTP 400", "check"]),
    ('(500, b"SECRET-RT internal error")', ["HTTP 500", "try again later"]),
    ('(503, b"")', ["HTTP 503"]),
    ('(302, b"")', ["redirect", "never followed"]),
    ('(200, b"<html>SECRET-RT</html>")', ["not a JSON object"]),
    ('(200, b\'{"access_token":"SECRET-AT"\')', ["not complete JSON", "broken answer"]),
    ('(200, b\'["SECRET-AT"]\')', ["not a JSON object"]),
    ('(200, b\'{"token_type":"Bearer","refresh_token":"SECRET-RT2"}\')', ["no access_token"]),
    ('(200, b\'{"access_token":""}\')', ["no access_token"]),
    ('(200, b\'{"access_token":"SECRET-AT\\\\r\\\\nX: y"}\')', ["visible ASCII"]),
    ('(200, b\'{"access_token":"SECRET-AT","token_type":"mac"}\')', ["not a Bearer token"]),
    ('(200, b\'{"access_token":"SECRET-AT","refresh_token":5}\')', ["refresh_token is not a string"]),
    ('(200, b\'{"access_token":"SECRET-AT","x":"\' + b"y" * 17000 + b\'"}\')', ["longer than", "16384"]),
    ('FireError("tls_untrusted", "the server certificate is not trusted; add its CA")',
     ["could not reach", "tls_untrusted"]),
    ('FireError("timeout", "no answer within 3000 ms")', ["could not reach", "timeout"]),
    ('OSError(104)', ["could not reach", "104"]),
])
def test_token_endpoint_failures(mpo, tmp_path, answer, words):
    r = mpo.json(f"""
        from kh.http.errors import FireError
        ep = K.Endpoint(answers=[{answer}])
        t = Tokens("{tmp_path}/st")
        K.out([K.error(t.header({SECRET_DEF}, "k", ep)), K.error(t.after_401({SECRET_DEF}, "k", K.Endpoint(answers=[{answer}])))])
    """)
    for res in r:
        assert res.get("code") == "token_endpoint", res
        msg = res["message"]
        for w in words:
            assert w in msg
        assert "SECRET" not in msg
    # Nothing was cached from a failed grant.
    assert not (tmp_path / "st").exists()


def test_failure_keeps_stored_chain(mpo, tmp_path):
    r = mpo.json(f"""
        clock = K.Clock(1000000)
        st = "{tmp_path}/st"
        d = K.definition()
        K.run(Tokens(st, clock=clock).header(d, "k", K.Endpoint(rotate=True)))
        clock.t += 7200
        err = K.error(Tokens(st, clock=clock).header(d, "k", K.Endpoint(answers=[(500, b"")])))
        ep = K.Endpoint(rotate=True)
        ok = K.run(Tokens(st, clock=clock).header(d, "k", ep))
        K.out([err["code"], ok, ep.calls[0]["body"]])
    """)
    assert r[0] == "token_endpoint"
    assert r[1] == "Bearer AT1"
    assert form(r[2])["refresh_token"] == "RT1"


@pytest.mark.parametrize("url, level, pin, token_url, expect", [
    # same origin: the request's own level and pin
    ("https://h.test:8443/hook", "TlsPinnedCertificate", "PEM", "https://h.test:8443/token",
     ["TlsPinnedCertificate", "DER"]),
    ("https://h.test:8443/hook", "TlsPinnedCertificate", "B64", "https://h.test:8443/token",
     ["TlsPinnedCertificate", "DER"]),
    ("https://H.TEST/hook", "TlsAllowSelfSigned", None, "https://h.test:443/token",
     ["TlsAllowSelfSigned", None]),
    ("http://10.0.0.5:8080/x", "AllowHttp", None, "http://10.0.0.5:8080/token", ["AllowHttp", None]),
    ("https://[::1]:8443/x", "TlsAllowSelfSigned", None, "https://[::1]:8443/t", ["TlsAllowSelfSigned", None]),
    # another origin: TlsWithCACheck, no pin
    ("https://h.test:8443/hook", "TlsPinnedCertificate", "PEM", "https://h.test:8444/token",
     ["TlsWithCACheck", None]),
    ("https://h.test/hook", "TlsAllowSelfSigned", None, "https://idp.test/token", ["TlsWithCACheck", None]),
    ("http://h.test/hook", "AllowHttp", None, "https://h.test/token", ["TlsWithCACheck", None]),
    ("https://127.0.0.1:8443/x", "TlsAllowSelfSigned", None, "https://localhost:8443/t", ["TlsWithCACheck", None]),
    # plain http on another origin: refused, nothing sent
    ("https://h.test/hook", "TlsWithCACheck", None, "http://h.test/token", "token_endpoint"),
    ("http://h.test:8080/hook", "AllowHttp", None, "http://h.test:8081/token", "token_endpoint"),
    # not a URL the device can use
    ("https://h.test/hook", "TlsWithCACheck", None, "ftp://h.test/token", "token_endpoint"),
    ("https://h.test/hook", "TlsWithCACheck", None, "https://user:pw@h.test/token", "token_endpoint"),
    ("https://h.test/hook", "TlsWithCACheck", None, "https://h.test:99999/token", "token_endpoint"),
    ("https://h.test/hook", "TlsWithCACheck", None, "/token", "token_endpoint"),
])
def test_token_endpoint_verification(mpo, pki, url, level, pin, token_url, expect):
    # The same-origin pin reaches the http layer as DER, whether the definition gave PEM or base64.
    pin = {"PEM": pki.leaf.pem, "B64": base64.b64encode(pki.leaf.der).decode()}.get(pin, pin)
    if isinstance(expect, list) and expect[1] == "DER":
        expect = [expect[0], "der:" + pki.leaf.der.hex()]
    r = mpo.json(f"""
        ep = K.Endpoint()
        d = K.definition(url={url!r}, level={level!r}, pin={pin!r}, tokenEndpoint={token_url!r})
        res = K.error(Tokens(None).header(d, "k", ep))
        K.out([res, [[c["level"], c["pin"]] for c in ep.calls]])
    """)
    res, calls = r
    if expect == "token_endpoint":
        assert res["code"] == "token_endpoint"
        assert "tokenEndpoint" in res["message"] and "pw" not in res["message"]
        assert calls == []
    else:
        assert res == {"value": "Bearer AT1"}
        assert calls == [expect]


def test_ram_only_keeps_the_rotated_chain(mpo):
    # Without a state dir (nothing durable to write to) the chain lives in RAM for the run.
    r = mpo.json("""
        clock = K.Clock(1000000)
        t = Tokens(None, clock=clock)
        ep = K.Endpoint(rotate=True, ttl=60)
        d = K.definition()
        h = [K.run(t.header(d, "k", ep))]
        clock.t += 120
        h.append(K.run(t.header(d, "k", ep)))
        K.out([h, [c["body"] for c in ep.calls]])
    """)
    headers, bodies = r
    assert headers == ["Bearer AT1", "Bearer AT2"]
    assert [form(b)["refresh_token"] for b in bodies] == ["RT0", "RT1"]


@pytest.mark.parametrize("content", [b"", b"{not json", b"[1, 2]", b'{"fp": "someone else"}'])
def test_unreadable_or_foreign_state_is_ignored(mpo, tmp_path, content):
    r = mpo.json(f"""
        from kh.store import files
        from kh.oauth import tokens
        st = "{tmp_path}/st"
        d = K.definition()
        a = d["authentication"]
        fp = tokens._fingerprint(a["refreshToken"], a["tokenEndpoint"], a, d)
        files.makedirs(st)
        files.write_atomic(st + "/oauth-" + fp + ".json", {content!r})
        ep = K.Endpoint(rotate=True)
        h = K.run(Tokens(st).header(d, "k", ep))
        K.out([h, ep.calls[0]["body"], K.stored(st, d)["rt"]])
    """)
    assert r[0] == "Bearer AT1"
    assert form(r[1])["refresh_token"] == "RT0"
    assert r[2] == "RT1"


def test_chains_are_per_origin_and_prune_keeps_each_origins_chain(mpo, tmp_path):
    # Same refresh token, endpoint, client and scope: one chain per origin (scheme, host, port)
    # of the request URL; rules to the same origin (another path, an explicit default port)
    # share it; prune removes exactly the chain of the origin no rule uses any more.
    r = mpo.json(f"""
        import os
        st = "{tmp_path}/st"
        t = Tokens(st)
        ep = K.Endpoint(rotate=False)
        a = K.definition(url="https://api.example.test/hook")
        a2 = K.definition(url="https://API.example.test:443/other?x=1")
        b = K.definition(url="https://api.example.test:8443/hook")
        h = [K.run(t.header(x, "k", ep)) for x in (a, a2, b)]
        before = sorted(os.listdir(st))
        n = t.prune([a2, K.definition(url="no url"), {{"authentication": None}}])
        after = sorted(os.listdir(st))
        h.append(K.run(t.header(a, "k", ep)))
        K.out([h, len(ep.calls), len(before), n, len(after), after[0] in before])
    """)
    headers, calls, before, pruned, after, kept = r
    assert headers == ["Bearer AT1", "Bearer AT1", "Bearer AT2", "Bearer AT1"]
    assert calls == 2 and before == 2 and pruned == 1 and after == 1 and kept
