"""The root's combine tracker: the combine entries, their accumulators and the results outstanding per group."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import COUNTER_BITS

from .root_interfaces import (accumulator_layout, bits, entry_probe_signature, issue_layout, release_signature,
                              result_layout)

__all__ = ["RootCombineTracker"]


class RootCombineTracker(wiring.Component):
    """Books dispatches and results per combine entry, adds the results up and says when an entry is complete.

    An entry (one per tag, ``contract.entries``) holds ``occupied`` (from a ``first`` dispatch until its output
    was returned), ``final`` (its last dispatch was sent), the results expected so far (``sent``) and arrived
    (``received``), counted modulo ``2 ** result_counter_bits`` (at most ``top_k`` in flight), and ``fresh`` (no
    result yet: the accumulator still holds the previous token's sum). Every COMBINE flit on ``results`` is added
    element-wise into the entry's accumulator word in ``partial_bits + guard_bits`` bits, so the sum is exact;
    the output streamer saturates it once. Per group the results outstanding are counted for WAIT_COMBINED.

    Each per-entry memory word has one writer per field and side (the dispatch, the receiver, the release); a
    first dispatch finds its entry free and results arrive only for an occupied entry, so the two writers of a
    flag never write one entry in the same cycle. Read ports are combinational: a read sees the registered state.

    Members
    -------
    issued : In(stream.Signature(issue_layout, always_ready=True))
        A dispatch taken: entry, ``first``/``final``, results per group.
    results : In(stream.Signature(result_layout, always_ready=True))
        COMBINE data flits.
    entry : In(entry_probe_signature).array(window)
        Is an entry occupied (for each position of the issue window).
    release : In(release_signature)
        An entry's completeness and accumulator words (for the output streamer); ``done`` frees the entry.
    groups_drained : Out(groups)
        Bit ``g``: no result of group ``g`` outstanding.
    idle : Out(1)
        No entry occupied and no result outstanding.

    Latency and throughput
    ----------------------
    A dispatch or a result flit is booked in the cycle it arrives (one of each per cycle) and is visible the
    next cycle; a result flit is accumulated at one per cycle.
    """

    def __init__(self, contract):
        cfg = contract.cfg
        self.contract = contract
        #: bits of the per-entry result counters (mod 2**bits; at most top_k results in flight per entry)
        self.result_counter_bits = max(2, (cfg.moe.top_k + 1).bit_length() + 1)
        super().__init__({
            "issued": In(stream.Signature(bits(issue_layout(contract)), always_ready=True)),
            "results": In(stream.Signature(bits(result_layout(contract)), always_ready=True)),
            "entry": In(entry_probe_signature(contract)).array(contract.window),
            "release": In(release_signature(contract)),
            "groups_drained": Out(cfg.groups),
            "idle": Out(1),
        })

    def _accumulate(self, m, fresh):
        """Adds each result flit into its entry's accumulator word (the first result of a token overwrites)."""
        numerics, output_flits = self.contract.cfg.numerics, self.contract.host.output_flits
        layout = accumulator_layout(self.contract)
        m.submodules.accumulator = accumulator = Memory(shape=layout.size, depth=self.contract.entries * output_flits,
                                                         init=[])
        read, write = accumulator.read_port(domain="comb"), accumulator.write_port()
        result = result_layout(self.contract)(self.results.payload)
        m.d.comb += [read.addr.eq(result.entry * output_flits + result.flit), write.addr.eq(read.addr)]
        old = layout(read.data)
        partial_bits = numerics.partial_bits
        m.d.comb += [write.data.eq(Cat(*((Mux(fresh, 0, old[i].as_signed())
                                          + result.data[i * partial_bits:(i + 1) * partial_bits].as_signed())
                                         [:len(old[i])] for i in range(layout.length)))),
                     write.en.eq(self.results.valid)]
        released = accumulator.read_port(domain="comb")
        m.d.comb += [released.addr.eq(self.release.entry * output_flits + self.release.flit),
                     self.release.data.eq(released.data)]

    def elaborate(self, platform):
        m = Module()
        cfg, entries, counter = self.contract.cfg, self.contract.entries, self.result_counter_bits
        issued = issue_layout(self.contract)(self.issued.payload)
        result, release = result_layout(self.contract)(self.results.payload), self.release
        dispatch_layout = data.StructLayout({"final": 1, "sent": counter})
        m.submodules.entry_dispatch = dispatch_mem = Memory(shape=dispatch_layout, depth=entries, init=[])
        m.submodules.entry_received = received_mem = Memory(shape=counter, depth=entries, init=[])
        m.submodules.entry_occupied = occupied_mem = Memory(shape=1, depth=entries, init=[])
        m.submodules.entry_fresh = fresh_mem = Memory(shape=1, depth=entries, init=[])
        dispatched = dispatch_mem.read_port(domain="comb")
        m.d.comb += dispatched.addr.eq(issued.entry)
        for probe in self.entry:
            occupied = occupied_mem.read_port(domain="comb")
            m.d.comb += [occupied.addr.eq(probe.entry), probe.occupied.eq(occupied.data)]
        received, fresh = received_mem.read_port(domain="comb"), fresh_mem.read_port(domain="comb")
        m.d.comb += [received.addr.eq(result.entry), fresh.addr.eq(result.entry)]
        self._accumulate(m, fresh.data)

        release_dispatched, release_received, release_occupied = (
            mem.read_port(domain="comb") for mem in (dispatch_mem, received_mem, occupied_mem))
        m.d.comb += [port.addr.eq(release.entry) for port in (release_dispatched, release_received, release_occupied)]
        m.d.comb += release.complete.eq(release_occupied.data & release_dispatched.data.final
                                        & (release_dispatched.data.sent == release_received.data))

        result_done = Signal()
        m.d.comb += result_done.eq(self.results.valid & result.last)
        first_dispatch = self.issued.valid & issued.first
        dispatch_write = dispatch_mem.write_port()
        total = sum(issued.results[g] for g in range(cfg.groups))
        m.d.comb += [dispatch_write.addr.eq(issued.entry), dispatch_write.en.eq(self.issued.valid),
                     dispatch_write.data.sent.eq(dispatched.data.sent + total[:counter]),
                     dispatch_write.data.final.eq(Mux(issued.first, issued.final,
                                                      dispatched.data.final | issued.final))]
        received_write = received_mem.write_port()
        m.d.comb += [received_write.addr.eq(result.entry), received_write.en.eq(result_done),
                     received_write.data.eq(received.data + 1)]
        for mem, clear_entry, clear in ((occupied_mem, release.entry, release.done),
                                        (fresh_mem, result.entry, result_done)):
            set_write, clear_write = mem.write_port(), mem.write_port()
            m.d.comb += [set_write.addr.eq(issued.entry), set_write.en.eq(first_dispatch), set_write.data.eq(1),
                         clear_write.addr.eq(clear_entry), clear_write.en.eq(clear), clear_write.data.eq(0)]
        occupied_count = Signal(range(entries + 1))
        m.d.sync += occupied_count.eq(occupied_count + first_dispatch - release.done)

        # results outstanding per group (wrapping status counters)
        outstanding = [Signal(COUNTER_BITS, name=f"outstanding{g}") for g in range(cfg.groups)]
        for g in range(cfg.groups):
            booked = Mux(self.issued.valid, issued.results[g], 0)
            m.d.sync += outstanding[g].eq(outstanding[g] + booked - (result_done & (result.group == g)))
        m.d.comb += [self.groups_drained.eq(Cat(*(count == 0 for count in outstanding))),
                     self.idle.eq((occupied_count == 0) & ~Cat(*(count != 0 for count in outstanding)).any())]
        return m
