"""Cluster-to-group allocation: balance the summed activation frequency of the groups.

The paper's binary integer programme assigns the ``N_c`` clusters to the ``N_g`` groups (a group's chiplets
share one DRAM behind one switch), ``N_c / N_g`` clusters per group, minimising ``|M V_cluster - 1/N_g|``
so that each group carries about ``1 / N_g`` of the load. Its printed constraint and dimensions are
inconsistent; we solve the evident intent:

* **Objective.** Minimise the *largest* absolute deviation ``max_g |load_g - 1/N_g|`` (the busiest or
  idlest group sets the step time; a sum would let one bad group hide behind good ones). Among equal
  optima the DP takes the lexicographically first partition; HiGHS returns any one.
* **Exact** for the paper's sizes and anything of similar size: when the subset tables stay small
  (:func:`.subsets.table_size` <= :data:`.subsets.MAX_TABLE`; 16 clusters into 4 groups is 0.3 M entries,
  about 5 ms), by dynamic programming over subsets (:mod:`.subsets`), with deterministic lexicographic
  tie-breaking. Larger, up to ``N_c * N_g <= EXACT_LIMIT`` binaries, by ``scipy.optimize.milp`` (HiGHS,
  zero MIP gap; cluster 0 fixed to group 0 to break the symmetry of group labels). Both are checked
  against brute force in the tests; HiGHS needs 0.1-0.4 s for 16 x 4, too slow for 48 layers x several
  methods in ``mozart compare``, hence the DP first. Should HiGHS stop at its time limit, the better of its
  incumbent and the heuristic is used.
* **Heuristic** beyond the limit: longest-processing-time packing with a capacity of ``N_c / N_g``
  clusters per group (heaviest cluster first, onto the lightest group with room; the same packing as the
  ``load-only`` baseline), then the best swap of two clusters between groups, repeatedly, while it lowers
  (max deviation, sum of squared deviations).
* **Chiplets inside a group** (open in the paper): the group's clusters go to its chiplets in descending
  load (chiplet 0 of a group holds its heaviest cluster), matching the streaming order "heavier clusters
  load first". Groups are numbered by descending load (ties: lowest cluster id). No metric depends on
  either order (C_T and the group metrics are invariant under renumbering chiplets within a group).
"""

from __future__ import annotations

import numpy as np

from ..errors import PlacementError
from .baselines import balanced_packing
from .subsets import MAX_TABLE, best_partition, subset_masks, table_size

__all__ = ["EXACT_LIMIT", "SOLVERS", "allocate_groups", "allocate_groups_exact", "allocate_groups_greedy",
           "allocation_deviation", "clusters_to_chiplets"]

#: Largest ``clusters * groups`` (binary variables) solved exactly by MILP when the DP tables are too big.
EXACT_LIMIT = 256
#: Seconds HiGHS may spend on one allocation before its incumbent is used.
TIME_LIMIT = 10.0


def _check(loads: np.ndarray, groups: int) -> np.ndarray:
    loads = np.asarray(loads, dtype=np.float64)
    if loads.ndim != 1 or not np.isfinite(loads).all() or (loads < 0).any():
        raise PlacementError(f"cluster loads must be a 1-d array of finite non-negative numbers, not {loads!r}")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1 or len(loads) % groups:
        raise PlacementError(f"groups must be a positive divisor of the cluster count ({len(loads)}), not {groups!r}")
    return loads


def _group_loads(loads: np.ndarray, group_of: np.ndarray, groups: int) -> np.ndarray:
    return np.bincount(group_of, weights=loads, minlength=groups)


def allocation_deviation(loads: np.ndarray, group_of: np.ndarray, groups: int) -> float:
    """The objective: ``max_g |load_g - total/N_g|`` (``total`` is 1 for frequencies)."""
    loads = np.asarray(loads, dtype=np.float64)
    target = loads.sum() / groups
    return float(np.abs(_group_loads(loads, np.asarray(group_of), groups) - target).max())


