# Small device settings, each in its own JSON file under the store root, replaced atomically
# (kh.store.files.write_atomic): a power cut leaves the old or the new file, never a mix.
#   wifi.json      {"ssid": ..., "password": ...}   the station credentials (wifi() gives it)
#   settings.json  {"name": ..., ...}               device settings, keys and ranges in _SETTINGS
# Status answers (wifi_status, settings) never carry the Wi-Fi password.
import json
from micropython import const

from kh import store
from kh.store import files
from kh.store.errors import StoreError

_WIFI = "wifi.json"
_SETTINGS_FILE = "settings.json"
_MAX_SSID = const(32)       # 802.11: at most 32 bytes
_MAX_PSK = const(64)        # WPA2: 8 to 63 characters, or 64 hex digits

# key: (type, low, high, default); for strings low/high bound the length.
_SETTINGS = {
    "name": (str, 1, 24, ""),               # advertised name; "" = keyhook-XXXXXX
    "fire_attempts": (int, 1, 10, 4),       # tries per fire, network failures only
    "backoff_ms": (int, 100, 60000, 1000),  # first retry delay, doubling each time
    "queue_len": (int, 1, 32, 8),           # queued fires before the oldest is dropped
    "net_wait_ms": (int, 0, 300000, 30000), # how long a fire waits for Wi-Fi to come up
}


def _load(name):
    data = files.read(store.path(name))
    if not data:
        return None
    try:
        v = json.loads(data)
    except ValueError:
        return None
    return v if isinstance(v, dict) else None


def _save(name, obj, secret=False):
    files.write_atomic(store.path(name), json.dumps(obj).encode(), secret)


# ---- Wi-Fi ----

def set_wifi(ssid, password):
    if not isinstance(ssid, str) or not 0 < len(ssid.encode()) <= _MAX_SSID:
        raise StoreError("invalid_setting", "ssid: give the network name, 1 to 32 bytes")
    if password is None:
        password = ""
    # WPA needs 8 to 63 characters (or 64 hex digits), WEP 5 or 13; the radio judges the rest.
    if not isinstance(password, str) or len(password) > _MAX_PSK:
        raise StoreError("invalid_setting", "password: give at most 64 characters, or none for an open network")
    _save(_WIFI, {"ssid": ssid, "password": password}, True)


def wifi():
    # {"ssid": ..., "password": ...}, or None when no network is configured.
    w = _load(_WIFI)
    if not w or not isinstance(w.get("ssid"), str):
        return None
    return {"ssid": w["ssid"], "password": w.get("password") or ""}


def wifi_status():
    w = wifi()
    return {"configured": w is not None, "ssid": w["ssid"] if w else None}


def clear_wifi():
    files.remove(store.path(_WIFI))


# ---- settings ----

def settings():
    # Every setting, stored value or default.
    s = _load(_SETTINGS_FILE) or {}
    out = {}
    for k in _SETTINGS:
        spec = _SETTINGS[k]
        v = s.get(k)
        out[k] = v if isinstance(v, spec[0]) and not isinstance(v, bool) else spec[3]
    return out


def setting(key):
    return settings()[key]


def update_settings(changes):
    # Check every change first, then write them all at once.
    if not isinstance(changes, dict) or not changes:
        raise StoreError("invalid_setting", "give an object of settings to change")
    for k in changes:
        spec = _SETTINGS.get(k)
        if spec is None:
            raise StoreError("invalid_setting", "%s: not a setting (known: %s)" % (k, ", ".join(sorted(_SETTINGS))))
        v = changes[k]
        t, lo, hi = spec[0], spec[1], spec[2]
        if not isinstance(v, t) or isinstance(v, bool):
            raise StoreError("invalid_setting", "%s: must be a %s" % (k, "string" if t is str else "whole number"))
        n = len(v) if t is str else v
        if not lo <= n <= hi:
            raise StoreError("invalid_setting", "%s: must be %s from %d to %d" % (
                k, "a length" if t is str else "a number", lo, hi))
    s = settings()
    s.update(changes)
    _save(_SETTINGS_FILE, s)
    return s
