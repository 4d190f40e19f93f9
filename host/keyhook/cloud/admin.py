"""Owner-side administration, as a library (the `keyhook cloud admin` commands are thin over it).

Each function returns a JSON-ready dict and raises `AdminError` with a hint on bad input; nothing
is written when it raises.
"""

from __future__ import annotations

import re
import secrets
import uuid
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from keyhook import KeyhookError
from keyhook.cloud import oauth
from keyhook.cloud.db import Database
from keyhook.cloud.models import OAuthClient, QuotaOverride, System, User
from keyhook.cloud.passwords import hash_password

EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
APP_CLIENT_ID = "keyhook-app"


class AdminError(KeyhookError):
    pass


def migrate(db: Database) -> dict:
    rev = db.migrate()
    ensure_app_client(db)
    return {"database": db.safe_url(), "revision": rev}


def ensure_app_client(db: Database) -> None:
    """The keyhook app's own public OAuth client (device grant, refresh; PKCE-free by RFC 8628)."""
    with db.write() as s:
        if s.scalar(select(OAuthClient).where(OAuthClient.client_id == APP_CLIENT_ID)) is None:
            s.add(OAuthClient(client_id=APP_CLIENT_ID, client_secret_hash=None, name="keyhook app", redirect_uris="",
                              grant_types=f"{oauth.DEVICE_GRANT_TYPE} refresh_token", is_app=True))


def _user(s, email: str) -> User:
    user = s.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        raise AdminError(f"there is no user {email!r}", hint="add one with `keyhook cloud admin user add EMAIL`")
    return user


def user_add(db: Database, email: str, password: str | None) -> dict:
    email = email.strip().lower()
    if not EMAIL_RE.match(email):
        raise AdminError(f"{email!r} is not an e-mail address")
    try:
        with db.write() as s:
            u = User(email=email, password_hash=hash_password(password) if password else None)
            s.add(u)
            s.flush()
            return {"id": u.id, "email": email, "password": bool(password)}
    except IntegrityError:
        raise AdminError(f"the user {email!r} exists already") from None


def system_add(db: Database, owner: str, name: str, quota: int = 5) -> dict:
    if not name.strip() or len(name) > 128:
        raise AdminError("a system name is 1 to 128 characters")
    with db.write() as s:
        user = _user(s, owner)
        system = System(id=str(uuid.uuid4()), name=name, owner_id=user.id, quota=quota, key_id=0)
        s.add(system)
    return {"systemId": system.id, "systemName": name, "owner": user.email, "quota": quota}


def client_add(db: Database, name: str, redirect_uris: list[str], *, public: bool = False) -> dict:
    for uri in redirect_uris:
        parts = urlsplit(uri)
        if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
            raise AdminError(f"--redirect-uri {uri!r} is not an absolute http(s) URI without a fragment",
                             hint="RFC 6749 section 3.1.2: e.g. https://my.home-assistant.io/redirect/oauth")
    if not redirect_uris:
        raise AdminError("a client needs at least one --redirect-uri (RFC 6749 section 3.1.2)")
    client_id = secrets.token_hex(12)
    secret = None if public else secrets.token_urlsafe(32)
    with db.write() as s:
        s.add(OAuthClient(client_id=client_id, client_secret_hash=oauth.token_hash(secret) if secret else None, name=name,
                          redirect_uris="\n".join(redirect_uris), grant_types="authorization_code refresh_token"))
    return {"client_id": client_id, "client_secret": secret, "name": name, "redirect_uris": redirect_uris,
            "public": public}


def token_issue(db: Database, email: str, client_id: str) -> dict:
    with db.read() as s:
        user = _user(s, email)
        if s.scalar(select(OAuthClient).where(OAuthClient.client_id == client_id)) is None:
            raise AdminError(f"there is no OAuth client {client_id!r}", hint="`keyhook cloud admin client add` makes one")
    return oauth.issue_token(db, client_id=client_id, user_id=user.id)


def quota_set(db: Database, system_id: str, quota: int, client_id: str | None = None) -> dict:
    if quota < 0:
        raise AdminError("a quota is 0 or more webhooks")
    with db.write() as s:
        system = s.get(System, system_id)
        if system is None:
            raise AdminError(f"there is no system {system_id!r}")
        if client_id is None:
            system.quota = quota
        else:
            row = s.get(QuotaOverride, (system_id, client_id))
            if row is None:
                s.add(QuotaOverride(system_id=system_id, client_id=client_id, quota=quota))
            else:
                row.quota = quota
    return {"systemId": system_id, "client_id": client_id, "quota": quota}
