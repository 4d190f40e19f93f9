"""The rules store on the real MicroPython unix port over a real littlefs (RAM or image file)."""

from __future__ import annotations

import copy
import json

import pytest

from storehelp import PRELUDE, SECRETS, make_rule, write_json


def _defaulted(rule: dict) -> dict:
    r = copy.deepcopy(rule)
    r.setdefault("events", ["trigger"])
    return r


def test_put_get_roundtrip_and_replace_in_place(micropython, tmp_path, cert_pem):
    rules = [make_rule(1), make_rule(2, pem=cert_pem, events=["button:door"]), make_rule(3)]
    write_json(tmp_path, "in.json", rules)
    write_json(tmp_path, "new2.json", make_rule(2, tag="v2"))
    out = micropython.json(PRELUDE + """
src = json.load(open("in.json"))
stored = rules.put(src)
first = [rules.get(n) for n in rules.names()]
rules.put(json.load(open("new2.json")))
print(json.dumps({"stored": stored, "first": first, "names": rules.names(),
                  "r2": rules.get("rule 2"), "count": rules.count(), "missing": rules.get("nope")}))
""")
    assert out["stored"] == ["rule 1", "rule 2", "rule 3"]
    assert out["first"] == [_defaulted(r) for r in rules]
    assert out["names"] == ["rule 1", "rule 2", "rule 3"]  # replaced in place
    assert out["r2"] == _defaulted(make_rule(2, tag="v2"))
    assert out["count"] == 3
    assert out["missing"] is None


def _bad_cases(pem: str) -> list[tuple[str, dict, str]]:
    """(case, rule, field that the error must name)."""
    cases = []

    def case(name, field, mutate):
        r = make_rule(7, pem=pem)
        mutate(r)
        cases.append((name, r, field))

    case("not an object", "rule", lambda r: r.clear() or r.update({"x": 1}) or None)
    cases[-1] = ("not an object", ["x"], "rule")
    case("no name", "functionName", lambda r: r.pop("functionName"))
    case("long name", "functionName", lambda r: r.update(functionName="x" * 65))
    case("no definition", "definition", lambda r: r.pop("definition"))
    case("bad method", "definition.method", lambda r: r["definition"].update(method="FETCH"))
    case("no url", "definition.url", lambda r: r["definition"].pop("url"))
    case("ftp url", "definition.url", lambda r: r["definition"].update(url="ftp://TOKEN-SECRET@h/x"))
    case("no host", "definition.url", lambda r: r["definition"].update(url="https:///PATH-SECRET"))
    case("bad port", "definition.url", lambda r: r["definition"].update(url="https://h:99999/PATH-SECRET"))
    case("space in url", "definition.url", lambda r: r["definition"].update(url="https://h/a b PATH-SECRET"))
    case("http with TLS level", "definition.url",
         lambda r: r["definition"].update(url="http://h/PATH-SECRET", securityLevel="TlsWithCACheck"))
    case("bad level", "definition.securityLevel", lambda r: r["definition"].update(securityLevel="Tls"))
    case("no pin", "definition.pinnedCertificate", lambda r: r["definition"].pop("pinnedCertificate"))
    case("garbage pin", "definition.pinnedCertificate",
         lambda r: r["definition"].update(pinnedCertificate="-----BEGIN CERTIFICATE-----\nnot*base64\n-----END CERTIFICATE-----"))
    case("header injection", "definition.additionalHttpHeaders",
         lambda r: r["definition"].update(additionalHttpHeaders={"X-A": "HEADER-SECRET\r\nHost: evil"}))
    case("bad header name", "definition.additionalHttpHeaders",
         lambda r: r["definition"].update(additionalHttpHeaders={"X A": "HEADER-SECRET"}))
    case("port 0", "definition.url", lambda r: r["definition"].update(url="https://h:0/PATH-SECRET"))
    case("bad timeout", "definition.timeout", lambda r: r["definition"].update(timeout=0))
    case("bool timeout", "definition.timeout", lambda r: r["definition"].update(timeout=True))
    case("bad body", "definition.body", lambda r: r["definition"].update(body="BODY-SECRET"))
    case("bad auth type", "definition.authentication.apiAuthenticationType",
         lambda r: r["definition"]["authentication"].update(apiAuthenticationType="Basic"))
    case("no access token", "definition.authentication.accessToken",
         lambda r: r["definition"]["authentication"].pop("accessToken"))
    case("token with newline", "definition.authentication.accessToken",
         lambda r: r["definition"]["authentication"].update(accessToken="TOKEN-SECRET\nX: y"))
    case("refresh without endpoint", "definition.authentication.tokenEndpoint",
         lambda r: r["definition"].update(authentication={"apiAuthenticationType": "OAuth2IssuedRefreshToken",
                                                          "refreshToken": "REFRESH-SECRET"}))
    case("no refresh token", "definition.authentication.refreshToken",
         lambda r: r["definition"].update(authentication={"apiAuthenticationType": "OAuth2IssuedRefreshToken",
                                                          "tokenEndpoint": "https://idp/t"}))
    case("bad event", "events", lambda r: r.update(events=["finger:al ice:1"]))
    case("empty events", "events", lambda r: r.update(events=[]))
    case("unknown event kind", "events", lambda r: r.update(events=["door:open"]))
    case("finger 100", "events", lambda r: r.update(events=["finger:alice:100"]))
    case("bad insecure flag", "definition.allowInsecureRemote",
         lambda r: r["definition"].update(allowInsecureRemote="yes"))
    return cases


