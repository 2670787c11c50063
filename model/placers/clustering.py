"""Mozart's Algorithm 1: greedy expert clustering by co-activation, inspired by farthest-point sampling.

The paper clusters the ``E`` experts of a layer into ``N_c`` clusters (one per expert chiplet) of equal size
``E / N_c`` so that experts often chosen together by one token share a chiplet (high intra-cluster,
low inter-cluster co-activation). Load balance is not this stage's concern; the allocation
(:mod:`.allocation`) balances groups afterwards.

Choices where the paper is ambiguous (also in ``docs/placement.md``):

* **Matrix.** We use the integer counts ``C`` rather than ``P = C / max(C)``: every step compares sums or
  argmaxes, which are invariant to that positive scale, and integers make ties exact.
* **Seed aggregation** (how "least co-activated with the experts already selected" is measured): the *sum*
  of co-activation with all selected experts, which ranks candidates exactly as the *mean* does (every
  candidate is compared against the same selected set). ``seed_aggregate="max"`` is the strict
  farthest-point analogue (minimise the strongest single link) and is kept for comparison.
* **Growth.** "Highest average co-activation with the members" again ranks as the sum over the members.
* **Loop bound.** The printed loop is off by one; a cluster grows until it has exactly ``E / N_c`` members,
  so every chiplet holds the same number of experts. The last cluster is whatever remains.
* **Ties** are broken towards the lowest expert id (the first maximal pair ``i < j`` in row-major order for
  the initial seed), so the result is deterministic.
* **Clusters of one expert** (``E == N_c``): the most co-activated pair cannot seed a cluster of size 1;
  cluster 0 then takes the lower id of that pair.
"""

from __future__ import annotations

import numpy as np

from ..errors import PlacementError
from .allocation import clusters_to_chiplets

__all__ = ["cluster_experts", "place_mozart", "SEED_AGGREGATES"]

SEED_AGGREGATES = ("sum", "max")


def _argbest(scores: np.ndarray, free: np.ndarray, highest: bool) -> int:
    """The free index with the highest (or lowest) score; ties go to the lowest index."""
    masked = np.where(free, scores, np.iinfo(np.int64).min if highest else np.iinfo(np.int64).max)
    return int(np.argmax(masked) if highest else np.argmin(masked))


def cluster_experts(coactivation: np.ndarray, clusters: int, *, seed_aggregate: str = "sum") -> np.ndarray:
    """Algorithm 1: cluster the experts into ``clusters`` equal-size clusters.

    Parameters
    ----------
    coactivation : int array ``[experts, experts]``
        Symmetric co-activation counts (the diagonal is ignored).
    clusters : int
        ``N_c``; must divide the number of experts.
    seed_aggregate : {"sum", "max"}
        How a later cluster's seed measures co-activation with the experts already selected.

    Returns
    -------
    int64 array ``[experts]``
        The cluster of every expert, ``0..clusters-1``, in the order the clusters were built.
    """
    coact = np.asarray(coactivation)
    if coact.ndim != 2 or coact.shape[0] != coact.shape[1]:
        raise PlacementError(f"co-activation must be a square [experts, experts] matrix, not of shape {coact.shape}")
    experts = coact.shape[0]
    if isinstance(clusters, bool) or not isinstance(clusters, (int, np.integer)) or clusters < 1 \
            or experts % clusters:
        raise PlacementError(f"clusters must be a positive divisor of the expert count ({experts}), not {clusters!r}")
    if seed_aggregate not in SEED_AGGREGATES:
        raise PlacementError(f"seed_aggregate must be one of {', '.join(SEED_AGGREGATES)}, not {seed_aggregate!r}")
    size = experts // clusters
    links = np.rint(coact).astype(np.int64)
    np.fill_diagonal(links, 0)  # an expert's own activation count is not co-activation

    labels = np.full(experts, -1, dtype=np.int64)
    free = np.ones(experts, dtype=bool)
    # Co-activation of every expert with the selected set, kept incrementally (sum and max aggregates).
    to_selected_sum = np.zeros(experts, dtype=np.int64)
    to_selected_max = np.zeros(experts, dtype=np.int64)

    def take(expert: int, cluster: int, to_members: np.ndarray) -> None:
        labels[expert] = cluster
        free[expert] = False
        to_members += links[expert]
        to_selected_sum[:] += links[expert]
        np.maximum(to_selected_max, links[expert], out=to_selected_max)

    for cluster in range(clusters):
        to_members = np.zeros(experts, dtype=np.int64)
        if cluster == 0:
            upper = np.triu(links + 1, k=1)  # +1 so that an all-zero matrix still yields the pair (0, 1)
            i, j = np.unravel_index(int(np.argmax(upper)), upper.shape) if experts > 1 else (0, 0)
            take(int(i), 0, to_members)
            if size > 1:
                take(int(j), 0, to_members)
        else:
            seed_scores = to_selected_sum if seed_aggregate == "sum" else to_selected_max
            take(_argbest(seed_scores, free, highest=False), cluster, to_members)
        while np.count_nonzero(labels == cluster) < size:  # exactly E / N_c members (see module docstring)
            take(_argbest(to_members, free, highest=True), cluster, to_members)
    return labels


def place_mozart(data, cfg, rng: np.random.Generator) -> np.ndarray:
    """The ``mozart`` method: Algorithm 1, then the cluster-to-group allocation."""
    labels = cluster_experts(data.coactivation, cfg.chiplets)
    return clusters_to_chiplets(labels, data.frequency, cfg)
