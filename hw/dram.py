"""A synthesizable, cycle-level model of a group's DRAM (its HBM stack): banks, open rows, refresh.

The timing rules are written down once, in :mod:`mozart.model.dram_timing`; this RTL follows them register
for register and ``tests/test_dram.py`` checks the two against each other cycle for cycle.
"""

from __future__ import annotations

from amaranth.hdl import Array, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mozart.model.dram_timing import DramTiming
from mozart.model.blocks.memctrl import MemoryControllerContract
from mozart.model.protocol import Protocol, index_bits

__all__ = ["DramModel", "command_layout", "burst_bits", "BackdoorSignature"]


def burst_bits(cfg) -> int:
    """Width of a burst length: up to a memory packet's ``max_burst_words`` or a whole expert image (a LOAD is
    one burst, so the DRAM sees its rows coming and activates each next bank while the current one streams)."""
    proto = Protocol(cfg)
    return max(proto.words_bits, proto.image_words.bit_length())


def command_layout(cfg) -> data.StructLayout:
    """A burst command: ``words`` (1 .. 2**burst_bits - 1) consecutive words from ``addr``; ``write``."""
    proto = Protocol(cfg)
    return data.StructLayout({"addr": unsigned(proto.addr_bits), "words": unsigned(burst_bits(cfg)),
                              "write": unsigned(1)})


class BackdoorSignature(wiring.Signature):
    """Direct access to the storage, outside the timing model (preload and readback in tests).

    ``we`` writes ``wdata`` at ``addr`` at the next clock edge; ``rdata`` holds the word at the ``addr`` of
    the previous cycle (one cycle of read latency)."""

    def __init__(self, cfg):
        proto = Protocol(cfg)
        super().__init__({"addr": Out(proto.addr_bits), "we": Out(1), "wdata": Out(cfg.dram.word_bits),
                          "rdata": In(cfg.dram.word_bits)})


