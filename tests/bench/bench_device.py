"""Device figures (issue 4): pushing 20 pinned-certificate rules through the simulated BLE link,
against the link's own capacity under the same timing model, and the running firmware's GC heap.

The device is the real firmware (modules compiled to .mpy for the unix port) as a simulated
device; the host is the `keyhook` library over bleak with the virtual-radio backend. Capacity is
the radio model's `packets_per_event * (MTU - 3) / interval` bytes per second, app to device; the
figure is the record bytes the push wrote divided by its wall time, as a share of capacity.
Heap: `mem_alloc` after a collection, idle with BLE active; the peak is the smallest
`micropython -X heapsize` at which a device boots, takes the 20-rule push and fires a rule.
Both heap figures are reported by the device inside a session, so they include the connection's
code (channel, commands); the pairing crypto is unloaded after onboarding, the rule validator
after the push, and the request engine is loaded by the first fire (it stays until a pairing).
bench_size.py has the heap with no app connected.
"""

from __future__ import annotations

from benchkit import smallest  # tests/bench/ is on the path (run.py, or running the file)

import asyncio
import os
import tempfile
import time
from pathlib import Path

from keyhook import boards
from keyhook.boards.build import compile_firmware
from keyhook.session.device import DeviceClient, onboard
from keyhook.lab.devpki import make_pki
from keyhook.session.keystore import Keystore
from keyhook.lab.receiver import Receiver
from keyhook.sim import radio as vr
from keyhook.sim.device import SimDevice

MODEL = vr.LinkModel(interval_s=0.015, packets_per_event=4)
RULES = 20


def _rules(pki, url: str) -> list[dict]:
    return [{"functionName": f"door {i:02d}", "definition": {
        "method": "Post", "url": url, "securityLevel": "TlsPinnedCertificate", "pinnedCertificate": pki.leaf.pem,
        "body": {"contentType": "application/json", "content": {"door": i}}, "timeout": 3000}}
        for i in range(RULES)]


def _normalised(rules):
    from keyhook.rules import normalise_all
    return normalise_all(rules)[0]


async def _push(dev: SimDevice, ks: Keystore, rules: list[dict], mtu: int) -> tuple[float, int]:
    async with DeviceClient(dev.address, radio=str(dev.radio), keystore=ks, mtu=mtu) as d:
        link = d.session.link
        sent = 0
        orig = link.send

        async def counting(record: bytes) -> None:
            nonlocal sent
            sent += len(record)
            await orig(record)
        link.send = counting
        t0 = time.perf_counter()
        await d.put_rules(rules)
        return time.perf_counter() - t0, sent


def _mpy_tree(out: Path) -> Path:
    compile_firmware(boards.load("unix"), out)
    return out


async def _session(dev: SimDevice, ks: Keystore, fn):
    async with DeviceClient(dev.address, radio=str(dev.radio), keystore=ks) as d:
        return await fn(d)


def _boot_push_fire(tmp: Path, fw: Path, rules, heapsize: int | None) -> dict | None:
    """Boot a fresh device, onboard, push, fire one rule; the device's info, or None if it failed."""
    radio = Path(tempfile.mkdtemp(prefix="khb-"))
    dev = SimDevice(radio, tmp / f"state-{heapsize}", firmware=fw, heapsize=heapsize)
    ks = Keystore(tmp / f"ks-{heapsize}")
    try:
        dev.start(timeout=20)
        asyncio.run(onboard(dev.address, dev.setup_code, radio=str(radio), keystore=ks))
        idle = asyncio.run(_session(dev, ks, lambda d: d.info()))

        async def work(d):
            await d.wifi("bench", "pw")
            await d.put_rules(rules)
            result = await d.trigger(rules[0]["functionName"])
            return result, await d.info()
        result, after = asyncio.run(_session(dev, ks, work))
        if result.get("status") != 200:
            return None
        return {"idle": idle, "after": after}
    except Exception:
        return None
    finally:
        dev.stop()


def run() -> list[dict]:
    rows = []
    old_link = os.environ.get("KEYHOOK_RADIO_LINK")
    with tempfile.TemporaryDirectory(prefix="kh-bench-dev-") as d:
        tmp = Path(d)
        pki = make_pki(tmp / "pki")
        fw = _mpy_tree(tmp / "fw")
        from keyhook.lab.receiver import server_context
        with Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)) as rx:
            rules = _normalised(_rules(pki, rx.url("/door", host="localhost")))
            os.environ["KEYHOOK_RADIO_LINK"] = f"interval_ms={MODEL.interval_s * 1000},packets={MODEL.packets_per_event}"
            try:
                for mtu in (247, 23):
                    radio = Path(tempfile.mkdtemp(prefix="khb-"))
                    dev = SimDevice(radio, tmp / f"push-{mtu}", firmware=fw)
                    ks = Keystore(tmp / f"ks-push-{mtu}")
                    with dev:
                        asyncio.run(onboard(dev.address, dev.setup_code, radio=str(radio), keystore=ks))
                        seconds, sent = asyncio.run(_push(dev, ks, rules, mtu))
                    rate = sent / seconds
                    cap = MODEL.capacity(mtu)
                    rows.append({"figure": f"push {RULES} pinned rules, MTU {mtu}", "value": round(seconds, 2),
                                 "unit": "s", "reference": f"{sent} B; link capacity {cap / 1000:.1f} kB/s",
                                 "ratio": round(rate / cap, 2), "goal": ">= 0.80 of capacity",
                                 "met": rate / cap >= 0.80})
            finally:
                if old_link is None:
                    os.environ.pop("KEYHOOK_RADIO_LINK", None)
                else:
                    os.environ["KEYHOOK_RADIO_LINK"] = old_link
            os.environ["KEYHOOK_RADIO_LINK"] = "0"
            try:
                full = _boot_push_fire(tmp, fw, rules, None)
                if full:
                    rows.append({"figure": "idle GC heap in use, BLE active (.mpy)",
                                 "value": round(full["idle"]["mem_alloc"] / 1024, 1), "unit": "KiB"})
                    rows.append({"figure": "GC heap in use after a 20-rule push and a fire",
                                 "value": round(full["after"]["mem_alloc"] / 1024, 1), "unit": "KiB"})
                # KiB: the smallest heap that still boots, takes the push and fires
                hi = smallest(lambda k: _boot_push_fire(tmp, fw, rules, k * 1024), 64, 512, step=4)
                rows.append({"figure": "peak: smallest -X heapsize for boot + 20-rule push + fire (.mpy)",
                             "value": hi, "unit": "KiB", "reference": "ESP32 GC heap ~100 KiB",
                             "ratio": round(hi / 100, 2) if hi else None, "goal": "<= 100 KiB",
                             "met": hi is not None and hi <= 100})
            finally:
                if old_link is None:
                    os.environ.pop("KEYHOOK_RADIO_LINK", None)
                else:
                    os.environ["KEYHOOK_RADIO_LINK"] = old_link
    return rows
