"""HTTP/1.1 behaviour of the engine against recording servers: what is sent on the wire, body
framing, limits, time-outs, resets, keep-alive reuse and recovery, redirects."""

from __future__ import annotations

import json

import pytest

from keyhook.lab.receiver import Respond
from kh_engine_helpers import definition, job


def _http(rx, path="/hook", **kw):
    return definition(rx.url(path), "AllowHttp", **kw)


def test_request_on_the_wire(servers, batch, pki):
    rx = servers.tls("leaf")
    d = definition(rx.url("/api/webhook/abc?x=1&y=%20z#frag", host="localhost"), "TlsPinnedCertificate",
                   pinnedCertificate=pki.intermediate.pem, method="post",
                   additionalHttpHeaders={"X-Api-Key": "k-123", "Host": "evil.example", "Content-Length": "999"},
                   body={"contentType": "text/plain; charset=utf-8", "content": "héllo"})
    [r] = batch.run([job("wire", d)])
    rx.settle()
    assert r["status"] == 200 and r["error"] is None and r["sent"]
    [req] = rx.requests
    assert req.method == "POST" and req.target == "/api/webhook/abc?x=1&y=%20z" and req.version == "HTTP/1.1"
    assert req.header("Host") == f"localhost:{rx.port}"
    assert [v for k, v in req.headers if k.lower() == "host"] == [f"localhost:{rx.port}"]
    assert req.header("X-Api-Key") == "k-123"
    assert req.header("Content-Type") == "text/plain; charset=utf-8"
    assert req.header("Content-Length") == str(len("héllo".encode()))
    assert req.body == "héllo".encode()


def test_json_object_body_and_methods(servers, batch):
    rx = servers.plain()
    jobs = [job("obj", _http(rx, "/obj", body={"contentType": "application/json", "content": {"a": [1, 2]}}))]
    for m in ("Get", "PUT", "delete", "Patch", "Head"):
        jobs.append(job(m, _http(rx, "/" + m, method=m, body=None)))
    res = batch.run(jobs)
    rx.settle()
    assert all(r["status"] == 200 for r in res), res
    reqs = rx.requests
    assert json.loads(reqs[0].body) == {"a": [1, 2]}
    assert [r.method for r in reqs[1:]] == ["GET", "PUT", "DELETE", "PATCH", "HEAD"]
    assert reqs[1].header("Content-Length") is None and reqs[2].header("Content-Length") == "0"


def test_access_token_is_sent_as_bearer_and_never_reported(servers, batch):
    rx = servers.plain()
    d = _http(rx, authentication={"apiAuthenticationType": "OAuth2IssuedAccessToken",
                                  "accessToken": "tok-SECRET-1", "refreshToken": "stray-SECRET-2"},
              additionalHttpHeaders={"Authorization": "Basic SECRET-3", "X-Key": "SECRET-4"})
    [r] = batch.run([job("tok", d)])
    rx.settle()
    [req] = rx.requests
    assert [v for k, v in req.headers if k.lower() == "authorization"] == ["Bearer tok-SECRET-1"]
    assert b"stray-SECRET-2" not in rx.received
    assert "SECRET" not in json.dumps(r)


@pytest.mark.parametrize("framing", ["length", "chunked", "close"])
def test_body_framings(servers, batch, framing):
    body = bytes(range(256)) * 40  # 10 KiB, counted and dropped through the connection's 1 KiB buffer
    rx = servers.plain(Respond(body=body, framing=framing, chunk_size=700))
    res = batch.run([job(n, _http(rx), env="shared") for n in "abc"])
    assert [r["status"] for r in res] == [200, 200, 200]
    assert all(r["body_bytes"] == len(body) for r in res)
    # chunked and Content-Length bodies keep the connection; a close-delimited one cannot
    rx.settle()
    assert len(rx.connections) == (1 if framing != "close" else 3)
    assert [r["reused"] for r in res[1:]] == ([True, True] if framing != "close" else [False, False])


def test_oversized_body_is_read_and_discarded(servers, batch):
    body = b"x" * (1 << 20)
    rx = servers.tls("leaf", Respond(body=body, chunk_size=65536))
    res = batch.run([job("big", definition(rx.url(host="localhost"), "TlsAllowSelfSigned")),
                     job("next", definition(rx.url(host="localhost"), "TlsAllowSelfSigned"), env="shared")],
                    )
    assert res[0]["status"] == 200 and res[0]["body_bytes"] == len(body)