class DramModel(wiring.Component):
    """The group DRAM: ``banks x rows x row_words`` words of ``word_bits``, with open-row timing.

    Address mapping is row:bank:column (``column = a % row_words``, ``bank = (a // row_words) % banks``,
    ``row = a // (row_words * banks)``), so sequential streams hit open rows and the next bank is
    activated while the current one streams. The exact rules (two-deep command pipeline, one activation
    engine with one segment of lookahead, refresh) are in :mod:`mozart.model.dram_timing`.

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
        self.rbuf_depth = MemoryControllerContract(cfg).read_buffer_words
        d = cfg.dram
        super().__init__({
            "cmd": In(stream.Signature(command_layout(cfg))),
            "wdata": In(stream.Signature(d.word_bits)),
            "rdata": Out(stream.Signature(d.word_bits)),
            "write_done": Out(1),
            "backdoor": In(BackdoorSignature(cfg)),
            "access_valid": Out(1),
            "access_addr": Out(self.proto.addr_bits),
            "access_write": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        d = self.cfg.dram
        W, B = d.row_words, d.banks
        addr_bits = self.proto.addr_bits
        row_shape = unsigned(index_bits(d.rows))
        bank_shape = unsigned(index_bits(B))
        col_shape = unsigned(index_bits(W))

        def split(addr):
            # Constant divisors: Yosys and Verilator fold powers of two into slices.
            return (addr // W) % B, addr // (W * B), addr % W

        # -- storage --------------------------------------------------------------------------------------------
        m.submodules.mem = mem = Memory(shape=unsigned(d.word_bits), depth=d.words, init=[])
        wport = mem.write_port()
        rport = mem.read_port()
        bd_wport = mem.write_port()
        bd_rport = mem.read_port()
        m.d.comb += [
            bd_wport.addr.eq(self.backdoor.addr), bd_wport.data.eq(self.backdoor.wdata),
            bd_wport.en.eq(self.backdoor.we),
            bd_rport.addr.eq(self.backdoor.addr), self.backdoor.rdata.eq(bd_rport.data),
        ]

        # -- bank state and the activation engine -------------------------------------------------------------
        open_valid = Array(Signal(name=f"open_valid{b}") for b in range(B))
        open_row = Array(Signal(row_shape, name=f"open_row{b}") for b in range(B))
        prep_busy = Signal()
        prep_bank = Signal(bank_shape)
        prep_row = Signal(row_shape)
        prep_cnt = Signal(range(max(2, d.t_rp + d.t_rcd + 1)))
        fin = Signal()
        m.d.comb += fin.eq(prep_busy & (prep_cnt == 0))

        def is_open(bank, row):
            return ((open_valid[bank] & (open_row[bank] == row))
                    | (fin & (prep_bank == bank) & (prep_row == row)))

        def any_open(bank):
            return open_valid[bank] | (fin & (prep_bank == bank))

        # -- refresh ----------------------------------------------------------------------------------------------
        refresh = Signal()
        if d.refresh_interval:
            ref_cnt = Signal(range(d.refresh_interval))
            m.d.sync += ref_cnt.eq(Mux(ref_cnt == d.refresh_interval - 1, 0, ref_cnt + 1))
            m.d.comb += refresh.eq(ref_cnt >= d.refresh_interval - d.refresh_cycles)

        # -- command pipeline: nxt (lookahead register) and act (the burst issuing columns) ---------------------
        nxt_valid = Signal()
        nxt_addr = Signal(addr_bits)
        nxt_words = Signal(burst_bits(self.cfg))
        nxt_write = Signal()
        act_valid = Signal()
        act_addr = Signal(addr_bits)
        act_left = Signal(burst_bits(self.cfg))
        act_write = Signal()
        act_bank = Signal(bank_shape)
        act_row = Signal(row_shape)
        act_col = Signal(col_shape)

        # read buffer and its credit: a read issues only if its word has a place to land
        m.submodules.rbuf = rbuf = SyncFIFO(width=d.word_bits, depth=self.rbuf_depth)
        reserved = Signal(range(self.rbuf_depth + 1))
        credit = Signal()
        m.d.comb += [
            credit.eq(reserved < self.rbuf_depth),
            self.rdata.valid.eq(rbuf.r_rdy), self.rdata.payload.eq(rbuf.r_data), rbuf.r_en.eq(self.rdata.ready),
        ]

        row_ready = Signal()
        issue = Signal()
        m.d.comb += [
            row_ready.eq(act_valid & ~refresh & is_open(act_bank, act_row)),
            self.wdata.ready.eq(row_ready & act_write),
            issue.eq(row_ready & Mux(act_write, self.wdata.valid, credit)),
        ]
        read_issue = Signal()
        m.d.comb += read_issue.eq(issue & ~act_write)
        popped = Signal()
        m.d.comb += popped.eq(self.rdata.valid & self.rdata.ready)
        m.d.sync += reserved.eq(reserved + read_issue - popped)

        # lookahead segment: the active burst's next row, else the first row of nxt
        look_valid = Signal()
        look_bank = Signal(bank_shape)
        look_row = Signal(row_shape)
        rest_of_row = Signal(range(W + 1))
        m.d.comb += rest_of_row.eq(W - act_col)
        nxt_bank, nxt_row, nxt_col = split(nxt_addr)
        with m.If(act_valid & (act_left > rest_of_row)):
            m.d.comb += look_valid.eq(1)
            with m.If(act_bank == B - 1):
                m.d.comb += [look_bank.eq(0), look_row.eq(act_row + 1)]
            with m.Else():
                m.d.comb += [look_bank.eq(act_bank + 1), look_row.eq(act_row)]
        with m.Elif(nxt_valid):
            m.d.comb += [look_valid.eq(1), look_bank.eq(nxt_bank), look_row.eq(nxt_row)]

        target = Signal()
        target_bank = Signal(bank_shape)
        target_row = Signal(row_shape)
        with m.If(~refresh & (~prep_busy | fin)):
            with m.If(act_valid & ~is_open(act_bank, act_row)):
                m.d.comb += [target.eq(1), target_bank.eq(act_bank), target_row.eq(act_row)]
            with m.Elif(look_valid & ~is_open(look_bank, look_row) & ~(act_valid & (look_bank == act_bank))):
                m.d.comb += [target.eq(1), target_bank.eq(look_bank), target_row.eq(look_row)]

        with m.If(refresh):
            m.d.sync += [v.eq(0) for v in open_valid]
            m.d.sync += prep_busy.eq(0)
        with m.Else():
            with m.If(fin):
                m.d.sync += [open_valid[prep_bank].eq(1), open_row[prep_bank].eq(prep_row), prep_busy.eq(0)]
            with m.Elif(prep_busy):
                m.d.sync += prep_cnt.eq(prep_cnt - 1)
            with m.If(target):
                conflict_delay = max(1, d.t_rp + d.t_rcd) - 1
                miss_delay = max(1, d.t_rcd) - 1
                m.d.sync += [
                    open_valid[target_bank].eq(0),
                    prep_busy.eq(1), prep_bank.eq(target_bank), prep_row.eq(target_row),
                    prep_cnt.eq(Mux(any_open(target_bank), conflict_delay, miss_delay)),
                ]

        # -- column issue -------------------------------------------------------------------------------------------
        done = Signal()
        load = Signal()
        m.d.comb += [
            done.eq(issue & (act_left == 1)),
            load.eq(nxt_valid & (~act_valid | done)),
            self.cmd.ready.eq(~nxt_valid | load),
            wport.addr.eq(act_addr), wport.data.eq(self.wdata.payload), wport.en.eq(issue & act_write),
            rport.addr.eq(act_addr),
            self.access_valid.eq(issue), self.access_addr.eq(act_addr), self.access_write.eq(act_write),
        ]
        m.d.sync += self.write_done.eq(done & act_write)
        with m.If(issue):
            m.d.sync += [act_addr.eq(act_addr + 1), act_left.eq(act_left - 1)]
            with m.If(act_col == W - 1):
                m.d.sync += act_col.eq(0)
                with m.If(act_bank == B - 1):
                    m.d.sync += [act_bank.eq(0), act_row.eq(act_row + 1)]
                with m.Else():
                    m.d.sync += act_bank.eq(act_bank + 1)
            with m.Else():
                m.d.sync += act_col.eq(act_col + 1)
        with m.If(load):
            m.d.sync += [act_valid.eq(1), act_addr.eq(nxt_addr), act_left.eq(nxt_words), act_write.eq(nxt_write),
                         act_bank.eq(nxt_bank), act_row.eq(nxt_row), act_col.eq(nxt_col)]
        with m.Elif(done):
            m.d.sync += act_valid.eq(0)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [nxt_valid.eq(1), nxt_addr.eq(self.cmd.payload.addr), nxt_words.eq(self.cmd.payload.words),
                         nxt_write.eq(self.cmd.payload.write)]
        with m.Elif(load):
            m.d.sync += nxt_valid.eq(0)

        # -- read data: the memory's registered read, then t_cl - 2 delay stages, then the buffer ------------------
        valid = Signal()
        m.d.sync += valid.eq(read_issue)
        word = rport.data
        for stage in range(d.t_cl - 2):
            v, w = Signal(name=f"rd_valid{stage}"), Signal(d.word_bits, name=f"rd_word{stage}")
            m.d.sync += [v.eq(valid), w.eq(word)]
            valid, word = v, w
        m.d.comb += [rbuf.w_en.eq(valid), rbuf.w_data.eq(word)]
        return m
