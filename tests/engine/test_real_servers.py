"""Shapes of real servers from public bug reports (issue 11), each as a local server on
127.0.0.1 that behaves exactly as described, against the firmware engine under the unix port."""

from __future__ import annotations

import json

from keyhook.lab.receiver import Respond, server_context
from kh_engine_helpers import definition, job
from kh_scripted import Scripted


def _tls(pki, name="leaf"):
    item = getattr(pki, name)
    return server_context(item.chain_path, item.key_path)


def test_close_notify_in_the_same_write_as_the_end_of_a_close_delimited_body(batch, trust_dir, pki):
    """200, Connection: close, no length, 100-byte body; the body's end and close_notify in one
    TCP write, then the server waits without closing TCP (as `openssl s_server -www` does)."""
    def script(link):
        link.read_request()
        link.send(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: text/plain\r\n\r\n")
        link.send(b"x" * 60)
        link.send(b"y" * 40, close_notify=True)

    with Scripted(script, tls=_tls(pki)) as srv:
        [r] = batch.run([job("cn", definition(srv.url(host="localhost"), timeout=3000))], trust_dir=trust_dir)
    assert r["error"] is None and r["status"] == 200 and r["body_bytes"] == 100, r
    assert r["elapsed_ms"] < 2500  # not the 3 s time-out


def test_close_notify_together_with_head_and_body(batch, trust_dir, pki):
    def script(link):
        link.read_request()
        link.send(b"HTTP/1.0 200 OK\r\n\r\n" + b"z" * 100, close_notify=True)

    with Scripted(script, tls=_tls(pki)) as srv:
        [r] = batch.run([job("cn1", definition(srv.url(host="localhost"), timeout=3000))], trust_dir=trust_dir)
    assert r["error"] is None and r["status"] == 200 and r["body_bytes"] == 100, r


def test_more_than_64_response_headers_are_skipped(servers, batch):
    """70 Set-Cookie lines, then Content-Length: 2: a valid response."""
    head = b"HTTP/1.1 200 OK\r\n" + b"".join(b"Set-Cookie: c%d=%s; Path=/\r\n" % (i, b"v" * 40) for i in range(70))
    def script(link):
        link.read_request()
        link.send(head + b"Content-Length: 2\r\n\r\nok")

    with Scripted(script) as srv:
        [r] = batch.run([job("cookies", definition(srv.url(), "AllowHttp"))])
    assert (r["status"], r["error"], r["body_bytes"]) == (200, None, 2), r


def test_endless_response_head_is_refused(batch):
    def script(link):
        link.read_request()
        link.send(b"HTTP/1.1 200 OK\r\n" + b"X-Junk: " + b"j" * 200 + b"\r\n" * 1 + b"".join(
            b"X-%d: %s\r\n" % (i, b"j" * 200) for i in range(400)))

    with Scripted(script) as srv:
        [r] = batch.run([job("junk", definition(srv.url(), "AllowHttp"))])
    assert r["error"] == "bad_response" and "64 KiB" in r["message"], r


def test_non_ascii_url_is_percent_encoded_and_the_fragment_never_sent(servers, batch):
    rx = servers.plain()
    urls = {
        "raw": "/api/webhook/küche-licht?name=Jörg#frag",
        "encoded": "/api/webhook/k%C3%BCche-licht?name=J%C3%B6rg",
        "mixed": "/a%2Fb/ü?q=%zz&x=a|b\"c<d>{e}^`#x",
    }
    res = batch.run([job(k, definition(rx.url(v), "AllowHttp", method="Get", body=None)) for k, v in urls.items()])
    assert [r["status"] for r in res] == [200, 200, 200], res
    rx.settle()
    targets = [q.target for q in rx.requests]
    assert targets[0] == "/api/webhook/k%C3%BCche-licht?name=J%C3%B6rg"
    assert targets[1] == targets[0]  # already encoded: left alone
    assert targets[2] == "/a%2Fb/%C3%BC?q=%25zz&x=a%7Cb%22c%3Cd%3E%7Be%7D%5E%60"
    assert all(t.isascii() and "#" not in t for t in targets)
    assert all("frag" not in q.raw.decode("latin-1") for q in rx.requests)


def test_non_ascii_host_is_refused_with_the_punycode_hint(batch):
    [r] = batch.run([job("idn", definition("https://küche.example/hook"))])
    assert r["error"] == "invalid_definition" and "xn--" in r["message"], r


def test_token_answer_over_4_kib_is_kept_whole(batch, trust_dir, pki, tmp_path):
    """A 3.3 KB access token with group claims, 4.5 KB in all (Azure AD, Keycloak), once with
    Content-Length and once chunked (as behind a proxy)."""
    from keyhook.lab.tokenserver import TokenServer

    with TokenServer(certfile=pki.leaf.chain_path, keyfile=pki.leaf.key_path, access_token_bytes=3300,
                     id_token_bytes=1200) as ts:
        auth = {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "rt-initial",
                "tokenEndpoint": ts.token_url}
        d = definition(ts.resource_url, authentication=auth)
        [r] = batch.run([job("big-token", d)], trust_dir=trust_dir)
        assert (r["status"], r["error"]) == (200, None), r
        [grant] = ts.token_requests
        assert len(json.dumps(grant.answer)) > 4500
        [res] = ts.resource_requests
        assert res.authorization == "Bearer " + ts.issued_access_tokens[0] and len(ts.issued_access_tokens[0]) == 3300

    token = "at-" + "g" * 3300
    answer = json.dumps({"access_token": token, "token_type": "bearer", "expires_in": "3600",
                         "id_token": "eyJ" + "i" * 1200}).encode()
    seen = []

    def script(link):
        while True:
            req = link.read_request()
            seen.append(req)
            if req.startswith(b"POST /token"):
                chunks = b"".join(b"%x\r\n%s\r\n" % (len(answer[i:i + 700]), answer[i:i + 700])
                                  for i in range(0, len(answer), 700))
                link.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n"
                          + chunks + b"0\r\n\r\n")
            else:
                link.send(b"HTTP/1.1 204 No Content\r\n\r\n")

    with Scripted(script) as srv:
        auth = {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "rt-0",
                "tokenEndpoint": srv.url("/token")}
        [r] = batch.run([job("chunked-token", definition(srv.url(), "AllowHttp", authentication=auth))])
    assert (r["status"], r["error"]) == (204, None), r
    assert b"Authorization: Bearer " + token.encode() + b"\r\n" in seen[1]


