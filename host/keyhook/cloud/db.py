"""Database access: one SQLAlchemy engine per URL, sessions, and migrations (Alembic).

SQLite (the default, `sqlite:///PATH`) and PostgreSQL (`postgresql+psycopg://...`) are
supported. The processes keep no state of their own: several `keyhook cloud serve` processes can
share one PostgreSQL database.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from keyhook import KeyhookError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def normalise_url(url: str) -> str:
    """A plain path means SQLite; `postgresql://` uses psycopg 3."""
    if "://" not in url:
        return f"sqlite:///{Path(url).expanduser().resolve()}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


class Database:
    """An engine and two session factories: `read()` and `write()` (a write transaction takes
    SQLite's write lock at BEGIN, so a check-then-insert such as the quota cannot race)."""

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.url = normalise_url(url)
        try:
            u = make_url(self.url)
        except Exception as e:
            raise KeyhookError(f"--db {url!r} is not a database URL ({e})",
                               hint="give a file path (SQLite) or postgresql://USER@HOST/DB") from None
        self.is_sqlite = u.get_backend_name() == "sqlite"
        if self.is_sqlite:
            self.engine: Engine = create_engine(self.url, connect_args={"timeout": 30, "check_same_thread": False},
                                                pool_size=pool_size, max_overflow=20)

            @event.listens_for(self.engine, "connect")
            def _connect(dbapi_conn, _record):
                dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.execute("PRAGMA busy_timeout=30000")
                cur.close()

            @event.listens_for(self.engine, "begin")
            def _begin(conn):
                # Writes take the write lock at BEGIN; reads run each statement on its own
                # (SQLite's autocommit), which costs no BEGIN/ROLLBACK.
                if conn.get_execution_options().get("kh_write"):
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            self.engine = create_engine(self.url, pool_size=pool_size, max_overflow=20, pool_recycle=1800)
        # Read-only Core queries: on PostgreSQL an autocommit pool of its own (no BEGIN, no
        # ROLLBACK at return: one round trip per query); SQLite reads are autocommit already.
        self.read_engine: Engine = self.engine if self.is_sqlite else create_engine(
            self.url, pool_size=pool_size, max_overflow=20, pool_recycle=1800, isolation_level="AUTOCOMMIT",
            pool_reset_on_return=None)
        self._compiled: dict = {}  # statement -> its Compiled form for read_engine (fetch_all)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(kh_write=True), expire_on_commit=False)

    @contextlib.contextmanager
    def connect(self):
        """A Core connection for read-only queries (PostgreSQL: autocommit, no BEGIN/ROLLBACK
        round trips; each statement sees committed data)."""
        with self.read_engine.connect() as conn:
            yield conn

    def fetch_all(self, statement, params: dict) -> list[tuple]:
        """The rows of a read-only Core `statement` as plain tuples, run on a pooled DBAPI
        cursor of the read pool (autocommit, as `connect()`).

        For the hottest read (the integrator's list call): SQLAlchemy's per-execution context,
        result metadata and Row objects cost more there than the query itself. The SQL is still
        SQLAlchemy's, compiled once per statement for this engine's dialect, and the parameters
        are bound by name as with `Connection.execute`. Only for statements whose columns and
        parameters are strings, integers and booleans compared in SQL (no type processing);
        raises the driver's own exceptions."""
        compiled = self._compiled.get(statement)
        if compiled is None:
            compiled = self._compiled[statement] = statement.compile(dialect=self.read_engine.dialect)
        bound = compiled.construct_params(params)
        args = tuple(bound[k] for k in compiled.positiontup) if compiled.positiontup else bound
        conn = self.read_engine.raw_connection()
        try:
            cur = conn.cursor()
            try:
                cur.execute(compiled.string, args)
                return cur.fetchall()
            finally:
                cur.close()
        finally:
            conn.close()  # back to the pool

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as s:
            yield s

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits on success and rolls back on any exception."""
        with self._write() as s, s.begin():
            yield s

    def migrate(self) -> str:
        """Bring the schema to the newest Alembic revision; returns that revision."""
        from alembic import command
        from alembic.config import Config
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.connect() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            conn.commit()
        return self.revision()

    def revision(self) -> str | None:
        from alembic.runtime.migration import MigrationContext
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def check_migrated(self) -> None:
        if "webhooks" not in inspect(self.engine).get_table_names():
            raise KeyhookError(f"the database {self.safe_url()} has no keyhook schema",
                               hint="run `keyhook cloud admin --db URL migrate` first")

    def safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)

    def dispose(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()