def test_status_codes_are_results_and_redirects_are_not_followed(servers, batch):
    other = servers.plain()
    rx = servers.plain(lambda req, conn, n: Respond(status=int(req.target[1:]), reason="X",
                                                    headers={"Location": other.url("/elsewhere")}))
    res = batch.run([job(str(s), _http(rx, f"/{s}", method="Get", body=None)) for s in (204, 301, 302, 307, 404, 500)])
    assert [r["status"] for r in res] == [204, 301, 302, 307, 404, 500]
    assert all(r["error"] is None for r in res)
    assert "not followed" in res[1]["message"]
    other.settle()
    assert other.connections == []


def test_slow_first_byte_times_out(servers, batch):
    rx = servers.plain(Respond(delay_s=1.5))
    [r] = batch.run([job("slow", _http(rx, timeout=300))])
    assert r["error"] == "timeout" and r["sent"] and r["status"] is None


def test_slow_body_times_out(servers, batch):
    rx = servers.plain(Respond(body=b"y" * 4000, chunk_size=100, chunk_delay_s=0.05))
    [r] = batch.run([job("slowbody", _http(rx, timeout=400))])
    assert r["error"] == "timeout" and r["status"] is None


def test_unresponsive_tls_server_times_out_in_the_handshake(batch):
    import socket

    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)  # accepts into the backlog, never speaks TLS
    try:
        url = f"https://localhost:{ls.getsockname()[1]}/"
        [r] = batch.run([job("mute", definition(url, "TlsAllowSelfSigned", timeout=300))])
    finally:
        ls.close()
    assert r["error"] == "timeout" and not r["sent"]


def test_reset_mid_body(servers, batch):
    rx = servers.plain(Respond(body=b"z" * 20000, action="reset_mid_body"))
    [r] = batch.run([job("rst", _http(rx))])
    assert r["error"] == "reset" and r["status"] is None and r["sent"]


def test_connection_refused(batch):
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    [r] = batch.run([job("refused", definition(f"http://127.0.0.1:{port}/", "AllowHttp"))])
    assert r["error"] == "connect" and not r["sent"]


def test_keep_alive_reuse_over_tls(servers, batch, trust_dir):
    rx = servers.tls("leaf")
    d = definition(rx.url(host="localhost"))
    res = batch.run([job("1", d, env="shared"), job("2", d, env="shared"), job("3", d, env="shared")],
                    trust_dir=trust_dir)
    rx.settle()
    assert [r["status"] for r in res] == [200, 200, 200]
    assert [r["reused"] for r in res] == [False, True, True]
    handshakes = [c for c in rx.connections if c.handshake_ok]
    assert len(handshakes) == 1 and len(handshakes[0].requests) == 3


def test_pool_is_per_level(servers, batch, trust_dir, pki):
    """A connection accepted under a weaker level is never reused for a stronger one."""
    rx = servers.tls("leaf")
    url = rx.url(host="localhost")
    res = batch.run([job("weak", definition(url, "TlsAllowSelfSigned"), env="shared"),
                     job("strong", definition(url, "TlsWithCACheck"), env="shared")], trust_dir=trust_dir)
    assert [r["reused"] for r in res] == [False, False]


def test_idle_close_is_replaced_without_failing(servers, batch, trust_dir):
    rx = servers.tls("leaf", Respond(close_after_s=0.05))
    d = definition(rx.url(host="localhost"))
    res = batch.run([job("1", d, env="shared"), job("2", d, env="shared", pause_ms=300)], trust_dir=trust_dir)
    assert [r["status"] for r in res] == [200, 200] and res[1]["error"] is None
    assert res[1]["reused"] is False
    rx.settle()
    assert sum(len(c.requests) for c in rx.connections) == 2  # sent once each


def test_connection_dropped_on_reuse_is_resent_once(servers, batch):
    """The server takes the request on the kept connection and closes without a byte of answer:
    the engine sends it again on a new connection (allowed: no byte of the response arrived)."""
    def plan(req, conn, n):
        return Respond(action="drop") if conn.index == 0 and n == 1 else Respond()

    rx = servers.plain(plan)
    d = _http(rx)
    res = batch.run([job("1", d, env="shared"), job("2", d, env="shared")])
    assert [r["status"] for r in res] == [200, 200]
    assert res[1].get("resent") is True and res[1]["reused"] is False
    rx.settle()
    assert [len(c.requests) for c in rx.connections] == [2, 1]


def test_partial_response_on_reuse_is_not_resent(servers, batch):
    def plan(req, conn, n):
        return Respond(action="reset_mid_body", body=b"q" * 5000) if n == 1 else Respond()

    rx = servers.plain(plan)
    d = _http(rx)
    res = batch.run([job("1", d, env="shared"), job("2", d, env="shared")])
    assert res[1]["error"] == "reset"
    rx.settle()
    assert sum(len(c.requests) for c in rx.connections) == 2
