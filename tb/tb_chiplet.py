"""cocotb testbench of the expert chiplet (design ``chiplet``, ``hw/chiplet.py``) against the golden model.

The chiplet under test is chiplet ``(0, 0)`` of the config. A :class:`~mozart.model.chiplet_program.ChipletProgram`
makes the input (WEIGHT loads interleaved with DISPATCH replicas, reloads that must wait for tokens inside,
dispatches inside a load) and every packet the chiplet must send: COMBINE partials bit-exact with
:func:`mozart.model.golden.chiplet_partial`, MEM_WRITEs of saved activations (this testbench stands in for the
memory controller and checks each packet's address, length and data), and LOADED. A scoreboard checks each
output packet in its flow's order and that nothing is left over; a watchdog fails a stall.

``test_training_step`` runs a whole training step (:meth:`ChipletProgram.training_program`): saving forward
tokens, the backward of each saved token (restore reads, input-gradient COMBINEs, GATE_GRADs), an UPDATE of every
slot (write-backs, UPDATED). Behind the chiplet sits the model's :class:`~mozart.model.chiplet_memory.ChipletMemory`
(the restores read what the saves wrote), and the model's
:class:`~mozart.model.chiplet_input_scheduler.InputScheduler` picks each next input packet (memory answers, the
program's Barriers, the root's backward credit): the same two the amaranth.sim driver uses.

``MOZART_TOKENS`` sets the random test's token count (default 2000), ``MOZART_TRAIN_TOKENS`` the training step's
forward tokens (default 40). ``MOZART_TRAIN_FAULT`` breaks the training step's environment on purpose, to show
that the test catches it: ``no-credit`` (the scheduler ignores the backward credit: backward DISPATCHes fill the
chiplet and block the restores' MEM_DATA behind them, and the watchdog names the stall) or ``drop-writes`` (the
memory forgets every write: the restores read zeros, and the scoreboard rejects the gradients). Run with
``mozart cosim chiplet``.
"""

from __future__ import annotations

import os

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from mozart.model.blocks import ChipletContract
from mozart.model.blocks.chiplet import BackwardGeometry
from mozart.model.chiplet_input_scheduler import InputScheduler, is_backward_dispatch
from mozart.model.chiplet_memory import ChipletMemory
from mozart.model.protocol import Packet, PacketKind, Protocol

from mozart.model.chiplet_program import ChipletProgram
from .env import clock_and_reset, env_int, rng, test_config, write_summary
from .scoreboard import Scoreboard
from .stream import PacketDriver, PacketMonitor
from .watchdog import Watchdog


class ChipletBench:
    """Packet driver on ``port_in``, packet monitor on ``port_out``, scoreboard, watchdog."""

    def __init__(self, dut, *, idle: float, backpressure: float, stream: str, quiet: int | None = None):
        self.dut = dut
        self.cfg = test_config()
        self.proto = Protocol(self.cfg)
        self.chiplet = ChipletContract(self.cfg)   # the documented formulas of the design under test
        self.program = ChipletProgram(self.cfg, rng("program", stream), token_slots=self.chiplet.token_slots)
        self.sb = Scoreboard(f"chiplet scoreboard ({stream})")
        self.driver = PacketDriver(dut, "port_in", self.proto, idle=idle, rng=rng("idle", stream))
        self.monitor = PacketMonitor(dut, "port_out", self.proto, backpressure=backpressure,
                                     rng=rng("backpressure", stream), callback=self._observe, keep=False)
        self.scheduler: InputScheduler | None = None   # set by run_scheduled
        # The longest silence with work pending (default: a full activation buffer of forward tokens using every
        # expert).
        quiet = self.chiplet.quiet_cycles if quiet is None else quiet
        self.watchdog = Watchdog(dut.clk, [self.driver, self.monitor],
                                 timeout=int(4 * quiet / (1 - backpressure)) + 500,
                                 pending=[self.sb.pending_summary, self._scheduler_pending],
                                 name="chiplet watchdog")
        self.seen = {k: 0 for k in PacketKind}

    def _observe(self, packet) -> None:
        self.seen[packet.kind] += 1
        self.sb.observe("port_out", packet)
        if self.scheduler is not None:
            self.scheduler.observe(self.monitor.monitor.cycle, packet)

    def _scheduler_pending(self) -> str:
        return self.scheduler.describe() if self.scheduler is not None else ""

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

    async def run_scheduled(self, scheduler: InputScheduler) -> None:
        """Like :meth:`run`, but each next input packet comes from ``scheduler`` (memory answers, Barriers,
        the backward credit) once the previous one is in; the run ends when the scheduler is drained too."""
        self.scheduler = scheduler
        for e in self.program.expected:
            self.sb.expect("port_out", e.packet, e.flow)
        edge = RisingEdge(self.dut.clk)
        while self.sb.pending or self.driver.pending or not scheduler.drained:
            await edge
            if not self.driver.pending:
                packet = scheduler.next_input(self.monitor.monitor.cycle)
                if packet is not None:
                    self.driver.send(packet)
        await ClockCycles(self.dut.clk, 200)   # nothing more may come (the scoreboard rejects extras)
        self.sb.check_drained()
        assert scheduler.drained and not self.driver.pending, \
            f"every input must go in: {scheduler.describe()}, {self.driver.pending} flits on port_in"

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


