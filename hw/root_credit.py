"""The root's backward credit: per expert chiplet, the backward replicas sent and not yet answered by a GATE_GRAD."""

from __future__ import annotations

from amaranth import Cat, Module, Mux
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .root_interfaces import bits, replicas_layout

__all__ = ["RootBackwardCredit"]


class RootBackwardCredit(wiring.Component):
    """Counts, per wafer-wide chiplet, the backward replicas in flight (``docs/protocol.md``'s promise 1).

    A chiplet holds at most ``hardware.token_slots`` tokens; a backward DISPATCH that found none free would wait
    at the chiplet's input and block the restore's MEM_DATA behind it, so the tokens inside could never finish:
    a deadlock. The root therefore dispatches a backward token only while every chiplet it goes to has room for
    its replicas (:class:`~mozart.hw.root_issue_window.RootIssueWindow` reads ``in_flight``); the chiplet answers
    each backward replica with one GATE_GRAD, which gives the credit back. Forward tokens take no credit (the
    chiplet's input never waits for them: its forward results leave without a restore).

    Members
    -------
    spent : In(stream.Signature(replicas_layout, always_ready=True))
        A backward token dispatched: its replicas per chiplet (1 de-duplicated, else its experts there).
    answered : In(stream.Signature(range(chiplets), always_ready=True))
        A GATE_GRAD arrived from this wafer-wide chiplet.
    in_flight : Out(replicas_layout)
        Per chiplet, the replicas sent and not answered (``0..contract.credit_limit``).
    idle : Out(1)
        No replica in flight.

    Latency and throughput
    ----------------------
    A spend and an answer (both may come in one cycle, also for one chiplet) are counted in the cycle they
    arrive and are visible on ``in_flight`` the next cycle.
    """

    def __init__(self, contract):
        self.contract = contract
        self.layout = replicas_layout(contract)
        super().__init__({
            "spent": In(stream.Signature(bits(self.layout), always_ready=True)),
            "answered": In(stream.Signature(range(contract.chiplets), always_ready=True)),
            "in_flight": Out(bits(self.layout)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        in_flight, spent = self.layout(self.in_flight), self.layout(self.spent.payload)
        for chiplet in range(self.contract.chiplets):
            given = Mux(self.spent.valid, spent[chiplet], 0)
            returned = self.answered.valid & (self.answered.payload == chiplet)
            m.d.sync += in_flight[chiplet].eq(in_flight[chiplet] + given - returned)
        m.d.comb += self.idle.eq(~Cat(*(in_flight[c] != 0 for c in range(self.contract.chiplets))).any())
        return m
