# Wi-Fi station through `network` (a stand-in on the unix board). Non-blocking: connect()
# starts an attempt, the engine polls connected() before each fire.
import network

_wlan = None
_ssid = None


def _sta():
    global _wlan
    if _wlan is None:
        _wlan = network.WLAN(network.STA_IF)
        _wlan.active(True)
    return _wlan


def connect(ssid, password):
    global _ssid
    _ssid = ssid
    w = _sta()
    try:
        w.disconnect()
    except OSError:
        pass
    w.connect(ssid, password)


def connected():
    return _sta().isconnected()


def status():
    return {"connected": connected(), "ssid": _ssid}