def test_validation_names_the_field_and_changes_nothing(micropython, tmp_path, cert_pem):
    cases = _bad_cases(cert_pem)
    write_json(tmp_path, "good.json", [make_rule(1), make_rule(2)])
    write_json(tmp_path, "cases.json", [[name, rule] for name, rule, _ in cases])
    out = micropython.json(PRELUDE + """
rules.put(json.load(open("good.json")))
before = open("/flash/data/rules.jsonl", "rb").read()
res = {}
for name, bad in json.load(open("cases.json")):
    # a valid rule first, then the bad one: the whole put must be refused
    try:
        rules.put([json.load(open("good.json"))[0], bad])
        res[name] = ["stored", ""]
    except StoreError as e:
        res[name] = [e.code, e.message]
after = open("/flash/data/rules.jsonl", "rb").read()
print(json.dumps({"res": res, "same": before == after, "files": os.listdir("/flash/data")}))
""")
    assert out["same"], "a refused put changed the store"
    assert out["files"] == ["rules.jsonl"]
    for name, _, field in cases:
        code, message = out["res"][name]
        assert code == "invalid_rule", (name, code, message)
        assert field + ":" in message, (name, message)
        assert not any(s in message for s in SECRETS), (name, message)
        if field != "rule" and name not in ("no name", "long name"):
            assert '"rule 7"' in message, (name, message)


def test_accepts_quirks_and_all_levels(micropython, tmp_path, cert_pem):
    der_b64 = "".join(l for l in cert_pem.splitlines() if "CERTIFICATE" not in l)
    ok = [
        make_rule(1, level="AllowHttp"),
        make_rule(2, level="TlsAllowSelfSigned"),
        make_rule(3, pem=der_b64),  # base64 DER instead of PEM
        {"functionName": "quirky", "definition": {
            "method": "post", "url": "https://[::1]:8443/x", "body": {"contentType": "application/json",
                                                                       "content": {"a": 1}},
            "authentication": {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": "r",
                               "tokenEndoint": "https://idp.example/t"}}},
        {"functionName": "access with refresh", "definition": {
            "method": "GET", "url": "https://h.example/",
            "authentication": {"apiAuthenticationType": "OAuth2IssuedAccessToken", "accessToken": "a",
                               "refreshToken": "ignored"}}, "events": ["finger:bob", "button:b-1", "trigger"]},
    ]
    write_json(tmp_path, "ok.json", ok)
    out = micropython.json(PRELUDE + """
print(json.dumps(rules.put(json.load(open("ok.json")))))
""")
    assert out == ["rule 1", "rule 2", "rule 3", "quirky", "access with refresh"]


