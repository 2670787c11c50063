"""cocotb testbench of the expert chiplet (design ``chiplet``, ``hw/chiplet.py``) against the golden model.

The chiplet under test is chiplet ``(0, 0)`` of the config. A :class:`~mozart.model.chiplet_program.ChipletProgram`
makes the input (WEIGHT loads interleaved with DISPATCH replicas, reloads that must wait for tokens inside,
dispatches inside a load) and every packet the chiplet must send: COMBINE partials bit-exact with
:func:`mozart.model.golden.chiplet_partial`, MEM_WRITEs of saved activations (this testbench stands in for the
memory controller and checks each packet's address, length and data), and LOADED. A scoreboard checks each
output packet in its flow's order and that nothing is left over; a watchdog fails a stall.

``MOZART_TOKENS`` sets the random test's token count (default 2000). Run with ``mozart cosim chiplet``.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles

from mozart.model.blocks import ChipletContract
from mozart.model.protocol import PacketKind, Protocol

from mozart.model.chiplet_program import ChipletProgram
from .env import clock_and_reset, env_int, rng, test_config, write_summary
from .scoreboard import Scoreboard
from .stream import PacketDriver, PacketMonitor
from .watchdog import Watchdog


class ChipletBench:
    """Packet driver on ``port_in``, packet monitor on ``port_out``, scoreboard, watchdog."""

    def __init__(self, dut, *, idle: float, backpressure: float, stream: str):
        self.dut = dut
        self.cfg = test_config()
        self.proto = Protocol(self.cfg)
        self.chiplet = ChipletContract(self.cfg)   # the documented formulas of the design under test
        self.program = ChipletProgram(self.cfg, rng("program", stream), token_slots=self.chiplet.token_slots)
        self.sb = Scoreboard(f"chiplet scoreboard ({stream})")
        self.driver = PacketDriver(dut, "port_in", self.proto, idle=idle, rng=rng("idle", stream))
        self.monitor = PacketMonitor(dut, "port_out", self.proto, backpressure=backpressure,
                                     rng=rng("backpressure", stream), callback=self._observe, keep=False)
        # The longest silence with work pending: a full activation buffer of tokens using every expert.
        quiet = self.chiplet.quiet_cycles
        self.watchdog = Watchdog(dut.clk, [self.driver, self.monitor],
                                 timeout=int(4 * quiet / (1 - backpressure)) + 500,
                                 pending=[self.sb.pending_summary], name="chiplet watchdog")
        self.seen = {k: 0 for k in PacketKind}

    def _observe(self, packet) -> None:
        self.seen[packet.kind] += 1
        self.sb.observe("port_out", packet)

    async def start(self):
        self.clock = await clock_and_reset(self.dut)
        self.monitor.monitor.start()
        self.driver.start()
        self.watchdog.start()

    async def run(self) -> None:
        """Send the whole program, wait until every expected packet came out, and check nothing else does."""
        for e in self.program.expected:
            self.sb.expect("port_out", e.packet, e.flow)
        for p in self.program.inputs:
            self.driver.send(p)
        while self.sb.pending or self.driver.pending:
            await ClockCycles(self.dut.clk, 64)
        await ClockCycles(self.dut.clk, 200)   # nothing more may come (the scoreboard rejects extras)
        self.sb.check_drained()
        assert not self.driver.pending, f"port_in must take every flit, {self.driver.pending} left"

    def summary(self, **extra) -> dict:
        return {"cycles": self.clock.cycle, "tokens": self.program.tokens, "jobs": self.program.selected,
                "combine": self.seen[PacketKind.COMBINE], "mem_write": self.seen[PacketKind.MEM_WRITE],
                "loaded": self.seen[PacketKind.LOADED], "packets": self.sb.matched,
                "cycles_per_expert": self.chiplet.cycles_per_expert, **extra}


@cocotb.test()
async def test_random_traffic(dut):
    """Random weights, tokens, masks, gates and saves; reloads interleaved with compute; idle and backpressure."""
    await _random_program(dut, "test_random_traffic", "random", idle=0.3, backpressure=0.3,
                          tokens=env_int("MOZART_TOKENS", 2000), extreme=0.05)


@cocotb.test()
async def test_extreme_values(dut):
    """Weights, tokens and gates at the rails (+max, -min, mixed): saturation at every stage."""
    await _random_program(dut, "test_extreme_values", "extreme", idle=0.1, backpressure=0.1,
                          tokens=env_int("MOZART_EXTREME_TOKENS", 150), extreme=1.0, reload_every=4.0)


async def _random_program(dut, test: str, stream: str, *, idle: float, backpressure: float, tokens: int,
                          **program) -> None:
    bench = ChipletBench(dut, idle=idle, backpressure=backpressure, stream=stream)
    bench.program.random_program(tokens, **program)
    await bench.start()
    await bench.run()
    write_summary(bench.summary(idle=idle, backpressure=backpressure), test=test)


@cocotb.test()
async def test_output_backs_up(dut):
    """90% backpressure with back-to-back input and every token saving: the chiplet must stall, not lose."""
    bench = ChipletBench(dut, idle=0.0, backpressure=0.9, stream="backup")
    prog = bench.program
    prog.random_program(0)
    for i in range(env_int("MOZART_BACKUP_TOKENS", 60)):
        if i % 15 == 14:   # reload slot s with expert s, for as many slots as there are experts
            slot = i % min(len(prog.slots), bench.cfg.experts_per_chiplet)
            prog.load(slot, slot, dispatches_inside=2, save=True)
        else:
            prog.dispatch(save=True)
    await bench.start()
    await bench.run()
    write_summary(bench.summary(idle=0.0, backpressure=0.9), test="test_output_backs_up")
