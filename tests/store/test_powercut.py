"""Power cut at every single flash write of a rules update: after a reboot the store holds
exactly the old rules or exactly the new ones, never a mix, never nothing, and still works."""

from __future__ import annotations

import pytest

from storehelp import make_rule, write_json

SWEEP = """
import json, os, powercut
from kh import store
from kh.store import rules

bd = powercut.RamBlockDev(blocks=48)
old = json.load(open("old.json"))
change = json.load(open("change.json"))
op, torn = change["op"], change["torn"]

def state():
    return {n: rules.get(n) for n in rules.names()}

def prepare():
    store.use("/flash/data")
    if old:
        rules.put(old)

def update():
    if op == "put":
        rules.put(change["rules"])
    elif op == "stage":
        st = rules.Stage()
        for part in change["parts"]:
            st.add(part)
        st.commit()
    elif op == "delete":
        rules.delete(change["names"])
    else:
        rules.clear()

OLD = None
NEW = None
spare = {"functionName": "after reboot", "definition": {"method": "Get", "url": "https://h.example/"}}

def check(k):
    store.use("/flash/data")  # what start-up does: also removes a stray temp file
    s = state()
    got = "old" if s == OLD else "new" if s == NEW else "MIXED " + json.dumps(sorted(s))
    stray = [f for f in os.listdir("/flash/data") if f.endswith(".tmp")]
    # the store still works: a put and a delete after the reboot
    rules.put(spare)
    works = rules.names()[-1] == "after reboot" and rules.get("after reboot")["definition"]["url"] == "https://h.example/"
    rules.delete("after reboot")
    works = works and "after reboot" not in rules.names()
    return [got, works, stray]

# the two states, measured without cuts
powercut.mount(bd, "/flash", mkfs=True)
prepare(); OLD = state(); update(); NEW = state()
res = powercut.sweep(bd, "/flash", prepare, update, check, torn=torn)
print(json.dumps({"n": len(res) - 1, "res": res, "old": sorted(OLD), "new": sorted(NEW)}))
"""


def _sweep(micropython, tmp_path, old, change):
    write_json(tmp_path, "old.json", old)
    write_json(tmp_path, "change.json", change)
    return micropython.json(SWEEP, timeout=240)


def _assert_all_or_nothing(out):
    assert out["old"] != out["new"]
    assert out["n"] >= 3, "the update made suspiciously few flash writes"
    assert out["res"][0] == [0, ["new", True, []]]  # no cut: the update completes
    seen = set()
    for k, (got, works, stray) in out["res"]:
        assert got in ("old", "new"), f"cut at write {k}: {got}"
        assert works, f"cut at write {k}: the store no longer works after the reboot"
        assert stray == [], f"cut at write {k}: temp file left after start-up: {stray}"
        seen.add(got)
    # a cut before the rename keeps the old state; the run without a cut gives the new one
    assert out["res"][1][1][0] == "old"
    assert "new" in seen


@pytest.mark.parametrize("torn", [False, True], ids=["clean-cut", "torn-write"])
def test_put_several_rules_cut_at_every_write(micropython, tmp_path, cert_pem, torn):
    old = [make_rule(i, pem=cert_pem if i % 2 else None) for i in range(1, 6)]
    new = [make_rule(2, tag="v2"), make_rule(4, tag="v2", pem=cert_pem)] + \
          [make_rule(i, pem=cert_pem) for i in range(6, 9)]  # two replaced, three added
    out = _sweep(micropython, tmp_path, old, {"op": "put", "rules": new, "torn": torn})
    _assert_all_or_nothing(out)
    assert out["new"] == sorted(f"rule {i}" for i in range(1, 9))
    print("put: %d flash writes, states after each cut: %s" % (out["n"], "".join(r[1][0][0] for r in out["res"][1:])))


@pytest.mark.parametrize("torn", [False, True], ids=["clean-cut", "torn-write"])
def test_delete_several_rules_cut_at_every_write(micropython, tmp_path, cert_pem, torn):
    old = [make_rule(i, pem=cert_pem) for i in range(1, 7)]
    out = _sweep(micropython, tmp_path, old, {"op": "delete", "names": ["rule 2", "rule 5"], "torn": torn})
    _assert_all_or_nothing(out)
    assert out["new"] == ["rule 1", "rule 3", "rule 4", "rule 6"]


@pytest.mark.parametrize("torn", [False, True], ids=["clean-cut", "torn-write"])
def test_staged_put_in_parts_cut_at_every_write(micropython, tmp_path, cert_pem, torn):
    """A large push arrives in parts; a cut while staging or committing keeps the old rules."""
    old = [make_rule(i, pem=cert_pem) for i in range(1, 4)]
    parts = [[make_rule(1, tag="v2", pem=cert_pem), make_rule(4, pem=cert_pem)],
             [make_rule(5, pem=cert_pem)], [make_rule(6, pem=cert_pem), make_rule(7, pem=cert_pem)]]
    out = _sweep(micropython, tmp_path, old, {"op": "stage", "parts": parts, "torn": torn})
    _assert_all_or_nothing(out)
    assert out["new"] == sorted(f"rule {i}" for i in range(1, 8))


