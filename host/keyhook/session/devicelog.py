"""The device's log lines (`firmware/kh/engine/log.py`) as structured entries, for `log --json`.

A line is ``<time> "<name>" [status=N] [error=CODE] [attempt=N[/M]] [ms=N] [retry_in_ms=N] [note]``
where <time> is ``YYYY-MM-DD HH:MM:SS`` (UTC, once the clock is set) or ``+S.mmms`` (seconds
since start-up). The device writes names with `"` and `\\` replaced, so the quotes delimit them.
"""

from __future__ import annotations

import re

_LINE = re.compile(r'^(?:(?P<date>\d{4}-\d{2}-\d{2}) (?P<clock>\d{2}:\d{2}:\d{2})|\+(?P<up>\d+\.\d{3})s) '
                   r'"(?P<name>[^"]*)"(?P<rest>.*)$')
_INTS = ("status", "ms", "retry_in_ms")


def parse_line(line: str) -> dict:
    """One log line as ``{"time": ISO 8601 UTC or None, "uptime_s": float or None, "name": str,
    "status", "error", "attempt", "of", "ms", "retry_in_ms", "note"}`` (absent parts are None);
    a line of another shape comes back as ``{"line": line}``."""
    m = _LINE.match(line)
    if not m:
        return {"line": line}
    entry: dict = {"time": f"{m['date']}T{m['clock']}Z" if m["date"] else None,
                   "uptime_s": float(m["up"]) if m["up"] else None, "name": m["name"],
                   "status": None, "error": None, "attempt": None, "of": None, "ms": None,
                   "retry_in_ms": None, "note": None}
    notes = []
    for word in m["rest"].split():
        key, eq, value = word.partition("=")
        if eq and key in _INTS and value.isdigit():
            entry[key] = int(value)
        elif eq and key == "error":
            entry["error"] = value
        elif eq and key == "attempt":
            n, _, of = value.partition("/")
            entry["attempt"] = int(n) if n.isdigit() else None
            entry["of"] = int(of) if of.isdigit() else None
        else:
            notes.append(word)
    if notes:
        entry["note"] = " ".join(notes)
    return entry