def _fire_file(tmp_path, text: str):
    from keyhook.cli.fire import run_fire

    # the text as read by json (a lone surrogate stays one): the host's file reader refuses those
    # before the engine sees them, and here the engine's own reader is under test
    [r] = run_fire(json.loads(text), public_roots=False)
    return r


def test_surrogate_pairs_in_rule_json_go_out_as_utf8(servers, tmp_path):
    rx = servers.plain()
    d = definition(rx.url(), "AllowHttp", body={"contentType": "text/plain", "content": "door \U0001F6AA open"})
    text = json.dumps(d)  # ensure_ascii: the emoji as "\ud83d\udeaa", as clients send it
    assert "\\ud83d\\udeaa" in text
    r = _fire_file(tmp_path, text)
    assert r["status"] == 200, r
    rx.settle()
    assert rx.requests[0].body == "door \U0001F6AA open".encode() == b"door \xf0\x9f\x9a\xaa open"


def test_lone_surrogates_in_rule_json_are_refused(servers, tmp_path):
    rx = servers.plain()
    for lone in ("\\ud83d", "\\udeaa", "\\ud83dx", "\\udeaa\\ud83d"):
        text = json.dumps(definition(rx.url(), "AllowHttp", body={"contentType": "text/plain", "content": "@"}))
        r = _fire_file(tmp_path, text.replace("@", lone))
        assert r["error"] == "invalid_definition" and not r["sent"], (lone, r)
    rx.settle()
    assert rx.connections == []


