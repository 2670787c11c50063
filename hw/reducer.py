"""The switch's in-network reduction unit: sums the partials of one token from several chiplets."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mozart.model.blocks import SwitchContract
from mozart.model.protocol import Protocol

from .arbiter import lowest_one
from .protocol import header_layout, link_signature

__all__ = ["Reducer"]


class Reducer(wiring.Component):
    """Reduction table and adder of a switch: one COMBINE up per token, once all its partials arrived.

    The table has ``entries`` slots (``hardware.reduction_entries``). A reducing dispatch opens one through the
    ``alloc`` port (tag, expected count); ``alloc_free`` is low while all are taken, and the dispatch waits.
    Partials (COMBINE, ``reduce=1``) arrive on ``i`` one packet at a time:

    - tag found and length = ``partial_flits``, not the last expected: absorbed. Each payload flit is added to
      the entry's accumulator in one cycle (``i.ready`` high), element-wise, exactly: accumulator elements
      have ``partial_bits + clog2(C)`` bits, so no intermediate sum overflows.
    - the last expected one: its header goes out on ``o`` with ``src`` = this switch, then each flit's sum,
      saturated to ``partial_bits``, as the partial's flit passes (``i`` is then as ready as ``o``). The entry
      is freed with the tail. The result therefore does not depend on the partials' arrival order.
    - tag not found (or a wrong length): passed through to ``o`` unchanged.

    The accumulator is one RAM of ``entries * partial_flits`` words with a synchronous read port; the read
    of the next flit's word is issued in the cycle the current flit is taken, so there is no bubble.

    Parameters
    ----------
    cfg : WaferConfig
    group : int
        The switch's group (gives its node id, the ``src`` of results).
    entries : int, optional
        Table size (default ``cfg.hardware.reduction_entries``).

    Members
    -------
    i : In(link_signature(cfg))
        Reducing partials.
    o : Out(link_signature(cfg))
        Reduced results and passed-through partials (towards the up port).
    alloc_free : Out(1)
        At least one entry is free.
    alloc : In(1)
        Open an entry for ``alloc_tag`` expecting ``alloc_count`` partials (only while ``alloc_free``).
    alloc_tag : In(tag_bits)
    alloc_count : In(range(C + 1))
    live : Out(range(entries + 1))
        Open entries (for tests and statistics).

    Attributes
    ----------
    latency : int
        0: a result's head leaves in the cycle the last partial's head arrives (if ``o`` is ready).
    flits_per_cycle : float
        1.0 flit of partials taken in per cycle, so ``1 / (n * (partial_flits + 1))`` tokens per cycle for
        ``n`` partials per token (``Switch.reduction_rate``).
    """

    latency = 0
    flits_per_cycle = 1.0

    def __new__(cls, cfg, group: int = 0, entries: int | None = None):
        SwitchContract(cfg, group, reduction_entries=entries)   # rejects before a component exists
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, cfg, group: int = 0, entries: int | None = None):
        self._switch = SwitchContract(cfg, group, reduction_entries=entries)
        entries = self._switch.reduction_entries
        self._cfg, self._group, self._entries = cfg, group, entries
        self._proto = proto = Protocol(cfg)
        C = proto.topology.chiplets_per_group
        super().__init__({
            "i": In(link_signature(cfg)),
            "o": Out(link_signature(cfg)),
            "alloc_free": Out(1),
            "alloc": In(1),
            "alloc_tag": In(proto.tag_bits),
            "alloc_count": In(range(C + 1)),
            "live": Out(range(entries + 1)),
        })

    @property
    def entries(self) -> int:
        return self._entries

    def elaborate(self, platform):
        m = Module()
        cfg, proto = self._cfg, self._proto
        E, C, PF = self._entries, proto.topology.chiplets_per_group, proto.partial_flits
        bits = cfg.numerics.partial_bits
        per_flit = proto.flit_bits // bits
        wide = bits + self._switch.guard_bits
        count_shape = range(C + 1)

        # -- the table -------------------------------------------------------------------------------
        valid = Signal(E)
        tags = [Signal(proto.tag_bits, name=f"tag{e}") for e in range(E)]
        expected = [Signal(count_shape, name=f"expected{e}") for e in range(E)]
        received = [Signal(count_shape, name=f"received{e}") for e in range(E)]
        free_onehot = Signal(E)
        m.d.comb += [
            free_onehot.eq(lowest_one(~valid, E)),
            self.alloc_free.eq(~valid.all()),
            self.live.eq(sum(valid[e] for e in range(E))),
        ]

        # -- header lookup ---------------------------------------------------------------------------
        head = self.i.payload
        hdr = Signal(header_layout(cfg))
        m.d.comb += hdr.eq(head.data)
        match = Signal(E)
        for e in range(E):
            m.d.comb += match[e].eq(valid[e] & (tags[e] == hdr.tag))
        hit_now = Signal()
        m.d.comb += hit_now.eq(match.any() & (hdr.length == PF))
        entry_now = Signal(range(E))
        index, last_now, first_now = 0, 0, 0  # tags are unique among live entries: at most one match
        for e in range(E):
            index = index | Mux(match[e], e, 0)
            last_now = last_now | (match[e] & (received[e] + 1 == expected[e]))
            first_now = first_now | (match[e] & (received[e] == 0))
        m.d.comb += entry_now.eq(index)
        emit_now = Signal()
        m.d.comb += emit_now.eq(~hit_now | last_now)

        # -- per-packet state --------------------------------------------------------------------------
        hit = Signal()     # the current partial is being reduced
        emit = Signal()    # it goes out on o (the last partial, or a pass-through)
        first = Signal()   # it is the entry's first partial: the accumulator holds nothing yet
        entry = Signal(range(E))
        addr = Signal(range(E * PF))

        elem = data.ArrayLayout(signed(wide), per_flit)
        m.submodules.acc = acc = Memory(shape=elem, depth=E * PF, init=[])
        rd = acc.read_port()
        wr = acc.write_port()

        # -- datapath: exact sum, saturated on the way out --------------------------------------------
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        sum_flit = Signal(elem)
        out_data = Signal(proto.flit_bits)
        elements = []
        for k in range(per_flit):
            incoming = head.data[k * bits:(k + 1) * bits].as_signed()
            m.d.comb += sum_flit[k].eq(Mux(first, 0, rd.data[k]) + incoming)
            clipped = Mux(sum_flit[k] > hi, Const(hi, signed(bits)),
                          Mux(sum_flit[k] < lo, Const(lo, signed(bits)), sum_flit[k][:bits]))
            elements.append(clipped.as_unsigned()[:bits])
        m.d.comb += out_data.eq(Cat(*elements))

        result_hdr = Signal(header_layout(cfg))
        m.d.comb += [result_hdr.eq(hdr), result_hdr.src.eq(proto.topology.switch(self._group))]

        is_head = self.i.valid & head.first  # an idle input's stale payload must not move the read address
        with m.If(is_head):
            m.d.comb += [
                self.o.valid.eq(self.i.valid & emit_now),
                self.o.payload.eq(head),
                self.i.ready.eq(Mux(emit_now, self.o.ready, 1)),
                rd.addr.eq(entry_now * PF),
            ]
            with m.If(hit_now):
                m.d.comb += self.o.payload.data.eq(result_hdr)
        with m.Else():
            take = self.i.valid & self.i.ready
            m.d.comb += [
                self.o.valid.eq(self.i.valid & emit),
                self.o.payload.eq(head),
                self.i.ready.eq(Mux(emit, self.o.ready, 1)),
                rd.addr.eq(Mux(take, addr + 1, addr)),
                wr.addr.eq(addr),
                wr.data.eq(sum_flit),
                wr.en.eq(take & hit & ~emit),
            ]
            with m.If(hit):
                m.d.comb += self.o.payload.data.eq(out_data)

        fire = self.i.valid & self.i.ready
        with m.If(fire & is_head):
            m.d.sync += [hit.eq(hit_now), emit.eq(emit_now), first.eq(first_now), entry.eq(entry_now),
                         addr.eq(entry_now * PF)]
        with m.Elif(fire):
            m.d.sync += addr.eq(addr + 1)

        # -- table updates (different entries never collide: allocation takes a free one) -------------
        for e in range(E):
            with m.If(fire & is_head & hit_now & match[e]):
                m.d.sync += received[e].eq(received[e] + 1)
            with m.If(fire & ~is_head & head.last & hit & emit & (entry == e)):
                m.d.sync += valid[e].eq(0)
            with m.If(self.alloc & free_onehot[e]):
                m.d.sync += [valid[e].eq(1), tags[e].eq(self.alloc_tag), expected[e].eq(self.alloc_count),
                             received[e].eq(0)]
        return m
