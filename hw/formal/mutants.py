"""Deliberately broken variants of the blocks: each breaks one thing, and a property must catch it.

Each mutant subclasses the real block (same constructor, same ports) and wraps a real instance, breaking one
connection. ``marked`` flits (low data byte ``MARK``) trigger the fault, so the solver has to find them.
"""

from __future__ import annotations

from contextlib import contextmanager

from amaranth import Module, Mux, Signal
from amaranth.lib.wiring import In

from .. import packet_mux as packet_mux_module
from .. import reducer as reducer_module
from .. import switch as switch_module
from ..arbiter import PacketArbiter
from ..link_fifo import LinkFifo
from ..packet_mux import PacketMux
from ..reducer import Reducer
from ..switch import Switch
from ..switch_input import SwitchInput

__all__ = [
    "MARK", "DroppingFifo", "DuplicatingFifo", "StallingFifo", "FlickeringFifo", "HeadlessFifo",
    "StarvingArbiter", "DoubleGrantArbiter", "UnlockedArbiter", "UnaskedArbiter", "DuplicatingMux",
    "InterleavingMux", "FlickeringMux", "ReplicaDuplicatingInput", "MisroutingInput", "ReplicaDroppingInput",
    "OverbookingInput", "StallingInput", "FlickeringInput", "HeadlessInput", "EarlyReducer",
    "ForgetfulReducer", "DoubleAllocReducer", "OverbookingReducer", "StallingReducer", "FlickeringReducer",
    "HeadlessReducer", "MisroutingSwitch", "FlickeringSwitch", "HeadlessSwitch", "DuplicatingQueueSwitch",
    "DetouringInput", "DetouringSwitch",
]

#: The low data byte of a flit that triggers a mutant's fault.
MARK = 0x5A


def marked(payload):
    return payload.data[:8] == MARK


@contextmanager
def patched(module, name: str, value):
    """While elaborating a real block, replace a class or function its module looks up (``module.name``), so
    that the block's own code runs with one broken part."""
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


def clear_first(m, out, inner) -> None:
    """Pass ``inner`` to ``out`` with ``first`` cleared (a framing fault)."""
    m.d.comb += out.payload.first.eq(0)


def output_fault(base, name: str, output, fault, doc: str):
    """A mutant class: ``base`` (a wrapper) with ``fault(m, output(self), output(real))`` on one output."""
    def wire(self, m, real):
        fault(m, output(self), output(real))
    return type(name, (base,), {"wire": wire, "__doc__": doc, "__module__": __name__})


class _Wrapper:
    """Base of the mutants that wrap a real block: every port goes straight through (``connect_through``),
    then :meth:`wire` breaks one connection (a later comb assignment wins)."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.real = real = self.make_real()
        connect_through(m, self, real)
        self.wire(m, real)
        return m

    def make_real(self):
        raise NotImplementedError

    def wire(self, m, real):
        pass


def connect_through(m, outer, inner) -> None:
    """Every port of ``outer`` to the same port of ``inner`` (same signature): inputs in, outputs out. A
    mutant's ``wire`` then overrides one connection (the later comb assignment wins)."""
    for (_, member, mine), (_, _, theirs) in zip(outer.signature.flatten(outer), inner.signature.flatten(inner)):
        m.d.comb += theirs.eq(mine) if member.flow == In else mine.eq(theirs)


def swap_streams(m, outer, inner) -> None:
    """Drive ``outer[1]`` from ``inner[2]`` and ``outer[2]`` from ``inner[1]`` (the outputs of chiplets 0, 1)."""
    for mine, theirs in ((outer[1], inner[2]), (outer[2], inner[1])):
        m.d.comb += [mine.valid.eq(theirs.valid), mine.payload.eq(theirs.payload), theirs.ready.eq(mine.ready)]


def refuse_marked(m, outer, inner) -> None:
    """Never take a marked flit from ``outer`` (nor pass it to ``inner``): everything behind it waits forever."""
    hide = marked(outer.payload)
    m.d.comb += [inner.valid.eq(outer.valid & ~hide), outer.ready.eq(inner.ready & ~hide)]


