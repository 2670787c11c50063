"""Memory controller with a reorder window (``dram.reorder_window`` > 1) in amaranth.sim: random mixes of sources,
rows and banks with random idle and backpressure against the reference model, each source's responses in its
request order, nothing lost or duplicated, the DRAM read back equal to the model; mutant windows that break an
ordering rule are caught."""

import random

import numpy as np
import pytest
from amaranth.sim import Simulator

from mozart.hw import memctrl as memctrl_module
from mozart.hw.memctrl import MemoryController
from mozart.hw.memctrl_reorder import ReorderWindow
from mozart.hw.pysim import chance, flit_of, put_flits, stream_get
from mozart.model.config import load_config, override
from mozart.model.memctrl_reference import MemoryReference, RequestGenerator
from mozart.model.protocol import COUNTER_BITS, Flit, Protocol
from memctrl_sim import fill_memory, packets_of, read_memory, run_testbenches
from mozart.tb.scoreboard import Scoreboard

TINY = load_config("tiny")
CONFIGS = {
    # few banks, slow rows, refresh: where row hits first should pay
    "slow-rows": override(TINY, {"moe.layers": 1, "dram.banks": 2, "dram.rows": 13, "dram.row_words": 16,
                                 "dram.t_rcd": 6, "dram.t_rp": 5, "dram.t_cl": 3, "dram.refresh_interval": 150,
                                 "dram.refresh_cycles": 6, "dram.reorder_window": 4}),
    # two words per flit, 3 chiplets, 8 banks, the largest window
    "w32-w16": override(TINY, {"moe.layers": 1, "tree.chiplets_per_group": 3, "moe.experts": 12,
                               "dram.word_bits": 32, "dram.banks": 8, "dram.rows": 4, "dram.row_words": 16,
                               "dram.max_outstanding": 3, "dram.reorder_window": 16}),
}


def simulate(cfg, requests, *, seed=0, idle=0.0, backpressure=0.0, contents=None):
    """Run ``requests`` through the controller; check every response against the reference model, in request
    order per source (the scoreboard's flow), nothing lost or duplicated, the error count and the DRAM contents.
    Returns the responses in the order they left and the cycle the last response flit left (counted from the
    first cycle the driver may send)."""
    dut = MemoryController(cfg)
    proto = Protocol(cfg)
    ref = MemoryReference(cfg, contents=contents)
    board = Scoreboard("memctrl per source")
    for request in requests:
        for response in ref.request(request):
            board.expect("port_out", response, flow=request.src)
    flits = [f for r in requests for f in proto.encode(r)]
    rng = random.Random(seed)
    out: list[Flit] = []
    result = {"filled": False}

    async def driver(ctx):
        while not result["filled"]:   # the backdoor fills the DRAM first
            await ctx.tick()
        await put_flits(ctx, dut.port_in, flits, idle=chance(rng, idle))

    async def collector(ctx):
        while True:
            out.append(flit_of(await stream_get(ctx, dut.port_out, stall=chance(rng, backpressure))))

    async def bench(ctx):
        await fill_memory(ctx, dut, contents)
        result["filled"] = True
        quiet, seen = 0, 0
        for cycle in range(3000 + 80 * len(flits)):
            if len(out) > seen:
                seen, result["last_flit"] = len(out), cycle
            await ctx.tick()
            # drained: everything answered, then a quiet tail proves nothing more comes out
            quiet = quiet + 1 if sum(f.last for f in out) >= board.expected_total else 0
            if quiet > 100:
                break
        result["errors"] = ctx.get(dut.errors)
        result["memory"] = await read_memory(ctx, dut, cfg.dram.words)

    run_testbenches(dut, driver, collector, bench)
    packets = packets_of(out, proto)
    for packet in packets:
        board.observe("port_out", packet)   # exact, and in order within its source
    board.check_drained()                   # nothing lost (and nothing extra: every packet matched)
    assert result["errors"] == ref.errors % (1 << COUNTER_BITS), f"errors must count {ref.errors} bad requests"
    assert result["memory"] == ref.memory, "DRAM contents must equal the reference memory"
    return packets, result["last_flit"]


def arrival_order(cfg, requests, contents=None):
    ref = MemoryReference(cfg, contents=contents)
    return [p for r in requests for p in ref.request(r)]


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("seed", [1, 2])
def test_random_mix_reordered_correctly(name, seed):
    cfg = CONFIGS[name]
    gen = RequestGenerator(cfg, np.random.default_rng(seed))
    contents = [int(gen.rng.integers(0, 1 << 30)) for _ in range(cfg.dram.words)]
    requests = list(gen.mix(200, bad=0.05))
    packets, _ = simulate(cfg, requests, seed=seed, idle=0.2, backpressure=0.3, contents=contents)
    assert packets != arrival_order(cfg, requests, contents), \
        "the window must have reordered some responses (else this tests nothing)"


