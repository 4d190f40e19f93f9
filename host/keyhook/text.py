"""Text that came from a device, a rule or a server, made safe to show on a terminal.

A device's error messages, rule names and log lines are attacker-controlled: a terminal must
not act on them (ECMA-48 escape sequences set the window title or draw fake hyperlinks, a
Unicode bidirectional override reorders what is shown) and rich must not read them as markup.
`plain` writes every control character and bidi override as a visible escape (`\\x1b`,
`\\u202e`); `shown` also escapes rich markup (`[link=...]` is printed, not rendered).
"""

from __future__ import annotations

from rich.markup import escape

_BIDI = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A)) | {0x200E, 0x200F, 0x061C}


def _visible(c: str) -> str:
    n = ord(c)
    if n < 0x20 and c not in "\n\t" or 0x7F <= n < 0xA0:
        return f"\\x{n:02x}"
    if n in _BIDI:
        return f"\\u{n:04x}"
    return c


def plain(text: object) -> str:
    """`str(text)` with control characters (but newline and tab) and bidi overrides escaped."""
    s = str(text)
    return "".join(_visible(c) for c in s) if any(_visible(c) != c for c in s) else s


def shown(text: object) -> str:
    """`plain(text)` with rich markup escaped, for `Console.print` and table cells."""
    return escape(plain(text))
