# Engine log: the last few fires as short redacted lines, for the app's `log` command.
# A line holds a time, a name (a rule's, or "app", "button") and what happened (an HTTP status,
# an error code, an attempt count, a retry delay, a short note), nothing else: no URL, header,
# body, token or message text. An error code shows only if it is one lower-case word of
# [a-z0-9_] (as FireError codes are); a note only if it is at most 4 words of 1-24 letters or
# "_" each (text written in the code, like "factory reset"; never a value from a rule or a
# message); anything else becomes "?". add() never raises.
#   2026-11-28 11:41:17 "Open garage" status=200 attempt=1 ms=85
#   +12.345s "Open garage" error=connect attempt=1 retry_in_ms=1000   (clock not set: uptime)
import time
from micropython import const

_SIZE = const(32)
_MAX_NAME = const(48)
_MAX_CODE = const(32)
_CLOCK_SET_YEAR = const(2024)
_TICKS_TRUSTED_S = const(86400)
_MAX_NOTE_WORDS = const(4)
_MAX_WORD = const(24)


def _code(c):
    # A code is shown only when the whole of it looks like one (FireError codes are lower-case
    # words); anything else, which might be text or a secret, becomes "?".
    c = str(c)
    if not 0 < len(c) <= _MAX_CODE:
        return "?"
    for ch in c:
        if not ("a" <= ch <= "z" or "0" <= ch <= "9" or ch == "_"):
            return "?"
    return c


def _note(n):
    n = str(n)
    words = n.split(" ")
    if len(words) > _MAX_NOTE_WORDS:
        return "?"
    for w in words:
        if not 0 < len(w) <= _MAX_WORD:
            return "?"
        for ch in w:
            if not ("a" <= ch <= "z" or "A" <= ch <= "Z" or ch == "_"):
                return "?"
    return n


def _name(n):
    n = str(n)
    if len(n) > _MAX_NAME:
        n = n[:_MAX_NAME - 1] + "~"
    out = ""
    for ch in n:
        out += ch if 32 <= ord(ch) != 127 and ch not in '"\\' else "?"
    return '"' + out + '"'


def _secs(t):
    try:
        return int(t)
    except (OverflowError, ValueError):
        return 0


class Log:
    def __init__(self, size=_SIZE, clock=None, ticks_ms=None):
        self._ring = [None] * size
        self._next = 0
        self._n = 0
        self._clock = clock or time.time
        self._ticks = ticks_ms or time.ticks_ms
        self._t0 = self._ticks()
        self._c0 = _secs(self._clock())  # the unset clock counts from boot too, and does not wrap

    def _stamp(self):
        t = self._clock()
        try:
            y, mo, d, h, mi, s = time.gmtime(int(t))[:6]
        except (OverflowError, ValueError):
            y = 0
        if y >= _CLOCK_SET_YEAR:
            return "%04d-%02d-%02d %02d:%02d:%02d" % (y, mo, d, h, mi, s)
        # Time since boot, while the clock is unset. ticks_diff is right only within half the
        # ticks period (2**29 ms, about 6.2 days, on a 32-bit port): past a day, the unset clock's
        # seconds are used instead
        up = _secs(t) - self._c0
        if up < _TICKS_TRUSTED_S:
            ms = time.ticks_diff(self._ticks(), self._t0)
            return "+%d.%03ds" % (ms // 1000, ms % 1000)
        return "+%ds" % up

    def add(self, name, note=None, status=None, code=None, attempt=None, of=None, ms=None,
            retry_in_ms=None):
        try:
            parts = [self._stamp(), _name(name)]
            if status is not None:
                parts.append("status=%d" % int(status))
            if code is not None:
                parts.append("error=" + _code(code))
            if attempt is not None:
                parts.append(("attempt=%d/%d" % (attempt, of)) if of else ("attempt=%d" % attempt))
            if ms is not None:
                parts.append("ms=%d" % int(ms))
            if retry_in_ms is not None:
                parts.append("retry_in_ms=%d" % int(retry_in_ms))
            if note is not None:
                parts.append(_note(note))
            line = " ".join(parts)
        except (TypeError, ValueError):
            line = self._stamp() + " " + _name(name) + " ?"
        self._ring[self._next] = line
        self._next = (self._next + 1) % len(self._ring)
        if self._n < len(self._ring):
            self._n += 1
        return line

    def lines(self, n=None):
        # Oldest first; the last n when n is given.
        size = len(self._ring)
        k = self._n if n is None else min(n, self._n)
        start = (self._next - k) % size
        return [self._ring[(start + i) % size] for i in range(k)]

    def tail(self, n):
        return self.lines(n)

    def clear(self):
        for i in range(len(self._ring)):
            self._ring[i] = None
        self._next = 0
        self._n = 0


_default = None


def default():
    # The device's one log, made on first use.
    global _default
    if _default is None:
        _default = Log()
    return _default
