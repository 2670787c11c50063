"""The backward engine's sequencer: walks one backward (token, expert) job through its W2 and W1 passes."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.blocks.chiplet import BackwardGeometry

from .chiplet_layouts import backward_issue_layout, backward_job_layout, zero_layout

__all__ = ["BackwardSequencer"]

#: The issue payload's fields that the walk keeps in registers (the rest come from the job or are derived).
_POSITION = ("w2_pass", "through", "row", "chunk", "w_sub", "vector_sub", "row_element")


class BackwardSequencer(wiring.Component):
    """Issues one op of ``L = mac_lanes`` MACs per cycle for the current backward job and owns its stalls.

    A job walks the W2 rows ``i = 0..d_model-1`` (``d_ff / L`` chunks each), then the W1 rows
    ``j = 0..d_ff-1`` (``d_model / L`` chunks each). Every chunk is two ops, the product through the weights
    (``through = 1``) then the weight-gradient product (``through = 0``); the read addresses stay put for
    both, so the data of all four read ports (synchronous, one cycle) serves both ops:

    ============  ===========================================  ===========================================
    port          W2 pass, chunk ``c`` of row ``i``            W1 pass, chunk ``c`` of row ``j``
    ============  ===========================================  ===========================================
    ``w_addr``    the flit of ``W2[i, cL:(c+1)L]``             the flit of ``W1[j, cL:(c+1)L]``
    ``g_addr``    the word of ``dW2[i, cL:(c+1)L]``            the word of ``dW1[j, cL:(c+1)L]``
    ``x_addr``    the flit of ``dY[i]`` (row scalar)           the flit of ``x[cL:(c+1)L]`` (vector)
    ``z_addr``    the flit of ``z[cL:(c+1)L]`` (vector)        the flit of ``z[j]`` (row scalar)
    ============  ===========================================  ===========================================

    Stalls: a token's first job does not issue its last W1 row while the previous token's partial or gate
    gradients are still held in the output streams (that row writes them); a token without local experts
    (``none``) waits for the partial stream the same way and is then one ``zero`` event.

    Latency and throughput: a job is accepted when idle or in the cycle its predecessor's last op issues, so
    jobs run back to back, :attr:`mozart.model.blocks.chiplet.BackwardGeometry.cycles_per_job` cycles each.

    Members
    -------
    job : In(stream.Signature(backward job layout))
    w_addr, x_addr, z_addr, g_addr : Out(unsigned)
        Read addresses of the weight SRAM, activation buffer, restore buffer and gradient SRAM.
    issue : Out(stream.Signature(backward issue layout, always_ready=True))
        The op issued this cycle (``valid`` = the lanes work).
    zero : Out(stream.Signature(zero layout, always_ready=True))
        A token without local experts: its partial is all zero.
    partial_taken, gates_taken : In(1)
        Pulses from the engine: the output stream handed a partial / gate gradients over.
    """

    def __init__(self, cfg, *, token_slots: int, restore_slots: int, entry_flits: int, weight_depth: int,
                 act_depth: int, restore_depth: int):
        self._geometry = geo = BackwardGeometry(cfg)
        self._entry_flits = entry_flits
        super().__init__({
            "job": In(stream.Signature(backward_job_layout(cfg, token_slots, restore_slots))),
            "w_addr": Out(range(weight_depth)),
            "x_addr": Out(range(act_depth)),
            "z_addr": Out(range(restore_depth)),
            "g_addr": Out(range(geo.grad_depth)),
            "issue": Out(stream.Signature(backward_issue_layout(cfg, geo), always_ready=True)),
            "zero": Out(stream.Signature(zero_layout(cfg), always_ready=True)),
            "partial_taken": In(1),
            "gates_taken": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        geo = self._geometry
        issue = Signal(data.StructLayout({name: self.issue.payload.shape().members[name] for name in _POSITION}))
        job = Signal(self.job.payload.shape())
        running = Signal()          # a computing job issues ops
        null_job = Signal()         # a token without local experts waits to emit its zero partial
        partial_held = Signal()     # the partial stream holds a token not yet taken
        gates_held = Signal()       # the gate-gradient stream holds a token not yet taken
        last_chunk, last_row, can_issue, finishing, pass_done = Signal(), Signal(), Signal(), Signal(), Signal()
        m.d.comb += [
            last_chunk.eq(issue.chunk == Mux(issue.w2_pass, geo.d_ff // geo.lanes, geo.d_model // geo.lanes) - 1),
            last_row.eq(issue.row == Mux(issue.w2_pass, geo.d_model, geo.d_ff) - 1),
            # the last W1 row of a token's first job writes the partial and the gate gradients
            can_issue.eq(running & ~(job.first & ~issue.w2_pass & last_row & (partial_held | gates_held))),
            pass_done.eq(can_issue & ~issue.through & last_row & last_chunk),
            finishing.eq(pass_done & ~issue.w2_pass),
            self.issue.valid.eq(can_issue), self.job.ready.eq((~null_job | self.zero.valid) & (~running | finishing)),
        ]
        out = self.issue.payload
        m.d.comb += [getattr(out, name).eq(getattr(issue, name)) for name in _POSITION]
        m.d.comb += [getattr(out, name).eq(getattr(job, name))
                     for name in ("gate", "first", "last", "expert", "tag", "reduce")]
        m.d.comb += [out.first_row.eq(issue.row == 0), out.last_row.eq(last_row), out.last_op.eq(finishing),
                     out.grad_word.eq(self.g_addr)]
        bases = self._walk(m, issue, can_issue, last_chunk, last_row, pass_done)
        m.d.comb += [self.zero.valid.eq(null_job & ~partial_held), self.zero.payload.tag.eq(job.tag),
                     self.zero.payload.reduce.eq(job.reduce)]
        with m.If(self.partial_taken):
            m.d.sync += partial_held.eq(0)
        with m.If(self.gates_taken):
            m.d.sync += gates_held.eq(0)
        with m.If(self.zero.valid):
            m.d.sync += [null_job.eq(0), partial_held.eq(1)]
        with m.If(finishing):
            m.d.sync += running.eq(0)
            with m.If(job.last):
                m.d.sync += [partial_held.eq(1), gates_held.eq(1)]
        with m.If(self.job.valid & self.job.ready):   # after the zero: a new job's flags win
            new = self.job.payload
            m.d.sync += [job.eq(new), null_job.eq(new.none), running.eq(~new.none)]
            self._start_job(m, issue, new, bases)
        return m

    def _start_job(self, m, issue, new, bases):
        """Point every counter at the new job's first W2 op and remember its W1 pass's bases."""
        geo = self._geometry
        w_slot_flit, grad_slot_word, x_flit, z_flit = bases
        m.d.sync += [
            issue.w2_pass.eq(1), issue.through.eq(1), issue.row.eq(0), issue.chunk.eq(0),
            w_slot_flit.eq(new.wslot * geo.image_flits), grad_slot_word.eq(new.wslot * geo.grad_words_per_slot),
            x_flit.eq(new.tok * self._entry_flits + geo.token_flits),
            z_flit.eq(new.restore * geo.hidden_flits),
            self.w_addr.eq(new.wslot * geo.image_flits + geo.w2_flit), issue.w_sub.eq(0),
            self.g_addr.eq(new.wslot * geo.grad_words_per_slot + geo.w2_grad_word),
            self.x_addr.eq(new.tok * self._entry_flits), issue.row_element.eq(0),
            self.z_addr.eq(new.restore * geo.hidden_flits), issue.vector_sub.eq(0),
        ]

    def _walk(self, m, issue, can_issue, last_chunk, last_row, pass_done):
        """The address counters: ops alternate ``through``; the weight and gradient addresses and the vector
        operand advance per chunk, the row scalar per row; returns the job's base addresses (registers)."""
        geo = self._geometry
        w_slot_flit, grad_slot_word = Signal.like(self.w_addr), Signal.like(self.g_addr)
        x_flit, z_flit = Signal.like(self.x_addr), Signal.like(self.z_addr)
        # the W2 pass reads its vector (z) at z_addr and its row scalar (dY) at x_addr; the W1 pass swaps them
        vector_addr = Mux(issue.w2_pass, self.z_addr, self.x_addr)
        row_addr = Mux(issue.w2_pass, self.x_addr, self.z_addr)
        vector_next, row_next = Signal.like(vector_addr), Signal.like(row_addr)
        m.d.comb += [vector_next.eq(vector_addr), row_next.eq(row_addr)]
        with m.If(can_issue):
            m.d.sync += issue.through.eq(~issue.through)
        with m.If(can_issue & ~issue.through):   # the chunk's second op: next chunk
            m.d.sync += [issue.chunk.eq(Mux(last_chunk, 0, issue.chunk + 1)), self.g_addr.eq(self.g_addr + 1)]
            with m.If(issue.w_sub == geo.w_per_flit // geo.lanes - 1):
                m.d.sync += [issue.w_sub.eq(0), self.w_addr.eq(self.w_addr + 1)]
            with m.Else():
                m.d.sync += issue.w_sub.eq(issue.w_sub + 1)
            with m.If(last_chunk):
                m.d.sync += [issue.row.eq(Mux(last_row, 0, issue.row + 1)), issue.vector_sub.eq(0)]
                m.d.comb += vector_next.eq(Mux(issue.w2_pass, z_flit, x_flit))
                with m.If(issue.row_element == geo.a_per_flit - 1):
                    m.d.sync += issue.row_element.eq(0)
                    m.d.comb += row_next.eq(row_addr + 1)
                with m.Else():
                    m.d.sync += issue.row_element.eq(issue.row_element + 1)
            with m.Elif(issue.vector_sub == geo.a_per_flit // geo.lanes - 1):
                m.d.sync += issue.vector_sub.eq(0)
                m.d.comb += vector_next.eq(vector_addr + 1)
            with m.Else():
                m.d.sync += issue.vector_sub.eq(issue.vector_sub + 1)
            with m.If(issue.w2_pass):
                m.d.sync += [self.z_addr.eq(vector_next), self.x_addr.eq(row_next)]
            with m.Else():
                m.d.sync += [self.x_addr.eq(vector_next), self.z_addr.eq(row_next)]
        with m.If(pass_done & issue.w2_pass):   # hand-over: the W1 pass starts at the slot's first flit and word
            m.d.sync += [issue.w2_pass.eq(0), self.w_addr.eq(w_slot_flit), issue.w_sub.eq(0),
                         self.g_addr.eq(grad_slot_word), self.x_addr.eq(x_flit), self.z_addr.eq(z_flit),
                         issue.row_element.eq(0)]
        return w_slot_flit, grad_slot_word, x_flit, z_flit
