# keyhook unix board: a stand-in for MicroPython's `network` (station interface).
#
# WLAN(STA_IF) connects at once to whatever network it is given and reports the loopback
# address; the host's own network is used. While the file <KEYHOOK_SIM_STATE>/wifi_down
# exists, the station is disconnected (STAT_NO_AP_FOUND): tests switch Wi-Fi off with it.
import os
from micropython import const

STA_IF = const(0)
AP_IF = const(1)
STAT_IDLE = const(1000)
STAT_CONNECTING = const(1001)
STAT_GOT_IP = const(1010)
STAT_NO_AP_FOUND = const(201)
STAT_WRONG_PASSWORD = const(202)

_ifaces = {}


def _down():
    d = os.getenv("KEYHOOK_SIM_STATE")
    if not d:
        return False
    try:
        os.stat(d + "/wifi_down")
        return True
    except OSError:
        return False


def hostname(*args):
    return "keyhook-sim"


class WLAN:
    def __new__(cls, interface_id=STA_IF):
        w = _ifaces.get(interface_id)
        if w is None:
            w = object.__new__(cls)
            w._id = interface_id
            w._active = False
            w._ssid = None
            w._key = None
            _ifaces[interface_id] = w
        return w

    def active(self, *args):
        if args:
            self._active = bool(args[0])
            if not self._active:
                self._ssid = None
        return self._active

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        self._ssid = ssid
        self._key = key

    def disconnect(self):
        self._ssid = None

    def isconnected(self):
        return self._active and self._ssid is not None and not _down()

    def status(self, *args):
        if args:
            if args[0] == "rssi":
                return -60
            raise ValueError("unknown status param")
        if not self._active or self._ssid is None:
            return STAT_IDLE
        return STAT_NO_AP_FOUND if _down() else STAT_GOT_IP

    def ifconfig(self, *args):
        if self.isconnected():
            return ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")
        return ("0.0.0.0", "0.0.0.0", "0.0.0.0", "0.0.0.0")

    def config(self, *args, **kw):
        if args:
            if args[0] == "essid":
                return self._ssid or ""
            if args[0] == "mac":
                import _vradio
                return _vradio.unique_id()
            if args[0] == "hostname":
                return "keyhook-sim"
            raise ValueError("unknown config param")

    def scan(self):
        return []
