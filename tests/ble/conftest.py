"""Fixtures for the BLE tests: simulated devices (MicroPython unix port) on a private radio."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from keyhook.boards import mp
from keyhook.sim import radio as vr
from keyhook.sim.device import stop_process

TESTS = Path(__file__).resolve().parents[1]
MP_HELPERS = TESTS / "mp"


class SimDevice:
    """A MicroPython script on the virtual radio; its stdout JSON lines are its events."""

    def __init__(self, script: str, radio: Path, state: Path, args: tuple[str, ...] = (), env: dict | None = None):
        self.script = MP_HELPERS / script
        self.radio = radio
        self.state = state
        self.args = args
        self.extra_env = env or {}
        self.lines: list[dict] = []
        self.stderr = b""
        self._q: queue.Queue = queue.Queue()
        self.proc: subprocess.Popen | None = None
        self.ready: dict = {}

    def start(self, timeout: float = 30.0) -> "SimDevice":
        env = mp.micropython_env([MP_HELPERS])
        env.update(vr.device_env(self.radio, self.state))
        env.update(self.extra_env)
        self.proc = subprocess.Popen(mp.micropython_cmd(self.script, self.args), env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        threading.Thread(target=self._pump, daemon=True).start()
        self.ready = self.expect(lambda d: d.get("event") == "ready" or d.get("ready"), timeout)
        return self

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        for raw in self.proc.stdout:
            try:
                d = json.loads(raw)
            except ValueError:
                d = {"text": raw.decode(errors="replace").rstrip()}
            self._q.put(d)
        self._q.put(None)

    def expect(self, pred, timeout: float = 10.0) -> dict:
        """The next event line matching `pred` (earlier non-matching lines are kept in `lines`)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                d = self._q.get(timeout=max(0.01, left))
            except queue.Empty:
                raise AssertionError(f"no matching event within {timeout} s; seen: {self.lines[-20:]}"
                                     f"\nstderr: {self.read_stderr()}") from None
            if d is None:
                raise AssertionError(f"device exited {self.proc.wait()}; seen: {self.lines[-20:]}"
                                     f"\nstderr: {self.read_stderr()}")
            self.lines.append(d)
            if pred(d):
                return d

    def drain(self, wait: float = 0.2) -> list[dict]:
        """Every event that arrives within `wait` seconds."""
        out = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            try:
                d = self._q.get(timeout=left)
            except queue.Empty:
                break
            if d is None:
                break
            self.lines.append(d)
            out.append(d)
        return out

    def read_stderr(self) -> str:
        if self.proc and self.proc.poll() is not None and self.proc.stderr:
            self.stderr += self.proc.stderr.read()
        return self.stderr.decode(errors="replace")

    @property
    def address(self) -> str:
        return self.ready.get("address") or vr.address_for_state(self.state)

    def stop(self) -> None:
        if self.proc:
            stop_process(self.proc)


@pytest.fixture(autouse=True)
def _no_link_delays(monkeypatch):
    monkeypatch.setenv("KEYHOOK_RADIO_LINK", "0")
    monkeypatch.delenv("KEYHOOK_RADIO", raising=False)


@pytest.fixture
def radio():
    # short path: a Unix socket path is limited to 107 bytes
    path = Path(tempfile.mkdtemp(prefix="khr-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sim(radio, tmp_path):
    started: list[SimDevice] = []

    def start(script: str, *args: str, name: str = "dev", env: dict | None = None) -> SimDevice:
        d = SimDevice(script, radio, tmp_path / name, args, env)
        started.append(d)
        return d.start()

    yield start
    for d in started:
        d.stop()
