"""Drive the firmware's channel (tests/mp/channel_pipe.py under MicroPython) from CPython."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path

from keyhook.boards import mp
from keyhook.session.errors import LinkClosed, LinkTimeout

HERE = Path(__file__).resolve().parent
MP_HELPERS = HERE.parent / "mp"
PIPE = MP_HELPERS / "channel_pipe.py"
CODE = "12345678"


class FirmwarePipe:
    """One MicroPython process running the device's channel over a store directory."""

    def __init__(self, store: Path, code: str | None = "12345678", fake_clock: bool = True,
                 heapsize: int | None = None, firmware: Path | None = None) -> None:
        args = ["--store", str(store)]
        if code:
            args += ["--code", code]
        if fake_clock:
            args.append("--fake-clock")
        self.proc = subprocess.Popen(
            mp.micropython_cmd(PIPE, args, heapsize), env=mp.micropython_env([MP_HELPERS], firmware),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.messages: list[dict] = []   # app messages the device delivered
        self.closed: list[int] = []      # ERROR codes that closed a channel

    def _send(self, kind: int, payload: bytes = b"") -> None:
        data = bytes([kind]) + payload
        self.proc.stdin.write(len(data).to_bytes(4, "big") + data)
        self.proc.stdin.flush()

    def _read(self) -> tuple[int, bytes]:
        head = self.proc.stdout.read(4)
        if len(head) < 4:
            raise RuntimeError("the firmware pipe ended: " + self.proc.stderr.read().decode(errors="replace"))
        data = self.proc.stdout.read(int.from_bytes(head, "big"))
        return data[0], data[1:]

    def _until_done(self) -> tuple[list[bytes], list[dict]]:
        records, events = [], []
        while True:
            kind, body = self._read()
            if kind == 0:
                records.append(body)
                continue
            ev = json.loads(body)
            if ev["event"] == "done":
                return records, events
            if ev["event"] == "message":
                self.messages.append(ev["msg"])
            if ev["event"] == "closed":
                self.closed.append(ev["error"])
            events.append(ev)

    def record(self, rec: bytes) -> tuple[list[bytes], list[dict]]:
        """Send one link record; return the device's records and events."""
        self._send(0, rec)
        return self._until_done()

    def control(self, obj: dict) -> dict:
        self._send(1, json.dumps(obj).encode())
        _, events = self._until_done()
        assert len(events) == 1, events
        return events[0]

    def state(self) -> dict:
        return self.control({"state": True})

    def drop(self) -> None:
        self._send(2)
        self._until_done()

    def close(self) -> str:
        """End the process (EOF on its stdin); return what it logged on stderr."""
        if self.proc.stderr.closed:
            return ""
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        err = self.proc.stderr.read().decode(errors="replace")
        self.proc.stdout.close()
        self.proc.stderr.close()
        return err


class PipeLink:
    """A `RecordLink` for the host's session code over a `FirmwarePipe`."""

    def __init__(self, pipe: FirmwarePipe) -> None:
        self.pipe = pipe
        self.inbox: list[bytes] = []
        self.sent: list[bytes] = []

    async def send(self, record: bytes) -> None:
        self.sent.append(record)
        records, _ = await asyncio.to_thread(self.pipe.record, record)
        self.inbox.extend(records)

    async def recv(self, timeout: float) -> bytes:
        if not self.inbox:
            if self.pipe.closed:
                raise LinkClosed("the device closed the channel")
            raise LinkTimeout("nothing from the device")
        return self.inbox.pop(0)
