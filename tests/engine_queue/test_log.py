"""The engine's log ring: bounded, oldest first, redacted by construction."""

from __future__ import annotations


def test_ring_keeps_the_last_lines_in_order(micropython):
    out = micropython.json("""
import json
from kh.engine.log import Log
t = [0]
log = Log(size=4, clock=lambda: 0, ticks_ms=lambda: t[0])
for i in range(7):
    t[0] = i * 1500
    log.add("r%d" % i, status=200, attempt=1, of=4, ms=12)
res = {"all": log.lines(), "two": log.tail(2)}
log.clear()
res["cleared"] = log.lines()
print(json.dumps(res))
""")
    assert out["all"] == [f'+{i * 1.5:.3f}s "r{i}" status=200 attempt=1/4 ms=12' for i in range(3, 7)]
    assert out["two"] == out["all"][2:]
    assert out["cleared"] == []


def test_lines_carry_no_free_text(micropython):
    out = micropython.json(r"""
import json
from kh.engine.log import Log, default
log = Log(size=8, clock=lambda: 1798761600 + 3661)   # 2027-01-01 01:01:01 UTC
lines = [
    log.add('evil"\n name\x00' + "x" * 80, code="tls_untrusted"),
    log.add("r", code="Bearer TOKEN-SECRET\r\nX: y"),
    log.add("r", note="TOKEN-SECRET"),
    log.add("r", status=503, attempt=2, of=4, retry_in_ms=2000),
    log.add("app", "internal error TypeError"),
    log.add("app", "a b c d e"),
    log.add("app", "abcdefghijklmnopqrstuvwxyz"),
    log.add("r", status="not a number"),
]
print(json.dumps({"lines": lines, "same": default() is default()}))
""")
    lines = out["lines"]
    assert lines[0].startswith('2027-01-01 01:01:01 "evil?? name?xxx')
    assert "\n" not in "".join(lines) and "\x00" not in "".join(lines)
    assert len(lines[0].split('"')[1]) == 48 and lines[0].endswith('~" error=tls_untrusted')
    assert lines[1] == '2027-01-01 01:01:01 "r" error=?'  # not a code: not shown at all
    assert "SECRET" not in "".join(lines)
    assert lines[2].endswith('"r" ?')
    assert lines[3].endswith('"r" status=503 attempt=2/4 retry_in_ms=2000')
    assert lines[4].endswith('"app" internal error TypeError')
    assert lines[5].endswith('"app" ?') and lines[6].endswith('"app" ?')  # too many words, too long
    assert lines[7].endswith('"r" ?')  # add() never raises
    assert out["same"] is True


def test_time_since_boot_stays_right_past_the_ticks_half_period(micropython):
    # While the clock is unset (it counts from 0 at boot, year 2000), lines carry the time since
    # boot. ticks_ms compares right only within half its period: 2**29 ms, about 6.2 days, on an
    # ESP32; a week after boot the ticks say the time is negative. Past a day the clock's seconds
    # are used instead.
    out = micropython.json("""
import json
from kh.engine.log import Log
c = [0]
t = [0]
log = Log(size=4, clock=lambda: c[0], ticks_ms=lambda: t[0])
c[0], t[0] = 90, 90250
early = log.add("r", status=200)
week = 7 * 86400
c[0], t[0] = week, (week * 1000) % (1 << 30) - (1 << 30)  # what a 32-bit port's ticks_diff makes of it
late = log.add("r", status=200)
print(json.dumps([early, late]))
""")
    assert out == ['+90.250s "r" status=200', f'+{7 * 86400}s "r" status=200']
