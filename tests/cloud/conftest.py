"""Cloud fixtures: a fresh migrated database per test (SQLite, and PostgreSQL when
KEYHOOK_TEST_POSTGRES_URL names a server, as `.ci/run` sets it), the app in process, or
`keyhook cloud serve` for real on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cloudkit import PG_ENV, Served, new_database, seed  # noqa: E402
from keyhook.cloud.db import Database  # noqa: E402


def _backends():
    return ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
        not os.environ.get(PG_ENV), reason=f"no PostgreSQL: set {PG_ENV} (`.ci/run` starts one and sets it)"))]


@pytest.fixture(params=_backends())
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory):
    """One migrated and seeded SQLite file, copied for each test (migrating and hashing
    passwords with Argon2 for every test would dominate the run)."""
    d = new_database(tmp_path_factory.mktemp("template"), "sqlite")
    s = seed(d)
    d.dispose()
    return Path(d.url.removeprefix("sqlite:///")), s


@pytest.fixture
def cloud(tmp_path, backend, sqlite_template):
    if backend == "sqlite":
        path, template = sqlite_template
        shutil.copyfile(path, tmp_path / "cloud.db")
        s = dataclasses.replace(template, db=Database(str(tmp_path / "cloud.db")))
    else:
        s = seed(new_database(tmp_path, backend))
    yield s
    s.db.dispose()


@pytest.fixture
def db(cloud):
    return cloud.db


@pytest.fixture
def api(cloud):
    """The ASGI app in process (Starlette's TestClient), over HTTPS-looking URLs."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient
    from keyhook.cloud.api import create_app
    with TestClient(create_app(cloud.db), base_url="https://testserver") as c:
        yield c


@pytest.fixture
def served(cloud, tmp_path):
    s = Served(cloud.db.url, tmp_path)
    yield s
    s.stop()
