"""The cloud's HTTP interface (FastAPI/Starlette, ASGI).

- `/3rd-party/api/systems...`: the integrator API of the public ekey bionyx third-party cloud,
  shape for shape (bare JSON arrays, 201/202/204 where its clients expect them, errors as RFC 9457
  `application/problem+json`), under OAuth 2.0 bearer tokens (RFC 6750). Each definition is
  validated with the same pipeline as `keyhook rules push` (`keyhook.rules.normalise`) and sealed
  (`sealing.seal_definition`) before anything is written.
- `/app/api/...`: the keyhook app's side (ciphertext only; approve and reject pending changes).
- `/oauth/...`: authorize (login and consent page), token, device authorization (RFC 8628) and its
  verification page; `/.well-known/oauth-authorization-server` (RFC 8414).

Endpoints are plain functions, run by Starlette in its thread pool; the database is the only
state, so several processes can serve one database.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import logging
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import bindparam, false, func, select, update
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from keyhook import rules
from keyhook.cloud import sealing
from keyhook.cloud.db import Database
from keyhook.cloud.models import DeviceGrant, OAuthClient, OAuthToken, QuotaOverride, System, User, Webhook
from keyhook.cloud.oauth import (OAuth2Error, Request as OAuthRequest, Server, TokenError, authenticate_bearer, now,
                                 token_hash)
from keyhook.cloud.passwords import verify


_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}):(\d{2})(?:\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII)


def rfc3339_date_time(value: Any) -> bool:
    """True for an RFC 3339 section 5.6 date-time (with Z or an offset; 60 seconds: a leap second),
    the one form of expiresAt a device reads."""
    m = _RFC3339.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        return False
    day, hm, sec, off = m.groups()
    sec = "59" if sec == "60" else sec
    try:
        dt.datetime.fromisoformat(f"{day}T{hm}:{sec}{'+00:00' if off in 'Zz' else off}")
    except ValueError:
        return False
    return True


log = logging.getLogger("keyhook.cloud")

PROBLEM = "application/problem+json"
INTEGRATOR = "/3rd-party/api"
APP = "/app/api"
MAX_LOCATION = 128
MAX_FUNCTION = 50
MAX_INTEGRATION = 128
MAX_BODY = 64 * 1024  # bytes of one request body
LOGIN_FREE_FAILURES = 5  # wrong passwords in a row before sign-in slows down
_FORM_FIELDS = ("email", "password", "decision")  # the consent form's own fields


class Problem(Exception):
    """An RFC 9457 problem: status, title, detail (what went wrong and what to do)."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.extra = status, title, detail, extra
        self.headers: dict[str, str] = {}


def problem_response(status: int, title: str, detail: str, headers: dict | None = None, **extra) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


# The list call's one query: this client's webhooks on the system, and only when the token is
# known, not revoked, not expired, not the app's, and the system is the token's user's (exactly
# what `authenticate_bearer`, `caller_of` and `own_system` check). One row with NULL columns when
# the client has no webhook there; no row when any check fails, and the slow path then tells
# which. Only the six columns the response needs: each column costs on every row.
LIST_QUERY = (
    select(Webhook.id, Webhook.integration_name, Webhook.location_name, Webhook.function_name,
           Webhook.expires_at, Webhook.modification_state)
    .select_from(OAuthToken)
    .join(OAuthClient, (OAuthClient.client_id == OAuthToken.client_id) & OAuthClient.is_app.is_(false()))
    .join(System, (System.id == bindparam("system_id")) & (System.owner_id == OAuthToken.user_id))
    .outerjoin(Webhook, (Webhook.system_id == System.id) & (Webhook.client_id == OAuthToken.client_id))
    .where(OAuthToken.access_token_hash == bindparam("token_hash"), OAuthToken.revoked.is_(false()),
           OAuthToken.access_expires_at > bindparam("now"))
    .order_by(Webhook.created_at, Webhook.id))
# The same columns once the checks passed one by one (the slow path).
LIST_OF_CLIENT = (
    select(Webhook.id, Webhook.integration_name, Webhook.location_name, Webhook.function_name,
           Webhook.expires_at, Webhook.modification_state)
    .where(Webhook.system_id == bindparam("system_id"), Webhook.client_id == bindparam("client_id"))
    .order_by(Webhook.created_at, Webhook.id))


