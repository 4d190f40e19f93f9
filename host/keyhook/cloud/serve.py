"""`keyhook cloud serve`: the ASGI app on uvicorn, HTTPS only.

Without --tls-cert/--tls-key a self-signed certificate is made (and kept) beside the SQLite
database, or in the config directory, and its pin printed. Workers share nothing but the
database (`app_from_env` builds each worker's app from `KEYHOOK_CLOUD_DB`).
"""

from __future__ import annotations

import os

from keyhook import KeyhookError
from keyhook.cloud.api import create_app
from keyhook.cloud.db import Database

ENV_DB = "KEYHOOK_CLOUD_DB"
ENV_LOG = "KEYHOOK_CLOUD_LOG_LEVEL"


def parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise KeyhookError(f"--bind {bind!r} is not HOST:PORT", hint="e.g. 127.0.0.1:8443 or [::1]:8443")
    return host.strip("[]") or "127.0.0.1", int(port)


def app_from_env():
    import logging
    logging.basicConfig(level=os.environ.get(ENV_LOG, "info").upper(),
                        format="%(levelname)s:     %(name)s %(message)s")
    db = Database(os.environ[ENV_DB])
    db.check_migrated()
    return create_app(db)


def serve(db_url: str, host: str, port: int, cert: str, key: str, *, workers: int = 1, log_level: str = "info") -> None:
    import uvicorn
    os.environ[ENV_DB] = db_url
    os.environ[ENV_LOG] = log_level
    # uvicorn's own access log would print query strings (secrets, for one client): ours does not.
    uvicorn.run("keyhook.cloud.serve:app_from_env", factory=True, host=host, port=port, ssl_certfile=cert,
                ssl_keyfile=key, workers=workers, log_level=log_level, server_header=False,
                proxy_headers=False, access_log=False)
