"""The app's side of the cloud: sign in with the device authorization grant (RFC 8628), enable the
integration of a system, pull and open sealed definitions, approve or reject pending changes,
and assign a definition to a device over the secure channel (`keyhook.session.device.DeviceClient`).

State, under the keystore's config directory (directory 0700, files 0600):

    <config>/cloud/session.json          {"url", "cafile", "client_id", tokens}
    <config>/cloud/server.pem            the server certificate, when pinned at login
    <config>/cloud/systems/<id>.json     {"system_key": "<64 hex>"}: the system key (32 bytes)
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from keyhook import KeyhookError
from keyhook import rules
from keyhook.cloud import sealing
from keyhook.cloud.tlscert import spki_pin
from keyhook.session.keystore import config_dir

APP_CLIENT_ID = "keyhook-app"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
# what a device accepts as a system id (firmware/kh/app/syskey.py); also safe as a file name
_SYSTEM_ID = re.compile(r"[A-Za-z0-9_:-][A-Za-z0-9._:-]{0,63}")


class CloudError(KeyhookError):
    pass


def _write_private(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def fetch_pinned_certificate(url: str, pin: str, timeout: float = 10.0) -> bytes:
    """The server's certificate (PEM), if its SPKI SHA-256 (base64) equals `pin`."""
    parts = urlsplit(url)
    pem = ssl.get_server_certificate((parts.hostname, parts.port or 443), timeout=timeout).encode()
    got = spki_pin(pem)
    if got != pin.removeprefix("sha256/"):
        raise CloudError(f"the server at {parts.netloc} presents key pin {got}, not {pin}",
                         hint="someone may be in the middle; compare with the pin `keyhook cloud serve` printed")
    return pem


