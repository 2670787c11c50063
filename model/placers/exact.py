"""The exact C_T optimum for small layers (at most :data:`MAX_EXPERTS` experts), for tests and gap reports.

C_T decomposes over chiplets: a token costs one replica per chiplet it touches, so the total replicas of a
partition into clusters ``S_1..S_N`` is ``sum_c f(S_c)`` with ``f(S)`` = number of tokens that chose at
least one expert of ``S``. We tabulate ``f`` for every subset of size ``E / N_c`` (tokens reduced to
distinct expert bitmasks with counts), then minimise the sum over partitions by the dynamic programme over
subsets of :mod:`.subsets` (symmetry broken by always forming the cluster of the lowest unplaced expert;
ties to the lexicographically first). The optimal clusters then go through the same cluster-to-group
allocation as every clustering method.
"""

from __future__ import annotations

import numpy as np

from ..errors import PlacementError
from .allocation import clusters_to_chiplets
from .subsets import best_partition, subset_masks

__all__ = ["MAX_EXPERTS", "optimal_clusters", "place_exact"]

#: Largest expert count the exact search accepts (its tables grow as 2^experts).
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
    blocks = subset_masks(num_experts, size)
    touched = np.zeros(len(blocks), dtype=np.int64)
    for start in range(0, len(masks), 512):  # bounds the [blocks, masks] temporary
        hit = (blocks[:, None] & masks[None, start:start + 512]) != 0
        touched += hit.astype(np.int64) @ counts[start:start + 512]
    labels, replicas = best_partition(touched, num_experts, size, "sum")
    return labels, int(round(replicas))


def place_exact(data, cfg, rng: np.random.Generator) -> np.ndarray:
    """The ``exact`` method: C_T-optimal clusters, then the cluster-to-group allocation."""
    labels, _ = optimal_clusters(data.experts, data.num_experts, cfg.chiplets)
    return clusters_to_chiplets(labels, data.frequency, cfg)
