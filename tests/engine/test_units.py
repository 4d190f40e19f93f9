"""Firmware building blocks under MicroPython: URL parsing, the request head, DER walking, pin
parsing, address classes, and the trust-store layout shared with the host."""

from __future__ import annotations

import base64
import json

from keyhook.rules.truststore import name_hash, write_trust_store


def test_url_and_request_head(micropython):
    out = micropython.json("""
        import json
        from kh.http import url, client
        cases = ["https://Example.ORG:8123/api/x?y=1#frag", "http://[::1]:8080?q=1", "http://[fd00::5]/",
                 "https://192.168.1.5", "http://h:80/p", "https://h:443/p", "http://h:8443"]
        res = [list(url.parse(u)) for u in cases]
        head = client.build("POST", "/p?q", "[fd00::5]:8080", [("X-A", "1")], b"{}", "application/json")
        print(json.dumps({"res": res, "head": head.decode()}))
    """)
    assert out["res"] == [
        ["https", "example.org", 8123, "/api/x?y=1", "example.org:8123"],
        ["http", "::1", 8080, "/?q=1", "[::1]:8080"],
        ["http", "fd00::5", 80, "/", "[fd00::5]"],
        ["https", "192.168.1.5", 443, "/", "192.168.1.5"],
        ["http", "h", 80, "/p", "h"],
        ["https", "h", 443, "/p", "h"],
        ["http", "h", 8443, "/", "h:8443"],
    ]
    assert out["head"] == ("POST /p?q HTTP/1.1\r\nHost: [fd00::5]:8080\r\nUser-Agent: keyhook/0.1\r\nX-A: 1\r\n"
                           "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")


def test_der_names_ca_flag_and_pins(micropython, pki, tmp_path):
    (tmp_path / "pins.json").write_text(json.dumps({
        "pem": pki.leaf.pem, "b64": base64.b64encode(pki.leaf.der).decode(),
        "escaped": pki.leaf.pem.replace("\n", "\\n")}))
    for item in (pki.leaf, pki.intermediate, pki.root, pki.self_signed):
        (tmp_path / f"{item.name}.der").write_bytes(item.der)
    out = micropython.json("""
        import json
        from kh.http import der
        from kh.http.trust import name_hash
        pins = json.load(open("pins.json"))
        r = {}
        for n in ("leaf", "intermediate", "root", "self_signed"):
            c = open(n + ".der", "rb").read()
            i, s = der.names(c)
            r[n] = [name_hash(i), name_hash(s), der.is_ca(c)]
        leaf = open("leaf.der", "rb").read()
        r["pins"] = [der.pin_der(pins[k]) == leaf for k in ("pem", "b64", "escaped")]
        print(json.dumps(r))
    """, cwd=tmp_path)
    for item, ca in ((pki.leaf, False), (pki.intermediate, True), (pki.root, True), (pki.self_signed, False)):
        issuer, subject, is_ca = out[item.name]
        assert issuer == name_hash(item.cert.issuer.public_bytes())
        assert subject == name_hash(item.cert.subject.public_bytes())
        assert is_ca is ca
    assert out["pins"] == [True, True, True]


def test_address_classes(micropython):
    out = micropython.json("""
        import json, socket
        from kh.http import resolve
        def local(t):
            f = socket.AF_INET6 if ":" in t else socket.AF_INET
            return resolve.is_local(f, resolve.inet_pton(f, t))
        names = ["127.0.0.1", "127.8.9.1", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.0.1",
                 "169.254.1.1", "::1", "fd12::1", "fc00::1", "fe80::1", "::ffff:192.168.1.1",
                 "8.8.8.8", "172.32.0.1", "100.64.0.1", "203.0.113.7", "2001:db8::1", "::ffff:8.8.8.8", "0.0.0.0"]
        print(json.dumps({n: local(n) for n in names}))
    """)
    local = {k for k, v in out.items() if v}
    assert len(out) == 19
    assert local == {"127.0.0.1", "127.8.9.1", "10.0.0.1", "172.16.0.1", "172.31.255.255", "192.168.0.1",
                     "169.254.1.1", "::1", "fd12::1", "fc00::1", "fe80::1", "::ffff:192.168.1.1"}


def test_trust_store_layout(pki, tmp_path):
    info = write_trust_store([pki.root.der, pki.unrelated_root.der, pki.root.der, pki.intermediate.der], tmp_path)
    assert info["count"] == 3
    h = name_hash(pki.root.cert.subject.public_bytes())
    assert (tmp_path / f"{h}.der").read_bytes() == pki.root.der
    assert sorted(p.name for p in tmp_path.glob("*.der")) == sorted(f["file"] for f in info["files"])
    assert "keyhook test root" in (tmp_path / "index.txt").read_text()


def test_ca_check_loads_only_the_root_it_needs(servers, batch, pki, tmp_path):
    """A store of every public root plus the test root: the first contact learns the issuer in a
    refused handshake (no request byte), then connects with just that root; later cold fires to
    the origin need one handshake."""
    from keyhook.rules.truststore import default_roots

    store = tmp_path / "trust"
    write_trust_store(default_roots() + [pki.root.der], store)
    state = tmp_path / "state"
    state.mkdir()
    rx = servers.tls("leaf")
    d = {"method": "Get", "url": rx.url(host="localhost"), "securityLevel": "TlsWithCACheck"}
    from kh_engine_helpers import job

    res = batch.run([job("first", d), job("second", d)], trust_dir=store, state_dir=state)
    assert [r["status"] for r in res] == [200, 200]
    rx.settle()
    assert [c.handshake_ok for c in rx.connections] == [False, True, True]
    assert rx.connections[0].data == b""
    hint = (state / "ca-hints").read_text()
    assert name_hash(pki.root.cert.subject.public_bytes()) in hint
    # a new process reads the hint: one handshake from the start
    [r] = batch.run([job("third", d)], trust_dir=store, state_dir=state)
    rx.settle()
    assert r["status"] == 200 and [c.handshake_ok for c in rx.connections][3:] == [True]


def test_other_tasks_run_while_a_fire_waits(servers, micropython):
    from keyhook.lab.receiver import Respond

    rx = servers.tls("leaf", Respond(delay_s=0.5))
    out = micropython.json(f"""
        import asyncio, json
        from kh.engine.fire import Env, fire
        ticks = [0]
        async def ticker():
            while True:
                await asyncio.sleep_ms(10)
                ticks[0] += 1
        async def main():
            t = asyncio.create_task(ticker())
            r = await fire({{"method": "Get", "url": "{rx.url(host='localhost')}",
                             "securityLevel": "TlsAllowSelfSigned"}}, Env())
            t.cancel()
            return r
        r = asyncio.run(main())
        print(json.dumps({{"status": r["status"], "ticks": ticks[0]}}))
    """)
    assert out["status"] == 200
    assert out["ticks"] >= 10  # the server took 0.5 s; a blocking client would leave ~0
