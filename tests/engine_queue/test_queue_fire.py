"""The queue with the real fire engine (kh.engine.fire) against a local HTTP server on
127.0.0.1: what the server receives, a retried 503, a refused connection retried and given up."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


class _Recorder(BaseHTTPRequestHandler):
    answers: list[int] = []
    seen: list[dict] = []

    def _handle(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode()
        type(self).seen.append({"method": self.command, "path": self.path, "body": body,
                                "key": self.headers.get("X-Key"), "auth": self.headers.get("Authorization")})
        code = type(self).answers.pop(0) if type(self).answers else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    do_POST = do_GET = _handle

    def log_message(self, *a):
        pass


@pytest.fixture
def server():
    class H(_Recorder):
        answers = [503]
        seen = []
    srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv.server_address[1], H
    srv.shutdown()
    srv.server_close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_queue_fires_through_the_real_engine(micropython, tmp_path, server):
    port, handler = server
    closed = _closed_port()
    out = micropython.json("""
import asyncio, json, powercut
bd = powercut.RamBlockDev(blocks=32)
powercut.mount(bd, "/flash")
from kh import store
store.use("/flash/data")
from kh.store import rules
from kh.engine.fire import fire, Env
from kh.engine.log import Log
from kh.engine.queue import Queue

def rule(name, port, events):
    return {"functionName": name, "events": events, "definition": {
        "method": "Post", "url": "http://127.0.0.1:%d/hook/PATH-SECRET?x=1" % port, "securityLevel": "AllowHttp",
        "additionalHttpHeaders": {"X-Key": "HEADER-SECRET"}, "timeout": 2000,
        "body": {"contentType": "application/json", "content": "{\\"open\\": \\"BODY-SECRET\\"}"},
        "authentication": {"apiAuthenticationType": "OAuth2IssuedAccessToken", "accessToken": "TOKEN-SECRET"}}}

rules.put([rule("door", PORT_OPEN, ["button:door"]), rule("down", PORT_CLOSED, ["trigger"])])
env = Env()
log = Log()
q = Queue(fire, env, log=log, net_up=None, attempts=3, backoff_ms=10)
async def main():
    n = q.event("button:door")
    t = q.trigger("down")
    await q.drain()
    return n, q.outcome(1), q.outcome(t)
n, door, down = asyncio.run(main())
env.close()
print(json.dumps({"n": n, "door": door, "down": down, "log": log.lines()}))
""".replace("PORT_OPEN", str(port)).replace("PORT_CLOSED", str(closed)), timeout=60)
    assert out["n"] == 1
    door = out["door"]
    assert door["sent"] is True and isinstance(door["elapsed_ms"], int)
    assert door == {**door, "name": "door", "status": 200, "error": None, "attempts": 2}  # 503, then 200
    assert len(handler.seen) == 2
    for req in handler.seen:  # what the server received, both times
        assert req == {"method": "POST", "path": "/hook/PATH-SECRET?x=1", "body": '{"open": "BODY-SECRET"}',
                       "key": "HEADER-SECRET", "auth": "Bearer TOKEN-SECRET"}
    assert out["down"] == {**out["down"], "name": "down", "status": None, "error": "connect", "attempts": 3,
                           "sent": False}
    log = out["log"]
    assert any('"door" status=503 attempt=1/3 retry_in_ms=10' in l for l in log)
    assert log[-1].endswith('"down" error=connect attempt=3/3 gave_up')
    text = json.dumps(log)
    assert not any(s in text for s in ("PATH-SECRET", "HEADER-SECRET", "BODY-SECRET", "TOKEN-SECRET", "127.0.0.1"))
