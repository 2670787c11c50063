"""The chiplet's output alone (amaranth.sim): a packet from ``packets`` (a restore read) waits while ``hold_packets``
is high (a save the engine produced is not yet sent), then leaves whole."""

import pytest
from amaranth import Const
from amaranth.sim import Simulator

from mozart.hw.chiplet_output import ChipletOutput
from mozart.hw.pysim import flit_of, flit_payload
from mozart.model.config import load_config
from mozart.model.protocol import Packet, PacketKind, Protocol

CFG = load_config("tiny")


class _IgnoresTheHold(ChipletOutput):
    """Mutant: sends a packet whatever ``hold_packets`` says."""

    def elaborate(self, platform):
        hold, self.hold_packets = self.hold_packets, Const(0)
        try:
            return super().elaborate(platform)
        finally:
            self.hold_packets = hold


def first_packet_cycle(output_class, hold_cycles: int) -> int:
    """The cycle in which a restore read offered at cycle 0 leaves, with ``hold_packets`` high for the first
    ``hold_cycles`` cycles."""
    proto = Protocol(CFG)
    topo = proto.topology
    dut = output_class(CFG, group=0, index=0, node=topo.chiplet(0, 0))
    read = Packet(PacketKind.MEM_READ, topo.memctrl(0), topo.chiplet(0, 0), 3, {"addr": 300, "words": 2})
    result = []

    async def bench(ctx):
        ctx.set(dut.packets.payload, flit_payload(proto.encode(read)[0]))
        ctx.set(dut.packets.valid, 1)
        ctx.set(dut.o.ready, 1)
        for cycle in range(hold_cycles + 10):
            ctx.set(dut.hold_packets, cycle < hold_cycles)
            _, _, valid, payload, taken = await ctx.tick().sample(dut.o.valid, dut.o.payload, dut.packets.ready)
            if valid:
                assert proto.decode([flit_of(payload)]) == read
                result.append(cycle)
                return
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result[0] if result else -1


@pytest.mark.parametrize("hold", [0, 5, 40])
def test_a_packet_waits_for_the_hold_to_end(hold):
    assert first_packet_cycle(ChipletOutput, hold) >= hold


def test_the_hold_check_catches_an_output_that_ignores_it():
    assert first_packet_cycle(_IgnoresTheHold, 40) < 40
