"""amaranth.sim unit tests of the switch: routing, fairness, multicast, reduction, forward progress, bad parameters.

Every data test drives seeded random idle cycles on the inputs and random backpressure on the outputs, checks
every output packet against :class:`~mozart.model.switch_model.SwitchModel` (exact payloads, per-flow order),
ends by checking that nothing is left (no loss) and fails if no flit moves for a while (watchdog).
"""

from __future__ import annotations

import collections
import gc

import numpy as np
import pytest
from amaranth.sim import Simulator

from mozart.hw.pysim import chance, flit_of, flit_payload, get_packet, put_flits, stream_get, stream_put
from mozart.hw.switch import Switch
from mozart.model.config import load_config, override
from mozart.model.errors import ConfigError
from mozart.model.blocks import SwitchContract
from mozart.model.protocol import Flit, Packet, PacketKind, Protocol
from mozart.model.switch_model import SwitchModel, reduce_partials
from mozart.tb.scoreboard import Scoreboard

pytestmark = [
    # amaranth.sim closes the still-running background drivers at the end; Python reports that as unraisable.
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


WATCHDOG = 300  # cycles without any flit moving while work is pending = a deadlock


def cfg_of(name: str, **changes):
    cfg = load_config(name)
    return override(cfg, {f"hardware.{k}": v for k, v in changes.items()}) if changes else cfg


class Bench:
    """Packet drivers on every input, monitors on every output, the model as scoreboard, chiplet responders.

    ``respond=True`` makes each chiplet port answer every reducing dispatch replica it receives with a COMBINE
    partial (``reduce=1``, random payload) after a random delay, as a chiplet would.
    """

    def __init__(self, cfg, *, group=0, seed=0, idle=0.3, backpressure=0.3, respond=False, **switch_kw):
        self.cfg, self.group = cfg, group
        self.proto = Protocol(cfg)
        self.topo = self.proto.topology
        self.dut = Switch(cfg, group, **switch_kw)
        self.model = SwitchModel(cfg, group)
        self.sb = Scoreboard("switch")
        self.rng = np.random.default_rng(seed)
        self.idle, self.backpressure, self.respond = idle, backpressure, respond
        self.P = self.topo.switch_ports
        self.queues = [collections.deque() for _ in range(self.P)]
        self.received = [[] for _ in range(self.P)]
        self.moved = 0
        self.cycle = 0
        self.partials: dict[int, list] = collections.defaultdict(list)
        self.first_out: dict[int, int] = {}
        self.values: dict[int, list] = {}  #: chiplet -> the partial its responder sends (default: random)

    # -- stimulus --------------------------------------------------------------------------------------
    def send(self, port: int, pkt: Packet) -> None:
        for e in self.model.accept(port, pkt):
            self.sb.expect(e.port, e.packet, e.flow)
        self.queues[port].extend(self.proto.encode(pkt))

    def partial_for(self, tag: int, chiplet: int, values=None) -> Packet:
        proto = self.proto
        if values is None:
            values = self.rng.integers(-(1 << 20), 1 << 20, self.cfg.moe.d_model)
        self.partials[tag].append(list(values))
        return Packet(PacketKind.COMBINE, self.topo.root, self.topo.chiplet(self.group, chiplet), tag,
                      {"reduce": 1}, tuple(proto.pack_partial(values)))

    def dispatch(self, tag: int, chiplets, reduce=True, backward=False) -> Packet:
        n = self.cfg.experts_per_chiplet
        one = (lambda v: v[0]) if n == 1 else (lambda v: v)  # pack_route takes a plain int for a 1-element field
        routes = {c: (one([1] * n), one(self.rng.integers(0, 1 << self.cfg.numerics.gate_bits, n).tolist()))
                  for c in chiplets}
        token = self.rng.integers(-128, 128, self.cfg.moe.d_model).tolist()
        if backward:   # the output gradient, then the token
            grad = self.rng.integers(-128, 128, self.cfg.moe.d_model).tolist()
            return self.proto.backward_dispatch_to_group(tag, self.group, routes, grad, token, save_index=tag,
                                                         reduce=reduce)
        return self.proto.dispatch_to_group(tag, self.group, routes, token, reduce=reduce)

    # -- the simulation ------------------------------------------------------------------------------
    def _observed(self, port: int, pkt: Packet) -> None:
        self.received[port].append(pkt)
        self.sb.observe(port, pkt)
        if self.respond and 1 <= port <= self.topo.chiplets_per_group and pkt.kind is PacketKind.DISPATCH \
                and pkt.meta["reduce"]:
            self.send(port, self.partial_for(pkt.tag, port - 1, self.values.get(port - 1)))

    def _driver(self, port: int):
        stream, queue = self.dut.port_in[port], self.queues[port]
        idle = chance(self.rng, self.idle)

        async def run(ctx):
            while True:
                if not queue:
                    await ctx.tick()
                    continue
                await stream_put(ctx, stream, flit_payload(queue[0]), idle=idle)
                queue.popleft()
                self.moved += 1
        return run

    def _monitor(self, port: int):
        stream = self.dut.port_out[port]
        stall = chance(self.rng, self.backpressure)

        async def run(ctx):
            flits = []
            while True:   # flit by flit, so that the watchdog sees every flit move
                flits.append(flit_of(await stream_get(ctx, stream, stall=stall)))
                self.moved += 1
                self.first_out.setdefault(port, self.cycle)
                if flits[-1].last:
                    self._observed(port, self.proto.decode(flits))
                    flits = []
        return run

    def pending(self) -> bool:
        return bool(self.sb.pending or any(self.queues))

    def run(self, stimulus=None, *, limit: int = 200_000) -> None:
        """Run ``stimulus(bench)`` (sends packets), then until everything expected came out."""
        sim = Simulator(self.dut)
        sim.add_clock(1e-8)
        for p in range(self.P):
            sim.add_testbench(self._driver(p), background=True)
            sim.add_testbench(self._monitor(p), background=True)

        async def main(ctx):
            if stimulus is not None:
                stimulus(self)
            quiet, last_moved = 0, -1
            while self.pending():
                await ctx.tick()
                self.cycle += 1
                quiet = 0 if self.moved != last_moved else quiet + 1
                last_moved = self.moved
                assert quiet < WATCHDOG, (f"no flit moved for {WATCHDOG} cycles at cycle {self.cycle} with "
                                          f"work pending: {self.sb.pending_summary()}")
                assert self.cycle < limit, f"the switch must finish within {limit} cycles"
            await ctx.tick().repeat(20)  # a late extra packet would show up as unexpected here
        sim.add_testbench(main)
        sim.run()
        self.sb.check_drained()
        assert not self.model.entries, f"reduction entries left open: {sorted(self.model.entries)}"


def random_unicast(bench: Bench, port: int, rng) -> Packet:
    """A random packet that this switch routes by dst (no multicast, no reduction) entering ``port``."""
    proto, topo = bench.proto, bench.topo
    while True:
        kind = PacketKind(int(rng.integers(len(PacketKind))))
        dst = int(rng.integers(topo.num_nodes))
        pkt_meta = {f.name: (rng.integers(0, 2, f.count).tolist() if f.count > 1 else int(rng.integers(0,
                                                                                                       1 << f.width)))
                    for f in proto.meta_fields[kind]}
        if kind in (PacketKind.COMBINE, PacketKind.DISPATCH):
            pkt_meta["reduce"] = 0  # random tags must not take part in reductions (the root's promise)
        length = int(rng.integers(0, proto.max_payload_flits + 1))
        payload = tuple(int(x) for x in rng.integers(0, 1 << 62, length))
        pkt = Packet(kind, dst, int(rng.integers(topo.num_nodes)), int(rng.integers(1 << proto.tag_bits)),
                     pkt_meta, payload)
        if not bench.model.is_multicast(port, pkt) and not bench.model.is_reducible(port, pkt):
            return pkt


# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "wafer4x4"])
def test_routes_every_port_pair(name):
    bench = Bench(cfg_of(name), group=1, seed=1)
    topo = bench.topo
    targets = {0: topo.root, **{1 + c: topo.chiplet(1, c) for c in range(topo.chiplets_per_group)},
               topo.memctrl_port: topo.memctrl(1)}

    def stim(b):
        for src in range(b.P):
            for out, dst in targets.items():
                b.send(src, Packet(PacketKind.MEM_READ, dst, 0, src * 16 + out, {"addr": 3, "words": 1}, (src, out)))
    bench.run(stim)
    for out, dst in targets.items():
        assert len(bench.received[out]) == bench.P and all(p.dst == dst for p in bench.received[out])


def test_other_groups_and_unknown_nodes_go_up():
    bench = Bench(cfg_of("tiny"), group=0, seed=2)
    topo = bench.topo

    def stim(b):
        for dst in (topo.root, topo.switch(1), topo.chiplet(1, 0), topo.memctrl(1), topo.num_nodes + 1):
            b.send(1, Packet(PacketKind.LOADED, dst, topo.chiplet(0, 0), 1, {"slot": 0, "expert": 0}))
    bench.run(stim)
    assert len(bench.received[0]) == 5


@pytest.mark.parametrize("name", ["tiny", "wafer4x4"])
def test_random_unicast_traffic(name):
    bench = Bench(cfg_of(name), seed=3, idle=0.2, backpressure=0.3)
    rng = np.random.default_rng(3)

    def stim(b):
        for _ in range(60):
            port = int(rng.integers(b.P))
            b.send(port, random_unicast(b, port, rng))
    bench.run(stim)
    assert bench.sb.matched == 60


def test_arbitration_is_fair_round_robin():
    """All inputs flood one output: the packets come out interleaved input by input."""
    bench = Bench(cfg_of("wafer4x4"), seed=4, idle=0.0, backpressure=0.0)
    mem = bench.topo.memctrl(0)
    sources = [0, 1, 2, 3, 4]

    def stim(b):
        for i in range(6):
            for s in sources:
                b.send(s, Packet(PacketKind.MEM_READ, mem, s, i, {"addr": s, "words": 1}, (s, i)))
    bench.run(stim)
    order = [p.payload[0] for p in bench.received[bench.topo.memctrl_port]]
    # After the first round (arrival skew), every window of len(sources) packets holds every source once.
    for start in range(len(sources), len(order) - len(sources) + 1, len(sources)):
        assert sorted(order[start:start + len(sources)]) == sources, order


@pytest.mark.parametrize("name", ["tiny", "wafer4x4"])
def test_multicast_to_every_chiplet_subset(name):
    bench = Bench(cfg_of(name), seed=5)
    C = bench.topo.chiplets_per_group

    def stim(b):
        for mask in range(1 << C):
            b.send(0, b.dispatch(mask, [c for c in range(C) if mask >> c & 1], reduce=False, backward=mask % 2 == 1))
    bench.run(stim)
    for c in range(C):
        got = bench.received[1 + c]
        assert [p.tag for p in got] == [mask for mask in range(1 << C) if mask >> c & 1]
        assert all(p.meta["chiplets"] == tuple(int(k == c) for k in range(C)) for p in got)
        # a backward replica carries its route word, the output gradient and the token
        assert [len(p.payload) for p in got] == [bench.proto.dispatch_flits(1, backward=p.tag % 2 == 1) - 1
                                                 for p in got]
    assert bench.model.replicas == sum(bin(mask).count("1") for mask in range(1 << C))


@pytest.mark.parametrize("name", ["tiny", "wafer4x4"])
def test_reduction_of_one_to_c_partials(name):
    bench = Bench(cfg_of(name), seed=6, respond=True)
    C = bench.topo.chiplets_per_group

    def stim(b):
        for tag, mask in enumerate(range(1, 1 << C)):
            b.send(0, b.dispatch(tag, [c for c in range(C) if mask >> c & 1]))
    bench.run(stim)
    up = bench.received[0]
    assert sorted(p.tag for p in up) == list(range((1 << C) - 1))
    for p in up:
        assert p.src == bench.topo.switch(0) and p.meta["reduce"] == 1
        expected = reduce_partials(bench.partials[p.tag], bench.cfg.numerics.partial_bits)
        assert bench.proto.unpack_partial(p.payload).tolist() == expected


def test_reduction_saturates_once_whatever_the_order():
    """hi + 10 - 20 over three chiplets: a chain of saturating adds would give hi - 20 or hi - 10 by arrival
    order; the switch adds exactly and saturates once, so it is always hi - 10."""
    cfg = cfg_of("wafer4x4")
    hi = (1 << (cfg.numerics.partial_bits - 1)) - 1
    for seed in range(2):
        bench = Bench(cfg, seed=seed, respond=True)
        bench.values = {0: [hi] * cfg.moe.d_model, 1: [10] * cfg.moe.d_model, 2: [-20] * cfg.moe.d_model}
        bench.run(lambda b: b.send(0, b.dispatch(9, [0, 1, 2])))
        assert bench.proto.unpack_partial(bench.received[0][0].payload).tolist() == [hi - 10] * cfg.moe.d_model


def test_baseline_partials_pass_unchanged():
    bench = Bench(cfg_of("tiny"), seed=8, respond=False)

    def stim(b):
        b.send(0, b.dispatch(3, [0, 1], reduce=False))
        for c in (0, 1):
            pkt = b.partial_for(3, c)
            b.send(1 + c, Packet(pkt.kind, pkt.dst, pkt.src, pkt.tag, {"reduce": 0}, pkt.payload))
    bench.run(stim)
    assert len(bench.received[0]) == 2 and all(p.src != bench.topo.switch(0) for p in bench.received[0])


def test_unknown_tag_partial_passes_through():
    bench = Bench(cfg_of("tiny"), seed=9)
    bench.run(lambda b: b.send(2, b.partial_for(77, 1)))
    assert bench.received[0][0].src == bench.topo.chiplet(0, 1)


@pytest.mark.parametrize("name", ["tiny", "wafer4x4"])
def test_table_of_one_entry_makes_progress_under_heavy_traffic(name):
    """Reduction table of 1: dispatches back to back, chiplets answering, unicast traffic on every port."""
    cfg = cfg_of(name, reduction_entries=1)
    bench = Bench(cfg, seed=10, idle=0.1, backpressure=0.2, respond=True)
    C = bench.topo.chiplets_per_group
    rng = np.random.default_rng(10)

    def stim(b):
        for tag in range(24):
            chips = [c for c in range(C) if rng.random() < 0.6] or [int(rng.integers(C))]
            b.send(0, b.dispatch(tag, chips))
            port = int(rng.integers(1, b.P))
            b.send(port, random_unicast(b, port, rng))
    bench.run(stim)
    assert sorted(p.tag for p in bench.received[0] if p.kind is PacketKind.COMBINE and p.src == bench.topo.switch(0)) \
        == list(range(24))


@pytest.mark.parametrize("name, voq", [("tiny", True), ("tiny", False), ("wafer4x4", True)])
def test_mixed_random_traffic(name, voq):
    """Multicast, reductions (with responders) and unicast of every kind, all ports at once; also for the
    input-queued variant (one FIFO per input)."""
    bench = Bench(cfg_of(name), seed=11, idle=0.3, backpressure=0.3, respond=True, voq=voq)
    C = bench.topo.chiplets_per_group
    rng = np.random.default_rng(11)

    def stim(b):
        for tag in range(30):
            chips = [c for c in range(C) if rng.random() < 0.5] or [0]
            b.send(0, b.dispatch(tag, chips, reduce=bool(rng.random() < 0.8), backward=bool(rng.random() < 0.5)))
            for _ in range(2):
                port = int(rng.integers(b.P))
                b.send(port, random_unicast(b, port, rng))
    bench.run(stim)


def edges_to_leave(cfg, port_in: int, pkt: Packet, port_out: int, **switch_kw) -> int:
    """Clock edges from the one that accepts ``pkt``'s head on an idle switch to the one it leaves at."""
    dut, proto = Switch(cfg, **switch_kw), Protocol(cfg)
    head = proto.encode(pkt)[0]
    result = []

    async def bench(ctx):
        src, dst = dut.port_in[port_in], dut.port_out[port_out]
        ctx.set(dst.ready, 1)
        await stream_put(ctx, src, flit_payload(head))  # returns after the accepting edge
        for edge in range(1, 20):
            *_, valid = await ctx.tick().sample(dst.valid)
            if valid:
                result.append(edge)
                return
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return result[0]


def test_zero_load_head_latency_matches_the_property():
    cfg = cfg_of("tiny")
    sw, topo = SwitchContract(cfg), Protocol(cfg).topology
    load = Packet(PacketKind.LOAD, topo.memctrl(0), 0, 1, {}, (1,))
    assert edges_to_leave(cfg, 0, load, topo.memctrl_port) == sw.head_latency
    bench = Bench(cfg)
    assert edges_to_leave(cfg, 0, bench.dispatch(1, [1]), 2) == sw.head_latency
    assert edges_to_leave(cfg, 0, load, topo.memctrl_port, voq=False) == sw.head_latency
    assert edges_to_leave(cfg_of("tiny", buffer_depth=1), 0, load, topo.memctrl_port) == 1


# -- bad parameters --------------------------------------------------------------------------------------
def test_bad_parameters_are_rejected():
    cfg = cfg_of("tiny")
    with pytest.raises(ConfigError, match="buffer_depth must be a positive number of flits, not 0"):
        Switch(cfg, buffer_depth=0)
    with pytest.raises(ConfigError, match="reduction_entries must be a positive integer, not 0"):
        Switch(cfg, reduction_entries=0)
    with pytest.raises(ConfigError, match=r"group must be in 0..1 \(tree.groups = 2\), not 2"):
        Switch(cfg, group=2)
    with pytest.raises(ConfigError, match="voq must be True or False, not 1"):
        Switch(cfg, voq=1)
    with pytest.raises(ConfigError, match="must be a WaferConfig, not dict"):
        Switch({})
    # The config itself refuses what no switch can be built from: zero ports, no buffer, a narrow flit.
    with pytest.raises(ConfigError, match="tree.chiplets_per_group must be"):
        override(cfg, {"tree.chiplets_per_group": 0})
    with pytest.raises(ConfigError, match="hardware.buffer_depth must be"):
        cfg_of("tiny", buffer_depth=0)
    with pytest.raises(ConfigError,
                       match=r"hardware.flit_bits must hold the \d+-bit packet header of this config, not 40"):
        override(cfg, {"hardware.flit_bits": 40, "dram.word_bits": 8})


def test_contract_numbers():
    sw = SwitchContract(cfg_of("wafer4x4"))
    proto = Protocol(sw.cfg)
    assert (sw.head_latency, sw.flits_per_cycle, sw.ports, sw.guard_bits) == (2, 1.0, 6, 2)
    assert sw.reduction_tokens_per_cycle == pytest.approx(1 / (4 * (proto.partial_flits + 1)))
    assert SwitchContract(cfg_of("tiny", buffer_depth=2)).flits_per_cycle == 0.5
    assert SwitchContract(cfg_of("tiny", buffer_depth=1)).head_latency == 1


def test_rejected_switches_leave_no_unused_component(recwarn):
    gc.collect()   # what earlier tests left behind is theirs
    recwarn.clear()
    for bad in ({"buffer_depth": 0}, {"reduction_entries": 0}, {"group": 9}):
        with pytest.raises(ConfigError):
            Switch(cfg_of("tiny"), **bad)
    gc.collect()
    assert not [w for w in recwarn if "never used" in str(w.message)]


# -- the reusable pieces ----------------------------------------------------------------------------------
def test_packet_mux_keeps_packets_whole_and_in_order_per_input():
    """PacketMux alone: 3 inputs of random packets with random idle, random backpressure; every packet leaves
    whole (no interleaving), each input's packets in order, nothing lost."""
    from mozart.hw.packet_mux import PacketMux
    from mozart.hw.protocol import flit_layout

    cfg = cfg_of("tiny")
    dut = PacketMux(flit_layout(cfg), 3)
    rng = np.random.default_rng(13)
    sent = {k: [[(k << 16) | (p << 4) | i for i in range(int(rng.integers(1, 6)))] for p in range(25)]
            for k in range(3)}
    got: list[list[int]] = []

    def driver(k):
        async def run(ctx):
            for packet in sent[k]:
                await put_flits(ctx, dut.i[k], [Flit(word, i == 0, i == len(packet) - 1)
                                                for i, word in enumerate(packet)], idle=chance(rng, 0.3))
        return run

    async def monitor(ctx):
        while len(got) < sum(len(v) for v in sent.values()):
            got.append([f.data for f in await get_packet(ctx, dut.o, stall=chance(rng, 0.3))])

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for k in range(3):
        sim.add_testbench(driver(k), background=True)
    sim.add_testbench(monitor)
    sim.run()
    for k in range(3):
        assert [p for p in got if p[0] >> 16 == k] == sent[k]  # whole, in order, none lost or doubled
