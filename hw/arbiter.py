"""A packet-granular round-robin arbiter with a wormhole lock: who owns one output, packet by packet."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["PacketArbiter", "lowest_one", "lowest_index"]


def lowest_one(value, width: int):
    """The lowest set bit of ``value`` as a one-hot value of ``width`` bits (0 when none is set)."""
    return (value & (-value))[:width]


def lowest_index(bits: list) -> tuple:
    """``(any, index)`` of a list of 1-bit values: whether one is set, and the index of the lowest set one."""
    index = Const(0, max(1, (len(bits) - 1).bit_length()))
    for i in reversed(range(len(bits))):
        index = Mux(bits[i], i, index)
    return Cat(*bits).any(), index


class PacketArbiter(wiring.Component):
    """Round-robin arbitration among ``n`` requesters, one packet at a time.

    While the output is free, ``grant`` picks combinationally the first requester after the one granted last
    (cyclically), so a head flit can pass in the cycle it arrives. From that cycle on the grant is *locked* to
    the winner, whatever the requests do, until ``done`` reports the packet's tail transfer: the packet's flits
    go out without any other packet's flits between them (wormhole), and a multicast source can keep the
    outputs it already holds while it waits for the rest (the lock is taken at grant, not at first transfer).

    Fairness: the priority pointer moves past each winner, so a requester that keeps requesting is granted
    after at most ``n - 1`` other packets: no starvation.

    Parameters
    ----------
    n : int
        Number of requesters (at least 1).

    Members
    -------
    requests : In(n)
        Bit ``k``: requester ``k`` has a head flit for this output. Looked at only while the output is free.
    grant : Out(n)
        One-hot owner of the output, or 0. Combinational from ``requests`` while free, registered while locked.
    done : In(1)
        The owner's tail flit (``last``) transfers on the output in this cycle: the lock ends after this cycle.
    locked : Out(1)
        A packet owns the output (it was granted in an earlier cycle and its tail has not passed).

    Attributes
    ----------
    latency : int
        0: a request is granted in its own cycle when the output is free.
    """

    def __init__(self, n: int):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"PacketArbiter requester count must be a positive integer, not {n!r}")
        self._n = n
        super().__init__({"requests": In(n), "grant": Out(n), "done": In(1), "locked": Out(1)})

    @property
    def n(self) -> int:
        return self._n

    def elaborate(self, platform):
        m = Module()
        requesters = self._n
        owner = Signal(requesters)         # one-hot, valid while locked
        last = Signal(range(requesters))   # index of the last winner: the priority pointer
        pick = Signal(requesters)

        # Requesters after the last winner go first; if none, wrap around to the lowest.
        above = Signal(requesters)
        for requester in range(requesters):
            m.d.comb += above[requester].eq(last < requester)
        high = Signal(requesters)
        m.d.comb += [
            high.eq(self.requests & above),
            pick.eq(Mux(high.any(), lowest_one(high, requesters), lowest_one(self.requests, requesters))),
            self.grant.eq(Mux(self.locked, owner, pick)),
        ]

        with m.If(~self.locked & pick.any()):
            m.d.sync += last.eq(_index(m, pick, requesters))
        # Lock at grant; unlock after the tail (a one-flit packet granted and done in one cycle never locks).
        with m.If(self.done):
            m.d.sync += self.locked.eq(0)
        with m.Elif(~self.locked & pick.any()):
            m.d.sync += [self.locked.eq(1), owner.eq(pick)]
        return m


def _index(m: Module, onehot, requesters: int):
    """The index of a one-hot value (OR of the indices of its set bits)."""
    index = Signal(range(requesters), name="onehot_index")
    value = 0
    for requester in range(1, requesters):
        value = value | Mux(onehot[requester], requester, 0)
    m.d.comb += index.eq(value)
    return index
