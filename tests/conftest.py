"""Fixtures shared by the whole suite: running firmware code under the MicroPython unix port."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from keyhook.boards import mp
from keyhook.paths import FIRMWARE, REPO, UNIX_BOARD

TESTS = Path(__file__).resolve().parent
# Nothing a test runs may reach beyond 127.0.0.1, not even a DNS query: the host's pin check and
# the push-time TLS probe (also in the CLI subprocesses, which inherit this) contact loopback only.
os.environ["KEYHOOK_LOOPBACK_ONLY"] = "1"
MP_HELPERS = TESTS / "mp"  # MicroPython-side test helpers, on MICROPYPATH for every run


def pytest_addoption(parser):
    group = parser.getgroup("hil", "hardware in the loop")
    group.addoption("--port", default="", help="serial port of a real board, for tests/hil")
    group.addoption("--ble-address", default="", help="BLE address of that board, for tests/hil")
    group.addoption("--hil-host", default="", help="this host's LAN address that the board can reach")


class MicroPython:
    """Runs snippets and scripts under the real MicroPython unix port, firmware on the path."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self._n = 0

    def run(self, code: str, *, heapsize: int | None = None, args=(), extra_path=(), timeout=120,
            input: bytes | None = None, check: bool = True, cwd=None) -> subprocess.CompletedProcess:
        self._n += 1
        script = self.tmp_path / f"mp_snippet_{self._n}.py"
        script.write_text(textwrap.dedent(code))
        proc = mp.run_micropython(script, args, heapsize=heapsize, extra_path=[MP_HELPERS, *extra_path],
                                  input=input, timeout=timeout, cwd=cwd or self.tmp_path)
        if check and proc.returncode != 0:
            raise AssertionError(
                f"micropython exited {proc.returncode}\n--- stdout\n{proc.stdout.decode(errors='replace')}"
                f"\n--- stderr\n{proc.stderr.decode(errors='replace')}")
        return proc

    def json(self, code: str, **kw):
        """Run code whose last stdout line is a JSON document; return it parsed."""
        out = self.run(code, **kw).stdout.decode().strip().splitlines()
        assert out, "micropython printed nothing"
        return json.loads(out[-1])


@pytest.fixture
def micropython(tmp_path) -> MicroPython:
    return MicroPython(tmp_path)
