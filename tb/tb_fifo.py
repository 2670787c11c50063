"""cocotb testbench of the link FIFO (design ``fifo``, ``hw/link_fifo.py``): random packets in, same packets out.

Run it with ``mozart cosim fifo --config tiny`` or :func:`mozart.sim.cosim.run`; it reads the config and seed
from the environment (:mod:`mozart.tb.env`). ``MOZART_PACKETS`` sets the random test's packet count.
"""

from __future__ import annotations

import cocotb
from cocotb.triggers import ClockCycles

from mozart.model.blocks import LinkFifoContract
from mozart.model.protocol import Protocol

from .env import clock_and_reset, env_int, rng, test_config, write_summary
from .scoreboard import Scoreboard
from .stream import PacketDriver, PacketMonitor, random_packet
from .watchdog import Watchdog


class FifoBench:
    """Driver on ``i``, monitor on ``o``, an in-order scoreboard and a watchdog: the FIFO must pass every packet
    unchanged and in order."""

    def __init__(self, dut, *, idle: float, backpressure: float):
        self.dut = dut
        self.cfg = test_config()
        self.proto = Protocol(self.cfg)
        self.fifo = LinkFifoContract.of(self.cfg)  # the documented latency and throughput of the design
        self.sb = Scoreboard("fifo scoreboard")
        self.driver = PacketDriver(dut, "i", self.proto, idle=idle)
        self.monitor = PacketMonitor(dut, "o", self.proto, backpressure=backpressure,
                                     callback=lambda p: self.sb.observe("o", p), keep=False)
        self.watchdog = Watchdog(dut.clk, [self.driver, self.monitor], timeout=200,
                                 pending=[self.sb.pending_summary], name="fifo watchdog")

    async def start(self):
        self.clock = await clock_and_reset(self.dut)
        self.monitor.start()
        self.driver.start()
        self.watchdog.start()

    def send(self, packet) -> None:
        self.sb.expect("o", packet)
        self.driver.send(packet)

    async def drain(self, limit: int = 100_000) -> None:
        """Wait until every expected packet came out (the watchdog fails a stall long before ``limit``)."""
        for _ in range(limit):
            if not self.sb.pending:
                break
            await ClockCycles(self.dut.clk, 8)
        self.sb.check_drained()

    def summary(self, **extra) -> dict:
        return {"cycles": self.clock.cycle, "packets": self.sb.matched, "flits": self.monitor.transfers,
                "flit_bits": self.proto.flit_bits, "depth": self.fifo.depth, **extra}


async def pass_random_packets(dut, test: str, stream: str, packets: int, *, idle: float, backpressure: float):
    """``packets`` random packets of every kind (drawn from the seeded stream ``stream``) through the FIFO with
    ``idle`` and ``backpressure``; every one must come out unchanged and in order. The summary goes under
    ``test``."""
    bench = FifoBench(dut, idle=idle, backpressure=backpressure)
    await bench.start()
    gen = rng(stream)
    for _ in range(packets):
        bench.send(random_packet(bench.proto, gen))
    await bench.drain()
    write_summary(bench.summary(idle=idle, backpressure=backpressure), test=test)


@cocotb.test()
async def test_random_packets(dut):
    """Random packets of every kind with random idle cycles and backpressure."""
    await pass_random_packets(dut, "test_random_packets", "packets", env_int("MOZART_PACKETS", 300), idle=0.3,
                              backpressure=0.3)


@cocotb.test()
async def test_heavy_backpressure(dut):
    """A full FIFO most of the time: back-to-back input, 80% backpressure."""
    await pass_random_packets(dut, "test_heavy_backpressure", "heavy", 60, idle=0.0, backpressure=0.8)


@cocotb.test()
async def test_full_throughput(dut):
    """No idle, no backpressure: one flit per cycle after the documented latency (LinkFifoContract.throughput)."""
    bench = FifoBench(dut, idle=0.0, backpressure=0.0)
    await bench.start()
    gen = rng("throughput")
    for _ in range(40):
        bench.send(random_packet(bench.proto, gen, max_payload=bench.proto.max_payload_flits))
    first = bench.monitor.monitor.cycle
    await bench.drain(limit=100_000)
    flits = bench.monitor.transfers
    span = bench.monitor.monitor.last_transfer_cycle - first
    # Simulated cycles, not wall time: the FIFO must sustain its documented rate.
    bound = flits / bench.fifo.throughput + bench.fifo.latency + 2
    assert span <= bound, (f"fifo must move {flits} flits within {bound:.0f} cycles at throughput "
                           f"{bench.fifo.throughput}, not {span}")
    write_summary(bench.summary(span=span, flits_per_cycle=flits / max(span, 1)), test="test_full_throughput")
