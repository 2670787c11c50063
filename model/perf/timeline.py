"""A resource's busy intervals, for the per-token mode: packets of concurrent commands interleave in its gaps.

The aggregated mode keeps one *free-at* time per resource; the per-token mode keeps every busy interval so
that a token of a command processed later can still use a gap left earlier (true interleaving on a link).
Adjacent intervals merge, so back-to-back packets cost one entry.
"""

from __future__ import annotations

from bisect import bisect_right

__all__ = ["Timeline", "common_gap"]


class Timeline:
    """Sorted, disjoint busy intervals ``[start, end)``."""

    __slots__ = ("starts", "ends")

    def __init__(self) -> None:
        self.starts: list[float] = []
        self.ends: list[float] = []

    def earliest(self, ready: float, duration: float) -> float:
        """The earliest start ``>= ready`` of a free gap of ``duration``."""
        starts, ends = self.starts, self.ends
        i = bisect_right(ends, ready)
        t = ready
        while i < len(starts) and starts[i] < t + duration:
            if ends[i] > t:
                t = ends[i]
            i += 1
        return t

    def is_free(self, start: float, end: float) -> bool:
        """True when nothing is busy in ``[start, end)``."""
        i = bisect_right(self.ends, start)
        return i == len(self.starts) or self.starts[i] >= end

    def occupy(self, start: float, end: float) -> None:
        """Mark ``[start, end)`` busy (it must be free: found by :meth:`earliest`)."""
        if end <= start:
            return
        starts, ends = self.starts, self.ends
        i = bisect_right(starts, start)
        if i and ends[i - 1] >= start:  # touches the previous interval: extend it
            i -= 1
            ends[i] = max(ends[i], end)
        else:
            starts.insert(i, start)
            ends.insert(i, end)
        while i + 1 < len(starts) and starts[i + 1] <= ends[i]:  # swallow intervals it now reaches
            ends[i] = max(ends[i], ends[i + 1])
            del starts[i + 1], ends[i + 1]


def common_gap(timelines: list[Timeline], ready: float, duration: float) -> float:
    """The earliest start ``>= ready`` at which every timeline has a gap of ``duration``."""
    t = ready
    while True:
        moved = False
        for tl in timelines:
            s = tl.earliest(t, duration)
            if s > t:
                t, moved = s, True
        if not moved:
            return t
