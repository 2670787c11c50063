"""Placement metrics, computed exactly from a routing trace (or, for top-2, from a co-activation matrix).

For one MoE layer, a placement maps expert ``e`` to chiplet ``c(e)`` and chiplet ``c`` to group
``c // chiplets_per_group``. A token with top-k experts ``S`` is, with de-duplication (docs/paper.md, "Efficient
all-to-all"), sent once to every chiplet in ``c(S)``:

``C_T``                  mean over tokens of ``|c(S)|``, the replicas per token at dispatch. Without
                         de-duplication every expert gets its own replica and ``C_T = k`` exactly.
``root_replicas``        mean over tokens of ``|g(S)|``, the distinct destination groups: the replicas on the
                         root's links, since the tree's switches replicate below the root.
``chiplet_tokens``       per chiplet, the replicas it receives (tokens that chose at least one of its
                         experts; with ``dedup=False`` the token-expert pairs). ``chiplet_load_max`` and
                         ``chiplet_load_mean`` are its max and mean, ``chiplet_imbalance = max / mean``.
``group_tokens``         the same per group (the root-link replicas into each group).
``cross_*_fraction``     of all co-activated pairs (``sum_{i<j} C_ij`` = ``tokens * k (k-1) / 2``), the
                         fraction whose two experts sit on different chiplets / groups. 0 when k = 1.

Every metric is computed per layer; the scalar fields of :class:`PlacementMetrics` are the means of the
per-layer values over the layers (imbalance included: the mean of each layer's max/mean).

Both ways of computing (:func:`placement_metrics` from a trace, :func:`metrics_from_coactivation` from a
top-2 co-activation matrix) first reduce a layer to the same integer tallies and share one function that
turns tallies into floats, so they agree exactly, not just approximately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .errors import PlacementError, TraceError
from .placement import Placement
from .stats import first_occurrences
from .trace import Trace

__all__ = ["PlacementMetrics", "distinct_per_row", "replicas_per_token", "layer_c_t", "placement_metrics",
           "metrics_from_coactivation", "expected_distinct_chiplets"]

_CHUNK_TOKENS = 1 << 18  # bounds the [chunk, k] temporaries of the trace path


@dataclass(frozen=True, eq=False)
class PlacementMetrics:
    """Members
    -------
    c_t, root_replicas : float
        Replicas per token at dispatch (one per destination chiplet) and on the root's links (one per group).
    chiplet_load_max, chiplet_load_mean, chiplet_imbalance : float
        Max and mean replicas received per chiplet, and max / mean.
    group_load_max, group_load_mean, group_imbalance : float
        The same per group.
    cross_chiplet_fraction, cross_group_fraction : float
        Fraction of co-activated pairs split across chiplets / groups.
    tokens, top_k : int
    dedup : bool
        Whether a token sends one replica per destination chiplet (True) or one per expert (False).
    c_t_per_layer, root_replicas_per_layer : float64 ``[layers]``
    chiplet_tokens : int64 ``[layers, chiplets]``
    group_tokens : int64 ``[layers, groups]``
    chiplet_imbalance_per_layer, group_imbalance_per_layer : float64 ``[layers]``
    cross_chiplet_per_layer, cross_group_per_layer : float64 ``[layers]``
    """

    c_t: float
    root_replicas: float
    chiplet_load_max: float
    chiplet_load_mean: float
    chiplet_imbalance: float
    group_load_max: float
    group_load_mean: float
    group_imbalance: float
    cross_chiplet_fraction: float
    cross_group_fraction: float
    tokens: int
    top_k: int
    dedup: bool
    c_t_per_layer: np.ndarray
    root_replicas_per_layer: np.ndarray
    chiplet_tokens: np.ndarray
    group_tokens: np.ndarray
    chiplet_imbalance_per_layer: np.ndarray
    group_imbalance_per_layer: np.ndarray
    cross_chiplet_per_layer: np.ndarray
    cross_group_per_layer: np.ndarray

    @property
    def layers(self) -> int:
        return len(self.c_t_per_layer)


@dataclass
class _Tally:
    """The integer counts of one layer that every metric is derived from."""

    tokens: int
    replicas: int          # sum over tokens of destination chiplets
    root: int              # sum over tokens of destination groups
    chiplet_tokens: np.ndarray
    group_tokens: np.ndarray
    pairs: int             # co-activated pairs, sum_{i<j} C_ij
    cross_chiplet: int     # of them, on different chiplets
    cross_group: int       # of them, in different groups


def distinct_per_row(ids: np.ndarray) -> np.ndarray:
    """Number of distinct values in each row of an integer ``[T, k]`` array.

    Returns
    -------
    int64 array ``[T]``
    """
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise TraceError(f"ids must be a [tokens, k] array, not of shape {ids.shape}")
    if ids.shape[1] == 0:
        return np.zeros(ids.shape[0], dtype=np.int64)
    ordered = np.sort(ids, axis=1)
    return 1 + np.count_nonzero(ordered[:, 1:] != ordered[:, :-1], axis=1).astype(np.int64)


def replicas_per_token(experts: np.ndarray, expert_to_chiplet: np.ndarray) -> np.ndarray:
    """Destination chiplets of each token (its replicas with de-duplication).

    Parameters
    ----------
    experts : int ``[T, k]``
    expert_to_chiplet : int ``[E]``

    Returns
    -------
    int64 array ``[T]``
    """
    return distinct_per_row(np.asarray(expert_to_chiplet)[np.asarray(experts)])


def layer_c_t(experts: np.ndarray, expert_to_chiplet: np.ndarray) -> float:
    """``C_T`` of one layer: mean destination chiplets per token (needs at least one token)."""
    replicas = replicas_per_token(experts, expert_to_chiplet)
    if replicas.size == 0:
        raise TraceError("C_T needs at least one token, not 0")
    return int(replicas.sum()) / replicas.size


def _tally_trace_layer(experts: np.ndarray, e2c: np.ndarray, chiplets: int, per_group: int,
                       dedup: bool) -> _Tally:
    tokens, k = experts.shape
    groups = chiplets // per_group
    tally = _Tally(tokens, 0, 0, np.zeros(chiplets, np.int64), np.zeros(groups, np.int64),
                   tokens * k * (k - 1) // 2, 0, 0)
    same_chiplet = same_group = 0
    for start in range(0, tokens, _CHUNK_TOKENS):
        chip = e2c[np.ascontiguousarray(experts[start:start + _CHUNK_TOKENS].T)]  # [k, chunk]
        group = chip // per_group
        first_chip, same = first_occurrences(chip)
        same_chiplet += same
        first_group, same = first_occurrences(group)
        same_group += same
        if dedup:
            tally.replicas += int(np.count_nonzero(first_chip))
            tally.root += int(np.count_nonzero(first_group))
            tally.chiplet_tokens += np.bincount(chip[first_chip], minlength=chiplets)
            tally.group_tokens += np.bincount(group[first_group], minlength=groups)
        else:
            tally.chiplet_tokens += np.bincount(chip.ravel(), minlength=chiplets)
            tally.group_tokens += np.bincount(group.ravel(), minlength=groups)
    if not dedup:
        tally.replicas = tally.root = tokens * k
    tally.cross_chiplet = tally.pairs - same_chiplet
    tally.cross_group = tally.pairs - same_group
    return tally


def _summarise(tallies: list[_Tally], top_k: int, dedup: bool) -> PlacementMetrics:
    """The one place where integer tallies become the float metrics (both paths go through here)."""
    if not tallies or tallies[0].tokens == 0:
        raise TraceError("placement metrics need at least one token, not 0")
    tokens = tallies[0].tokens
    chiplets = np.array([t.chiplet_tokens for t in tallies], dtype=np.int64)
    groups = np.array([t.group_tokens for t in tallies], dtype=np.int64)
    c_t = np.array([t.replicas / tokens for t in tallies])
    root = np.array([t.root / tokens for t in tallies])
    chip_mean = np.array([t.replicas / chiplets.shape[1] for t in tallies])
    group_mean = np.array([t.root / groups.shape[1] for t in tallies])
    chip_max = chiplets.max(axis=1).astype(np.float64)
    group_max = groups.max(axis=1).astype(np.float64)
    cross_c = np.array([t.cross_chiplet / t.pairs if t.pairs else 0.0 for t in tallies])
    cross_g = np.array([t.cross_group / t.pairs if t.pairs else 0.0 for t in tallies])
    chip_imb, group_imb = chip_max / chip_mean, group_max / group_mean
    return PlacementMetrics(
        c_t=float(c_t.mean()), root_replicas=float(root.mean()),
        chiplet_load_max=float(chip_max.mean()), chiplet_load_mean=float(chip_mean.mean()),
        chiplet_imbalance=float(chip_imb.mean()),
        group_load_max=float(group_max.mean()), group_load_mean=float(group_mean.mean()),
        group_imbalance=float(group_imb.mean()),
        cross_chiplet_fraction=float(cross_c.mean()), cross_group_fraction=float(cross_g.mean()),
        tokens=tokens, top_k=top_k, dedup=dedup,
        c_t_per_layer=c_t, root_replicas_per_layer=root, chiplet_tokens=chiplets, group_tokens=groups,
        chiplet_imbalance_per_layer=chip_imb, group_imbalance_per_layer=group_imb,
        cross_chiplet_per_layer=cross_c, cross_group_per_layer=cross_g)


def placement_metrics(trace: Trace, placement: Placement, cfg, *, dedup: bool = True) -> PlacementMetrics:
    """All placement metrics of ``placement`` on ``trace``, per layer and averaged over layers.

    Parameters
    ----------
    trace : Trace
        Must fit ``cfg`` (experts, top-k) and have at least one token.
    placement : Placement
        One layer (applied to every layer of the trace) or exactly ``trace.layers`` layers; must fit ``cfg``.
    cfg : WaferConfig
        Supplies the chiplet and group counts.
    dedup : bool
        One replica per destination chiplet (Mozart, configurations B and C) or one per expert (A).
    """
    trace.check_fits(cfg)
    placement.validate(cfg)
    if placement.layers not in (1, trace.layers):
        raise PlacementError(f"placement must have 1 layer or the trace's {trace.layers}, not {placement.layers}")
    tallies = [_tally_trace_layer(trace.experts[layer], placement.expert_to_chiplet[min(layer, placement.layers - 1)],
                                  cfg.chiplets, cfg.chiplets_per_group, dedup)
               for layer in range(trace.layers)]
    return _summarise(tallies, trace.top_k, dedup)


def metrics_from_coactivation(counts: np.ndarray, expert_to_chiplet: np.ndarray, chiplets_per_group: int, *,
                              chiplets: int | None = None) -> PlacementMetrics:
    """One layer's placement metrics (with de-duplication) from a top-2 co-activation count matrix alone.

    With top-2 every token is exactly one co-activated pair ``{i, j}``, so ``C`` determines everything: the
    token count is ``sum_{i<j} C_ij``, a token costs 2 replicas if its pair is split across chiplets and 1
    otherwise, and chiplet ``c`` receives the tokens of every pair with an expert on ``c``. The result equals
    :func:`placement_metrics` on the trace ``C`` was counted from, exactly.

    Parameters
    ----------
    counts : integer array ``[E, E]``
        Symmetric, non-negative; the diagonal is ignored if zero and otherwise must equal the off-diagonal row
        sums (the activation counts of a top-2 trace; anything else is not top-2 data).
    expert_to_chiplet : int ``[E]``
    chiplets_per_group : int
    chiplets : int, optional
        Number of chiplets; default ``max(expert_to_chiplet) + 1``.
    """
    counts = np.asarray(counts)
    e2c = np.asarray(expert_to_chiplet)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise TraceError(f"co-activation counts must be a square matrix, not of shape {counts.shape}")
    experts = counts.shape[0]
    if not (np.issubdtype(counts.dtype, np.integer) or np.array_equal(counts, np.round(counts))):
        raise TraceError("co-activation counts must be whole numbers")
    counts = counts.astype(np.int64)
    if (counts < 0).any() or not np.array_equal(counts, counts.T):
        raise TraceError("co-activation counts must be symmetric and non-negative")
    if e2c.shape != (experts,) or not np.issubdtype(e2c.dtype, np.integer):
        raise PlacementError(f"expert_to_chiplet must be an integer array of shape ({experts},), not "
                             f"{e2c.dtype} of shape {e2c.shape}")
    chiplets = int(e2c.max()) + 1 if chiplets is None else chiplets
    if chiplets_per_group < 1 or chiplets % chiplets_per_group:
        raise PlacementError(f"chiplets_per_group must be a positive divisor of the chiplet count ({chiplets}), "
                             f"not {chiplets_per_group!r}")
    if e2c.min() < 0 or e2c.max() >= chiplets:
        raise PlacementError(f"expert_to_chiplet must be in 0..{chiplets - 1}, not {int(e2c.min())}..{int(e2c.max())}")
    diag = np.diag(counts)
    row = counts.sum(axis=1) - diag
    if diag.any() and not np.array_equal(diag, row):
        i = int(np.flatnonzero(diag != row)[0])
        raise TraceError(f"co-activation diagonal must be 0 or the top-2 activation count (row sum {row[i]}), "
                         f"not {diag[i]} for expert {i}: top-2 data is needed")
    i, j = np.triu_indices(experts, 1)
    weight = counts[i, j]
    ci, cj = e2c[i], e2c[j]
    gi, gj = ci // chiplets_per_group, cj // chiplets_per_group
    split_c, split_g = ci != cj, gi != gj
    tokens = int(weight.sum())
    groups = chiplets // chiplets_per_group
    # A pair's token reaches the chiplet (group) of i, and that of j if different.
    chip_tokens = (np.bincount(ci, weight, chiplets) + np.bincount(cj[split_c], weight[split_c], chiplets))
    group_tokens = (np.bincount(gi, weight, groups) + np.bincount(gj[split_g], weight[split_g], groups))
    cross_c, cross_g = int(weight[split_c].sum()), int(weight[split_g].sum())
    tally = _Tally(tokens, tokens + cross_c, tokens + cross_g, np.rint(chip_tokens).astype(np.int64),
                   np.rint(group_tokens).astype(np.int64), tokens, cross_c, cross_g)
    return _summarise([tally], 2, True)


def expected_distinct_chiplets(num_experts: int, top_k: int, chiplets: int) -> float:
    """Expected distinct chiplets hit by ``top_k`` distinct uniformly random experts, contiguous layout.

    Derivation. The ``E`` experts sit ``m = E / n_c`` per chiplet. A token picks a uniformly random ``k``-subset
    of the experts (all ``C(E, k)`` subsets equally likely). Chiplet ``c`` is *missed* iff all ``k`` experts come
    from the ``E - m`` experts elsewhere, which ``C(E - m, k)`` subsets do, so
    ``P(c hit) = 1 - C(E - m, k) / C(E, k)``. The number of chiplets hit is the sum of the ``n_c`` hit
    indicators, and by linearity of expectation (the indicators are dependent, which does not matter)::

        E[distinct] = n_c * (1 - C(E - E/n_c, k) / C(E, k))

    The layout only needs equal-size chiplets, not contiguity: any equal-size placement gives the same
    expectation under uniform routing. With ``chiplets = groups`` the same formula gives the expected
    root-link replicas. Computed with exact integers, then rounded once to float.
    """
    for name, value in (("num_experts", num_experts), ("top_k", top_k), ("chiplets", chiplets)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, not {value!r}")
    if num_experts % chiplets:
        raise ValueError(f"num_experts must be a multiple of chiplets ({chiplets}), not {num_experts!r}")
    if top_k > num_experts:
        raise ValueError(f"top_k must be at most num_experts ({num_experts}), not {top_k!r}")
    missed = Fraction(math.comb(num_experts - num_experts // chiplets, top_k), math.comb(num_experts, top_k))
    return float(chiplets * (1 - missed))
