"""The exact C_T optimum for small layers (at most :data:`MAX_EXPERTS` experts), for tests and gap reports.

C_T decomposes over chiplets: a token costs one replica per chiplet it touches, so the total replicas of a
partition into clusters ``S_1..S_N`` is ``sum_c f(S_c)`` with ``f(S)`` = number of tokens that chose at
least one expert of ``S``. We tabulate ``f`` for every subset of size ``E / N_c`` (tokens reduced to
distinct expert bitmasks with counts), then minimise over partitions by dynamic programming on the set of
unplaced experts; symmetry is broken by always forming the cluster that contains the lowest unplaced expert
(cluster labels are interchangeable). Ties go to the lexicographically first choice. The optimal clusters
then go through the same cluster-to-group allocation as every clustering method.
"""

from __future__ import annotations

from functools import lru_cache
from itertools import combinations

import numpy as np

from ..errors import PlacementError
from .allocation import clusters_to_chiplets

__all__ = ["MAX_EXPERTS", "optimal_clusters", "place_exact"]

#: Largest expert count the exhaustive search accepts (2^16 subsets).
MAX_EXPERTS = 16


def optimal_clusters(experts: np.ndarray, num_experts: int, clusters: int) -> tuple[np.ndarray, int]:
    """The equal-size clustering with the fewest total replicas (``C_T * tokens``).

    Parameters
    ----------
    experts : int array ``[tokens, k]``
    num_experts : int
        At most :data:`MAX_EXPERTS`.
    clusters : int
        Must divide ``num_experts``.

    Returns
    -------
    labels : int64 array ``[experts]``
    replicas : int
        The optimal total number of replicas; ``replicas / tokens`` is the optimal C_T.
    """
    if num_experts > MAX_EXPERTS:
        raise PlacementError(f"method 'exact' needs at most {MAX_EXPERTS} experts per layer, not {num_experts}; "
                             f"use a heuristic method for larger layers")
    if clusters < 1 or num_experts % clusters:
        raise PlacementError(f"clusters must be a positive divisor of the expert count ({num_experts}), "
                             f"not {clusters!r}")
    size = num_experts // clusters
    experts = np.asarray(experts, dtype=np.int64)
    token_masks = np.bitwise_or.reduce(np.left_shift(1, experts), axis=1) if experts.size else np.zeros(0, np.int64)
    masks, counts = np.unique(token_masks, return_counts=True)
    subsets = [sum(1 << e for e in combo) for combo in combinations(range(num_experts), size)]
    touched = (np.asarray(subsets, dtype=np.int64)[:, None] & masks[None, :]) != 0
    cost = dict(zip(subsets, (touched.astype(np.int64) @ counts).tolist()))

    @lru_cache(maxsize=None)
    def best(remaining: int) -> tuple[int, int]:
        """(least replicas of the clusters covering ``remaining``, the first cluster's mask)."""
        if not remaining:
            return 0, 0
        low = remaining & -remaining
        rest = [e for e in range(num_experts) if (remaining ^ low) >> e & 1]
        choice = (None, 0)
        for combo in combinations(rest, size - 1):
            block = low | sum(1 << e for e in combo)
            total = cost[block] + best(remaining ^ block)[0]
            if choice[0] is None or total < choice[0]:
                choice = (total, block)
        return choice

    full = (1 << num_experts) - 1
    replicas = best(full)[0]
    labels = np.empty(num_experts, dtype=np.int64)
    remaining, cluster = full, 0
    while remaining:
        block = best(remaining)[1]
        labels[[e for e in range(num_experts) if block >> e & 1]] = cluster
        remaining ^= block
        cluster += 1
    return labels, int(replicas)


def place_exact(data, cfg, rng: np.random.Generator) -> np.ndarray:
    labels, _ = optimal_clusters(data.experts, data.num_experts, cfg.chiplets)
    return clusters_to_chiplets(labels, data.frequency, cfg)
