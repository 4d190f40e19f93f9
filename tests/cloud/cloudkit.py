"""Helpers for the cloud tests (a module of its own: test files import it by name)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from keyhook.cloud import admin
from keyhook.cloud.db import Database

PG_ENV = "KEYHOOK_TEST_POSTGRES_URL"
PASSWORD = "correct horse battery staple"
SECRET = "s3cr3t-Integrator-Token-7f1c9a"  # what an integrator hides in a definition


def definition(url: str = "https://ha.example.org:8123/api/webhook/abc", secret: str = SECRET, **extra) -> dict:
    """A definition as Home Assistant's integration sends it: explicit nulls, content as an object."""
    d = {"method": "Post", "url": url,
         "body": {"contentType": "application/json", "content": {"auth": secret, "event": "open"}},
         "additionalHttpHeaders": {"X-Api-Key": secret[::-1]}, "timeout": None,
         "securityLevel": "TlsWithCACheck", "pinnedCertificate": None,
         "authentication": {"apiAuthenticationType": "OAuth2IssuedAccessToken", "accessToken": "at-" + secret,
                            "refreshToken": None, "tokenEndoint": None, "clientId": None, "scope": None,
                            "authorizationEndpoint": None, "expiresIn": None}}
    d.update(extra)
    return d


def webhook(name: str = "Open garage", **kw) -> dict:
    return {"integrationName": "Home Assistant", "locationName": "Front door", "functionName": name,
            "definition": definition(**kw)}


def new_database(tmp_path: Path, backend: str) -> Database:
    """A fresh, migrated database: a SQLite file, or a new database on the test PostgreSQL."""
    if backend == "sqlite":
        return Database(str(tmp_path / "cloud.db"))
    import psycopg
    base = os.environ[PG_ENV]
    name = "kh_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return Database(base.rsplit("/", 1)[0] + "/" + name)


@dataclass
class Seed:
    """A migrated cloud with an owner, a system, two integrator clients and a second owner."""
    db: Database
    owner: str = "owner@example.org"
    other_owner: str = "neighbour@example.org"
    system_id: str = ""
    other_system_id: str = ""
    client: dict = field(default_factory=dict)        # confidential (Home Assistant)
    client2: dict = field(default_factory=dict)       # another integrator
    public_client: dict = field(default_factory=dict)

    def token(self, client_id: str | None = None, user: str | None = None) -> str:
        return admin.token_issue(self.db, user or self.owner, client_id or self.client["client_id"])["access_token"]


def seed(db: Database) -> Seed:
    admin.migrate(db)
    s = Seed(db)
    admin.user_add(db, s.owner, PASSWORD)
    admin.user_add(db, s.other_owner, PASSWORD)
    s.system_id = admin.system_add(db, s.owner, "Home")["systemId"]
    s.other_system_id = admin.system_add(db, s.other_owner, "Neighbour's house")["systemId"]
    s.client = admin.client_add(db, "Home Assistant", ["https://my.home-assistant.io/redirect/oauth"])
    s.client2 = admin.client_add(db, "Other integrator", ["https://other.example/cb"])
    s.public_client = admin.client_add(db, "Sample app", ["http://127.0.0.1:9/cb"], public=True)
    return s


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Served:
    """`keyhook cloud serve` in a subprocess on 127.0.0.1 (a free port), self-made certificate."""

    def __init__(self, db_url: str, workdir: Path, workers: int = 1, log_level: str = "info") -> None:
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        env = dict(os.environ, KEYHOOK_CONFIG=str(workdir / "server-config"))
        self.log = workdir / f"serve-{self.port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "keyhook", "cloud", "serve", "--db", db_url, "--bind", f"127.0.0.1:{self.port}",
             "--workers", str(workers), "--log-level", log_level], env=env, stdout=self.log.open("wb"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            text = self.log.read_text(errors="replace")
            if "Uvicorn running" in text or "Application startup complete" in text or (
                    log_level != "info" and "pin: " in text and _listening(self.port)):
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"keyhook cloud serve did not start:\n{text}")
            time.sleep(0.1)
        self.pin = re.search(r"pin: (sha256/\S+)", text).group(1)
        self.cert = re.search(r"certificate: (\S+)", text).group(1)

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, verify=self._ctx(), timeout=30, **kw)

    def _ctx(self):
        import ssl
        return ssl.create_default_context(cafile=self.cert)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def enable(api, cloud: Seed, system_id: str | None = None, user: str | None = None):
    """What the app does on `integration enable`, over the app API; returns (private key, system key)."""
    import base64
    from keyhook.cloud import sealing
    system_id = system_id or cloud.system_id
    system_key = os.urandom(32)
    sk, pk = sealing.new_key_pair()
    r = api.put(f"/app/api/systems/{system_id}/integration",
                headers=bearer(cloud.token(admin.APP_CLIENT_ID, user)),
                json={"publicKey": base64.b64encode(pk).decode(),
                      "sealedPrivateKey": base64.b64encode(sealing.seal_private_key(sk, system_key, system_id)).decode()})
    assert r.status_code == 200, r.text
    return sk, system_key


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def app_signed_in(config: Path, served: "Served", cloud: Seed):
    """The app's state as `keyhook cloud login` leaves it, with a token the admin issued (the
    device grant itself is exercised by test_whole_path and test_oauth)."""
    import json
    from keyhook.cloud.appside import CloudApp
    t = admin.token_issue(cloud.db, cloud.owner, admin.APP_CLIENT_ID)
    (config / "cloud").mkdir(parents=True, exist_ok=True)
    (config / "cloud" / "session.json").write_text(json.dumps({
        "url": served.url, "cafile": served.cert, "client_id": admin.APP_CLIENT_ID,
        "access_token": t["access_token"], "refresh_token": t["refresh_token"],
        "expires_at": int(time.time()) + t["expires_in"]}))
    return CloudApp(config)


def raw_database_bytes(db: Database) -> bytes:
    """What a thief gets: the SQLite files as they are on disk, or PostgreSQL's rows as text."""
    if db.is_sqlite:
        path = Path(db.url.removeprefix("sqlite:///"))
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    from sqlalchemy import inspect, text
    out = []
    with db.engine.connect() as conn:
        for table in inspect(db.engine).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                out.append(repr(tuple(row)).encode())
    return b"\n".join(out)


class TempPostgres:
    """A PostgreSQL for `make bench` when KEYHOOK_TEST_POSTGRES_URL is not set: the same recipe
    as .ci/postgres.sh (a data directory of its own, 127.0.0.1 only, stopped afterwards)."""

    def __init__(self) -> None:
        import glob
        import shutil
        import tempfile
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
        if not bins:
            raise RuntimeError("no PostgreSQL installed (Debian's postgresql; .ci/run installs it)")
        self.bin = Path(bins[-1])
        self.dir = Path(tempfile.mkdtemp(prefix="keyhook-pg-"))
        self.port = free_port()
        self._as = ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
        subprocess.run([*self._as, str(self.bin / "initdb"), "-D", str(self.dir / "data"), "-U", "postgres",
                        "-A", "trust", "--no-sync", "-E", "UTF8"], check=True, capture_output=True)
        subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-l",
                        str(self.dir / "server.log"), "-w", "-o",
                        f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.dir} -c fsync=off "
                        "-c max_connections=300", "start"], check=True, capture_output=True)
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        import shutil
        subprocess.run([*self._as, str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
