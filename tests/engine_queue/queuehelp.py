"""MicroPython prelude for the queue tests: a RAM littlefs with the real rules store, a fake
clock whose sleeps advance time instantly, and a scripted fake fire that records its calls."""

PRELUDE = r"""
import asyncio, json, powercut
bd = powercut.RamBlockDev(blocks=32)
powercut.mount(bd, "/flash")
from kh import store
store.use("/flash/data")
from kh.store import rules
from kh.engine.log import Log
from kh.engine.queue import Queue
from kh.http.errors import FireError

class Clock:
    def __init__(self):
        self.t = 100000
        self.sleeps = []
    def ticks(self):
        return self.t
    def diff(self, a, b):
        return a - b
    async def sleep(self, ms):
        self.sleeps.append(ms)
        self.t += ms
        await asyncio.sleep_ms(0)

clock = Clock()
calls = []
script = {}   # name -> list of results (dicts, or exceptions to raise), used in turn

async def fake_fire(rule, env):
    name = rule["functionName"]
    calls.append([name, clock.t, rule["definition"]["url"]])
    todo = script.get(name)
    res = todo.pop(0) if todo else {"sent": True, "status": 200, "error": None}
    clock.t += 5
    if isinstance(res, Exception):
        raise res
    res = dict(res)
    res.setdefault("elapsed_ms", 5)
    return res

log = Log(size=16, clock=lambda: 0, ticks_ms=clock.ticks)

def rule(name, events=None, method="Post", url=None):
    r = {"functionName": name, "definition": {"method": method, "url": url or "https://h.example/hook/PATH-SECRET",
         "securityLevel": "TlsWithCACheck", "additionalHttpHeaders": {"X-Key": "HEADER-SECRET"},
         "authentication": {"apiAuthenticationType": "OAuth2IssuedAccessToken", "accessToken": "TOKEN-SECRET"},
         "body": {"contentType": "text/plain", "content": "BODY-SECRET"}}}
    if events is not None:
        r["events"] = events
    return r

def queue(**kw):
    kw.setdefault("net_up", None)
    return Queue(fake_fire, env="ENV", log=log, sleep_ms=clock.sleep, ticks_ms=clock.ticks,
                 ticks_diff=clock.diff, **kw)

def run(coro):
    return asyncio.run(coro)

def report(**extra):
    d = {"calls": calls, "sleeps": clock.sleeps, "log": log.lines()}
    d.update(extra)
    print(json.dumps(d))
"""

SECRETS = ("PATH-SECRET", "HEADER-SECRET", "TOKEN-SECRET", "BODY-SECRET")
