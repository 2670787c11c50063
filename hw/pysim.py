"""amaranth.sim helpers: run an :class:`~mozart.hw.chiplet.ExpertChiplet` on a :class:`ChipletProgram`.

For the fast unit tests and the benchmarks (no Verilator build). One async testbench drives ``port_in`` with
seeded random idle cycles, drives ``port_out.ready`` with seeded random backpressure, reassembles the output
packets, and counts cycles and MAC-active cycles.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from amaranth.sim import Simulator

from mozart.model.protocol import Flit, Packet, Protocol

from mozart.model.chiplet_program import ChipletProgram

__all__ = ["PysimResult", "run_pysim"]


@dataclass
class PysimResult:
    outputs: list[Packet]
    cycles: int                  #: cycles until the last output flit (or the limit)
    mac_cycles: int              #: cycles in which the MAC lanes worked
    first_mac: int = -1          #: cycle of the first MAC-active cycle
    last_mac: int = -1           #: cycle of the last MAC-active cycle
    input_done: int = -1         #: cycle at which the last input flit was accepted
    timed_out: bool = False
    stall_waiting_input: list[int] = field(default_factory=list)   #: cycles a WEIGHT/DISPATCH head waited


def run_pysim(dut, program: ChipletProgram, *, idle: float = 0.0, backpressure: float = 0.0, seed: int = 0,
              max_cycles: int = 200_000, quiet_cycles: int = 200) -> PysimResult:
    """Simulate ``dut`` on ``program.inputs``; stop ``quiet_cycles`` after the input is drained and the
    output has been silent (or at ``max_cycles``: ``timed_out``)."""
    proto = Protocol(program.cfg)
    flits = [f for p in program.inputs for f in proto.encode(p)]
    rng = np.random.default_rng(seed)
    idle_draw = rng.random(max_cycles + 1) < idle
    bp_draw = rng.random(max_cycles + 1) < backpressure
    res = PysimResult([], 0, 0)
    expected_out = len(program.expected)

    async def bench(ctx):
        pin, pout = dut.port_in, dut.port_out
        i, cyc, quiet = 0, 0, 0
        holding = False   # a flit offered and not yet taken stays valid (the stream rule): idle only between flits
        current: list[Flit] = []
        while cyc < max_cycles:
            drive = i < len(flits) and (holding or not idle_draw[cyc])
            if drive:
                f = flits[i]
                ctx.set(pin.payload, {"data": f.data, "first": f.first, "last": f.last})
            ctx.set(pin.valid, drive)
            ctx.set(pout.ready, not bp_draw[cyc])
            _, _, in_ready, o_valid, o_payload, mac = await ctx.tick().sample(
                pin.ready, pout.valid, pout.payload, dut.mac_active)
            holding = drive and not in_ready
            if drive and in_ready:
                i += 1
                if i == len(flits):
                    res.input_done = cyc
            if mac:
                res.mac_cycles += 1
                res.last_mac = cyc
                if res.first_mac < 0:
                    res.first_mac = cyc
            if o_valid and not bp_draw[cyc]:
                current.append(Flit(int(o_payload.data), bool(o_payload.first), bool(o_payload.last)))
                quiet = 0
                res.cycles = cyc + 1
                if current[-1].last:
                    res.outputs.append(proto.decode(current))
                    current = []
            else:
                quiet += 1
            cyc += 1
            if i == len(flits) and len(res.outputs) >= expected_out and quiet >= quiet_cycles:
                return
        res.timed_out = True

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return res
