"""A local OAuth 2.0 token endpoint (and a bearer-protected resource) for tests and the demo.

It listens on 127.0.0.1 only, over plain HTTP or, given a certificate chain and key, HTTPS, and
speaks HTTP/1.1 with keep-alive (the device reuses connections per origin, and a token endpoint
on the request's own origin shares the connection with the request).

- ``POST`` to the token path (``/oauth2/token``) with a form-encoded ``grant_type=refresh_token``
  grant (``refresh_token``, optional ``client_id`` and ``scope``) answers
  ``{access_token, token_type, expires_in?, refresh_token?, scope?}`` (RFC 6749 section 5.1) or
  an RFC 6749 section 5.2 error.
- Any other path is a resource that wants ``Authorization: Bearer <an unexpired access token
  this server issued>``; it answers 200, else 401 with ``WWW-Authenticate`` (RFC 6750).

Modes, switchable at any time between requests: ``rotate`` (every grant issues a new refresh
token and retires the used one), ``expires_in`` (access-token lifetime; None omits the field),
``fail`` (``"invalid_grant"``, ``"invalid_client"``, ``"500"`` or ``"garbage"``), and
:meth:`TokenServer.revoke_access_tokens` (the resource then answers 401, as after a key roll).
Every request is recorded in :attr:`TokenServer.requests`, every TLS handshake that failed in
:attr:`TokenServer.handshake_failures`.

Use it as a context manager::

    with TokenServer(refresh_token="rt-0", rotate=True) as ts:
        ts.token_url, ts.resource_url, ts.requests, ts.current_refresh_token
"""

from __future__ import annotations

import http.server
import json
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs

import click

from keyhook import KeyhookError

HOST = "127.0.0.1"
TOKEN_PATH = "/oauth2/token"
RESOURCE_PATH = "/resource"
_MAX_BODY = 64 * 1024
_FAIL_MODES = (None, "invalid_grant", "invalid_client", "500", "garbage")


@dataclass
class Recorded:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, str] | None  # the parsed form of a token request, else None
    status: int = 0              # what the server answered
    answer: dict | None = None   # the JSON it answered with (token requests)
    tls: bool = False

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")


@dataclass
class _Access:
    token: str
    expires_at: float | None  # server clock (time.monotonic); None: never


