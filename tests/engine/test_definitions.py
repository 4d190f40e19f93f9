"""Bad definitions are refused with a clear `invalid_definition` before any connection, and the
accepted shapes (a full webhook object, quirks in the wild) fire."""

from __future__ import annotations

import copy

from kh_engine_helpers import definition, job

BAD = {
    "no method": {"method": None},
    "unknown method": {"method": "Trace"},
    "no url": {"url": None},
    "url not a string": {"url": 42},
    "url without scheme": {"url": "127.0.0.1/hook"},
    "ftp url": {"url": "ftp://127.0.0.1/"},
    "url with spaces": {"url": "http://127.0.0.1/a b"},
    "url bad port": {"url": "http://127.0.0.1:99999/"},
    "url empty host": {"url": "http:///path"},
    "url userinfo": {"url": "http://user:pw@127.0.0.1/"},
    "url bad ipv6": {"url": "http://[::1/"},
    "no level": {"securityLevel": None},
    "unknown level": {"securityLevel": "TlsWhatever"},
    "http url with a TLS level": {"securityLevel": "TlsWithCACheck"},
    "pin missing": {"securityLevel": "TlsPinnedCertificate"},
    "pin garbage": {"securityLevel": "TlsPinnedCertificate", "pinnedCertificate": "not a certificate"},
    "pin truncated PEM": {"securityLevel": "TlsPinnedCertificate",
                          "pinnedCertificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"},
    "timeout negative": {"timeout": -5},
    "timeout string": {"timeout": "3000"},
    "header name with colon": {"additionalHttpHeaders": {"X-A:b": "v"}},
    "header value with newline": {"additionalHttpHeaders": {"X-A": "v\r\nX-Injected: 1"}},
    "headers not an object": {"additionalHttpHeaders": ["X-A", "v"]},
    "body not an object": {"body": "text"},
    "body content a number": {"body": {"contentType": "text/plain", "content": 5}},
    "unknown auth type": {"authentication": {"apiAuthenticationType": "Basic"}},
    "access token missing": {"authentication": {"apiAuthenticationType": "OAuth2IssuedAccessToken"}},
    "access token with newline": {"authentication": {"apiAuthenticationType": "OAuth2IssuedAccessToken",
                                                     "accessToken": "a\nb"}},
    "refresh without endpoint": {"authentication": {"apiAuthenticationType": "OAuth2IssuedRefreshToken",
                                                    "refreshToken": "r"}},
    "allowInsecureRemote not bool": {"allowInsecureRemote": "yes"},
}


def test_bad_definitions_are_refused_before_connecting(servers, batch):
    rx = servers.plain()
    base = definition(rx.url("/never"), "AllowHttp")
    jobs = []
    for name, change in BAD.items():
        d = copy.deepcopy(base)
        d.update(change)
        jobs.append(job(name, d))
    jobs.append(job("not an object", ["Post"]))
    res = batch.run(jobs)
    rx.settle()
    problems = [f"{r['case']}: {r['error']} {r['message']}" for r in res
                if r["error"] != "invalid_definition" or r["sent"] or r["connect_attempts"] or not r["message"]]
    assert not problems, "\n".join(problems)
    assert rx.connections == []
    # messages name the field, and never echo a value
    msgs = {r["case"]: r["message"] for r in res}
    assert "securityLevel" in msgs["unknown level"] and "url" in msgs["ftp url"]
    assert "pinnedCertificate" in msgs["pin garbage"]
    assert "Injected" not in msgs["header value with newline"]


def test_full_webhook_object_and_quirks(servers, batch):
    rx = servers.plain()
    full = {"integrationName": "Home Assistant", "functionName": "Open garage", "functionWebhookId": "a3f1",
            "expiresAt": None, "modificationState": None,
            "definition": definition(rx.url("/full"), "AllowHttp", method="POST", timeout=None,
                                     additionalHttpHeaders={"X-N": "5"}, body=None)}
    res = batch.run([job("full", full)])
    rx.settle()
    assert res[0]["status"] == 200
    [req] = rx.requests
    assert req.target == "/full" and req.header("X-N") == "5" and req.header("Content-Length") == "0"
