"""The memory controller's reorder window: which waiting request the DRAM serves next (row hits first)."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import Protocol, index_bits

from .dram_interface import command_layout
from .memctrl_request import ResponseOp, request_layout

__all__ = ["ReorderWindow"]


class ReorderWindow(wiring.Component):
    """Up to ``W = dram.reorder_window`` accepted requests wait here, oldest first; each cycle the DRAM can take
    a burst, the window gives it the oldest request that is a row hit and may pass every older waiting
    request, else the oldest (the rules, with the age limit, are in :mod:`mozart.model.dram_timing`, whose
    :meth:`~mozart.model.dram_timing.DramTiming.run` is the cycle-exact twin).

    - Row hit: the request's first word is in the bank and row where the burst given last ends.
    - May pass: different ``source``, disjoint address ranges, not both MEM_WRITEs, not both LOADs. An ERROR
      record (no burst) never is a row hit, so it leaves only as the oldest; it needs no DRAM command.
    - Age limit: the oldest is given next once it has been passed W times, so every request leaves within
      ``W * (W + 1)`` requests given after it entered.

    The request goes to the DRAM (``bursts``) and to the queue of requests in service (``requests_out``) in the
    same cycle, so the responses follow the DRAM's order.

    Members
    -------
    requests_in : In(stream.Signature(request_layout(cfg)))
        Accepted requests, in arrival order.
    source : In(node_bits)
        The ``src`` of the request on ``requests_in``.
    bursts : Out(stream.Signature(command_layout(cfg)))
        To the DRAM: the burst of the request given.
    requests_out : Out(stream.Signature(request_layout(cfg)))
        To the queue of requests in service: the request given.

    Latency and throughput
    ----------------------
    A request taken in cycle ``c`` can leave in ``c + 1``. One request in and one out per cycle; ``requests_in``
    is ready while fewer than W wait or one leaves this cycle.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.size = cfg.dram.reorder_window
        self.age_limit = self.size   # passes of the oldest before it is forced (an assumption: W, not tuned)
        self.proto = Protocol(cfg)
        super().__init__({
            "requests_in": In(stream.Signature(request_layout(cfg))),
            "source": In(self.proto.node_bits),
            "bursts": Out(stream.Signature(command_layout(cfg))),
            "requests_out": Out(stream.Signature(request_layout(cfg))),
        })

    def _row_of(self, addr):
        """``(bank, row)`` of a word address (row:bank:column; constant divisors fold into slices)."""
        row_words, banks = self.cfg.dram.row_words, self.cfg.dram.banks
        return (addr // row_words) % banks, addr // (row_words * banks)

    def _may_pass(self, older, older_source, newer, newer_source):
        """1 when ``newer`` may leave before the waiting ``older`` (:func:`mozart.model.dram_timing.may_pass`)."""
        def burst(record):
            return record.op != ResponseOp.ERROR
        overlap = (burst(older) & burst(newer) & (older.addr < newer.addr + newer.size)
                   & (newer.addr < older.addr + older.size))
        both = [(older.op == op) & (newer.op == op) for op in (ResponseOp.WRITE, ResponseOp.LOAD)]
        return (older_source != newer_source) & ~overlap & ~both[0] & ~both[1]

    def _choose(self, m, entries, sources, valid, tail_valid, tail_bank, tail_row, passed):
        """The position of the request to give: the first row hit that may pass every older one, else 0."""
        candidates = []
        for i, entry in enumerate(entries):
            bank, row = self._row_of(entry.addr)
            hit = valid[i] & tail_valid & (entry.op != ResponseOp.ERROR) & (bank == tail_bank) & (row == tail_row)
            for j in range(i):
                hit &= self._may_pass(entries[j], sources[j], entry, sources[i])
            candidates.append(hit)
        chosen = Signal(range(self.size), name="chosen")
        position = Const(0, chosen.shape())
        for i in reversed(range(1, self.size)):   # the lowest candidate wins; none (or the oldest): 0
            position = Mux(candidates[i], i, position)
        m.d.comb += chosen.eq(Mux(candidates[0] | (passed >= self.age_limit), 0, position))
        return chosen

    def elaborate(self, platform):
        m = Module()
        layout, size = request_layout(self.cfg), self.size
        # Views over plain bits: a Signal of the layout would add a debug alias per field to the Verilog
        entries = [data.View(layout, Signal(layout.size, name=f"entry{i}")) for i in range(size)]
        sources = [Signal(self.proto.node_bits, name=f"source{i}") for i in range(size)]
        valid = Signal(size)                       # waiting requests fill positions 0.. (oldest first)
        count = Signal(range(size + 1))
        passed = Signal(range(size + 1))           # times the oldest was passed
        tail_valid = Signal()                      # the bank and row where the burst given last ends
        tail_bank = Signal(index_bits(self.cfg.dram.banks))
        tail_row = Signal(index_bits(self.cfg.dram.rows))
        chosen = self._choose(m, entries, sources, valid, tail_valid, tail_bank, tail_row, passed)

        given = data.View(layout, Signal(layout.size, name="given"))
        with m.Switch(chosen):
            for i in range(size):
                with m.Case(i):
                    m.d.comb += given.eq(entries[i])
        has_burst = given.op != ResponseOp.ERROR
        leave = Signal()
        enter = Signal()
        m.d.comb += [
            self.bursts.payload.addr.eq(given.addr), self.bursts.payload.words.eq(given.size),
            self.bursts.payload.write.eq(given.op == ResponseOp.WRITE),
            self.requests_out.payload.eq(given),
            self.bursts.valid.eq(valid[0] & has_burst & self.requests_out.ready),
            self.requests_out.valid.eq(valid[0] & Mux(has_burst, self.bursts.ready, 1)),
            leave.eq(self.requests_out.valid & self.requests_out.ready),
            self.requests_in.ready.eq((count < size) | leave),
            enter.eq(self.requests_in.valid & self.requests_in.ready),
        ]
        self._shift(m, entries, sources, valid, count, chosen, leave, enter)
        with m.If(leave):
            m.d.sync += passed.eq(Mux(chosen == 0, 0, passed + 1))
            with m.If(has_burst):
                last_bank, last_row = self._row_of(given.addr + given.size - 1)
                m.d.sync += [tail_valid.eq(1), tail_bank.eq(last_bank), tail_row.eq(last_row)]
        return m

    def _shift(self, m, entries, sources, valid, count, chosen, leave, enter):
        """Remove the request that leaves (the younger ones move down) and append the one that enters."""
        size = self.size
        append_at = Signal(range(size + 1))
        m.d.comb += append_at.eq(count - leave)
        m.d.sync += count.eq(count - leave + enter)
        for i in range(size):
            moves_down = leave & (chosen <= i)
            with m.If(enter & (append_at == i)):
                m.d.sync += [entries[i].eq(self.requests_in.payload), sources[i].eq(self.source), valid[i].eq(1)]
            with m.Elif(moves_down):
                if i + 1 < size:
                    m.d.sync += [entries[i].eq(entries[i + 1]), sources[i].eq(sources[i + 1]),
                                 valid[i].eq(valid[i + 1])]
                else:
                    m.d.sync += valid[i].eq(0)