def redact(message: str, definition: Any) -> str:
    """`message` without any string value of `definition` of 6 characters or more (a URL, a
    token, a header value): errors never echo what might be a secret."""
    values: list[str] = []

    def walk(v):
        if isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and len(v) >= 6:
            values.append(v)
    walk(definition)
    for v in sorted(values, key=len, reverse=True):
        message = message.replace(repr(v), "(the given value)").replace(v, "(the given value)")
    return message


def webhook_json(w: Webhook) -> dict:
    """The integrator-facing shape: every key present, never the definition."""
    return {"functionWebhookId": w.id, "integrationName": w.integration_name, "locationName": w.location_name,
            "functionName": w.function_name, "expiresAt": w.expires_at, "modificationState": w.modification_state}


def _b64(b: bytes | None) -> str | None:
    return base64.b64encode(b).decode() if b is not None else None


def create_app(db: Database) -> FastAPI:
    """The ASGI application over `db` (already migrated)."""
    app = FastAPI(title="keyhook cloud", docs_url=None, redoc_url=None, openapi_url=None)
    app.router.redirect_slashes = False
    server = Server(db)
    app.state.db = db
    app.state.oauth = server

    def route(path: str, methods: list[str], status_code: int = 200):
        """Register `path` with and without a trailing slash (clients send both)."""
        def deco(fn):
            app.add_api_route(path, fn, methods=methods, status_code=status_code)
            app.add_api_route(path + "/", fn, methods=methods, status_code=status_code, include_in_schema=False)
            return fn
        return deco

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem):
        return problem_response(exc.status, exc.title, exc.detail, exc.headers, **exc.extra)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        if exc.status_code == 404:
            return problem_response(404, "Not Found", f"there is no {request.url.path}",
                                    hint=f"the integrator API lives under {INTEGRATOR}/systems")
        return problem_response(exc.status_code, str(exc.detail), str(exc.detail))

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception):
        # Never the exception text: it might carry request content.
        log.error("internal error in %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return problem_response(500, "Internal Server Error", "the cloud failed; try again later")

    # ------------------------------------------------------------------ helpers
    def caller_of(request: Request, *, app_only: bool = False, conn=None, checked=None):
        try:
            caller = authenticate_bearer(db, request.headers.get("authorization"), conn, row=checked)
        except TokenError as e:
            p = Problem(401, "Unauthorized", e.description,
                        hint="get a token with the OAuth 2.0 authorization code flow; refresh it when it expires")
            # RFC 6750 section 3: no error code when the request carried no credentials at all.
            p.headers["WWW-Authenticate"] = ('Bearer realm="keyhook"' if e.error == "invalid_request" and
                                             not request.headers.get("authorization") else
                                             f'Bearer realm="keyhook", error="{e.error}", '
                                             f'error_description="{e.description}"')
            raise p from None
        if app_only and not caller.is_app:
            raise Problem(403, "Forbidden", "this call is for the keyhook app; an integrator's token may not use it")
        if not app_only and caller.is_app:
            raise Problem(403, "Forbidden", f"the app's token is for {APP}; integrators use their own OAuth client")
        return caller

    def own_system(s, caller, system_id: str) -> System:
        system = s.get(System, system_id)
        if system is None:
            raise Problem(404, "Not Found", f"there is no system {system_id!r}", hint=f"GET {INTEGRATOR}/systems lists yours")
        if system.owner_id != caller.user_id:
            raise Problem(403, "Forbidden", f"system {system_id!r} is not one of this user's systems")
        return system

    def quota_of(s, system: System, client_id: str) -> tuple[int, int]:
        """(limit, used) for one client on one system."""
        override = s.get(QuotaOverride, (system.id, client_id))
        limit = override.quota if override else system.quota
        used = s.scalar(select(func.count()).select_from(Webhook).where(
            Webhook.system_id == system.id, Webhook.client_id == client_id))
        return limit, used

    def webhook_of(s, caller, system_id: str, webhook_id: str) -> Webhook:
        w = s.get(Webhook, webhook_id)
        # Another client's webhook is indistinguishable from no webhook.
        if w is None or w.system_id != system_id or w.client_id != caller.client_id:
            raise Problem(404, "Not Found", f"system {system_id!r} has no function webhook {webhook_id!r} of this client")
        return w

    def read_json(body: bytes) -> Any:
        if len(body) > MAX_BODY:
            raise Problem(413, "Content Too Large", f"the body is {len(body)} bytes; at most {MAX_BODY}")
        try:
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            msg = getattr(e, "msg", "not UTF-8")
            raise Problem(400, "Bad Request", f"the body is not valid JSON ({msg})") from None

    def bad(field: str, what: str, hint: str | None = None) -> Problem:
        extra = {"field": field}
        if hint:
            extra["hint"] = hint
        return Problem(400, "Bad Request", f"{field}: {what}", **extra)

    def check_name(data: dict, key: str, limit: int, *, required: bool) -> str | None:
        v = data.get(key)
        if v is None:
            if required:
                raise bad(key, "missing")
            return None
        if not isinstance(v, str) or not v.strip() or len(v) > limit:
            raise bad(key, f"must be a non-empty string of at most {limit} characters")
        if any(c < " " or "\x7f" <= c < "\xa0" for c in v):
            # shown to the owner in the app: nothing a terminal would act on
            raise bad(key, "holds a control character or a line break", "send the name as plain text")
        return v

    def check_webhook(data: Any) -> tuple[dict, dict]:
        """Validate a POST/PUT body; returns (names, definition). Raises Problem 400 naming the field."""
        if not isinstance(data, dict):
            raise bad("(body)", "must be a JSON object (a function webhook)")
        names = {
            "integrationName": check_name(data, "integrationName", MAX_INTEGRATION, required=True),
            "locationName": check_name(data, "locationName", MAX_LOCATION, required=False) or "",
            "functionName": check_name(data, "functionName", MAX_FUNCTION, required=True),
        }
        expires = data.get("expiresAt")
        if expires is not None:
            if not rfc3339_date_time(expires):
                # the device refuses any other form (firmware/kh/store/rfc3339.py), so does the cloud
                raise bad("expiresAt", "not an RFC 3339 date-time with an offset, such as 2027-01-01T00:00:00Z")
        names["expiresAt"] = expires
        definition = data.get("definition")
        try:
            # The one definition pipeline: exactly what `keyhook rules push` checks.
            rules.normalise({"functionName": names["functionName"], "definition": definition})
        except rules.RuleError as e:
            message = redact(str(e), definition)
            if message.startswith('rule "') and '": ' in message:
                message = message.split('": ', 1)[1]  # the rule's name: the integrator sent it
            field, _, what = message.partition(": ")
            if not what or " " in field:
                field, what = "definition", message
            raise bad(field, what, e.hint) from None
        return names, definition

    # ------------------------------------------------------------------ integrator API
    @route(f"{INTEGRATOR}/systems", ["GET"])
    def list_systems(request: Request):
        caller = caller_of(request)
        with db.read() as s:
            out = []
            for system in s.scalars(select(System).where(System.owner_id == caller.user_id).order_by(System.name)):
                limit, used = quota_of(s, system, caller.client_id)
                out.append({"systemId": system.id, "systemName": system.name, "ownSystem": True,
                            "functionWebhookQuotas": {"free": max(limit - used, 0), "used": used}})
        return out

    def list_webhooks(request: Request):
        # The hottest call (Home Assistant polls it, and waits on it after a delete): a plain
        # Starlette endpoint (FastAPI's per-request parameter solving and validation buy nothing
        # for one path parameter), and the token, the system and the webhooks in one query that
        # returns rows only when every check passes (LIST_QUERY).
        system_id = request.path_params["system_id"]
        header = request.headers.get("authorization") or ""
        scheme, _, value = header.partition(" ")
        rows = None
        if scheme.lower() == "bearer" and value.strip():
            rows = db.fetch_all(LIST_QUERY, {"system_id": system_id, "token_hash": token_hash(value.strip()),
                                             "now": now()})
        if not rows:
            # A check failed (or the header is missing): the checks again, one by one, raise
            # the right 401, 403 or 404; a token or system that changed in between is judged
            # as it is now.
            caller = caller_of(request)
            with db.read() as s:
                own_system(s, caller, system_id)
                rows = s.execute(LIST_OF_CLIENT, {"system_id": system_id, "client_id": caller.client_id}).all()
        return JSONResponse([{"functionWebhookId": i, "integrationName": n, "locationName": loc,
                              "functionName": f, "expiresAt": e, "modificationState": m}
                             for i, n, loc, f, e, m in rows if i is not None])

    # First in the routing table: matched before every other route.
    for p in (f"{INTEGRATOR}/systems/{{system_id}}/function-webhooks", f"{INTEGRATOR}/systems/{{system_id}}/function-webhooks/"):
        app.router.routes.insert(0, Route(p, list_webhooks, methods=["GET"]))

    @route(f"{INTEGRATOR}/systems/{{system_id}}/function-webhooks", ["POST"])
    async def add_webhook(request: Request, system_id: str):
        body = await read_body(request)
        return await run_in_threadpool(_add_webhook, request, system_id, body)

    def _add_webhook(request: Request, system_id: str, body: bytes):
        caller = caller_of(request)
        names, definition = check_webhook(read_json(body))
        del body
        webhook_id = str(uuid.uuid4())
        with db.write() as s:
            system = s.get(System, system_id, with_for_update=True)  # serialises quota checks (PostgreSQL)
            if system is None or system.owner_id != caller.user_id:
                own_system(s, caller, system_id)
            if system.public_key is None:
                raise Problem(409, "Conflict", f"the owner has not enabled the integration for system {system_id!r}",
                              hint="the owner runs `keyhook integration enable SYSTEM` in the app first")
            limit, used = quota_of(s, system, caller.client_id)
            if used >= limit:
                raise Problem(403, "Forbidden", f"the function webhook quota of this system is full ({used} of {limit})",
                              quota={"free": 0, "used": used, "limit": limit},
                              hint="delete a webhook, or ask the owner to raise the quota")
            sealed = sealing.seal_definition(definition, system.public_key, system_id=system_id, webhook_id=webhook_id,
                                             version=1, key_id=system.key_id)
            del definition
            w = Webhook(id=webhook_id, system_id=system_id, client_id=caller.client_id,
                        integration_name=names["integrationName"], location_name=names["locationName"],
                        function_name=names["functionName"], expires_at=names["expiresAt"], version=1,
                        key_id=system.key_id, sealed=sealed, modification_state=None)
            s.add(w)
        return JSONResponse(webhook_json(w), status_code=201,
                            headers={"Location": f"{INTEGRATOR}/systems/{system_id}/function-webhooks/{webhook_id}"})

    @route(f"{INTEGRATOR}/systems/{{system_id}}/function-webhooks/{{webhook_id}}", ["GET"])
    def get_webhook(request: Request, system_id: str, webhook_id: str):
        caller = caller_of(request)
        with db.read() as s:
            own_system(s, caller, system_id)
            return webhook_json(webhook_of(s, caller, system_id, webhook_id))

    @route(f"{INTEGRATOR}/systems/{{system_id}}/function-webhooks/{{webhook_id}}", ["PUT"])
    async def put_webhook(request: Request, system_id: str, webhook_id: str):
        body = await read_body(request)
        return await run_in_threadpool(_put_webhook, request, system_id, webhook_id, body)

    def _put_webhook(request: Request, system_id: str, webhook_id: str, body: bytes):
        caller = caller_of(request)
        names, definition = check_webhook(read_json(body))
        del body
        with db.write() as s:
            system = own_system(s, caller, system_id)
            w = webhook_of(s, caller, system_id, webhook_id)
            if w.modification_state == "DeleteRequested":
                raise Problem(409, "Conflict", "a deletion of this webhook waits for the owner's approval",
                              hint="wait until the owner approves or rejects it")
            w.pending_sealed = sealing.seal_definition(definition, system.public_key, system_id=system_id,
                                                       webhook_id=webhook_id, version=w.version + 1,
                                                       key_id=system.key_id)
            del definition
            w.pending_key_id = system.key_id
            w.modification_state = "UpdateRequested"
            # Names are metadata (a rename needs no approval); the definition waits.
            w.integration_name, w.location_name, w.function_name = (
                names["integrationName"], names["locationName"], names["functionName"])
            w.expires_at = names["expiresAt"]
            return JSONResponse(webhook_json(w), status_code=202)

    @route(f"{INTEGRATOR}/systems/{{system_id}}/function-webhooks/{{webhook_id}}", ["DELETE"])
    def delete_webhook(request: Request, system_id: str, webhook_id: str):
        caller = caller_of(request)
        with db.write() as s:
            own_system(s, caller, system_id)
            w = webhook_of(s, caller, system_id, webhook_id)
            w.modification_state = "DeleteRequested"
            w.pending_sealed = None
            w.pending_key_id = None
            return JSONResponse(webhook_json(w), status_code=202)

    @route(f"{INTEGRATOR}/systems/{{system_id}}/function-webhooks/{{webhook_id}}/name", ["PATCH"])
    async def rename_webhook(request: Request, system_id: str, webhook_id: str):
        body = await read_body(request)
        return await run_in_threadpool(_rename, request, system_id, webhook_id, body)

    def _rename(request: Request, system_id: str, webhook_id: str, body: bytes):
        caller = caller_of(request)
        data = read_json(body)
        if not isinstance(data, dict):
            raise bad("(body)", "must be a JSON object with locationName and/or functionName")
        changes = {k: check_name(data, k, n, required=False) for k, n in
                   (("integrationName", MAX_INTEGRATION), ("locationName", MAX_LOCATION), ("functionName", MAX_FUNCTION))}
        with db.write() as s:
            own_system(s, caller, system_id)
            w = webhook_of(s, caller, system_id, webhook_id)
            if changes["integrationName"] is not None:
                w.integration_name = changes["integrationName"]
            if changes["locationName"] is not None:
                w.location_name = changes["locationName"]
            if changes["functionName"] is not None:
                w.function_name = changes["functionName"]
        return Response(status_code=204)

    # ------------------------------------------------------------------ app API
    @route(f"{APP}/systems", ["GET"])
    def app_systems(request: Request):
        caller = caller_of(request, app_only=True)
        with db.read() as s:
            return [{"systemId": x.id, "systemName": x.name, "integrationEnabled": x.public_key is not None,
                     "keyId": x.key_id, "quota": x.quota}
                    for x in s.scalars(select(System).where(System.owner_id == caller.user_id).order_by(System.name))]

    @route(f"{APP}/systems/{{system_id}}/integration", ["PUT"])
    async def app_enable(request: Request, system_id: str):
        body = await read_body(request)
        return await run_in_threadpool(_app_enable, request, system_id, body)

    def _app_enable(request: Request, system_id: str, body: bytes):
        caller = caller_of(request, app_only=True)
        data = read_json(body)
        try:
            public_key = base64.b64decode(data["publicKey"], validate=True)
            sealed_private_key = base64.b64decode(data["sealedPrivateKey"], validate=True)
            sealing.load_public_key(public_key)
        except (KeyError, TypeError, ValueError, sealing.SealError):
            raise bad("publicKey", "publicKey (32 bytes) and sealedPrivateKey must be base64") from None
        with db.write() as s:
            system = own_system(s, caller, system_id)
            if system.public_key is not None:
                raise Problem(409, "Conflict", f"the integration of system {system_id!r} is already enabled",
                              hint="webhooks are sealed to its key; the app that enabled it opens them")
            system.public_key, system.sealed_private_key = public_key, sealed_private_key
            system.key_id += 1
            return {"systemId": system.id, "keyId": system.key_id}

    @route(f"{APP}/systems/{{system_id}}/function-webhooks", ["GET"])
    def app_webhooks(request: Request, system_id: str):
        caller = caller_of(request, app_only=True)
        with db.read() as s:
            system = own_system(s, caller, system_id)
            clients = dict(s.execute(select(OAuthClient.client_id, OAuthClient.name)).all())
            hooks = []
            for w in s.scalars(select(Webhook).where(Webhook.system_id == system_id).order_by(Webhook.created_at, Webhook.id)):
                hooks.append({**webhook_json(w), "clientId": w.client_id, "clientName": clients.get(w.client_id),
                              "version": w.version, "keyId": w.key_id, "sealed": _b64(w.sealed),
                              "pendingSealed": _b64(w.pending_sealed), "pendingKeyId": w.pending_key_id})
            return {"systemId": system.id, "systemName": system.name, "keyId": system.key_id,
                    "sealedPrivateKey": _b64(system.sealed_private_key), "functionWebhooks": hooks}

    def _decide(request: Request, system_id: str, webhook_id: str, approve: bool):
        caller = caller_of(request, app_only=True)
        with db.write() as s:
            own_system(s, caller, system_id)
            w = s.get(Webhook, webhook_id)
            if w is None or w.system_id != system_id:
                raise Problem(404, "Not Found", f"system {system_id!r} has no function webhook {webhook_id!r}")
            state = w.modification_state
            if state is None:
                raise Problem(409, "Conflict", f"webhook {webhook_id!r} has no change waiting for approval")
            if approve and state == "DeleteRequested":
                s.delete(w)
                return {"functionWebhookId": webhook_id, "result": "deleted"}
            if approve:
                w.sealed, w.key_id, w.version = w.pending_sealed, w.pending_key_id, w.version + 1
            w.pending_sealed = w.pending_key_id = None
            w.modification_state = None
            return {"functionWebhookId": webhook_id, "result": "updated" if approve else "rejected",
                    "version": w.version}

    @route(f"{APP}/systems/{{system_id}}/function-webhooks/{{webhook_id}}/approve", ["POST"])
    def app_approve(request: Request, system_id: str, webhook_id: str):
        return _decide(request, system_id, webhook_id, True)

    @route(f"{APP}/systems/{{system_id}}/function-webhooks/{{webhook_id}}/reject", ["POST"])
    def app_reject(request: Request, system_id: str, webhook_id: str):
        return _decide(request, system_id, webhook_id, False)

    # ------------------------------------------------------------------ OAuth 2.0
    async def oauth_request(request: Request) -> OAuthRequest:
        form = {}
        if request.method == "POST":
            form = await read_form(request)
        server.set_base_url(str(request.base_url))
        req = OAuthRequest(request.method, str(request.url), request.headers, dict(request.query_params), form)
        req.posted = form
        return req

    @app.get("/.well-known/oauth-authorization-server")
    def metadata(request: Request):
        base = str(request.base_url).rstrip("/")
        return {"issuer": base, "authorization_endpoint": f"{base}/oauth/authorize",
                "token_endpoint": f"{base}/oauth/token",
                "device_authorization_endpoint": f"{base}/oauth/device_authorization",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token",
                                          "urn:ietf:params:oauth:grant-type:device_code"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "none"],
                "code_challenge_methods_supported": ["S256"]}

    @app.post("/oauth/token")
    async def token(request: Request):
        req = await oauth_request(request)
        return await run_in_threadpool(server.create_token_response, req)

    @app.post("/oauth/device_authorization")
    async def device_authorization(request: Request):
        req = await oauth_request(request)
        return await run_in_threadpool(server.create_endpoint_response, "device_authorization", req)

    @app.get("/oauth/authorize")
    async def authorize_page(request: Request):
        req = await oauth_request(request)
        try:
            grant = await run_in_threadpool(server.get_consent_grant, req)
        except OAuth2Error as e:
            return _html(_page("Authorization refused", f"<p>{html.escape(e.description or e.error)}</p>"),
                                status_code=400)
        client = grant.client
        # the request's parameters ride along, but never as one of the form's own fields: a link
        # carrying decision=allow would otherwise turn a click on Deny into consent
        hidden = "".join(f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
                         for k, v in request.query_params.items() if k not in _FORM_FIELDS)
        return _html(_page(
            "Sign in to keyhook",
            f"<p><b>{html.escape(client.name)}</b> asks to register function webhooks on your systems.</p>"
            f'<form method="post">{hidden}{_login_fields()}'
            '<button name="decision" value="allow">Allow</button> '
            '<button name="decision" value="deny">Deny</button></form>'))

    @app.post("/oauth/authorize")
    async def authorize(request: Request):
        req = await oauth_request(request)
        # the sign-in and the decision come from the form the user submitted, never the query
        form = req.posted

        def run():
            user = _login(form.get("email", ""), form.get("password", ""))
            if user is None:
                return _html(_page("Sign in to keyhook", "<p>Wrong e-mail or password; go back and try again.</p>"),
                                    status_code=401)
            grant = server.get_consent_grant(req, end_user=user)
            return server.create_authorization_response(req, grant_user=user if form.get("decision") == "allow" else None,
                                                        grant=grant)
        try:
            return await run_in_threadpool(run)
        except OAuth2Error as e:
            return _html(_page("Authorization refused", f"<p>{html.escape(e.description or e.error)}</p>"),
                                status_code=400)

    @app.get("/oauth/device")
    def device_page(request: Request):
        code = html.escape(request.query_params.get("user_code", ""))
        return _html(_page(
            "Connect the keyhook app",
            '<form method="post"><label>Code shown by the app <input name="user_code" value="' + code + '"></label><br>'
            + _login_fields() + '<button name="decision" value="allow">Allow</button> '
            '<button name="decision" value="deny">Deny</button></form>'))

    @app.post("/oauth/device")
    async def device_verify(request: Request):
        form = await read_form(request)

        def run():
            user = _login(form.get("email", ""), form.get("password", ""))
            if user is None:
                return _html(_page("Connect the keyhook app", "<p>Wrong e-mail or password.</p>"), status_code=401)
            code = form.get("user_code", "").strip().upper()
            with db.write() as s:
                grant = s.scalar(select(DeviceGrant).where(DeviceGrant.user_code == code))
                if grant is None or grant.is_expired() or grant.approved is not None:
                    return _html(_page("Connect the keyhook app",
                                              "<p>That code is unknown, expired or used; start `keyhook cloud login` again.</p>"),
                                        status_code=400)
                grant.user_id = user.id
                grant.approved = form.get("decision") == "allow"
            return _html(_page("Connect the keyhook app",
                                      "<p>Done: return to the app.</p>" if form.get("decision") == "allow"
                                      else "<p>Refused.</p>"))
        return await run_in_threadpool(run)

    def _login(email: str, password: str) -> User | None:
        """The user, or None for a wrong e-mail or password. After LOGIN_FREE_FAILURES wrong
        passwords in a row, sign-in is refused for 2, 4, 8 ... up to 900 s (Problem 429)."""
        with db.read() as s:
            user = s.scalar(select(User).where(User.email == email.strip().lower()))
        if user is None or not user.password_hash:
            return None
        wait = user.locked_until - now()
        if wait > 0:
            raise Problem(429, "Too Many Requests", f"too many wrong passwords; try again in {wait} s",
                          hint="wait, then sign in with the right password")
        if verify(user.password_hash, password):
            if user.failed_logins:
                with db.write() as s:
                    s.execute(update(User).where(User.id == user.id).values(failed_logins=0, locked_until=0))
            return user
        with db.write() as s:
            failed = s.scalar(select(User.failed_logins).where(User.id == user.id)) + 1
            lock = 0 if failed < LOGIN_FREE_FAILURES else now() + min(2 ** (failed - LOGIN_FREE_FAILURES + 1), 900)
            s.execute(update(User).where(User.id == user.id).values(failed_logins=failed, locked_until=lock))
        return None

    app.add_middleware(AccessLog)
    return app


