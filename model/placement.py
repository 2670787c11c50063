"""A placement: which physical chiplet holds each expert, per layer.

Chiplets are numbered globally, group-major: chiplet ``i`` is chiplet ``i % C`` of group ``i // C`` (C =
chiplets per group), the numbering of :mod:`mozart.model.topology`. So a placement is one array per layer,
and the chiplet -> group map is implied. Within a chiplet, experts are numbered by ascending global id: that
*local index* is what route words and weight slots use.

The algorithms that produce placements are in :mod:`mozart.model.placers`; the JSON file format in
:mod:`mozart.model.placement_io`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import PlacementError

__all__ = ["Placement"]


@dataclass(frozen=True, eq=False)
class Placement:
    """Members
    -------
    expert_to_chiplet : int32 array ``[layers, experts]``
        Global chiplet index of every expert, per layer; every chiplet holds exactly
        ``experts / chiplets`` experts.
    chiplets_per_group : int
    method : str
        The algorithm that made it (for reports).
    """

    expert_to_chiplet: np.ndarray
    chiplets_per_group: int
    method: str = ""

    def __post_init__(self) -> None:
        e2c = np.asarray(self.expert_to_chiplet)
        if e2c.ndim == 1:
            e2c = e2c[None, :]
        if e2c.ndim != 2 or not np.issubdtype(e2c.dtype, np.integer):
            raise PlacementError(f"expert_to_chiplet must be an integer [layers, experts] array, not {e2c.dtype} "
                                 f"of shape {e2c.shape}")
        if self.chiplets_per_group < 1:
            raise PlacementError(f"chiplets_per_group must be positive, not {self.chiplets_per_group!r}")
        object.__setattr__(self, "expert_to_chiplet", np.ascontiguousarray(e2c, dtype=np.int32))

    @property
    def layers(self) -> int:
        return self.expert_to_chiplet.shape[0]

    @property
    def num_experts(self) -> int:
        return self.expert_to_chiplet.shape[1]

    def chiplet_to_group(self, chiplets: int) -> np.ndarray:
        return np.arange(chiplets) // self.chiplets_per_group

    def expert_to_group(self, layer: int = 0) -> np.ndarray:
        return self.expert_to_chiplet[layer] // self.chiplets_per_group

    def local_index(self, layer: int = 0) -> np.ndarray:
        """Each expert's index among the experts of its chiplet (ascending global id)."""
        e2c = self.expert_to_chiplet[layer]
        order = np.lexsort((np.arange(len(e2c)), e2c))
        local = np.empty_like(e2c)
        counts = np.bincount(e2c)
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        local[order] = np.arange(len(e2c)) - np.repeat(starts, counts)
        return local

    def experts_on(self, chiplet: int, layer: int = 0) -> np.ndarray:
        """Global ids of the experts on ``chiplet``, in local-index order."""
        return np.flatnonzero(self.expert_to_chiplet[layer] == chiplet)

    def validate(self, cfg) -> None:
        """Raise :class:`PlacementError` unless this placement fits ``cfg`` with equal-size chiplets."""
        if self.num_experts != cfg.moe.experts:
            raise PlacementError(f"placement places {self.num_experts} experts but config {cfg.name!r} has "
                                 f"moe.experts = {cfg.moe.experts}")
        if self.chiplets_per_group != cfg.chiplets_per_group:
            raise PlacementError(f"placement has {self.chiplets_per_group} chiplets per group but config "
                                 f"{cfg.name!r} has tree.chiplets_per_group = {cfg.chiplets_per_group}")
        for layer in range(self.layers):
            e2c = self.expert_to_chiplet[layer]
            bad = (e2c < 0) | (e2c >= cfg.chiplets)
            if bad.any():
                expert = int(np.flatnonzero(bad)[0])
                raise PlacementError(f"layer {layer} expert {expert}: chiplet must be in 0..{cfg.chiplets - 1}, "
                                     f"not {e2c[expert]}")
            counts = np.bincount(e2c, minlength=cfg.chiplets)
            uneven = np.flatnonzero(counts != cfg.experts_per_chiplet)
            if uneven.size:
                c = int(uneven[0])
                raise PlacementError(f"layer {layer} chiplet {c} must hold {cfg.experts_per_chiplet} experts, "
                                     f"not {counts[c]}")
