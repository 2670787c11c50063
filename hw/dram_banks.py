"""The DRAM model's bank tracker: open rows, the activation engine and refresh."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from mozart.model.protocol import index_bits

from .dram_interface import RowRequestSignature

__all__ = ["BankTracker"]


class BankTracker(wiring.Component):
    """Which row each bank has open, one activation at a time, and refresh (rules in
    :mod:`mozart.model.dram_timing`).

    The engine opens the active burst's row if it is not open, else the lookahead segment's row (unless that
    is in the active burst's bank); it precharges first if its bank has another row open (``t_rp + t_rcd``
    cycles, else ``t_rcd``, at least 1). Refresh closes every row and holds the engine for ``refresh_cycles``
    of every ``refresh_interval`` cycles.

    Members
    -------
    rows : In(RowRequestSignature(cfg))
        The rows the scheduler needs next; ``active_row_open`` is 1 when the active row is open (or opens this
        cycle) and no refresh runs.

    Latency and throughput
    ----------------------
    A row asked for in cycle ``c`` while the engine is free is open in cycle ``c + max(1, t_rcd)`` (closed
    bank) or ``c + max(1, t_rp + t_rcd)`` (another row open). One activation in flight.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        dram = cfg.dram
        self.bank_shape = unsigned(index_bits(dram.banks))
        self.row_shape = unsigned(index_bits(dram.rows))
        super().__init__({
            "rows": In(RowRequestSignature(cfg)),
        })

    def _refresh(self, m):
        """A signal that is 1 during the last ``refresh_cycles`` of every ``refresh_interval`` cycles."""
        dram = self.cfg.dram
        refresh = Signal()
        if dram.refresh_interval:
            cycle = Signal(range(dram.refresh_interval))
            m.d.sync += cycle.eq(Mux(cycle == dram.refresh_interval - 1, 0, cycle + 1))
            m.d.comb += refresh.eq(cycle >= dram.refresh_interval - dram.refresh_cycles)
        return refresh

    def elaborate(self, platform):
        m = Module()
        dram = self.cfg.dram
        row_bits = self.row_shape.width
        refresh = self._refresh(m)
        open_valid = Signal(dram.banks)               # bit b: bank b has a row open
        open_rows = Signal(dram.banks * row_bits)     # row_bits per bank: the row bank b has open
        opening = Signal()   # an activation is in flight
        opening_bank = Signal(self.bank_shape)
        opening_row = Signal(self.row_shape)
        opening_wait = Signal(range(max(2, dram.t_rp + dram.t_rcd + 1)))
        opened = Signal()    # the activation completes this cycle
        m.d.comb += opened.eq(opening & (opening_wait == 0))

        def is_open(bank, row):
            return ((open_valid.bit_select(bank, 1) & (open_rows.word_select(bank, row_bits) == row))
                    | (opened & (opening_bank == bank) & (opening_row == row)))

        active_open = Signal()
        lookahead_open = Signal()
        m.d.comb += [
            active_open.eq(is_open(self.rows.active_bank, self.rows.active_row)),
            lookahead_open.eq(is_open(self.rows.lookahead_bank, self.rows.lookahead_row)),
            self.rows.active_row_open.eq(self.rows.active_valid & ~refresh & active_open),
        ]
        # the engine's next row: the active burst's, else the lookahead's unless it is in the active bank
        free = Signal()
        for_active = Signal()
        for_lookahead = Signal()
        target = Signal()
        target_bank = Signal(self.bank_shape)
        m.d.comb += [
            free.eq(~refresh & (~opening | opened)),
            for_active.eq(free & self.rows.active_valid & ~active_open),
            for_lookahead.eq(free & ~for_active & self.rows.lookahead_valid & ~lookahead_open
                             & ~(self.rows.active_valid & (self.rows.lookahead_bank == self.rows.active_bank))),
            target.eq(for_active | for_lookahead),
            target_bank.eq(Mux(for_active, self.rows.active_bank, self.rows.lookahead_bank)),
        ]
        target_open = open_valid.bit_select(target_bank, 1) | (opened & (opening_bank == target_bank))
        opened_mask = Mux(opened, 1 << opening_bank, 0)
        target_mask = Mux(target, 1 << target_bank, 0)

        with m.If(refresh):
            m.d.sync += [open_valid.eq(0), opening.eq(0)]
        with m.Else():
            m.d.sync += open_valid.eq((open_valid | opened_mask) & ~target_mask)
            with m.If(opened):
                m.d.sync += [open_rows.word_select(opening_bank, row_bits).eq(opening_row), opening.eq(0)]
            with m.Elif(opening):
                m.d.sync += opening_wait.eq(opening_wait - 1)
            with m.If(target):
                conflict_wait = max(1, dram.t_rp + dram.t_rcd) - 1
                miss_wait = max(1, dram.t_rcd) - 1
                m.d.sync += [
                    opening.eq(1), opening_bank.eq(target_bank),
                    opening_row.eq(Mux(for_active, self.rows.active_row, self.rows.lookahead_row)),
                    opening_wait.eq(Mux(target_open, conflict_wait, miss_wait)),
                ]
        return m
