"""The base of every formal harness, and the stream rules and counters the harnesses share.

A harness is a ``wiring.Component`` with no ports: it instantiates the block under test, drives its inputs
with free values (``AnySeq``) constrained by ``Assume`` to what a legal environment does, and states the
block's properties as named ``Assert`` s. Properties never go inside the blocks.

Each assertion is tagged with its property's name through its source location (``prop:NAME``), which Yosys
copies into the ``src`` attribute of the check cell and SymbiYosys reports per assertion; the runner
(:mod:`mozart.sim.formal`) maps the statuses back to property names.
"""

from __future__ import annotations

import math

from amaranth import Module, Mux, Signal
from amaranth.asserts import AnyConst, AnySeq
from amaranth.hdl import Assert, Assume
from amaranth.lib import wiring

__all__ = ["FormalHarness", "output_rules", "StreamMonitor", "FairReady", "check_stream_output",
           "drive_stream_source", "stream_in_stream_out", "assume_packet_lengths", "cycles_waiting", "counter_bits",
           "watched_index", "PROPERTY_LOCATION_PREFIX"]

#: Source-location prefix of every property assertion: ``prop:NAME:SERIAL`` (the runner parses it).
PROPERTY_LOCATION_PREFIX = "prop:"


def output_rules(port: str) -> dict[str, str]:
    """The two properties every harness states on the outputs it names ``port``: PORT.stream, PORT.framing."""
    return {f"{port}.stream": f"a flit offered on {port} stays offered, unchanged, until ready takes it",
            f"{port}.framing": f"flits leave on {port} as well-formed packets (a head exactly when no packet is "
                               "open)"}


class FormalHarness(wiring.Component):
    """Holds a block under test and its properties.

    Subclasses set :attr:`PROPERTIES` (name -> one sentence) and implement :meth:`elaborate`, calling
    :meth:`check` for each assertion. ``only`` limits the assertions to a set of property names (a mutant test
    checks one property at a time, so the failure the solver reports is the property under test).

    Attributes
    ----------
    depth : int
        The default bounded-model-checking and induction depth, derived from the block's parameters by the
        subclass (enough cycles for every property's longest scenario).
    """

    PROPERTIES: dict[str, str] = {}

    def __new__(cls, *args, only=None, **kwargs):
        cls.select(only)   # an unknown property raises before any component exists (none is left unused)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, only=None):
        self._only = frozenset(self.select(only))
        self._serial = 0
        super().__init__({})

    @classmethod
    def select(cls, only=None) -> list[str]:
        """The properties a run with ``only`` checks, in declaration order (all without ``only``); an unknown name
        is a ValueError."""
        unknown = sorted(set(only or ()) - set(cls.PROPERTIES))
        if unknown:
            raise ValueError(f"property must be one of {', '.join(cls.PROPERTIES)}, not {unknown[0]!r}")
        return [name for name in cls.PROPERTIES if not only or name in only]

    @property
    def properties(self) -> list[str]:
        """The checked properties, in declaration order."""
        return [name for name in self.PROPERTIES if name in self._only]

    def check(self, m: Module, name: str, test) -> None:
        """Assert ``test`` (combinationally, under the enclosing ``m.If``) as part of property ``name``."""
        if name not in self.PROPERTIES:
            raise ValueError(f"{type(self).__name__} has no property {name!r}")
        if name not in self._only:
            return
        stmt = Assert(test, name)
        self._serial += 1
        stmt.src_loc = (f"{PROPERTY_LOCATION_PREFIX}{name}", self._serial)  # the runner reads it back
        m.d.comb += stmt


class StreamMonitor:
    """Transfer and packet bookkeeping of one valid/ready stream of flits, shared by the stream rules.

    ``transfer`` is the handshake; ``in_packet`` is high between a transferred head and its tail (registered).
    """

    def __init__(self, m: Module, stream, name: str):
        self.stream = stream
        self.transfer = Signal(name=f"{name}_transfer")
        self.in_packet = Signal(name=f"{name}_in_packet")
        self._held = Signal(name=f"{name}_held")  # valid and not ready last cycle
        self._last_payload = Signal(stream.payload.shape(), name=f"{name}_last_payload")
        m.d.comb += self.transfer.eq(stream.valid & stream.ready)
        m.d.sync += [self._held.eq(stream.valid & ~stream.ready), self._last_payload.eq(stream.payload)]
        with m.If(self.transfer):
            m.d.sync += self.in_packet.eq(~stream.payload.last)

    def held_rules(self):
        """(valid is still high, payload unchanged), both to hold while the last cycle offered without taking."""
        return self._held, self.stream.valid, self.stream.payload.as_value() == self._last_payload.as_value()

    def framing_ok(self):
        """A valid flit is a head exactly when no packet is open."""
        return self.stream.payload.first == ~self.in_packet


def check_stream_output(harness: FormalHarness, m: Module, mon: StreamMonitor, stream_prop: str,
                        framing_prop: str) -> None:
    """The block is the sender: valid held until ready, payload stable while waiting, packets well framed."""
    held, valid, stable = mon.held_rules()
    with m.If(held):
        harness.check(m, stream_prop, valid)
        harness.check(m, stream_prop, stable)
    with m.If(mon.stream.valid):
        harness.check(m, framing_prop, mon.framing_ok())