class CloudApp:
    """The signed-in app: `CloudApp(config).pull()`. `http` may be injected (tests)."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else config_dir()
        self.dir = self.root / "cloud"
        self._session: dict | None = None

    # ---------------------------------------------------------------- session
    @property
    def session_path(self) -> Path:
        return self.dir / "session.json"

    def session(self) -> dict:
        if self._session is None:
            try:
                self._session = json.loads(self.session_path.read_text())
            except FileNotFoundError:
                raise CloudError("this app is not signed in to a keyhook cloud",
                                 hint="run `keyhook cloud login URL` first") from None
        return self._session

    def _save(self, session: dict) -> None:
        _write_private(self.session_path, json.dumps(session, indent=2).encode())
        self._session = session

    def _client(self, url: str, cafile: str | None) -> httpx.Client:
        verify: Any = ssl.create_default_context(cafile=cafile) if cafile else True
        return httpx.Client(base_url=url.rstrip("/"), verify=verify, timeout=30.0)

    def login(self, url: str, *, pin: str | None = None, cafile: str | None = None,
              show: Callable[[dict], None] = lambda d: None, timeout: float | None = None) -> dict:
        """Device authorization grant (RFC 8628 section 3): show the user code, poll the token endpoint."""
        if urlsplit(url).scheme != "https":
            raise CloudError(f"{url} is not an https:// URL", hint="the cloud speaks HTTPS only")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if pin:
            pem = fetch_pinned_certificate(url, pin)
            _write_private(self.dir / "server.pem", pem)
            cafile = str(self.dir / "server.pem")
        with self._client(url, cafile) as http:
            try:
                r = http.post("/oauth/device_authorization", data={"client_id": APP_CLIENT_ID})
            except httpx.HTTPError as e:
                raise CloudError(f"cannot reach {url}: {e}", hint="check the URL, and --pin or --cafile") from None
            if r.status_code != 200:
                raise CloudError(f"the cloud refused the sign-in ({r.status_code}: {r.text[:200]})",
                                 hint="is the cloud migrated (`keyhook cloud admin migrate`)?")
            grant = r.json()
            show(grant)
            interval = grant.get("interval", 5)
            deadline = time.monotonic() + (timeout or grant["expires_in"])
            while time.monotonic() < deadline:
                time.sleep(interval)
                r = http.post("/oauth/token", data={"grant_type": DEVICE_GRANT, "device_code": grant["device_code"],
                                                    "client_id": APP_CLIENT_ID})
                body = r.json()
                if r.status_code == 200:
                    break
                error = body.get("error")
                if error == "authorization_pending":
                    continue
                if error == "slow_down":
                    interval += 5  # RFC 8628 section 3.5
                    continue
                raise CloudError(f"sign-in failed: {error} ({body.get('error_description', '')})",
                                 hint="run `keyhook cloud login` again")
            else:
                raise CloudError("sign-in timed out: nobody entered the code", hint="run `keyhook cloud login` again")
        session = {"url": url.rstrip("/"), "cafile": cafile, "client_id": APP_CLIENT_ID,
                   "access_token": body["access_token"], "refresh_token": body.get("refresh_token"),
                   "expires_at": int(time.time()) + int(body["expires_in"])}
        self._save(session)
        return {"url": session["url"], "expires_in": body["expires_in"]}

    def _refresh(self, http: httpx.Client) -> None:
        s = self.session()
        r = http.post("/oauth/token", data={"grant_type": "refresh_token", "refresh_token": s["refresh_token"],
                                            "client_id": s["client_id"]})
        if r.status_code != 200:
            raise CloudError("the cloud session has ended (the refresh token was refused)",
                             hint="run `keyhook cloud login URL` again")
        body = r.json()
        self._save({**s, "access_token": body["access_token"], "refresh_token": body["refresh_token"],
                    "expires_at": int(time.time()) + int(body["expires_in"])})

    def request(self, method: str, path: str, **kw) -> Any:
        s = self.session()
        with self._client(s["url"], s.get("cafile")) as http:
            if s["expires_at"] - 60 < time.time():
                self._refresh(http)
            for attempt in (0, 1):
                r = http.request(method, path, headers={"Authorization": f"Bearer {self.session()['access_token']}"}, **kw)
                if r.status_code == 401 and attempt == 0:
                    self._refresh(http)
                    continue
                break
        if r.status_code >= 400:
            try:
                p = r.json()
                detail, hint = p.get("detail", r.text), p.get("hint")
            except ValueError:
                detail, hint = r.text[:200], None
            raise CloudError(f"the cloud answered {r.status_code}: {detail}", hint=hint)
        return r.json() if r.content else None

    # ---------------------------------------------------------------- keys
    def system_key(self, system_id: str, *, create: bool = False) -> bytes:
        path = self.dir / "systems" / f"{system_id}.json"
        try:
            return bytes.fromhex(json.loads(path.read_text())["system_key"])
        except FileNotFoundError:
            if not create:
                raise CloudError(f"this app has no key for system {system_id}",
                                 hint="enable the integration from this app (`keyhook integration enable SYSTEM`)") from None
        key = secrets.token_bytes(32)
        _write_private(path, json.dumps({"system_id": system_id, "system_key": key.hex()}).encode())
        return key

    # ---------------------------------------------------------------- operations
    def systems(self) -> list[dict]:
        return self.request("GET", "/app/api/systems")

    def enable(self, system: str) -> dict:
        """Make the integration key pair, seal its private key under the system key, send both halves."""
        system_id = self._system_id(system)
        key = self.system_key(system_id, create=True)
        sk, pk = sealing.new_key_pair()
        reply = self.request("PUT", f"/app/api/systems/{system_id}/integration", json={
            "publicKey": base64.b64encode(pk).decode(),
            "sealedPrivateKey": base64.b64encode(sealing.seal_private_key(sk, key, system_id)).decode()})
        return {"systemId": system_id, "keyId": reply["keyId"], "publicKey": base64.b64encode(pk).decode()}

    def _system_id(self, system: str) -> str:
        for s in self.systems():
            if system in (s["systemId"], s["systemName"]):
                return s["systemId"]
        raise CloudError(f"no system {system!r} on this account", hint="`keyhook webhooks pull` lists the systems")

    def _open_system(self, system_id: str) -> tuple[dict, Any]:
        data = self.request("GET", f"/app/api/systems/{system_id}/function-webhooks")
        sk = sealing.open_private_key(base64.b64decode(data["sealedPrivateKey"]), self.system_key(system_id), system_id)
        return data, sk

    def open_all(self, system: str | None = None) -> list[dict]:
        """Every webhook of the enabled systems (or one), opened: metadata, `definition` and
        `pendingDefinition` (the plaintext; only in memory)."""
        out = []
        for s in self.systems():
            if not s["integrationEnabled"] or (system and system not in (s["systemId"], s["systemName"])):
                continue
            data, sk = self._open_system(s["systemId"])
            for w in data["functionWebhooks"]:
                item = {**w, "systemId": s["systemId"], "systemName": s["systemName"], "definition": None,
                        "pendingDefinition": None, "error": None}
                # A blob that does not open (altered, or moved from another webhook or version by a
                # hostile or broken cloud) is reported, never used.
                try:
                    item["definition"] = sealing.open_definition(
                        base64.b64decode(w["sealed"]), sk, system_id=s["systemId"],
                        webhook_id=w["functionWebhookId"], version=w["version"], key_id=w["keyId"])
                    if w["pendingSealed"]:
                        item["pendingDefinition"] = sealing.open_definition(
                            base64.b64decode(w["pendingSealed"]), sk, system_id=s["systemId"],
                            webhook_id=w["functionWebhookId"], version=w["version"] + 1, key_id=w["pendingKeyId"])
                except sealing.SealError as e:
                    item["error"] = str(e)
                out.append(item)
        return out

    def pull(self, system: str | None = None) -> list[dict]:
        """What the owner sees: each webhook, opened and checked, summarised without secrets."""
        return [summary(w) for w in self.open_all(system)]

    def _find(self, webhook_id: str) -> dict:
        for w in self.open_all():
            if w["functionWebhookId"] == webhook_id:
                if w["error"]:
                    raise sealing.SealError(w["error"], hint="reject the change, or ask the integrator to register it again")
                return w
        raise CloudError(f"no function webhook {webhook_id!r} on this account's systems",
                         hint="`keyhook webhooks pull` lists them")

    def decide(self, webhook_id: str, approve: bool) -> dict:
        if not approve:  # rejecting needs nothing opened
            for w in self.open_all():
                if w["functionWebhookId"] == webhook_id:
                    return self.request("POST", f"/app/api/systems/{w['systemId']}/function-webhooks/{webhook_id}/reject")
        w = self._find(webhook_id)
        if approve and w["modificationState"] == "UpdateRequested":
            # The owner approves what they can read: the new definition must open and validate.
            rules.normalise({"functionName": w["functionName"], "definition": w["pendingDefinition"]})
        verb = "approve" if approve else "reject"
        return self.request("POST", f"/app/api/systems/{w['systemId']}/function-webhooks/{webhook_id}/{verb}")

    def rule_for(self, webhook_id: str, events: list[str] | None = None) -> tuple[dict, list]:
        """The device rule for a webhook (the one definition pipeline: `rules.normalise`)."""
        return self._rule(self._find(webhook_id), events)

    @staticmethod
    def _rule(w: dict, events: list[str] | None) -> tuple[dict, list]:
        webhook_id = w["functionWebhookId"]
        if w["modificationState"] == "DeleteRequested":
            raise CloudError(f"webhook {webhook_id} waits for deletion", hint="approve or reject the deletion first")
        return rules.normalise({"integrationName": w["integrationName"], "locationName": w["locationName"],
                                "functionName": w["functionName"], "functionWebhookId": webhook_id,
                                "expiresAt": w["expiresAt"], "definition": w["definition"]}, events)

    async def assign(self, webhook_id: str, address: str, *, events: list[str] | None = None,
                     radio: str | None = None, keystore=None) -> dict:
        """Push the opened definition to a paired device over the secure channel; first make sure
        the device holds the system key of the webhook's system (sent when its check value differs)."""
        from keyhook.session.device import DeviceClient
        w = self._find(webhook_id)
        rule, warnings = self._rule(w, events)
        system_id = w["systemId"]
        name = rule["functionName"]
        async with DeviceClient(address, radio=radio, keystore=keystore) as dev:
            # The name is metadata an integrator renames without approval, and the device keys
            # its rules by name: never let it replace a rule that is not this webhook's.
            other = [r for r in await dev.list_rules() if r.get("name") == name and r.get("id") != webhook_id]
            if other:
                raise CloudError(f"the device {address} already has a rule named {name!r} that is not webhook "
                                 f"{webhook_id}; nothing was changed",
                                 hint=f"remove that rule first (`keyhook rules rm {address} '{name}'`), or ask the "
                                      "integrator to rename the webhook")
            held = await self._give_system_key(dev, system_id, replace=False)
            stored = await dev.put_rules([rule])
        return {"functionWebhookId": webhook_id, "device": address, "stored": stored, "events": rule["events"],
                "warnings": [str(w) for w in warnings], "systemKey": held}

    # ---------------------------------------------------------------- the system key on devices
    def local_system_id(self, system: str) -> str:
        """The id of `system` (an id or a name): an id this app holds a key for is taken as it is
        (no cloud needed), anything else is looked up in the cloud."""
        if _SYSTEM_ID.fullmatch(system) and (self.dir / "systems" / f"{system}.json").is_file():
            return system
        return self._system_id(system)

    async def _give_system_key(self, dev, system_id: str, *, replace: bool) -> dict:
        from keyhook.session.device import system_key_check
        key = self.system_key(system_id)
        want = system_key_check(key, system_id)
        held = await dev.system_key()
        if held and held.get("system_id") == system_id and held.get("key_check") == want:
            return {"systemId": system_id, "device": dev.address, "keyCheck": want, "changed": False}
        if held and held.get("system_id") != system_id and not replace:
            raise CloudError(f"the device {dev.address} belongs to system {held.get('system_id')}, not {system_id}",
                             hint=f"to move it to {system_id}: `keyhook system key push {system_id} --device "
                                  f"{dev.address} --replace`")
        reply = await dev.set_system_key(system_id, key)
        return {"systemId": system_id, "device": dev.address, "keyCheck": reply["key_check"], "changed": reply["changed"]}

    async def push_system_key(self, system: str, address: str, *, replace: bool = False, radio: str | None = None,
                              keystore=None) -> dict:
        """Give the paired device at `address` the system key of `system` over the secure channel
        (admin app only). A device that holds another system's key keeps it unless `replace`.
        Returns `{"systemId", "device", "keyCheck", "changed"}`; `keyCheck` is what the device
        reported, equal to `keyhook.session.device.system_key_check` of this app's key."""
        from keyhook.session.device import DeviceClient
        system_id = self.local_system_id(system)
        self.system_key(system_id)  # fails here, before any radio work, when this app has no key
        async with DeviceClient(address, radio=radio, keystore=keystore) as dev:
            return await self._give_system_key(dev, system_id, replace=replace)

    async def device_system_key(self, address: str, *, radio: str | None = None, keystore=None) -> dict:
        """What the device at `address` holds: `{"device", "systemId", "keyCheck", "matches"}`
        (`systemId` None when it holds no key; `matches`: its check value equals the one of this
        app's key for that system, None when this app has no key for it)."""
        from keyhook.session.device import DeviceClient, system_key_check
        async with DeviceClient(address, radio=radio, keystore=keystore) as dev:
            held = await dev.system_key()
        if not held:
            return {"device": address, "systemId": None, "keyCheck": None, "matches": None}
        sid = held["system_id"]
        try:
            matches = system_key_check(self.system_key(sid), sid) == held["key_check"]
        except CloudError:
            matches = None
        return {"device": address, "systemId": sid, "keyCheck": held["key_check"], "matches": matches}


