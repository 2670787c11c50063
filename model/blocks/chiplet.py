"""The contract of the expert chiplet (:class:`mozart.hw.chiplet.ExpertChiplet`) and its engine's geometry."""

from __future__ import annotations

import math

from .. import golden, golden_backward
from ..errors import ConfigError
from ..hardware_rules import lane_problems, raise_first
from ..protocol import Protocol
from ..topology import Topology

__all__ = ["EngineGeometry", "BackwardGeometry", "ChipletContract"]



class EngineGeometry:
    """Sizes and timing of the engine (:class:`mozart.hw.expert_engine.ExpertEngine`) for one config.

    Raises :class:`ConfigError` if ``hardware.mac_lanes`` does not divide d_model, d_ff and the elements of a
    flit: a lane chunk then never straddles a matrix row or a flit, so one SRAM flit read feeds every lane.
    """

    #: Cycles from issuing a row's last chunk until that row's hidden value can be read by a W2 chunk
    #: (SRAM read, multiply, add tree + accumulate, requantise + write): see :meth:`stall_cycles`.
    PIPELINE = 4

    def __init__(self, cfg):
        moe, num, hw = cfg.moe, cfg.numerics, cfg.hardware
        self.cfg = cfg
        self.lanes = hw.mac_lanes
        self.d_model, self.d_ff = moe.d_model, moe.d_ff
        self.w_per_flit = hw.flit_bits // num.weight_bits
        self.a_per_flit = hw.flit_bits // num.act_bits
        raise_first(lane_problems(cfg))
        proto = Protocol(cfg)
        self.image_flits = proto.image_flits
        self.w2_flit = math.ceil(moe.d_model * moe.d_ff / self.w_per_flit)   # W2 starts on a fresh flit
        self.token_flits = proto.token_flits
        #: Flits of one activation-buffer entry: a backward token's output gradient, then the token (a forward
        #: token uses the first ``token_flits``).
        self.entry_flits = 2 * proto.token_flits
        self.acc_width = max(num.acc_bits, golden.exact_acc_bits(cfg, max(moe.d_model, moe.d_ff)))

    @property
    def macs_per_expert(self) -> int:
        return 2 * self.d_model * self.d_ff

    @property
    def issue_cycles(self) -> int:
        """Cycles in which the lanes are busy for one (token, expert) job: ``2 d_model d_ff / lanes``."""
        return self.macs_per_expert // self.lanes

    @property
    def stall_cycles(self) -> int:
        """Issue stall per job between W1 and W2: ``max(0, PIPELINE - d_ff / lanes)``.

        W2's first row needs every hidden value; its last chunk may issue only ``PIPELINE`` cycles after W1's
        last chunk, and it comes ``d_ff / lanes`` cycles after it when nothing stalls.
        """
        return max(0, self.PIPELINE - self.d_ff // self.lanes)

    @property
    def cycles_per_expert(self) -> int:
        """Steady-state engine cycles per (token, expert) job: ``2 d_model d_ff / L + max(0, 4 - d_ff / L)``."""
        return self.issue_cycles + self.stall_cycles

    @property
    def utilisation(self) -> float:
        """Steady-state MAC utilisation on a resident expert (jobs back to back, no save/output stalls)."""
        return self.issue_cycles / self.cycles_per_expert


class BackwardGeometry:
    """Sizes and timing of the backward engine (:class:`mozart.hw.expert_backward_engine.ExpertBackwardEngine`).

    The same ``L = hardware.mac_lanes`` multipliers as the forward engine (:class:`EngineGeometry`, whose lane
    rule it shares); each chunk of ``L`` weights takes two cycles (the product through the weights, then the
    weight-gradient product), so a job does ``4 d_model d_ff`` MACs in ``4 d_model d_ff / L`` cycles.
    """

    #: Pipeline stages after an op issues (S1: operands and products; S2: accumulate, gradient write, outputs).
    #: The W1 pass reads ``u[j]`` in S1 of its row ``j``; the last W2 row wrote it in S2 at least
    #: ``2 d_ff / L`` cycles earlier, which is enough for every ``d_ff >= L``: no hand-over bubble.
    PIPELINE = 2

    def __init__(self, cfg):
        forward = EngineGeometry(cfg)   # checks the lane rule
        moe, num = cfg.moe, cfg.numerics
        self.cfg = cfg
        self.lanes, self.d_model, self.d_ff = forward.lanes, moe.d_model, moe.d_ff
        self.w_per_flit, self.a_per_flit = forward.w_per_flit, forward.a_per_flit
        self.image_flits, self.w2_flit, self.token_flits = forward.image_flits, forward.w2_flit, forward.token_flits
        self.hidden_flits = golden.hidden_flits(cfg)
        self.grad_bits = golden_backward.step_grad_bits(cfg)
        self.grad_words_per_slot = 2 * moe.d_model * moe.d_ff // self.lanes
        self.w2_grad_word = moe.d_model * moe.d_ff // self.lanes   # dW2 follows dW1 in a slot's words
        self.grad_depth = cfg.hardware.sram_slots * self.grad_words_per_slot
        #: exact accumulators: u sums d_model products of W2 and dY, dx sums d_ff products of W1 and dz
        self.u_width = max(num.acc_bits, golden.exact_acc_bits(cfg, moe.d_model))
        self.dx_width = max(num.acc_bits, golden.exact_acc_bits(cfg, moe.d_ff))
        #: <sat_acc(u), h> over d_ff terms, exact
        self.dg_width = num.acc_bits + num.act_bits + max(0, math.ceil(math.log2(moe.d_ff)))

    def check_entry_flits(self, entry_flits: int) -> None:
        """Raise ``ValueError`` unless an activation-buffer entry of ``entry_flits`` flits holds dY and x."""
        need = 2 * self.token_flits
        if isinstance(entry_flits, bool) or not isinstance(entry_flits, int) or entry_flits < need:
            raise ValueError(f"entry_flits must hold dY and x (at least {need}), not {entry_flits!r}")

    @property
    def issue_cycles(self) -> int:
        """Cycles in which the lanes work for one backward job (``4 d_model d_ff`` MACs): ``4 d_model d_ff / L``."""
        return 4 * self.d_model * self.d_ff // self.lanes

    @property
    def stall_cycles(self) -> int:
        """Bubbles per job in steady state: none. z and x are read chunk by chunk from their buffers as the
        ops need them (no load phase), the W1 pass never waits for ``u`` (:attr:`PIPELINE`), and the next job
        is accepted in the cycle the last op issues."""
        return 0

    @property
    def cycles_per_job(self) -> int:
        """Steady-state engine cycles per backward (token, expert) job: ``4 d_model d_ff / L``."""
        return self.issue_cycles + self.stall_cycles

    def cycles_per_token(self, selected: int, after_none: bool = False) -> int:
        """Steady-state cycles per token selecting ``selected`` local experts, outputs taken as soon as valid.

        A token without any writes its zero partial into the partial stream's register, so it waits until the
        previous token's partial is taken: ``PIPELINE + 2`` cycles after a token with local experts (its partial
        becomes valid ``PIPELINE + 1`` cycles after its last op, is taken, and the hold drops a cycle later), 2
        after another token without (valid, taken, hold dropped); the next job is accepted with the zero."""
        if selected:
            return selected * self.cycles_per_job
        return 2 if after_none else self.PIPELINE + 2

    def latency(self, selected: int) -> int:
        """Cycles from the accept of a token's first job until its partial (and gate gradients) are ``valid``,
        idle engine, outputs free: ``selected`` jobs, the pipeline, one cycle to raise ``valid``; a token
        without local experts: 2 (its zero partial is written, then valid)."""
        return selected * self.cycles_per_job + self.PIPELINE + 1 if selected else 2

    @property
    def utilisation(self) -> float:
        """Steady-state MAC utilisation, jobs back to back and outputs taken: ``issue / (issue + stall)``."""
        return self.issue_cycles / self.cycles_per_job


class ChipletContract:
    """The chiplet at ``(group, index)``: its sizes (``token_slots`` activation-buffer entries, from
    ``hardware.token_slots``) and its latency and throughput formulas (derived in
    :class:`mozart.hw.chiplet.ExpertChiplet`'s docstring).

    Raises :class:`ConfigError` for a place outside the tree, lanes that do not divide the matrices
    (:class:`EngineGeometry`), or a DRAM too small for the activation region.
    """

    def __init__(self, cfg, group: int = 0, index: int = 0):
        if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group < cfg.groups:
            raise ConfigError(f"ExpertChiplet group must be in 0..{cfg.groups - 1}, not {group!r}")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < cfg.chiplets_per_group:
            raise ConfigError(f"ExpertChiplet index must be in 0..{cfg.chiplets_per_group - 1}, not {index!r}")
        self.geo = EngineGeometry(cfg)
        golden.check_activation_region(cfg)
        self.cfg = cfg
        self.group, self.index, self.token_slots = group, index, cfg.hardware.token_slots
        self.node = Topology.of(cfg).chiplet(group, index)
        self._proto = Protocol(cfg)

    @property
    def cycles_per_expert(self) -> int:
        return self.geo.cycles_per_expert

    def cycles_per_token(self, selected: int) -> int:
        """Steady-state engine cycles per token selecting ``selected`` local experts."""
        return selected * self.cycles_per_expert if selected else 1

    @property
    def mac_utilisation(self) -> float:
        return self.geo.utilisation

    @property
    def input_flits(self) -> int:
        """Flits of one dispatch replica on ``port_in``."""
        return self._proto.dispatch_flits(1)

    @property
    def output_flits(self) -> int:
        """Flits of one COMBINE on ``port_out``."""
        return 1 + self._proto.partial_flits

    def latency(self, selected: int) -> int:
        """Cycles from the first dispatch flit accepted to the last COMBINE flit sent, idle chiplet, no stalls."""
        # 1 job hand-off + 4 pipeline/hand-over + 1 output arbitration; an empty mask skips the pipeline
        core = selected * self.cycles_per_expert + 6 if selected else 4
        return self.input_flits + core + self.output_flits

    @property
    def quiet_cycles(self) -> int:
        """The longest a busy chiplet may send nothing: a full activation buffer of tokens using every local
        expert (testbench watchdogs derive their timeouts from it)."""
        return self.token_slots * self.cycles_per_token(self.cfg.experts_per_chiplet)

    #: Weight update: cycles from a gradient word's read to its updated flit counted in the update unit's FIFO
    #: (the SRAMs' synchronous read, then the update and the push; see :attr:`update_cycles`).
    UPDATE_PIPELINE = 2

    @property
    def update_cycles(self) -> int:
        """Cycles of one weight update (:class:`mozart.hw.chiplet_weight_update.ChipletWeightUpdate`), from the
        UPDATE command taken to the last MEM_WRITE flit sent, the link always ready.

        Gradient word ``w`` (``L = mac_lanes`` elements; ``G = 2 d_model d_ff / L`` words) is read in cycle
        ``1 + w`` (the cycle after the command) and its updated flit is ready from ``R = 1 + w + UPDATE_PIPELINE``.
        Packet ``p`` (``n_p`` flits of at most ``max_burst_flits``, ``R_p`` of its last flit) starts at
        ``S_p = max(S_{p-1} + 1 + n_{p-1}, R_p)`` (a header, then one flit a cycle) and its last flit leaves in
        ``S_p + n_p``: the last leaves in ``max_p (R_p + sum_{q >= p} (1 + n_q)) - 1``. Reading bound
        (``flit_bits // weight_bits >= 2 L``): ``G + UPDATE_PIPELINE + n_last``.
        """
        hw, moe, geo = self.cfg.hardware, self.cfg.moe, self.geo
        matrix_words = moe.d_model * moe.d_ff // geo.lanes
        words_per_flit = geo.w_per_flit // geo.lanes
        ready = [1 + matrix * matrix_words + min((f + 1) * words_per_flit, matrix_words) - 1 + self.UPDATE_PIPELINE
                 for matrix in range(2) for f in range(math.ceil(matrix_words / words_per_flit))]   # of each flit
        packets = [ready[p:p + hw.max_burst_flits] for p in range(0, len(ready), hw.max_burst_flits)]
        return max(flits[-1] + sum(1 + len(later) for later in packets[p:]) for p, flits in enumerate(packets)) - 1
