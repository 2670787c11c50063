"""The expert chiplet's compute engine: ``mac_lanes`` parallel MAC lanes running one expert job at a time."""

from __future__ import annotations


from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mozart.model import golden
from mozart.model.blocks.chiplet import EngineGeometry
from mozart.model.protocol import Protocol, index_bits

__all__ = ["ExpertEngine", "partial_layout", "hidden_layout"]


def _job_layout(cfg, token_slots: int) -> data.StructLayout:
    proto = Protocol(cfg)
    return data.StructLayout({
        "tok": unsigned(index_bits(token_slots)),   # activation-buffer entry of the token
        "wslot": unsigned(proto.slot_bits),     # resident weight slot of the expert
        "expert": unsigned(proto.expert_bits),  # local expert index (saved-activation address, release)
        "gate": unsigned(cfg.numerics.gate_bits),
        "first": 1,                             # first selected expert of the token: the partial starts at 0
        "last": 1,                              # last selected expert: the partial is complete after it
        "none": 1,                              # the token selects no expert here: its partial is all zero
        "save": 1,                              # also output the hidden vector (activation saving)
        "tag": unsigned(cfg.hardware.tag_bits),
        "reduce": 1,
    })


def partial_layout(cfg) -> data.StructLayout:
    return data.StructLayout({"tag": unsigned(cfg.hardware.tag_bits), "reduce": 1,
                              "data": data.ArrayLayout(signed(cfg.numerics.partial_bits), cfg.moe.d_model)})


def hidden_layout(cfg) -> data.StructLayout:
    proto = Protocol(cfg)
    return data.StructLayout({"tag": unsigned(cfg.hardware.tag_bits), "expert": unsigned(proto.expert_bits),
                              "data": data.ArrayLayout(signed(cfg.numerics.act_bits), cfg.moe.d_ff)})


def _clamp(v, bits: int):
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(v > hi, hi, Mux(v < lo, lo, v))


def _rshift_round(v, shift: int):
    """Round half away from zero (golden.rshift_round): ``(v + 2**(s-1) - [v < 0]) >> s``."""
    if shift == 0:
        return v
    return (v + (1 << (shift - 1)) - v[-1]) >> shift


def _tree_sum(values):
    """Balanced adder tree (widths grow by one bit per level, not per term)."""
    values = list(values)
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


