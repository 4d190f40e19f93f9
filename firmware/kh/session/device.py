# The device's long-term secrets under a store root: its id and setup code (made from
# os.urandom on first boot, kept for the device's life) and its pairings; the pairing rate
# limit and the admin-opened pairing window live in RAM.
import json
import os
import time

from micropython import const

from kh.session.pairings import Pairings
from kh.session.ratelimit import RateLimit
from kh.store import files

_ID_PREFIX = b"keyhook-device:"


def _new_code():
    # 8 decimal digits; 64 random bits reduced mod 10**8 (bias below 2**-37)
    n = int.from_bytes(os.urandom(8), "big") % 100000000
    return "%08d" % n


def _valid_code(code):
    return isinstance(code, str) and len(code) == 8 and all("0" <= c <= "9" for c in code)


class Device:
    def __init__(self, root, clock_ms=None, log=print):
        self.root = root.rstrip("/") or "/"
        files.makedirs(self.root)
        self._clock = clock_ms or time.ticks_ms
        self._log = log
        self._ident_path = self.root + "/device.json"
        ident = None
        raw = files.read(self._ident_path)
        if raw:
            try:
                ident = json.loads(raw)
                if not _valid_code(ident.get("setup_code")) or len(ident.get("device_id", "")) != 12:
                    ident = None
            except (ValueError, AttributeError):
                ident = None
        fresh = ident is None
        if fresh:
            ident = {"device_id": os.urandom(6).hex(), "setup_code": _new_code()}
            files.write_atomic(self._ident_path, json.dumps(ident).encode())
        self.device_id = ident["device_id"]
        self._code = ident["setup_code"]
        self.identity = _ID_PREFIX + self.device_id.encode()
        self._pairings = Pairings(self.root + "/pairings.json")
        if fresh and len(self._pairings):
            # pairings made under a lost identity can never open a session: drop them, so that
            # the setup code pairs again instead of the device refusing everyone
            self._pairings.clear()
        self.limit = RateLimit(self._clock)
        self._window = None  # (one-time code, expiry in clock ms)
        if not self.paired():
            self._log("keyhook %s: not paired; setup code %s" % (self.device_id, self._code))

    def setup_code(self):
        return self._code

    def set_setup_code(self, code):
        # for provisioning (a code printed on a label); keeps the device id
        if not _valid_code(code):
            raise ValueError("setup code is 8 decimal digits")
        self.save_identity(code)
        self._code = code
        if not self.paired():
            self._log("keyhook %s: not paired; setup code %s" % (self.device_id, code))

    def save_identity(self, code=None):
        # (again, after a factory reset has erased the data partition)
        files.makedirs(self.root)
        files.write_atomic(self._ident_path, json.dumps({"device_id": self.device_id,
                                                         "setup_code": code or self._code}).encode())

    def paired(self):
        return len(self._pairings) > 0

    def pairings(self):
        return self._pairings.ids()

    def pairing_key(self, app_id):
        return self._pairings.key(app_id)

    def is_admin(self, app_id):
        return self._pairings.is_admin(app_id)

    def hand_over_admin(self, app_id, target):
        return self._pairings.hand_over(app_id, target)

    def remove_pairing(self, app_id):
        return self._pairings.remove(app_id)

    def open_pairing_window(self, seconds=300):
        # a fresh code: guesses at an earlier one (their delay, a lock-out) do not hold it off
        self.limit.reset()
        code = _new_code()
        self._window = (code, time.ticks_add(self._clock(), int(seconds * 1000)))
        return code

    def close_pairing_window(self):
        self._window = None

    def window_open(self):
        if self._window is None:
            return False
        if time.ticks_diff(self._window[1], self._clock()) <= 0:
            self._window = None
            return False
        return True

    # the code a PAIR_REQ is checked against now: (code, via_window), or (None, False)
    def pairing_code(self):
        if self.window_open():
            return self._window[0], True
        if not self.paired():
            return self._code, False
        return None, False

    # called by a channel once the app's confirmation checked out
    def add_pairing(self, app_id, pk, via_window):
        # the pairing made with the setup code is the admin; a window pairing never is, and no
        # pairing ever replaces one that exists (PROTOCOL.md section 3)
        if self._pairings.key(app_id) is not None:
            raise ValueError("app is paired already")
        self._pairings.put(app_id, pk, not via_window and not self.paired())
        if via_window:
            self._window = None
        self.limit.reset()

    def button_pressed(self):
        self.limit.reset()

    def factory_reset(self):
        # forget every pairing; the id and the setup code stay (they are on the label)
        self._pairings.clear()
        self._window = None
        self.limit.reset()
        self._log("keyhook %s: factory reset; setup code %s" % (self.device_id, self._code))
