"""The engine's sequencer: walks one (token, expert) job through its W1 and W2 weight chunks."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.blocks.chiplet import EngineGeometry
from mozart.model.protocol import Protocol

from .chiplet_layouts import issue_layout, job_layout, zero_layout

__all__ = ["EngineSequencer"]


class EngineSequencer(wiring.Component):
    """Issues one chunk of ``mac_lanes`` MACs per cycle for the current job and owns the engine's stalls.

    A job issues W1 rows ``0..d_ff-1`` then W2 rows ``0..d_model-1``, ``d / mac_lanes`` chunks per row, each
    chunk one weight SRAM read at ``w_addr`` (the slot's image is row-major; W2 starts on its own flit) with
    its operands at ``x_addr`` (W1: the token) or in the hidden registers (W2). It stalls:

    - W2 chunk ``c`` until ``hidden_written`` has counted the ``(c + 1) * mac_lanes`` hidden values it reads;
    - W1 while the previous saved hidden vector is held (``hidden_freed`` ends the hold);
    - W2 of a token's first expert while the previous token's partial is held (``partial_freed`` ends it).

    Latency and throughput: a job is accepted when idle or in the cycle its predecessor's last chunk issues,
    so jobs run back to back at :attr:`mozart.model.blocks.EngineGeometry.cycles_per_expert` cycles each; a
    token without experts is one ``zero`` event, offered as soon as the partial registers are free.

    Members
    -------
    job : In(stream.Signature(job layout))
    w_addr : Out(range(weight_depth)), x_addr : Out(range(act_depth))
        Read addresses of the weight SRAM and the activation buffer (synchronous reads, data a cycle later).
    issue : Out(stream.Signature(issue layout, always_ready=True))
        The chunk issued this cycle (``valid`` = the lanes work).
    zero : Out(stream.Signature(zero layout, always_ready=True))
        A token without experts: its partial is all zero.
    hidden_written, hidden_freed, partial_freed : In(1)
        Pulses from the datapath: a hidden value written; the saved hidden vector / the partial handed over.
    done_expert, done_token : Out(1), done_local : Out(expert bits)
        One-cycle pulses: the job no longer reads expert ``done_local``'s weights; with ``done_token``, the
        token no longer reads the activation buffer.
    """

    def __init__(self, cfg, *, token_slots: int, weight_depth: int, act_depth: int):
        self._geometry = EngineGeometry(cfg)
        super().__init__({
            "job": In(stream.Signature(job_layout(cfg, token_slots))),
            "w_addr": Out(range(weight_depth)),
            "x_addr": Out(range(act_depth)),
            "issue": Out(stream.Signature(issue_layout(cfg), always_ready=True)),
            "zero": Out(stream.Signature(zero_layout(cfg), always_ready=True)),
            "hidden_written": In(1),
            "hidden_freed": In(1),
            "partial_freed": In(1),
            "done_expert": Out(1),
            "done_token": Out(1),
            "done_local": Out(Protocol(cfg).expert_bits),
        })

    def elaborate(self, platform):
        m = Module()
        geo = self._geometry
        lanes, d_model, d_ff = geo.lanes, geo.d_model, geo.d_ff
        w_subs, x_subs = geo.w_per_flit // lanes, geo.a_per_flit // lanes
        issue = self.issue.payload

        job = Signal(self.job.payload.shape())
        running = Signal()          # a computing job is issuing
        null_job = Signal()         # a token without experts waits to emit its zero partial
        phase2 = Signal()           # 0: W1 rows, 1: W2 rows
        row, chunk = Signal.like(issue.info.row), Signal.like(issue.chunk)
        w_flit, w_sub = Signal.like(self.w_addr), Signal.like(issue.w_sub)
        x_flit, x_sub = Signal.like(self.x_addr), Signal.like(issue.x_sub)
        hidden_rows = Signal(range(d_ff + 1))   # hidden values of the current job already written
        hidden_held = Signal()      # a saved hidden vector still waits to be copied out
        partial_held = Signal()     # the partial registers belong to a finished token not yet handed over

        # named once: every use of a Python expression is written out again in the Verilog
        last_chunk, last_row, can_issue, finishing = Signal(), Signal(), Signal(), Signal()
        operands_ready = hidden_rows >= (chunk + 1) * lanes
        m.d.comb += [
            last_chunk.eq(chunk == Mux(phase2, d_ff // lanes, d_model // lanes) - 1),
            last_row.eq(row == Mux(phase2, d_model, d_ff) - 1),
            can_issue.eq(running & Mux(phase2, operands_ready & ~(job.first & partial_held), ~hidden_held)),
            finishing.eq(can_issue & phase2 & last_row & last_chunk),
            self.w_addr.eq(w_flit), self.x_addr.eq(x_flit), self.issue.valid.eq(can_issue),
            self.job.ready.eq(~null_job & (~running | finishing)),
            issue.w_sub.eq(w_sub), issue.x_sub.eq(x_sub), issue.chunk.eq(chunk),
            issue.info.p2.eq(phase2), issue.info.row.eq(row), issue.info.first_chunk.eq(chunk == 0),
            issue.info.last_chunk.eq(last_chunk),
        ]
        m.d.comb += [getattr(issue.info, name).eq(getattr(job, name))
                     for name in ("gate", "first", "last", "save", "save_index", "tag", "reduce", "expert")]
        with m.If(can_issue):
            m.d.sync += chunk.eq(Mux(last_chunk, 0, chunk + 1))
            with m.If(w_sub == w_subs - 1):
                m.d.sync += [w_sub.eq(0), w_flit.eq(w_flit + 1)]
            with m.Else():
                m.d.sync += w_sub.eq(w_sub + 1)
            with m.If(last_chunk):
                m.d.sync += [x_flit.eq(job.tok * geo.entry_flits), x_sub.eq(0), row.eq(Mux(last_row, 0, row + 1))]
            with m.Elif(x_sub == x_subs - 1):
                m.d.sync += [x_sub.eq(0), x_flit.eq(x_flit + 1)]
            with m.Else():
                m.d.sync += x_sub.eq(x_sub + 1)
            with m.If(~phase2 & last_row & last_chunk):
                # W2 starts on its own flit; the save hold keeps the next job's W1 off the hidden registers
                m.d.sync += [phase2.eq(1), w_flit.eq(job.wslot * geo.image_flits + geo.w2_flit), w_sub.eq(0)]
                with m.If(job.save):
                    m.d.sync += hidden_held.eq(1)
            with m.If(finishing):
                m.d.sync += running.eq(0)
                m.d.comb += [self.done_expert.eq(1), self.done_local.eq(job.expert), self.done_token.eq(job.last)]
                with m.If(job.last):
                    m.d.sync += partial_held.eq(1)
        with m.If(self.job.valid & self.job.ready):
            new = self.job.payload
            m.d.sync += [job.eq(new), phase2.eq(0), row.eq(0), chunk.eq(0), w_flit.eq(new.wslot * geo.image_flits),
                         w_sub.eq(0), x_flit.eq(new.tok * geo.entry_flits), x_sub.eq(0), hidden_rows.eq(0),
                         null_job.eq(new.none), running.eq(~new.none)]
        # A token without experts: its partial is zero, handed over like any other.
        m.d.comb += [self.zero.valid.eq(null_job & ~partial_held), self.zero.payload.tag.eq(job.tag),
                     self.zero.payload.reduce.eq(job.reduce)]
        with m.If(self.zero.valid):
            m.d.sync += [null_job.eq(0), partial_held.eq(1)]
            m.d.comb += self.done_token.eq(1)
        with m.If(self.hidden_written):
            m.d.sync += hidden_rows.eq(hidden_rows + 1)
        with m.If(self.partial_freed):
            m.d.sync += partial_held.eq(0)
        with m.If(self.hidden_freed):
            m.d.sync += hidden_held.eq(0)
        return m
