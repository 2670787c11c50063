"""What one training step asks of the hardware: MACs, bytes and elements per token, pair and layer.

A :class:`Workload` is the model side of the performance model (the hardware side is
:class:`~mozart.model.perf.timing.HardwareTiming`). Units are elements and multiply-accumulates; the timing
turns them into bytes and cycles.

Equations (``d`` = d_model, ``f`` = expert d_ff, ``m`` = matrices per expert, ``b`` = 2 in the backward pass
and 1 forward):

- expert MACs per (token, expert) pair: ``b * m * d * f`` (backward: input and weight gradients);
- expert weights: ``m * d * f``; saved activations per pair: ``(m - 1) * f`` (the hidden vector(s));
- dispatch payload per replica: ``d`` forward, ``2 d`` backward (output gradient and the token);
- combine payload per partial: ``d``;
- root MACs per token: ``b * (attention + router + shared-expert parameters + q_dim * (seq_len + 1))``, the last
  term being the causal score and value products over on average ``(seq_len + 1) / 2`` context tokens;
- root weights per layer: attention + router + shared experts; root saved activations per token:
  ``attention_saved_per_token * d``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Workload"]


@dataclass(frozen=True)
class Workload:
    d_model: int
    d_ff: int
    experts: int
    top_k: int
    layers: int
    seq_len: int
    expert_matrices: int
    attention_params: int
    q_dim: int
    shared_params: int
    attention_saved_per_token: int
    kv_dim: int = 0      # K (and V) projection width: grouped-query attention has fewer KV heads
    head_dim: int = 0    # width of one attention head

    @classmethod
    def full_size(cls, params, cfg) -> "Workload":
        """The paper model of ``params`` (a :class:`PerfParams`) on ``cfg`` (its preset, maybe overridden)."""
        moe = cfg.moe
        shared = moe.shared_experts * params.expert_matrices * moe.d_model * params.shared_expert_d_ff
        # The attention weights are Q and O (d x q_dim each) plus K and V (d x kv_dim each).
        kv_dim = (params.attention_params - 2 * moe.d_model * params.q_dim) // (2 * moe.d_model)
        return cls(moe.d_model, moe.d_ff, moe.experts, moe.top_k, moe.layers, cfg.training.seq_len,
                   params.expert_matrices, params.attention_params, params.q_dim, shared,
                   params.attention_saved_per_token, kv_dim, params.head_dim)

    @classmethod
    def scaled(cls, cfg) -> "Workload":
        """The RTL's layer: two matrices per expert (W1, W2) and no attention work on the root."""
        moe = cfg.moe
        return cls(moe.d_model, moe.d_ff, moe.experts, moe.top_k, moe.layers, cfg.training.seq_len, 2, 0, 0, 0, 0)

    def phase_factor(self, backward: bool) -> int:
        return 2 if backward else 1

    def expert_macs_per_pair(self, backward: bool) -> float:
        return self.phase_factor(backward) * self.expert_matrices * self.d_model * self.d_ff

    @property
    def expert_weight_elements(self) -> int:
        return self.expert_matrices * self.d_model * self.d_ff

    @property
    def saved_elements_per_pair(self) -> int:
        return (self.expert_matrices - 1) * self.d_ff

    def dispatch_elements(self, backward: bool) -> int:
        return self.phase_factor(backward) * self.d_model

    @property
    def root_weight_elements(self) -> int:
        return self.attention_params + self.d_model * self.experts + self.shared_params if self.attention_params \
            else 0

    def root_macs_per_token(self, backward: bool) -> float:
        if not self.attention_params:
            return 0.0
        per = self.root_weight_elements + self.q_dim * (self.seq_len + 1)
        return self.phase_factor(backward) * per

    @property
    def root_saved_elements_per_token(self) -> int:
        return self.attention_saved_per_token * self.d_model
