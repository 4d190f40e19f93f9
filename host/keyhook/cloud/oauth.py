"""The OAuth 2.0 authorization server, built on Authlib's framework-neutral server.

Grants: authorization code (RFC 6749 section 4.1) for confidential clients (client secret, in
the Basic header, the form body or, as a published sample client sends it, the query) and for
public clients with PKCE (RFC 7636, S256); refresh token (section 6) rotated at each use, a
reused refresh token revoking its whole family (OAuth 2.0 Security BCP, RFC 9700 section 4.14);
device authorization (RFC 8628) for the command-line app. Access tokens live 45 minutes,
refresh tokens 14 days. Every token, code and device code is stored only as its SHA-256.

`BearerAuth.authenticate` checks a bearer access token for the APIs (RFC 6750).
"""

from __future__ import annotations

import contextvars
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from authlib.oauth2 import AuthorizationServer, OAuth2Error
from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant
from sqlalchemy import bindparam, select, update
from starlette.responses import Response

from keyhook.cloud.db import Database
from keyhook.cloud.models import AuthorizationCode, DeviceGrant, OAuthClient, OAuthToken, User, now

ACCESS_TOKEN_TTL = 45 * 60          # seconds
REFRESH_TOKEN_TTL = 14 * 24 * 3600  # seconds
CODE_TTL = 10 * 60
DEVICE_CODE_TTL = 10 * 60
DEVICE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"

_base_url: contextvars.ContextVar[str] = contextvars.ContextVar("keyhook_base_url", default="https://localhost")


def token_hash(token: str) -> str:
    """SHA-256 hex of a token: what the database keeps. Tokens are 256-bit random strings, so a
    fast hash suffices (no dictionary to attack)."""
    return hashlib.sha256(token.encode()).hexdigest()


def code_last(uri: str) -> str:
    """`uri` (an authorization response's redirect) with its `code` parameter moved to the end
    of the query. RFC 6749 section 4.1.2 sets no order; ekey's sample client, told to paste the
    redirected URL, takes everything after "code=" as the code, so anything after it (the
    state) would spoil the code."""
    parts = urlsplit(uri)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if not any(k == "code" for k, _ in pairs):
        return uri
    pairs = [p for p in pairs if p[0] != "code"] + [p for p in pairs if p[0] == "code"]
    return urlunsplit(parts._replace(query=urlencode(pairs)))


def new_token() -> str:
    return secrets.token_urlsafe(32)


class _Payload(OAuth2Payload):
    def __init__(self, data: dict[str, str]) -> None:
        self._data = data

    @property
    def data(self):
        return self._data

    @property
    def datalist(self):
        return {k: [v] for k, v in self._data.items()}


