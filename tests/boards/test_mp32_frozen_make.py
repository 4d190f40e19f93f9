"""`make mp32-frozen MICROPY_DIR=...` only reads the MicroPython tree (review of issue 8, 2026-11-30).

Everything it builds goes under this repository's build/mp32, mpy-cross too: the tree may be
shared, read-only, or a checkout the user keeps for another port. It used to build mpy-cross in
MICROPY_DIR/mpy-cross/build (rewriting 7 files there at every run), and the frozen build then
took that mpy-cross. Checked with `make -n` on a stand-in tree whose Makefiles only report what
they were given: nothing is built or written.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from keyhook.paths import REPO

# A stand-in for MicroPython's Makefiles: each prints the build folder it would write to and the
# mpy-cross it would use (make var and environment; tools/makemanifest.py reads the environment)
STANDIN = """BUILD ?= build
$(info {name} BUILD=$(abspath $(BUILD)))
$(info {name} MICROPY_MPYCROSS=$(MICROPY_MPYCROSS))
$(info {name} ENV_MICROPY_MPYCROSS=$(shell printenv MICROPY_MPYCROSS))
all:
\t@true
"""


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_mp32_frozen_builds_nothing_inside_the_micropython_tree(tmp_path):
    tree = tmp_path / "micropython"
    for sub, name in (("mpy-cross", "MPYCROSS"), ("ports/unix", "UNIX")):
        (tree / sub).mkdir(parents=True)
        (tree / sub / "Makefile").write_text(STANDIN.format(name=name))
    p = subprocess.run(["make", "-n", "--no-print-directory", "mp32-frozen", f"MICROPY_DIR={tree}"],
                       cwd=REPO, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    lines = [line for line in p.stdout.splitlines() if line.startswith(("MPYCROSS ", "UNIX "))]
    got = {}
    for line in lines:
        who, _, kv = line.partition(" ")
        k, _, v = kv.partition("=")
        got[who, k] = v
    build = REPO / "build" / "mp32"
    assert got, p.stdout
    # both builds write under build/mp32, never under the tree
    for who in ("MPYCROSS", "UNIX"):
        assert got[who, "BUILD"].startswith(str(build) + "/"), (who, got[who, "BUILD"])
    # the frozen build uses the mpy-cross built there, not one it would build inside the tree
    mpy_cross = got["MPYCROSS", "BUILD"] + "/mpy-cross"
    assert got["UNIX", "MICROPY_MPYCROSS"] == mpy_cross
    assert got["UNIX", "ENV_MICROPY_MPYCROSS"] == mpy_cross