def summary(w: dict) -> dict:
    """A webhook for display: names, state, and where it goes (scheme, host, port), never its secrets."""
    def target(d: dict | None) -> str | None:
        if not d:
            return None
        try:
            rule, _ = rules.normalise({"functionName": w["functionName"], "definition": d})
        except rules.RuleError as e:
            return f"invalid: {e}"
        rd = rule["definition"]
        p = urlsplit(rd["url"])
        # authentication null, absent or without a type is `None` (docs/rule-format.md)
        auth = (rd.get("authentication") or {}).get("apiAuthenticationType") or "None"
        return f"{rd['method'].upper()} {p.scheme}://{p.netloc}/... ({rd.get('securityLevel', 'TlsWithCACheck')}, {auth})"
    return {"systemId": w["systemId"], "systemName": w["systemName"], "functionWebhookId": w["functionWebhookId"],
            "integrationName": w["integrationName"], "clientName": w.get("clientName"),
            "locationName": w["locationName"], "functionName": w["functionName"], "expiresAt": w["expiresAt"],
            "version": w["version"], "modificationState": w["modificationState"],
            "target": f"does not open: {w['error']}" if w.get("error") else target(w["definition"]),
            "pendingTarget": target(w["pendingDefinition"]), "opened": not w.get("error")}