def test_list_is_metadata_without_secrets(micropython, tmp_path, cert_pem):
    write_json(tmp_path, "in.json", [make_rule(i, pem=cert_pem if i % 2 else None) for i in range(1, 6)])
    out = micropython.json(PRELUDE + """
rules.put(json.load(open("in.json")))
print(json.dumps({"list": rules.list_meta(), "page": rules.list_meta(start=3, limit=1)}))
""")
    listing = out["list"]
    text = json.dumps(listing)
    assert not any(s in text for s in SECRETS), text
    assert "BEGIN CERTIFICATE" not in text and "api/webhook" not in text
    assert [m["name"] for m in listing] == [f"rule {i}" for i in range(1, 6)]
    assert listing[0] == {"name": "rule 1", "id": "id-1", "level": "TlsPinnedCertificate",
                          "host": "host1.example.org:8443", "auth": "OAuth2IssuedAccessToken",
                          "events": ["trigger"]}
    assert listing[1]["level"] == "TlsWithCACheck" and listing[1]["auth"] == "OAuth2IssuedRefreshToken"
    assert out["page"] == [listing[3]]


def test_event_lookup(micropython, tmp_path):
    write_json(tmp_path, "in.json", [
        make_rule(1, events=["finger:alice"]),
        make_rule(2, events=["finger:alice:3", "button:door"]),
        make_rule(3, events=["button:door", "trigger"]),
        make_rule(4),  # default: trigger only
        make_rule(5, events=["finger:alicex:3"]),
    ])
    out = micropython.json(PRELUDE + """
rules.put(json.load(open("in.json")))
ev = ["finger:alice:3", "finger:alice:1", "button:door", "button:window", "finger:bob:3", "finger:alicex:3", "trigger"]
print(json.dumps({"by": {e: rules.names_for(e) for e in ev},
                  "trig": [rules.triggerable("rule %d" % i) for i in range(1, 7)]}))
""")
    by = out["by"]
    assert by["finger:alice:3"] == ["rule 1", "rule 2"]
    assert by["finger:alice:1"] == ["rule 1"]
    assert by["button:door"] == ["rule 2", "rule 3"]
    assert by["button:window"] == [] and by["finger:bob:3"] == []
    assert by["finger:alicex:3"] == ["rule 5"]  # "finger:alice" does not cover user "alicex"
    assert out["trig"] == [False, False, True, True, False, False]


def test_delete_is_all_or_none(micropython, tmp_path):
    write_json(tmp_path, "in.json", [make_rule(i) for i in range(1, 5)])
    out = micropython.json(PRELUDE + """
rules.put(json.load(open("in.json")))
res = {}
try:
    rules.delete(["rule 1", "no such rule"])
except StoreError as e:
    res["err"] = [e.code, e.message]
res["after_err"] = rules.names()
rules.delete(["rule 1", "rule 3"])
res["after_two"] = rules.names()
rules.delete("rule 2")
res["after_one"] = rules.names()
rules.clear()
res["after_clear"] = rules.names()
res["files"] = os.listdir("/flash/data")
print(json.dumps(res))
""")
    assert out["err"][0] == "not_found" and '"no such rule"' in out["err"][1]
    assert out["after_err"] == ["rule 1", "rule 2", "rule 3", "rule 4"]
    assert out["after_two"] == ["rule 2", "rule 4"]
    assert out["after_one"] == ["rule 4"]
    assert out["after_clear"] == [] and out["files"] == []


