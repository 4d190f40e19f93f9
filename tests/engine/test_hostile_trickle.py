"""A hostile server cannot hold the device (security review, 2026-11-30): a body that always has
a little more to read (chunked, one byte a chunk, without end) used to keep a fire reading far past
its `timeout`, and the device's event loop with it (BLE answered "busy", the button fired
nothing). The fire now ends with `timeout`, and other tasks run while it reads."""

from __future__ import annotations

import time

from kh_engine_helpers import definition, job
from kh_scripted import Scripted


def _trickle(link) -> None:
    link.read_request()
    link.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    t_end = time.monotonic() + 20  # bounded: the test's server stops by itself
    while time.monotonic() < t_end:
        link.send(b"1\r\nx\r\n" * 64)


def test_a_body_that_never_ends_is_cut_at_the_timeout(batch):
    with Scripted(_trickle, hold_s=0) as srv:
        d = definition(srv.url("/h"), "AllowHttp", timeout=1000)
        [r] = batch.run([job("trickle", d)], timeout=60)
    assert r["error"] == "timeout" and r["status"] is None, r


# Under MicroPython: a fire against the trickling server, and beside it a task that counts the
# turns it gets (the BLE service, the button and the queue are such tasks on the device).
TICKS = """
import asyncio, json, sys
from kh.engine.fire import Env, fire
from kh.http import resolve
resolve.set_connect_guard(lambda family, ip, port: None if ip == b"\\x7f\\0\\0\\x01" else 1 / 0)
turns = [0]
done = [False]

async def ticker():
    while not done[0]:
        turns[0] += 1
        await asyncio.sleep_ms(0)

async def main():
    asyncio.create_task(ticker())
    r = await fire(json.loads(sys.argv[1]), Env())
    done[0] = True
    print(json.dumps({"error": r["error"], "turns": turns[0]}))

asyncio.run(main())
"""


def test_other_tasks_run_while_a_fire_reads(micropython):
    import json

    with Scripted(_trickle, hold_s=0) as srv:
        d = definition(srv.url("/h"), "AllowHttp", timeout=1000)
        out = micropython.json(TICKS, args=[json.dumps(d)], timeout=60)
    assert out["error"] == "timeout"
    assert out["turns"] > 50, out  # the loop was not held for the whole second
