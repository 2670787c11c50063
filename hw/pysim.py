"""The amaranth.sim helpers every amaranth.sim test and benchmark uses (no Verilator build).

Streams (``amaranth.lib.stream`` interfaces), in the style of Glasgow's ``stream_put``/``stream_get``:

- :func:`stream_put` offers one payload, after seeded random idle cycles, and holds ``valid`` until the
  payload is taken (the stream rule: once offered, a payload is never withdrawn);
- :func:`stream_get` takes one payload, with seeded random backpressure (``ready`` low on a cycle);
- :func:`put_flits` and :func:`get_packet` do the same for the flits of packets (:class:`Flit` payloads of
  :func:`mozart.hw.protocol.flit_layout`);
- :func:`chance` turns a seeded generator and a probability into the per-cycle coin the others take.

And :func:`run_pysim`: an :class:`~mozart.hw.chiplet.ExpertChiplet` on a :class:`ChipletProgram`, counting cycles
and MAC-active cycles, with the model's memory and input scheduler (:mod:`mozart.model.chiplet_memory`,
:mod:`mozart.model.chiplet_input_scheduler`) behind and in front of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from amaranth.sim import Simulator

from mozart.model.chiplet_input_scheduler import InputScheduler
from mozart.model.chiplet_memory import DEFAULT_LATENCY, ChipletMemory
from mozart.model.chiplet_program import ChipletProgram
from mozart.model.protocol import Flit, Packet, Protocol

__all__ = ["chance", "never", "flit_payload", "flit_of", "stream_put", "stream_get", "put_flits", "get_packet",
           "PysimResult", "run_pysim"]

Coin = Callable[[], bool]


def never() -> bool:
    """The coin that never comes up: no idle cycles, no backpressure."""
    return False


def chance(rng, probability: float) -> Coin:
    """A coin that comes up with ``probability`` on each call, drawn from ``rng`` (``random.Random`` or a numpy
    ``Generator``), so a seed reproduces every idle cycle and every stalled cycle."""
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must be in [0, 1], not {probability!r}")
    return (lambda: rng.random() < probability) if probability > 0 else never


def flit_payload(flit: Flit) -> dict:
    """The value of a flit stream's payload for ``ctx.set`` (the layout's fields, not hand-packed bits)."""
    return {"data": flit.data, "first": flit.first, "last": flit.last}


def flit_of(payload) -> Flit:
    """A sampled flit payload as a :class:`Flit`."""
    return Flit(int(payload.data), bool(payload.first), bool(payload.last))


async def stream_put(ctx, stream, payload, *, idle: Coin = never, limit: int | None = None) -> None:
    """Offer ``payload`` on ``stream`` after idle cycles (one per ``idle()`` that comes up), keep it valid until
    the clock edge that takes it, and return after that edge with ``valid`` low.

    ``limit``: fail if the stream has not taken the payload within that many cycles of offering it."""
    while idle():
        await ctx.tick()
    ctx.set(stream.payload, payload)
    ctx.set(stream.valid, 1)
    if limit is None:
        await ctx.tick().until(stream.ready)
    else:
        for _ in range(limit):
            _, _, ready = await ctx.tick().sample(stream.ready)
            if ready:
                break
        else:
            raise AssertionError(f"{stream} did not take a payload within {limit} cycles")
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream, *, stall: Coin = never):
    """Take one payload from ``stream``: ``ready`` is low on each cycle on which ``stall()`` comes up; returns
    the payload after the clock edge that took it, with ``ready`` low."""
    while True:
        ready = not stall()
        ctx.set(stream.ready, ready)
        _, _, valid, payload = await ctx.tick().sample(stream.valid, stream.payload)
        if valid and ready:
            ctx.set(stream.ready, 0)
            return payload


async def put_flits(ctx, stream, flits: Iterable[Flit], *, idle: Coin = never, limit: int | None = None) -> None:
    """:func:`stream_put` each flit in turn (idle cycles only between flits)."""
    for flit in flits:
        await stream_put(ctx, stream, flit_payload(flit), idle=idle, limit=limit)


async def get_packet(ctx, stream, *, stall: Coin = never) -> list[Flit]:
    """The flits of the next packet on ``stream``, head to tail; fails on a flit that breaks the framing."""
    flits: list[Flit] = []
    while True:
        flit = flit_of(await stream_get(ctx, stream, stall=stall))
        if flit.first != (not flits):
            raise AssertionError(f"{stream}: a head flit must start a packet, and only a head flit "
                                 f"(flit {len(flits)} has first={flit.first})")
        flits.append(flit)
        if flit.last:
            return flits


@dataclass
class PysimResult:
    outputs: list[Packet]
    cycles: int                  #: cycles until the last output flit (or the limit)
    mac_cycles: int              #: cycles in which the MAC lanes worked
    first_mac: int = -1          #: cycle of the first MAC-active cycle
    last_mac: int = -1           #: cycle of the last MAC-active cycle
    timed_out: bool = False


def run_pysim(dut, program: ChipletProgram, *, idle: float = 0.0, backpressure: float = 0.0, seed: int = 0,
              max_cycles: int = 200_000, quiet_cycles: int = 200, memory_latency: int = DEFAULT_LATENCY
              ) -> PysimResult:
    """Simulate ``dut`` on ``program.inputs`` (input idle cycles and output backpressure seeded by ``seed``);
    stop ``quiet_cycles`` after the input is drained and the output has been silent (or at ``max_cycles``:
    ``timed_out``).

    Behind the chiplet sits a :class:`~mozart.model.chiplet_memory.ChipletMemory` (answers after
    ``memory_latency`` cycles), and an :class:`~mozart.model.chiplet_input_scheduler.InputScheduler` picks each
    next input packet: due memory answers first, then the program's packets under its
    :class:`~mozart.model.chiplet_program.Barrier` s and the root's backward credit. The cocotb testbench
    ``mozart.tb.tb_chiplet`` uses the same two.

    The output side is a per-cycle loop rather than :func:`get_packet` because it also counts the cycles on which
    the MAC lanes work."""
    proto = Protocol(program.cfg)
    idle_coin = chance(np.random.default_rng([seed, 0]), idle)
    stall_coin = chance(np.random.default_rng([seed, 1]), backpressure)
    res = PysimResult([], 0, 0)
    input_drained = []
    memory = ChipletMemory(proto, memory_latency)
    scheduler = InputScheduler(program, memory)
    clock = {"cycle": 0}   # the monitor's cycle

    async def driver(ctx):
        while True:
            packet = scheduler.next_input(clock["cycle"])
            if packet is not None:
                await put_flits(ctx, dut.port_in, proto.encode(packet), idle=idle_coin)
            elif scheduler.drained:
                input_drained.append(True)
                while not memory.pending:   # the last packets out may still ask the memory something
                    await ctx.tick()
            else:
                await ctx.tick()

    async def monitor(ctx):
        cycle, quiet = 0, 0
        current: list[Flit] = []
        while cycle < max_cycles:
            ready = not stall_coin()
            ctx.set(dut.port_out.ready, ready)
            _, _, valid, payload, mac = await ctx.tick().sample(dut.port_out.valid, dut.port_out.payload,
                                                                dut.mac_active)
            if mac:
                res.mac_cycles += 1
                res.last_mac = cycle
                if res.first_mac < 0:
                    res.first_mac = cycle
            if valid and ready:
                current.append(flit_of(payload))
                quiet = 0
                res.cycles = cycle + 1
                if current[-1].last:
                    res.outputs.append(proto.decode(current))
                    scheduler.observe(cycle, res.outputs[-1])
                    current = []
            else:
                quiet += 1
            cycle += 1
            clock["cycle"] = cycle
            if input_drained and len(res.outputs) >= len(program.expected) and quiet >= quiet_cycles:
                return
        res.timed_out = True

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(monitor)
    sim.run()
    return res
