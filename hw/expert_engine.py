"""The expert chiplet's compute engine: ``mac_lanes`` parallel MAC lanes running one expert job at a time."""

from __future__ import annotations

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out, flipped

from mozart.model.blocks.chiplet import EngineGeometry
from mozart.model.protocol import Protocol

from .activation import activate
from .expressions import clamp, named, rshift_round, tree_sum
from .chiplet_layouts import hidden_layout, job_layout, partial_layout
from .expert_engine_sequencer import EngineSequencer

__all__ = ["ExpertEngine"]


class ExpertEngine(wiring.Component):
    """Computes ``y = W2 act(W1 x)`` for one (token, expert) job at a time and sums the gated outputs of a
    token's experts into its partial, exactly as :func:`mozart.model.golden.chiplet_partial`.

    Structure: its :class:`~mozart.hw.expert_engine_sequencer.EngineSequencer` (S0: job registers, SRAM
    addresses, stalls) issues one chunk of ``L = hardware.mac_lanes`` weights per cycle (one SRAM flit read;
    the image is row-major) into the engine's datapath: S1 operands (token chunk from the activation buffer
    for W1; for W2 the activation, ReLU or one ROM per lane, of a chunk of the hidden registers, which hold the
    pre-activation ``z``) and ``L`` products, S2 adder tree and the row accumulator (exact width,
    :attr:`mozart.model.blocks.EngineGeometry.acc_width`), S3 requantise and write: a ``z`` value (W1) or an
    output element, gated and added into the token's partial with saturation (W2). A job issues W1 rows
    ``0..d_ff-1`` then W2 rows ``0..d_model-1``; W2 chunks wait only for the hidden values they read. The next
    job is accepted in the cycle the last W2 chunk issues, so jobs run back to back. The datapath never stalls:
    a row's result is written 3 cycles after its last chunk issues, and a complete partial or hidden vector is
    copied into its output stream's registers as soon as they are free.

    Latency and throughput (``L`` lanes, ``n`` selected experts of a token)
    --------------------------------------------------------------------
    - busy cycles per job: ``2 d_model d_ff / L``; stall per job: ``max(0, 4 - d_ff / L)``
      (:attr:`mozart.model.blocks.EngineGeometry.cycles_per_expert`); MAC utilisation ``issue / (issue + stall)``.
    - steady-state cycles per token: ``n * cycles_per_expert`` (one zero partial per token if ``n == 0``:
      one cycle).
    - latency: the partial is ``valid`` ``n * cycles_per_expert + 5`` cycles after the cycle in which the token's
      first job is accepted (pipeline drain and hand-over), when the partial output is free.
    - stalls: W1 of a job waits while the previous saved hidden vector is not yet taken by ``hidden``; W2 of
      a token's first expert waits while the previous token's partial is not yet taken by ``partial``.

    Members
    -------
    job : In(stream.Signature(job layout))
        The next job: token entry, resident weight slot, local expert, gate and the first/last/none/save flags,
        tag and reduce of the token. Accepted when idle or in the last issue cycle of the current job.
    w_addr : Out(unsigned), w_data : In(flit_bits)
        Weight SRAM read port (synchronous, always enabled: ``w_data`` is the flit at the previous ``w_addr``).
    x_addr : Out(unsigned), x_data : In(flit_bits)
        Activation buffer read port (synchronous, always enabled).
    partial : Out(stream.Signature(partial layout))
        One token's complete partial (tag, reduce, d_model signed partial_bits); held until taken.
    hidden : Out(stream.Signature(hidden layout))
        The pre-activation vector ``z`` (the requantised ``W1 x``) of a ``save`` job (tag, save_index, expert, d_ff
        signed act_bits): what the backward pass restores.
    done_expert : Out(1), done_token : Out(1), done_local : Out(expert bits)
        One-cycle pulse when a job no longer reads the weight SRAM (``done_expert``: it used expert
        ``done_local``) and, with ``done_token``, when the token no longer reads the activation buffer.
    mac_active : Out(1)
        High in each cycle a chunk issues (``L`` MACs); for utilisation measurements.
    save_pending : Out(1)
        A complete saved vector is not yet handed to (or is still held by) ``hidden``.
    """

    def __init__(self, cfg, *, token_slots: int, weight_depth: int, act_depth: int):
        self.geo = EngineGeometry(cfg)
        self._cfg = cfg
        self._depths = dict(token_slots=token_slots, weight_depth=weight_depth, act_depth=act_depth)
        super().__init__({
            "job": In(stream.Signature(job_layout(cfg, token_slots))),
            "w_addr": Out(range(weight_depth)),
            "w_data": In(cfg.hardware.flit_bits),
            "x_addr": Out(range(act_depth)),
            "x_data": In(cfg.hardware.flit_bits),
            "partial": Out(stream.Signature(partial_layout(cfg))),
            "hidden": Out(stream.Signature(hidden_layout(cfg))),
            "done_expert": Out(1),
            "done_token": Out(1),
            "done_local": Out(Protocol(cfg).expert_bits),
            "mac_active": Out(1),
            "save_pending": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        geo, num = self.geo, self._cfg.numerics
        m.submodules.sequencer = sequencer = EngineSequencer(self._cfg, **self._depths)
        wiring.connect(m, flipped(self.job), sequencer.job)
        m.d.comb += [self.w_addr.eq(sequencer.w_addr), self.x_addr.eq(sequencer.x_addr),
                     self.mac_active.eq(sequencer.issue.valid), self.done_expert.eq(sequencer.done_expert),
                     self.done_token.eq(sequencer.done_token), self.done_local.eq(sequencer.done_local)]
        hidden = Array(Signal(signed(num.act_bits), name=f"hidden{i}") for i in range(geo.d_ff))
        partial = Array(Signal(signed(num.partial_bits), name=f"partial{i}") for i in range(geo.d_model))
        row_info, row_sum = self._products_and_sums(m, sequencer.issue, hidden)
        self._requantise(m, sequencer, row_info, row_sum, hidden, partial)
        return m

    def _products_and_sums(self, m, issue, hidden):
        """S1 and S2; returns ``(valid, info), sum``: the exact sum of the row whose last chunk left S2."""
        geo, num = self.geo, self._cfg.numerics
        lanes, ab, wb = geo.lanes, num.act_bits, num.weight_bits
        info_shape = issue.payload.info.shape()
        v1, i1 = Signal(), Signal(info_shape)
        w_sub1, x_sub1 = Signal.like(issue.payload.w_sub), Signal.like(issue.payload.x_sub)
        chunk1 = Signal.like(issue.payload.chunk)
        m.d.sync += [v1.eq(issue.valid), i1.eq(issue.payload.info), w_sub1.eq(issue.payload.w_sub),
                     x_sub1.eq(issue.payload.x_sub), chunk1.eq(issue.payload.chunk)]
        w_chunk = Array(self.w_data[k * lanes * wb:(k + 1) * lanes * wb]
                        for k in range(geo.w_per_flit // lanes))[w_sub1]
        x_chunk = Array(self.x_data[k * lanes * ab:(k + 1) * lanes * ab]
                        for k in range(geo.a_per_flit // lanes))[x_sub1]
        z_chunk = Array(Cat(*(hidden[c * lanes + i] for i in range(lanes))) for c in range(geo.d_ff // lanes))[chunk1]
        z_chunk = named(m, z_chunk, "z_chunk")
        # the registers hold z (what a save writes, what the backward restores); W2 reads act(z), one per lane
        h_chunk = Cat(*(activate(m, z_chunk.word_select(i, ab).as_signed(), self._cfg, f"act_rom{i}")
                        for i in range(lanes)))
        operands = Mux(i1.p2, h_chunk, x_chunk)
        v2, i2 = Signal(), Signal(info_shape)
        products = [Signal(signed(ab + wb), name=f"prod{i}") for i in range(lanes)]
        m.d.sync += [v2.eq(v1), i2.eq(i1)]
        m.d.sync += [products[i].eq(w_chunk.word_select(i, wb).as_signed() * operands.word_select(i, ab).as_signed())
                     for i in range(lanes)]

        # S2: adder tree and row accumulator (exact: never wraps)
        acc = Signal(signed(geo.acc_width))
        acc_next = Mux(i2.first_chunk, 0, acc) + tree_sum(products)
        v3, i3, sum3 = Signal(), Signal(info_shape), Signal(signed(geo.acc_width))
        m.d.sync += [v3.eq(v2 & i2.last_chunk), i3.eq(i2), sum3.eq(acc_next)]
        with m.If(v2):
            m.d.sync += acc.eq(acc_next)
        return (v3, i3), sum3

    @staticmethod
    def _write_row(m, registers, row, value):
        """``registers[row] <= value``, one comparison per register (an indexed Array as the target of an
        assignment is written out as one case statement per register in the Verilog)."""
        for index, register in enumerate(registers):
            with m.If(row == index):
                m.d.sync += register.eq(value)

    def _requantise(self, m, sequencer, row_info, row_sum, hidden, partial):
        """S3 and the hand-over of complete vectors to the output streams."""
        geo, num = self.geo, self._cfg.numerics
        ab, pb = num.act_bits, num.partial_bits
        valid, info = row_info
        acc_sat = clamp(m, row_sum, num.acc_bits, "row_sum") if geo.acc_width > num.acc_bits else row_sum
        acc_sat = named(m, acc_sat, "row_sum_saturated")
        hid = Signal(signed(ab))
        m.d.comb += hid.eq(clamp(m, rshift_round(m, acc_sat, num.hidden_shift, "hidden"), ab, "hidden"))
        y = Signal(signed(ab))
        gy = Signal(signed(pb))
        m.d.comb += [y.eq(clamp(m, rshift_round(m, acc_sat, num.output_shift, "output"), ab, "output")),
                     gy.eq(clamp(m, info.gate * y, pb, "gated"))]

        partial_ready, hidden_ready = Signal(), Signal()   # all rows of the vector are written
        partial_meta = Signal(data.StructLayout({"tag": info.tag.shape(), "reduce": 1}))
        hidden_meta = Signal(data.StructLayout({"tag": info.tag.shape(), "save_index": info.save_index.shape(),
                                                "expert": info.expert.shape()}))
        with m.If(sequencer.zero.valid):
            m.d.sync += [partial_ready.eq(1), partial_meta.eq(sequencer.zero.payload)]
            m.d.sync += [partial[i].eq(0) for i in range(geo.d_model)]
        with m.If(valid & ~info.p2):
            self._write_row(m, hidden, info.row, hid)
            m.d.comb += sequencer.hidden_written.eq(1)
            with m.If(info.save & (info.row == geo.d_ff - 1)):
                m.d.sync += [hidden_ready.eq(1), hidden_meta.tag.eq(info.tag),
                             hidden_meta.save_index.eq(info.save_index), hidden_meta.expert.eq(info.expert)]
        with m.If(valid & info.p2):
            summed = clamp(m, partial[info.row] + gy, pb, "partial_sum")
            self._write_row(m, partial, info.row, named(m, Mux(info.first, gy, summed), "partial_next"))
            with m.If(info.last & (info.row == geo.d_model - 1)):
                m.d.sync += [partial_ready.eq(1), partial_meta.tag.eq(info.tag), partial_meta.reduce.eq(info.reduce)]

        with m.If(self.partial.valid & self.partial.ready):
            m.d.sync += self.partial.valid.eq(0)
        with m.If(partial_ready & ~self.partial.valid):
            m.d.comb += sequencer.partial_freed.eq(1)
            m.d.sync += [self.partial.valid.eq(1), self.partial.payload.tag.eq(partial_meta.tag),
                         self.partial.payload.reduce.eq(partial_meta.reduce), partial_ready.eq(0)]
            m.d.sync += [self.partial.payload.data[i].eq(partial[i]) for i in range(geo.d_model)]
        m.d.comb += self.save_pending.eq(hidden_ready | self.hidden.valid)
        with m.If(self.hidden.valid & self.hidden.ready):
            m.d.sync += self.hidden.valid.eq(0)
        with m.If(hidden_ready & ~self.hidden.valid):
            m.d.comb += sequencer.hidden_freed.eq(1)
            m.d.sync += [self.hidden.valid.eq(1), self.hidden.payload.tag.eq(hidden_meta.tag),
                         self.hidden.payload.save_index.eq(hidden_meta.save_index),
                         self.hidden.payload.expert.eq(hidden_meta.expert), hidden_ready.eq(0)]
            m.d.sync += [self.hidden.payload.data[i].eq(hidden[i]) for i in range(geo.d_ff)]
