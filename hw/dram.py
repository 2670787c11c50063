"""A synthesizable, cycle-level model of a group's DRAM (its HBM stack): banks, open rows, refresh.

The timing rules are written down once, in :mod:`mozart.model.dram_timing`; this RTL follows them register
for register and ``tests/test_dram.py`` checks the two against each other cycle for cycle.
"""

from __future__ import annotations

from amaranth.hdl import Module, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mozart.model.dram_timing import DramTiming
from mozart.model.blocks.memctrl import MemoryControllerContract
from mozart.model.protocol import Protocol

from .dram_banks import BankTracker
from .dram_interface import BackdoorSignature, burst_bits, command_layout
from .dram_read_path import ReadPath
from .dram_scheduler import BurstScheduler

__all__ = ["DramModel", "command_layout", "burst_bits", "BackdoorSignature"]


class DramModel(wiring.Component):
    """The group DRAM: ``banks x rows x row_words`` words of ``word_bits``, with open-row timing.

    Address mapping is row:bank:column (``column = a % row_words``, ``bank = (a // row_words) % banks``,
    ``row = a // (row_words * banks)``), so sequential streams hit open rows and the next bank is
    activated while the current one streams. The exact rules (two-deep command pipeline, one activation
    engine with one segment of lookahead, refresh) are in :mod:`mozart.model.dram_timing`.

    Parts: :class:`~mozart.hw.dram_scheduler.BurstScheduler` (takes ``cmd``, issues one column per cycle),
    :class:`~mozart.hw.dram_banks.BankTracker` (open rows, activation, refresh; asked through
    :class:`~mozart.hw.dram_interface.RowRequestSignature`), :class:`~mozart.hw.dram_read_path.ReadPath`
    (``t_cl`` and the read buffer) and the storage.

    Contents live in a ``lib.memory.Memory`` initialised to zero; the quantised weight image is loaded
    through ``backdoor`` (or through ordinary writes), so one Verilator build serves any contents.

    Members
    -------
    cmd : In(stream.Signature(command_layout(cfg)))
        Burst commands, served strictly in order. The caller keeps every burst inside the DRAM and at
        least one word long (the memory controller checks this before it issues one).
    wdata : In(stream.Signature(word_bits))
        Write words, one per word of each write burst, in order.
    rdata : Out(stream.Signature(word_bits))
        Read words, in command order.
    write_done : Out(1)
        Pulses one cycle after the last word of a write burst is written.
    backdoor : In(BackdoorSignature(cfg))
        Untimed storage access for preload and readback; do not write an address a burst is using.
    access_valid, access_addr, access_write : Out
        A column command this cycle (for tests and benchmarks that time every access).

    Latency and throughput
    ----------------------
    From command accept to the first word on ``rdata`` (``timing``, a :class:`~mozart.model.dram_timing.DramTiming`):
    ``hit_latency = 2 + t_cl`` (row open),
    ``miss_latency = 1 + max(1, t_rcd) + t_cl``, ``conflict_latency = 1 + max(1, t_rp + t_rcd) + t_cl``.
    Peak: one word per cycle (``word_bits`` bits), sustained by sequential streams; refresh removes
    ``refresh_cycles`` of every ``refresh_interval`` cycles.
    """

    def __new__(cls, cfg):
        MemoryControllerContract(cfg)   # rejects a DRAM the model cannot time before a component exists
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, cfg):
        self.cfg = cfg
        self.proto = Protocol(cfg)
        #: hit, miss and conflict latencies, peak rate (plain Python, :class:`mozart.model.dram_timing.DramTiming`)
        self.timing = DramTiming(cfg)
        super().__init__({
            "cmd": In(stream.Signature(command_layout(cfg))),
            "wdata": In(stream.Signature(cfg.dram.word_bits)),
            "rdata": Out(stream.Signature(cfg.dram.word_bits)),
            "write_done": Out(1),
            "backdoor": In(BackdoorSignature(cfg)),
            "access_valid": Out(1),
            "access_addr": Out(self.proto.addr_bits),
            "access_write": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        dram = self.cfg.dram
        m.submodules.scheduler = scheduler = BurstScheduler(self.cfg)
        m.submodules.banks = banks = BankTracker(self.cfg)
        m.submodules.read_path = read_path = ReadPath(self.cfg)
        m.submodules.mem = mem = Memory(shape=unsigned(dram.word_bits), depth=dram.words, init=[])
        column_write, column_read = mem.write_port(), mem.read_port()
        backdoor_write, backdoor_read = mem.write_port(), mem.read_port()

        wiring.connect(m, wiring.flipped(self.cmd), scheduler.cmd)
        wiring.connect(m, scheduler.rows, banks.rows)
        wiring.connect(m, read_path.rdata, wiring.flipped(self.rdata))
        m.d.comb += [
            scheduler.write_word_valid.eq(self.wdata.valid), self.wdata.ready.eq(scheduler.write_word_ready),
            scheduler.read_space.eq(read_path.space),
            column_write.addr.eq(scheduler.column_addr), column_write.data.eq(self.wdata.payload),
            column_write.en.eq(scheduler.column_valid & scheduler.column_write),
            column_read.addr.eq(scheduler.column_addr),
            read_path.issue.eq(scheduler.column_valid & ~scheduler.column_write), read_path.word.eq(column_read.data),
            self.write_done.eq(scheduler.write_done),
            self.access_valid.eq(scheduler.column_valid), self.access_addr.eq(scheduler.column_addr),
            self.access_write.eq(scheduler.column_write),
            backdoor_write.addr.eq(self.backdoor.addr), backdoor_write.data.eq(self.backdoor.wdata),
            backdoor_write.en.eq(self.backdoor.we),
            backdoor_read.addr.eq(self.backdoor.addr), self.backdoor.rdata.eq(backdoor_read.data),
        ]
        return m