def test_loads_with_reads_and_writes_of_other_sources():
    """LOADs of the root keep their order; chiplets' reads and writes beside them may pass them."""
    cfg = CONFIGS["slow-rows"]
    gen = RequestGenerator(cfg, np.random.default_rng(4))
    requests = []
    for n in range(cfg.experts_per_group):
        chiplet, expert = divmod(n, cfg.experts_per_chiplet)
        requests.append(gen.load(n, chiplet, slot=n % cfg.hardware.sram_slots, expert=expert))
        requests += [gen.read(src=gen.sources[1 + k % 2]) for k in range(3)]
        requests += [gen.write(src=gen.sources[2])]
    simulate(cfg, requests, seed=4, idle=0.1, backpressure=0.2)


# -- mutants: each breaks one rule; the checks above must catch it --------------------------------------------

def crafted_traffic(cfg, gen, *, overlap: bool):
    """Two sources on two banks. Source 1 keeps row 0 of bank 0 busy (row hits); source 2 writes a range
    starting in bank 1, then (``overlap``) source 1 reads across the end of bank 0's row into that range, or
    (not ``overlap``) source 2 reads its own row of bank 0 after a source-2 read of bank 1."""
    d = cfg.dram
    bank0_row0, bank1_row0 = 0, d.row_words
    busy = [gen.read(addr=bank0_row0, words=8, src=gen.sources[1]) for _ in range(3)]
    if overlap:
        write = gen.write(addr=bank1_row0, words=4, ack=1, src=gen.sources[2])
        return busy + [write, gen.read(addr=bank1_row0 - 2, words=4, src=gen.sources[1])]
    return busy + [gen.read(addr=bank1_row0, words=4, src=gen.sources[2]),
                   gen.read(addr=bank0_row0 + 8, words=4, src=gen.sources[2])]


class PassesOverlaps(ReorderWindow):
    """Mutant: lets a request pass an older one whose address range overlaps."""

    def _may_pass(self, older, older_source, newer, newer_source):
        return older_source != newer_source


class ReordersOneSource(ReorderWindow):
    """Mutant: lets a request pass an older one of the same source."""

    def _may_pass(self, older, older_source, newer, newer_source):
        return super()._may_pass(older, older_source, newer, newer_source + 1)


@pytest.mark.parametrize("overlap", [True, False])
def test_crafted_traffic_reorders_and_mutants_fail(overlap, monkeypatch):
    """The crafted traffic is served correctly; a window that passes an overlapping write (the read sees old data)
    or reorders one source (its responses swap) fails the same checks."""
    cfg = CONFIGS["slow-rows"]
    gen = RequestGenerator(cfg, np.random.default_rng(5))
    contents = list(range(1, cfg.dram.words + 1))
    requests = crafted_traffic(cfg, gen, overlap=overlap)
    simulate(cfg, requests, contents=contents)
    monkeypatch.setattr(memctrl_module, "ReorderWindow", PassesOverlaps if overlap else ReordersOneSource)
    with pytest.raises(AssertionError, match="memctrl per source|DRAM contents"):
        simulate(cfg, requests, contents=contents)


def test_read_latency_and_outstanding_with_window():
    """An isolated row-hit read takes ``read_latency`` (one cycle more than without the window); with port_out
    blocked the controller takes ``max_waiting`` reads (the queue plus the window), then holds port_in."""
    cfg = CONFIGS["slow-rows"]
    dut = MemoryController(cfg)
    contract = dut.contract
    assert contract.read_latency == contract.dram.hit_latency + 1
    proto = Protocol(cfg)
    gen = RequestGenerator(cfg, np.random.default_rng(1))
    flits = [proto.encode(gen.read(addr=a, words=1, src=0))[0] for a in range(contract.max_waiting + 4)]
    seen = {"accepted": 0}

    async def bench(ctx):
        ctx.set(dut.port_out.ready, 1)
        for cycle in range(120):   # two isolated reads of one row (the second a hit), then a blocked output
            k = 0 if cycle == 10 else 1 if cycle == 60 else None
            ctx.set(dut.port_in.valid, k is not None)
            if k is not None:
                ctx.set(dut.port_in.payload, {"data": flits[k].data, "first": 1, "last": 1})
            if cycle > 60 and ctx.get(dut.port_out.valid) and ctx.get(dut.port_out.payload.first):
                seen.setdefault("latency", cycle - 60)
            await ctx.tick()
        ctx.set(dut.port_out.ready, 0)
        for _ in range(200):
            f = flits[2 + seen["accepted"]]
            ctx.set(dut.port_in.valid, 1)
            ctx.set(dut.port_in.payload, {"data": f.data, "first": 1, "last": 1})
            seen["accepted"] += ctx.get(dut.port_in.ready)
            await ctx.tick()

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen["latency"] == contract.read_latency
    assert seen["accepted"] == contract.max_waiting == cfg.dram.max_outstanding + cfg.dram.reorder_window
