"""Figures for the host side of the secure channel (CPython, `cryptography` + `ecdsa`).

Host-side pairing work (SPAKE2 role B), session handshake work, DATA frame seal+open
throughput at 1 KiB and 16 KiB (16 KiB = two frames, as a request of that size would go)
against raw AES-256-CTR + HMAC-SHA256 from `cryptography` over the same bytes in the same run,
and one request round trip to the real firmware over the in-memory pipe.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from keyhook.session.keystore import Keystore
from keyhook.session import open_session, pair
from keyhook.session.frames import FrameOpener, FrameSealer
from keyhook.session.pairing import AAD, password_scalar
from keyhook.session.spake2 import Spake2

HERE = Path(__file__).resolve().parent


def best(f, n=20) -> float:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        out.append(time.perf_counter() - t)
    return min(out)


def _raw(key: bytes, data: bytes) -> None:
    enc = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).encryptor()
    c = enc.update(data) + enc.finalize()
    for _ in range(2):  # the sender's tag and the receiver's check
        h = hmac.HMAC(key, hashes.SHA256())
        h.update(c)
        h.finalize()
    dec = Cipher(algorithms.AES(key), modes.CTR(bytes(16))).decryptor()
    dec.update(c) + dec.finalize()


def run() -> list[dict]:
    rows = []
    a_id, b_id = b"keyhook-device:0123456789ab", b"keyhook-app:" + b"a" * 32
    w = password_scalar("12345678", a_id, b_id)
    device = Spake2("A", w, a_id, b_id, AAD)

    def app_side():
        s = Spake2("B", w, a_id, b_id, AAD)
        s.finish(device.message)
    rows.append({"figure": "host pairing work (SPAKE2 role B: pB, K, keys)", "value": round(best(app_side) * 1000, 2),
                 "unit": "ms"})

    key = os.urandom(32)
    for size in (1024, 16384):
        chunks = [os.urandom(min(8000, size - i)) for i in range(0, size, 8000)]

        def frames():
            s, o = FrameSealer(key, key), FrameOpener(key, key)
            for c in chunks:
                o.open(s.seal(c))
        t_frames = best(frames, 50)
        t_raw = best(lambda: [_raw(key, c) for c in chunks], 50)
        rows.append({"figure": f"host DATA seal+open, {size // 1024} KiB", "value": round(size / t_frames / 1e6, 1),
                     "unit": "MB/s", "reference": f"raw AES-CTR+HMAC {size / t_raw / 1e6:.1f} MB/s",
                     "ratio": round(t_raw / t_frames, 2)})

    sys.path.insert(0, str(HERE.parent))
    from channel.pipe import FirmwareDevice, PipeLink

    with tempfile.TemporaryDirectory() as tmp:
        dev = FirmwareDevice(Path(tmp) / "store")
        try:
            ks = Keystore(Path(tmp) / "ks")
            t = time.perf_counter()
            asyncio.run(pair(PipeLink(dev), "12345678", ks))
            rows.append({"figure": "pairing end to end, host + firmware over the pipe",
                         "value": round((time.perf_counter() - t) * 1000, 1), "unit": "ms"})

            async def sessions(n=10):
                t = time.perf_counter()
                for _ in range(n):
                    s = await open_session(PipeLink(dev), ks)
                t_open = (time.perf_counter() - t) / n
                t = time.perf_counter()
                for i in range(n):
                    await s.request("info", pad=os.urandom(450).hex())  # incompressible
                return t_open, (time.perf_counter() - t) / n
            t_open, t_req = asyncio.run(sessions())
            rows.append({"figure": "session set-up end to end, host + firmware over the pipe",
                         "value": round(t_open * 1000, 1), "unit": "ms"})
            rows.append({"figure": "1 KiB request round trip over the pipe (device echoes it)",
                         "value": round(t_req * 1000, 2), "unit": "ms"})
        finally:
            dev.stop()
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
