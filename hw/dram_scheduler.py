"""The DRAM model's burst scheduler: burst commands in, one column access per cycle out."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import Protocol, index_bits

from .dram_interface import RowRequestSignature, burst_bits, command_layout

__all__ = ["BurstScheduler"]


class BurstScheduler(wiring.Component):
    """Serves burst commands strictly in order through a two-deep pipeline: the *active* burst issues its
    columns, the *next* one waits in a register so its first row can be opened early.

    Address mapping is row:bank:column, so a burst walks its columns, then the next bank, then the next row.
    A column issues when the bank tracker says the active row is open and, for a write, a write word is
    offered, for a read, the read path has room.

    Members
    -------
    cmd : In(stream.Signature(command_layout(cfg)))
        Burst commands (the request queue); at least one word, inside the DRAM.
    rows : Out(RowRequestSignature(cfg))
        To the bank tracker: the active burst's row and the lookahead row; back, whether the active one is open.
    write_word_valid : In(1)
        A write word is offered.
    read_space : In(1)
        The read path can take one more word.
    write_word_ready : Out(1)
        The active burst is a write whose row is open (takes the offered word if valid).
    column_valid, column_addr, column_write : Out
        A column access this cycle.
    write_done : Out(1)
        Pulses one cycle after the last word of a write burst is written.

    Latency and throughput
    ----------------------
    A command taken in cycle ``c`` into an idle scheduler is in the next register in ``c + 1`` and active in
    ``c + 2``, when its first column issues if its row is open. One column per cycle; the next burst follows
    the last column of the active one without a gap. ``cmd`` takes a command whenever the next register is
    free or moves up this cycle.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        addr_bits = Protocol(cfg).addr_bits
        super().__init__({
            "cmd": In(stream.Signature(command_layout(cfg))),
            "rows": Out(RowRequestSignature(cfg)),
            "write_word_valid": In(1),
            "read_space": In(1),
            "write_word_ready": Out(1),
            "column_valid": Out(1), "column_addr": Out(addr_bits), "column_write": Out(1),
            "write_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        row_words, banks = self.cfg.dram.row_words, self.cfg.dram.banks
        layout = command_layout(self.cfg)
        # Views over plain bits: a Signal of the layout would add a debug alias per field to the Verilog
        command = data.View(layout, Signal(layout.size, name="command"))   # the next burst
        next_valid = Signal()
        next_bank = Signal.like(self.rows.active_bank, name="next_bank")
        next_row = Signal.like(self.rows.active_row, name="next_row")
        next_column = Signal(index_bits(row_words))
        active_left = Signal(burst_bits(self.cfg))
        active_column = Signal.like(next_column, name="active_column")
        # the segment after the active one: next bank, or bank 0 of the next row
        following_bank = Signal.like(self.rows.active_bank, name="following_bank")
        following_row = Signal.like(self.rows.active_row, name="following_row")
        last_bank = self.rows.active_bank == banks - 1
        m.d.comb += [
            # row:bank:column; constant divisors, which Yosys and Verilator fold into slices for powers of two
            next_bank.eq((command.addr // row_words) % banks), next_row.eq(command.addr // (row_words * banks)),
            next_column.eq(command.addr % row_words),
            following_bank.eq(Mux(last_bank, 0, self.rows.active_bank + 1)),
            following_row.eq(Mux(last_bank, self.rows.active_row + 1, self.rows.active_row)),
        ]

        # lookahead: the active burst's following segment if it runs past this row, else the next burst's first
        rest_of_row = Signal(range(row_words + 1))
        runs_on = Signal()
        m.d.comb += [
            rest_of_row.eq(row_words - active_column),
            runs_on.eq(self.rows.active_valid & (active_left > rest_of_row)),
            self.rows.lookahead_valid.eq(runs_on | next_valid),
            self.rows.lookahead_bank.eq(Mux(runs_on, following_bank, next_bank)),
            self.rows.lookahead_row.eq(Mux(runs_on, following_row, next_row)),
        ]

        done = Signal()    # the active burst's last column issues
        load = Signal()    # the next burst becomes active
        m.d.comb += [
            self.write_word_ready.eq(self.rows.active_row_open & self.column_write),
            self.column_valid.eq(self.rows.active_row_open & Mux(self.column_write, self.write_word_valid,
                                                            self.read_space)),
            done.eq(self.column_valid & (active_left == 1)),
            load.eq(next_valid & (~self.rows.active_valid | done)),
            self.cmd.ready.eq(~next_valid | load),
        ]
        m.d.sync += self.write_done.eq(done & self.column_write)
        with m.If(self.column_valid):
            m.d.sync += [self.column_addr.eq(self.column_addr + 1), active_left.eq(active_left - 1)]
            with m.If(active_column == row_words - 1):
                m.d.sync += [active_column.eq(0), self.rows.active_bank.eq(following_bank),
                             self.rows.active_row.eq(following_row)]
            with m.Else():
                m.d.sync += active_column.eq(active_column + 1)
        with m.If(load):
            m.d.sync += [self.rows.active_valid.eq(1), self.column_addr.eq(command.addr), active_left.eq(command.words),
                         self.column_write.eq(command.write), self.rows.active_bank.eq(next_bank),
                         self.rows.active_row.eq(next_row), active_column.eq(next_column)]
        with m.Elif(done):
            m.d.sync += self.rows.active_valid.eq(0)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [next_valid.eq(1), command.eq(self.cmd.payload)]
        with m.Elif(load):
            m.d.sync += next_valid.eq(0)
        return m