def withdraw_after_wait(m, out, inner) -> None:
    """Pass ``inner`` to ``out``, but withdraw valid for a cycle after a cycle of waiting (a stream-rule fault)."""
    waited = Signal()
    m.d.sync += waited.eq(out.valid & ~out.ready)
    m.d.comb += [out.valid.eq(inner.valid & ~waited), inner.ready.eq(out.ready & ~waited)]


def send_marked_twice(m, out, inner) -> None:
    """Pass ``inner`` to ``out``, but hide a marked flit's first transfer from ``inner``: it goes out twice."""
    again = Signal()  # the marked flit already went out once
    with m.If(out.valid & out.ready):
        m.d.sync += again.eq(marked(out.payload) & ~again)
    m.d.comb += inner.ready.eq(out.ready & (again | ~marked(out.payload)))


class _WrappedFifo(_Wrapper, LinkFifo):
    """A LinkFifo whose ports go through a real LinkFifo; subclasses break one connection in :meth:`wire`."""

    def make_real(self):
        return LinkFifo(self._cfg, self.contract.depth)


class DroppingFifo(_WrappedFifo):
    """Takes a marked flit on ``i`` and never stores it (a lost flit)."""

    def wire(self, m, real):
        m.d.comb += real.i.valid.eq(self.i.valid & ~marked(self.i.payload))


class StallingFifo(_WrappedFifo):
    """Never offers a marked flit (and everything behind it waits forever)."""

    def wire(self, m, real):
        hide = marked(real.o.payload)
        m.d.comb += [self.o.valid.eq(real.o.valid & ~hide), real.o.ready.eq(self.o.ready & ~hide)]


# -- arbiter ----------------------------------------------------------------------------------------------

class _WrappedArbiter(_Wrapper, PacketArbiter):
    """A PacketArbiter whose ports go through a real one; subclasses break one connection in :meth:`wire`."""

    def make_real(self):
        return PacketArbiter(self.n)


class StarvingArbiter(_WrappedArbiter):
    """Ignores the last requester while any other one requests (it starves under load)."""

    def wire(self, m, real):
        last = self.n - 1
        others = self.requests & ~(1 << last)
        m.d.comb += real.requests.eq(Mux(others.any(), others, self.requests))


class DoubleGrantArbiter(_WrappedArbiter):
    """Also grants the requester after the winner."""

    def wire(self, m, real):
        m.d.comb += self.grant.eq(real.grant | (real.grant << 1)[:self.n])


class UnlockedArbiter(_WrappedArbiter):
    """Ends every lock at once (as if every flit were a tail): packets can be cut by other packets."""

    def wire(self, m, real):
        m.d.comb += real.done.eq(1)


class UnaskedArbiter(_WrappedArbiter):
    """Grants requester 0 when nobody asks."""

    def wire(self, m, real):
        m.d.comb += self.grant.eq(Mux(self.requests.any() | real.locked, real.grant, 1))


# -- packet mux -------------------------------------------------------------------------------------------

class _WrappedMux(_Wrapper, PacketMux):
    """A PacketMux whose ports go through a real one; subclasses break one connection in :meth:`wire`."""

    def __init__(self, layout, n):
        self._layout = layout
        super().__init__(layout, n)

    def make_real(self):
        return PacketMux(self._layout, self.n)


class InterleavingMux(_WrappedMux):
    """Built on an arbiter whose lock ends after every flit: another input can cut into a packet."""

    def make_real(self):
        return _PacketMuxWith(self._layout, self.n, UnlockedArbiter)


class _PacketMuxWith(PacketMux):
    """The real PacketMux with another arbiter class (its elaborate looks ``PacketArbiter`` up in its module)."""

    def __init__(self, layout, n, arbiter):
        self._arbiter = arbiter
        super().__init__(layout, n)

    def elaborate(self, platform):
        with patched(packet_mux_module, "PacketArbiter", self._arbiter):
            return super().elaborate(platform)


