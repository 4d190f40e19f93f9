"""`keyhook fire FILE`: the firmware engine behind a command line an integrator can use."""

from __future__ import annotations

import json
import subprocess
import sys

from kh_engine_helpers import definition


def keyhook(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keyhook", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def test_fire_with_trust_prints_one_json_object(servers, pki, tmp_path):
    rx = servers.tls("leaf")
    f = tmp_path / "hook.json"
    f.write_text(json.dumps({"functionName": "Open garage",
                             "definition": definition(rx.url("/cli", host="localhost"))}))
    p = keyhook("fire", str(f), "--trust", str(pki.root.cert_path))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["status"] == 200 and out["sent"] is True and out["error"] is None
    assert isinstance(out["elapsed_ms"], int)
    rx.settle()
    assert rx.requests[0].target == "/cli"


def test_refusal_exits_1_and_sends_nothing(servers, tmp_path):
    rx = servers.tls("leaf")
    f = tmp_path / "hook.json"
    f.write_text(json.dumps(definition(rx.url(host="localhost"))))  # the test root is not trusted
    p = keyhook("fire", str(f))
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert out["error"] == "tls_untrusted" and out["sent"] is False and out["status"] is None
    rx.settle()
    assert rx.received == b""


def test_http_error_status_is_still_a_response(servers, tmp_path):
    from keyhook.lab.receiver import Respond

    rx = servers.plain(Respond(status=503, reason="Busy"))
    f = tmp_path / "hook.json"
    f.write_text(json.dumps(definition(rx.url(), "AllowHttp")))
    p = keyhook("fire", str(f))
    assert p.returncode == 0 and json.loads(p.stdout)["status"] == 503


def test_resolve_option(servers, tmp_path):
    rx = servers.plain()
    f = tmp_path / "hook.json"
    f.write_text(json.dumps(definition(f"http://printer.lan:{rx.port}/x", "AllowHttp")))
    p = keyhook("fire", str(f), "--resolve", "printer.lan:127.0.0.1")
    assert p.returncode == 0, p.stdout + p.stderr
    rx.settle()
    assert rx.requests[0].header("Host") == f"printer.lan:{rx.port}"


def test_bad_input_reads_like_a_good_cli(tmp_path):
    p = keyhook("fire", str(tmp_path / "missing.json"))
    assert p.returncode == 2 and "cannot read" in p.stderr and "hint:" in p.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{\"method\": ")
    p = keyhook("fire", str(bad))
    assert p.returncode == 2 and "not valid JSON" in p.stderr and "line 1" in p.stderr
    arr = tmp_path / "arr.json"
    arr.write_text("[]")
    p = keyhook("fire", str(arr))
    assert p.returncode == 2 and "not an object" in p.stderr
    good = tmp_path / "g.json"
    good.write_text(json.dumps(definition("https://127.0.0.1:1/")))
    p = keyhook("fire", str(good), "--trust", str(good))
    assert p.returncode == 2 and "no readable certificate" in p.stderr
    p = keyhook("fire", str(good), "--resolve", "nocolon")
    assert p.returncode == 2 and "NAME:ADDRESS" in p.stderr


def test_invalid_definition_is_a_result_not_a_crash(tmp_path):
    f = tmp_path / "hook.json"
    f.write_text(json.dumps(definition("https://127.0.0.1:1/", "TlsSomething")))
    p = keyhook("fire", str(f))
    assert p.returncode == 1
    out = json.loads(p.stdout)
    assert out["error"] == "invalid_definition" and "securityLevel" in out["message"]


def test_refresh_token_without_state_warns_and_state_dir_is_private(tmp_path):
    import json as _json
    import stat
    import subprocess as _sp
    import sys as _sys

    f = tmp_path / "hook.json"
    f.write_text(_json.dumps({"method": "Get", "url": "http://127.0.0.1:9/x", "securityLevel": "AllowHttp",
                              "authentication": {"apiAuthenticationType": "OAuth2IssuedRefreshToken",
                                                 "refreshToken": "r-1", "tokenEndpoint": "http://127.0.0.1:9/t"}}))
    p = _sp.run([_sys.executable, "-m", "keyhook", "fire", str(f)], capture_output=True, text=True, timeout=60)
    assert "without --state DIR a rotated refresh token is lost" in p.stderr
    assert "r-1" not in p.stdout + p.stderr
    state = tmp_path / "state"
    p = _sp.run([_sys.executable, "-m", "keyhook", "fire", str(f), "--state", str(state)], capture_output=True,
                text=True, timeout=60)
    assert "without --state" not in p.stderr
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
