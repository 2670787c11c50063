"""Routing statistics of a trace: activation frequency ``V`` and co-activation ``C`` / ``P`` per layer.

Definitions (docs/paper.md, "Profiling prior"), for one MoE layer of a :class:`~mozart.model.trace.Trace`:

``activation_counts``      ``n_i`` = number of tokens whose top-k contains expert ``i``.
``activation_frequency``   ``V_i = n_i / sum_j n_j`` (sums to 1; ``sum_j n_j = tokens * k``).
``coactivation_counts``    ``C_ij`` = number of tokens whose top-k contains both ``i`` and ``j`` (``i != j``).
                           Symmetric. The diagonal holds ``C_ii = n_i``, the tokens that chose ``i`` (the
                           "chose both i and i" reading of the definition), so ``V`` can be read off ``C``.
``coactivation_probability``  ``P = C / max_{i != j} C_ij``: the off-diagonal maximum, so the most
                           co-activated pair has ``P = 1``. Diagonal entries are scaled the same way and may
                           exceed 1; they are not pair statistics and placement code should ignore them.

Everything is vectorised and streams over the tokens in chunks (bounded temporaries); there is no Python
loop per token. ``C`` is built by one ``bincount`` over the ``k (k - 1) / 2`` expert pairs of each token,
which counts exactly in integers and runs at several million tokens per second on one core (see
``bench/bench_stats.py``).
"""

from __future__ import annotations

import numpy as np

from .errors import TraceError
from .trace import Trace

__all__ = ["activation_counts", "activation_frequency", "coactivation_counts", "coactivation_probability",
           "pair_counts", "top_pairs", "first_occurrences"]


def _layer_experts(trace: Trace, layer: int) -> np.ndarray:
    """``[tokens, k]`` expert ids of one layer (a view: ``Trace.layer`` would re-validate a copy)."""
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer < trace.layers:
        raise TraceError(f"{trace.source}: layer must be in 0..{trace.layers - 1}, not {layer!r}")
    return trace.experts[layer]


def activation_counts(trace: Trace, layer: int) -> np.ndarray:
    """Tokens that chose each expert in ``layer``.

    Returns
    -------
    int64 array ``[num_experts]``
    """
    experts = _layer_experts(trace, layer)
    return np.bincount(experts.ravel(), minlength=trace.num_experts).astype(np.int64)


def activation_frequency(trace: Trace, layer: int) -> np.ndarray:
    """``V`` of ``layer``: activation counts normalised to sum 1 (all zeros for a trace without tokens).

    Returns
    -------
    float64 array ``[num_experts]``
    """
    counts = activation_counts(trace, layer)
    total = counts.sum()
    return counts / total if total else np.zeros(trace.num_experts)


def pair_counts(experts: np.ndarray, num_experts: int, chunk_tokens: int = 65536) -> np.ndarray:
    """Co-activation counts of a ``[tokens, k]`` array of distinct expert ids per row.

    The array-level core of :func:`coactivation_counts`, for callers that hold raw arrays.

    Returns
    -------
    int64 array ``[num_experts, num_experts]``
        Symmetric; diagonal = activation counts.
    """
    experts = np.asarray(experts)
    if experts.ndim != 2:
        raise TraceError(f"experts must be a [tokens, k] array, not of shape {experts.shape}")
    if chunk_tokens < 1:
        raise TraceError(f"chunk_tokens must be positive, not {chunk_tokens!r}")
    e = int(num_experts)
    k = experts.shape[1]
    first, second = np.triu_indices(k, 1)
    upper = np.zeros(e * e, dtype=np.int64)
    for start in range(0, experts.shape[0], chunk_tokens):
        # Slot-major layout: each slot pair is then two contiguous vector ops (5x faster than a column gather).
        chunk = np.ascontiguousarray(experts[start:start + chunk_tokens].T, dtype=np.intp)
        flat = np.empty((len(first), chunk.shape[1]), dtype=np.intp)
        for p, (a, b) in enumerate(zip(first, second)):
            np.multiply(chunk[a], e, out=flat[p])
            flat[p] += chunk[b]
        # One flat index i * e + j per (token, slot pair); rows hold distinct ids, so i != j always.
        upper += np.bincount(flat.ravel(), minlength=e * e)
    upper = upper.reshape(e, e)
    counts = upper + upper.T  # slot order is arbitrary: fold (j, i) onto (i, j)
    counts[np.diag_indices(e)] = np.bincount(experts.ravel(), minlength=e)
    return counts


def coactivation_counts(trace: Trace, layer: int, chunk_tokens: int = 65536) -> np.ndarray:
    """``C`` of ``layer``: tokens that chose both ``i`` and ``j``; the diagonal holds activation counts.

    Parameters
    ----------
    trace : Trace
    layer : int
    chunk_tokens : int
        Tokens per streamed chunk (bounds the temporaries to about ``chunk_tokens * k^2 / 2`` indices).

    Returns
    -------
    int64 array ``[num_experts, num_experts]``, symmetric.
    """
    return pair_counts(_layer_experts(trace, layer), trace.num_experts, chunk_tokens)


def coactivation_probability(counts: np.ndarray) -> np.ndarray:
    """``P = C / max_{i != j} C_ij`` (docs/paper.md); all zeros when no pair was ever co-activated (top-1).

    Parameters
    ----------
    counts : array ``[E, E]``
        A co-activation count matrix as returned by :func:`coactivation_counts`.

    Returns
    -------
    float64 array ``[E, E]``
    """
    counts = np.asarray(counts)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise TraceError(f"co-activation counts must be a square matrix, not of shape {counts.shape}")
    off = counts[~np.eye(counts.shape[0], dtype=bool)]
    peak = off.max() if off.size else 0
    if peak <= 0:
        return np.zeros(counts.shape)
    return counts / float(peak)


def top_pairs(counts: np.ndarray, n: int = 10) -> list[tuple[int, int, int]]:
    """The ``n`` most co-activated pairs ``(i, j, C_ij)`` with ``i < j``, highest first (ties: lower ids)."""
    counts = np.asarray(counts)
    i, j = np.triu_indices(counts.shape[0], 1)
    values = counts[i, j]
    order = np.lexsort((j, i, -values))[:n]
    return [(int(i[o]), int(j[o]), int(values[o])) for o in order]


def first_occurrences(ids: np.ndarray) -> tuple[np.ndarray, int]:
    """For slot-major ids ``[k, tokens]``: where each value first appears in its token, and the equal pairs.

    Returns the bool mask ``[k, tokens]`` (True at the first slot holding each distinct value of a token) and
    the number of slot pairs ``i < j`` with equal values, over all tokens. One contiguous vector comparison
    per slot pair (``k (k-1) / 2``), which beats sorting many short rows by an order of magnitude.
    """
    ids = np.asarray(ids)
    first = np.ones(ids.shape, bool)
    same = 0
    for j in range(1, len(ids)):
        for i in range(j):
            equal = ids[i] == ids[j]
            same += int(np.count_nonzero(equal))
            first[j] &= ~equal
    return first, same