def test_limits_duplicates_and_too_many(micropython, tmp_path):
    write_json(tmp_path, "base.json", [make_rule(i) for i in range(30)])
    write_json(tmp_path, "more.json", [make_rule(i) for i in range(28, 34)])  # 2 replaced, 4 new: 34
    write_json(tmp_path, "dup.json", [make_rule(40), make_rule(40, tag="x")])
    out = micropython.json(PRELUDE + """
res = {}
rules.put(json.load(open("base.json")))
for f in ("more.json", "dup.json"):
    try:
        rules.put(json.load(open(f)))
        res[f] = "stored"
    except StoreError as e:
        res[f] = [e.code, e.message]
res["count"] = rules.count()
res["files"] = os.listdir("/flash/data")
print(json.dumps(res))
""")
    assert out["more.json"][0] == "too_many" and "32" in out["more.json"][1]
    assert out["dup.json"][0] == "invalid_rule" and "twice" in out["dup.json"][1]
    assert out["count"] == 30 and out["files"] == ["rules.jsonl"]


def test_rules_persist_in_an_image_file_across_reboots(micropython, tmp_path):
    write_json(tmp_path, "in.json", [make_rule(1), make_rule(2)])
    boot = """
import json, flashbd
bd = flashbd.mount("flash.img", "/flash", blocks=64)
from kh import store
store.use("/flash/data")
from kh.store import rules, config
"""
    micropython.run(boot + """
rules.put(json.load(open("in.json")))
config.set_wifi("lab", "correct horse")
open("/flash/data/rules.jsonl.tmp", "w").write("half written")
""")
    out = micropython.json(boot + """
import os
print(json.dumps({"names": rules.names(), "wifi": config.wifi(), "files": sorted(os.listdir("/flash/data"))}))
""")
    assert out == {"names": ["rule 1", "rule 2"], "wifi": {"ssid": "lab", "password": "correct horse"},
                   "files": ["rules.jsonl", "wifi.json"]}  # store.use() removed the stray temp file
    assert (tmp_path / "flash.img").stat().st_size == 64 * 4096


def test_wifi_and_settings(micropython):
    out = micropython.json(PRELUDE + """
from kh.store import config
res = {"empty": [config.wifi(), config.wifi_status(), config.settings()]}
config.set_wifi("home", "password123")
res["set"] = [config.wifi(), config.wifi_status()]
errs = []
for args in (("", "password123"), ("x" * 33, "password123"), ("home", "p" * 65)):
    try:
        config.set_wifi(*args)
    except StoreError as e:
        errs.append([e.code, e.message])
for ch in ({"name": "door", "fire_attempts": 2}, {"fire_attempts": 0}, {"bogus": 1}, {"name": 5}):
    try:
        res.setdefault("upd", []).append(config.update_settings(ch))
    except StoreError as e:
        errs.append([e.code, e.message])
res["errs"] = errs
res["final"] = [config.wifi(), config.settings()]
config.clear_wifi()
res["cleared"] = config.wifi()
print(json.dumps(res))
""")
    assert out["empty"][0] is None and out["empty"][1] == {"configured": False, "ssid": None}
    assert out["empty"][2]["fire_attempts"] == 4
    assert out["set"] == [{"ssid": "home", "password": "password123"}, {"configured": True, "ssid": "home"}]
    assert "password123" not in json.dumps(out["set"][1])
    codes = [e[0] for e in out["errs"]]
    assert codes == ["invalid_setting"] * 6
    assert out["errs"][0][1].startswith("ssid:") and out["errs"][2][1].startswith("password:")
    assert out["errs"][3][1].startswith("fire_attempts:") and out["errs"][4][1].startswith("bogus:")
    assert out["final"] == [{"ssid": "home", "password": "password123"},
                            {**out["empty"][2], "name": "door", "fire_attempts": 2}]
    assert out["cleared"] is None


