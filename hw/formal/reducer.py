"""Formal harness of :class:`~mozart.hw.reducer.Reducer`: one saturated exact sum per allocated tag."""

from __future__ import annotations

from typing import NamedTuple

from amaranth import Const, Module, Mux, Signal, Value, signed
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assume

from mozart.model.config import override
from mozart.model.protocol import Protocol
from mozart.model.switch_model import SwitchModel

from ..protocol import PacketKind, header_layout
from ..reducer import Reducer
from .harness import FormalHarness, counter_bits, cycles_waiting, output_rules, stream_in_stream_out

__all__ = ["ReducerHarness"]


class ReducerHarness(FormalHarness):
    """Free allocations (only while ``alloc_free``, 1..C partials each) and free reducing partials in.

    Environment (what the switch guarantees the reducer): every packet on ``i`` is a COMBINE with ``reduce=1``
    from a chiplet (``src`` is not the switch), its ``length`` is the number of flits that follow; a tag is
    not allocated while a partial with that tag waits on ``i`` (a partial follows its dispatch), and the
    watched tag is not allocated twice while open.

    Parameters
    ----------
    cfg : WaferConfig
        The config; the harness proves on ``numerics.partial_bits = partial_bits`` (smaller sums, fewer lanes).
    partial_bits : int
        Element width of the partials under proof (default 16: two flits per partial on ``tiny``).
    entries : int
        Reduction table size under proof (default 2: the full table is reached in a few cycles).
    block : type
        Built as ``block(cfg, 0, entries)``.
    ready_every : int
        K of the liveness property.
    """

    PROPERTIES = {
        **output_rules("o"),
        "result.once": "for the watched tag, exactly one reduced COMBINE (src = the switch) leaves per "
                       "allocation, in the cycle its expected-th partial arrives, and none without an allocation",
        "result.sum": "each element of that result is the exact sum of the element over its partials, saturated "
                      "to partial_bits (element chosen by the solver)",
        "entry": "open entries (live) = allocations - results sent: each entry is freed exactly once, by its "
                 "result's tail",
        "backpressure": "alloc_free is low exactly when all entries are open (the dispatch waits, nothing is "
                        "dropped)",
        "liveness": "with o.ready high at least one cycle in K, a flit offered on i is taken within K cycles "
                    "(absorbed partials at once, emitted flits as o takes them)",
    }

    def __init__(self, cfg, partial_bits: int = 16, entries: int = 2, block=Reducer, ready_every: int = 2,
                 only=None):
        self.ready_every = ready_every
        self.cfg = override(cfg, {"numerics.partial_bits": partial_bits})
        self.dut = block(self.cfg, 0, entries)
        self.proto = Protocol(self.cfg)
        chiplets = self.proto.topology.chiplets_per_group
        # The longest scenario: an allocation, then one partial of (1 + partial_flits) flits per chiplet for it,
        # then a cycle (filling the table takes only `entries` cycles).
        self.depth = max(entries, chiplets * (self.proto.partial_flits + 1)) + 2
        super().__init__(only)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        src, out, ready = stream_in_stream_out(self, m, dut.i, dut.o, self.ready_every)
        chiplets = self.proto.topology.chiplets_per_group
        m.d.comb += [dut.alloc.eq(AnySeq(1)), dut.alloc_tag.eq(AnySeq(self.proto.tag_bits)),
                     dut.alloc_count.eq(AnySeq(len(dut.alloc_count)))]
        m.d.comb += Assume(~dut.alloc | (dut.alloc_free & (dut.alloc_count >= 1) & (dut.alloc_count <= chiplets)))

        hdr = self._assume_partials(m, src)
        out_hdr, result_head, result_tail = self._check_entries(m, out)
        watched = self._check_watched_tag(m, src, out, hdr, out_hdr, result_head, result_tail)
        self._check_sum(m, src, out, watched)

        with m.If(ready.fair):
            self.check(m, "liveness", cycles_waiting(m, dut.i, self.ready_every, "i") < self.ready_every)
        return m

    @property
    def _switch_node(self) -> int:
        return self.proto.topology.switch(0)

    def _assume_partials(self, m, src):
        """The partials' framing: COMBINEs with reduce=1 from a chiplet, ``length`` flits after the header, at
        most ``partial_flits`` of them, and no allocation of the tag of a partial that waits. Returns the
        header of the flit on ``i``."""
        dut = self.dut
        hdr = Signal(header_layout(self.cfg))
        m.d.comb += hdr.eq(dut.i.payload.data)
        left = Signal(len(hdr.length))  # flits still to come in the open input packet
        with m.If(dut.i.valid & dut.i.payload.first):
            m.d.comb += [Assume(hdr.kind == PacketKind.COMBINE), Assume(hdr.meta.combine.reduce),
                         Assume(hdr.src != self._switch_node), Assume(hdr.length <= self.proto.partial_flits + 1),
                         Assume(dut.i.payload.last == (hdr.length == 0)),
                         Assume(~dut.alloc | (dut.alloc_tag != hdr.tag))]
        with m.Elif(dut.i.valid):
            m.d.comb += Assume(dut.i.payload.last == (left == 1))
        with m.If(src.transfer):
            m.d.sync += left.eq(Mux(dut.i.payload.first, hdr.length, left - 1))
        return hdr

    def _check_entries(self, m, out):
        """The table's accounting (``entry``, ``backpressure``). Returns the output flit's header, whether it is
        a result's head (src = the switch) and whether a result's tail leaves."""
        dut = self.dut
        cbits = counter_bits(self.depth)
        allocations, completed = Signal(cbits), Signal(cbits)
        out_hdr = Signal(header_layout(self.cfg))
        m.d.comb += out_hdr.eq(dut.o.payload.data)
        result_head = dut.o.payload.first & (out_hdr.src == self._switch_node)
        in_result = Signal()  # the open output packet is a result
        with m.If(out.transfer & dut.o.payload.first):
            m.d.sync += in_result.eq(result_head & ~dut.o.payload.last)
        result_tail = out.transfer & dut.o.payload.last & Mux(dut.o.payload.first, result_head, in_result)
        m.d.sync += [allocations.eq(allocations + dut.alloc), completed.eq(completed + result_tail)]
        self.check(m, "entry", dut.live == (allocations - completed)[:len(dut.live)])
        self.check(m, "entry", (allocations - completed) <= dut.entries)
        self.check(m, "backpressure", dut.alloc_free == (dut.live < dut.entries))
        return out_hdr, result_head, result_tail

    def _check_watched_tag(self, m, src, out, hdr, out_hdr, result_head, result_tail) -> _Watched:
        """``result.once`` for a tag the solver picks: one result per allocation, when its last partial comes."""
        dut, tag_bits = self.dut, self.proto.tag_bits
        chiplets = self.proto.topology.chiplets_per_group
        tag = Signal(tag_bits)
        m.d.comb += tag.eq(AnyConst(tag_bits))
        opened, result_sent = Signal(), Signal()
        expected, received = Signal(range(chiplets + 1)), Signal(range(chiplets + 1))
        with m.If(dut.alloc & (dut.alloc_tag == tag)):
            m.d.comb += Assume(~opened)
            m.d.sync += [opened.eq(1), result_sent.eq(0), expected.eq(dut.alloc_count), received.eq(0)]

        is_partial_head = (src.transfer & dut.i.payload.first & (hdr.tag == tag)
                           & (hdr.length == self.proto.partial_flits) & opened)
        is_last = is_partial_head & (received + 1 == expected)
        is_result_head = out.transfer & result_head & (out_hdr.tag == tag)
        with m.If(is_partial_head):
            m.d.sync += received.eq(received + 1)
        with m.If(is_result_head):
            self.check(m, "result.once", opened & ~result_sent & is_last)
            m.d.sync += result_sent.eq(1)
        with m.If(is_last):
            self.check(m, "result.once", is_result_head)
        in_watched_result = Signal()
        with m.If(is_result_head):
            m.d.sync += in_watched_result.eq(~dut.o.payload.last)
        with m.If(result_tail & (is_result_head | in_watched_result)):
            m.d.sync += [opened.eq(0), in_watched_result.eq(0)]
        return _Watched(tag, is_partial_head, is_last)

    def _check_sum(self, m, src, out, watched: _Watched) -> None:
        """``result.sum``: one element (the solver picks it) of the watched tag's result is the exact sum of its
        partials' elements, saturated to ``partial_bits``."""
        dut, proto = self.dut, self.proto
        bits = self.cfg.numerics.partial_bits
        partial_flits, per_flit = proto.partial_flits, proto.flit_bits // bits
        wide = bits + SwitchModel.guard_bits(proto.topology.chiplets_per_group) + 1
        element = Signal(range(partial_flits * per_flit))
        m.d.comb += [element.eq(AnyConst(len(element))), Assume(element < partial_flits * per_flit)]
        in_partial, in_last = Signal(), Signal()   # the open input packet is a partial (the last) of the tag
        flit_index = Signal(range(partial_flits + 1))
        total = Signal(signed(wide))
        with m.If(dut.alloc & (dut.alloc_tag == watched.tag)):
            m.d.sync += total.eq(0)
        with m.If(watched.is_partial_head):
            m.d.sync += [in_partial.eq(~dut.i.payload.last), in_last.eq(watched.is_last), flit_index.eq(0)]
        mine = Signal()
        m.d.comb += mine.eq(element // per_flit == flit_index)
        incoming = dut.i.payload.data.word_select(element % per_flit, bits).as_signed()
        with m.If(src.transfer & ~dut.i.payload.first & in_partial):
            m.d.sync += flit_index.eq(flit_index + 1)
            with m.If(mine):
                m.d.sync += total.eq(total + incoming)
            with m.If(dut.i.payload.last):
                m.d.sync += in_partial.eq(0)
        exact = Signal(signed(wide))
        m.d.comb += exact.eq(total + incoming)
        hi, lo = (1 << (bits - 1)) - 1, -(1 << (bits - 1))
        saturated = Mux(exact > hi, Const(hi, signed(bits)), Mux(exact < lo, Const(lo, signed(bits)), exact[:bits]))
        with m.If(out.transfer & ~dut.o.payload.first & in_partial & in_last & mine):
            self.check(m, "result.sum",
                       dut.o.payload.data.word_select(element % per_flit, bits) == saturated.as_unsigned()[:bits])


class _Watched(NamedTuple):
    """The watched tag, and its partials' heads as they are taken on ``i``."""
    tag: Signal
    is_partial_head: Value  # a partial of the tag (of the right length, while it is open) starts
    is_last: Value          # ... and it is the last one the allocation expects
