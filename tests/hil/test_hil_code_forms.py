"""Hardware in the loop: where `keyhook deploy` put the firmware's code, and the board's heap.

On a board whose MicroPython has a ROMFS partition (a `make firmware` image) the firmware's
modules must be imported from /rom (code in place); on a stock image, from kh/ on the file
system. Either way deploy must have read the heap over the REPL.
"""

from __future__ import annotations

from keyhook import boards
from keyhook.boards import deploy as kdeploy

WHERE = "import sys, kh.store.files as m\nprint('KH-FILE', m.__file__, sys.path)\n"


def test_deploy_reads_the_heap_and_the_code_runs_from_where_it_went(hil):
    board = boards.load(hil["board"]) if hil["board"] else None
    r = kdeploy.deploy(hil["port"], board, build_kw={"select": ["ISRG Root X1"]})
    assert r.heap is not None and 16 * 1024 < r.heap.size and 0 < r.heap.largest_free <= r.heap.free <= r.heap.size
    out = kdeploy.run_mpremote(hil["port"], ["exec", WHERE], timeout=60).stdout
    line = next(x for x in out.splitlines() if x.startswith("KH-FILE "))
    if r.code == "romfs":
        assert line.split()[1].startswith("/rom/kh/"), line
    else:
        assert line.split()[1] in ("kh/store/files.mpy", "/kh/store/files.mpy"), line
