"""Baseline placements that ignore co-activation: the layouts Mozart is compared against.

``contiguous``   experts ``0..n-1`` on chiplet 0, ``n..2n-1`` on chiplet 1, ... (``n`` experts per chiplet):
                 how expert-parallel frameworks place experts by default.
``round-robin``  expert ``e`` on chiplet ``e mod N_c``.
``random``       a uniformly random equal-size layout from the caller's seeded generator.
``load-only``    DeepSeek's EPLB idea, reimplemented from its description: hierarchical balanced packing
                 of expert load (activation frequency V). Experts, heaviest first, go to the least loaded
                 *group* that still has room (``E / N_g`` experts each); then inside every group, heaviest
                 first, to the least loaded chiplet with room (``E / N_c`` each). Ties go to the lowest
                 index. Unlike EPLB there are no redundant (replicated) experts: every chiplet must hold
                 exactly ``E / N_c`` experts, and a replica would break that and double weight streaming.
"""

from __future__ import annotations

import numpy as np

__all__ = ["place_contiguous", "place_round_robin", "place_random", "place_load_only", "balanced_packing"]


def place_contiguous(data, cfg, rng: np.random.Generator) -> np.ndarray:
    """Experts ``0..n-1`` on chiplet 0, ``n..2n-1`` on chiplet 1, ...; returns int32 ``[experts]``."""
    return (np.arange(cfg.moe.experts) // cfg.experts_per_chiplet).astype(np.int32)


def place_round_robin(data, cfg, rng: np.random.Generator) -> np.ndarray:
    """Expert ``e`` on chiplet ``e mod N_c``; returns int32 ``[experts]``."""
    return (np.arange(cfg.moe.experts) % cfg.chiplets).astype(np.int32)


def place_random(data, cfg, rng: np.random.Generator) -> np.ndarray:
    """A uniformly random equal-size layout drawn from ``rng``; returns int32 ``[experts]``."""
    return (rng.permutation(cfg.moe.experts) // cfg.experts_per_chiplet).astype(np.int32)


def balanced_packing(weights: np.ndarray, packs: int) -> np.ndarray:
    """EPLB's balanced packing: heaviest item first onto the lightest pack with room; equal item counts.

    Parameters
    ----------
    weights : float array ``[items]``
    packs : int
        Must divide the number of items.

    Returns
    -------
    int64 array ``[items]``: the pack of every item.
    """
    weights = np.asarray(weights, dtype=np.float64)
    room = np.full(packs, len(weights) // packs)
    load = np.zeros(packs)
    pack_of = np.empty(len(weights), dtype=np.int64)
    for item in np.lexsort((np.arange(len(weights)), -weights)):  # heaviest first, ties by id
        p = int(np.argmin(np.where(room > 0, load, np.inf)))
        pack_of[item] = p
        load[p] += weights[item]
        room[p] -= 1
    return pack_of


def place_load_only(data, cfg, rng: np.random.Generator) -> np.ndarray:
    """EPLB-style hierarchical balanced packing of V: groups first, then chiplets in each group."""
    load = data.frequency
    group_of = balanced_packing(load, cfg.groups)
    e2c = np.empty(cfg.moe.experts, dtype=np.int32)
    for g in range(cfg.groups):
        members = np.flatnonzero(group_of == g)
        e2c[members] = g * cfg.chiplets_per_group + balanced_packing(load[members], cfg.chiplets_per_group)
    return e2c
