"""The device's heap as a user sees it (issue 8): `keyhook sim --code FORM --heap KIB` runs the
firmware with that GC heap, `keyhook info` reports size, free, largest free block and lowest free
since boot, and a heap too small for the firmware ends the simulated device at once, saying so."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from keyhook.session.device import onboard
from keyhook.session.keystore import Keystore
from keyhook.sim import radio as vradio

from e2ekit import cli, run


def _sim(radio, state, *args: str) -> subprocess.Popen:
    env = dict(os.environ, KEYHOOK_RADIO=str(radio))
    return subprocess.Popen([sys.executable, "-m", "keyhook", "sim", "--state", str(state), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _lines_until(proc: subprocess.Popen, pattern: str, timeout: float = 60) -> list[str]:
    lines, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if re.search(pattern, line):
            return lines
    raise AssertionError(f"no line matching {pattern!r}:\n" + "\n".join(lines))


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.mark.parametrize("form,heap", [("romfs", 280), ("mpy", 320)])
def test_info_reports_the_heap_the_sim_was_given(tmp_path, radio, form, heap):
    state = tmp_path / "state"
    proc = _sim(radio, state, "--code", form, "--heap", str(heap))
    try:
        lines = _lines_until(proc, r"advertising as")
        head = "\n".join(lines)
        assert f"firmware as {form}" in head and f"GC heap {heap} KiB" in head
        image = int(re.search(r"\+ (\d+) B ROMFS image", head).group(1)) if form == "romfs" else 0
        code = re.search(r"setup code (\d{8})", head).group(1)
        address = vradio.address_for_state(state)
        config = tmp_path / "app"
        run(onboard(address, code, radio=str(radio), keystore=Keystore(config)))
        info = json.loads(cli("info", address, "--json", radio=radio, config=config).stdout)
        h = info["heap"]
        # the interpreter's heap is what --heap said, plus the ROMFS image that stands for flash
        # (less the GC's own allocation table, about 1/33 of it)
        given = heap * 1024 + image
        assert 0.95 * given <= h["size"] <= given, h
        assert 0 < h["largest_free"] <= h["free"] < h["size"]
        assert 0 < h["lowest_free"] <= h["size"]
        human = re.sub(r"[\s│]+", " ", cli("info", address, radio=radio, config=config).stdout)  # table cells unwrapped
        assert "largest free block" in human and "lowest free since boot" in human, human
    finally:
        _stop(proc)


def test_a_heap_too_small_ends_the_device_at_once_saying_so(tmp_path, radio):
    t0 = time.monotonic()
    proc = _sim(radio, tmp_path / "state", "--code", "mpy", "--heap", "24")
    try:
        out, _ = proc.communicate(timeout=60)
    finally:
        _stop(proc)
    assert proc.returncode == 2
    assert "ran out of memory while it started (GC heap 24 KiB)" in out and "--heap KIB" in out, out
    assert time.monotonic() - t0 < 30  # the host does not wait for a device that is gone
