"""One definition, one behaviour (issue 11): `keyhook fire`, `keyhook rules push` and the device
accept and refuse the same rules, with the same message naming the rule and the field, because
all three run the device's own validator (firmware/kh/store, under the unix port)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from keyhook import KeyhookError
from keyhook import rules
from keyhook.cli.fire import run_fire
from keyhook.lab.receiver import Receiver
from keyhook.lab.tokenserver import TokenServer
from kh_engine_helpers import definition


def keyhook(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "keyhook", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


def webhook(target: str, **extra) -> dict:
    d = definition(target, "AllowHttp")
    d.update(extra)
    return {"functionName": "Open garage", "definition": d}


def push_refusal(wh: dict) -> str:
    with pytest.raises(rules.RuleError) as e:
        rules.normalise(copy.deepcopy(wh))
    return str(e.value)


def fire_once(wh: dict) -> dict:
    [r] = run_fire(copy.deepcopy(wh), public_roots=False)
    return r


BAD = {
    "userinfo": lambda url: {"url": url.replace("http://", "http://user:pw@")},
    "long body": lambda url: {"body": {"contentType": "text/plain", "content": "b" * 7601}},
    "timeout over 60 s": lambda url: {"timeout": 60001},
    "number header": lambda url: {"additionalHttpHeaders": {"X-Count": 5}},
    "number content": lambda url: {"body": {"contentType": "text/plain", "content": 5}},
    "fullchain pin": None,
    "megabyte body": lambda url: {"body": {"contentType": "text/plain", "content": "m" * (1 << 20)}},
}


@pytest.mark.parametrize("case", list(BAD))
def test_refused_by_fire_and_push_with_the_same_message(servers, pki, case):
    rx = servers.plain()
    if case == "fullchain pin":
        wh = {"functionName": "Open garage",
              "definition": definition(rx.url().replace("http://", "https://"), "TlsPinnedCertificate",
                                       pinnedCertificate=pki.leaf.chain_path.read_text() + pki.root.pem)}
    else:
        wh = webhook(rx.url(), **BAD[case](rx.url()))
    message = push_refusal(wh)
    r = fire_once(wh)
    assert r["error"] == "invalid_definition" and not r["sent"], r
    assert r["message"] == message  # the same words, from the same code
    assert '"Open garage"' in message and "definition." in message or "rule is" in message
    rx.settle()
    assert rx.connections == []
    if case == "fullchain pin":
        assert "3 PEM blocks" in message and "exactly one" in message


def test_json_object_content_goes_out_the_same_from_fire_and_from_a_pushed_rule(servers):
    rx = servers.plain()
    wh = webhook(rx.url(), body={"contentType": "application/json", "content": {"a": [1, 2], "b": "ü"}})
    pushed, _ = rules.normalise(copy.deepcopy(wh))  # what the device stores
    assert fire_once(wh)["status"] == 200 and fire_once(pushed)["status"] == 200
    rx.settle()
    direct, stored = (q.body for q in rx.requests)
    assert direct == stored and json.loads(direct) == {"a": [1, 2], "b": "ü"}


def test_forty_rules_are_refused_on_the_host_with_the_device_limit(servers):
    rx = servers.plain()
    many = [dict(webhook(rx.url()), functionName=f"rule {i}") for i in range(40)]
    with pytest.raises(rules.RuleError) as e:
        rules.normalise_all(many)
    assert "at most 32 rules" in str(e.value) and "40" in str(e.value) and "split" in e.value.hint
    assert len(rules.normalise_all(many[:32])[0]) == 32


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-le", "utf-32"])
def test_bom_and_utf16_files_are_read_by_push_and_fire(servers, tmp_path, encoding):
    rx = servers.plain()
    wh = webhook(rx.url(), body={"contentType": "text/plain", "content": "Küche \U0001F6AA"})
    f = tmp_path / "hook.json"
    f.write_text(json.dumps(wh, ensure_ascii=False), encoding=encoding)
    [rule], _ = rules.normalise_all(rules.load_rules(f))
    assert rule["definition"]["body"]["content"] == "Küche \U0001F6AA"
    p = keyhook("fire", str(f))
    assert p.returncode == 0 and "Traceback" not in p.stderr, p.stdout + p.stderr
    rx.settle()
    assert rx.requests[0].body == "Küche \U0001F6AA".encode()


def test_megabyte_body_is_a_clear_error_not_a_bug(servers, tmp_path):
    rx = servers.plain()
    f = tmp_path / "big.json"
    f.write_text(json.dumps(webhook(rx.url(), body={"contentType": "text/plain", "content": "m" * (1 << 20)})))
    p = keyhook("fire", str(f))
    assert p.returncode == 1, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert out["error"] == "invalid_definition" and "at most 7500" in out["message"]
    assert "bug" not in p.stdout + p.stderr and "MemoryError" not in p.stdout + p.stderr


def test_relative_state_dir_keeps_the_rotated_refresh_token(tmp_path):
    with TokenServer(rotate=True, expires_in=1) as ts:
        wh = {"functionName": "Open garage", "definition": {
            "method": "Post", "url": ts.resource_url, "securityLevel": "AllowHttp", "timeout": 5000,
            "authentication": {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "rt-initial",
                               "tokenEndpoint": ts.token_url}}}
        (tmp_path / "hook.json").write_text(json.dumps(wh))
        first = keyhook("fire", "hook.json", "--state", "st", cwd=tmp_path)
        assert json.loads(first.stdout)["status"] == 200, first.stdout + first.stderr
        import time
        time.sleep(1.2)  # the access token expired: the next fire redeems the rotated refresh token
        second = keyhook("fire", "hook.json", "--state", "st", cwd=tmp_path)
        assert json.loads(second.stdout)["status"] == 200, second.stdout + second.stderr
        used = [r.form["refresh_token"] for r in ts.token_requests]
    assert used == ts.issued_refresh_tokens[:2] and used[1] != "rt-initial"
    assert list((tmp_path / "st").glob("oauth-*.json"))


def test_push_warns_about_what_is_accepted_but_probably_wrong(servers):
    rx = servers.plain()
    wh = webhook(rx.url(), method="Get", timeout=30,
                 additionalHttpHeaders={"Host": "x", "Content-Length": "3", "X-Ok": "y"},
                 body={"contentType": "text/plain", "content": "on GET"})
    wh["expiresAt"] = "2021-05-01T00:00:00Z"
    _, warnings = rules.normalise(wh)
    text = "\n".join(str(w) for w in warnings)
    assert "30 ms" in text and "seconds" in text
    assert "expiresAt 2021-05-01T00:00:00Z is in the past" in text
    assert "header Host" in text and "header Content-Length" in text and "X-Ok" not in text
    assert "a body on GET" in text
    _, quiet = rules.normalise(webhook(rx.url()))
    assert [str(w) for w in quiet if "not recommended" not in str(w)] == []


# -- certificates the device cannot use are refused where they enter --------------------------

def test_unusable_root_refused_by_trust_and_pin(servers, pki, tmp_path, micropython):
    from kh_tlsshapes import Shapes

    shapes = Shapes(pki, tmp_path / "shapes")
    shapes.context("name_constrained")
    root_pem = shapes.root_pem("name_constrained")
    ca = tmp_path / "private-ca.pem"
    ca.write_text(root_pem)
    rx = servers.plain()
    # keyhook fire --trust
    with pytest.raises(KeyhookError) as e:
        run_fire(webhook(rx.url()), trust=[str(ca)], public_roots=False)
    assert "cannot use this certificate" in str(e.value) and "name constraints" in e.value.hint
    (tmp_path / "hook.json").write_text(json.dumps(webhook(rx.url())))
    p = keyhook("fire", "--trust", str(ca), "hook.json", cwd=tmp_path)
    assert p.returncode == 2 and "cannot use this certificate" in p.stderr
    # push: as a pin
    wh = {"functionName": "Open garage", "definition": definition("https://localhost:1/", "TlsPinnedCertificate",
                                                                   pinnedCertificate=root_pem)}
    msg = push_refusal(wh)
    assert "pinnedCertificate" in msg and "cannot be used by this device's TLS library" in msg
    assert fire_once(wh)["message"] == msg
    # the device's trust.add
    der = shapes.root_der("name_constrained")
    out = micropython.json(f"""
        import json, os
        from kh.http.trustedit import TrustEditor
        os.mkdir("t")
        ed = TrustEditor("t", ".")
        res = []
        for der in ({der!r}, {pki.root.der!r}):
            try:
                res.append(ed.add(der))
            except ValueError as e:
                res.append("refused: " + str(e))
        print(json.dumps(res))
    """)
    assert out[0].startswith("refused: the TLS library cannot use this certificate")
    assert len(out[1]) == 16


def test_push_and_pin_probe_with_the_devices_offer(pki, tmp_path):
    from kh_tlsshapes import Shapes

    shapes = Shapes(pki, tmp_path / "shapes")
    with Receiver(tls=shapes.context("x25519_only")) as bad, \
            Receiver(tls=shapes.context("chacha20_only")) as bad2, \
            Receiver(tls=shapes.context("name_constrained")) as fine:
        wh = [{"functionName": n, "definition": definition(rx.url(host="localhost"))}
              for n, rx in (("x25519", bad), ("chacha", bad2), ("ok", fine))]
        rules_, _ = rules.normalise_all(wh)
        warnings = rules.probe_warnings(rules_)
        p = keyhook("pin", bad.url(host="localhost"))
        assert p.returncode == 0
        assert "warning: a device cannot talk to this server (tls_unsupported)" in p.stderr
    names = {w.rule: w.message for w in warnings}
    assert set(names) == {"x25519", "chacha"}
    assert "tls_unsupported" in names["x25519"] and "TLS 1.2" in names["x25519"]
    assert all(rx.received == b"" for rx in (bad, bad2, fine))  # a handshake only


@pytest.mark.parametrize("case", ["forty", "userinfo", "utf16-bad-pin"])
def test_rules_push_refuses_before_it_connects(tmp_path, pki, case):
    """The refusal comes from the host's run of the device validator: the push never reaches the
    (absent) radio, and the message is the device's."""
    url = "https://ha.example.org/api/webhook/x"
    if case == "forty":
        doc = [{"functionName": f"r{i}", "definition": {"method": "Post", "url": url}} for i in range(40)]
        needle = "at most 32 rules"
    elif case == "userinfo":
        doc = {"functionName": "Open garage", "definition": {"method": "Post", "url": "https://u:p@ha.example.org/x"}}
        needle = 'rule "Open garage": definition.url: user:password@'
    else:
        doc = {"functionName": "Open garage", "definition": {
            "method": "Post", "url": url, "securityLevel": "TlsPinnedCertificate",
            "pinnedCertificate": pki.leaf.chain_path.read_text()}}
        needle = "definition.pinnedCertificate: it holds 2 PEM blocks"
    f = tmp_path / "rules.json"
    f.write_text(json.dumps(doc), encoding="utf-16" if case.startswith("utf16") else "utf-8")
    p = keyhook("--radio", str(tmp_path / "no-radio"), "rules", "push", "24:6F:00:00:00:01", str(f))
    assert p.returncode == 2 and needle in p.stderr and "hint:" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and "radio" not in p.stderr.lower()


def test_probe_sends_the_server_name_as_the_level_would(pki):
    """A verified level to an IP-address URL sends the address as SNI (mbedTLS), so a strict
    server refuses the device: the push-time probe says so; a leaf pin sends no name: no warning."""
    import ipaddress
    import ssl

    from keyhook.lab.receiver import server_context

    ctx = server_context(pki.leaf.chain_path, pki.leaf.key_path)

    def strict(obj, name, c):
        try:
            if name is not None:
                ipaddress.ip_address(name)
                return ssl.ALERT_DESCRIPTION_ILLEGAL_PARAMETER
        except ValueError:
            pass
        return None
    ctx.sni_callback = strict
    with Receiver(tls=ctx) as rx:
        wh = [{"functionName": "ca", "definition": definition(rx.url("/a"))},
              {"functionName": "leafpin", "definition": definition(rx.url("/b"), "TlsPinnedCertificate",
                                                                   pinnedCertificate=pki.leaf.pem)}]
        rules_, _ = rules.normalise_all(wh)
        warnings = rules.probe_warnings(rules_)
    assert [w.rule for w in warnings] == ["ca"]
    assert "IP address as the server name" in warnings[0].message
