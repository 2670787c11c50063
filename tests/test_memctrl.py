"""Memory controller in amaranth.sim: reads, writes, weight loads and every bad request, against the reference
model (``mozart.model.memctrl_reference.MemoryReference``), with seeded random idle cycles and backpressure."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from mozart.hw.memctrl import MemoryController
from mozart.hw.pysim import chance, flit_of, put_flits, stream_get
from mozart.model.config import load_config, override
from mozart.model.protocol import COUNTER_BITS, Flit, MemError, PacketKind, Protocol
from mozart.model.memctrl_reference import MemoryReference, RequestGenerator
from memctrl_sim import fill_memory, packets_of, read_memory, run_testbenches

TINY = load_config("tiny")
CONFIGS = {
    # one word per flit, refresh on, non-power-of-two rows (so ADDRESS errors exist); one layer's weights
    "w64": override(TINY, {"moe.layers": 1, "dram.rows": 6, "dram.refresh_interval": 150, "dram.refresh_cycles": 6}),
    # two words per flit, 3 chiplets (so a LOAD can name a chiplet that does not exist), few banks, slow rows,
    # 2 outstanding
    "w32": override(TINY, {"moe.layers": 1, "tree.chiplets_per_group": 3, "moe.experts": 12,
                           "dram.word_bits": 32, "dram.banks": 2, "dram.rows": 13, "dram.row_words": 16,
                           "dram.t_rcd": 6, "dram.t_rp": 5, "dram.t_cl": 3, "dram.max_outstanding": 2}),
}


def simulate(cfg, requests, *, seed=0, idle=0.0, backpressure=0.0, contents=None, stall=None):
    """Run ``requests`` through the controller; returns (output packets, errors counter, DRAM words, cycles).

    ``stall`` = (start, length): ``port_out.ready`` low for that window (full backpressure)."""
    dut = MemoryController(cfg)
    proto = Protocol(cfg)
    ref = MemoryReference(cfg, contents=contents)
    expected = [p for r in requests for p in ref.request(r)]
    flits = [f for r in requests for f in proto.encode(r)]
    rng = random.Random(seed)
    out: list[Flit] = []
    result = {}
    clock = {"cycle": 0, "filled": False, "sent": False}
    idle_coin = chance(rng, idle)

    def stalled() -> bool:
        in_window = stall is not None and stall[0] <= clock["cycle"] < stall[0] + stall[1]
        return rng.random() < backpressure or in_window

    async def driver(ctx):
        while not clock["filled"]:   # the backdoor fills the DRAM first
            await ctx.tick()
        await put_flits(ctx, dut.port_in, flits, idle=idle_coin)
        clock["sent"] = True

    async def collector(ctx):
        while True:
            out.append(flit_of(await stream_get(ctx, dut.port_out, stall=stalled)))

    async def bench(ctx):
        await fill_memory(ctx, dut, contents)
        clock["filled"] = True
        limit = 2000 + 60 * len(flits) + 40 * sum(len(p.payload) + 1 for p in expected)
        quiet = 0
        while clock["cycle"] < limit:
            await ctx.tick()
            clock["cycle"] += 1
            # drained: everything sent and answered, then a quiet tail proves nothing more comes out
            answered = sum(f.last for f in out) >= len(expected)
            quiet = quiet + 1 if clock["sent"] and answered else 0
            if quiet > 100:
                break
        result["cycles"] = clock["cycle"]
        result["errors"] = ctx.get(dut.errors)
        result["memory"] = await read_memory(ctx, dut, cfg.dram.words)

    run_testbenches(dut, driver, collector, bench)
    packets = packets_of(out, proto)   # compared with the reference, in order
    for i, (e, g) in enumerate(zip(expected, packets)):
        assert g == e, f"response {i} must be {e}, not {g}"
    assert len(packets) == len(expected), (f"the controller must send {len(expected)} packets (nothing lost or "
                                           f"duplicated), not {len(packets)}")
    assert result["errors"] == ref.errors % (1 << COUNTER_BITS), (f"errors must count {ref.errors} bad requests, "
                                                        f"not {result['errors']}")
    assert result["memory"] == ref.memory, "DRAM contents must equal the reference memory"
    return packets, result


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2])
def test_random_reads_and_writes(name, seed):
    cfg = CONFIGS[name]
    gen = RequestGenerator(cfg, np.random.default_rng(seed))
    contents = [int(gen.rng.integers(0, 1 << 30)) for _ in range(cfg.dram.words)]
    simulate(cfg, list(gen.mix(150, bad=0.05)), seed=seed, idle=0.3, backpressure=0.4, contents=contents)


@pytest.mark.parametrize("name", list(CONFIGS))
def test_every_bad_request(name):
    cfg = CONFIGS[name]
    gen = RequestGenerator(cfg, np.random.default_rng(7))
    kinds = gen.bad_kinds()
    assert {"address", "zero", "too_long", "past_end", "kind"} <= set(kinds)
    assert ("load_chiplet" in kinds) == (name == "w32")
    reqs = []
    for which in kinds:
        reqs += [gen.bad(which), gen.write(), gen.read()]
    packets, result = simulate(cfg, reqs, seed=3, idle=0.2, backpressure=0.3)
    codes = [p.meta["code"] for p in packets if p.kind is PacketKind.MEM_ERROR]
    assert len(codes) == len(kinds) and set(codes) == {int(c) for c in MemError}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_weight_loads_interleaved_with_activation_writes(name):
    cfg = CONFIGS[name]
    proto = Protocol(cfg)
    gen = RequestGenerator(cfg, np.random.default_rng(11))
    image = [int(gen.rng.integers(0, 1 << 30)) for _ in range(proto.activation_base)]
    reqs = []
    for i in range(cfg.experts_per_group):
        chiplet, expert = divmod(i, cfg.experts_per_chiplet)
        reqs.append(gen.load(i, chiplet, slot=i % cfg.hardware.sram_slots, expert=expert))
        words = proto.max_burst_words
        reqs.append(gen.write(addr=proto.activation_base + i * words, words=words))
    packets, _ = simulate(cfg, reqs, seed=5, idle=0.1, backpressure=0.3, contents=image)
    weights = [p for p in packets if p.kind is PacketKind.WEIGHT]
    assert sum(p.meta["final"] for p in weights) == cfg.experts_per_group


def test_full_backpressure_stalls_without_loss():
    cfg = CONFIGS["w64"]
    gen = RequestGenerator(cfg, np.random.default_rng(3))
    simulate(cfg, [gen.read() for _ in range(20)] + [gen.write(ack=1) for _ in range(10)], stall=(5, 400))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_read_latency_and_load_rate(name):
    """An isolated read on an idle controller: header accepted to MEM_DATA header equals read_latency (row hit
    after a first read opened the row)."""
    cfg = CONFIGS[name]
    dut = MemoryController(cfg)
    proto = Protocol(cfg)
    gen = RequestGenerator(cfg, np.random.default_rng(1))
    reqs = [gen.read(addr=0, words=1, src=0), gen.read(addr=1, words=1, src=0)]
    flits = [proto.encode(r)[0] for r in reqs]
    times = {}

    async def bench(ctx):
        ctx.set(dut.port_out.ready, 1)
        for cycle in range(200):
            k = 0 if cycle == 10 else 1 if cycle == 60 else None
            ctx.set(dut.port_in.valid, k is not None)
            if k is not None:
                ctx.set(dut.port_in.payload, {"data": flits[k].data, "first": 1, "last": 1})
                assert ctx.get(dut.port_in.ready)
            if ctx.get(dut.port_out.valid) and ctx.get(dut.port_out.payload.first):
                times.setdefault("second" if cycle > 60 else "first", cycle)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert times["second"] - 60 == dut.contract.read_latency
    assert 0 < dut.contract.load_efficiency <= 1


@pytest.mark.parametrize("name", list(CONFIGS))
def test_outstanding_limit_backpressures(name):
    """With port_out blocked, exactly dram.max_outstanding reads are accepted; then port_in stays not ready."""
    cfg = CONFIGS[name]
    dut = MemoryController(cfg)
    proto = Protocol(cfg)
    gen = RequestGenerator(cfg, np.random.default_rng(2))
    flits = [proto.encode(gen.read())[0] for _ in range(cfg.dram.max_outstanding + 3)]
    accepted = []

    async def bench(ctx):
        ctx.set(dut.port_out.ready, 0)
        for _ in range(300):
            f = flits[len(accepted)]
            ctx.set(dut.port_in.valid, 1)
            ctx.set(dut.port_in.payload, {"data": f.data, "first": 1, "last": 1})
            if ctx.get(dut.port_in.ready):
                accepted.append(f)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert len(accepted) == cfg.dram.max_outstanding == dut.contract.max_outstanding
