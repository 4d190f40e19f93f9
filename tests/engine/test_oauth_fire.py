"""The engine with the OAuth layer (kh.oauth.tokens) against the local token server: the token
endpoint on the request's own origin shares the verified, kept-alive connection; a 401 costs
one refresh and one retry; `keyhook fire --state` keeps the token between runs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from kh_engine_helpers import definition, job, refresh_definition

tokenserver = pytest.importorskip("keyhook.lab.tokenserver")
pytest.importorskip("keyhook.paths")


def _needs_oauth():
    from keyhook.paths import FIRMWARE

    if not (FIRMWARE / "kh" / "oauth" / "tokens.py").exists():
        pytest.skip("kh.oauth.tokens is not there yet")





def test_refresh_then_reuse_then_401_retry(ts, pki, batch, tmp_path):
    d = refresh_definition(ts, pki)
    state = tmp_path / "state"
    state.mkdir()
    res = batch.run([job("first", d, env="shared"), job("cached", d, env="shared")], state_dir=state)
    assert [r["status"] for r in res] == [200, 200], res
    assert len(ts.token_requests) == 1  # the second fire used the cached access token
    assert res[1]["reused"] is True
    ts.revoke_access_tokens()
    [r] = batch.run([job("after revoke", d)], state_dir=state)
    assert r["status"] == 200 and r["retried_401"] is True
    assert len(ts.token_requests) == 2
    blob = json.dumps(res) + json.dumps(r)
    for secret in ts.issued_refresh_tokens + ts.issued_access_tokens:
        assert secret not in blob


def test_token_endpoint_failure_is_reported(pki, batch):
    _needs_oauth()
    with tokenserver.TokenServer(refresh_token="rt-0", fail="invalid_grant",
                                 certfile=pki.leaf.chain_path, keyfile=pki.leaf.key_path) as ts:
        [r] = batch.run([job("fail", refresh_definition(ts, pki))])
        assert r["error"] == "token_endpoint" and r["status"] is None
        assert ts.resource_requests == []  # the webhook itself was never sent


def test_cli_state_keeps_the_token_between_runs(ts, pki, tmp_path):
    f = tmp_path / "hook.json"
    f.write_text(json.dumps(refresh_definition(ts, pki)))
    state = tmp_path / "state"
    for _ in range(2):
        p = subprocess.run([sys.executable, "-m", "keyhook", "fire", str(f), "--state", str(state)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stdout + p.stderr
    assert len(ts.token_requests) == 1
    assert any(x.name.startswith("oauth-") for x in state.iterdir())