# -- switch input -----------------------------------------------------------------------------------------

class _WrappedInput(_Wrapper, SwitchInput):
    """A SwitchInput whose ports go through a real one; subclasses break one connection in :meth:`wire`."""

    def make_real(self):
        return SwitchInput(self._cfg, self._group, self._port)


class ReplicaDuplicatingInput(_WrappedInput):
    """Offers each flit to chiplet 0's output twice (the first transfer is hidden from the real unit)."""

    def wire(self, m, real):
        once = Signal()
        with m.If(self.o[1].valid & self.o[1].ready):
            m.d.sync += once.eq(~once)
        m.d.comb += real.o[1].ready.eq(self.o[1].ready & once)


class MisroutingInput(_WrappedInput):
    """Swaps the outputs of chiplets 0 and 1."""

    def wire(self, m, real):
        swap_streams(m, self.o, real.o)


class ReplicaDroppingInput(_WrappedInput):
    """Never offers anything to chiplet 0's output, and tells the real unit it was taken."""

    def wire(self, m, real):
        m.d.comb += [self.o[1].valid.eq(0), real.o[1].ready.eq(1)]


class OverbookingInput(_WrappedInput):
    """Lets a reducing dispatch go while the reduction table is full."""

    def wire(self, m, real):
        m.d.comb += real.alloc_free.eq(1)


class StallingInput(_WrappedInput):
    """Never passes a marked flit (and nothing behind it moves)."""

    def wire(self, m, real):
        refuse_marked(m, self.i, real.i)


# -- reducer ----------------------------------------------------------------------------------------------

class _WrappedReducer(_Wrapper, Reducer):
    """A Reducer whose ports go through a real one; subclasses break one connection in :meth:`wire`."""

    def make_real(self):
        return Reducer(self._cfg, self._group, self._entries)


class EarlyReducer(_WrappedReducer):
    """Opens entries expecting one partial fewer than asked: the sum leaves before the last partial."""

    def wire(self, m, real):
        m.d.comb += real.alloc_count.eq(self.alloc_count - 1)


class ForgetfulReducer(_WrappedReducer):
    """Adds zeros instead of the last partial's payload."""

    def wire(self, m, real):
        summing = Signal()  # the partial being passed in is the last one: its result is on o
        with m.If(self.i.valid & self.i.ready):
            with m.If(self.i.payload.first):
                m.d.sync += summing.eq(real.o.valid & ~self.i.payload.last & (real.o.payload.data
                                       != self.i.payload.data))  # a header rewritten (src = the switch)
        with m.If(summing & ~self.i.payload.first):
            m.d.comb += real.i.payload.data.eq(0)


class DoubleAllocReducer(_WrappedReducer):
    """Takes the two lowest free entries for one allocation (one of them is never freed)."""

    def make_real(self):
        return _ReducerWith(self._cfg, self._group, self._entries, _lowest_two)


class StallingReducer(_WrappedReducer):
    """Never takes a marked flit (and nothing behind it moves)."""

    def wire(self, m, real):
        refuse_marked(m, self.i, real.i)


class OverbookingReducer(_WrappedReducer):
    """Reports a free entry when the table is full (the allocation is then lost)."""

    def wire(self, m, real):
        m.d.comb += self.alloc_free.eq(1)


def _lowest_two(value, width):
    first = value & (-value)
    rest = value & ~first
    return (first | (rest & (-rest)))[:width]


class _ReducerWith(Reducer):
    """The real Reducer with another free-entry picker (its elaborate looks ``lowest_one`` up in its module)."""

    def __new__(cls, cfg, group, entries, picker):
        return super().__new__(cls, cfg, group, entries)

    def __init__(self, cfg, group, entries, picker):
        self._picker = picker
        super().__init__(cfg, group, entries)

    def elaborate(self, platform):
        with patched(reducer_module, "lowest_one", self._picker):
            return super().elaborate(platform)


# -- switch -----------------------------------------------------------------------------------------------

