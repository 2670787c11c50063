"""A routing trace: for every MoE layer, each token's top-k expert ids and gate weights.

This is the in-memory type every other module takes. Readers and writers of the on-disk formats live in
:mod:`mozart.model.trace_io`, the synthetic generator in :mod:`mozart.model.synth`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import TraceError

__all__ = ["Trace"]


@dataclass(frozen=True, eq=False)
class Trace:
    """Top-k routing of ``tokens`` tokens through ``layers`` MoE layers of ``num_experts`` experts.

    Members
    -------
    experts : int32 array ``[layers, tokens, k]``
        Expert ids in ``0..num_experts-1``, distinct within a row, in router order (highest gate first).
    weights : float32 array ``[layers, tokens, k]``
        Gate weights: finite, non-negative.
    num_experts : int
    source : str
        Where the trace came from (a path, or a description of the generator); used in messages.
    """

    experts: np.ndarray
    weights: np.ndarray
    num_experts: int
    source: str = "trace"

    def __post_init__(self) -> None:
        experts = np.asarray(self.experts)
        weights = np.asarray(self.weights)
        where = self.source
        if isinstance(self.num_experts, bool) or not isinstance(self.num_experts, (int, np.integer)) \
                or self.num_experts < 1:
            raise TraceError(f"{where}: num_experts must be a positive integer, not {self.num_experts!r}")
        if experts.ndim != 3:
            raise TraceError(f"{where}: experts must be a [layers, tokens, k] array, not of shape {experts.shape}")
        if weights.shape != experts.shape:
            raise TraceError(f"{where}: weights must have the shape of experts {experts.shape}, not {weights.shape}")
        if not np.issubdtype(experts.dtype, np.integer):
            raise TraceError(f"{where}: experts must be integers, not {experts.dtype}")
        layers, tokens, k = experts.shape
        if layers < 1 or k < 1:
            raise TraceError(f"{where}: a trace must have at least one layer and k >= 1, not shape {experts.shape}")
        if k > self.num_experts:
            raise TraceError(f"{where}: top-k must be at most num_experts ({self.num_experts}), not {k}")
        bad = (experts < 0) | (experts >= self.num_experts)
        if bad.any():
            layer, token, slot = np.argwhere(bad)[0]
            raise TraceError(f"{where}: layer {layer} token {token}: expert id must be in 0..{self.num_experts - 1}, "
                             f"not {experts[layer, token, slot]}")
        if k > 1 and tokens:
            ordered = np.sort(experts, axis=-1)
            dup = (ordered[..., 1:] == ordered[..., :-1]).any(axis=-1)
            if dup.any():
                layer, token = np.argwhere(dup)[0]
                raise TraceError(f"{where}: layer {layer} token {token}: top-k experts must be distinct, not "
                                 f"{experts[layer, token].tolist()}")
        bad_w = ~np.isfinite(weights) | (weights < 0)
        if bad_w.any():
            layer, token, slot = np.argwhere(bad_w)[0]
            raise TraceError(f"{where}: layer {layer} token {token}: gate weights must be finite and >= 0, not "
                             f"{weights[layer, token, slot]!r}")
        object.__setattr__(self, "experts", np.ascontiguousarray(experts, dtype=np.int32))
        object.__setattr__(self, "weights", np.ascontiguousarray(weights, dtype=np.float32))
        object.__setattr__(self, "num_experts", int(self.num_experts))

    @property
    def layers(self) -> int:
        return self.experts.shape[0]

    @property
    def tokens(self) -> int:
        return self.experts.shape[1]

    @property
    def top_k(self) -> int:
        return self.experts.shape[2]

    def layer(self, index: int) -> "Trace":
        """A one-layer trace of layer ``index``."""
        if not 0 <= index < self.layers:
            raise TraceError(f"{self.source}: layer must be in 0..{self.layers - 1}, not {index!r}")
        return Trace(self.experts[index:index + 1], self.weights[index:index + 1], self.num_experts,
                     f"{self.source} layer {index}")

    def head(self, tokens: int) -> "Trace":
        """The first ``tokens`` tokens of every layer."""
        return Trace(self.experts[:, :tokens], self.weights[:, :tokens], self.num_experts, self.source)

    def check_fits(self, cfg) -> None:
        """Raise :class:`TraceError` unless the trace routes the config's MoE shape."""
        if self.num_experts != cfg.moe.experts:
            raise TraceError(f"{self.source}: trace has {self.num_experts} experts but config {cfg.name!r} has "
                             f"moe.experts = {cfg.moe.experts}")
        if self.top_k != cfg.moe.top_k:
            raise TraceError(f"{self.source}: trace has top-{self.top_k} but config {cfg.name!r} has "
                             f"moe.top_k = {cfg.moe.top_k}")
