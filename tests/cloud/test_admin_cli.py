"""`keyhook cloud admin ... --json` as a script uses it; the schema the migrations make is the
one the models describe; bad input gets `error:`/`hint:`, exit 2, and changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import func, select

from keyhook.cloud.db import Database
from keyhook.cloud.models import Base, User



def kh(*args, config=None, check=True):
    env = dict(os.environ, KEYHOOK_CONFIG=str(config or "/nonexistent"))
    p = subprocess.run([sys.executable, "-m", "keyhook", *args], capture_output=True, text=True, env=env, timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"keyhook {' '.join(args)}: {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def test_admin_commands_as_a_script(tmp_path):
    db = str(tmp_path / "c.db")
    A = ("cloud", "admin", "--db", db)
    assert json.loads(kh(*A, "migrate", "--json").stdout)["revision"] == "0002"
    assert json.loads(kh(*A, "migrate", "--json").stdout)["revision"] == "0002"  # idempotent
    user = json.loads(kh(*A, "user", "add", "Owner@Example.org", "--password", "pw", "--json").stdout)
    assert user["email"] == "owner@example.org"
    system = json.loads(kh(*A, "system", "add", "Home", "--owner", "owner@example.org", "--json").stdout)
    client = json.loads(kh(*A, "client", "add", "HA", "--redirect-uri", "https://ha.example/cb", "--json").stdout)
    assert len(client["client_id"]) == 24 and len(client["client_secret"]) >= 40
    token = json.loads(kh(*A, "token", "issue", "--user", "owner@example.org", "--client", client["client_id"],
                          "--json").stdout)
    assert token["token_type"] == "Bearer" and token["expires_in"] == 2700 and token["refresh_token"]
    q = json.loads(kh(*A, "quota", "set", system["systemId"], "7", "--client", client["client_id"], "--json").stdout)
    assert q["quota"] == 7

    # Bad input: a clear error, exit 2, nothing written.
    for args, words in [(("user", "add", "owner@example.org"), "exists already"),
                        (("user", "add", "not-an-email"), "not an e-mail"),
                        (("system", "add", "X", "--owner", "nobody@example.org"), "no user"),
                        (("client", "add", "X", "--redirect-uri", "ftp://x"), "not an absolute"),
                        (("token", "issue", "--user", "owner@example.org", "--client", "nope"), "no OAuth client"),
                        (("quota", "set", "no-system", "3"), "no system")]:
        p = kh(*A, *args, "--json", check=False)  # with --json a failure is one JSON object on stdout
        failure = json.loads(p.stdout)
        assert p.returncode == 2 and failure["error"] and words in failure["message"], p.stdout + p.stderr
        p = kh(*A, *args, check=False)  # without: error: and hint: lines on stderr
        assert p.returncode == 2 and "error:" in p.stderr and words in p.stderr, p.stderr
    d = Database(db)
    with d.read() as s:
        assert s.scalar(select(func.count()).select_from(User)) == 1
    d.dispose()


def test_the_migrations_make_the_models_schema(db):
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_serve_refuses_an_unmigrated_database_and_bad_options(tmp_path):
    p = kh("cloud", "serve", "--db", str(tmp_path / "empty.db"), check=False)
    assert p.returncode == 2 and "migrate" in p.stderr
    p = kh("cloud", "serve", "--db", str(tmp_path / "empty.db"), "--bind", "nowhere", check=False)
    assert p.returncode == 2 and "HOST:PORT" in p.stderr


def test_login_refuses_plain_http_and_a_wrong_pin(served, tmp_path):
    p = kh("cloud", "login", served.url.replace("https", "http"), config=tmp_path, check=False)
    assert p.returncode == 2 and "https" in p.stderr
    p = kh("cloud", "login", served.url, "--pin", "sha256/" + "A" * 43 + "=", config=tmp_path, check=False)
    assert p.returncode == 2 and "not sha256/" in p.stderr and "in the middle" in p.stderr
    assert not (tmp_path / "cloud" / "session.json").exists()
    p = kh("webhooks", "pull", config=tmp_path, check=False)
    assert p.returncode == 2 and "keyhook cloud login" in p.stderr


def test_a_database_at_the_first_revision_is_upgraded_keeping_its_rows(tmp_path):
    from alembic import command
    from alembic.config import Config
    from keyhook.cloud.db import MIGRATIONS
    d = Database(str(tmp_path / "old.db"))
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with d.engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.commit()
    with d.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO users (email, password_hash, created_at) VALUES ('old@example.org', NULL, 1)")
    d.dispose()
    out = json.loads(kh("cloud", "admin", "--db", str(tmp_path / "old.db"), "migrate", "--json").stdout)
    assert out["revision"] == "0002"
    d = Database(str(tmp_path / "old.db"))
    with d.read() as s:
        u = s.scalar(select(User))
        assert (u.email, u.failed_logins, u.locked_until) == ("old@example.org", 0, 0)
    d.dispose()
