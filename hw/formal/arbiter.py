"""Formal harness of :class:`~mozart.hw.arbiter.PacketArbiter`: one owner, wormhole lock, round-robin fairness."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.asserts import AnySeq
from amaranth.hdl import Assume

from mozart.model.protocol import index_bits

from ..arbiter import PacketArbiter
from .harness import FormalHarness, watched_index

__all__ = ["ArbiterHarness"]


class ArbiterHarness(FormalHarness):
    """Free requests; ``done`` (the owner's tail transfer) only while someone is granted. A requester keeps its
    request until it is granted (a head flit waits on its queue).

    Parameters
    ----------
    n : int
        Requesters.
    block : type
        Built as ``block(n)``.
    """

    PROPERTIES = {
        "grant.onehot": "at most one requester is granted",
        "grant.requested": "while free, the grant goes to a requester, and to one whenever any requests",
        "lock": "a grant stays with its owner, whatever the requests do, until done reports the tail",
        "fairness": "a waiting requester is granted before n other grants (round robin; w chosen by the "
                    "solver)",
    }

    def __init__(self, n: int, block=PacketArbiter, only=None):
        self.dut = block(n)
        self.n = n
        self.depth = 3 * n + 4  # n grants of one-cycle packets, plus entry and margin
        super().__init__(only)

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        requesters = self.n
        m.d.comb += [dut.requests.eq(AnySeq(requesters)), dut.done.eq(AnySeq(1))]
        m.d.comb += Assume(~dut.done | dut.grant.any())

        self.check(m, "grant.onehot", (dut.grant & (dut.grant - 1)) == 0)
        with m.If(~dut.locked):
            self.check(m, "grant.requested", (dut.grant & ~dut.requests) == 0)
            self.check(m, "grant.requested", dut.grant.any() == dut.requests.any())

        owner = Signal(requesters)  # the grant of the last cycle, if its packet did not end then
        held = Signal()
        m.d.sync += [owner.eq(dut.grant), held.eq(dut.grant.any() & ~dut.done)]
        with m.If(held):
            self.check(m, "lock", dut.grant == owner)

        # A new grant is a grant that is not the continuation of a held packet.
        new_grant = Signal()
        m.d.comb += new_grant.eq(dut.grant.any() & ~held)
        watched, pick = watched_index(index_bits(requesters), "watched")
        m.d.comb += [pick, Assume(watched < requesters)]
        wants = dut.requests.bit_select(watched, 1)
        waiting = Signal()    # watched requested in an earlier cycle and has not been granted yet
        others = Signal(range(requesters + 1))
        granted_watched = dut.grant.bit_select(watched, 1)
        with m.If(waiting & ~granted_watched):
            m.d.comb += Assume(wants)  # a requester keeps its head flit until it is granted
        with m.If(granted_watched):
            m.d.sync += [waiting.eq(0), others.eq(0)]
        with m.Elif(wants):
            m.d.sync += waiting.eq(1)
            with m.If(new_grant & (others < requesters)):
                m.d.sync += others.eq(others + 1)
        self.check(m, "fairness", others <= requesters - 1)
        return m
