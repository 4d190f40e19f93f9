"""Size figures per board, from a real `keyhook build`: total .mpy (compiled firmware, main.py
included as source) against the 64 KiB goal, the trust store (every certifi root, and a
three-root selection), and how much of the littlefs partition the image uses. Then memory: the
GC heap in use once the firmware, booted from the unix board's image (.mpy) with the simulated
radio, is idle, and the smallest heap it boots in (unix port, x86-64: pointers and object
headers are twice an ESP32's, so the ESP32 needs less; the reference is the ESP32's initial GC
heap). Last, which part of the compiled firmware is loaded (and so in RAM, as .mpy from the file
system) when the device is idle, with and without an app connected: the rest (pairing crypto,
the request engine, rule validation, trust edits) is imported when needed and unloaded after."""

from __future__ import annotations

from benchkit import smallest  # tests/bench/ is on the path (run.py, or running the file)

import json
import os
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "host"))
sys.path.insert(0, str(HERE.parent / "boards"))

from keyhook import boards
from keyhook.boards import build  # noqa: E402

BOARDS = ["ESP32_GENERIC", "ESP32_GENERIC_S3", "ESP32_GENERIC_C3"]
SMALL_SELECTION = ["ISRG Root X1", "ISRG Root X2", "DigiCert Global Root G2"]


def _used_blocks(image: bytes, block_size: int) -> int:
    from littlefs import LittleFS

    fs = LittleFS(mount=False, **build.lfs_config(len(image), block_size))
    fs.context.buffer[:] = image
    fs.mount()
    return fs.used_block_count


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-size-") as tmp:
        for name in BOARDS:
            board = boards.load(name)
            full = build.build(board, Path(tmp) / name)
            small = build.build(board, Path(tmp) / (name + "-small"), select=SMALL_SELECTION)
            budget = board.firmware_budget
            source = sum(p.stat().st_size for p in build.FIRMWARE.rglob("*.py"))
            rows.append({"figure": f"{name}: firmware .mpy total ({board.mpy_arch})", "value": full.mpy_total,
                         "unit": "B", "reference": f"{source} B of .py source",
                         "ratio": round(full.mpy_total / source, 3) if source else "",
                         "goal": f"<= {budget} B", "met": full.mpy_total <= budget})
            rows.append({"figure": f"{name}: trust store, all {full.trust['count']} certifi roots",
                         "value": full.trust_total, "unit": "B"})
            rows.append({"figure": f"{name}: trust store, {small.trust['count']} selected roots",
                         "value": small.trust_total, "unit": "B",
                         "reference": f"{full.trust_total} B (all)",
                         "ratio": round(small.trust_total / full.trust_total, 3) if full.trust_total else ""})
            lean = build.build(board, Path(tmp) / (name + "-O3"), trust=False, opt=3)
            rows.append({"figure": f"{name}: firmware .mpy total, mpy-cross -O3 (no line numbers)",
                         "value": lean.mpy_total, "unit": "B", "reference": f"{full.mpy_total} B at -O0",
                         "ratio": round(lean.mpy_total / full.mpy_total, 3),
                         "goal": f"<= {budget} B", "met": lean.mpy_total <= budget})
            used = _used_blocks(full.image.read_bytes(), board.vfs_block_size)
            rows.append({"figure": f"{name}: littlefs blocks used (full trust store)", "value": used,
                         "unit": f"of {board.vfs_block_count} x {board.vfs_block_size} B",
                         "ratio": round(used / board.vfs_block_count, 3)})
        rows += _memory(Path(tmp))
        rows += _resident(Path(tmp))
    return rows


# The firmware's start-up without its event loop, under the unix board's simulation: the modules
# loaded once booted, then once an app connected and sent a message (main.py's own callbacks).
RESIDENT = r"""
import gc, json, sys
gc.collect(); a0 = gc.mem_alloc()
import asyncio, bluetooth, keyhook_board
info = keyhook_board.setup()
gc.collect(); sim = gc.mem_alloc() - a0
from kh.app.main import Keyhook
app = Keyhook(info)
gc.collect(); idle = gc.mem_alloc() - a0
booted = sorted(m for m in sys.modules if m.startswith("kh"))
app._on_connect()
app._commands()
gc.collect(); conn = gc.mem_alloc() - a0
connected = sorted(m for m in sys.modules if m.startswith("kh"))
for m in ("kh.store.schema", "kh.engine.fire", "kh.oauth.tokens", "kh.oauth.grant", "kh.http.tlsfail"):
    __import__(m)
busy = sorted(m for m in sys.modules if m.startswith("kh"))
print(json.dumps({"sim": sim, "idle": idle, "conn": conn, "booted": booted, "connected": connected, "busy": busy}))
"""