def drive_stream_source(m: Module, stream, name: str, framed: bool = True) -> StreamMonitor:
    """Drive a block's input stream with free flits that obey the stream rules (and packet framing)."""
    m.d.comb += [stream.valid.eq(AnySeq(1)), stream.payload.eq(AnySeq(len(stream.payload.as_value())))]
    mon = StreamMonitor(m, stream, name)
    held, valid, stable = mon.held_rules()
    with m.If(held):
        m.d.comb += [Assume(valid), Assume(stable)]
    if framed:
        with m.If(stream.valid):
            m.d.comb += Assume(mon.framing_ok())
    return mon


def stream_in_stream_out(harness: FormalHarness, m: Module, sink, source, ready_every: int):
    """The environment of a block with one input stream and one output stream: free flits in on ``sink`` (named
    ``i``; stream rules and framing assumed), a free ``ready`` on ``source`` (named ``o``) tracked by a
    :class:`FairReady` of ``ready_every`` cycles, and ``source``'s stream rules checked as ``o.stream`` and
    ``o.framing``. Returns the input's monitor, the output's monitor and the FairReady."""
    src = drive_stream_source(m, sink, "i")
    out = StreamMonitor(m, source, "o")
    ready = FairReady(m, [source], ready_every, "o")
    check_stream_output(harness, m, out, "o.stream", "o.framing")
    return src, out, ready


class FairReady:
    """Drives the ``ready`` of a block's outputs freely and tracks whether each has so far been high at least one
    cycle in every ``every`` cycles (``fair``). Liveness assertions are guarded by ``fair`` instead of assuming
    it, so the safety properties of the same run still see every possible ``ready``."""

    def __init__(self, m: Module, streams, every: int, name: str):
        fair_so_far = Signal(init=1, name=f"{name}_fair_so_far")
        self.fair = Signal(name=f"{name}_fair")
        ok = []
        for k, stream in enumerate(streams):
            idle = Signal(range(every + 1), name=f"{name}{k}_not_ready_for")
            m.d.comb += stream.ready.eq(AnySeq(1))
            with m.If(stream.ready):
                m.d.sync += idle.eq(0)
            with m.Elif(idle < every):
                m.d.sync += idle.eq(idle + 1)
            ok.append(stream.ready | (idle < every - 1))
        m.d.comb += self.fair.eq(fair_so_far & (sum(ok) == len(ok)))
        m.d.sync += fair_so_far.eq(self.fair)


def cycles_waiting(m: Module, stream, limit: int, name: str):
    """Cycles the flit offered on ``stream`` has waited so far (valid and not ready), saturating above
    ``limit``: a liveness property bounds it."""
    waited = Signal(range(limit + 2), name=f"{name}_waited")
    with m.If(stream.valid & ~stream.ready & (waited <= limit)):
        m.d.sync += waited.eq(waited + 1)
    with m.Elif(~stream.valid | stream.ready):
        m.d.sync += waited.eq(0)
    return waited


def counter_bits(horizon: int) -> int:
    """Width of a transfer counter that cannot wrap within ``horizon`` cycles."""
    return max(1, math.ceil(math.log2(horizon + 2)))


def watched_index(bits: int, name: str):
    """A solver-chosen constant index: the property then holds for every index (the 'watched item' trick)."""
    index = Signal(bits, name=name)
    return index, index.eq(AnyConst(bits))


def assume_packet_lengths(m: Module, stream, cfg, dispatch_node: int | None, name: str):
    """Assume packets on ``stream`` are as long as their header says (``length`` flits after it), at most
    ``max_dispatch_flits``, and a DISPATCH for ``dispatch_node`` (None: no multicast here) carries one route
    word per chiplet of its mask plus the token (backward: the output gradient and the token). Returns (header
    view of the current flit, flit index in the open packet: 0 at a head)."""
    from mozart.model.protocol import Protocol  # noqa: PLC0415

    from ..protocol import PacketKind, header_layout  # noqa: PLC0415

    proto = Protocol(cfg)
    chiplets = proto.topology.chiplets_per_group
    hdr = Signal(header_layout(cfg), name=f"{name}_header")
    m.d.comb += hdr.eq(stream.payload.data)
    index = Signal(range(proto.max_payload_flits + 2), name=f"{name}_index")
    length = Signal(len(hdr.length), name=f"{name}_length")
    with m.If(stream.valid & stream.payload.first):
        m.d.comb += [Assume(stream.payload.last == (hdr.length == 0)),
                     Assume(hdr.length <= proto.max_dispatch_flits)]
        if dispatch_node is not None:
            mask = hdr.meta.dispatch.chiplets.as_value()
            with m.If((hdr.kind == PacketKind.DISPATCH) & (hdr.dst == dispatch_node)):
                tokens = 1 + hdr.meta.dispatch.backward   # a backward dispatch: the output gradient and the token
                m.d.comb += Assume(hdr.length == sum(mask[chiplet] for chiplet in range(chiplets)) * proto.route_flits
                                   + tokens * proto.token_flits)
    with m.Elif(stream.valid):
        m.d.comb += Assume(stream.payload.last == (index == length))
    with m.If(stream.valid & stream.ready):
        m.d.sync += index.eq(index + 1)
        with m.If(stream.payload.first):
            m.d.sync += [index.eq(1), length.eq(hdr.length)]
    flit = Signal.like(index, name=f"{name}_flit")
    m.d.comb += flit.eq(Mux(stream.payload.first, 0, index))
    return hdr, flit
