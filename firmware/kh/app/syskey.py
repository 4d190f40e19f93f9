# App layer: the system key (PROTOCOL.md section 6, "The system key"), loaded by
# kh/app/commands.py for one operation and unloaded after it.
#
# The devices of one installation (a system) share a 32-byte system key with the app; the app
# seals the integration private key under it. The admin app gives it here, over the session;
# the device keeps it in system.json under the data root, padded out of littlefs's metadata as
# every secret is (kh.store.files.write_atomic), and never sends it back: answers carry the
# system id and a key check value, HMAC-SHA256(key, _LABEL || system id), first 16 bytes in hex.
#   system.set     {system_id, key (base64, 32 bytes)} -> {system_id, key_check, changed}
#   system.get     {} -> {system: {system_id, key_check} or null}
#   system.remove  {} -> {removed}
import json
from binascii import a2b_base64, b2a_base64, hexlify, unhexlify

from micropython import const

from kh import store
from kh.app.commands import AppError, _need
from kh.store import files

_FILE = "system.json"
_LABEL = b"keyhook-system-key-check-v1"
_KEY_LEN = const(32)
_B64_LEN = const(44)  # 32 bytes in base64, with its one "="
_MAX_ID = const(64)


def _admin(c, app_id, what):
    if not c.ctx.device.is_admin(app_id):
        raise AppError("forbidden", "only the admin app (the one paired with the setup code) may " + what)


def _check(key, system_id):
    from kh.crypto.hmac import hmac_sha256

    return hexlify(hmac_sha256(key, _LABEL, system_id.encode())[:16]).decode()


def _load():
    # (system_id, key) or None; a damaged file counts as none (the admin sets the key again)
    raw = files.read(store.path(_FILE))
    if not raw:
        return None
    try:
        d = json.loads(raw)
        key = unhexlify(d["key"])
        sid = d["system_id"]
        if len(key) == _KEY_LEN and isinstance(sid, str):
            return sid, key
    except (ValueError, KeyError, TypeError):
        pass
    return None


def _system_id(msg):
    sid = _need(msg, "system_id", str)
    if not 0 < len(sid) <= _MAX_ID:
        raise AppError("bad_request", "system_id must be 1 to 64 characters")
    for ch in sid:
        if ord(ch) > 126 or not (ch.isalpha() or ch.isdigit() or ch in "-_.:"):
            raise AppError("bad_request", "system_id may hold only letters, digits and - _ . :")
    return sid


def _key(msg):
    text = _need(msg, "key", str)
    key = None
    if len(text) == _B64_LEN:
        try:
            key = a2b_base64(text)
        except ValueError:
            pass
    # canonical base64 only: MicroPython's decoder skips characters outside the alphabet
    if key is None or len(key) != _KEY_LEN or b2a_base64(key).rstrip() != text.encode():
        raise AppError("bad_request", "key must be the 32-byte system key in base64 (44 characters)")
    if key == bytes(_KEY_LEN):
        raise AppError("bad_request", "key is all zeros; send the system key the app made")
    return key


async def op_system_set(c, app_id, msg):
    _admin(c, app_id, "set the system key")
    sid = _system_id(msg)
    key = _key(msg)
    old = _load()
    changed = old != (sid, key)
    if changed:
        data = json.dumps({"system_id": sid, "key": hexlify(key).decode()}).encode()
        files.write_atomic(store.path(_FILE), data, True)
        data = None
        if old:
            files.scrub(c.ctx.root)  # the former key's blocks
        c.ctx.log.add("app", "system key replaced" if old else "system key set")
    return {"system_id": sid, "key_check": _check(key, sid), "changed": changed}


async def op_system_get(c, app_id, msg):
    held = _load()
    if held is None:
        return {"system": None}
    return {"system": {"system_id": held[0], "key_check": _check(held[1], held[0])}}


async def op_system_remove(c, app_id, msg):
    _admin(c, app_id, "remove the system key")
    if not files.remove(store.path(_FILE)):
        return {"removed": False}
    files.scrub(c.ctx.root)
    c.ctx.log.add("app", "system key removed")
    return {"removed": True}