def _improve_by_swaps(loads: np.ndarray, group_of: np.ndarray, groups: int) -> np.ndarray:
    """Apply the best cluster swap between groups while it lowers (max |deviation|, sum of squares).

    Every pair is scored at once: a swap changes only its two groups' deviations, and the largest deviation
    among the *other* groups is the first of the three largest that belongs to neither.
    """
    n = len(loads)
    a_idx, b_idx = np.triu_indices(n, 1)
    tol = 1e-15 * max(1.0, float(loads.sum()))  # float noise must not count as progress (no cycling)
    while True:
        dev = _group_loads(loads, group_of, groups) - loads.sum() / groups
        cur_max, cur_sq = np.abs(dev).max(), np.square(dev).sum()
        ga, gb = group_of[a_idx], group_of[b_idx]
        moved = loads[b_idx] - loads[a_idx]
        new_a, new_b = dev[ga] + moved, dev[gb] - moved
        top = np.argsort(-np.abs(dev), kind="stable")[:3]
        others = np.zeros(len(a_idx))
        for g in top[::-1]:  # the largest valid one is written last
            others = np.where((ga != g) & (gb != g), np.abs(dev[g]), others)
        new_max = np.maximum(np.maximum(np.abs(new_a), np.abs(new_b)), others)
        new_sq = cur_sq - dev[ga] ** 2 - dev[gb] ** 2 + new_a ** 2 + new_b ** 2
        better = (ga != gb) & ((new_max < cur_max - tol) | ((new_max <= cur_max + tol) & (new_sq < cur_sq - tol)))
        if not better.any():
            return group_of
        cand = np.flatnonzero(better)
        best = cand[np.lexsort((new_sq[cand], new_max[cand]))[0]]
        group_of[a_idx[best]], group_of[b_idx[best]] = gb[best], ga[best]


def allocate_groups_greedy(loads: np.ndarray, groups: int) -> np.ndarray:
    """The heuristic: EPLB's balanced packing (LPT with equal counts), then improving swaps.

    Returns
    -------
    int64 array ``[clusters]``: the group of every cluster.
    """
    loads = _check(loads, groups)
    return _improve_by_swaps(loads, balanced_packing(loads, groups), groups)


