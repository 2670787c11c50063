"""The ``metis`` baseline: a balanced k-way partition of the co-activation graph by METIS (pymetis).

Vertices are experts, edge weights the off-diagonal co-activation counts (zero edges are dropped: METIS
wants positive weights). METIS minimises the weight of cut edges, i.e. the co-activation that crosses
chiplets, subject to *approximately* balanced parts (its default 3% imbalance, and it may leave parts
uneven on tiny graphs). Chiplets must hold exactly ``E / N_c`` experts, so the partition is **repaired**:
while some part is too large, move the expert from an over-full part to an under-full part that loses the
least co-activation weight (gain = weight to the target part - weight to its own part; ties to the lowest
expert, then the lowest part). The repaired parts then go through the same cluster-to-group allocation as
Mozart's clusters. METIS is seeded from the caller's generator, so results are reproducible.
"""

from __future__ import annotations

import numpy as np

from .allocation import clusters_to_chiplets

__all__ = ["metis_clusters", "repair_sizes", "place_metis"]


def repair_sizes(labels: np.ndarray, weights: np.ndarray, parts: int) -> np.ndarray:
    """Move experts between parts until every part has ``len(labels) / parts``, losing least weight.

    Parameters
    ----------
    labels : int array ``[experts]``
        A part per expert (``0..parts-1``), sizes possibly unequal.
    weights : array ``[experts, experts]``
        Symmetric edge weights (diagonal ignored).
    parts : int

    Returns
    -------
    int64 array ``[experts]`` with equal part sizes.
    """
    labels = np.array(labels, dtype=np.int64)
    w = np.array(weights, dtype=np.float64)
    np.fill_diagonal(w, 0.0)
    size = len(labels) // parts
    while True:
        counts = np.bincount(labels, minlength=parts)
        over, under = counts > size, counts < size
        if not over.any():
            return labels
        onehot = np.zeros((len(labels), parts))
        onehot[np.arange(len(labels)), labels] = 1.0
        to_part = w @ onehot  # [experts, parts]: co-activation of each expert with each part
        gain = to_part - to_part[np.arange(len(labels)), labels][:, None]
        gain[~over[labels], :] = -np.inf  # only experts of over-full parts move
        gain[:, ~under] = -np.inf  # only into under-full parts
        expert, part = np.unravel_index(int(np.argmax(gain)), gain.shape)  # first max: lowest expert, part
        labels[expert] = part


def metis_clusters(coactivation: np.ndarray, parts: int, rng: np.random.Generator) -> np.ndarray:
    """METIS k-way partition of the co-activation graph, repaired to equal sizes."""
    import pymetis  # noqa: PLC0415 (imported on use: keeps 'mozart --help' fast)

    w = np.rint(np.asarray(coactivation)).astype(np.int64)
    experts = len(w)
    if parts == 1:
        return np.zeros(experts, dtype=np.int64)
    np.fill_diagonal(w, 0)
    xadj, adjncy, eweights = [0], [], []
    for i in range(experts):
        nbrs = np.flatnonzero(w[i])
        adjncy += nbrs.tolist()
        eweights += w[i, nbrs].tolist()
        xadj.append(len(adjncy))
    options = pymetis.Options(seed=int(rng.integers(0, 2**31 - 1)))
    if adjncy:
        _, membership = pymetis.part_graph(parts, pymetis.CSRAdjacency(xadj, adjncy), eweights=eweights,
                                           options=options)
        labels = np.asarray(membership, dtype=np.int64)
    else:  # no co-activation at all (top-1): every partition cuts nothing
        labels = np.arange(experts) % parts
    return repair_sizes(labels, w, parts)


def place_metis(data, cfg, rng: np.random.Generator) -> np.ndarray:
    """The ``metis`` method: repaired METIS clusters, then the cluster-to-group allocation."""
    labels = metis_clusters(data.coactivation, cfg.chiplets, rng)
    return clusters_to_chiplets(labels, data.frequency, cfg)
