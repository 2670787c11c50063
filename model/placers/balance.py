"""Load-capped refinement (our addition beyond the paper): ``mozart+refine``'s C_T, the busiest chiplet lighter.

Clustering puts experts that fire together on one chiplet; when the chiplets' compute sets the step time, the
chiplet that holds the most (token, expert) pairs sets it, and a clustered placement tends to load one chiplet
more than a contiguous one does (co-activated experts are often the popular ones). This method starts from
``mozart+refine`` and trades a bounded amount of C_T for a lighter busiest chiplet:

- **Budget.** The total number of dispatch replicas (C_T times tokens) may grow to at most
  ``(1 + CT_SLACK)`` times ``mozart+refine``'s, so C_T stays within :data:`CT_SLACK` (2 %) of it: the bound the
  placement must keep, chosen before any measurement.
- **Move.** Swap an expert ``a`` of the busiest chiplet ``A`` with an expert ``b`` of another chiplet ``B``
  that fires less often (``n_b < n_a``, ``n`` = the expert's activation count on the layer), such that both
  chiplets end below ``A``'s load: ``max(L_A - n_a + n_b, L_B + n_a - n_b) < L_A``. Of those that fit the budget
  (each swap's replica change is computed exactly on the layer's tokens), take the one that leaves the lower
  of that maximum, then the smaller replica change, then the lowest ``(a, b)``.
- **Stop** when the busiest chiplet has no such swap. Each swap strictly lowers the busiest of the two loads
  it touches, so the sorted load vector falls lexicographically and the search ends.

Cluster sizes stay equal (a swap moves one expert each way); the clusters are then allocated to groups as for
``mozart`` (:func:`.allocation.clusters_to_chiplets`).
"""

from __future__ import annotations

import numpy as np

from .allocation import clusters_to_chiplets
from .clustering import cluster_experts
from .refine import SwapSearch, refine_clusters

__all__ = ["CT_SLACK", "balance_clusters", "place_mozart_balanced"]

#: How much C_T may grow over ``mozart+refine``'s (relative): the issue's bound, fixed before measuring.
CT_SLACK = 0.02


def _replicas(search: SwapSearch) -> int:
    return int(np.count_nonzero(search.cnt))


def _best_swap(search: SwapSearch, activations: np.ndarray, loads: np.ndarray, busiest: int,
               allowance: int) -> tuple[int, int, int] | None:
    """``(a, b, replica change)`` of the swap the module doc describes, or None."""
    labels = search.labels
    best = None
    for a in np.flatnonzero(labels == busiest).tolist():
        for b in np.flatnonzero((labels != busiest) & (activations < activations[a])).tolist():
            moved = int(activations[a] - activations[b])
            peak = max(loads[busiest] - moved, loads[labels[b]] + moved)
            if peak >= loads[busiest] or (best is not None and peak > best[0]):
                continue
            change = search.delta(a, b)
            if change <= allowance and (best is None or (peak, change) < best[:2]):
                best = (peak, change, a, b)
    return None if best is None else (best[2], best[3], best[1])


def balance_clusters(experts: np.ndarray, labels: np.ndarray, clusters: int, *,
                     slack: float = CT_SLACK) -> np.ndarray:
    """Lower the busiest cluster's activations by swaps, C_T at most ``slack`` above the starting one.

    Parameters
    ----------
    experts : int array ``[tokens, k]``
        The layer's routing.
    labels : int array ``[experts]``
        The starting cluster of every expert (``0..clusters-1``), normally ``mozart+refine``'s.
    clusters : int
    slack : float
        Relative C_T growth allowed over the start.

    Returns
    -------
    int64 array ``[experts]``: the balanced clusters, of the same sizes.
    """
    experts = np.asarray(experts)
    if len(labels) < 2 or clusters < 2 or experts.shape[0] == 0:
        return np.array(labels, dtype=np.int64)
    search = SwapSearch(experts, labels, clusters)
    activations = np.bincount(experts.ravel(), minlength=len(labels)).astype(np.int64)
    budget = int(np.floor(_replicas(search) * (1.0 + slack)))
    while True:
        loads = np.bincount(search.labels, weights=activations, minlength=clusters).astype(np.int64)
        busiest = int(np.argmax(loads))
        swap = _best_swap(search, activations, loads, busiest, budget - _replicas(search))
        if swap is None:
            return search.labels
        search.swap(swap[0], swap[1])


def place_mozart_balanced(data, cfg, rng: np.random.Generator) -> np.ndarray:
    """The ``mozart+balance`` method: Algorithm 1, swap refinement, load-capped balancing, then the allocation."""
    labels = cluster_experts(data.coactivation, cfg.chiplets)
    labels = refine_clusters(data.experts, labels, cfg.chiplets)
    labels = balance_clusters(data.experts, labels, cfg.chiplets)
    return clusters_to_chiplets(labels, data.frequency, cfg)