class ExpertEngine(wiring.Component):
    """Computes ``y = W2 act(W1 x)`` for one (token, expert) job at a time and sums the gated outputs of a
    token's experts into its partial, exactly as :func:`mozart.model.golden.chiplet_partial`.

    Microarchitecture
    -----------------
    ``L = hardware.mac_lanes`` lanes work along the dot product: each cycle one *chunk* of ``L`` consecutive
    weights of one matrix row (one SRAM flit read; the image is row-major) meets ``L`` operands (token chunk
    from the activation buffer for W1, hidden chunk from registers for W2). Pipeline: S0 issue (SRAM
    addresses), S1 operands + ``L`` products, S2 adder tree + row accumulator (exact width, see
    :attr:`mozart.model.blocks.EngineGeometry.acc_width`), S3 requantise and write: a hidden value (W1; ReLU or the
    ROM table) or
    an output element, gated and added into the token's partial with saturation (W2). A job issues W1 rows
    ``0..d_ff-1`` then W2 rows ``0..d_model-1``; W2 chunks wait only for the hidden values they read. The next
    job is accepted in the cycle the last W2 chunk issues, so jobs run back to back.

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
        The hidden vector ``act(W1 x)`` of a ``save`` job (tag, expert, d_ff signed act_bits).
    done : Out(1), done_expert : Out(1), done_token : Out(1), done_local : Out(expert bits)
        One-cycle pulse when a job no longer reads the weight SRAM (``done_expert``: it used expert
        ``done_local``) and, with ``done_token``, when the token no longer reads the activation buffer.
    mac_active : Out(1)
        High in each cycle a chunk issues (``L`` MACs); for utilisation measurements.
    """

    def __init__(self, cfg, *, token_slots: int, weight_depth: int, act_depth: int):
        self.geo = EngineGeometry(cfg)
        self._cfg = cfg
        self._token_slots = token_slots
        self._proto = Protocol(cfg)
        super().__init__({
            "job": In(stream.Signature(_job_layout(cfg, token_slots))),
            "w_addr": Out(range(weight_depth)),
            "w_data": In(cfg.hardware.flit_bits),
            "x_addr": Out(range(act_depth)),
            "x_data": In(cfg.hardware.flit_bits),
            "partial": Out(stream.Signature(partial_layout(cfg))),
            "hidden": Out(stream.Signature(hidden_layout(cfg))),
            "done": Out(1),
            "done_expert": Out(1),
            "done_token": Out(1),
            "done_local": Out(self._proto.expert_bits),
            "mac_active": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, geo = self._cfg, self.geo
        num = cfg.numerics
        L, dm, dff = geo.lanes, geo.d_model, geo.d_ff
        ab, wb, pb = num.act_bits, num.weight_bits, num.partial_bits

        # ---- job registers and S0 issue state --------------------------------------------------------------
        job = Signal(self.job.payload.shape())
        running = Signal()          # a computing job is issuing
        null_job = Signal()         # a token without experts waits to emit its zero partial
        phase2 = Signal()           # 0: W1 rows, 1: W2 rows
        row = Signal(range(max(dm, dff)))
        chunk = Signal(range(max(dm, dff) // L))
        w_flit = Signal.like(self.w_addr)
        w_sub = Signal(range(geo.w_per_flit // L))
        x_flit = Signal.like(self.x_addr)
        x_sub = Signal(range(geo.a_per_flit // L))
        h_rows = Signal(range(dff + 1))      # hidden values of the current job already written
        h_hold = Signal()                    # a saved hidden vector still waits to be copied out
        h_ready = Signal()                   # ... and all its rows are written
        y_busy = Signal()                    # the partial registers belong to a finished token not yet handed over
        y_ready = Signal()                   # ... and all its rows are written

        h = Array(Signal(signed(ab), name=f"h{i}") for i in range(dff))
        acc_y = Array(Signal(signed(pb), name=f"part{i}") for i in range(dm))
        out_meta = Signal(data.StructLayout({"tag": unsigned(cfg.hardware.tag_bits), "reduce": 1,
                                             "expert": unsigned(self._proto.expert_bits)}))
        h_meta = Signal.like(out_meta)

        chunks = Mux(phase2, dff // L, dm // L)
        rows = Mux(phase2, dm, dff)
        last_chunk = chunk == chunks - 1
        last_row = row == rows - 1
        need = (chunk + 1) * L
        can_issue = running & Mux(phase2, (h_rows >= need) & ~(job.first & y_busy), ~h_hold)
        finishing = can_issue & phase2 & last_row & last_chunk
        m.d.comb += [
            self.w_addr.eq(w_flit), self.x_addr.eq(x_flit), self.mac_active.eq(can_issue),
            self.job.ready.eq(~null_job & (~running | finishing)),
        ]
        slot_base = self.job.payload.wslot * geo.image_flits
        tok_base = self.job.payload.tok * geo.token_flits
        job_tok_base = job.tok * geo.token_flits
        with m.If(can_issue):
            m.d.sync += chunk.eq(Mux(last_chunk, 0, chunk + 1))
            with m.If(w_sub == geo.w_per_flit // L - 1):
                m.d.sync += [w_sub.eq(0), w_flit.eq(w_flit + 1)]
            with m.Else():
                m.d.sync += w_sub.eq(w_sub + 1)
            with m.If(last_chunk):
                m.d.sync += [x_flit.eq(job_tok_base), x_sub.eq(0), row.eq(Mux(last_row, 0, row + 1))]
            with m.Elif(x_sub == geo.a_per_flit // L - 1):
                m.d.sync += [x_sub.eq(0), x_flit.eq(x_flit + 1)]
            with m.Else():
                m.d.sync += x_sub.eq(x_sub + 1)
            with m.If(~phase2 & last_row & last_chunk):
                # W2 starts on its own flit; the save hold keeps the next job's W1 off the hidden registers
                m.d.sync += [phase2.eq(1), w_flit.eq(job.wslot * geo.image_flits + geo.w2_flit), w_sub.eq(0)]
                with m.If(job.save):
                    m.d.sync += h_hold.eq(1)
            with m.If(finishing):
                m.d.sync += running.eq(0)
                m.d.comb += [self.done.eq(1), self.done_expert.eq(1), self.done_local.eq(job.expert),
                             self.done_token.eq(job.last)]
                with m.If(job.last):
                    m.d.sync += y_busy.eq(1)
        with m.If(self.job.valid & self.job.ready):
            p = self.job.payload
            m.d.sync += [job.eq(p), phase2.eq(0), row.eq(0), chunk.eq(0), w_flit.eq(slot_base), w_sub.eq(0),
                         x_flit.eq(tok_base), x_sub.eq(0), h_rows.eq(0)]
            with m.If(p.none):
                m.d.sync += [null_job.eq(1), running.eq(0)]
            with m.Else():
                m.d.sync += running.eq(1)
        # A token without experts: its partial is zero, handed over like any other.
        with m.If(null_job & ~y_busy):
            m.d.sync += [null_job.eq(0), y_busy.eq(1), y_ready.eq(1), out_meta.tag.eq(job.tag),
                         out_meta.reduce.eq(job.reduce)]
            m.d.sync += [acc_y[i].eq(0) for i in range(dm)]
            m.d.comb += [self.done.eq(1), self.done_token.eq(1)]

        # ---- S1: operands and products --------------------------------------------------------------------
        info = data.StructLayout({"p2": 1, "row": unsigned(row.shape().width), "first_chunk": 1, "last_chunk": 1,
                                  "gate": unsigned(num.gate_bits), "first": 1, "last": 1, "save": 1,
                                  "tag": unsigned(cfg.hardware.tag_bits), "reduce": 1,
                                  "expert": unsigned(self._proto.expert_bits)})
        v1, i1 = Signal(), Signal(info)
        w_sub1, x_sub1, chunk1 = Signal.like(w_sub), Signal.like(x_sub), Signal.like(chunk)
        m.d.sync += [v1.eq(can_issue), w_sub1.eq(w_sub), x_sub1.eq(x_sub), chunk1.eq(chunk),
                     i1.p2.eq(phase2), i1.row.eq(row), i1.first_chunk.eq(chunk == 0), i1.last_chunk.eq(last_chunk),
                     i1.gate.eq(job.gate), i1.first.eq(job.first), i1.last.eq(job.last), i1.save.eq(job.save),
                     i1.tag.eq(job.tag), i1.reduce.eq(job.reduce), i1.expert.eq(job.expert)]
        w_chunk = Array(self.w_data[k * L * wb:(k + 1) * L * wb] for k in range(geo.w_per_flit // L))[w_sub1]
        x_chunk = Array(self.x_data[k * L * ab:(k + 1) * L * ab] for k in range(geo.a_per_flit // L))[x_sub1]
        h_chunk = Array(Cat(*(h[c * L + i] for i in range(L))) for c in range(dff // L))[chunk1]
        operands = Mux(i1.p2, h_chunk, x_chunk)
        v2, i2 = Signal(), Signal(info)
        prods = [Signal(signed(ab + wb), name=f"prod{i}") for i in range(L)]
        m.d.sync += [v2.eq(v1), i2.eq(i1)]
        m.d.sync += [prods[i].eq(w_chunk.word_select(i, wb).as_signed() * operands.word_select(i, ab).as_signed())
                     for i in range(L)]

        # ---- S2: adder tree and row accumulator (exact: never wraps) ---------------------------------------
        acc = Signal(signed(geo.acc_width))
        acc_next = Mux(i2.first_chunk, 0, acc) + _tree_sum(prods)
        v3, i3, sum3 = Signal(), Signal(info), Signal(signed(geo.acc_width))
        m.d.sync += [v3.eq(v2 & i2.last_chunk), i3.eq(i2), sum3.eq(acc_next)]
        with m.If(v2):
            m.d.sync += acc.eq(acc_next)

        # ---- S3: requantise, activate, gate, partial sum --------------------------------------------------
        acc_sat = _clamp(sum3, num.acc_bits) if geo.acc_width > num.acc_bits else sum3
        hid = Signal(signed(ab))
        m.d.comb += hid.eq(_clamp(_rshift_round(acc_sat, num.hidden_shift), ab))
        table = golden.activation_table(cfg)
        act = Signal(signed(ab))
        if table is None:
            m.d.comb += act.eq(Mux(hid < 0, 0, hid))
        else:
            m.submodules.act_rom = rom = Memory(shape=signed(ab), depth=1 << ab, init=table)
            rd = rom.read_port(domain="comb")
            m.d.comb += [rd.addr.eq(hid.as_unsigned()), act.eq(rd.data)]
        y = Signal(signed(ab))
        gy = Signal(signed(pb))
        m.d.comb += [y.eq(_clamp(_rshift_round(acc_sat, num.output_shift), ab)),
                     gy.eq(_clamp(i3.gate * y, pb))]
        with m.If(v3 & ~i3.p2):
            m.d.sync += [h[i3.row].eq(act), h_rows.eq(h_rows + 1)]
            with m.If(i3.save & (i3.row == dff - 1)):
                m.d.sync += [h_ready.eq(1), h_meta.tag.eq(i3.tag), h_meta.expert.eq(i3.expert)]
        with m.If(v3 & i3.p2):
            m.d.sync += acc_y[i3.row].eq(Mux(i3.first, gy, _clamp(acc_y[i3.row] + gy, pb)))
            with m.If(i3.last & (i3.row == dm - 1)):
                m.d.sync += [y_ready.eq(1), out_meta.tag.eq(i3.tag), out_meta.reduce.eq(i3.reduce)]

        # ---- hand-over to the output streams --------------------------------------------------------------
        with m.If(self.partial.valid & self.partial.ready):
            m.d.sync += self.partial.valid.eq(0)
        with m.If(y_ready & ~self.partial.valid):
            m.d.sync += [self.partial.valid.eq(1), self.partial.payload.tag.eq(out_meta.tag),
                         self.partial.payload.reduce.eq(out_meta.reduce), y_ready.eq(0), y_busy.eq(0)]
            m.d.sync += [self.partial.payload.data[i].eq(acc_y[i]) for i in range(dm)]
        with m.If(self.hidden.valid & self.hidden.ready):
            m.d.sync += self.hidden.valid.eq(0)
        with m.If(h_ready & ~self.hidden.valid):
            m.d.sync += [self.hidden.valid.eq(1), self.hidden.payload.tag.eq(h_meta.tag),
                         self.hidden.payload.expert.eq(h_meta.expert), h_ready.eq(0), h_hold.eq(0)]
            m.d.sync += [self.hidden.payload.data[i].eq(h[i]) for i in range(dff)]
        return m
