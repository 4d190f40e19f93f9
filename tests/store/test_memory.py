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
# budgets leave about 20 % over the smallest heap measured for source modules.
@pytest.mark.parametrize("how,heap", [("staged", 96 * 1024), ("at_once", 120 * 1024)])
def test_twenty_pinned_rules_fit_a_small_heap(micropython, tmp_path, cert_pem, how, heap):
    rules = [make_rule(i, pem=cert_pem, events=["trigger", f"button:b{i}"]) for i in range(20)]
    write_json(tmp_path, "all.json", rules)
    for i in range(5):
        write_json(tmp_path, f"part{i}.json", rules[i * 4:(i + 1) * 4])
    out = micropython.json(SCRIPT % (STAGED if how == "staged" else AT_ONCE), heapsize=heap)
    assert out["count"] == 20
    assert out["last"] == "-----BEGIN CERTIFICATE-----"
