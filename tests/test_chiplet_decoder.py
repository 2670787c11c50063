"""The chiplet's packet decoder alone (amaranth.sim): each packet goes whole to the unit of its kind (WEIGHT,
DISPATCH, MEM_DATA), or is dropped; a head flit waits for its unit."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from mozart.hw.chiplet_decoder import ChipletDecoder
from mozart.model.config import load_config, override
from mozart.model.protocol import Flit, Packet, PacketKind, Protocol

CFG = override(load_config("tiny"), {"hardware.sram_slots": 3})   # the slot field has 2 bits: slot 3 does not exist


def _packets(node):
    weight = Packet(PacketKind.WEIGHT, node, 9, 1, {"slot": 2, "expert": 1, "offset": 0, "final": 1}, (5, 6))
    no_slot = Packet(PacketKind.WEIGHT, node, 9, 2, {"slot": 3, "expert": 1, "offset": 0, "final": 1}, (7,))
    load = Packet(PacketKind.LOAD, node, 0, 3, {}, ())
    mem_data = Packet(PacketKind.MEM_DATA, node, 9, 4, {"addr": 4, "words": 2}, (1, 2))
    return [weight, no_slot, load, mem_data]


def route(decoder, flits, *, seed=0, cycles=400):
    """Drive ``flits`` (seeded idle on the input, backpressure on every output); return the flits each output
    took and the number of input flits consumed."""
    rng = np.random.default_rng(seed)
    got = {name: [] for name in ChipletDecoder.OUTPUTS}
    consumed = 0

    async def bench(ctx):
        nonlocal consumed
        holding = False
        for _ in range(cycles):
            drive = consumed < len(flits) and (holding or rng.random() < 0.7)
            if drive:
                f = flits[consumed]
                ctx.set(decoder.i.payload, {"data": f.data, "first": f.first, "last": f.last})
            ctx.set(decoder.i.valid, drive)
            ready = {name: bool(rng.random() < 0.6) for name in got}
            for name, value in ready.items():
                ctx.set(getattr(decoder, name).ready, value)
            ports = [p for name in got for p in (getattr(decoder, name).valid, getattr(decoder, name).payload)]
            sampled = await ctx.tick().sample(decoder.i.ready, *ports)
            in_ready = sampled[2]
            outputs = {name: sampled[3 + 2 * i:5 + 2 * i] for i, name in enumerate(got)}
            for name, (valid, payload) in outputs.items():
                if valid and ready[name]:
                    got[name].append(Flit(int(payload.data), bool(payload.first), bool(payload.last)))
            holding = drive and not in_ready
            consumed += drive and in_ready

    sim = Simulator(decoder)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return got, consumed


def check_routing(decoder_class):
    proto = Protocol(CFG)
    node = proto.topology.chiplet(0, 0)
    weight, no_slot, load, mem_data = _packets(node)
    dispatch = proto.dispatch_to_group(5, 0, {0: ((1, 0), (3, 0))}, tuple(range(CFG.moe.d_model)))
    stray = Flit(123, False, False)   # a payload flit outside any packet
    order = [weight, load, dispatch, no_slot, mem_data, weight, dispatch]
    flits = [f for p in order[:3] for f in proto.encode(p)] + [stray] + [f for p in order[3:] for f in proto.encode(p)]
    for seed in range(3):
        got, consumed = route(decoder_class(CFG), flits, seed=seed)
        assert consumed == len(flits), "input not drained"
        assert got["weight"] == proto.encode(weight) * 2, "weight output: not exactly the WEIGHT packets"
        assert got["dispatch"] == proto.encode(dispatch) * 2, "dispatch output: not exactly the DISPATCH packets"
        assert got["mem_data"] == proto.encode(mem_data), "mem_data output: not exactly the MEM_DATA packets"


def test_each_kind_goes_whole_to_its_unit_and_the_rest_is_dropped():
    check_routing(ChipletDecoder)


def test_the_routing_check_catches_a_decoder_that_forwards_a_missing_slot():
    class SlotBlind(ChipletDecoder):   # mutant: every WEIGHT goes to the loader, the slot is not checked
        def elaborate(self, platform):
            self._cfg = override(self._cfg, {"hardware.sram_slots": 4})
            return super().elaborate(platform)

    with pytest.raises(AssertionError, match="weight output: not exactly the WEIGHT packets"):
        check_routing(SlotBlind)
