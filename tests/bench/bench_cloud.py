"""Cloud figures: requests per second of the integrator API for register (POST, validated and
HPKE-sealed) and list (GET), on SQLite and on PostgreSQL, each against a bare endpoint of the
same framework (FastAPI on uvicorn, same TLS, no database, no token check) measured in the same
run. Goal: list at least 0.5 of the bare endpoint. One server process; the load comes from this
process (aiohttp, 16 connections), so both figures include the same client cost. Five
interleaved rounds; the round with the median ratio is reported."""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "cloud"))

import aiohttp  # noqa: E402
import httpx  # noqa: E402

from cloudkit import PG_ENV, Served, TempPostgres, app_signed_in, free_port, new_database, seed, webhook  # noqa: E402
from keyhook.cloud import admin  # noqa: E402

CONCURRENCY = 16
SECONDS = 2.0
ROUNDS = 5


async def _rate(url: str, cafile: str, make_request) -> float:
    """Requests per second over SECONDS with CONCURRENCY workers (after a short warm-up)."""
    ctx = ssl.create_default_context(cafile=cafile)
    async with aiohttp.ClientSession(base_url=url, connector=aiohttp.TCPConnector(ssl=ctx, limit=CONCURRENCY)) as http:
        counter = iter(range(10**9))

        async def worker(deadline):
            n = 0
            while time.perf_counter() < deadline:
                async with make_request(http, next(counter)) as r:
                    await r.read()
                    if r.status >= 300:
                        raise RuntimeError(f"bench request failed: {r.status}")
                n += 1
            return n
        await asyncio.gather(*(worker(time.perf_counter() + 0.5) for _ in range(CONCURRENCY)))
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(worker(t0 + SECONDS) for _ in range(CONCURRENCY)))
        return sum(counts) / (time.perf_counter() - t0)


def _bare(cert: str, key: str):
    port = free_port()
    code = ("import uvicorn; from keyhook.cloud.api import bare_app; "
            f"uvicorn.run(bare_app(), host='127.0.0.1', port={port}, ssl_certfile={cert!r}, ssl_keyfile={key!r}, "
            "log_level='warning', server_header=False)")
    proc = subprocess.Popen([sys.executable, "-c", code])
    for _ in range(300):
        try:
            with httpx.Client(verify=ssl.create_default_context(cafile=cert)) as c:
                c.get(f"https://127.0.0.1:{port}/bare")
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    return proc, f"https://127.0.0.1:{port}"


def _measure(backend: str, db_url_base: str | None, work: Path) -> list[dict]:
    work.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        db = new_database(work, "sqlite")
    else:
        os.environ[PG_ENV] = db_url_base
        db = new_database(work, "postgresql")
    cloud = seed(db)
    admin.quota_set(db, cloud.system_id, 10**6)
    served = Served(db.url, work, log_level="warning")
    bare_proc = None
    try:
        app_signed_in(work / "app", served, cloud).enable("Home")
        key = str(Path(served.cert).with_name("key.pem"))
        bare_proc, bare_url = _bare(served.cert, key)
        h = {"Authorization": f"Bearer {cloud.token()}"}
        path = f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks"
        body = webhook("bench")

        # List a system with 5 webhooks of this client (the default quota's worth).
        h2 = {"Authorization": f"Bearer {cloud.token(cloud.client2['client_id'])}"}
        with served.client() as c:
            for i in range(5):
                c.post(path, json={**body, "functionName": f"l{i}"}, headers=h2)
        # Interleaved rounds (bare, list, register): the machine's load drifts, so each ratio is
        # taken within one round and the median round is reported.
        rounds = []
        for n in range(ROUNDS):
            bare = asyncio.run(_rate(bare_url, served.cert, lambda c, i: c.get("/bare")))
            listing = asyncio.run(_rate(served.url, served.cert, lambda c, i: c.get(path, headers=h2)))
            register = asyncio.run(_rate(served.url, served.cert, lambda c, i: c.post(
                path, json={**body, "functionName": f"b{n}-{i}"}, headers=h)))
            rounds.append((bare, listing, register))
    finally:
        served.stop()
        if bare_proc:
            bare_proc.terminate()
            bare_proc.wait()
        db.dispose()
    def median_by(index):
        ratios = sorted(r[index] / r[0] for r in rounds)
        mid = ratios[len(ratios) // 2]
        return next(r for r in rounds if r[index] / r[0] == mid), mid
    (bare_l, listing, _), list_ratio = median_by(1)
    (bare_r, _, register), reg_ratio = median_by(2)
    return [
        {"figure": f"register (POST, sealed), {backend}", "value": round(register, 1), "unit": "req/s",
         "reference": f"{bare_r:.1f} req/s bare", "ratio": round(reg_ratio, 2)},
        {"figure": f"list (GET, 5 webhooks), {backend}", "value": round(listing, 1), "unit": "req/s",
         "reference": f"{bare_l:.1f} req/s bare", "ratio": round(list_ratio, 2), "goal": ">= 0.5",
         "met": list_ratio >= 0.5},
    ]


def run() -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="kh-bench-cloud-") as d:
        rows += _measure("sqlite", None, Path(d) / "sqlite")
        pg, url = None, os.environ.get(PG_ENV)
        try:
            if not url:
                pg = TempPostgres()
                url = pg.url
            rows += _measure("postgresql", url, Path(d) / "pg")
        except (RuntimeError, subprocess.CalledProcessError) as e:
            rows.append({"figure": "postgresql", "value": f"not measured: {e}", "unit": ""})
        finally:
            if pg:
                pg.stop()
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
