"""Load: 200 registrations and 200 listings at once, spread over two `keyhook cloud serve`
processes sharing one database (SQLite, and PostgreSQL in CI): no error, no lost and no
duplicated write; and the quota holds under a burst."""

from __future__ import annotations

import asyncio
import ssl

import httpx
import pytest
from sqlalchemy import func, select

from keyhook.cloud import admin
from keyhook.cloud.models import Webhook

from cloudkit import Served, app_signed_in, webhook

pytestmark = pytest.mark.timeout(300)
N = 200


@pytest.fixture
def two_servers(cloud, tmp_path):
    a = Served(cloud.db.url, tmp_path)
    try:
        b = Served(cloud.db.url, tmp_path)
    except BaseException:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def test_200_concurrent_registrations_and_listings(two_servers, cloud, tmp_path):
    a, b = two_servers
    app_signed_in(tmp_path / "app", a, cloud).enable("Home")
    admin.quota_set(cloud.db, cloud.system_id, 10 * N)
    token = cloud.token()
    path = f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks"

    async def go():
        limits = httpx.Limits(max_connections=N, max_keepalive_connections=N)
        clients = [httpx.AsyncClient(base_url=s.url, verify=ssl.create_default_context(cafile=s.cert), limits=limits,
                                     timeout=120, headers={"Authorization": f"Bearer {token}"}) for s in (a, b)]
        try:
            jobs = []
            for i in range(N):
                c = clients[i % 2]
                jobs.append(c.post(path, json=webhook(f"f-{i:03d}")))
                jobs.append(c.get(path))
            return await asyncio.gather(*jobs)
        finally:
            for c in clients:
                await c.aclose()
    responses = asyncio.run(go())
    posts, gets = responses[0::2], responses[1::2]
    assert [r.status_code for r in posts] == [201] * N, {r.status_code: r.text for r in posts if r.status_code != 201}
    assert [r.status_code for r in gets] == [200] * N
    ids = [r.json()["functionWebhookId"] for r in posts]
    assert len(set(ids)) == N
    for r in gets:  # each listing is a consistent snapshot of what was committed
        listed = r.json()
        assert len({w["functionWebhookId"] for w in listed}) == len(listed) and set(w["functionWebhookId"] for w in listed) <= set(ids)

    with httpx.Client(base_url=a.url, verify=ssl.create_default_context(cafile=a.cert),
                      headers={"Authorization": f"Bearer {token}"}) as http:
        final = http.get(path).json()
        quota = http.get("/3rd-party/api/systems").json()[0]["functionWebhookQuotas"]
    assert sorted(w["functionWebhookId"] for w in final) == sorted(ids)
    assert sorted(w["functionName"] for w in final) == [f"f-{i:03d}" for i in range(N)]
    assert quota == {"free": 9 * N, "used": N}
    with cloud.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Webhook)) == N


def test_the_quota_holds_under_a_burst(two_servers, cloud, tmp_path):
    a, b = two_servers
    app_signed_in(tmp_path / "app", a, cloud).enable("Home")
    token = cloud.token()
    path = f"/3rd-party/api/systems/{cloud.system_id}/function-webhooks"

    async def go():
        clients = [httpx.AsyncClient(base_url=s.url, verify=ssl.create_default_context(cafile=s.cert), timeout=120,
                                     headers={"Authorization": f"Bearer {token}"}) for s in (a, b)]
        try:
            return await asyncio.gather(*(clients[i % 2].post(path, json=webhook(f"b-{i}")) for i in range(30)))
        finally:
            for c in clients:
                await c.aclose()
    codes = sorted(r.status_code for r in asyncio.run(go()))
    assert codes == [201] * 5 + [403] * 25
    with cloud.db.read() as s:
        assert s.scalar(select(func.count()).select_from(Webhook)) == 5
