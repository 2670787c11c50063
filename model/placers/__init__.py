"""Placement algorithms: expert -> chiplet -> group, one module per algorithm, one registry.

Every algorithm places one MoE layer at a time from a :class:`LayerData` (the layer's routing plus its
lazily computed statistics) and returns ``expert_to_chiplet``, an int array ``[experts]`` of global chiplet
ids with exactly ``cfg.experts_per_chiplet`` experts on each chiplet. :func:`place` runs one method over all
layers of a trace and returns a validated :class:`~mozart.model.placement.Placement`.

Methods (see ``docs/placement.md``):

``mozart``         Algorithm 1 (expert clustering) + cluster-to-group allocation, as in the paper.
``mozart+refine``  ``mozart`` + pairwise-swap local search that never makes C_T worse (our addition).
``mozart+balance`` ``mozart+refine`` + swaps that lighten the busiest chiplet, C_T within 2 % (our addition).
``contiguous``     experts ``0..n-1`` on chiplet 0, the next ``n`` on chiplet 1, ... (frameworks' default).
``round-robin``    expert ``e`` on chiplet ``e mod chiplets``.
``random``         a seeded random equal-size layout.
``load-only``      EPLB-style balanced packing of expert load onto groups, then chiplets.
``metis``          balanced k-way partition of the co-activation graph (METIS), repaired to equal sizes.
``exact``          the C_T optimum by dynamic programming over expert subsets (at most 16 experts).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import numpy as np

from ..errors import PlacementError
from ..placement import Placement

__all__ = ["LayerData", "Placer", "PLACERS", "place", "place_layer", "method_names"]


class LayerData:
    """One layer of a trace with its statistics, computed once and shared by every placer.

    Parameters
    ----------
    trace : Trace
    layer : int

    Members
    -------
    experts : int32 array ``[tokens, k]``
        The layer's routing.
    num_experts : int
    frequency : float64 array ``[experts]``
        Activation frequency V (sums to 1), from :func:`mozart.model.stats.activation_frequency`.
    coactivation : int64 array ``[experts, experts]``
        Co-activation counts C (diagonal = activation counts), from
        :func:`mozart.model.stats.coactivation_counts`.
    """

    def __init__(self, trace, layer: int) -> None:
        self.trace = trace
        self.layer = layer
        self.experts = trace.experts[layer]
        self.num_experts = trace.num_experts

    @cached_property
    def frequency(self) -> np.ndarray:
        from ..stats import activation_frequency  # noqa: PLC0415 (only the methods that need it pay)
        return activation_frequency(self.trace, self.layer)

    @cached_property
    def coactivation(self) -> np.ndarray:
        from ..stats import coactivation_counts  # noqa: PLC0415
        return coactivation_counts(self.trace, self.layer)


#: A layer placer: ``(layer data, config, random generator) -> expert_to_chiplet [experts]``.
LayerPlacer = Callable[[LayerData, object, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Placer:
    """A named placement method.

    Members
    -------
    name : str
        The method name on the command line.
    place_layer : LayerPlacer
    summary : str
        One line for ``--help`` and reports.
    """

    name: str
    place_layer: LayerPlacer
    summary: str


def _registry() -> dict[str, Placer]:
    # Imported here so that each algorithm module can import LayerData from this package.
    from . import balance, baselines, exact, partition, refine
    from .clustering import place_mozart
    return {p.name: p for p in (
        Placer("mozart", place_mozart, "Algorithm 1 clustering + cluster-to-group allocation (the paper)"),
        Placer("mozart+refine", refine.place_mozart_refined,
               "mozart + pairwise-swap local search that never makes C_T worse"),
        Placer("mozart+balance", balance.place_mozart_balanced,
               "mozart+refine + swaps that lighten the busiest chiplet, C_T within 2% of it"),
        Placer("contiguous", baselines.place_contiguous, "experts 0..n-1 on chiplet 0, ... (framework default)"),
        Placer("round-robin", baselines.place_round_robin, "expert e on chiplet e mod chiplets"),
        Placer("random", baselines.place_random, "seeded random equal-size layout"),
        Placer("load-only", baselines.place_load_only,
               "EPLB-style balanced packing of expert load onto groups, then chiplets"),
        Placer("metis", partition.place_metis,
               "balanced k-way METIS partition of the co-activation graph, repaired to equal sizes"),
        Placer("exact", exact.place_exact, "the C_T optimum (at most 16 experts)"),
    )}


PLACERS: dict[str, Placer] = _registry()


def method_names() -> list[str]:
    """The registered method names, in registry order."""
    return list(PLACERS)


def _placer(method: str) -> Placer:
    if method not in PLACERS:
        raise PlacementError(f"placement method must be one of {', '.join(PLACERS)}, not {method!r}")
    return PLACERS[method]


def _rng(seed: int, layer: int) -> np.random.Generator:
    # One stream per (seed, layer): a layer's placement does not depend on which layers ran before it.
    return np.random.default_rng([int(seed), int(layer)])


def place_layer(data: LayerData, cfg, method: str, *, seed: int = 0) -> np.ndarray:
    """Place one layer with ``method``; returns ``expert_to_chiplet`` (int32 ``[experts]``)."""
    e2c = np.asarray(_placer(method).place_layer(data, cfg, _rng(seed, data.layer)), dtype=np.int32)
    return e2c


def place(trace, cfg, method: str, *, seed: int = 0, progress: Callable[[int, int], None] | None = None) -> Placement:
    """Place every layer of ``trace`` on the wafer ``cfg`` with ``method``.

    Parameters
    ----------
    trace : Trace
        Must route ``cfg.moe.experts`` experts with ``cfg.moe.top_k``.
    cfg : WaferConfig
    method : str
        One of :data:`PLACERS`.
    seed : int
        Seeds the random methods (``random``, ``metis``); the others are deterministic.
    progress : callable, optional
        Called as ``progress(layers_done, layers)`` after each layer.

    Returns
    -------
    Placement
        Validated against ``cfg``.

    Raises
    ------
    PlacementError
        For an unknown method, or a method that cannot place this size (``exact``).
    TraceError
        If the trace does not fit the config.
    """
    _placer(method)
    trace.check_fits(cfg)
    e2c = np.empty((trace.layers, trace.num_experts), dtype=np.int32)
    for layer in range(trace.layers):
        e2c[layer] = place_layer(LayerData(trace, layer), cfg, method, seed=seed)
        if progress:
            progress(layer + 1, trace.layers)
    placement = Placement(e2c, cfg.chiplets_per_group, method)
    placement.validate(cfg)
    return placement
