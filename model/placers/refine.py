"""Refinement (our addition beyond the paper): pairwise expert swaps that never make C_T worse.

C_T is the mean number of distinct chiplets a token's top-k experts occupy. Writing ``cnt[t, c]`` for the
number of token ``t``'s experts on chiplet ``c``, swapping expert ``a`` (on chiplet ``A``) with expert ``b``
(on chiplet ``B``) changes the total number of replicas by::

    delta(a, b) = sum_{t in a, not b} ([cnt[t,B] = 0] - [cnt[t,A] = 1])
                + sum_{t in b, not a} ([cnt[t,A] = 0] - [cnt[t,B] = 1])

(a token holding both experts is unaffected). For *all* pairs at once this is
``M[a, B] + M[b, A] + K[a, b]`` with ``M[a, X] = #{t in a : cnt[t,X] = 0} - #{t in a : a alone on A}`` and
``K[a, b] = #{t in a and b : a alone on A} + #{t in a and b : b alone on B}``: two sparse products over the
token-expert incidence matrix, ``O(T k (k + N_c))`` per sweep instead of ``O(T E^2)``.

A sweep computes every pair's delta, then walks the improving pairs from the best down and applies each one
whose delta, *recomputed exactly on the current state* from the two experts' token lists, is still negative.
So every accepted swap strictly lowers the integer total of replicas: C_T never rises, the search ends (at a
pairwise-swap local optimum or after ``max_sweeps``), and cluster sizes stay equal (a swap moves one expert
each way). The clusters are then re-allocated to groups, which does not change C_T.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .allocation import clusters_to_chiplets
from .clustering import cluster_experts

__all__ = ["refine_clusters", "place_mozart_refined", "MAX_SWEEPS"]

#: Upper bound on delta-matrix recomputations; convergence usually takes far fewer.
MAX_SWEEPS = 200


class _SwapSearch:
    """The incremental state: per-token chiplet counts plus each expert's token list."""

    def __init__(self, experts: np.ndarray, labels: np.ndarray, clusters: int) -> None:
        self.experts = np.asarray(experts, dtype=np.int64)
        tokens, k = self.experts.shape
        self.num_experts = len(labels)
        self.clusters = clusters
        self.labels = np.array(labels, dtype=np.int64)
        flat = self.experts.ravel()
        self.rows = np.repeat(np.arange(tokens), k)
        self.incidence = sp.csr_matrix((np.ones(flat.size), (self.rows, flat)), shape=(tokens, self.num_experts))
        self.member = np.zeros((tokens, self.num_experts), dtype=bool)
        self.member[self.rows, flat] = True
        order = np.argsort(flat, kind="stable")
        bounds = np.searchsorted(flat[order], np.arange(self.num_experts + 1))
        self.tokens_of = [self.rows[order[bounds[e]:bounds[e + 1]]] for e in range(self.num_experts)]
        self.cnt = np.bincount(self.rows * clusters + self.labels[flat],
                               minlength=tokens * clusters).reshape(tokens, clusters).astype(np.int32)

    @property
    def replicas(self) -> int:
        """Total replicas, ``C_T * tokens``."""
        return int(np.count_nonzero(self.cnt))

    def all_deltas(self) -> np.ndarray:
        """``delta(a, b)`` for every pair; ``inf`` where ``a`` and ``b`` share a chiplet."""
        tokens, k = self.experts.shape
        flat = self.experts.ravel()
        alone = (self.cnt[self.rows, self.labels[flat]] == 1).astype(np.float64)
        moves_in = (self.incidence.T @ (self.cnt == 0).astype(np.float64))  # [E, N_c]
        alone_count = np.bincount(flat, weights=alone, minlength=self.num_experts)
        gain = moves_in - alone_count[:, None]
        lonely = sp.csr_matrix((alone, (self.rows, flat)), shape=(tokens, self.num_experts))
        shared = (lonely.T @ self.incidence).toarray()
        move = gain[:, self.labels]  # move[a, b] = M[a, chiplet of b]
        delta = move + move.T + shared + shared.T
        delta[self.labels[:, None] == self.labels[None, :]] = np.inf
        return delta

    def delta(self, a: int, b: int) -> int:
        """The exact change of total replicas if ``a`` and ``b`` swapped chiplets now."""
        ca, cb = self.labels[a], self.labels[b]
        if ca == cb:
            return 0
        ta, tb = self.tokens_of[a], self.tokens_of[b]
        ta, tb = ta[~self.member[ta, b]], tb[~self.member[tb, a]]
        cnt = self.cnt
        return int(np.count_nonzero(cnt[ta, cb] == 0) - np.count_nonzero(cnt[ta, ca] == 1)
                   + np.count_nonzero(cnt[tb, ca] == 0) - np.count_nonzero(cnt[tb, cb] == 1))

    def swap(self, a: int, b: int) -> None:
        ca, cb = self.labels[a], self.labels[b]
        ta, tb = self.tokens_of[a], self.tokens_of[b]
        ta, tb = ta[~self.member[ta, b]], tb[~self.member[tb, a]]
        self.cnt[ta, ca] -= 1
        self.cnt[ta, cb] += 1
        self.cnt[tb, cb] -= 1
        self.cnt[tb, ca] += 1
        self.labels[a], self.labels[b] = cb, ca

    def sweep(self) -> int:
        """One pass over the improving pairs; returns the number of swaps made."""
        delta = self.all_deltas()
        a_idx, b_idx = np.nonzero(np.triu(delta < -0.5, k=1))  # deltas are integers
        order = np.lexsort((b_idx, a_idx, delta[a_idx, b_idx]))  # best first, ties by (a, b)
        swaps = 0
        for a, b in zip(a_idx[order].tolist(), b_idx[order].tolist()):
            if self.delta(a, b) < 0:
                self.swap(a, b)
                swaps += 1
        return swaps


def refine_clusters(experts: np.ndarray, labels: np.ndarray, clusters: int, *,
                    max_sweeps: int = MAX_SWEEPS) -> np.ndarray:
    """Improve equal-size clusters by pairwise swaps; C_T on ``experts`` never gets worse.

    Parameters
    ----------
    experts : int array ``[tokens, k]``
        The layer's routing: C_T is measured exactly on these tokens.
    labels : int array ``[experts]``
        The starting cluster of every expert (``0..clusters-1``).
    clusters : int
    max_sweeps : int
        Stop after this many delta-matrix recomputations even if swaps still help.

    Returns
    -------
    int64 array ``[experts]``: the refined clusters, of the same sizes.
    """
    if len(labels) < 2 or clusters < 2 or np.asarray(experts).shape[0] == 0:
        return np.array(labels, dtype=np.int64)
    search = _SwapSearch(experts, labels, clusters)
    for _ in range(max_sweeps):
        if not search.sweep():
            break
    return search.labels


def place_mozart_refined(data, cfg, rng: np.random.Generator) -> np.ndarray:
    """The ``mozart+refine`` method: Algorithm 1, swap refinement, then the allocation."""
    labels = cluster_experts(data.coactivation, cfg.chiplets)
    labels = refine_clusters(data.experts, labels, cfg.chiplets)
    return clusters_to_chiplets(labels, data.frequency, cfg)
