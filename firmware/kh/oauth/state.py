# keyhook oauth: the per-rule token state, in RAM and in one JSON file per rule.
# An entry: {"fp": chain fingerprint, "rt": rotated refresh token (absent until the endpoint
# rotates it), "at": access token, "iat": obtained at, "until": use it until (clock seconds)}.
# Files are replaced atomically (kh.store.files), so a power cut leaves the old or the new one.
import json
import hashlib
import binascii

from kh.store import files


def _hex16(data):
    return binascii.hexlify(hashlib.sha256(data).digest()[:8]).decode()


def path(state_dir, key):
    # A file name from the rule's key, whatever characters the key holds.
    return state_dir + "/oauth-" + _hex16(("kh-oauth-key\0" + str(key)).encode()) + ".json"


def fingerprint(refresh_token, endpoint, client_id, scope):
    # Identifies the chain a stored token belongs to: a new definition token, endpoint, client
    # or scope starts a new chain (and never sends a stored token to another endpoint).
    h = hashlib.sha256(b"kh-oauth-chain1")
    for part in (refresh_token, endpoint, client_id, scope):
        h.update(b"\0")
        if part:
            h.update(str(part).encode())
    return binascii.hexlify(h.digest()[:8]).decode()


def load(state_dir, key):
    if not state_dir:
        return None
    data = files.read(path(state_dir, key))
    if not data:
        return None
    try:
        e = json.loads(data)
    except ValueError:
        return None
    return e if isinstance(e, dict) else None


def save(state_dir, key, entry):
    # Durable once this returns; raises OSError when the file system refuses.
    if not state_dir:
        return
    if not files.exists(state_dir):
        files.makedirs(state_dir)
    files.write_atomic(path(state_dir, key), json.dumps(entry).encode())
