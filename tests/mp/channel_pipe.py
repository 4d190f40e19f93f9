# The device's secure channel over stdin/stdout, for interop tests and the fuzzer (MicroPython).
#
#   micropython channel_pipe.py --store DIR [--code 12345678] [--fake-clock]
#
# Both ways, messages are framed as a 4-byte big-endian length + payload.
# Test -> device, first payload byte:
#   0x00 + a link record (one whole record, PROTOCOL.md section 2)
#   0x01 + control JSON, one of:
#        {"advance_s": n}        move the fake clock (--fake-clock) by n seconds
#        {"button": true}        press the button (lifts the rate limit and the lock-out)
#        {"state": true}         ask for the state
#        {"open_window": s}      open a pairing window for s seconds (as an admin app would)
#        {"remove": app_id}      remove a pairing
#        {"factory_reset": true} forget every pairing
#   0x02 the connection dropped (the device starts a new Channel)
# Device -> test:
#   0x00 + an outgoing link record
#   0x01 + JSON event:
#        {"event": "message", "msg": {...}}  an app message was delivered; the harness then
#                                            answers it over the session (0x00 DATA record) with
#                                            {"id": msg id, "ok": true, "echo": msg}
#        {"event": "closed", "error": code}  the channel closed after an ERROR (the harness then
#                                            starts a new Channel, as a disconnect would)
#        {"event": "state", "paired": [app ids], "failures": n, "locked": bool,
#         "session": bool, "app_id": id or null, "window_open": bool, "setup_code": "...",
#         "device_id": "...", "mem_free": n, "mem_alloc": n}
#        {"event": "ok", ...}                a control was applied ("code" for open_window,
#                                            "removed" for remove)
#        {"event": "error", "message": "..."}  a control was not understood
#        {"event": "done"}                   sent after every input once all its outputs are out:
#                                            read until it to stay in step
# The device's console log goes to stderr. EOF on stdin ends the process with status 0.
import asyncio
import gc
import json
import sys

from kh.session.channel import Channel
from kh.session.device import Device


class FakeClock:
    def __init__(self):
        self.ms = 0

    def __call__(self):
        return self.ms


def _log(line):
    sys.stderr.write(line + "\n")


def _read_exact(stream, n):
    buf = b""
    while len(buf) < n:
        chunk = stream.read(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def _args(argv):
    opts = {"store": None, "code": None, "fake_clock": False}
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--store":
            opts["store"] = argv[i + 1]
            i += 2
        elif a == "--code":
            opts["code"] = argv[i + 1]
            i += 2
        elif a == "--fake-clock":
            opts["fake_clock"] = True
            i += 1
        else:
            raise SystemExit("unknown argument " + a)
    if not opts["store"]:
        raise SystemExit("usage: channel_pipe.py --store DIR [--code 12345678] [--fake-clock]")
    return opts


class Pipe:
    def __init__(self, opts):
        self.clock = FakeClock() if opts["fake_clock"] else None
        self.device = Device(opts["store"], clock_ms=self.clock, log=_log)
        if opts["code"] and opts["code"] != self.device.setup_code():
            self.device.set_setup_code(opts["code"])
        self.channel = Channel(self.device)
        self.out = sys.stdout.buffer

    def send(self, kind, payload):
        data = bytes((kind,)) + payload
        self.out.write(len(data).to_bytes(4, "big") + data)

    def event(self, obj):
        self.send(1, json.dumps(obj).encode())

    def state(self):
        gc.collect()
        d = self.device
        ch = self.channel
        return {
            "event": "state",
            "paired": d.pairings(),
            "failures": d.limit.failures,
            "locked": d.limit.locked(),
            "session": ch.app_id is not None and not ch.closed,
            "app_id": ch.app_id,
            "window_open": d.window_open(),
            "setup_code": d.setup_code(),
            "device_id": d.device_id,
            "mem_free": gc.mem_free(),
            "mem_alloc": gc.mem_alloc(),
        }

    def control(self, raw):
        try:
            c = json.loads(raw)
        except ValueError:
            self.event({"event": "error", "message": "control is not JSON"})
            return
        if not isinstance(c, dict):
            self.event({"event": "error", "message": "control is not a JSON object"})
        elif "advance_s" in c:
            if self.clock is None:
                self.event({"event": "error", "message": "advance_s needs --fake-clock"})
            else:
                self.clock.ms += int(c["advance_s"] * 1000)
                self.event({"event": "ok"})
        elif c.get("button"):
            self.device.button_pressed()
            self.event({"event": "ok"})
        elif c.get("state"):
            self.event(self.state())
        elif "open_window" in c:
            self.event({"event": "ok", "code": self.device.open_pairing_window(c["open_window"])})
        elif "remove" in c:
            self.event({"event": "ok", "removed": self.device.remove_pairing(c["remove"])})
        elif c.get("factory_reset"):
            self.device.factory_reset()
            self.event({"event": "ok"})
        else:
            self.event({"event": "error", "message": "unknown control"})

    async def record(self, rec):
        replies, msg = await self.channel.receive(rec)
        for r in replies:
            self.send(0, r)
        if msg is not None:
            self.event({"event": "message", "msg": msg})
            try:
                reply = self.channel.seal({"id": msg.get("id"), "ok": True, "echo": msg})
            except ValueError:
                reply = self.channel.seal({"id": msg.get("id"), "ok": False, "error": "too_large"})
            self.send(0, reply)
        if self.channel.closed:
            self.event({"event": "closed", "error": self.channel.error})
            self.channel = Channel(self.device)

    async def run(self):
        inp = sys.stdin.buffer
        while True:
            head = _read_exact(inp, 4)
            if head is None:
                return
            n = int.from_bytes(head, "big")
            data = _read_exact(inp, n) if n else b""
            if data is None or n == 0:
                return
            kind = data[0]
            if kind == 0:
                await self.record(data[1:])
            elif kind == 1:
                self.control(data[1:])
            elif kind == 2:
                self.channel.close()
                self.channel = Channel(self.device)
            else:
                self.event({"event": "error", "message": "unknown input kind"})
            self.event({"event": "done"})


asyncio.run(Pipe(_args(sys.argv[1:])).run())
