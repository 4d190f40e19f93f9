"""This app's identity and its pairing keys, kept under the user's config directory.

Layout (directory mode 0700, every file mode 0600, written atomically):

    <config>/app.json                    {"app_id": "<32 hex>"}
    <config>/pairings/<device_id>.json   {"device_id": ..., "key": "<64 hex>", "paired_at": ...}

`<config>` is `$KEYHOOK_CONFIG` if set, else platformdirs' `user_config_dir("keyhook")`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from keyhook import KeyhookError

_DEVICE_ID = re.compile(r"[0-9a-f]{12}")
_APP_ID = re.compile(r"[0-9a-f]{32}")


def config_dir() -> Path:
    """`$KEYHOOK_CONFIG`, else the platform's per-user config directory for keyhook."""
    env = os.environ.get("KEYHOOK_CONFIG")
    return Path(env) if env else Path(platformdirs.user_config_dir("keyhook"))


@dataclass(frozen=True)
class Pairing:
    """A long-term pairing key shared with one device."""

    device_id: str
    key: bytes = field(repr=False)
    paired_at: str = ""


def _check_device_id(device_id: str) -> str:
    if not isinstance(device_id, str) or not _DEVICE_ID.fullmatch(device_id):
        raise KeyhookError(f"{device_id!r} is not a device id",
                           hint="a device id is 12 lowercase hex digits, as in the device's name keyhook-XXXXXX")
    return device_id


class Keystore:
    """Files holding the app id and the pairing keys; safe against partial writes."""

    def __init__(self, root: str | os.PathLike | None = None) -> None:
        self.root = Path(root) if root is not None else config_dir()
        self._app_id: str | None = None

    # -- files ------------------------------------------------------------------------------
    def _ensure_dir(self, path: Path) -> None:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if os.name == "posix":
            os.chmod(path, 0o700)

    def _write(self, path: Path, document: dict) -> None:
        self._ensure_dir(path.parent)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(document, f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def _read(self, path: Path) -> dict | None:
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyhookError(f"{path} is readable by other users; refusing to use it",
                               hint=f"run `chmod 600 {path}` (and check who else may have copied it)")
        try:
            document = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise KeyhookError(f"{path} is unreadable or corrupt: {e}",
                               hint="remove the file; for a pairing, pair the device again") from e
        if not isinstance(document, dict):
            raise KeyhookError(f"{path} is corrupt", hint="remove the file; for a pairing, pair the device again")
        return document

    # -- the app identity ---------------------------------------------------------------------
    @property
    def app_id(self) -> str:
        """32 lowercase hex digits, made once per install and kept."""
        if self._app_id is None:
            path = self.root / "app.json"
            document = self._read(path)
            if document is None:
                document = {"app_id": secrets.token_hex(16)}
                self._write(path, document)
            app_id = document.get("app_id")
            if not isinstance(app_id, str) or not _APP_ID.fullmatch(app_id):
                raise KeyhookError(f"{path} holds a bad app id",
                                   hint="restore it from a backup; removing it makes this a new app that must pair again")
            self._app_id = app_id
        return self._app_id

    # -- pairings -----------------------------------------------------------------------------
    def _pairing_path(self, device_id: str) -> Path:
        return self.root / "pairings" / f"{_check_device_id(device_id)}.json"

    def save(self, device_id: str, key: bytes) -> Pairing:
        """Store (or replace) the pairing key for `device_id`."""
        if len(key) != 32:
            raise ValueError("a pairing key is 32 bytes")
        pairing = Pairing(device_id, bytes(key), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self._write(self._pairing_path(device_id),
                    {"device_id": device_id, "key": key.hex(), "paired_at": pairing.paired_at})
        return pairing

    def get(self, device_id: str) -> Pairing | None:
        """The pairing with `device_id`, or None."""
        path = self._pairing_path(device_id)
        document = self._read(path)
        if document is None:
            return None
        try:
            key = bytes.fromhex(document["key"])
            if len(key) != 32 or document.get("device_id") != device_id:
                raise ValueError("bad key")
        except (KeyError, TypeError, ValueError) as e:
            raise KeyhookError(f"{path} is corrupt", hint="remove it and pair the device again") from e
        return Pairing(device_id, key, str(document.get("paired_at", "")))

    def list(self) -> list[Pairing]:
        """Every stored pairing, by device id."""
        folder = self.root / "pairings"
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.glob("*.json")):
            if _DEVICE_ID.fullmatch(path.stem):
                pairing = self.get(path.stem)
                if pairing is not None:
                    out.append(pairing)
        return out

    def resolve(self, name: str | None = None) -> Pairing:
        """The pairing a user means by `name`: a device id, its last 6 hex digits, or the BLE
        name `keyhook-XXXXXX`; with no name, the only pairing there is."""
        pairings = self.list()
        if name:
            suffix = name.lower().removeprefix("keyhook-")
            pairings = [p for p in pairings if p.device_id == suffix or
                        (len(suffix) == 6 and p.device_id.endswith(suffix))]
        if len(pairings) == 1:
            return pairings[0]
        known = ", ".join(p.device_id for p in self.list()) or "none"
        if not pairings:
            raise KeyhookError(f"no pairing with {name or 'any device'} in {self.root}",
                               hint=f"pair the device first (paired here: {known})")
        raise KeyhookError(f"{name or 'more than one device'} matches several pairings ({known})",
                           hint="name the device by its full 12-digit id")

    def remove(self, device_id: str) -> bool:
        """Forget the pairing with `device_id`; True if there was one."""
        path = self._pairing_path(device_id)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True