@dataclass
class TokenServer:
    """OAuth 2.0 token endpoint plus resource on 127.0.0.1 (see the module docstring).

    Args:
        refresh_token: the refresh token handed to the device first (in its definition).
        client_id: when set, grants must carry exactly this ``client_id``.
        rotate: issue a new refresh token with every grant and retire the used one.
        expires_in: access-token lifetime in seconds; None leaves ``expires_in`` out.
        fail: answer every grant with this failure (see the module docstring).
        certfile: PEM chain (leaf first) to serve HTTPS with; None serves plain HTTP.
        keyfile: the leaf's private key (PEM).
        port: TCP port, 0 for an ephemeral one.
        id_token_bytes: add an ``id_token`` of this many bytes to every grant (as OpenID
            providers do when ``openid`` is in the scope); 0 leaves it out.
        access_token_bytes: pad every access token to this many bytes (a JWT carrying group
            claims, as Azure AD and Keycloak issue); 0 keeps them short.
    """

    refresh_token: str = "rt-initial"
    client_id: str | None = None
    rotate: bool = False
    expires_in: int | None = 3600
    fail: str | None = None
    certfile: str | Path | None = None
    keyfile: str | Path | None = None
    port: int = 0
    id_token_bytes: int = 0
    access_token_bytes: int = 0
    requests: list[Recorded] = field(default_factory=list)
    handshake_failures: list[str] = field(default_factory=list)
    issued_refresh_tokens: list[str] = field(default_factory=list)
    issued_access_tokens: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.fail not in _FAIL_MODES:
            raise KeyhookError(f"unknown failure mode {self.fail!r}",
                               hint="use one of: " + ", ".join(str(m) for m in _FAIL_MODES[1:]))
        self._lock = threading.Lock()
        self._valid_refresh = {self.refresh_token}
        self.issued_refresh_tokens.append(self.refresh_token)
        self._access: dict[str, _Access] = {}
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._ssl: ssl.SSLContext | None = None
        if self.certfile:
            if not self.keyfile:
                raise KeyhookError("an HTTPS token server needs the certificate's key",
                                   hint="pass keyfile= with certfile=")
            self._ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._ssl.load_cert_chain(str(self.certfile), str(self.keyfile))

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> TokenServer:
        """Listen on 127.0.0.1 and serve in a background thread."""
        self._httpd = _Server((HOST, self.port), _Handler, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="tokenserver",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://{HOST}:{self.port}"

    def origin_for(self, host: str) -> str:
        """The same server under another host name (e.g. ``localhost``: another origin)."""
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://{host}:{self.port}"

    @property
    def token_url(self) -> str:
        return self.origin + TOKEN_PATH

    @property
    def resource_url(self) -> str:
        return self.origin + RESOURCE_PATH

    # -- state ------------------------------------------------------------------------------

    @property
    def current_refresh_token(self) -> str:
        """The newest refresh token issued (the initial one until a rotation)."""
        return self.issued_refresh_tokens[-1]

    @property
    def token_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.form is not None]

    @property
    def resource_requests(self) -> list[Recorded]:
        return [r for r in self.requests if r.form is None]

    def accept_refresh_token(self, token: str) -> None:
        """Make `token` a valid refresh token too (as after the user authorised again)."""
        with self._lock:
            self._valid_refresh.add(token)
            self.issued_refresh_tokens.append(token)

    def revoke_access_tokens(self) -> None:
        """Invalidate every access token issued so far (the resource answers 401 to them)."""
        with self._lock:
            self._access.clear()

    def access_valid(self, token: str) -> bool:
        with self._lock:
            a = self._access.get(token)
            return a is not None and (a.expires_at is None or time.monotonic() < a.expires_at)

    # -- protocol ---------------------------------------------------------------------------

    def _grant(self, form: dict[str, str]) -> tuple[int, dict]:
        """Answer one token request: (status, JSON document)."""
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type"}
        if self.fail == "invalid_grant":
            return 400, {"error": "invalid_grant", "error_description": "refresh token revoked"}
        if self.fail == "invalid_client":
            return 401, {"error": "invalid_client"}
        if self.fail == "500":
            return 500, {}
        if self.fail == "garbage":
            return 200, {"_garbage": True}
        if self.client_id is not None and form.get("client_id") != self.client_id:
            return 401, {"error": "invalid_client"}
        with self._lock:
            used = form.get("refresh_token", "")
            if used not in self._valid_refresh:
                return 400, {"error": "invalid_grant", "error_description": "unknown refresh token"}
            n = len(self.issued_access_tokens) + 1
            access = f"at-{n}-{secrets.token_urlsafe(12)}"
            if self.access_token_bytes > len(access):  # a JWT with group claims (Azure AD, Keycloak)
                access += "." + "g" * (self.access_token_bytes - len(access) - 1)
            self.issued_access_tokens.append(access)
            expires = None if self.expires_in is None else time.monotonic() + self.expires_in
            self._access[access] = _Access(access, expires)
            doc: dict = {"access_token": access, "token_type": "Bearer"}
            if self.expires_in is not None:
                doc["expires_in"] = self.expires_in
            if self.rotate:
                new = f"rt-{len(self.issued_refresh_tokens)}-{secrets.token_urlsafe(12)}"
                self._valid_refresh.discard(used)
                self._valid_refresh.add(new)
                self.issued_refresh_tokens.append(new)
                doc["refresh_token"] = new
            if form.get("scope"):
                doc["scope"] = form["scope"]
            if self.id_token_bytes:
                doc["id_token"] = "eyJ" + "x" * max(0, self.id_token_bytes - 3)
            return 200, doc


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, handler, owner: TokenServer):
        self.owner = owner
        super().__init__(address, handler)

    def finish_request(self, request, client_address):
        # The TLS handshake runs in the connection's own thread, bounded, and a failed one is
        # recorded (a device that refuses the certificate aborts it).
        ctx = self.owner._ssl
        if ctx is not None:
            request.settimeout(10)
            try:
                request = ctx.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                self.owner.handshake_failures.append(type(e).__name__ + ": " + str(e)[:200])
                return
        super().finish_request(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "keyhook-tokenserver"
    timeout = 10

    def log_message(self, format, *args):  # noqa: A002 - quiet: requests hold secrets
        pass

    def _read_body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(min(n, _MAX_BODY)) if n > 0 else b""

    def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _record(self, body: bytes, form: dict | None) -> Recorded:
        rec = Recorded(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                       body, form, tls=isinstance(self.connection, ssl.SSLSocket))
        self.server.owner.requests.append(rec)
        return rec

    def _handle(self) -> None:
        owner: TokenServer = self.server.owner
        body = self._read_body()
        if self.command == "POST" and self.path.split("?")[0] == TOKEN_PATH:
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            try:
                form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True,
                                                      strict_parsing=bool(body)).items()}
            except (UnicodeDecodeError, ValueError):
                form = {}
            rec = self._record(body, form)
            if ctype != "application/x-www-form-urlencoded":
                status, doc = 400, {"error": "invalid_request",
                                    "error_description": "form-encoded body expected"}
            else:
                status, doc = owner._grant(form)
            rec.status, rec.answer = status, doc
            if status == 500:
                self._send(500, b"internal error", "text/plain")
            elif doc.get("_garbage"):
                self._send(200, b"<html>not json</html>", "text/html")
            else:
                self._send(status, json.dumps(doc).encode(), "application/json")
            return
        rec = self._record(body, None)
        auth = self.headers.get("Authorization") or ""
        token = auth[7:] if auth[:7].lower() == "bearer " else ""
        if token and owner.access_valid(token):
            rec.status = 200
            self._send(200, b'{"ok": true}', "application/json")
        else:
            rec.status = 401
            self._send(401, b'{"error": "invalid_token"}', "application/json",
                       {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


@click.command(name="tokenserver")
@click.option("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any free one).")
@click.option("--cert", type=click.Path(exists=True, dir_okay=False), help="PEM chain, leaf first (serves HTTPS).")
@click.option("--key", type=click.Path(exists=True, dir_okay=False), help="The leaf's private key (PEM).")
@click.option("--refresh-token", default="rt-initial", show_default=True, help="The refresh token to accept first.")
@click.option("--client-id", default=None, help="Require this client_id.")
@click.option("--rotate", is_flag=True, help="Issue a new refresh token with every grant.")
@click.option("--expires-in", type=int, default=3600, show_default=True, help="Access-token lifetime, seconds.")
@click.option("--fail", type=click.Choice([m for m in _FAIL_MODES if m]), default=None,
              help="Answer every grant with this failure.")
def main(port: int, cert: str | None, key: str | None, refresh_token: str, client_id: str | None,
         rotate: bool, expires_in: int, fail: str | None) -> None:
    """Serve a local OAuth 2.0 token endpoint (and a bearer resource) on 127.0.0.1 until Ctrl-C.

    Prints {"token_url", "resource_url"} as one JSON line. For tests and demos only.
    """
    try:
        ts = TokenServer(refresh_token=refresh_token, client_id=client_id, rotate=rotate,
                         expires_in=expires_in, fail=fail, certfile=cert, keyfile=key, port=port)
    except KeyhookError as e:
        raise click.UsageError(f"{e} ({e.hint})" if e.hint else str(e)) from e
    with ts:
        click.echo(json.dumps({"token_url": ts.token_url, "resource_url": ts.resource_url}))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
