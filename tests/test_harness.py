"""The wafer harness's parts in amaranth.sim: the coin is bit-exact with its Python twin, the player plays its
program with idle cycles and holds each flit until taken, the recorder takes everything in order."""

from __future__ import annotations

import pytest
from amaranth.sim import Simulator

from mozart.hw.stream_player import StreamPlayer
from mozart.hw.stream_recorder import StreamRecorder
from mozart.hw.xorshift import XorshiftCoin
from mozart.model import lfsr
from mozart.model.config import load_config
from mozart.model.errors import ConfigError

TINY = load_config("tiny")


def _run(dut, bench, cycles_s: float = 1e-6):
    sim = Simulator(dut)
    sim.add_clock(cycles_s)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("seed_state,p", [(1, 0.3), (0xDEADBEEF, 0.5), (0, 0.9)])
def test_coin_is_bit_exact_with_the_python_twin(seed_state, p):
    dut, got = XorshiftCoin(), []

    async def bench(ctx):
        ctx.set(dut.seed, seed_state)
        ctx.set(dut.threshold, lfsr.threshold(p))
        await ctx.tick()
        ctx.set(dut.run, 1)
        for _ in range(300):
            got.append(bool(ctx.get(dut.heads)))
            await ctx.tick()
    _run(dut, bench)
    assert got == lfsr.coin_flips(seed_state, p, 300)
    assert abs(sum(got) / len(got) - p) < 0.1


def test_twin_catches_a_different_generator():
    """A mutant generator (another shift) gives another sequence: the comparison above can fail."""
    mutant, x = [], 1
    for _ in range(64):
        mutant.append((x & 0xFFFF) < lfsr.threshold(0.5))
        x ^= (x << 12) & 0xFFFFFFFF
        x ^= x >> 17
        x ^= (x << 5) & 0xFFFFFFFF
    assert mutant != lfsr.coin_flips(1, 0.5, 64)


def test_threshold_rejects_a_probability_out_of_range():
    with pytest.raises(ConfigError, match=r"probability must be in \[0, 1\), not 1.0"):
        lfsr.threshold(1.0)


@pytest.mark.parametrize("idle,backpressure", [(0.0, 0.0), (0.4, 0.5)])
def test_player_to_recorder_keeps_every_flit_in_order(idle, backpressure):
    """Player -> recorder through one stream: every flit arrives once, in order, with its framing; with no idle and
    no backpressure, one flit per cycle. Valid is never dropped before ready (the recorder would miss a flit)."""
    from amaranth import Module
    from amaranth.lib import wiring

    flits = [(0x1000 + i, i % 3 == 0, i % 3 == 2) for i in range(30)]
    m = Module()
    m.submodules.player = player = StreamPlayer(TINY, 64)
    m.submodules.recorder = recorder = StreamRecorder(TINY, 64)
    wiring.connect(m, player.o, recorder.i)
    held = []

    async def bench(ctx):
        for i, (data, first, last) in enumerate(flits):
            ctx.set(player.load_addr, i)
            ctx.set(player.load_data, {"data": data, "first": first, "last": last})
            ctx.set(player.load_en, 1)
            await ctx.tick()
        ctx.set(player.load_en, 0)
        ctx.set(player.length, len(flits))
        ctx.set(player.idle_seed, 7)
        ctx.set(player.idle_threshold, lfsr.threshold(idle))
        ctx.set(recorder.backpressure_seed, 9)
        ctx.set(recorder.backpressure_threshold, lfsr.threshold(backpressure))
        await ctx.tick()
        ctx.set(player.start, 1)
        ctx.set(recorder.start, 1)
        cycles, last_offer = 0, None
        while ctx.get(recorder.count) < len(flits) and cycles < 1000:
            valid, ready = ctx.get(player.o.valid), ctx.get(player.o.ready)
            if last_offer is not None:
                held.append(valid and ctx.get(player.o.payload.data) == last_offer)
            last_offer = ctx.get(player.o.payload.data) if valid and not ready else None
            await ctx.tick()
            cycles += 1
        recorded = []
        for i in range(len(flits)):
            ctx.set(recorder.read_addr, i)
            word = ctx.get(recorder.read_data)
            recorded.append((word.data, bool(word.first), bool(word.last)))
        assert recorded == flits
        assert ctx.get(recorder.frames) == 10 and ctx.get(player.sent) == len(flits)
        if idle == 0 and backpressure == 0:
            assert cycles <= len(flits) + 2
    _run(m, bench)
    assert all(held) and (held or backpressure == 0)