class _NoCreditScheduler(InputScheduler):
    """Fault ``no-credit``: a scheduler that sends backward DISPATCHes without the root's backward credit."""

    def may_send(self, item) -> bool:
        return (isinstance(item, Packet) and is_backward_dispatch(item)) or super().may_send(item)


class _DropWritesMemory(ChipletMemory):
    """Fault ``drop-writes``: a memory that acknowledges writes but keeps none (every read returns zeros)."""

    def request(self, cycle, packet) -> None:
        super().request(cycle, packet)
        self.words.clear()


TRAINING_FAULTS = {"": (InputScheduler, ChipletMemory), "no-credit": (_NoCreditScheduler, ChipletMemory),
                   "drop-writes": (InputScheduler, _DropWritesMemory)}


@cocotb.test()
async def test_training_step(dut):
    """A whole training step with the memory behind the chiplet: forward (saves), backward (restores, input
    gradients, gate gradients) under the backward credit, the UPDATE of every slot (write-backs); 30% idle, 30%
    backpressure."""
    await _training_step(dut, "test_training_step", idle=0.3, backpressure=0.3,
                         tokens=env_int("MOZART_TRAIN_TOKENS", 40))


@cocotb.test()
async def test_training_step_backs_up(dut):
    """A training step at 90% output backpressure with back-to-back input: GATE_GRADs leave slowly, so the
    backward credit is what keeps backward DISPATCHes from blocking the restores' MEM_DATA on the one input."""
    await _training_step(dut, "test_training_step_backs_up", idle=0.0, backpressure=0.9,
                         tokens=env_int("MOZART_TRAIN_BACKUP_TOKENS", 24))


async def _training_step(dut, test: str, *, idle: float, backpressure: float, tokens: int) -> None:
    fault = os.environ.get("MOZART_TRAIN_FAULT", "")
    if fault not in TRAINING_FAULTS:
        raise ValueError(f"MOZART_TRAIN_FAULT must be one of {sorted(f for f in TRAINING_FAULTS if f)} or empty, "
                         f"not {fault!r}")
    cfg = test_config()
    contract = ChipletContract(cfg)
    # The longest silence with work pending: a full activation buffer of backward tokens using every expert, or
    # a weight update.
    backward = contract.token_slots * BackwardGeometry(cfg).cycles_per_token(cfg.experts_per_chiplet)
    bench = ChipletBench(dut, idle=idle, backpressure=backpressure, stream=test,
                         quiet=max(contract.quiet_cycles, backward, contract.update_cycles))
    bench.program.training_program(tokens, extreme=0.05)
    scheduler_class, memory_class = TRAINING_FAULTS[fault]
    scheduler = scheduler_class(bench.program, memory_class(bench.proto))
    await bench.start()
    await bench.run_scheduled(scheduler)
    backward_tokens = bench.program.expected_by_kind()[PacketKind.GATE_GRAD]
    write_summary(bench.summary(idle=idle, backpressure=backpressure, backward_tokens=backward_tokens,
                                forward_tokens=bench.program.tokens - backward_tokens,
                                mem_read=bench.seen[PacketKind.MEM_READ], gate_grad=bench.seen[PacketKind.GATE_GRAD],
                                updated=bench.seen[PacketKind.UPDATED]), test=test)
