# The device clock in Unix seconds. TLS checks certificate dates against it, so a device whose
# clock was never set must say so instead of failing every handshake as "not yet valid".
import time

from micropython import const

# Some ports count from 2000-01-01; report Unix time everywhere.
_EPOCH_OFFSET = 946684800 if time.gmtime(0)[0] == 2000 else 0
_MIN_VALID = const(1700000000)  # 2023-11: anything earlier is an unset clock


def now():
    return int(time.time()) + _EPOCH_OFFSET


def is_set():
    return now() >= _MIN_VALID


def set(unix):
    import machine

    tm = time.gmtime(unix - _EPOCH_OFFSET)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))
