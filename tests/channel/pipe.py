"""The firmware's channel under the MicroPython unix port, driven over `tests/mp/channel_pipe.py`.

`FirmwareDevice` speaks the harness's framing (4-byte big-endian length, then 0x00 record /
0x01 control JSON / 0x02 disconnect; the device answers records and JSON events and ends every
input with `{"event": "done"}`). `PipeLink` is a `RecordLink` over it, so the host's real
`pair`/`open_session` run against the real firmware.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import subprocess
from pathlib import Path

from keyhook.boards import mp
from keyhook.session.errors import LinkClosed, LinkTimeout

TESTS = Path(__file__).resolve().parents[1]
MP_HELPERS = TESTS / "mp"
CHANNEL_PIPE = MP_HELPERS / "channel_pipe.py"
READ_TIMEOUT_S = 60.0


class DeviceCrashed(AssertionError):
    pass


class FirmwareDevice:
    """One MicroPython process running the device's channel; restart() is a power cycle."""

    def __init__(self, store: Path, code: str | None = "12345678", fake_clock: bool = True,
                 heapsize: int | None = None) -> None:
        self.store = Path(store)
        self.store.mkdir(parents=True, exist_ok=True)
        self.code = code
        self.fake_clock = fake_clock
        self.heapsize = heapsize
        self.log_path = self.store.parent / f"{self.store.name}.stderr.log"
        self.proc: subprocess.Popen | None = None
        self.start()

    # -- process --------------------------------------------------------------------------
    def start(self) -> None:
        args = ["--store", str(self.store)]
        if self.code:
            args += ["--code", self.code]
        if self.fake_clock:
            args.append("--fake-clock")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            mp.micropython_cmd(CHANNEL_PIPE, args, self.heapsize),
            env=mp.micropython_env([MP_HELPERS]),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            cwd=str(self.store.parent))
        self._buf = b""
        self.state()  # in step: the device has booted (and written its identity)

    def stop(self) -> int:
        """Close stdin (the harness exits 0 on EOF) and return the exit status."""
        if self.proc is None:
            return 0
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            rc = self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc.stdout.close()
        self._log.close()
        self.proc = None
        return rc

    def restart(self) -> None:
        """A power cycle: the process ends and starts again on the same store."""
        rc = self.stop()
        assert rc == 0, f"device exited {rc}: {self.log()}"
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def __enter__(self) -> "FirmwareDevice":
        return self

    def __exit__(self, *exc) -> None:
        rc = self.stop()
        if exc[0] is None:
            assert rc == 0, f"device exited {rc}: {self.log()[-2000:]}"

    # -- framing --------------------------------------------------------------------------
    def _read_exact(self, n: int) -> bytes:
        fd = self.proc.stdout.fileno()
        while len(self._buf) < n:
            ready, _, _ = select.select([fd], [], [], READ_TIMEOUT_S)
            if not ready:
                raise DeviceCrashed(f"device silent for {READ_TIMEOUT_S} s: {self.log()[-2000:]}")
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                raise DeviceCrashed(f"device exited ({self.proc.poll()}): {self.log()[-2000:]}")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _write(self, kind: int, payload: bytes = b"") -> None:
        data = bytes([kind]) + payload
        try:
            self.proc.stdin.write(len(data).to_bytes(4, "big") + data)
            self.proc.stdin.flush()
        except BrokenPipeError as e:
            raise DeviceCrashed(f"device gone: {self.log()[-2000:]}") from e

    def exchange(self, kind: int, payload: bytes = b"") -> tuple[list[bytes], list[dict]]:
        """Send one input; return the records and the events it produced (up to "done")."""
        self._write(kind, payload)
        recs, events = [], []
        while True:
            n = int.from_bytes(self._read_exact(4), "big")
            data = self._read_exact(n)
            if data[:1] == b"\x00":
                recs.append(data[1:])
            elif data[:1] == b"\x01":
                ev = json.loads(data[1:])
                if ev.get("event") == "done":
                    return recs, events
                events.append(ev)
            else:
                raise DeviceCrashed(f"unknown output kind {data[:1]!r}")

    def record(self, rec: bytes) -> tuple[list[bytes], list[dict]]:
        return self.exchange(0, bytes(rec))

    def control(self, **c) -> dict:
        recs, events = self.exchange(1, json.dumps(c).encode())
        assert not recs and len(events) == 1, (recs, events)
        assert events[0]["event"] != "error", events[0]
        return events[0]

    def disconnect(self) -> None:
        recs, events = self.exchange(2)
        assert not recs and not events, (recs, events)

    def state(self) -> dict:
        return self.control(state=True)

    def stored(self) -> dict[str, bytes]:
        """Every file under the store (what survives a power cycle)."""
        return {str(p.relative_to(self.store)): p.read_bytes()
                for p in sorted(self.store.rglob("*")) if p.is_file()}


class PipeLink:
    """A RecordLink to a FirmwareDevice. The device answers synchronously, so an empty inbox
    on `recv` means nothing more will come: that is a time-out at once, not after `timeout`."""

    def __init__(self, device: FirmwareDevice, tamper_out=None, tamper_in=None) -> None:
        self.device = device
        self.inbox: list[bytes] = []
        self.events: list[dict] = []
        self.sent: list[bytes] = []
        self.tamper_out = tamper_out
        self.tamper_in = tamper_in
        self.closed = False
        device.disconnect()  # a new link is a new connection: the device starts a fresh channel

    async def send(self, record: bytes) -> None:
        if self.closed:
            raise LinkClosed()
        record = bytes(record)
        if self.tamper_out is not None:
            record = self.tamper_out(record)
            if record is None:
                return
        self.sent.append(record)
        recs, events = self.device.record(record)
        self.events += events
        for rec in recs:
            if self.tamper_in is not None:
                rec = self.tamper_in(rec)
                if rec is None:
                    continue
            self.inbox.append(rec)
        await asyncio.sleep(0)

    async def recv(self, timeout: float) -> bytes:
        if self.inbox:
            return self.inbox.pop(0)
        if self.closed:
            raise LinkClosed()
        raise LinkTimeout()

    def messages(self) -> list[dict]:
        """The app messages the device delivered on this link."""
        return [e["msg"] for e in self.events if e.get("event") == "message"]

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.device.disconnect()
