"""Faults a simulated device can be started with (`keyhook sim --fault SPEC`).

Each imitates a failure a real ESP32 running MicroPython's NimBLE bindings meets under load
(boards/unix/README.md says where each comes from); the unix board's `bluetooth` stand-in reads
them from `KEYHOOK_SIM_FAULTS` at boot.

| spec | what happens on the device |
|---|---|
| `irq-memoryerror:N` | the N-th `gatts_read` (counted from boot) raises `MemoryError` |
| `link-stall:MS@N` | after the N-th notification, nothing goes on air for MS milliseconds |
| `drop-write:N` | the N-th write command (write without response) from a central is lost |
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from keyhook import KeyhookError

ENV = "KEYHOOK_SIM_FAULTS"
_SPECS = {
    "irq-memoryerror": re.compile(r"[1-9]\d{0,8}"),
    "drop-write": re.compile(r"[1-9]\d{0,8}"),
    "link-stall": re.compile(r"[1-9]\d{0,6}@[1-9]\d{0,8}"),
}
USAGE = "irq-memoryerror:N, link-stall:MS@N or drop-write:N (N counts from 1)"


def parse(spec: str) -> str:
    """Check one fault spec; return it normalised. Raises `KeyhookError` naming what is wrong."""
    name, sep, arg = spec.strip().partition(":")
    rx = _SPECS.get(name)
    if rx is None or not sep:
        raise KeyhookError(f"unknown fault {spec!r}", hint=f"use {USAGE}")
    if not rx.fullmatch(arg):
        raise KeyhookError(f"fault {spec!r}: the argument must look like {'MS@N' if name == 'link-stall' else 'N'}",
                           hint=f"use {USAGE}")
    return f"{name}:{arg}"


def env_value(specs: Iterable[str]) -> str:
    """The `KEYHOOK_SIM_FAULTS` value for `specs` (each checked; one of each kind at most)."""
    out: dict[str, str] = {}
    for spec in specs:
        norm = parse(spec)
        name = norm.split(":", 1)[0]
        if name in out:
            raise KeyhookError(f"fault {name} given twice", hint="give each kind of fault once")
        out[name] = norm
    return ",".join(out.values())
