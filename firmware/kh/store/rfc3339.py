# RFC 3339 section 5.6 date-time, the one form of a rule's expiresAt (docs/rule-format.md):
#   YYYY-MM-DD "T" HH:MM:SS [. fraction] ("Z" | +HH:MM | -HH:MM)   ("t" and "z" too, 5.6 NOTE)
# The validator refuses what seconds() cannot read, so the queue never meets a date it skips.


def days(y, m, d):
    # Days from 1970-01-01 to y-m-d (proleptic Gregorian), for comparing UTC times.
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _num(s, a, b):
    # the ASCII digits s[a:b] as an int, or -1
    n = 0
    for i in range(a, b):
        c = s[i]
        if c < "0" or c > "9":
            return -1
        n = n * 10 + ord(c) - 48
    return n


def seconds(s):
    # -> seconds since 1970-01-01T00:00:00Z, or None when s is not an RFC 3339 date-time.
    if not isinstance(s, str) or not 20 <= len(s) <= 64:
        return None
    if s[4] != "-" or s[7] != "-" or s[10] not in "Tt" or s[13] != ":" or s[16] != ":":
        return None
    y, mo, d = _num(s, 0, 4), _num(s, 5, 7), _num(s, 8, 10)
    h, mi, sec = _num(s, 11, 13), _num(s, 14, 16), _num(s, 17, 19)
    if y < 0 or not 1 <= mo <= 12 or d < 1 or not 0 <= h <= 23 or not 0 <= mi <= 59 or not 0 <= sec <= 60:
        return None
    leap = y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)
    if d > (29 if leap else 28 if mo == 2 else 30 if mo in (4, 6, 9, 11) else 31):
        return None
    i = 19
    if s[i] == ".":
        i += 1
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        if i == 20:
            return None
    tail = s[i:]
    t = days(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec
    if tail in ("Z", "z"):
        return t
    if len(tail) != 6 or tail[0] not in "+-" or tail[3] != ":":
        return None
    oh, om = _num(tail, 1, 3), _num(tail, 4, 6)
    if not 0 <= oh <= 23 or not 0 <= om <= 59:
        return None
    off = oh * 3600 + om * 60
    return t - off if tail[0] == "+" else t + off
