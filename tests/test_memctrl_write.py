"""The memory controller's write path in amaranth.sim: sequential MEM_WRITE streams reach the link's bound (or at
least 0.9 of the DRAM's peak), because the write buffer lets the next write's header reach the DRAM while the
previous payload still drains; the mutant (a buffer too small to hold one payload) falls below 0.9. A read right
behind a write still sees it. Cycle counts are deterministic (no idle, no backpressure, no randomness in timing)."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from mozart.hw.memctrl import MemoryController
from mozart.model.blocks.memctrl import MemoryControllerContract
from mozart.model.config import load_config, override
from mozart.model.dram_timing import Command, DramTiming
from mozart.model.memctrl_reference import RequestGenerator, unpack_words
from mozart.model.protocol import Protocol

TINY = load_config("tiny")
CONFIGS = {
    "tiny": TINY,           # one word per flit, 8-flit bursts: the header caps writes at 8/9 (link-bound)
    "wafer4x4": load_config("wafer4x4"),   # 16-flit bursts: link bound 16/17
    # two words per flit: the link outruns the DRAM, which then limits (the cosim test's many-banks config)
    "many-banks": override(TINY, {"name": "memctrl-many-banks", "tree.chiplets_per_group": 3, "moe.experts": 12,
                                  "dram.word_bits": 32, "dram.banks": 16, "dram.rows": 5, "dram.row_words": 16,
                                  "dram.t_rcd": 3, "dram.t_cl": 3, "dram.t_rp": 3, "dram.max_outstanding": 8}),
}
BURSTS = 48   # full bursts per stream: several rows of every bank, so row changes (and conflicts) recur


def sequential_write_rate(cfg, bursts=BURSTS):
    """Stream ``bursts`` full MEM_WRITEs to consecutive addresses from 0 back to back; returns (DRAM words per
    cycle from the first DRAM write to the last, the written words read back, the words sent). Checks on the way
    that the DRAM's accesses are the ones :class:`DramTiming` predicts from the cycles its burst commands were
    taken and its write words offered."""
    dut = MemoryController(cfg)
    proto = Protocol(cfg)
    gen = RequestGenerator(cfg, np.random.default_rng(4))
    words = proto.max_burst_words
    requests = [gen.write(addr=a, words=words, ack=0, src=0) for a in range(0, bursts * words, words)]
    flits = [f for r in requests for f in proto.encode(r)]
    sent = [w for r in requests for w in unpack_words(r.payload, words, cfg.dram.word_bits, proto.words_per_flit)]
    writes, readback = [], []
    commands, offered = [], []   # burst commands as the DRAM took them; the cycle each write word was first offered

    async def bench(ctx):
        ctx.set(dut.port_out.ready, 1)
        taken, cycle = 0, 0
        while len(writes) < len(sent):
            assert cycle < 20 * len(flits), f"the write stream must finish within {20 * len(flits)} cycles"
            ctx.set(dut.port_in.valid, taken < len(flits))
            if taken < len(flits):
                flit = flits[taken]
                ctx.set(dut.port_in.payload, {"data": flit.data, "first": flit.first, "last": flit.last})
                taken += ctx.get(dut.port_in.ready)
            if ctx.get(dut.dram_writing):
                writes.append(cycle)
            dram = dut.dram
            if ctx.get(dram.cmd.valid) and ctx.get(dram.cmd.ready):
                command = ctx.get(dram.cmd.payload)
                commands.append(Command(command.addr, command.words, bool(command.write), cycle))
            if ctx.get(dram.wdata.valid) and len(offered) == len(writes) - ctx.get(dut.dram_writing):
                offered.append(cycle)
            await ctx.tick()
            cycle += 1
        await ctx.tick()   # the last word's write lands at this edge
        for addr in range(len(sent)):
            ctx.set(dut.backdoor.addr, addr)
            await ctx.tick()
            readback.append(ctx.get(dut.backdoor.rdata))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    predicted = DramTiming(cfg).run(commands, write_offered=offered)
    assert [a.cycle for a in predicted] == writes, "the DRAM's write cycles must be the ones DramTiming predicts"
    return len(writes) / (writes[-1] - writes[0] + 1), readback, sent


@pytest.mark.parametrize("name", list(CONFIGS))
def test_sequential_writes_reach_the_link_bound(name):
    """At least 0.9 of peak, or the link's bound where a write's header flit keeps it below 0.9 (tiny)."""
    cfg = CONFIGS[name]
    contract = MemoryControllerContract(cfg)
    rate, readback, sent = sequential_write_rate(cfg)
    assert readback == sent, "the written words must be in the DRAM"
    goal = min(0.9, contract.load_efficiency)
    print(f"{name}: {rate:.4f} of peak (goal {goal:.4f})")
    assert rate >= goal - 1e-9, f"sequential writes on {name} must reach {goal:.3f} of peak, not {rate:.3f}"


def test_mutant_small_write_buffer_falls_below_goal(monkeypatch):
    """The check catches the old behaviour: with a buffer of half a payload the next header waits behind the
    payload, its row change shows, and the wafer4x4 stream falls below 0.9."""
    cfg = CONFIGS["wafer4x4"]
    half = cfg.hardware.max_burst_flits // 2
    monkeypatch.setattr(MemoryControllerContract, "write_buffer_flits", property(lambda self: half))
    rate, readback, sent = sequential_write_rate(cfg)
    assert readback == sent
    print(f"mutant: {rate:.4f} of peak")
    assert rate < 0.9, f"a {half}-flit write buffer must leave sequential writes below 0.9, not {rate:.3f}"


@pytest.mark.parametrize("name", ["w64", "w32"])
def test_read_right_behind_buffered_writes_sees_them(name):
    """Writes back to back, each followed at once by a read of the words it wrote (and of its neighbours): the
    read's burst reaches the DRAM while the write's payload is still in the buffer, and must still see it."""
    from test_memctrl import CONFIGS as UNIT_CONFIGS, simulate  # noqa: PLC0415  (the unit tests' bench)

    cfg = UNIT_CONFIGS[name]
    gen = RequestGenerator(cfg, np.random.default_rng(9))
    words = Protocol(cfg).max_burst_words
    requests = []
    for n in range(12):
        addr = (n * 5 * words // 2) % (cfg.dram.words - 2 * words)
        requests += [gen.write(addr=addr, words=words), gen.write(addr=addr + words, words=words, ack=0),
                     gen.read(addr=addr + words // 2, words=words)]
    simulate(cfg, requests, seed=9, idle=0.0, backpressure=0.0)   # responses and DRAM against the reference
