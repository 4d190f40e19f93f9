# MicroPython side of the engine tests: run many fires in one interpreter.
#   micropython khbatch.py JOBS.json  -> one JSON line per fire: {"case": name, ...result}
# JOBS.json: {"trust_dir", "state_dir", "resolve": {name: address}, "pool_size", "fault" (khfault.py),
#             "jobs": [{"case", "definition", "env": "fresh"|"shared", "pause_ms", "repeat"}]}
# Any connection attempt to an address other than 127.0.0.1 raises FireError("guard_connect")
# before a socket is even created, and a name the test did not answer is never looked up.
import sys
import json
import time
import asyncio
from kh.engine.fire import Env, fire
from kh.http import resolve
from kh.http.errors import FireError

with open(sys.argv[1]) as f:
    cfg = json.load(f)
answers = cfg.get("resolve") or {}
attempts = []


def answer(host, port):
    # test answers first; literals and localhost need no DNS; nothing else is ever looked up
    if host in answers:
        a = answers[host]
        if a == "!fail":
            raise OSError(-2, "no such name")
        return [resolve.literal(a, port)]
    if host == "localhost":
        return [resolve.literal("127.0.0.1", port)]
    if host[0].isdigit() or ":" in host:
        return [resolve.literal(host, port)]
    raise FireError("guard_dns", "a DNS query was attempted for a name the test did not answer")


def guard(family, ip, port):
    attempts.append(ip)
    if ip != b"\x7f\0\0\x01":
        raise FireError("guard_connect", "a connection was attempted")


resolve.set_resolver(answer)
resolve.set_connect_guard(guard)

shared = Env(trust_dir=cfg.get("trust_dir"), state_dir=cfg.get("state_dir"), pool_size=cfg.get("pool_size", 1))


async def main():
    if cfg.get("fault"):
        from khfault import inject

        inject(cfg["fault"])
    for job in cfg["jobs"]:
        if job.get("pause_ms"):
            await asyncio.sleep_ms(job["pause_ms"])
        env = shared
        if job.get("env", "fresh") == "fresh":
            env = Env(trust_dir=cfg.get("trust_dir"), state_dir=job.get("state_dir", cfg.get("state_dir")))
        for i in range(job.get("repeat", 1)):
            before = len(attempts)
            r = await fire(job["definition"], env)
            r["case"] = job["case"]
            r["i"] = i
            r["connect_attempts"] = len(attempts) - before
            print(json.dumps(r))
        if env is not shared:
            env.close()
    shared.close()


asyncio.run(main())
