"""Exact partition of a small set into equal-size blocks: dynamic programming over subsets, vectorised.

Shared by the exact placement (:mod:`.exact`: blocks are chiplets, cost = tokens touching the block,
aggregated by *sum*) and the exact cluster-to-group allocation (:mod:`.allocation`: blocks are groups,
cost = |load - target|, aggregated by *max*).

``F[M]``, the best aggregate over partitions of the set ``M`` into blocks of ``s``, is::

    F[M] = min over blocks B in M that contain the lowest element of M of  agg(cost[B], F[M - B])

Always taking the block of the lowest element breaks the symmetry of block labels. Starting from the full
set, every set ``M`` met on the way down misses element 0, so the table holds only those. The sets of one
size are processed together with numpy gathers. The index tables depend only on ``(n, s)`` and are cached.
Ties go to the first block in lexicographic order of its members, so results are deterministic.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations
from math import comb

import numpy as np

__all__ = ["MAX_TABLE", "table_size", "subset_masks", "best_partition"]

#: Largest number of (set, block) entries :func:`best_partition` accepts (a few MB of tables).
MAX_TABLE = 2_000_000


def table_size(n: int, size: int) -> int:
    """Entries of the DP tables for ``n`` items in blocks of ``size`` (its time and memory)."""
    blocks = n // size
    inner = sum(comb(n - 1, level * size) * comb(level * size - 1, size - 1) for level in range(1, blocks))
    return inner + comb(n - 1, size - 1)


def subset_masks(n: int, size: int) -> np.ndarray:
    """Every ``size``-subset of ``range(n)`` as a bit mask, in lexicographic order of the members."""
    return _subset_masks(n, size).copy()


@lru_cache(maxsize=None)
def _subset_masks(n: int, size: int) -> np.ndarray:
    members = list(combinations(range(n), size))
    members = np.array(members, dtype=np.int64).reshape(len(members), size)
    return np.left_shift(1, members).sum(axis=1)


def _position(masks: np.ndarray, n: int) -> np.ndarray:
    pos = np.full(1 << n, -1, dtype=np.int64)
    pos[masks] = np.arange(len(masks))
    return pos


@lru_cache(maxsize=16)
def _tables(n: int, size: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per level ``L = 1 .. n/size``: (sets, block index [sets, choices], rest index [sets, choices]).

    Level ``L`` holds the sets of ``L * size`` elements without element 0 (the full set at the top level);
    block indices point into :func:`subset_masks` ``(n, size)``, rest indices into level ``L - 1``.
    """
    block_pos = _position(_subset_masks(n, size), n)
    levels, prev_pos = [], None
    for level in range(1, n // size + 1):
        k = level * size
        if level == n // size:
            members = np.arange(n, dtype=np.int64)[None, :]
        else:
            members = list(combinations(range(1, n), k))
            members = np.array(members, dtype=np.int64).reshape(len(members), k)
        bits = np.left_shift(1, members)
        sets = bits.sum(axis=1)
        # A block is the set's lowest element plus size - 1 of the others, in lexicographic order.
        picks = list(combinations(range(1, k), size - 1))
        picks = np.array(picks, dtype=np.int64).reshape(len(picks), size - 1)
        block = bits[:, :1] + bits[:, picks].sum(axis=2)
        rest = sets[:, None] - block
        rest_idx = prev_pos[rest] if prev_pos is not None else np.zeros_like(rest)
        levels.append((sets, block_pos[block], rest_idx))
        prev_pos = _position(sets, n) if level < n // size else None
    return levels


def best_partition(cost: np.ndarray, n: int, size: int, aggregate: str = "sum") -> tuple[np.ndarray, float]:
    """The partition of ``range(n)`` into blocks of ``size`` with the least aggregate block cost.

    Parameters
    ----------
    cost : array ``[comb(n, size)]``
        Cost of every block, aligned with :func:`subset_masks` ``(n, size)``.
    n, size : int
        ``size`` divides ``n``; :func:`table_size` must be at most :data:`MAX_TABLE`.
    aggregate : {"sum", "max"}
        How block costs combine.

    Returns
    -------
    labels : int64 array ``[n]``
        The block of every element; block 0 holds element 0, block 1 the lowest element not in block 0, ...
    value : float
        The optimal aggregate.
    """
    if aggregate not in ("sum", "max"):
        raise ValueError(f"aggregate must be 'sum' or 'max', not {aggregate!r}")
    if n % size or table_size(n, size) > MAX_TABLE:
        raise ValueError(f"n = {n} in blocks of {size} must divide evenly and need at most {MAX_TABLE} table "
                         f"entries, not {table_size(n, size) if n % size == 0 else 'uneven'}")
    cost = np.asarray(cost, dtype=np.float64)
    combine = np.add if aggregate == "sum" else np.maximum
    levels = _tables(n, size)
    best, choice = np.zeros(1), []
    for sets, block, rest in levels:
        total = combine(cost[block], best[rest])
        pick = np.argmin(total, axis=1)  # first minimum: lexicographic tie-break
        choice.append(pick)
        best = total[np.arange(len(sets)), pick]
    labels = np.empty(n, dtype=np.int64)
    masks = _subset_masks(n, size)
    index = 0  # the full set, at the top level
    for label, ((sets, block, rest), pick) in enumerate(zip(reversed(levels), reversed(choice))):
        chosen = masks[block[index, pick[index]]]
        labels[[e for e in range(n) if chosen >> e & 1]] = label
        index = rest[index, pick[index]]
    return labels, float(best[0])