class Request(OAuth2Request):
    """An OAuth request as Authlib wants it: query and form merged (form wins), as RFC 6749
    section 3.2 asks for the body and the sample client sends the token request in the query."""

    def __init__(self, method: str, url: str, headers: dict, query: dict, form: dict) -> None:
        super().__init__(method=method, uri=url, headers=headers)
        self._query = dict(query)
        self._merged = {**query, **form}
        self.payload = _Payload(self._merged)

    @property
    def args(self):
        return self._query

    @property
    def form(self):
        return self._merged


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code, request):
        data = request.payload.data
        with self.server.db.write() as s:
            s.add(AuthorizationCode(
                code_hash=token_hash(code), client_id=request.client.get_client_id(), user_id=request.user.id,
                redirect_uri=request.payload.redirect_uri or "", scope=request.payload.scope or "",
                code_challenge=data.get("code_challenge"), code_challenge_method=data.get("code_challenge_method"),
                expires_at=now() + CODE_TTL))

    def query_authorization_code(self, code, client):
        with self.server.db.read() as s:
            row = s.scalar(select(AuthorizationCode).where(AuthorizationCode.code_hash == token_hash(code)))
        if row and row.client_id == client.get_client_id() and row.expires_at > now():
            return row
        return None

    def delete_authorization_code(self, authorization_code):
        with self.server.db.write() as s:
            # Single use: a second redemption of the same code finds nothing (RFC 6749 section 4.1.2).
            n = s.execute(AuthorizationCode.__table__.delete().where(
                AuthorizationCode.id == authorization_code.id)).rowcount
        if n != 1:
            raise InvalidGrantError("The authorization code was already used.")

    def authenticate_user(self, authorization_code):
        with self.server.db.read() as s:
            return s.get(User, authorization_code.user_id)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        with self.server.db.read() as s:
            row = s.scalar(select(OAuthToken).where(OAuthToken.refresh_token_hash == token_hash(refresh_token)))
        if row is None or row.revoked or row.refresh_expires_at <= now():
            return None
        if row.refresh_used:
            self.server.revoke_family(row.family)  # reuse: someone holds a copy
            return None
        return row

    def authenticate_user(self, refresh_token):
        with self.server.db.read() as s:
            return s.get(User, refresh_token.user_id)

    def revoke_old_credential(self, refresh_token):
        with self.server.db.write() as s:
            n = s.execute(update(OAuthToken).where(OAuthToken.id == refresh_token.id,
                                                   OAuthToken.refresh_used.is_(False))
                          .values(refresh_used=True)).rowcount
        if n != 1:
            # Two requests raced with one refresh token: a reuse like any other.
            self.server.revoke_family(refresh_token.family)
            raise InvalidGrantError("The refresh token was already used; its whole grant is revoked.")


class DeviceCodeGrantImpl(DeviceCodeGrant):
    def query_device_credential(self, device_code):
        with self.server.db.read() as s:
            return s.scalar(select(DeviceGrant).where(DeviceGrant.device_code_hash == token_hash(device_code)))

    def query_user_grant(self, user_code):
        with self.server.db.read() as s:
            row = s.scalar(select(DeviceGrant).where(DeviceGrant.user_code == user_code))
            if row is None or row.approved is None:
                return None
            return s.get(User, row.user_id) if row.user_id else None, bool(row.approved)

    def should_slow_down(self, credential):
        t = now()
        with self.server.db.write() as s:
            s.execute(update(DeviceGrant).where(DeviceGrant.id == credential.id).values(last_poll=t))
        return t - credential.last_poll < DeviceEndpoint.INTERVAL - 1

    def create_token_response(self):
        with self.server.db.write() as s:
            # A device code is redeemed once (RFC 8628 section 3.5).
            n = s.execute(DeviceGrant.__table__.delete().where(DeviceGrant.id == self.request.credential.id)).rowcount
        if n != 1:
            raise InvalidGrantError("The device code was already used.")
        return super().create_token_response()


class DeviceEndpoint(DeviceAuthorizationEndpoint):
    ENDPOINT_NAME = "device_authorization"
    EXPIRES_IN = DEVICE_CODE_TTL
    INTERVAL = 5

    def get_verification_uri(self):
        return _base_url.get() + "/oauth/device"

    def save_device_credential(self, client_id, scope, data):
        with self.server.db.write() as s:
            s.add(DeviceGrant(device_code_hash=token_hash(data["device_code"]), user_code=data["user_code"],
                              client_id=client_id, scope=scope or "", expires_at=now() + data["expires_in"]))


