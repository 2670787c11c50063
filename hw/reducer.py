"""The switch's in-network reduction unit: sums the partials of one token from several chiplets."""

from __future__ import annotations

from typing import NamedTuple

from amaranth import Cat, Const, Module, Mux, Signal, Value, signed
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
        ``n`` partials per token (``SwitchContract.reduction_rate``).
    """

    def __new__(cls, cfg, group: int = 0, entries: int | None = None):
        SwitchContract(cfg, group, reduction_entries=entries)   # rejects before a component exists
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, cfg, group: int = 0, entries: int | None = None):
        self._switch = SwitchContract(cfg, group, reduction_entries=entries)
        entries = self._switch.reduction_entries
        self._cfg, self._group, self._entries = cfg, group, entries
        self._proto = proto = Protocol(cfg)
        chiplets = proto.topology.chiplets_per_group
        super().__init__({
            "i": In(link_signature(cfg)),
            "o": Out(link_signature(cfg)),
            "alloc_free": Out(1),
            "alloc": In(1),
            "alloc_tag": In(proto.tag_bits),
            "alloc_count": In(range(chiplets + 1)),
            "live": Out(range(entries + 1)),
        })

    @property
    def entries(self) -> int:
        return self._entries

    def elaborate(self, platform):
        m = Module()
        table = self._table(m)
        head = self.i.payload
        hdr = Signal(header_layout(self._cfg))
        m.d.comb += hdr.eq(head.data)
        lookup = self._lookup(m, table, hdr)

        packet = _Packet(hit=Signal(name="hit"), emit=Signal(name="emit"), first=Signal(name="first"),
                         entry=Signal(range(self._entries), name="entry"),
                         addr=Signal(range(self._accumulator_words), name="addr"))

        element = data.ArrayLayout(signed(self._accumulator_bits), self._elements_per_flit)
        m.submodules.acc = acc = Memory(shape=element, depth=self._accumulator_words, init=[])
        read_port = acc.read_port()
        write_port = acc.write_port()
        sum_flit, out_data = self._adders(m, element, packet.first, read_port.data, head.data)

        is_head = self.i.valid & head.first  # an idle input's stale payload must not move the read address
        self._steer(m, lookup, packet, read_port, write_port, sum_flit, out_data, is_head, self._result_header(m, hdr))
        self._update(m, table, lookup, packet, is_head)
        return m

    @property
    def _accumulator_words(self) -> int:
        """One accumulator word per payload flit of a partial, per entry."""
        return self._entries * self._proto.partial_flits

    @property
    def _elements_per_flit(self) -> int:
        return self._proto.flit_bits // self._cfg.numerics.partial_bits

    @property
    def _accumulator_bits(self) -> int:
        """An accumulator element: a partial element plus the guard bits that keep a sum of ``C`` exact."""
        return self._cfg.numerics.partial_bits + self._switch.guard_bits

    def _table(self, m) -> _Table:
        """The table's registers; ``alloc_free``, ``live`` and the free entry an allocation takes."""
        entries, count_shape = self._entries, range(self._proto.topology.chiplets_per_group + 1)
        table = _Table(valid=Signal(entries, name="valid"),
                       tags=[Signal(self._proto.tag_bits, name=f"tag{entry}") for entry in range(entries)],
                       expected=[Signal(count_shape, name=f"expected{entry}") for entry in range(entries)],
                       received=[Signal(count_shape, name=f"received{entry}") for entry in range(entries)],
                       free_onehot=Signal(entries, name="free_onehot"))
        m.d.comb += [
            table.free_onehot.eq(lowest_one(~table.valid, entries)),
            self.alloc_free.eq(~table.valid.all()),
            self.live.eq(sum(table.valid[entry] for entry in range(entries))),
        ]
        return table

    def _lookup(self, m, table: _Table, hdr) -> _Lookup:
        """The entry of a head flit's tag (a CAM), and what its arrival means for it."""
        entries = self._entries
        match = Signal(entries)
        for entry in range(entries):
            m.d.comb += match[entry].eq(table.valid[entry] & (table.tags[entry] == hdr.tag))
        hit_now = Signal()
        m.d.comb += hit_now.eq(match.any() & (hdr.length == self._proto.partial_flits))
        entry_now = Signal(range(entries))
        index, last_now, first_now = 0, 0, 0  # tags are unique among live entries: at most one match
        for entry in range(entries):
            index = index | Mux(match[entry], entry, 0)
            last_now = last_now | (match[entry] & (table.received[entry] + 1 == table.expected[entry]))
            first_now = first_now | (match[entry] & (table.received[entry] == 0))
        m.d.comb += entry_now.eq(index)
        emit_now = Signal()
        m.d.comb += emit_now.eq(~hit_now | last_now)
        return _Lookup(match, hit_now, entry_now, first_now, emit_now)

    def _adders(self, m, element, first, stored, incoming_flit):
        """One adder lane per element: the exact sum of the stored word (nothing for an entry's first partial)
        and the incoming flit, and that sum saturated to ``partial_bits`` as the flit that goes out."""
        bits = self._cfg.numerics.partial_bits
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        sum_flit = Signal(element)
        out_data = Signal(self._proto.flit_bits)
        elements = []
        for lane in range(self._elements_per_flit):
            incoming = incoming_flit[lane * bits:(lane + 1) * bits].as_signed()
            m.d.comb += sum_flit[lane].eq(Mux(first, 0, stored[lane]) + incoming)
            clipped = Mux(sum_flit[lane] > hi, Const(hi, signed(bits)),
                          Mux(sum_flit[lane] < lo, Const(lo, signed(bits)), sum_flit[lane][:bits]))
            elements.append(clipped.as_unsigned()[:bits])
        m.d.comb += out_data.eq(Cat(*elements))
        return sum_flit, out_data

    def _result_header(self, m, hdr):
        """The header of a reduced result: the last partial's, with this switch as its source."""
        result_hdr = Signal(header_layout(self._cfg))
        m.d.comb += [result_hdr.eq(hdr), result_hdr.src.eq(self._proto.topology.switch(self._group))]
        return result_hdr

    def _steer(self, m, lookup: _Lookup, packet: _Packet, read_port, write_port, sum_flit, out_data, is_head,
               result_hdr):
        """Where each flit goes (absorbed, emitted or passed), and the accumulator's read and write of it."""
        head = self.i.payload
        partial_flits = self._proto.partial_flits
        with m.If(is_head):
            m.d.comb += [
                self.o.valid.eq(self.i.valid & lookup.emit_now),
                self.o.payload.eq(head),
                self.i.ready.eq(Mux(lookup.emit_now, self.o.ready, 1)),
                read_port.addr.eq(lookup.entry_now * partial_flits),
            ]
            with m.If(lookup.hit_now):
                m.d.comb += self.o.payload.data.eq(result_hdr)
        with m.Else():
            take = self.i.valid & self.i.ready
            m.d.comb += [
                self.o.valid.eq(self.i.valid & packet.emit),
                self.o.payload.eq(head),
                self.i.ready.eq(Mux(packet.emit, self.o.ready, 1)),
                read_port.addr.eq(Mux(take, packet.addr + 1, packet.addr)),  # the next flit's word, no bubble
                write_port.addr.eq(packet.addr),
                write_port.data.eq(sum_flit),
                write_port.en.eq(take & packet.hit & ~packet.emit),
            ]
            with m.If(packet.hit):
                m.d.comb += self.o.payload.data.eq(out_data)

    def _update(self, m, table: _Table, lookup: _Lookup, packet: _Packet, is_head) -> None:
        """The per-packet state at each flit taken, and the table: a partial counted at its head, an entry freed
        with its result's tail, a free entry opened by an allocation (different entries never collide:
        allocation takes a free one)."""
        head = self.i.payload
        fire = self.i.valid & self.i.ready
        with m.If(fire & is_head):
            m.d.sync += [packet.hit.eq(lookup.hit_now), packet.emit.eq(lookup.emit_now),
                         packet.first.eq(lookup.first_now), packet.entry.eq(lookup.entry_now),
                         packet.addr.eq(lookup.entry_now * self._proto.partial_flits)]
        with m.Elif(fire):
            m.d.sync += packet.addr.eq(packet.addr + 1)

        for entry in range(self._entries):
            with m.If(fire & is_head & lookup.hit_now & lookup.match[entry]):
                m.d.sync += table.received[entry].eq(table.received[entry] + 1)
            with m.If(fire & ~is_head & head.last & packet.hit & packet.emit & (packet.entry == entry)):
                m.d.sync += table.valid[entry].eq(0)
            with m.If(self.alloc & table.free_onehot[entry]):
                m.d.sync += [table.valid[entry].eq(1), table.tags[entry].eq(self.alloc_tag),
                             table.expected[entry].eq(self.alloc_count), table.received[entry].eq(0)]


class _Table(NamedTuple):
    """The reduction table's registers, one element per entry."""
    valid: Signal
    tags: list
    expected: list      # partials the entry waits for
    received: list      # partials it has counted
    free_onehot: Signal  # the entry the next allocation takes


class _Lookup(NamedTuple):
    """A head flit's tag looked up in the table (combinational)."""
    match: Signal     # one-hot: the entry holding its tag
    hit_now: Signal   # it is a partial to reduce (tag found, length = partial_flits)
    entry_now: Signal
    first_now: Value  # the entry's first partial
    emit_now: Signal  # it goes out on o (the entry's last partial, or a pass-through)


class _Packet(NamedTuple):
    """The decision for the packet in flight, kept from its head to its tail."""
    hit: Signal       # the current partial is being reduced
    emit: Signal      # it goes out on o (the last partial, or a pass-through)
    first: Signal     # it is the entry's first partial: the accumulator holds nothing yet
    entry: Signal
    addr: Signal      # accumulator word of the current flit
