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

Large layers: the delta matrix only *proposes* swaps (each is verified on all tokens), so while it finds
some, it is computed on an evenly strided sample of :data:`SAMPLE_TOKENS` tokens (4-8x cheaper on 64k
tokens). When the sample proposes nothing that verifies, a sweep over all tokens either finds more swaps
(and sampling resumes) or certifies the local optimum: the end result is a local optimum on all tokens.
"""

from __future__ import annotations

import numpy as np

from .allocation import clusters_to_chiplets
from .clustering import cluster_experts

__all__ = ["refine_clusters", "place_mozart_refined", "MAX_SWEEPS", "SAMPLE_TOKENS", "SwapSearch"]

#: Upper bound on delta-matrix recomputations; convergence usually takes far fewer.
MAX_SWEEPS = 200
#: Tokens of the sample that proposes swaps on large layers (all tokens below twice this).
SAMPLE_TOKENS = 8192


class SwapSearch:
    """The incremental state: per-token chiplet counts plus each expert's token list."""

    def __init__(self, experts: np.ndarray, labels: np.ndarray, clusters: int) -> None:
        self.experts = np.asarray(experts, dtype=np.int64)
        tokens, k = self.experts.shape
        self.num_experts = len(labels)
        self.labels = np.array(labels, dtype=np.int64)
        flat = self.experts.ravel()
        self.rows = np.repeat(np.arange(tokens), k)
        self.incidence = self._by_token(np.ones(flat.size), self.experts)
        order = np.argsort(flat.astype(np.int16), kind="stable")  # radix sort: experts <= 4096 (config rule)
        bounds = np.searchsorted(flat[order], np.arange(self.num_experts + 1))
        self.tokens_of = [self.rows[order[bounds[e]:bounds[e + 1]]] for e in range(self.num_experts)]
        self.cnt = np.bincount(self.rows * clusters + self.labels[flat],
                               minlength=tokens * clusters).reshape(tokens, clusters).astype(np.int32)

    def _by_token(self, values: np.ndarray, experts: np.ndarray):
        """A sparse ``[tokens, experts]`` matrix with ``values`` at each token's experts (CSR built directly:
        every row has exactly k entries, so no sorting is needed)."""
        import scipy.sparse as sp  # noqa: PLC0415 (imported on use: keeps 'mozart --help' fast)

        tokens, k = experts.shape
        return sp.csr_matrix((values, experts.ravel(), np.arange(0, tokens * k + 1, k)),
                             shape=(tokens, self.num_experts))

    def all_deltas(self, rows: np.ndarray | None = None) -> np.ndarray:
        """``delta(a, b)`` for every pair on the tokens ``rows`` (default all); ``inf`` on a shared chiplet."""
        experts, cnt, incidence = self.experts, self.cnt, self.incidence
        if rows is not None:
            experts, cnt, incidence = experts[rows], cnt[rows], incidence[rows]
        tokens, k = experts.shape
        flat = experts.ravel()
        token_of = np.repeat(np.arange(tokens), k)
        alone = (cnt[token_of, self.labels[flat]] == 1).astype(np.float64)
        moves_in = incidence.T @ (cnt == 0).astype(np.float64)  # [E, N_c]
        alone_count = np.bincount(flat, weights=alone, minlength=self.num_experts)
        gain = moves_in - alone_count[:, None]
        lonely = self._by_token(alone, experts)
        shared = (lonely.T @ incidence).toarray()
        move = gain[:, self.labels]  # move[a, b] = M[a, chiplet of b]
        delta = move + move.T + shared + shared.T
        delta[self.labels[:, None] == self.labels[None, :]] = np.inf
        return delta

    def _exclusive(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Tokens of ``a`` without ``b``, and of ``b`` without ``a`` (tokens with both are unaffected)."""
        ta, tb = self.tokens_of[a], self.tokens_of[b]
        return ta[~(self.experts[ta] == b).any(axis=1)], tb[~(self.experts[tb] == a).any(axis=1)]

    def _change(self, ta: np.ndarray, tb: np.ndarray, ca: int, cb: int) -> int:
        cnt = self.cnt
        return int(np.count_nonzero(cnt[ta, cb] == 0) - np.count_nonzero(cnt[ta, ca] == 1)
                   + np.count_nonzero(cnt[tb, ca] == 0) - np.count_nonzero(cnt[tb, cb] == 1))

    def delta(self, a: int, b: int) -> int:
        """The exact change of total replicas if ``a`` and ``b`` swapped chiplets now."""
        ca, cb = self.labels[a], self.labels[b]
        return 0 if ca == cb else self._change(*self._exclusive(a, b), ca, cb)

    def try_swap(self, a: int, b: int) -> bool:
        """Swap ``a`` and ``b`` if that strictly lowers the total replicas now; return whether it did."""
        ca, cb = self.labels[a], self.labels[b]
        if ca == cb:
            return False
        ta, tb = self._exclusive(a, b)
        if self._change(ta, tb, ca, cb) >= 0:
            return False
        self._apply(a, b, ta, tb)
        return True

    def swap(self, a: int, b: int) -> None:
        """Swap ``a`` and ``b`` whatever it does to C_T (the caller decided it is worth it)."""
        if self.labels[a] != self.labels[b]:
            self._apply(a, b, *self._exclusive(a, b))

    def _apply(self, a: int, b: int, ta: np.ndarray, tb: np.ndarray) -> None:
        ca, cb = self.labels[a], self.labels[b]
        self.cnt[ta, ca] -= 1
        self.cnt[ta, cb] += 1
        self.cnt[tb, cb] -= 1
        self.cnt[tb, ca] += 1
        self.labels[a], self.labels[b] = cb, ca

    def sweep(self, rows: np.ndarray | None = None) -> int:
        """One pass over the pairs that ``rows`` (default all tokens) say improve; returns the swaps made."""
        delta = self.all_deltas(rows)
        a_idx, b_idx = np.nonzero(np.triu(delta < -0.5, k=1))  # deltas are integers
        order = np.lexsort((b_idx, a_idx, delta[a_idx, b_idx]))  # best first, ties by (a, b)
        return sum(self.try_swap(a, b) for a, b in zip(a_idx[order].tolist(), b_idx[order].tolist()))


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
    search = SwapSearch(experts, labels, clusters)
    tokens = search.experts.shape[0]
    sample = np.arange(0, tokens, tokens // SAMPLE_TOKENS) if tokens >= 2 * SAMPLE_TOKENS else None
    rows = sample
    for _ in range(max_sweeps):
        if search.sweep(rows):
            rows = sample  # progress: propose from the cheap sample again
        elif rows is not None:
            rows = None  # the sample is exhausted: let all tokens propose (or certify the optimum)
        else:
            break
    return search.labels


def place_mozart_refined(data, cfg, rng: np.random.Generator) -> np.ndarray:
    """The ``mozart+refine`` method: Algorithm 1, swap refinement, then the allocation."""
    labels = cluster_experts(data.coactivation, cfg.chiplets)
    labels = refine_clusters(data.experts, labels, cfg.chiplets)
    return clusters_to_chiplets(labels, data.frequency, cfg)