class Server(AuthorizationServer):
    """Authlib's AuthorizationServer bound to the keyhook database."""

    def __init__(self, db: Database) -> None:
        super().__init__(scopes_supported=None)
        self.db = db
        self.register_token_generator("default", BearerTokenGenerator(
            access_token_generator=lambda **_: new_token(),
            refresh_token_generator=lambda **_: new_token(),
            expires_generator=lambda client, grant_type: ACCESS_TOKEN_TTL))
        self.register_grant(AuthorizationCodeGrant, [CodeChallenge(required=True)])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(DeviceCodeGrantImpl)
        self.register_endpoint(DeviceEndpoint)

    # --- Authlib's integration points
    def query_client(self, client_id):
        with self.db.read() as s:
            return s.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id))

    def save_token(self, token, request):
        previous = getattr(request, "refresh_token", None)
        family = previous.family if isinstance(previous, OAuthToken) else str(uuid.uuid4())
        store_token(self.db, token, client_id=request.client.get_client_id(), user_id=request.user.id,
                    family=family)

    def create_oauth2_request(self, request):
        return request

    def create_json_request(self, request):
        return request

    def handle_response(self, status, body, headers):
        import json
        headers = dict(headers)
        if status == 302 and "Location" in headers:
            headers["Location"] = code_last(headers["Location"])
        if isinstance(body, dict):
            body = json.dumps(body)
            headers.setdefault("Content-Type", "application/json")
        return Response(body, status_code=status, headers=headers)

    def send_signal(self, name, *args, **kwargs):
        pass

    def revoke_family(self, family: str) -> None:
        with self.db.write() as s:
            s.execute(update(OAuthToken).where(OAuthToken.family == family).values(revoked=True))

    def set_base_url(self, url: str) -> None:
        _base_url.set(url.rstrip("/"))


def store_token(db: Database, token: dict, *, client_id: str, user_id: int, family: str) -> None:
    t = now()
    with db.write() as s:
        s.add(OAuthToken(client_id=client_id, user_id=user_id, family=family,
                         access_token_hash=token_hash(token["access_token"]),
                         refresh_token_hash=token_hash(token["refresh_token"]) if token.get("refresh_token") else None,
                         scope=token.get("scope") or "", issued_at=t,
                         access_expires_at=t + int(token["expires_in"]), refresh_expires_at=t + REFRESH_TOKEN_TTL))


def issue_token(db: Database, *, client_id: str, user_id: int) -> dict:
    """A token pair as if the user had consented (admin scripting and tests)."""
    token = {"token_type": "Bearer", "access_token": new_token(), "refresh_token": new_token(),
             "expires_in": ACCESS_TOKEN_TTL}
    store_token(db, token, client_id=client_id, user_id=user_id, family=str(uuid.uuid4()))
    return token


@dataclass(frozen=True)
class Caller:
    """Who an access token speaks for: the user, the OAuth client, and whether it is the app."""
    user_id: int
    client_id: str
    is_app: bool


class TokenError(Exception):
    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


_TOKEN_QUERY = (select(OAuthToken.user_id, OAuthToken.client_id, OAuthToken.revoked, OAuthToken.access_expires_at,
                       OAuthClient.is_app)
                .join(OAuthClient, OAuthClient.client_id == OAuthToken.client_id)
                .where(OAuthToken.access_token_hash == bindparam("token_hash")))


def authenticate_bearer(db: Database, authorization: str | None, conn=None, row=None) -> Caller:
    """Check `Authorization: Bearer TOKEN` (RFC 6750 section 2.1); raises TokenError.

    `conn`: an open SQLAlchemy Connection to run the lookup on (else one is taken from the pool);
    `row`: the token's row (user_id, client_id, revoked, access_expires_at, is_app) when the
    caller already fetched it with the token's hash."""
    if not authorization:
        raise TokenError("invalid_request", "no access token: send Authorization: Bearer TOKEN")
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise TokenError("invalid_request", "the Authorization header is not a Bearer token")
    if row is None:
        # One statement object for every call (built once, compiled once): building a new
        # WHERE clause per request cost more than running the query.
        params = {"token_hash": token_hash(value.strip())}
        if conn is None:
            with db.connect() as c:
                row = c.execute(_TOKEN_QUERY, params).first()
        else:
            row = conn.execute(_TOKEN_QUERY, params).first()
    if row is None:
        raise TokenError("invalid_token", "the access token is not known")
    if row.revoked:
        raise TokenError("invalid_token", "the access token was revoked")
    if row.access_expires_at <= now():
        raise TokenError("invalid_token", "the access token has expired; use the refresh token for a new one")
    return Caller(row.user_id, row.client_id, bool(row.is_app))


__all__ = ["Server", "Request", "authenticate_bearer", "issue_token", "Caller", "TokenError", "OAuth2Error",
           "DEVICE_GRANT_TYPE", "ACCESS_TOKEN_TTL", "REFRESH_TOKEN_TTL"]
