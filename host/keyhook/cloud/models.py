"""The cloud's tables (SQLAlchemy 2 declarative). The schema itself is made by the Alembic
migrations in `migrations/`; these classes must match them (a test compares the two).

No column ever holds a webhook definition in clear, a token, a password or a client secret:
definitions are HPKE ciphertext (`sealing`), credentials are hashes.
"""

from __future__ import annotations

import time

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, AuthorizationCodeMixin
from authlib.oauth2.rfc8628 import DeviceCredentialMixin


def now() -> int:
    """Unix time in seconds (all timestamps in the schema are integers)."""
    return int(time.time())


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[int] = mapped_column(Integer, default=now)
    # Wrong passwords in a row on the sign-in pages, and until when sign-in is refused.
    failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    locked_until: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class System(Base):
    __tablename__ = "systems"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    quota: Mapped[int] = mapped_column(Integer, default=5)  # webhooks per OAuth client
    # Set by the app when the owner enables the integration (raw X25519 public key, and the
    # private key AES-GCM-sealed under the system key that only the app and devices hold).
    public_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    sealed_private_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    key_id: Mapped[int] = mapped_column(Integer, default=0)  # bumps at each enable


class QuotaOverride(Base):
    __tablename__ = "quota_overrides"
    system_id: Mapped[str] = mapped_column(ForeignKey("systems.id", ondelete="CASCADE"), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    quota: Mapped[int] = mapped_column(Integer)


class OAuthClient(Base, ClientMixin):
    __tablename__ = "oauth_clients"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_secret_hash: Mapped[str | None] = mapped_column(String(200))  # None: a public client
    name: Mapped[str] = mapped_column(String(128))
    redirect_uris: Mapped[str] = mapped_column(Text, default="")  # newline-separated
    grant_types: Mapped[str] = mapped_column(Text, default="authorization_code refresh_token")
    is_app: Mapped[bool] = mapped_column(Boolean, default=False)  # keyhook's own app (app API)

    # Authlib ClientMixin (RFC 6749 section 2)
    def get_client_id(self):
        return self.client_id

    def get_default_redirect_uri(self):
        uris = self.redirect_uris.split()
        return uris[0] if uris else None

    def get_allowed_scope(self, scope):
        return ""

    def check_redirect_uri(self, redirect_uri):
        return redirect_uri in self.redirect_uris.split()

    def check_client_secret(self, client_secret):
        # Client secrets are 256-bit random strings made by `client add`: SHA-256 is enough.
        import hashlib
        import hmac
        return self.client_secret_hash is not None and hmac.compare_digest(
            self.client_secret_hash, hashlib.sha256(client_secret.encode()).hexdigest())

    def check_endpoint_auth_method(self, method, endpoint):
        if self.client_secret_hash is None:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type):
        return response_type == "code" and "authorization_code" in self.grant_types.split()

    def check_grant_type(self, grant_type):
        return grant_type in self.grant_types.split()


class OAuthToken(Base, TokenMixin):
    """One issued access/refresh pair. `family` ties every pair rotated from one grant."""
    __tablename__ = "oauth_tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    family: Mapped[str] = mapped_column(String(36), index=True)
    access_token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    refresh_token_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(Text, default="")
    issued_at: Mapped[int] = mapped_column(Integer, default=now)
    access_expires_at: Mapped[int] = mapped_column(Integer)
    refresh_expires_at: Mapped[int] = mapped_column(Integer)
    refresh_used: Mapped[bool] = mapped_column(Boolean, default=False)  # rotated away
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    def check_client(self, client):
        return self.client_id == client.get_client_id()

    def get_scope(self):
        return self.scope

    def get_expires_in(self):
        return self.access_expires_at - self.issued_at

    def is_expired(self):
        return now() >= self.refresh_expires_at

    def is_revoked(self):
        return self.revoked or self.refresh_used


class AuthorizationCode(Base, AuthorizationCodeMixin):
    __tablename__ = "oauth_codes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    redirect_uri: Mapped[str] = mapped_column(Text, default="")
    scope: Mapped[str] = mapped_column(Text, default="")
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(10))
    expires_at: Mapped[int] = mapped_column(Integer)

    def get_redirect_uri(self):
        return self.redirect_uri

    def get_scope(self):
        return self.scope


class DeviceGrant(Base, DeviceCredentialMixin):
    """RFC 8628: a device code waiting for the user to enter its user code."""
    __tablename__ = "oauth_device_grants"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    device_code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_code: Mapped[str] = mapped_column(String(16), unique=True)
    client_id: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[int] = mapped_column(Integer)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    approved: Mapped[bool | None] = mapped_column(Boolean)  # None: waiting
    last_poll: Mapped[int] = mapped_column(Integer, default=0)

    def get_client_id(self):
        return self.client_id

    def get_scope(self):
        return self.scope

    def get_user_code(self):
        return self.user_code

    def is_expired(self):
        return now() >= self.expires_at


class Webhook(Base):
    """A registered function webhook: metadata in clear, the definition only as HPKE ciphertext."""
    __tablename__ = "webhooks"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    system_id: Mapped[str] = mapped_column(ForeignKey("systems.id", ondelete="CASCADE"), index=True)
    client_id: Mapped[str] = mapped_column(String(64), index=True)  # the registering OAuth client
    integration_name: Mapped[str] = mapped_column(String(128))
    location_name: Mapped[str] = mapped_column(String(128))
    function_name: Mapped[str] = mapped_column(String(50))
    expires_at: Mapped[str | None] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer, default=1)
    key_id: Mapped[int] = mapped_column(Integer)
    sealed: Mapped[bytes] = mapped_column(LargeBinary)  # HPKE enc || ct
    # A change waiting for the owner: "UpdateRequested" (with pending_sealed) or "DeleteRequested".
    modification_state: Mapped[str | None] = mapped_column(String(20))
    pending_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    pending_key_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[int] = mapped_column(Integer, default=now)
