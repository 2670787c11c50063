"""The simulator's speed limit: a cocotb test that only runs the clock of any design (``bench/bench_cosim.py``).

``test_clock_only`` starts the clock (cocotb's GPI clock, no Python per edge), holds reset for two cycles and
then waits ``MOZART_CYCLES`` cycles (default 200,000) in one timer: what a testbench with no per-cycle Python
could reach. ``test_one_await_per_edge`` waits the same cycles one ``RisingEdge`` at a time: the cost of the
lightest per-cycle Python. Both write ``cycles`` and ``seconds`` to the summary.
"""

from __future__ import annotations

import time

import cocotb
from cocotb.triggers import RisingEdge, Timer

from .env import clock_and_reset, env_int, write_summary

PERIOD_NS = 10


async def _measure(dut, per_edge: bool, test: str) -> None:
    cycles = env_int("MOZART_CYCLES", 200_000)
    await clock_and_reset(dut, period_ns=PERIOD_NS)
    start, cpu = time.perf_counter(), time.process_time()
    if per_edge:
        edge = RisingEdge(dut.clk)
        for _ in range(cycles):
            await edge
    else:
        await Timer(cycles * PERIOD_NS, unit="ns")
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    write_summary({"cycles": cycles, "seconds": round(seconds, 4), "cycles_per_second": round(cycles / seconds),
                   "cpu_seconds": round(cpu_seconds, 4), "cycles_per_cpu_second": round(cycles / cpu_seconds)},
                       test=test)


@cocotb.test()
async def test_clock_only(dut):
    """The clock alone: the simulator's limit."""
    await _measure(dut, per_edge=False, test="test_clock_only")


@cocotb.test()
async def test_one_await_per_edge(dut):
    """One Python await per rising edge: the lightest per-cycle testbench."""
    await _measure(dut, per_edge=True, test="test_one_await_per_edge")