def test_staged_put_in_parts_commits_all_at_once(micropython, tmp_path, cert_pem):
    write_json(tmp_path, "old.json", [make_rule(1), make_rule(2)])
    write_json(tmp_path, "p1.json", [make_rule(2, tag="v2", pem=cert_pem), make_rule(3)])
    write_json(tmp_path, "p2.json", [make_rule(4, pem=cert_pem)])
    write_json(tmp_path, "bad.json", [make_rule(5), {"functionName": "bad"}])
    out = micropython.json(PRELUDE + """
rules.put(json.load(open("old.json")))
res = {}
st = rules.Stage()
st.add(json.load(open("p1.json")))
res["mid"] = rules.names()                       # nothing visible before commit
st.add(json.load(open("p2.json")))
try:
    st.add(json.load(open("p1.json"))[1:])      # "rule 3" again, across parts
except StoreError as e:
    res["dup"] = e.code
res["after_dup"] = os.listdir("/flash/data")    # a refused part aborts the stage
st = rules.Stage()
st.add(json.load(open("p1.json"))); st.add(json.load(open("p2.json")))
res["commit"] = st.commit()
res["names"] = rules.names()
res["r2"] = rules.get("rule 2")
res["files"] = os.listdir("/flash/data")
before = rules.names()
st = rules.Stage(); st.add(json.load(open("p2.json")))
try:
    st.add(json.load(open("bad.json")))
except StoreError as e:
    res["bad"] = [e.code, e.message]
st2 = rules.Stage(); st2.add(json.load(open("old.json"))); st2.abort()
res["unchanged"] = rules.names() == before
res["files2"] = os.listdir("/flash/data")
try:
    st2.commit()
except StoreError as e:
    res["finished"] = e.code
print(json.dumps(res))
""")
    assert out["mid"] == ["rule 1", "rule 2"]
    assert out["dup"] == "invalid_rule" and out["after_dup"] == ["rules.jsonl"]
    assert out["commit"] == ["rule 2", "rule 3", "rule 4"]
    assert out["names"] == ["rule 1", "rule 2", "rule 3", "rule 4"]
    assert out["r2"] == _defaulted(make_rule(2, tag="v2", pem=cert_pem))
    assert out["files"] == ["rules.jsonl"]
    assert out["bad"][0] == "invalid_rule" and "definition" in out["bad"][1]
    assert out["unchanged"] and out["files2"] == ["rules.jsonl"]
    assert out["finished"] == "invalid_rule"


def test_missing_security_level_is_stored_as_the_safe_default(micropython, tmp_path):
    r = make_rule(1)
    del r["definition"]["securityLevel"]
    write_json(tmp_path, "in.json", r)
    out = micropython.json(PRELUDE + """
rules.put(json.load(open("in.json")))
print(json.dumps([rules.get("rule 1")["definition"]["securityLevel"], rules.list_meta()[0]["level"]]))
""")
    assert out == ["TlsWithCACheck", "TlsWithCACheck"]


def test_image_block_device_cut_and_factory_wipe(micropython, tmp_path):
    """boards/unix/flashbd.py: cut_at=N fails the N-th flash write; the image keeps the old
    state; store.wipe() empties the data root (factory reset) and keeps the rest."""
    write_json(tmp_path, "in.json", [make_rule(1)])
    write_json(tmp_path, "more.json", [make_rule(2)])
    out = micropython.json("""
import json, os, flashbd
from kh import store
bd = flashbd.mount("flash.img", "/flash", blocks=32)
store.use("/flash/data")
from kh.store import rules, config
rules.put(json.load(open("in.json")))
config.set_wifi("lab", "password123")
open("/flash/main.py", "w").write("code")
flashbd.umount("/flash"); bd.close()
bd = flashbd.mount("flash.img", "/flash", blocks=32, cut_at=3)
err = None
try:
    rules.put(json.load(open("more.json")))
except OSError as e:
    err = e.args[0]
flashbd.umount("/flash"); bd.close()
bd = flashbd.mount("flash.img", "/flash", blocks=32)
store.use("/flash/data")
after_cut = rules.names()
store.wipe()
print(json.dumps({"err": err, "after_cut": after_cut, "wiped": os.listdir("/flash/data"),
                  "root": sorted(os.listdir("/flash")), "rules": rules.names(), "wifi": config.wifi()}))
""")
    assert out["err"] == 5 and out["after_cut"] == ["rule 1"]
    assert out["wiped"] == [] and out["root"] == ["data", "main.py"]
    assert out["rules"] == [] and out["wifi"] is None


