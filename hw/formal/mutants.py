"""Deliberately broken variants of the blocks: each breaks one thing, and a property must catch it.

Each mutant subclasses the real block (same constructor, same ports) and wraps a real instance, breaking one
connection. ``marked`` flits (low data byte ``MARK``) trigger the fault, so the solver has to find them.
"""

from __future__ import annotations

from amaranth import Module, Mux, Signal

from .. import packet_mux as packet_mux_module
from ..arbiter import PacketArbiter
from ..link_fifo import LinkFifo
from ..packet_mux import PacketMux

__all__ = ["MARK", "DroppingFifo", "DuplicatingFifo", "StallingFifo", "FlickeringFifo", "HeadlessFifo"]

#: The low data byte of a flit that triggers a mutant's fault.
MARK = 0x5A


def marked(payload):
    return payload.data[:8] == MARK


class _WrappedFifo(LinkFifo):
    """A LinkFifo whose ports go through a real LinkFifo; subclasses break one connection in :meth:`wire`."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.real = real = LinkFifo(self._cfg, self._depth)
        m.d.comb += [real.i.payload.eq(self.i.payload), real.i.valid.eq(self.i.valid),
                     self.i.ready.eq(real.i.ready), self.o.payload.eq(real.o.payload),
                     self.o.valid.eq(real.o.valid), real.o.ready.eq(self.o.ready)]
        self.wire(m, real)
        return m

    def wire(self, m, real):
        raise NotImplementedError


class DroppingFifo(_WrappedFifo):
    """Takes a marked flit on ``i`` and never stores it (a lost flit)."""

    def wire(self, m, real):
        m.d.comb += real.i.valid.eq(self.i.valid & ~marked(self.i.payload))


class DuplicatingFifo(_WrappedFifo):
    """Sends a marked flit twice."""

    def wire(self, m, real):
        again = Signal()  # the marked flit at the head already went out once
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += again.eq(marked(self.o.payload) & ~again)
        m.d.comb += real.o.ready.eq(self.o.ready & (again | ~marked(self.o.payload)))


class StallingFifo(_WrappedFifo):
    """Never offers a marked flit (and everything behind it waits forever)."""

    def wire(self, m, real):
        hide = marked(real.o.payload)
        m.d.comb += [self.o.valid.eq(real.o.valid & ~hide), real.o.ready.eq(self.o.ready & ~hide)]


class FlickeringFifo(_WrappedFifo):
    """Withdraws ``o.valid`` for a cycle after a cycle in which the flit was offered and not taken."""

    def wire(self, m, real):
        waited = Signal()
        m.d.sync += waited.eq(self.o.valid & ~self.o.ready)
        m.d.comb += [self.o.valid.eq(real.o.valid & ~waited), real.o.ready.eq(self.o.ready & ~waited)]


class HeadlessFifo(_WrappedFifo):
    """Clears ``first`` on every flit it sends: packets lose their heads."""

    def wire(self, m, real):
        m.d.comb += self.o.payload.first.eq(0)


# -- arbiter ----------------------------------------------------------------------------------------------

class _WrappedArbiter(PacketArbiter):
    """A PacketArbiter whose ports go through a real one; subclasses break one connection in :meth:`wire`."""

    def elaborate(self, platform):
        m = Module()
        m.submodules.real = real = PacketArbiter(self.n)
        m.d.comb += [real.requests.eq(self.requests), real.done.eq(self.done), self.grant.eq(real.grant),
                     self.locked.eq(real.locked)]
        self.wire(m, real)
        return m

    def wire(self, m, real):
        raise NotImplementedError


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

class _WrappedMux(PacketMux):
    """A PacketMux whose ports go through a real one; subclasses break one connection in :meth:`wire`."""

    def __init__(self, layout, n):
        self._layout = layout
        super().__init__(layout, n)

    def elaborate(self, platform):
        m = Module()
        m.submodules.real = real = self.make_real()
        for mine, theirs in zip(self.i, real.i):
            m.d.comb += [theirs.valid.eq(mine.valid), theirs.payload.eq(mine.payload), mine.ready.eq(theirs.ready)]
        m.d.comb += [self.o.valid.eq(real.o.valid), self.o.payload.eq(real.o.payload),
                     real.o.ready.eq(self.o.ready)]
        self.wire(m, real)
        return m

    def make_real(self):
        return PacketMux(self._layout, self.n)

    def wire(self, m, real):
        pass


class DuplicatingMux(_WrappedMux):
    """Sends a marked flit twice: the first time it does not tell its input that it was taken."""

    def wire(self, m, real):
        again = Signal()
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += again.eq(marked(self.o.payload) & ~again)
        m.d.comb += real.o.ready.eq(self.o.ready & (again | ~marked(self.o.payload)))


class InterleavingMux(_WrappedMux):
    """Built on an arbiter whose lock ends after every flit: another input can cut into a packet."""

    def make_real(self):
        return _PacketMuxWith(self._layout, self.n, UnlockedArbiter)


class FlickeringMux(_WrappedMux):
    """Withdraws ``o.valid`` for a cycle after a cycle in which the flit was offered and not taken."""

    def wire(self, m, real):
        waited = Signal()
        m.d.sync += waited.eq(self.o.valid & ~self.o.ready)
        m.d.comb += [self.o.valid.eq(real.o.valid & ~waited), real.o.ready.eq(self.o.ready & ~waited)]


class _PacketMuxWith(PacketMux):
    """The real PacketMux with another arbiter class (its elaborate looks ``PacketArbiter`` up in its module)."""

    def __init__(self, layout, n, arbiter):
        self._arbiter = arbiter
        super().__init__(layout, n)

    def elaborate(self, platform):
        saved = packet_mux_module.PacketArbiter
        packet_mux_module.PacketArbiter = self._arbiter
        try:
            return super().elaborate(platform)
        finally:
            packet_mux_module.PacketArbiter = saved
