"""Helpers shared by the bench modules."""

from __future__ import annotations

from typing import Callable


def smallest(ok: Callable[[int], object], lo: int, hi: int, step: int = 256) -> int | None:
    """The smallest value on a `step` grid in (lo, hi] for which `ok` holds, by bisection.

    `ok` must be monotonic (a heap that suffices, any larger one suffices too); `lo` is assumed
    to fail. None when even `hi` fails.
    """
    if not ok(hi):
        return None
    while hi - lo > step:
        mid = max(lo + step, (lo + hi) // 2 // step * step)
        if mid >= hi:
            break
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return hi
