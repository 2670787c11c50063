"""Where the weights live: a group's HBM2 stack, and the SSD tier for what does not fit.

Contract
--------
:func:`hbm_layers` gives, for one expert group, how many layers' expert weights its HBM2 stack holds next to
the step's saved activations; the expert weights of the remaining layers live on the slow tier the paper
studies (SSD, ``ssd_gbps``) and stream from there. Whole layers fit or not, the first layers first
(assumption: the step's forward pass starts with layer 0; any rule that puts a fixed share of the bytes on the
SSD streams the same bytes from it per step). The capacity in use:

- expert weights: ``layers x experts per group x matrices x d_model x d_ff x element_bytes``;
- saved activations, which must stay until the backward pass: ``layers x tokens x top_k x (matrices - 1) x
  d_ff x element_bytes / groups`` (the group's even share), for the tokens held at once: the whole step in the
  ``"per-layer"`` reading of the micro-batches, one micro-batch in ``"per-micro-batch"`` (its backward pass
  ends before the next micro-batch starts).

Qwen3-30B-A3B's 58 GB of FP16 experts need 14.5 GB per group against the stack's 8 GB (docs/paper.md: 8192 MB per
stack), so 22 of its 48 layers stream from the SSD tier. :class:`Capacity` keeps the numbers for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["Capacity", "hbm_layers"]


@dataclass(frozen=True)
class Capacity:
    """One expert group's DRAM budget (bytes) and how many layers' expert weights fit in it."""

    stack_bytes: float
    weight_bytes_per_layer: float   # the group's experts of one layer
    saved_bytes: float              # the step's saved activations held by the group
    layers: int                     # MoE layers of the model
    layers_in_hbm: int              # layers whose expert weights the stack holds (the first ones)

    @property
    def overflow_layers(self) -> int:
        return self.layers - self.layers_in_hbm

    @property
    def overflow_bytes(self) -> float:
        return self.overflow_layers * self.weight_bytes_per_layer

    def line(self) -> str:
        total = self.layers * self.weight_bytes_per_layer + self.saved_bytes
        if not self.overflow_layers:
            return f"fits: {total / 1e9:.1f} GB of {self.stack_bytes / 1e9:.1f} GB per group stack"
        return (f"{total / 1e9:.1f} GB per group (expert weights {self.layers * self.weight_bytes_per_layer / 1e9:.1f}"
                f" GB, saved activations {self.saved_bytes / 1e9:.1f} GB) exceed the {self.stack_bytes / 1e9:.1f} GB "
                f"stack: layers {self.layers_in_hbm}..{self.layers - 1} ({self.overflow_bytes / 1e9:.1f} GB) "
                f"stream from the SSD tier")


def hbm_layers(params, cfg, reading: str = "per-layer") -> Capacity:
    """The :class:`Capacity` of one expert group of ``cfg`` (its preset's full-size shape) with ``params``, in
    ``reading`` of the paper's micro-batches (:data:`~mozart.model.perf.step.WEIGHT_READINGS`)."""
    moe, element = cfg.moe, params.element_bytes
    experts_per_group = moe.experts // cfg.groups
    per_layer = experts_per_group * params.expert_matrices * moe.d_model * moe.d_ff * element
    held = cfg.training.tokens_per_step if reading == "per-layer" else cfg.training.tokens_per_micro_batch
    saved = moe.layers * held * moe.top_k * (params.expert_matrices - 1) * moe.d_ff * element / cfg.groups
    stack = params.hbm_mb_per_stack * 2**20
    fit = max(0, min(moe.layers, math.floor((stack - saved) / per_layer)))
    return Capacity(stack, per_layer, saved, moe.layers, fit)