def _resident(tmp: Path) -> list[dict]:
    from keyhook.boards import mp

    esp = boards.load("ESP32_GENERIC")
    sizes = {f.path: f.size for f in build.compile_firmware(esp, tmp / "resident-esp")}
    total = sum(sizes.values())
    fw = tmp / "resident-unix"
    build.compile_firmware(boards.load("unix"), fw)
    script = tmp / "resident.py"
    script.write_text(textwrap.dedent(RESIDENT))
    old = os.environ.get("KEYHOOK_SIM_STATE")
    os.environ["KEYHOOK_SIM_STATE"] = str(tmp / "resident-state")
    try:
        p = mp.run_micropython(script, firmware=fw, timeout=60, cwd=tmp)
    finally:
        if old is None:
            os.environ.pop("KEYHOOK_SIM_STATE", None)
        else:
            os.environ["KEYHOOK_SIM_STATE"] = old
    try:
        r = json.loads(p.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [{"figure": "resident modules", "value": "failed: " + p.stderr.decode()[-200:], "unit": ""}]

    def mpy(mods: list[str]) -> int:
        n = 0
        for m in mods:
            rel = m.replace(".", "/")
            n += sizes.get(rel + ".mpy", sizes.get(rel + "/__init__.mpy", 0))
        return n

    rows = []
    for key, what in (("booted", "booted, no app connected"), ("connected", "an app connected (session, commands)"),
                      ("busy", "an app connected, during a put and an OAuth fire")):
        v = mpy(r[key])
        rows.append({"figure": f"ESP32_GENERIC: .mpy of the modules loaded, {what}", "value": v, "unit": "B",
                     "reference": f"{total} B of .mpy in all ({len(r[key])} of {len(sizes)} files)",
                     "ratio": round(v / total, 3)})
    rows.append({"figure": "unix (x64): GC heap after start-up without the event loop (Keyhook built)",
                 "value": r["idle"], "unit": "B",
                 "reference": f"of which the unix board's simulation (bluetooth, flash image, asyncio) {r['sim']} B"})
    rows.append({"figure": "unix (x64): the same once an app connected (channel and commands loaded)",
                 "value": r["conn"], "unit": "B"})
    return rows


def _memory(tmp: Path) -> list[dict]:
    import bootimage

    board = boards.load("unix")
    esp = boards.load("ESP32_GENERIC")
    result = build.build(board, tmp / "unix", select=SMALL_SELECTION)

    def boots(heap_kib: int | None, tag: str) -> dict:
        proc, report, _lines = bootimage.boot(result.image, tmp / f"run-{tag}", tmp / f"radio-{tag}",
                                              board.vfs_block_count,
                                              heapsize=heap_kib * 1024 if heap_kib else None, timeout=30)
        bootimage.stop(proc)
        return report

    idle = boots(None, "idle")
    rows = []
    if idle:
        rows.append({"figure": "unix (x64): GC heap in use, idle after boot from .mpy", "value": idle["alloc"],
                     "unit": "B", "reference": f"ESP32 initial GC heap {esp.memory['gc_heap_kib']} KiB",
                     "ratio": round(idle["alloc"] / (esp.memory["gc_heap_kib"] * 1024), 2),
                     "goal": f"<= {esp.memory['idle_heap_budget_kib']} KiB on the ESP32",
                     "met": idle["alloc"] <= esp.memory["idle_heap_budget_kib"] * 1024})
    hi = smallest(lambda k: boots(k, f"h{k}"), 32, 2048, step=8)  # KiB
    if hi is not None:
        rows.append({"figure": "unix (x64): smallest GC heap the firmware boots in (from .mpy)", "value": hi,
                     "unit": "KiB", "reference": f"{esp.memory['gc_heap_kib']} KiB (ESP32 initial GC heap)",
                     "ratio": round(hi / esp.memory["gc_heap_kib"], 2)})
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
