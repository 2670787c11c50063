"""The harness's attention stand-in and the player's release gate in amaranth.sim: steps wait for their outputs
and for each other and last their cycles; a host flit waits for its release (``hw/host_attention.py``,
``hw/stream_player.py``)."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.sim import Simulator

from mozart.hw.host_attention import HostAttention
from mozart.hw.stream_player import StreamPlayer
from mozart.hw.stream_recorder import StreamRecorder
from mozart.model.config import load_config

TINY = load_config("tiny")
#: (outputs it waits for, cycles): the second waits for outputs, the third for the second, the fourth lasts 0.
STEPS = [(0, 5), (3, 4), (3, 6), (4, 0), (6, 2)]
OUTPUT_EVERY = 7   # the host receives one output every 7 cycles


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


def release_cycles(steps, outputs_at, *, wait_for_outputs: bool = True) -> list[int]:
    """The contract: step ``n`` starts in the first cycle ``s`` in which the host holds its outputs and step
    ``n - 1`` has been counted, and is counted from cycle ``s + max(cycles, 1)`` on."""
    counted, out = 0, []
    for need, cycles in steps:
        start = counted
        while wait_for_outputs and outputs_at(start) < need:
            start += 1
        counted = start + max(cycles, 1)
        out.append(counted)
    return out


def _simulate_attention() -> list[int]:
    dut, seen = HostAttention(8), []

    async def bench(ctx):
        for i, (need, cycles) in enumerate(STEPS):
            ctx.set(dut.load_addr, i)
            ctx.set(dut.load_data, {"outputs": need, "cycles": cycles})
            ctx.set(dut.load_en, 1)
            await ctx.tick()
        ctx.set(dut.load_en, 0)
        ctx.set(dut.count, len(STEPS))
        ctx.set(dut.start, 1)
        released = 0
        for cycle in range(200):
            ctx.set(dut.outputs, cycle // OUTPUT_EVERY)
            now = ctx.get(dut.released)
            seen.extend([cycle] * (now - released))
            released = now
            await ctx.tick()
    _run(dut, bench)
    return seen


def test_steps_wait_for_outputs_and_each_other_and_last_their_cycles():
    expected = release_cycles(STEPS, lambda cycle: cycle // OUTPUT_EVERY)
    assert _simulate_attention() == expected
    # the check's mutant: a stand-in that does not wait for the outputs would be counted earlier
    assert release_cycles(STEPS, lambda cycle: cycle // OUTPUT_EVERY, wait_for_outputs=False) != expected


def test_a_flit_waits_for_its_release():
    """Three one-flit frames with releases 0, 2, 2: the first goes at once, the others only once ``released``
    reaches 2 (raised in cycle 20), then one per cycle."""
    m = Module()
    m.submodules.player = player = StreamPlayer(TINY, 8, releases=4)
    m.submodules.recorder = recorder = StreamRecorder(TINY, 8)
    wiring.connect(m, player.o, recorder.i)
    taken = []

    async def bench(ctx):
        for i, release in enumerate((0, 2, 2)):
            ctx.set(player.load_addr, i)
            ctx.set(player.load_data, {"data": 0x10 + i, "first": 1, "last": 1})
            ctx.set(player.load_release, release)
            ctx.set(player.load_en, 1)
            await ctx.tick()
        ctx.set(player.load_en, 0)
        ctx.set(player.length, 3)
        ctx.set(player.start, 1)
        ctx.set(recorder.start, 1)
        for cycle in range(40):
            ctx.set(player.released, 1 if cycle < 20 else 2)
            if ctx.get(player.o.valid) and ctx.get(player.o.ready):
                taken.append(cycle)
            await ctx.tick()
        for i in range(3):   # in order, each once
            ctx.set(recorder.read_addr, i)
            assert ctx.get(recorder.read_data).data == 0x10 + i
    _run(m, bench)
    assert len(taken) == 3 and taken[0] < 5 and taken[1:] == [20, 21]
