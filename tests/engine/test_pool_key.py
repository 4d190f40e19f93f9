"""The keep-alive pool key holds everything that decides whether a connection may carry a
request (issue 9, Low 6): a connection opened by a rule that opted out of the insecure-remote
refusal is never reused by a rule that did not."""

from __future__ import annotations

from kh_engine_helpers import definition, job


def test_an_opted_out_connection_is_not_reused_by_a_rule_that_did_not_opt_out(servers, batch):
    rx = servers.plain()
    url = rx.url()
    res = batch.run([job("opted-out", definition(url, "AllowHttp", allowInsecureRemote=True), env="shared"),
                     job("strict", definition(url, "AllowHttp"), env="shared"),
                     job("strict again", definition(url, "AllowHttp"), env="shared")])
    assert [r["status"] for r in res] == [200, 200, 200]
    # the strict rule opened (and judged) its own connection; its twin then reused that one
    assert [r["reused"] for r in res] == [False, False, True]