def test_every_json_reader_on_the_device_joins_pairs(micropython):
    out = micropython.json(r'''
        import json
        from kh.store import jsontext
        from kh.session import frames
        from kh.oauth import grant
        res = {}
        res["escaped_backslash"] = jsontext.loads(b'{"a": "\\\\ud83d"}')["a"]
        res["key"] = list(jsontext.loads('{"\\ud83d\\udeaa": 1}'))[0].encode().hex()
        res["frame"] = frames.decode_payload(bytearray(b'\x00{"n": "\\ud83d\\udeaa"}'))["n"].encode().hex()
        try:
            frames.decode_payload(bytearray(b'\x00{"n": "\\ud83d"}'))
            res["frame_lone"] = "accepted"
        except Exception as e:
            res["frame_lone"] = e.__class__.__name__
        at, rt, ttl = grant.parse(200, b'{"access_token": "x", "token_type": "Bearer", "note": "\\ud83d\\udeaa"}')
        res["grant"] = at
        try:
            grant.parse(200, b'{"access_token": "x", "scope": "\\udeaa"}')
            res["grant_lone"] = "accepted"
        except Exception as e:
            res["grant_lone"] = e.__class__.__name__
        print(json.dumps(res))
    ''')
    assert out["escaped_backslash"] == "\\ud83d"  # an escaped backslash is text, not an escape
    assert out["key"] == "f09f9aaa" and out["frame"] == "f09f9aaa"
    assert out["frame_lone"] == "ChannelError"
    assert out["grant"] == "x" and out["grant_lone"] == "FireError"


# -- TLS: server names and roots --------------------------------------------------------------

def _strict_sni(ctx):
    """A server that answers an IP address as server name with a fatal alert (rustls, libtls)."""
    import ipaddress
    import ssl

    def cb(sslobj, name, c):
        if name is not None:
            try:
                ipaddress.ip_address(name)
                return ssl.ALERT_DESCRIPTION_ILLEGAL_PARAMETER
            except ValueError:
                pass
        return None
    return cb


def _ok(link):
    link.read_request()
    link.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")


def test_ip_literal_urls_send_no_server_name_where_the_library_allows(batch, trust_dir, pki):
    with Scripted(_ok, tls=_tls(pki)) as srv:
        srv.ctx.sni_callback = lambda o, name, c: [setattr(link, "sni", name) for link in srv.links
                                                    if link.tls is o] and None or _strict_sni(None)(o, name, c)
        url = srv.url()  # https://127.0.0.1:P/hook
        res = batch.run([job("self", definition(url, "TlsAllowSelfSigned")),
                         job("leafpin", definition(url, "TlsPinnedCertificate", pinnedCertificate=pki.leaf.pem)),
                         job("ca", definition(url)),
                         job("capin", definition(url, "TlsPinnedCertificate", pinnedCertificate=pki.root.pem))],
                        trust_dir=trust_dir)
    by = {r["case"]: r for r in res}
    assert (by["self"]["status"], by["leafpin"]["status"]) == (200, 200), res
    assert [link.sni for link in srv.links[:2]] == [None, None]
    # verified levels: mbedTLS checks the name only when it sends it, so the address goes out and
    # the strict server refuses; the error says so (no byte of the request left)
    for case in ("ca", "capin"):
        assert by[case]["error"] == "tls_unsupported" and not by[case]["sent"], by[case]["message"]
        assert "IP address" in by[case]["message"] and "host name" in by[case]["message"]


def test_ip_literal_still_checks_the_certificates_ip_entry(servers, batch, trust_dir, pki):
    good = servers.tls("leaf")          # SAN: localhost, 127.0.0.1
    other = servers.tls("wrong_host")   # SAN: other.invalid only
    res = batch.run([job("good", definition(good.url())), job("other", definition(other.url())),
                     job("other-pin", definition(other.url(), "TlsPinnedCertificate",
                                                 pinnedCertificate=pki.intermediate.pem))], trust_dir=trust_dir)
    assert [r["error"] for r in res] == [None, "tls_hostname", "tls_hostname"], res


def test_trailing_dot_host_names(servers, batch, trust_dir, pki):
    rx = servers.tls("leaf")
    with Scripted(_ok, tls=_tls(pki)) as srv:
        res = batch.run([job("dot", definition(f"https://localhost.:{rx.port}/hook")),
                         job("dot-sni", definition(f"https://localhost.:{srv.port}/hook"))],
                        trust_dir=trust_dir, resolve={"localhost.": "127.0.0.1"})
        assert {l.sni for l in srv.links} == {"localhost"}  # no dot in the server name
    assert [r["status"] for r in res] == [200, 200], res
    rx.settle()
    assert rx.requests[0].header("Host") == f"localhost.:{rx.port}"


