"""BLE link figures: raw record transfer through the simulated link against the link's capacity.

The device is kh.gatt on the MicroPython unix port (tests/mp/gatt_echo.py); the host is
keyhook.ble over bleak with the virtual-radio backend. The link runs the radio's timing model
(connection interval, packets per connection event, at most MTU - 3 bytes per packet); its
capacity under that model is `packets * (MTU - 3) / interval` bytes per second per direction.
Figures: record bytes moved per second, app to device and device to app, at MTU 247 and 23,
as a ratio of that capacity (goal 80 %). Without the model (interval 0) the figure is what the
firmware and host can process, for reference.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from keyhook import ble
from keyhook.boards import mp
from keyhook.sim import radio as vr

HERE = Path(__file__).resolve().parent
MP_HELPERS = HERE.parent / "mp"
MODEL = vr.LinkModel(interval_s=0.015, packets_per_event=4)
RECORD = 8192


def _start_device(radio: Path, state: Path) -> tuple[subprocess.Popen, str]:
    env = mp.micropython_env([MP_HELPERS])
    env.update(vr.device_env(radio, state))
    proc = subprocess.Popen(mp.micropython_cmd(MP_HELPERS / "gatt_echo.py"), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline()
    return proc, json.loads(line)["address"]


async def _transfer(radio: Path, address: str, mtu: int, model: vr.LinkModel, nbytes: int) -> tuple[float, float]:
    """Seconds to move `nbytes` of records app -> device, and device -> app."""
    count = max(1, nbytes // RECORD)
    body = b"\xfb" + bytes(i & 0xFF for i in range(RECORD - 1))
    async with ble.connect(address, radio=radio, mtu=mtu, link_model=model) as link:
        assert link.mtu == mtu
        await link.send(b"\xfa")
        base = json.loads(await link.recv(30))["bytes"]
        t0 = time.perf_counter()
        for _ in range(count):
            await link.send(body)
        await link.send(b"\xfa")
        reply = json.loads(await link.recv(120))
        up = time.perf_counter() - t0
        assert reply["bytes"] - base == count * RECORD, reply
        t0 = time.perf_counter()
        await link.send(b"\xfc" + count.to_bytes(2, "big") + RECORD.to_bytes(2, "big"))
        for _ in range(count):
            assert len(await link.recv(120)) == RECORD
        down = time.perf_counter() - t0
    return up, down


def run() -> list[dict]:
    rows = []
    radio = Path(tempfile.mkdtemp(prefix="khb-", dir="/tmp"))
    proc = None
    try:
        proc, address = _start_device(radio, radio / "state")
        for mtu, nbytes in ((247, 16 * RECORD), (23, 2 * RECORD)):
            capacity = MODEL.capacity(mtu)
            up, down = asyncio.run(_transfer(radio, address, mtu, MODEL, nbytes))
            for direction, secs in (("app -> device", up), ("device -> app", down)):
                rate = nbytes / secs
                rows.append({
                    "figure": f"records {direction}, MTU {mtu}, {MODEL.interval_s * 1000:g} ms x "
                              f"{MODEL.packets_per_event} packets/event",
                    "value": round(rate), "unit": "B/s",
                    "reference": f"{round(capacity)} B/s link capacity ({MODEL.bytes_per_event(mtu)} B/event)",
                    "ratio": round(rate / capacity, 3), "goal": ">= 0.8", "met": rate / capacity >= 0.8,
                })
            up, down = asyncio.run(_transfer(radio, address, mtu, vr.LinkModel(0, 1), nbytes))
            rows.append({"figure": f"records without link model (processing only), MTU {mtu}",
                         "value": f"{round(nbytes / up)} up / {round(nbytes / down)} down", "unit": "B/s"})
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(5)
        shutil.rmtree(radio, ignore_errors=True)
    return rows


if __name__ == "__main__":
    for row in run():
        print(row, file=sys.stdout)
