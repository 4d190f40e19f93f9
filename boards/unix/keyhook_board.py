# Unix board start-up, called by firmware/main.py before anything else: mount the littlefs
# image that plays the ESP32's flash partition, and describe the board as /board.json does
# on a real image (boards/unix/board.json).
#   KEYHOOK_SIM_STATE  the state directory (flash image, unique id); default ./keyhook-state
#   KEYHOOK_SIM_NAME   the advertised name (default keyhook-XXXXXX from the device id)
#   KEYHOOK_SIM_CERTS  the trust store directory on the host (default: none)
#   KEYHOOK_SIM_PREAUTH_MS, KEYHOOK_SIM_IDLE_MS  the link time bounds (kh/app/main.py), for tests
#   KEYHOOK_SIM_BOARD_JSON  this board's board.json, read when this module is frozen (no folder)
import json
import os


def setup():
    import flashbd
    from kh.store import files

    state = os.getenv("KEYHOOK_SIM_STATE") or "keyhook-state"
    files.makedirs(state)
    flashbd.mount(state + "/flash.img", "/flash")
    info = {}
    # beside this file; frozen into the interpreter (boards/unix/manifest.py), it has no folder
    # and the host names the file
    path = os.getenv("KEYHOOK_SIM_BOARD_JSON")
    if "/" in __file__ or not path:
        path = (__file__.rsplit("/", 1)[0] if "/" in __file__ else ".") + "/board.json"
    raw = files.read(path)
    if raw:
        info = json.loads(raw)
    info["data"] = "/flash/data"
    info["certs"] = os.getenv("KEYHOOK_SIM_CERTS") or "/flash/certs"
    for key in ("preauth_ms", "idle_ms"):
        v = os.getenv("KEYHOOK_SIM_" + key.upper())
        if v:
            info["link_" + key] = int(v)
    name = os.getenv("KEYHOOK_SIM_NAME")
    if name:
        info["device_name"] = name
    return info