def test_first_put_into_an_empty_store_cut_at_every_write(micropython, tmp_path, cert_pem):
    out = _sweep(micropython, tmp_path, [], {"op": "put", "rules": [make_rule(i, pem=cert_pem) for i in range(3)],
                                             "torn": True})
    _assert_all_or_nothing(out)
    assert out["old"] == []


def test_harness_counts_and_cuts(micropython):
    """tests/mp/powercut.py itself: counting, arming, the device stays off after a cut, remount."""
    out = micropython.json("""
import json, os, powercut
bd = powercut.RamBlockDev(blocks=16)
powercut.mount(bd, "/pc")
def w(data):
    with open("/pc/f.tmp", "w") as f:
        f.write(data)
    os.rename("/pc/f.tmp", "/pc/f")
w("old")
n = powercut.count(bd, lambda: w("new"))
bd.arm(1)
err = None
try:
    w("newer")
except powercut.PowerCut as e:
    err = e.args[0]
still_off = False
try:
    bd.writeblocks(0, bytearray(4), 0)
except powercut.PowerCut:
    still_off = True
powercut.reboot(bd, "/pc")
print(json.dumps({"n": n, "err": err, "off": still_off, "after": open("/pc/f").read(), "isos": isinstance(powercut.PowerCut(), OSError)}))
""")
    assert out["n"] >= 2 and out["err"] == 5 and out["off"] is True and out["isos"] is True
    assert out["after"] == "new"


@pytest.mark.slow
def test_large_store_update_cut_at_every_write(micropython, tmp_path, cert_pem):
    """20 pinned rules (a rules file over several blocks); replace two and add one."""
    old = [make_rule(i, pem=cert_pem) for i in range(20)]
    new = [make_rule(3, tag="v2", pem=cert_pem), make_rule(17, tag="v2"), make_rule(20, pem=cert_pem)]
    out = _sweep(micropython, tmp_path, old, {"op": "put", "rules": new, "torn": True})
    _assert_all_or_nothing(out)
    assert out["n"] > 100
    print("large put: %d flash writes, every one cut in turn" % out["n"])


RANDOM_OPS = """
import json, os, random, powercut
from kh import store
from kh.store import rules
from kh.store.errors import StoreError

pool = json.load(open("pool.json"))   # candidate rules, several versions of each name
random.seed(SEED)
bd = powercut.RamBlockDev(blocks=48)
powercut.mount(bd, "/flash", mkfs=True)
store.use("/flash/data")
model = {}                             # name -> rule, what the store must hold
order = []

def pick(k):
    out, seen = [], set()
    while len(out) < k:
        r = pool[random.getrandbits(16) % len(pool)]
        if r["functionName"] not in seen:
            seen.add(r["functionName"])
            out.append(r)
    return out

def state():
    return {n: rules.get(n) for n in rules.names()}

cuts = olds = news = 0
for step in range(STEPS):
    kind = random.getrandbits(8) % 4
    if kind == 3 and model:
        names = list(model)
        victims = [names[random.getrandbits(8) % len(names)]]
        def op():
            rules.delete(victims)
        after = {n: r for n, r in model.items() if n not in victims}
    else:
        batch = pick(1 + random.getrandbits(8) % 3)
        if kind == 2:
            def op():
                st = rules.Stage()
                for r in batch:
                    st.add([r])
                st.commit()
        else:
            def op():
                rules.put(batch)
        after = dict(model)
        for r in batch:
            r2 = dict(r)
            r2.setdefault("events", ["trigger"])
            after[r["functionName"]] = r2
    if random.getrandbits(8) % 2:
        bd.arm(1 + random.getrandbits(8) % 60, torn=bool(random.getrandbits(1)))
    try:
        op()
    except StoreError as e:
        if e.code != "too_many":
            raise
        after = model
    except OSError:
        if not bd.dead:
            raise
    if bd.dead:
        cuts += 1
        powercut.reboot(bd, "/flash")
        store.use("/flash/data")
    else:
        bd.disarm()
    got = state()
    if got == after:
        news += 1
        model = after
    elif got == model:
        olds += 1
    else:
        print(json.dumps({"step": step, "mixed": sorted(got), "model": sorted(model), "after": sorted(after)}))
        raise SystemExit(1)
print(json.dumps({"cuts": cuts, "olds": olds, "news": news, "final": len(model)}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_updates_with_random_power_cuts(micropython, tmp_path, cert_pem, seed):
    """Random puts, staged puts and deletes, half of them cut at a random write: after each,
    the store equals the state before or after that operation."""
    pool = [make_rule(i, tag=t, pem=cert_pem if i % 2 else None) for i in range(12) for t in ("a", "b")]
    write_json(tmp_path, "pool.json", pool)
    out = micropython.json(RANDOM_OPS.replace("SEED", str(seed)).replace("STEPS", "120"), timeout=240)
    assert out["cuts"] > 20 and out["olds"] > 5 and out["news"] > 20
    print("random seed %d: %s" % (seed, out))