async def read_body(request: Request) -> bytes:
    """The request body, read up to MAX_BODY + 1 bytes: a larger one is refused (413) without
    holding it in memory."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise Problem(413, "Content Too Large", f"the body is over {MAX_BODY} bytes",
                          hint="a function webhook with its definition fits in a few KiB")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (RFC 6749 appendix B), first value of each key."""
    body = await read_body(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if not body or ctype != "application/x-www-form-urlencoded":
        return {}
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True)
    except (UnicodeDecodeError, ValueError):
        raise Problem(400, "Bad Request", "the form is not UTF-8 application/x-www-form-urlencoded") from None
    form: dict[str, str] = {}
    for k, v in pairs:
        form.setdefault(k, v)
    return form


def _login_fields() -> str:
    return ('<label>E-mail <input name="email" type="email" autocomplete="username"></label><br>'
            '<label>Password <input name="password" type="password" autocomplete="current-password"></label><br>')


# The sign-in pages may not be framed by another site (a framed consent page can be clicked
# through: clickjacking, RFC 6749 section 10.13) nor cached.
_PAGE_HEADERS = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'",
                 "Cache-Control": "no-store"}


def _html(content: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(content, status_code=status_code, headers=_PAGE_HEADERS)


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
            f"<body><h1>{html.escape(title)}</h1>{body}</body></html>")


class AccessLog:
    """ASGI middleware: one log line per request with method, path and status, and never the
    query string (a published client sends its client secret there) nor any header or body."""

    def __init__(self, app) -> None:
        self.app = app
        self.log = logging.getLogger("keyhook.cloud.access")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self.log.isEnabledFor(logging.INFO):
            return await self.app(scope, receive, send)
        status = [0]

        async def send_(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)
        try:
            await self.app(scope, receive, send_)
        finally:
            client = scope.get("client") or ("-", 0)
            self.log.info('%s "%s %s" %d', client[0], scope["method"], scope["path"], status[0])


def bare_app() -> FastAPI:
    """The reference for `make bench`: one endpoint of the same framework, no database, no auth."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/bare")
    def bare():
        return JSONResponse([{"functionWebhookId": "x", "integrationName": "bench", "locationName": "", "functionName": "f",
                 "expiresAt": None, "modificationState": None}])
    return app


__all__ = ["create_app", "bare_app", "Problem"]
