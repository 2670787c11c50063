"""A chiplet's systolic arrays computing GEMMs, as a weight-stationary systolic array does (not at peak MACs).

Contract
--------
:class:`SystolicArrays` is ``arrays`` identical ``rows x cols`` arrays (a chiplet: tiles x arrays per tile).
:meth:`SystolicArrays.gemm_cycles` gives the cycles of ``out[m x n] = in[m x k] @ w[k x n]`` on them:

- **Dataflow: weight stationary.** A *fold* is one ``rows x cols`` block of ``w``. An array runs a fold in
  ``fold_cycles(t) = rows + (rows - 1) + (cols - 1) + t`` cycles when ``t`` rows of ``in`` stream through it:
  ``rows`` cycles to shift the fold's weights in (fill, not overlapped with the previous fold's compute),
  ``rows - 1`` of input skew, ``cols - 1`` of output drain, and one cycle per streamed row. This is the
  analytical model of SCALE-Sim's weight-stationary dataflow (Samajdar et al., "SCALE-Sim: Systolic CNN
  Accelerator Simulator", 2018), which ``tests/test_systolic.py`` and ``bench/systolic_crosscheck.py`` check
  cycle for cycle against SCALE-Sim itself.
- **Tiling over the arrays.** ``w`` has ``ceil(k / rows) * ceil(n / cols)`` folds. With at least as many folds
  as arrays, each array runs ``ceil(folds / arrays)`` folds one after another, every fold streaming all ``m``
  rows. With fewer folds than arrays, each fold is replicated on ``arrays // folds`` arrays that split the
  ``m`` rows between them (so a small weight matrix still uses the chiplet). Partial sums of the ``k`` folds
  are added by the tile's adder tree (docs/paper.md: "16 systolic arrays and an adder tree" per tile), pipelined,
  at no extra cycles.
- **Few tokens.** Fill, skew and drain are paid per fold whatever ``m`` is, so an expert that gets few
  tokens of a micro-batch runs far below peak: the utilisation is ``m / fold_cycles(m)`` per fold.

:func:`expert_gemms` lists the GEMMs of one expert on ``t`` tokens (forward, or backward: input and weight
gradients); :func:`attention_gemms` those of the attention block on one micro-batch. Shapes are
``(m, k, n, count)``: ``count`` GEMMs ``[m x k] @ [k x n]``, ``k x n`` the stationary operand.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["SystolicArrays", "expert_gemms", "attention_gemms"]


@dataclass(frozen=True)
class SystolicArrays:
    """``arrays`` weight-stationary systolic arrays of ``rows x cols`` PEs, one MAC per PE per cycle."""

    rows: int
    cols: int
    arrays: int

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "arrays"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"systolic {name} must be a positive integer, not {value!r}")

    @classmethod
    def square(cls, pes_per_array: int, arrays: int) -> "SystolicArrays":
        """Square arrays of ``pes_per_array`` PEs (the paper gives the PE count, not the shape)."""
        side = math.isqrt(pes_per_array)
        if side * side != pes_per_array:
            raise ValueError(f"pes_per_array must be a square number (a square array), not {pes_per_array!r}")
        return cls(side, side, arrays)

    @property
    def fill_drain_cycles(self) -> int:
        """Cycles of a fold beyond its streamed rows: weight fill, input skew and output drain."""
        return 2 * self.rows + self.cols - 2

    def fold_cycles(self, streamed_rows: int) -> int:
        return self.fill_drain_cycles + streamed_rows

    def folds(self, k: int, n: int) -> int:
        return math.ceil(k / self.rows) * math.ceil(n / self.cols)

    def array_share(self, m: int, k: int, n: int) -> tuple[int, int, int, int]:
        """The busiest array's part of the GEMM, ``(folds, m', k', n')``: it runs ``folds`` folds one after
        another, each streaming ``m'`` rows; as a GEMM of its own that is ``[m' x k'] @ [k' x n']`` on one
        array (what SCALE-Sim runs to check :meth:`gemm_cycles`)."""
        if m == 0 or k == 0 or n == 0:
            return 0, 0, 0, 0
        folds = self.folds(k, n)
        if folds >= self.arrays:
            sequence = math.ceil(folds / self.arrays)
            return sequence, m, min(k, self.rows), min(n, self.cols) * sequence
        split = self.arrays // folds
        return 1, math.ceil(m / split), min(k, self.rows), min(n, self.cols)

    def gemm_cycles(self, m: int, k: int, n: int) -> int:
        """Cycles of ``[m x k] @ [k x n]`` on all the arrays (the busiest array's folds, one after another)."""
        sequence, rows_m, _, _ = self.array_share(m, k, n)
        return sequence * self.fold_cycles(rows_m) if sequence else 0

    def cycles(self, gemms) -> int:
        """``(m, k, n, count)`` GEMMs run one after another (each uses every array)."""
        return sum(count * self.gemm_cycles(m, k, n) for m, k, n, count in gemms)

    @property
    def macs_per_cycle(self) -> int:
        return self.rows * self.cols * self.arrays


Gemm = tuple[int, int, int, int]


def _backward(forward: list[Gemm]) -> list[Gemm]:
    """Input gradients (``dy @ w^T``: the transposed weight stationary) and weight gradients (``x^T @ dy``:
    ``dy`` stationary, the input features streamed)."""
    return [(m, n, k, c) for m, k, n, c in forward] + [(k, m, n, c) for m, k, n, c in forward]


def expert_gemms(tokens: int, d_model: int, d_ff: int, matrices: int, backward: bool) -> list[Gemm]:
    """The GEMMs of one expert on ``tokens`` tokens: ``matrices - 1`` up-projections ``d_model -> d_ff``
    (gate and up of SwiGLU) and one down-projection ``d_ff -> d_model``. Backward: each one's input and weight
    gradient (:func:`_backward`)."""
    if tokens == 0:
        return []
    forward = [(tokens, d_model, d_ff, matrices - 1), (tokens, d_ff, d_model, 1)]
    return _backward(forward) if backward else forward


def attention_gemms(tokens: int, seq_len: int, d_model: int, q_dim: int, kv_dim: int, head_dim: int,
                    other_params: int, backward: bool) -> list[Gemm]:
    """The attention block's GEMMs on one micro-batch of ``tokens`` tokens (``tokens / seq_len`` sequences):
    the Q, K, V and output projections, ``scores = q k^T`` and ``v``-weighting per sequence and query head
    (full ``seq_len x seq_len`` blocks: the causal mask's upper half is computed and discarded), and
    ``other_params`` more weights applied per token (router, shared experts) as one ``d_model``-input GEMM.
    Backward: each GEMM's input and weight gradient."""
    sequences = max(1, tokens // seq_len)
    heads = q_dim // head_dim
    forward = [(tokens, d_model, q_dim, 1), (tokens, d_model, kv_dim, 2), (tokens, q_dim, d_model, 1),
               (seq_len, head_dim, seq_len, sequences * heads), (seq_len, seq_len, head_dim, sequences * heads)]
    if other_params:
        forward.append((tokens, d_model, other_params // d_model, 1))
    return _backward(forward) if backward else forward