class _WrappedSwitch(_Wrapper, Switch):
    """A Switch whose ports go through a real one; subclasses break one connection in :meth:`wire`."""

    def make_real(self):
        c = self.contract
        return Switch(self._cfg, c.group, buffer_depth=c.buffer_depth, reduction_entries=c.reduction_entries,
                      voq=c.voq)


class MisroutingSwitch(_WrappedSwitch):
    """Swaps the output ports of chiplets 0 and 1."""

    def wire(self, m, real):
        swap_streams(m, self.port_out, real.port_out)


class DuplicatingQueueSwitch(Switch):
    """Built with queues that send a marked flit twice."""

    def elaborate(self, platform):
        with patched(switch_module, "LinkFifo", DuplicatingFifo):
            return super().elaborate(platform)


class DetouringInput(_WrappedInput):
    """On a chiplet port, sends a marked packet that goes up through the reducer's queue instead (the reducer
    passes it through unchanged), so the packets behind it on the direct queue can overtake it."""

    def wire(self, m, real):
        if not 1 <= self._port <= self._chiplets:
            return
        up, reducer = self.o[0], self.o[self._ports]
        divert = Signal()  # the open packet is diverted
        now = Mux(self.i.payload.first, marked(self.i.payload), divert)
        with m.If(self.i.valid & self.i.ready & self.i.payload.first):
            m.d.sync += divert.eq(marked(self.i.payload))
        with m.If(now):
            m.d.comb += [reducer.valid.eq(real.o[0].valid), reducer.payload.eq(real.o[0].payload),
                         real.o[0].ready.eq(reducer.ready), up.valid.eq(0)]


class DetouringSwitch(Switch):
    """Built with :class:`DetouringInput` s: a flow's packets can leave out of order."""

    def elaborate(self, platform):
        with patched(switch_module, "SwitchInput", DetouringInput):
            return super().elaborate(platform)


# -- output faults of every block: stream rules, framing, duplication --------------------------------------

DuplicatingFifo = output_fault(_WrappedFifo, "DuplicatingFifo", lambda b: b.o, send_marked_twice,
                               "Sends a marked flit twice.")
FlickeringFifo = output_fault(_WrappedFifo, "FlickeringFifo", lambda b: b.o, withdraw_after_wait,
                              "Withdraws ``o.valid`` for a cycle after a cycle of waiting.")
HeadlessFifo = output_fault(_WrappedFifo, "HeadlessFifo", lambda b: b.o, clear_first,
                            "Clears ``first`` on every flit it sends: packets lose their heads.")
DuplicatingMux = output_fault(_WrappedMux, "DuplicatingMux", lambda b: b.o, send_marked_twice,
                              "Sends a marked flit twice: the first time it does not tell its input.")
FlickeringMux = output_fault(_WrappedMux, "FlickeringMux", lambda b: b.o, withdraw_after_wait,
                             "Withdraws ``o.valid`` for a cycle after a cycle of waiting.")
FlickeringInput = output_fault(_WrappedInput, "FlickeringInput", lambda b: b.o[0], withdraw_after_wait,
                               "Withdraws the up output's valid for a cycle after a cycle of waiting.")
HeadlessInput = output_fault(_WrappedInput, "HeadlessInput", lambda b: b.o[0], clear_first,
                             "Clears ``first`` on the up output.")
HeadlessReducer = output_fault(_WrappedReducer, "HeadlessReducer", lambda b: b.o, clear_first,
                               "Clears ``first`` on every flit it sends.")
FlickeringReducer = output_fault(_WrappedReducer, "FlickeringReducer", lambda b: b.o, withdraw_after_wait,
                                 "Withdraws ``o.valid`` for a cycle after a cycle of waiting.")
FlickeringSwitch = output_fault(_WrappedSwitch, "FlickeringSwitch", lambda b: b.port_out[0], withdraw_after_wait,
                                "Withdraws the up port's valid for a cycle after a cycle of waiting.")
HeadlessSwitch = output_fault(_WrappedSwitch, "HeadlessSwitch", lambda b: b.port_out[0], clear_first,
                              "Clears ``first`` on the up port.")
