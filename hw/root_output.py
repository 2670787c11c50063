"""The root's output streamer: returns the combined outputs on ``host_out`` in token (ring) order."""

from __future__ import annotations

from amaranth import Cat, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import Out

from .protocol import link_signature
from .root_interfaces import accumulator_layout, release_signature

__all__ = ["RootOutputStreamer"]


class RootOutputStreamer(wiring.Component):
    """Waits for the next combine entry in ring order to be complete, then streams its output and frees it.

    An output is ``partial_flits`` flits (``first`` on the first, ``last`` on the last), each accumulator element
    saturated once to ``partial_bits`` (:func:`mozart.model.golden.reduce_partials`).

    Members
    -------
    release : Out(release_signature)
        The combine tracker's entries: completeness, accumulator words, ``done`` after the last flit.
    host_out : Out(link_signature(cfg))
        The outputs, in token order.
    idle : Out(1)
        Waiting for the next entry.

    Latency and throughput
    ----------------------
    The first flit is offered the cycle after the entry is complete, then one flit per cycle as ``host_out``
    takes them; the next entry is looked at the cycle after the last flit.
    """

    def __init__(self, contract):
        self.contract = contract
        super().__init__({
            "release": Out(release_signature(contract)),
            "host_out": Out(link_signature(contract.cfg)),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        partial_bits, entries = self.contract.cfg.numerics.partial_bits, self.contract.entries
        output_flits = self.contract.host.output_flits
        entry, flit, out = self.release.entry, self.release.flit, self.host_out
        low, high = -(1 << (partial_bits - 1)), (1 << (partial_bits - 1)) - 1
        sums = [element.as_signed() for element in accumulator_layout(self.contract)(self.release.data)]
        saturated = [Mux(value > high, high, Mux(value < low, low, value))[:partial_bits] for value in sums]
        with m.FSM(name="out"):
            with m.State("WAIT"):
                m.d.comb += self.idle.eq(1)
                with m.If(self.release.complete):
                    m.d.sync += flit.eq(0)
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [out.valid.eq(1), out.payload.data.eq(Cat(*saturated)), out.payload.first.eq(flit == 0),
                             out.payload.last.eq(flit == output_flits - 1)]
                with m.If(out.ready):
                    m.d.sync += flit.eq(flit + 1)
                    with m.If(flit == output_flits - 1):
                        m.d.comb += self.release.done.eq(1)
                        m.d.sync += entry.eq(Mux(entry == entries - 1, 0, entry + 1))
                        m.next = "WAIT"
        return m
