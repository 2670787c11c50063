"""Latency breakdown of a recorded step: busy, exposed and hidden time per category.

Every instant of the step is attributed to the highest-priority category busy at that instant, in the order
of :data:`CATEGORIES` (compute first, then dispatch/combine, weight streaming, activation saving); instants
with nothing busy are *idle* (waiting on dependencies only). The attributed time of a category is its
*exposed* time: exposed times plus idle sum to the step latency. *Hidden* time is busy minus exposed: work
that ran under something of higher priority (the overlap the paper's streaming buys).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .engine import Record

__all__ = ["CATEGORIES", "LABELS", "Breakdown", "breakdown"]

#: Categories in attribution priority; ``Record.category`` values.
CATEGORIES = ("attention", "expert", "dispatch", "weights", "saving")
LABELS = {"attention": "attention compute", "expert": "expert compute", "dispatch": "dispatch/combine",
          "weights": "weight streaming", "saving": "activation saving", "idle": "idle (dependencies)"}


@dataclass(frozen=True)
class Breakdown:
    """Cycles per category: ``busy`` (union of its intervals), ``exposed`` and ``hidden``; ``idle``; ``total``."""

    busy: dict[str, float]
    exposed: dict[str, float]
    idle: float
    total: float

    @property
    def hidden(self) -> dict[str, float]:
        return {c: self.busy[c] - self.exposed[c] for c in self.busy}


def breakdown(records: list[Record], total: float) -> Breakdown:
    """The breakdown of a step of ``total`` cycles from its records."""
    if not records:
        return Breakdown({c: 0.0 for c in CATEGORIES}, {c: 0.0 for c in CATEGORIES}, total, total)
    cats = np.array([CATEGORIES.index(r.category) for r in records])
    starts = np.array([r.start for r in records])
    ends = np.array([r.end for r in records])
    bounds = np.unique(np.concatenate([starts, ends, [0.0, total]]))
    seg = np.diff(bounds)
    assigned = np.zeros(len(seg), dtype=bool)
    busy, exposed = {}, {}
    for i, cat in enumerate(CATEGORIES):
        pick = cats == i
        # +1 at each start, -1 at each end, over the elementary segments: covered where the sum is positive.
        delta = np.zeros(len(bounds))
        np.add.at(delta, np.searchsorted(bounds, starts[pick]), 1)
        np.add.at(delta, np.searchsorted(bounds, ends[pick]), -1)
        cover = np.cumsum(delta)[:-1] > 0
        busy[cat] = float(seg[cover].sum())
        exposed[cat] = float(seg[cover & ~assigned].sum())
        assigned |= cover
    return Breakdown(busy, exposed, float(seg[~assigned].sum()), total)