def _solve(loads: np.ndarray, groups: int) -> np.ndarray | None:
    """The MILP: minimise ``t`` subject to ``t >= |load_g - target|`` for every group."""
    from scipy.optimize import Bounds, LinearConstraint, milp  # noqa: PLC0415 (slow import, rarely needed)

    n, target = len(loads), loads.sum() / groups
    nx = n * groups  # x[c, g] at index c * groups + g; t is the last variable
    one_group = np.kron(np.eye(n), np.ones(groups))  # sum_g x[c, g] = 1
    per_group = np.kron(np.ones(n), np.eye(groups))  # sum_c x[c, g] = N_c / N_g
    group_load = np.kron(loads, np.eye(groups))  # load_g
    t_col = np.ones((groups, 1))
    a = np.block([[one_group, np.zeros((n, 1))],
                  [per_group, np.zeros((groups, 1))],
                  [group_load, -t_col],  # load_g - t <= target
                  [group_load, t_col]])  # load_g + t >= target
    lo = np.concatenate([np.ones(n), np.full(groups, n // groups), np.full(groups, -np.inf), np.full(groups, target)])
    hi = np.concatenate([np.ones(n), np.full(groups, n // groups), np.full(groups, target), np.full(groups, np.inf)])
    lower, upper = np.zeros(nx + 1), np.concatenate([np.ones(nx), [np.inf]])
    lower[0] = 1.0  # symmetry breaking: group labels are interchangeable, so cluster 0 is in group 0
    cost = np.zeros(nx + 1)
    cost[nx] = 1.0
    res = milp(cost, integrality=np.concatenate([np.ones(nx), [0]]), bounds=Bounds(lower, upper),
               constraints=LinearConstraint(a, lo, hi), options={"time_limit": TIME_LIMIT, "mip_rel_gap": 0.0})
    if res.x is None:
        return None
    return np.argmax(np.rint(res.x[:nx]).reshape(n, groups), axis=1).astype(np.int64)


def _solve_dp(loads: np.ndarray, groups: int) -> np.ndarray:
    """The exact optimum by dynamic programming over subsets of clusters (:mod:`.subsets`)."""
    n, size = len(loads), len(loads) // groups
    masks = subset_masks(n, size)
    members = (masks[:, None] >> np.arange(n)) & 1
    labels, _ = best_partition(np.abs(members @ loads - loads.sum() / groups), n, size, "max")
    return labels


SOLVERS = ("auto", "dp", "milp")


def allocate_groups_exact(loads: np.ndarray, groups: int, solver: str = "auto") -> np.ndarray:
    """The exact optimum of the largest group deviation.

    Parameters
    ----------
    loads : float array ``[clusters]``
    groups : int
    solver : {"auto", "dp", "milp"}
        ``auto``: the subset DP when its tables are small enough, else the MILP.

    Returns
    -------
    int64 array ``[clusters]``: the group of every cluster.
    """
    loads = _check(loads, groups)
    if solver not in SOLVERS:
        raise PlacementError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    if groups == 1:
        return np.zeros(len(loads), dtype=np.int64)
    fits_dp = table_size(len(loads), len(loads) // groups) <= MAX_TABLE
    if solver == "dp" or (solver == "auto" and fits_dp):
        if not fits_dp:
            raise PlacementError(f"the subset DP needs at most {MAX_TABLE} table entries, not "
                                 f"{table_size(len(loads), len(loads) // groups)} ({len(loads)} clusters)")
        return _solve_dp(loads, groups)
    # The heuristic is kept should HiGHS stop at its time limit with nothing better. (Passing its value as an
    # upper bound on t made HiGHS report a worse "optimum" on some inputs, so no such cut is used.)
    heuristic = allocate_groups_greedy(loads, groups)
    exact = _solve(loads, groups)
    if exact is None or allocation_deviation(loads, exact, groups) > allocation_deviation(loads, heuristic, groups):
        return heuristic
    return exact


def allocate_groups(loads: np.ndarray, groups: int) -> np.ndarray:
    """Assign clusters to groups: exact (DP or MILP) where affordable, the heuristic beyond.

    Parameters
    ----------
    loads : float array ``[clusters]``
        Summed activation frequency of every cluster.
    groups : int
        ``N_g``; must divide the number of clusters.

    Returns
    -------
    int64 array ``[clusters]``: the group of every cluster.
    """
    loads = _check(loads, groups)
    if table_size(len(loads), len(loads) // groups) <= MAX_TABLE or len(loads) * groups <= EXACT_LIMIT:
        return allocate_groups_exact(loads, groups)
    return allocate_groups_greedy(loads, groups)


def clusters_to_chiplets(labels: np.ndarray, frequency: np.ndarray, cfg) -> np.ndarray:
    """Turn equal-size clusters into global chiplet ids: allocate to groups, order inside each group.

    Parameters
    ----------
    labels : int array ``[experts]``
        Cluster of every expert, ``0..cfg.chiplets-1``, each cluster of ``cfg.experts_per_chiplet``.
    frequency : float array ``[experts]``
        Activation frequency V.
    cfg : WaferConfig

    Returns
    -------
    int32 array ``[experts]``: the global chiplet of every expert.
    """
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels, minlength=cfg.chiplets)
    if len(counts) != cfg.chiplets or (counts != cfg.experts_per_chiplet).any():
        raise PlacementError(f"clusters must be {cfg.chiplets} clusters of {cfg.experts_per_chiplet} experts, "
                             f"not sizes {counts.tolist()}")
    loads = np.bincount(labels, weights=np.asarray(frequency, dtype=np.float64), minlength=cfg.chiplets)
    group_of = allocate_groups(loads, cfg.groups)
    group_load = _group_loads(loads, group_of, cfg.groups)
    first_cluster = [int(np.flatnonzero(group_of == g)[0]) for g in range(cfg.groups)]
    group_rank = np.empty(cfg.groups, dtype=np.int64)
    group_rank[sorted(range(cfg.groups), key=lambda g: (-group_load[g], first_cluster[g]))] = np.arange(cfg.groups)
    chiplet_of_cluster = np.empty(cfg.chiplets, dtype=np.int64)
    for g in range(cfg.groups):
        members = sorted(np.flatnonzero(group_of == g), key=lambda c: (-loads[c], c))
        for slot, cluster in enumerate(members):
            chiplet_of_cluster[cluster] = group_rank[g] * cfg.chiplets_per_group + slot
    return chiplet_of_cluster[labels].astype(np.int32)