def test_wifi_change_survives_a_cut_at_every_write(micropython):
    out = micropython.json("""
import json, powercut
from kh import store
from kh.store import config
bd = powercut.RamBlockDev(blocks=16)
def prepare():
    store.use("/flash/data"); config.set_wifi("old-net", "old-password")
def update():
    config.set_wifi("new-net", "new-password")
def check(k):
    store.use("/flash/data")
    return config.wifi()
res = powercut.sweep(bd, "/flash", prepare, update, check, torn=True)
print(json.dumps(res))
""")
    assert len(out) > 3
    for k, wifi in out:
        assert wifi in ({"ssid": "old-net", "password": "old-password"},
                        {"ssid": "new-net", "password": "new-password"}), (k, wifi)
    assert out[0][1] == {"ssid": "new-net", "password": "new-password"}


def test_a_full_flash_refuses_the_put_and_keeps_the_rules(micropython, tmp_path, cert_pem):
    big = [make_rule(i, pem=cert_pem) for i in range(32)]
    for r in big:
        r["definition"]["body"]["content"] = "x" * 3000
    write_json(tmp_path, "big.json", big)
    out = micropython.json("""
import json, os, powercut
bd = powercut.RamBlockDev(blocks=12)
powercut.mount(bd, "/flash")
from kh import store
store.use("/flash/data")
from kh.store import rules
from kh.store.errors import StoreError
big = json.load(open("big.json"))
stored = 0
err = None
for r in big:
    before = rules.names()
    try:
        rules.put(r)
        stored += 1
    except StoreError as e:
        err = [e.code, e.message]
        break
res = {"stored": stored, "err": err, "kept": rules.names() == before, "files": os.listdir("/flash/data")}
rules.delete(before[:2])
rules.put(big[stored])
res["after_delete"] = rules.count()
print(json.dumps(res))
""")
    assert out["err"][0] == "no_space" and "delete some rules" in out["err"][1]
    assert 1 < out["stored"] < 32 and out["kept"] and out["files"] == ["rules.jsonl"]
    assert out["after_delete"] == out["stored"] - 1


def test_non_ascii_rules_keep_the_file_framing(micropython, tmp_path):
    """Sizes in the file are bytes: rules with multi-byte characters around ASCII ones."""
    rules = [make_rule(1), make_rule(2), make_rule(3)]
    rules[0]["functionName"] = "Tür öffnen 🚪"
    rules[1]["definition"]["body"]["content"] = "ünïcödé ✓ " * 50
    rules[2]["locationName"] = "Küche"
    # raw UTF-8: MicroPython's json turns a "\\ud83d\\udeaa" surrogate pair into two bad characters
    (tmp_path / "in.json").write_text(json.dumps(rules, ensure_ascii=False), encoding="utf-8")
    out = micropython.json(PRELUDE + """
src = json.load(open("in.json"))
rules.put(src)
rules.put(src[1])                      # a rewrite copies the others
rules.delete("rule 3")
rules.put(src[2])
print(json.dumps({"names": rules.names(), "r": [rules.get(n) for n in rules.names()],
                  "meta": rules.list_meta()[0]["name"]}))
""")
    assert out["names"] == ["Tür öffnen 🚪", "rule 2", "rule 3"]
    assert out["r"] == [_defaulted(r) for r in rules]
    assert out["meta"] == "Tür öffnen 🚪"
