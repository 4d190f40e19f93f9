# Test device: ble_probe.py with the virtual radio's clock as on a 32-bit port, starting at a
# chosen point of its period. MicroPython's ticks wrap at MICROPY_PY_TIME_TICKS_PERIOD, the
# small-int range: 2**30 on a 32-bit port (the ESP32, the i386 unix build), 2**62 on a 64-bit
# one, where a test would otherwise never meet the wrap. ticks_diff() is valid only for
# moments less than half a period (2**29 us, about 9 min) apart.
#   micropython ble_probe_ticks32.py PHASE_US
import sys
import time

import _vradio

_PERIOD = 1 << 30
_HALF = 1 << 29


class Ticks30:
    # the `time` functions _vradio uses; ticks_us() starts at phase_us, then follows real time
    def __init__(self, phase_us):
        self._off = phase_us - time.ticks_us()
        self.sleep_ms = time.sleep_ms
        self.sleep_us = time.sleep_us

    def ticks_us(self):
        return (time.ticks_us() + self._off) % _PERIOD

    def ticks_ms(self):
        return time.ticks_ms() % _PERIOD

    def ticks_add(self, t, delta):
        return (t + delta) % _PERIOD

    def ticks_diff(self, t1, t2):
        return (t1 - t2 + _HALF) % _PERIOD - _HALF


_vradio.time = Ticks30(int(sys.argv[1]))
print('{"ticks_us": %d}' % _vradio.time.ticks_us())
import ble_probe  # noqa: E402,F401  (runs the probe)
