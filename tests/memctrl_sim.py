"""amaranth.sim helpers of the memory controller's tests (tests/test_memctrl.py, tests/test_memctrl_reorder.py)."""

from __future__ import annotations

from amaranth.sim import Simulator


async def fill_memory(ctx, dut, contents) -> None:
    """The DRAM's first words through the backdoor (``contents``, may be None), one per cycle."""
    for addr, word in enumerate(contents or []):
        ctx.set(dut.backdoor.addr, addr)
        ctx.set(dut.backdoor.wdata, word)
        ctx.set(dut.backdoor.we, 1)
        await ctx.tick()
    ctx.set(dut.backdoor.we, 0)


async def read_memory(ctx, dut, words: int) -> list[int]:
    """The whole DRAM through the backdoor, one word per cycle."""
    memory = []
    for addr in range(words):
        ctx.set(dut.backdoor.addr, addr)
        await ctx.tick()
        memory.append(ctx.get(dut.backdoor.rdata))
    return memory


def run_testbenches(dut, driver, collector, bench) -> None:
    """The driver and collector in the background, ``bench`` deciding when the simulation ends."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(driver, background=True)
    sim.add_testbench(collector, background=True)
    sim.add_testbench(bench)
    sim.run()


def packets_of(flits, proto) -> list:
    """``port_out``'s flits as packets; they must end on a packet boundary."""
    packets, current = [], []
    for f in flits:
        current.append(f)
        if f.last:
            packets.append(proto.decode(current))
            current = []
    assert not current, f"port_out must end on a packet boundary, not inside a packet of {len(current)} flits"
    return packets
