# Pairing failures (PROTOCOL.md section 3): after the k-th failure in a row, refuse for
# min(2**(k-1), 60) s; after 10 in a row, lock out until the button or a restart (the count
# lives in RAM on purpose: a power cycle is the other local action that lifts it).
import time
from micropython import const

from kh.session import errors

_MAX_DELAY_S = const(60)
LOCK_AFTER = const(10)
# after a pairing attempt that was abandoned (PAIR_A sent, no good PAIR_B): no new one for this
# long, so that PAIR_REQs cannot keep the device busy with P-256 work
ABANDON_GAP_MS = const(2000)


class RateLimit:
    def __init__(self, clock_ms=None):
        self._clock = clock_ms or time.ticks_ms
        self.failures = 0
        self._last_ms = 0
        self._gap_ms = None  # when the last abandoned attempt ended

    def locked(self):
        return self.failures >= LOCK_AFTER

    def delay_s(self):
        if self.failures == 0:
            return 0
        return min(1 << min(self.failures - 1, 8), _MAX_DELAY_S)

    # -> (0, 0) when an attempt may go on, else (error code, retry_after_s)
    def check(self):
        if self.locked():
            return errors.LOCKED_OUT, 0
        if self._gap_ms is not None:
            left_ms = ABANDON_GAP_MS - time.ticks_diff(self._clock(), self._gap_ms)
            if left_ms > 0:
                return errors.RATE_LIMITED, (left_ms + 999) // 1000
            self._gap_ms = None
        if self.failures:
            left_ms = self.delay_s() * 1000 - time.ticks_diff(self._clock(), self._last_ms)
            if left_ms > 0:
                return errors.RATE_LIMITED, (left_ms + 999) // 1000
        return 0, 0

    def failed(self):
        self.failures += 1
        self._last_ms = self._clock()

    def abandoned(self):
        self._gap_ms = self._clock()

    def reset(self):
        self.failures = 0
        self._gap_ms = None
