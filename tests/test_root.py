"""The root node alone in amaranth.sim, with stub switches on its group ports (fast; no Verilator).

The stubs record what the root sends down and answer with LOADED and COMBINE packets chosen by the test, so the
interlocks (WAIT_LOADED, the issue window, the combine entries, the return order) and the packet formats are
checked exactly against :meth:`Protocol.dispatch_to_group` and :func:`mozart.model.golden.reduce_partials`.
"""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.sim import Simulator

from mozart.hw.pysim import flit_of, put_flits, stream_get
from mozart.hw.root import Root
from mozart.model import golden
from mozart.model.config import load_config
from mozart.model.host import HostCommand, HostInterface, HostOp
from mozart.model.protocol import Flit, Packet, PacketKind, Protocol


def _table(cfg):
    """Expert e on global chiplet e // experts_per_chiplet (contiguous), local index e % experts_per_chiplet."""
    C, EL = cfg.chiplets_per_group, cfg.experts_per_chiplet
    return {e: ((e // EL) // C, (e // EL) % C, e % EL) for e in range(cfg.moe.experts)}


class Harness:
    def __init__(self, cfg):
        self.cfg, self.proto, self.host = cfg, Protocol(cfg), HostInterface(cfg)
        self.dut = Root(cfg)
        self.sim = Simulator(self.dut)
        self.sim.add_clock(1e-6)
        self.down = [[] for _ in range(cfg.groups)]   # flits each group received
        self.outputs: list[Flit] = []
        self.cycle = 0
        for g in range(cfg.groups):
            self.sim.add_testbench(self._collect(self.dut.down[g], self.down[g]), background=True)
        self.sim.add_testbench(self._collect(self.dut.host_out, self.outputs), background=True)

    def _collect(self, port, into):
        async def process(ctx):
            while True:
                into.append(flit_of(await stream_get(ctx, port)))
        return process

    async def send(self, ctx, port, flits, limit=200):
        await put_flits(ctx, port, flits, limit=limit)

    def packets(self, flits):
        out, cur = [], []
        for f in flits:
            cur.append(f)
            if f.last:
                out.append(self.proto.decode(cur))
                cur = []
        return out

    async def make_resident(self, ctx, table, experts):
        """LOADED packets for the experts' (group, chiplet, local), as their chiplets would send them."""
        topo = self.proto.topology
        for e in sorted({int(e) for e in experts}):
            g, c, local = table[e]
            loaded = Packet(PacketKind.LOADED, topo.root, topo.chiplet(g, c), 0, {"slot": 0, "expert": local})
            await self.send(ctx, self.dut.up[g], self.proto.encode(loaded))

    def run(self, bench):
        self.sim.add_testbench(bench)
        self.sim.run()


@pytest.mark.parametrize("preset", ["tiny", "wafer4x4"])
def test_load_wait_dispatch_combine_return(preset):
    cfg = load_config(preset)
    h = Harness(cfg)
    proto, host, topo = h.proto, h.host, h.proto.topology
    table = _table(cfg)
    rng = np.random.default_rng(1)
    k, G = cfg.moe.top_k, cfg.groups
    # token 0 de-duplicated, token 1 one packet per expert; each picks k distinct experts
    experts = [rng.choice(cfg.moe.experts, k, replace=False) for _ in range(2)]
    gates = [rng.integers(0, 1 << cfg.numerics.gate_bits, k) for _ in range(2)]
    x = [rng.integers(-128, 128, cfg.moe.d_model) for _ in range(2)]
    big = (1 << (cfg.numerics.partial_bits - 1)) - 5   # sums of these saturate: exact sum, clamped once

    records = [proto.saved_tokens - 1, 3]   # each token saves in its own record: the DISPATCH carries it

    def token(t, dedup):
        return HostCommand(HostOp.TOKEN, {"token": t, "first": 1, "final": 1, "dedup": dedup, "save": 1,
                                          "save_index": records[t],
                                          "valid": [1] * k, "experts": [int(e) for e in experts[t]],
                                          "gates": [int(g) for g in gates[t]]}, tuple(proto.pack_token(x[t])))

    results = {}

    async def bench(ctx):
        for e, (g, c, local) in table.items():
            await h.send(ctx, h.dut.host_in, host.encode(HostCommand(HostOp.TABLE, {"expert": e, "group": g,
                                                                                      "chiplet": c, "local": local})))
        load = {"group": G - 1, "chiplet": 0, "slot": 1, "local": 0, "addr": proto.expert_image_base(1)}
        await h.send(ctx, h.dut.host_in, host.encode(HostCommand(HostOp.LOAD, load)))
        # WAIT_LOADED holds the command stream until LOADED arrives
        wait = host.encode(HostCommand(HostOp.WAIT_LOADED, {"group": G - 1, "chiplet": 0, "slot": 1}))
        ctx.set(h.dut.host_in.valid, 1)
        ctx.set(h.dut.host_in.payload, {"data": wait[0].data, "first": 1, "last": 1})
        for _ in range(20):
            _, _, ready = await ctx.tick().sample(h.dut.host_in.ready)
            assert not ready, "WAIT_LOADED must hold the command stream"
        ctx.set(h.dut.host_in.valid, 0)
        assert sum(len(d) for d in h.down) == 1, "only the LOAD may have left"
        loaded = Packet(PacketKind.LOADED, topo.root, topo.chiplet(G - 1, 0), 0, {"slot": 1, "expert": 0})
        await h.send(ctx, h.dut.up[G - 1], proto.encode(loaded))
        await h.send(ctx, h.dut.host_in, wait, limit=10)
        await h.make_resident(ctx, table, [e for t in experts for e in t])
        await h.send(ctx, h.dut.host_in, host.encode(token(0, 1)))
        await h.send(ctx, h.dut.host_in, host.encode(token(1, 0)))
        for _ in range(40):
            await ctx.tick()
        # Answer token 1 (per expert, unreduced partials from the chiplets) first, then token 0's group results.
        for t, per_expert in ((1, True), (0, False)):
            sources = ([topo.chiplet(table[int(e)][0], table[int(e)][1]) for e in experts[t]] if per_expert else
                       sorted({topo.switch(table[int(e)][0]) for e in experts[t]}))
            parts = [rng.integers(big - 10, big, cfg.moe.d_model) * rng.choice([-1, 1]) for _ in sources]
            results[t] = golden.reduce_partials(parts, cfg.numerics.partial_bits)
            for src, p in zip(sources, parts):
                pkt = Packet(PacketKind.COMBINE, topo.root, src, t, {"reduce": int(not per_expert)},
                             tuple(proto.pack_partial(p)))
                g = topo.node(src).group
                await h.send(ctx, h.dut.up[g], proto.encode(pkt))
        for _ in range(60):
            await ctx.tick()
        assert ctx.get(h.dut.busy) == 0 and ctx.get(h.dut.errors) == 0

    h.run(bench)
    sent = [h.packets(d) for d in h.down]
    load_pkt = sent[G - 1][0]
    assert load_pkt.kind is PacketKind.LOAD and load_pkt.dst == topo.memctrl(G - 1)
    assert load_pkt.meta == {"addr": proto.expert_image_base(1), "image_words": proto.image_words, "chiplet": 0,
                             "slot": 1, "expert": 0}
    dispatches = [[p for p in s if p.kind is PacketKind.DISPATCH] for s in sent]
    # token 0: one packet per destination group with every chiplet's route word, reduce=1
    expected = []
    for g in range(G):
        routes = {}
        for e, gate in zip(experts[0], gates[0]):
            eg, c, local = table[int(e)]
            if eg == g:
                mask, gl = routes.get(c, ([0] * cfg.experts_per_chiplet, [0] * cfg.experts_per_chiplet))
                mask[local], gl[local] = 1, int(gate)
                routes[c] = (mask, gl)
        if routes:
            expected.append(proto.dispatch_to_group(0, g, routes, x[0], reduce=True, save=True,
                                                    save_index=records[0]))
    # token 1: one packet per expert, reduce=0
    for e, gate in zip(experts[1], gates[1]):
        g, c, local = table[int(e)]
        mask, gl = [0] * cfg.experts_per_chiplet, [0] * cfg.experts_per_chiplet
        mask[local], gl[local] = 1, int(gate)
        expected.append(proto.dispatch_to_group(1, g, {c: (mask, gl)}, x[1], reduce=False, save=True,
                                                save_index=records[1]))
    got = [p for d in dispatches for p in d]
    words = lambda pkts: sorted(tuple(f.data for f in proto.encode(p)) for p in pkts)  # noqa: E731
    assert words(got) == words(expected)
    # outputs in token order, each the exact sum saturated once
    frames = [h.outputs[i:i + proto.partial_flits] for i in range(0, len(h.outputs), proto.partial_flits)]
    assert len(frames) == 2 and all(f[0].first and f[-1].last for f in frames)
    for t in range(2):
        np.testing.assert_array_equal(proto.unpack_partial([f.data for f in frames[t]]), results[t])


def test_wait_combined_holds_until_the_group_answers():
    cfg = load_config("tiny")
    h = Harness(cfg)
    proto, host, topo = h.proto, h.host, h.proto.topology
    table = _table(cfg)

    async def bench(ctx):
        for e, (g, c, local) in table.items():
            await h.send(ctx, h.dut.host_in, host.encode(HostCommand(HostOp.TABLE, {"expert": e, "group": g,
                                                                                      "chiplet": c, "local": local})))
        tok = HostCommand(HostOp.TOKEN, {"token": 0, "first": 1, "final": 1, "dedup": 1, "save": 1,
                                         "valid": [1, 1], "experts": [0, 1], "gates": [1, 2]},
                          tuple(proto.pack_token([1] * cfg.moe.d_model)))
        await h.make_resident(ctx, table, [0, 1])
        await h.send(ctx, h.dut.host_in, host.encode(tok))
        wait = host.encode(HostCommand(HostOp.WAIT_COMBINED, {"groups": [1, 0]}))[0]
        ctx.set(h.dut.host_in.valid, 1)
        ctx.set(h.dut.host_in.payload, {"data": wait.data, "first": 1, "last": 1})
        for _ in range(30):
            _, _, ready = await ctx.tick().sample(h.dut.host_in.ready)
            assert not ready, "WAIT_COMBINED must hold while group 0 owes a result"
        ctx.set(h.dut.host_in.valid, 0)
        pkt = Packet(PacketKind.COMBINE, topo.root, topo.switch(0), 0, {"reduce": 1},
                     tuple(proto.pack_partial([7] * cfg.moe.d_model)))
        await h.send(ctx, h.dut.up[0], proto.encode(pkt))
        await h.send(ctx, h.dut.host_in, [wait], limit=10)
        for _ in range(20):
            await ctx.tick()
        assert ctx.get(h.dut.busy) == 0

    h.run(bench)
    (dispatch,) = h.packets(h.down[0])
    assert dispatch.meta["save"] == 1 and dispatch.meta["reduce"] == 1 and dispatch.tag == 0
    assert h.proto.unpack_partial([f.data for f in h.outputs]).tolist() == [7] * cfg.moe.d_model


def test_a_token_whose_experts_are_resident_goes_ahead_of_one_that_waits():
    """Token 0 selects an expert still loading, token 1 only resident ones: token 1 is dispatched first, token 0
    once its LOADED arrives; the outputs still leave in token order."""
    cfg = load_config("tiny")
    h = Harness(cfg)
    proto, host, topo = h.proto, h.host, h.proto.topology
    table = _table(cfg)
    waiting, ready = [0, 1], [4, 5]   # tiny: experts 0-1 on group 0's chiplet 0, 4-5 on group 1's chiplet 0

    def token(t, experts):
        return HostCommand(HostOp.TOKEN, {"token": t, "first": 1, "final": 1, "dedup": 1, "save": 0,
                                          "valid": [1, 1], "experts": experts, "gates": [1, 1]},
                          tuple(proto.pack_token([t + 1] * cfg.moe.d_model)))

    async def bench(ctx):
        for e, (g, c, local) in table.items():
            await h.send(ctx, h.dut.host_in, host.encode(HostCommand(HostOp.TABLE, {"expert": e, "group": g,
                                                                                      "chiplet": c, "local": local})))
        await h.make_resident(ctx, table, waiting[1:] + ready)
        await h.send(ctx, h.dut.host_in, host.encode(token(0, waiting)))
        await h.send(ctx, h.dut.host_in, host.encode(token(1, ready)))
        for _ in range(30):
            await ctx.tick()
        assert [p.tag for p in h.packets(h.down[0])] == [], "token 0 must wait for its expert"
        assert [p.tag for p in h.packets(h.down[1])] == [1], "token 1 must go ahead"
        await h.make_resident(ctx, table, waiting[:1])
        for _ in range(30):
            await ctx.tick()
        assert [p.tag for p in h.packets(h.down[0])] == [0]
        for t, g in ((1, 1), (0, 0)):   # results in the dispatch order
            pkt = Packet(PacketKind.COMBINE, topo.root, topo.switch(g), t, {"reduce": 1},
                         tuple(proto.pack_partial([10 + t] * cfg.moe.d_model)))
            await h.send(ctx, h.dut.up[g], proto.encode(pkt))
        for _ in range(30):
            await ctx.tick()
        assert ctx.get(h.dut.busy) == 0 and ctx.get(h.dut.errors) == 0

    h.run(bench)
    frames = [h.outputs[i:i + proto.partial_flits] for i in range(0, len(h.outputs), proto.partial_flits)]
    assert [proto.unpack_partial([f.data for f in frame])[0] for frame in frames] == [10, 11]
