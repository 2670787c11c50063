"""The expert chiplet's backward engine: the forward's ``mac_lanes`` MAC lanes running one backward job at a time."""

from __future__ import annotations

from amaranth import Array, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out, flipped

from mozart.model.blocks.chiplet import BackwardGeometry
from mozart.model.golden_backward import deriv_frac
from mozart.model.protocol import Protocol

from .activation import activate, derivative
from .chiplet_layouts import backward_job_layout, gate_grads_layout, gradient_word_layout, partial_layout
from .expert_backward_sequencer import BackwardSequencer
from .expressions import clamp, named, rshift_round

__all__ = ["ExpertBackwardEngine"]


class ExpertBackwardEngine(wiring.Component):
    """Computes the backward of one (token, expert) job at a time, exactly as
    :func:`mozart.model.golden_backward.expert_backward`, adds the job's weight gradients into the gradient SRAM
    (:func:`~mozart.model.golden_backward.weight_gradients`, summed over jobs) and sums a token's experts' input
    gradients into its partial (:func:`mozart.model.golden.local_sum`).

    Structure: its :class:`~mozart.hw.expert_backward_sequencer.BackwardSequencer` (S0: job registers, read
    addresses, stalls) issues one op of ``L = hardware.mac_lanes`` MACs per cycle, two ops per chunk of ``L``
    weights. W2 pass, rows ``i``: ``u[j] += W2[i, j] dY[i]`` then ``dW2[i, j] += dy[i] h[j]`` with
    ``dy[i] = sat_a(rshift_round(g dY[i], G))`` and ``h = act(z)`` (``L`` activation units on the z chunk). W1
    pass, rows ``j``: the row's scalars ``dh[j] = sat_a(rshift_round(g sat_acc(u[j]), G + output_shift))``,
    ``dz[j]`` (ReLU mask or derivative ROM) and ``dg += sat_acc(u[j]) h[j]``, then ``dx[k] += W1[j, k] dz[j]``
    and ``dW1[j, k] += dz[j] x[k]``. S1: operands (the read ports' data) and the ``L`` products (one multiplier
    per lane, shared by both ops of a chunk), plus the row scalars' own multipliers; S2: the exact
    accumulators ``u``/``dx``/``dg``, the gradient word's read-modify-write (read at S0, written at S2: a word
    is touched once per job, so no two writes of it are closer than a job), and in the last W1 row
    ``dx_e = sat_a(rshift_round(sat_acc(dx), hidden_shift))`` added into the partial with saturation
    (``partial_bits``) and ``dg_e = sat_acc(rshift_round(dg, output_shift))`` into the gate gradients. The
    partial and gate-gradient registers are the output streams' payloads: the token's last op raises ``valid``.

    Latency and throughput (``L`` lanes, ``n`` selected local experts of a token;
    :class:`mozart.model.blocks.chiplet.BackwardGeometry`)
    ----------------------------------------------------------------------------------------------------
    - cycles per job: ``4 d_model d_ff / L``, every one with ``L`` MACs: no bubble (z and x are read chunk by
      chunk, the W1 pass never waits for ``u``, the next job is accepted as the last op issues); MAC
      utilisation 1 in steady state.
    - steady-state cycles per token: ``n * 4 d_model d_ff / L`` (one cycle if ``n == 0``).
    - latency: partial and gate gradients are ``valid`` ``n * 4 d_model d_ff / L + 3`` cycles after the cycle in
      which the token's first job is accepted (2 for a token without local experts), outputs free.
    - stalls: a token's first job holds its last W1 row while the previous token's partial or gate gradients
      have not been taken; a backed-up output only stalls, it never loses or changes data.

    Members
    -------
    job : In(stream.Signature(backward job layout))
        Activation-buffer entry ``tok``, restore entry ``restore``, weight (= gradient) slot ``wslot``, local
        ``expert``, raw ``gate``, the token's ``first``/``last``/``none`` flags, ``tag`` and ``reduce``.
    w_addr : Out(unsigned), w_data : In(flit_bits)
        Weight SRAM read port (synchronous, always enabled), the forward's image layout.
    x_addr : Out(unsigned), x_data : In(flit_bits)
        Activation buffer read port: entry ``e`` holds dY at flits ``e * entry_flits + (0..token_flits-1)`` and
        x at the ``token_flits`` flits after them (packed as ``Protocol.pack_token``).
    z_addr : Out(unsigned), z_data : In(flit_bits)
        Restore buffer read port: entry ``r`` holds z at flits ``r * hidden_flits + (0..hidden_flits-1)``.
    g_addr : Out(unsigned), g_data : In(gradient word)
        Gradient SRAM read port: slot ``s``'s gradient of image element ``n`` (W1 then W2 row-major, no padding)
        is element ``n % L`` of word ``s * 2 d_model d_ff / L + n // L``.
    g_wr_addr : Out(unsigned), g_wr_data : Out(gradient word), g_wr_en : Out(1)
        Its write port: the read word plus the job's exact products (no saturation).
    partial : Out(stream.Signature(partial layout))
        A token's input-gradient partial (tag, reduce, d_model signed partial_bits); held until taken.
    gate_grads : Out(stream.Signature(gate-gradient layout))
        A token's gate gradients (tag, local expert mask, ``dg`` per local expert); not for ``none`` tokens.
    done_expert : Out(1), done_token : Out(1), done_local : Out(expert bits)
        One-cycle pulse in the cycle of a job's last gradient write (from the next cycle the job touches no
        weight, gradient or restore word of expert ``done_local``) and, with ``done_token``, of its token's
        (the token no longer reads the activation buffer; a ``none`` token pulses ``done_token`` alone).
    mac_active : Out(1)
        High in each cycle an op issues (``L`` MACs); for utilisation measurements.
    """

    def __new__(cls, cfg, *, entry_flits: int, **sizes):
        BackwardGeometry(cfg).check_entry_flits(entry_flits)   # rejects before a component exists
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, cfg, *, token_slots: int, restore_slots: int, entry_flits: int, weight_depth: int,
                 act_depth: int, restore_depth: int):
        self.geo = geo = BackwardGeometry(cfg)
        self._cfg = cfg
        self._sizes = dict(token_slots=token_slots, restore_slots=restore_slots, entry_flits=entry_flits,
                           weight_depth=weight_depth, act_depth=act_depth, restore_depth=restore_depth)
        flit_bits = cfg.hardware.flit_bits
        super().__init__({
            "job": In(stream.Signature(backward_job_layout(cfg, token_slots, restore_slots))),
            "w_addr": Out(range(weight_depth)), "w_data": In(flit_bits),
            "x_addr": Out(range(act_depth)), "x_data": In(flit_bits),
            "z_addr": Out(range(restore_depth)), "z_data": In(flit_bits),
            "g_addr": Out(range(geo.grad_depth)), "g_data": In(gradient_word_layout(cfg)),
            "g_wr_addr": Out(range(geo.grad_depth)), "g_wr_data": Out(gradient_word_layout(cfg)), "g_wr_en": Out(1),
            "partial": Out(stream.Signature(partial_layout(cfg))),
            "gate_grads": Out(stream.Signature(gate_grads_layout(cfg))),
            "done_expert": Out(1), "done_token": Out(1), "done_local": Out(Protocol(cfg).expert_bits),
            "mac_active": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.sequencer = sequencer = BackwardSequencer(self._cfg, **self._sizes)
        wiring.connect(m, flipped(self.job), sequencer.job)
        m.d.comb += [self.w_addr.eq(sequencer.w_addr), self.x_addr.eq(sequencer.x_addr),
                     self.z_addr.eq(sequencer.z_addr), self.g_addr.eq(sequencer.g_addr),
                     self.mac_active.eq(sequencer.issue.valid)]
        s1_valid, s1 = Signal(), Signal(sequencer.issue.payload.shape())
        m.d.sync += [s1_valid.eq(sequencer.issue.valid), s1.eq(sequencer.issue.payload)]
        u = [Signal(signed(self.geo.u_width), name=f"u{j}") for j in range(self.geo.d_ff)]
        products, dg_product = self._products(m, s1, u)
        s2_valid, s2 = Signal(), Signal(s1.shape())
        s2_products = [Signal.like(p, name=f"s2_{p.name}") for p in products]
        s2_dg_product, s2_old = Signal.like(dg_product), Signal.like(self.g_data)
        m.d.sync += [s2_valid.eq(s1_valid), s2.eq(s1), s2_dg_product.eq(dg_product), s2_old.eq(self.g_data)]
        m.d.sync += [r.eq(p) for r, p in zip(s2_products, products)]
        self._accumulate(m, s2_valid, s2, s2_products, u)
        self._gradient_write(m, s2_valid & ~s2.through, s2, s2_products, s2_old)
        self._gate_gradient(m, s2_valid & s2.through & ~s2.w2_pass & (s2.chunk == 0), s2, s2_dg_product)
        self._outputs(m, sequencer, s2_valid & s2.last_op, s2)
        return m

    # -- S1: operands and products ------------------------------------------------------------------------
    def _products(self, m, s1, u):
        """The ``L`` lane products of the op in S1 and the row's ``sat_acc(u[j]) h[j]`` (used once per W1 row)."""
        cfg, geo, num = self._cfg, self.geo, self._cfg.numerics
        lanes, ab, wb = geo.lanes, num.act_bits, num.weight_bits
        weights = _lane_chunk(m, self.w_data, s1.w_sub, lanes, wb, "weight_chunk")
        vector = _lane_chunk(m, Mux(s1.w2_pass, self.z_data, self.x_data), s1.vector_sub, lanes, ab, "vector_chunk")
        row_data = Mux(s1.w2_pass, self.x_data, self.z_data)
        row_value = named(m, Array(row_data.word_select(e, ab) for e in range(geo.a_per_flit))[s1.row_element],
                          "row_value", signed(ab))
        # h of the z chunk (W2 pass) on one activation unit per lane; lane 0's also gives h[j] in the W1 pass
        act_in = [named(m, Mux(s1.w2_pass, vector[0], row_value), "act_in0")] + vector[1:]
        h = [named(m, activate(m, value, cfg, f"act{lane}"), f"h{lane}", signed(ab))
             for lane, value in enumerate(act_in)]
        through_dY, gradient_dy = self._w2_scalars(m, s1.gate, row_value)
        u_row = Array(u)[s1.row]
        u_saturated = clamp(m, u_row, num.acc_bits, "u_row") if geo.u_width > num.acc_bits else u_row
        u_saturated = named(m, u_saturated, "u_saturated", signed(num.acc_bits))
        dz = self._pre_activation_gradient(m, row_value, self._hidden_gradient(m, s1.gate, u_saturated))
        scalar = named(m, Mux(s1.w2_pass, Mux(s1.through, through_dY, gradient_dy), dz), "lane_scalar", signed(ab))
        products = []
        for lane in range(lanes):
            operand = Mux(s1.through, weights[lane], Mux(s1.w2_pass, h[lane], vector[lane]))
            products.append(named(m, operand * scalar, f"product{lane}", signed(ab + max(ab, wb))))
        return products, named(m, u_saturated * h[0], "dg_product")

    def _w2_scalars(self, m, gate, dY):
        """The W2 row's scalars: ``dY[i]`` (through ``W2``) and ``dy[i] = sat_a(rshift_round(g dY[i], G))``."""
        num = self._cfg.numerics
        return dY, named(m, clamp(m, rshift_round(m, gate * dY, num.gate_bits, "dy"), num.act_bits, "dy"), "dy")

    def _hidden_gradient(self, m, gate, u_saturated):
        """``dh[j] = sat_a(rshift_round(g sat_acc(u[j]), G + output_shift))``: the gate applied after ``W2``."""
        num = self._cfg.numerics
        rounded = rshift_round(m, gate * u_saturated, num.gate_bits + num.output_shift, "dh")
        return named(m, clamp(m, rounded, num.act_bits, "dh"), "dh")

    def _pre_activation_gradient(self, m, z, dh):
        """``dz[j]``: ``dh`` where ``z > 0`` (ReLU), else ``sat_a(rshift_round(dh D[z], deriv_frac))``."""
        num = self._cfg.numerics
        slope = derivative(m, z, self._cfg, "deriv_rom")
        if slope is None:
            return named(m, Mux(z > 0, dh, 0), "dz", signed(num.act_bits))
        scaled = rshift_round(m, dh * slope, deriv_frac(num.act_bits), "dz")
        return named(m, clamp(m, scaled, num.act_bits, "dz"), "dz")

    # -- S2: accumulators, gradient SRAM, outputs ---------------------------------------------------------
    def _accumulate(self, m, s2_valid, s2, products, u):
        """``u`` (W2 pass) and ``dx`` (W1 pass) chunks += the through products (reset by a pass's first row);
        in the last W1 row, ``dx_e`` into the partial."""
        geo = self.geo
        lanes, chunks_u, chunks_dx = geo.lanes, geo.d_ff // geo.lanes, geo.d_model // geo.lanes
        dx = [Signal(signed(geo.dx_width), name=f"dx{k}") for k in range(geo.d_model)]
        partial = self.partial.payload.data
        through = s2_valid & s2.through
        for chunk in range(max(chunks_u, chunks_dx)):
            here = s2.chunk == chunk
            if chunk < chunks_u:
                with m.If(through & s2.w2_pass & here):
                    m.d.sync += [u[chunk * lanes + lane].eq(Mux(s2.first_row, 0, u[chunk * lanes + lane]) + p)
                                 for lane, p in enumerate(products)]
            if chunk < chunks_dx:
                with m.If(through & ~s2.w2_pass & here):
                    for lane, p in enumerate(products):
                        k = chunk * lanes + lane
                        total = named(m, Mux(s2.first_row, 0, dx[k]) + p, f"dx{k}_next", signed(geo.dx_width))
                        m.d.sync += dx[k].eq(total)
                        with m.If(s2.last_row):
                            m.d.sync += partial[k].eq(self._partial_sum(m, total, partial[k], s2.first, k))

    def _partial_sum(self, m, dx_total, partial, first, k):
        """``local_sum``'s step: ``sat_p((first ? 0 : partial) + sat_a(rshift_round(sat_acc(dx), hidden_shift)))``."""
        geo, num = self.geo, self._cfg.numerics
        saturated = clamp(m, dx_total, num.acc_bits, f"dx{k}") if geo.dx_width > num.acc_bits else dx_total
        dx_e = clamp(m, rshift_round(m, saturated, num.hidden_shift, f"dx{k}"), num.act_bits, f"dx{k}_expert")
        return clamp(m, Mux(first, 0, partial) + dx_e, num.partial_bits, f"partial{k}")

    def _gradient_write(self, m, write, s2, products, old):
        """The gradient word's read-modify-write: the word read at S0 plus the lanes' products, exact."""
        m.d.comb += [self.g_wr_en.eq(write), self.g_wr_addr.eq(s2.grad_word)]
        m.d.comb += [self.g_wr_data[lane].eq(old[lane] + p) for lane, p in enumerate(products)]

    def _gate_gradient(self, m, add, s2, dg_product):
        """``dg += sat_acc(u[j]) h[j]`` once per W1 row; the last row writes ``dg_e`` and the mask bit."""
        num, gates = self._cfg.numerics, self.gate_grads.payload
        dg = Signal(signed(self.geo.dg_width))
        total = named(m, Mux(s2.first_row, 0, dg) + dg_product, "dg_next", signed(self.geo.dg_width))
        dg_expert = named(m, clamp(m, rshift_round(m, total, num.output_shift, "dg"), num.acc_bits, "dg"),
                          "dg_expert")
        with m.If(add):
            m.d.sync += dg.eq(total)
            with m.If(s2.last_row):
                for expert in range(self._cfg.experts_per_chiplet):
                    with m.If(s2.expert == expert):
                        m.d.sync += [gates.dg[expert].eq(dg_expert),
                                     gates.experts.eq(Mux(s2.first, 0, gates.experts) | (1 << expert))]
                    with m.Elif(s2.first):
                        m.d.sync += gates.dg[expert].eq(0)

    def _outputs(self, m, sequencer, job_done, s2):
        """A token's last op raises both streams' ``valid``; a ``none`` token's zero partial; the done pulses."""
        partial, gates = self.partial, self.gate_grads
        self._release(m, partial, sequencer.partial_taken)
        self._release(m, gates, sequencer.gates_taken)
        with m.If(job_done & s2.last):
            m.d.sync += [partial.valid.eq(1), partial.payload.tag.eq(s2.tag), partial.payload.reduce.eq(s2.reduce),
                         gates.valid.eq(1), gates.payload.tag.eq(s2.tag)]
        with m.If(sequencer.zero.valid):
            m.d.sync += [partial.valid.eq(1), partial.payload.tag.eq(sequencer.zero.payload.tag),
                         partial.payload.reduce.eq(sequencer.zero.payload.reduce)]
            m.d.sync += [element.eq(0) for element in partial.payload.data]
        m.d.comb += [self.done_expert.eq(job_done), self.done_local.eq(s2.expert),
                     self.done_token.eq((job_done & s2.last) | sequencer.zero.valid)]

    @staticmethod
    def _release(m, output, taken):
        """An output stream's handshake: ``valid`` drops only in the cycle the payload is taken."""
        with m.If(output.valid & output.ready):
            m.d.sync += output.valid.eq(0)
            m.d.comb += taken.eq(1)


def _lane_chunk(m, flit, sub, lanes: int, bits: int, name: str) -> list:
    """The ``lanes`` signed ``bits``-bit elements of lane chunk ``sub`` of ``flit``."""
    chunks = Array(flit[k * lanes * bits:(k + 1) * lanes * bits] for k in range(len(flit) // (lanes * bits)))
    chunk = named(m, chunks[sub], name, lanes * bits)
    return [chunk.word_select(lane, bits).as_signed() for lane in range(lanes)]
