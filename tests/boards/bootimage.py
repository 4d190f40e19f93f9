"""Boot the firmware from a `keyhook build --board unix` image, on the unix port, with the
simulated radio: the code comes from the image's own .mpy files (mounted read-only at /img,
`firmware/` removed from sys.path), the data partition is a copy of the same image mounted at
/flash by boards/unix/keyhook_board.py, as a real board has both on one littlefs partition.

`boot(image, workdir, radio)` starts it and returns the process and the first report line
printed once the device has been idle for a moment: GC heap in use, modules and where they
came from."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

from keyhook.boards import mp
from keyhook.sim import radio as vradio
from keyhook.sim.device import stop_process as stop  # bootimage.stop(proc) ends a booted device

MARK = "KEYHOOK-BOOT "

DRIVER = r"""
import sys, os, gc, json
import flashbd
bd = flashbd.FlashBlockDev(%(code)r, %(blocks)d)
os.mount(os.VfsLfs2(bd), "/img", readonly=True)
sys.path[:] = ["/img"] + [p for p in sys.path if not p.rstrip("/").endswith("firmware")]
import asyncio
_run = asyncio.run

def _report_after(coro):
    async def watch():
        task = asyncio.create_task(coro)
        await asyncio.sleep_ms(%(idle_ms)d)
        gc.collect()
        mods = {}
        for k in sys.modules:
            if k == "kh" or k.startswith("kh.") or k == "main":
                mods[k] = getattr(sys.modules[k], "__file__", "")
        print("%(mark)s" + json.dumps({"alloc": gc.mem_alloc(), "free": gc.mem_free(), "modules": mods}))
        await task
    return _run(watch())

asyncio.run = _report_after
import main
"""


def boot(image: Path, workdir: Path, radio: Path, blocks: int, heapsize: int | None = None,
         idle_ms: int = 1500, timeout: float = 60) -> tuple[subprocess.Popen, dict, list[str]]:
    state = workdir / "state"
    state.mkdir(parents=True, exist_ok=True)
    radio.mkdir(parents=True, exist_ok=True)
    code = workdir / "code.img"
    shutil.copyfile(image, code)
    shutil.copyfile(image, state / "flash.img")
    driver = workdir / "boot_driver.py"
    driver.write_text(DRIVER % {"code": str(code), "blocks": blocks, "idle_ms": idle_ms, "mark": MARK})
    env = mp.micropython_env()
    env.update(vradio.device_env(radio, state))
    proc = subprocess.Popen(mp.micropython_cmd(driver, heapsize=heapsize), env=env, cwd=state,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    found: dict = {}
    done = threading.Event()

    def read():
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append(line)
            if line.startswith(MARK) and not found:
                found.update(json.loads(line[len(MARK):]))
                done.set()
        done.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not done.is_set() and time.monotonic() < deadline:
        done.wait(0.1)
    return proc, found, lines

