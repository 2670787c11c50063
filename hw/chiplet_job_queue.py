"""The expert chiplet's job queue: the tokens inside, in arrival order, turned into one engine job per expert."""

from __future__ import annotations

from amaranth import Array, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import Protocol, index_bits

from .arbiter import lowest_index
from .chiplet_layouts import job_layout, ring_signature, slot_lookup_signature, token_layout

__all__ = ["ChipletJobQueue"]


def _next(pointer, n: int):
    """Wrapping increment of a ring pointer over ``n`` entries (any ``n``)."""
    return Mux(pointer == n - 1, 0, pointer + 1)


class ChipletJobQueue(wiring.Component):
    """A ring of ``token_slots`` tokens (their activation-buffer entries) and the jobs they need.

    The oldest token's selected local experts become engine jobs in ascending order, each on the weight slot
    that holds that expert completely (``lookup``; a job waits until one does); a token without a local
    expert becomes one ``none`` job (its zero partial). An entry is free again when the engine reports the
    token done (``done_token``).

    ``expert_busy[e]`` is high while an accepted token still needs local expert ``e``: from its ``token`` event
    to the cycle the engine issues its last read of the expert's weights (``done_expert``, ``done_local``).
    The weight loader holds back a reload of that expert's slot meanwhile.

    A backward token's job (``backward`` set) waits, in addition, until its expert's saved pre-activations are
    back: bit ``entry * experts_per_chiplet + expert`` of ``restored``
    (:class:`~mozart.hw.chiplet_restore.ChipletRestore`).

    Latency and throughput: a token's first job is offered the cycle after its ``token`` event; one job per
    cycle while the engine takes them.

    Members
    -------
    token : In(stream.Signature(token layout, always_ready=True))
    ring : Out(ring_signature(token_slots))
    lookup : Out(slot_lookup_signature(cfg))
    job : Out(stream.Signature(job layout))
    done_expert, done_token : In(1).array(2), done_local : In(expert bits).array(2)
        The release pulses of the two engines (0: forward, 1: backward), which may come in the same cycle.
    expert_busy : Out(experts_per_chiplet)
    restored : In(token_slots * experts_per_chiplet)
    """

    def __init__(self, cfg, token_slots: int):
        self._cfg, self._token_slots = cfg, token_slots
        super().__init__({
            "token": In(stream.Signature(token_layout(cfg), always_ready=True)),
            "ring": Out(ring_signature(token_slots)),
            "lookup": Out(slot_lookup_signature(cfg)),
            "job": Out(stream.Signature(job_layout(cfg, token_slots))),
            "done_expert": In(1).array(2),
            "done_token": In(1).array(2),
            "done_local": In(Protocol(cfg).expert_bits).array(2),
            "expert_busy": Out(cfg.experts_per_chiplet),
            "restored": In(token_slots * cfg.experts_per_chiplet),
        })

    def elaborate(self, platform):
        m = Module()
        entries, experts, gate_bits = self._token_slots, self._cfg.experts_per_chiplet, self._cfg.numerics.gate_bits
        tokens = Array(Signal(self.token.payload.shape(), name=f"tok{t}") for t in range(entries))
        write, head = Signal(range(entries)), Signal(range(entries))   # entry being received / turned into jobs
        held = Signal(range(entries + 1))     # entries taken and not yet released by the engine
        queued = Signal(range(entries + 1))   # entries taken and not yet fully handed to the engine
        arrived = self.token.valid
        m.d.comb += [self.ring.entry.eq(write), self.ring.room.eq(held < entries)]
        with m.If(arrived):
            m.d.sync += [tokens[write].eq(self.token.payload), write.eq(_next(write, entries))]

        current = Signal(self.token.payload.shape())   # the oldest token not yet fully handed to the engine
        m.d.comb += current.eq(tokens[head])
        done = Signal(experts)          # experts of the head token already handed to the engine
        remaining = Signal(experts)
        m.d.comb += remaining.eq(current.experts & ~done)
        _, expert = lowest_index([remaining[e] for e in range(experts)])
        no_expert, is_last = Signal(), Signal()
        m.d.comb += [no_expert.eq(current.experts == 0),
                     is_last.eq((remaining & ~(Const(1, experts) << expert)[:experts]) == 0),
                     self.lookup.expert.eq(expert)]
        job = self.job.payload
        # a backward job also needs its expert's saved pre-activations back in the restore buffer
        restored = self.restored.bit_select(head * experts + expert, 1)
        m.d.comb += [
            self.job.valid.eq((queued != 0) & (no_expert | (self.lookup.found & (~current.backward | restored)))),
            job.tok.eq(head), job.wslot.eq(self.lookup.slot), job.expert.eq(expert),
            job.gate.eq(current.gates.word_select(expert, gate_bits)),
            job.first.eq(done == 0), job.last.eq(no_expert | is_last), job.none.eq(no_expert),
            job.save.eq(current.save), job.save_index.eq(current.save_index), job.tag.eq(current.tag),
            job.reduce.eq(current.reduce), job.backward.eq(current.backward),
        ]
        taken = self.job.valid & self.job.ready
        with m.If(taken):
            with m.If(job.last):
                m.d.sync += [head.eq(_next(head, entries)), done.eq(0)]
            with m.Else():
                m.d.sync += done.eq(done | (Const(1, experts) << expert)[:experts])
        m.d.sync += queued.eq(queued + arrived - (taken & job.last))
        m.d.sync += held.eq(held + arrived - self.done_token[0] - self.done_token[1])
        pending_bits = index_bits(entries + 1) + 1
        for e in range(experts):
            pending = Signal(pending_bits, name=f"pending{e}")   # tokens that still need local expert e
            m.d.sync += pending.eq(pending + (arrived & self.token.payload.experts[e])
                                   - (self.done_expert[0] & (self.done_local[0] == e))
                                   - (self.done_expert[1] & (self.done_local[1] == e)))
            m.d.comb += self.expert_busy[e].eq(pending != 0)
        return m