def _cross_server(servers_, cs):
    from keyhook.lab.receiver import Receiver
    return servers_._start(Receiver(tls=server_context(cs.leaf.chain_path, cs.leaf.key_path)))


def test_cross_signed_root_is_found_anywhere_in_the_chain(servers, batch, tmp_path):
    """Store: R2. Server: leaf, intermediate (issued by R2), R2 cross-signed by R1 (not stored)."""
    from keyhook.lab.devpki import make_cross_signed
    from keyhook.rules.truststore import write_trust_store

    cs = make_cross_signed(tmp_path / "pki")
    store = tmp_path / "store"
    write_trust_store([cs.r2.der], store)
    rx = _cross_server(servers, cs)
    state = tmp_path / "state"
    state.mkdir()
    d = definition(rx.url(host="localhost"))
    res = batch.run([job("first", d), job("again", d)], trust_dir=store, state_dir=state)
    assert [r["status"] for r in res] == [200, 200], res
    assert res[1]["connect_attempts"] == 1  # the root that served is remembered


def test_cross_signed_with_the_old_root_expired_in_the_store(servers, batch, tmp_path):
    from keyhook.lab.devpki import make_cross_signed
    from keyhook.rules.truststore import write_trust_store

    cs = make_cross_signed(tmp_path / "pki", r1_expired=True)
    store = tmp_path / "store"
    write_trust_store([cs.r1.der, cs.r2.der], store)
    rx = _cross_server(servers, cs)
    [r] = batch.run([job("x", definition(rx.url(host="localhost")))], trust_dir=store)
    assert (r["status"], r["error"]) == (200, None), r
    # and a store with only the expired old root: refused as expired, as before
    store1 = tmp_path / "store1"
    write_trust_store([cs.r1.der], store1)
    [r] = batch.run([job("old-only", definition(rx.url(host="localhost")))], trust_dir=store1)
    assert r["error"] == "tls_expired" and not r["sent"], r


# -- TLS: servers the device's TLS library cannot talk to --------------------------------------

UNSUPPORTED = ("tls13_only", "x25519_only", "chacha20_only", "dhe_only")


def test_servers_the_tls_library_cannot_talk_to_have_their_own_error(batch, pki, tmp_path):
    from keyhook.lab.receiver import Receiver
    from keyhook.rules.truststore import write_trust_store
    from kh_tlsshapes import Shapes

    shapes = Shapes(pki, tmp_path / "shapes")
    jobs, started = [], []
    try:
        for name in Shapes.NAMES:
            rx = Receiver(tls=shapes.context(name)).start()
            started.append(rx)
            url = rx.url(host="localhost")
            jobs += [job(f"{name}/ca", definition(url)),
                     job(f"{name}/pin", definition(url, "TlsPinnedCertificate", pinnedCertificate=shapes.root_pem(name))),
                     job(f"{name}/self", definition(url, "TlsAllowSelfSigned"))]
        store = tmp_path / "store"
        write_trust_store([pki.root.der] + [shapes.root_der(n) for n in ("rsa_pss_chain", "name_constrained")],
                          store)
        res = {r["case"]: r for r in batch.run(jobs, trust_dir=store)}
    finally:
        for rx in started:
            rx.stop()
    for name in UNSUPPORTED:
        for lv in ("ca", "pin", "self"):
            r = res[f"{name}/{lv}"]
            assert r["error"] == "tls_unsupported" and not r["sent"], (name, lv, r)
            assert "TLS 1.2" in r["message"] and "P-256" in r["message"] and "is it a TLS server" not in r["message"]
    for lv in ("ca", "pin", "self"):
        r = res[f"rsa_pss_chain/{lv}"]
        assert r["error"] == "tls_unusable_certificate" and "RSA-PSS" in r["message"], (lv, r)
    # a private CA with critical name constraints: the device cannot load the root
    for lv in ("ca", "pin"):
        r = res[f"name_constrained/{lv}"]
        assert r["error"] == "tls_unusable_certificate" and "name constraints" in r["message"], (lv, r)
    assert res["name_constrained/self"]["status"] == 200  # encryption only: no root needed
    assert all(rx.received == b"" for rx in started[:-1])  # refused before a byte was written
