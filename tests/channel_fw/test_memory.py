"""The channel in a small GC heap: the firmware, compiled to .mpy as on a board, pairs, opens a
session and takes full 8 KiB payloads (plain and zlib) inside HEAP bytes of GC heap.

The app's side runs in the same MicroPython process (firmware crypto, role B) and is dropped
before the frames are fed in. The unix port is 64-bit, so its objects are larger than the
ESP32's: a heap that suffices here suffices there for this code path."""

from __future__ import annotations

import json
import subprocess
import zlib
from pathlib import Path

from keyhook.boards import mp
from keyhook.paths import FIRMWARE

HEAP = 200_000  # 30 runs of 30 passed; at 160 kB 7 of 10 (the heap fragments differently per key)

SCRIPT = r"""
import asyncio, gc, json, os
from hashlib import sha256
from kh.crypto import spake2, x25519
from kh.crypto.hmac import hkdf, hmac_sha256
from kh.session import frames
from kh.session.channel import Channel, derive_w, u8len
from kh.session.device import Device

def recv(ch, rec):
    return asyncio.run(ch.receive(rec))

dev = Device(ROOT, log=lambda s: None)
dev.set_setup_code("12345678")
B = b"keyhook-app:" + b"b" * 32
ch = Channel(dev)
r, _ = recv(ch, b"\x01" + u8len(B))
app = spake2.Spake2("B", derive_w("12345678", dev.identity, B), dev.identity, B, b"keyhook-pair-v1")
ke, cb, ca = app.finish(r[0][2 + r[0][1]:])
r, _ = recv(ch, b"\x03" + app.share + cb)
paired = r[0][0] == 4
app = ke = cb = ca = None
sk, ea = x25519.keypair()
r, _ = recv(ch, b"\x10" + ea)
n = r[0][1]
ed = r[0][2 + n:2 + n + 32]
th = sha256(b"keyhook-session-v2" + u8len(dev.identity) + ea + ed).digest()
pk = dev.pairing_key("b" * 32)
okm = hkdf(th, x25519.x25519(sk, ed) + pk, b"keyhook-session-keys-v1", 128)
r, _ = recv(ch, b"\x12" + hmac_sha256(pk, b"app", th))
tx = frames.Direction(okm[0:32], okm[32:64])
body = json.dumps({"id": 1, "a": "x" * 8150}).encode()
with open(ZFILE, "rb") as f:
    z = f.read()
recs = [tx.seal(b"\x00" + body), tx.seal(b"\x01" + z)]
tx = body = z = okm = th = pk = sk = ea = ed = r = None
gc.collect()
free_before = gc.mem_free()
got = []
for rec in recs:
    r, msg = recv(ch, rec)
    got.append(msg is not None and len(msg["a"]) == 8150 and not r)
    msg = r = None
recs = None
gc.collect()
print(json.dumps({"paired": paired, "session": ch.app_id is not None, "frames": got,
                  "free_before_frames": free_before, "free_after": gc.mem_free()}))
"""


def _mpy_cross() -> str:
    from keyhook.boards.build import mpy_cross_binary

    return mpy_cross_binary()


def compile_firmware(dest: Path) -> Path:
    mpy_cross = _mpy_cross()
    for src in FIRMWARE.rglob("*.py"):
        out = dest / src.relative_to(FIRMWARE).with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([str(mpy_cross), "-o", str(out), str(src)], check=True)
    return dest


def run_in_heap(tmp_path: Path, heap: int) -> dict:
    fw = compile_firmware(tmp_path / "mpy")
    zfile = tmp_path / "body.z"
    zfile.write_bytes(zlib.compress(json.dumps({"id": 1, "a": "x" * 8150}).encode()))
    script = tmp_path / "heap_run.py"
    script.write_text(SCRIPT.replace("ROOT", repr(str(tmp_path / "store"))).replace("ZFILE", repr(str(zfile))))
    mpy_script = tmp_path / "heap_run.mpy"
    subprocess.run([_mpy_cross(), "-o", str(mpy_script), str(script)], check=True)
    proc = subprocess.run(mp.micropython_cmd("-m", [], heap)[:-1] + ["-m", "heap_run"],
                          env=mp.micropython_env([tmp_path], fw), capture_output=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode() + proc.stdout.decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


def test_channel_fits_a_small_heap(tmp_path):
    got = run_in_heap(tmp_path, HEAP)
    assert got["paired"] and got["session"] and got["frames"] == [True, True], got
