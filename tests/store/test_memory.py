"""A put of 20 rules with pinned certificates fits a small MicroPython heap: the store streams
(one rule line in RAM at a time). The measured figures are in tests/bench/bench_store.py."""

from __future__ import annotations

import pytest

from storehelp import make_rule, write_json

SCRIPT = """
import gc, json, flashbd
bd = flashbd.mount("flash.img", "/flash", blocks=64)
from kh import store
store.use("/flash/data")
from kh.store import rules
from kh.store import schema  # loaded at the first put; compiled from source here, so before the data
%s
print(json.dumps({"count": rules.count(), "last": rules.get("rule 19")["definition"]["pinnedCertificate"][:27],
                  "free": gc.mem_free()}))
"""

AT_ONCE = """
rules.put(json.load(open("all.json")))
"""

STAGED = """
st = rules.Stage()
for i in range(5):
    st.add(json.load(open("part%d.json" % i)))
    gc.collect()
st.commit()
"""


# Source modules (compiled at import) need more heap than the .mpy the device runs; the
# budgets leave room over the smallest heap measured for source modules (64-bit, 2026-11-30:
# staged 90 KiB, at once 128 KiB since the validator parses every pin's DER and URL with the
# engine's own parser). Over BLE a push is always staged (a message holds at most 8 KiB).
@pytest.mark.parametrize("how,heap", [("staged", 104 * 1024), ("at_once", 152 * 1024)])
def test_twenty_pinned_rules_fit_a_small_heap(micropython, tmp_path, cert_pem, how, heap):
    rules = [make_rule(i, pem=cert_pem, events=["trigger", f"button:b{i}"]) for i in range(20)]
    write_json(tmp_path, "all.json", rules)
    for i in range(5):
        write_json(tmp_path, f"part{i}.json", rules[i * 4:(i + 1) * 4])
    out = micropython.json(SCRIPT % (STAGED if how == "staged" else AT_ONCE), heapsize=heap)
    assert out["count"] == 20
    assert out["last"] == "-----BEGIN CERTIFICATE-----"
