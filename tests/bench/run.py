"""`make bench`: every tests/bench/bench_*.py module's figures, as ratios against references
measured in the same run. Each module has `run() -> list[dict]`, rows with `figure`, `value`,
`unit`, and optionally `reference`, `ratio`, `goal`, `met`."""

from __future__ import annotations

import importlib.util
import json
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve().parent


def main() -> int:
    sys.path[:0] = [str(HERE), str(HERE.parent)]  # benchkit, and the tests' helpers
    console = Console()
    only = sys.argv[1:]
    all_rows = []
    for path in sorted(HERE.glob("bench_*.py")):
        if only and not any(o in path.stem for o in only):
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        t0 = time.perf_counter()
        console.print(f"[bold]{path.stem}[/bold] ...")
        rows = mod.run()
        console.print(f"  done in {time.perf_counter() - t0:.1f} s")
        table = Table(title=path.stem)
        for col in ("figure", "value", "reference", "ratio", "goal", "met"):
            table.add_column(col)
        for r in rows:
            met = r.get("met")
            table.add_row(str(r["figure"]), f"{r['value']} {r.get('unit', '')}".strip(),
                          str(r.get("reference", "")), str(r.get("ratio", "")), str(r.get("goal", "")),
                          "" if met is None else ("yes" if met else "NO"))
            all_rows.append({"module": path.stem, **r})
        console.print(table)
    out = HERE.parent.parent / "build" / "bench.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(all_rows, indent=2, default=str))
    console.print(f"figures written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
