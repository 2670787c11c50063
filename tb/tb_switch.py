"""cocotb testbench of the switch (design ``switch``, group 0, ``hw/switch.py``) against its transaction model.

A :class:`PacketDriver` on every input and a :class:`PacketMonitor` on every output (seeded random idle and
backpressure), :class:`~mozart.model.switch_model.SwitchModel` as the reference, an in-order-per-flow
:class:`Scoreboard` (flow = input port; each reduced result is its own flow, since completion order depends on
timing), a :class:`Watchdog`, and *chiplet responders*: every dispatch replica a chiplet port emits is answered by
that chiplet with a COMBINE partial (same ``reduce`` bit, full-range random elements), as a chiplet would.

Run with ``mozart cosim switch --config PRESET`` or :func:`mozart.sim.cosim.run`. Environment options:
``MOZART_PACKETS`` (random soak length, default 1500), ``MOZART_BENCH=1`` (also run the ``bench_*``
measurements that ``bench/bench_switch.py`` reads from the summary).
"""

from __future__ import annotations

import os

import numpy as np

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge

from mozart.model.blocks import SwitchContract
from mozart.model.protocol import Packet, PacketKind, Protocol
from mozart.model.switch_model import SwitchModel

from .env import clock_and_reset, env_int, rng, test_config, write_summary
from .scoreboard import Scoreboard
from .stream import PacketDriver, PacketMonitor, random_packet
from .watchdog import Watchdog

BENCH = os.environ.get("MOZART_BENCH") == "1"


class SwitchBench:
    """Drivers, monitors, model, scoreboard, responders and watchdog around the switch of group 0."""

    def __init__(self, dut, *, idle=0.2, backpressure=0.2, respond=True, watchdog=2000):
        self.dut = dut
        self.cfg = test_config()
        self.proto = Protocol(self.cfg)
        self.topo = self.proto.topology
        self.switch = SwitchContract(self.cfg)  # the documented numbers; the DUT is its Verilog
        self.model = SwitchModel(self.cfg, 0)
        self.sb = Scoreboard("switch scoreboard")
        self.P, self.C = self.topo.switch_ports, self.topo.chiplets_per_group
        self.respond = respond
        self.rng = rng("switch bench")
        idle = idle if isinstance(idle, (list, tuple)) else [idle] * self.P
        backpressure = backpressure if isinstance(backpressure, (list, tuple)) else [backpressure] * self.P
        self.drivers = [PacketDriver(dut, f"port_in__{p}", self.proto, idle=idle[p]) for p in range(self.P)]
        self.monitors = [PacketMonitor(dut, f"port_out__{p}", self.proto, backpressure=backpressure[p],
                                       callback=self._observer(p), keep=False) for p in range(self.P)]
        self.watchdog = Watchdog(dut.clk, self.drivers + self.monitors, timeout=watchdog,
                                 pending=[self.sb.pending_summary, self._queued], name="switch watchdog")
        self.live_tags: set[int] = set()   # reducing dispatches whose result has not come out yet
        self.sent_packets = 0
        self.reduced = 0
        self.observers = []                # extra callbacks (port, packet, cycle) for measurements

    def _queued(self) -> str:
        return ", ".join(f"{d.name}: {d.pending} flits" for d in self.drivers if d.pending)

    async def start(self):
        self.clock = await clock_and_reset(self.dut)
        for port in self.monitors + self.drivers:
            port.start()
        self.watchdog.start()

    # -- stimulus and checking --------------------------------------------------------------------------
    def send(self, port: int, pkt: Packet) -> None:
        for e in self.model.accept(port, pkt):
            self.sb.expect(e.port, e.packet, e.flow)
        self.drivers[port].send(pkt)
        self.sent_packets += 1

    def _observer(self, port: int):
        def observe(pkt: Packet) -> None:
            self.sb.observe(port, pkt)
            if port == self.topo.UP_PORT and pkt.kind is PacketKind.COMBINE and pkt.src == self.topo.switch(0):
                self.live_tags.discard(pkt.tag)
                self.reduced += 1
            if self.respond and 1 <= port <= self.C and pkt.kind is PacketKind.DISPATCH:
                self.send(port, self.partial(port - 1, pkt.tag, pkt.meta["reduce"]))
            for fn in self.observers:
                fn(port, pkt, self.clock.cycle)
        return observe

    def partial(self, chiplet: int, tag: int, reduce: int, values=None) -> Packet:
        bits = self.cfg.numerics.partial_bits
        if values is None:  # full range: sums saturate often
            values = self.rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), self.cfg.moe.d_model, dtype=np.int64)
        return Packet(PacketKind.COMBINE, self.topo.root, self.topo.chiplet(0, chiplet), tag, {"reduce": int(reduce)},
                      tuple(self.proto.pack_partial(values)))

    def dispatch(self, tag: int, chiplets, reduce: bool = True, backward: bool | None = None) -> Packet:
        """A dispatch to ``chiplets`` of group 0; forward or backward (output gradient and token) at random
        unless ``backward`` says."""
        n = self.cfg.experts_per_chiplet
        one = (lambda v: v[0]) if n == 1 else (lambda v: v)  # pack_route takes a plain int for a 1-element field
        routes = {c: (one(self.rng.integers(0, 2, n).tolist()),
                      one(self.rng.integers(0, 1 << self.cfg.numerics.gate_bits, n).tolist())) for c in chiplets}
        token = self.rng.integers(-(1 << 7), 1 << 7, self.cfg.moe.d_model).tolist()
        if reduce and chiplets:
            self.live_tags.add(tag)
        if bool(self.rng.integers(2)) if backward is None else backward:
            grad = self.rng.integers(-(1 << 7), 1 << 7, self.cfg.moe.d_model).tolist()
            return self.proto.backward_dispatch_to_group(tag, 0, routes, grad, token, save_index=tag, reduce=reduce)
        return self.proto.dispatch_to_group(tag, 0, routes, token, reduce=reduce)

    def free_tag(self) -> int | None:
        free = [t for t in range(1 << self.proto.tag_bits) if t not in self.live_tags]
        return int(self.rng.choice(free)) if free else None

    def unicast(self, port: int, *, dst: int | None = None, kind=None, max_payload=None) -> Packet:
        """A random packet the switch routes by ``dst`` when it enters ``port`` (no multicast, no reduction)."""
        while True:
            pkt = random_packet(self.proto, self.rng, kind=kind, dst=dst, max_payload=max_payload)
            if pkt.kind in (PacketKind.COMBINE, PacketKind.DISPATCH):
                # A partial of a reduced token, or a reducing dispatch, with a random tag would break the root's
                # promise (tags of tokens in flight are unique): random ones never reduce.
                pkt = Packet(pkt.kind, pkt.dst, pkt.src, pkt.tag, {**pkt.meta, "reduce": 0}, pkt.payload)
            if not self.model.is_multicast(port, pkt):
                return pkt

    def random_subset(self) -> list[int]:
        return [c for c in range(self.C) if self.rng.random() < 0.5]

    async def drain(self, limit_cycles: int = 2_000_000) -> None:
        """Wait until every driver is empty and every expected packet came out; then check nothing is left."""
        start = self.clock.cycle
        while self.sb.pending or any(d.pending for d in self.drivers):
            await ClockCycles(self.dut.clk, 16)
            assert self.clock.cycle - start < limit_cycles, f"switch must drain within {limit_cycles} cycles"
        await ClockCycles(self.dut.clk, 32)  # anything extra would arrive now and fail the scoreboard
        self.sb.check_drained()
        assert not self.model.entries, (f"reduction entries must all close, but tags {sorted(self.model.entries)} "
                                        f"are open")
        assert not any(m.in_packet for m in self.monitors), "no packet may be left half-delivered"

    def summary(self, **extra) -> dict:
        return {"cycles": self.clock.cycle, "packets": self.sb.matched, "packets_in": self.sent_packets,
                "flits_in": sum(d.transfers for d in self.drivers),
                "flits_out": sum(m.transfers for m in self.monitors),
                "replicas": self.model.replicas, "reduced": self.model.reduced, "flit_bits": self.proto.flit_bits,
                "chiplets": self.C, "reduction_entries": self.cfg.hardware.reduction_entries, **extra}


def _targets(topo) -> dict[int, int]:
    """Output port -> a destination node behind it (group 0)."""
    return {0: topo.root, **{1 + c: topo.chiplet(0, c) for c in range(topo.chiplets_per_group)},
            topo.memctrl_port: topo.memctrl(0)}


# -- directed tests -------------------------------------------------------------------------------------------
@cocotb.test()
async def test_every_kind_every_port_pair(dut):
    """Every packet kind from every input to every output, with empty, random and maximum-length payloads."""
    bench = SwitchBench(dut, idle=0.2, backpressure=0.2, respond=False)
    await bench.start()
    targets = _targets(bench.topo)
    lengths = (0, None, bench.proto.max_payload_flits)  # empty, random, maximum: rotated over the pairs
    for kind in PacketKind:
        for src in range(bench.P):
            for out, dst in targets.items():
                length = lengths[(int(kind) + src + out) % len(lengths)]
                pkt = bench.unicast(src, dst=dst, kind=kind, max_payload=length)
                if length is not None:
                    pkt = Packet(pkt.kind, pkt.dst, pkt.src, pkt.tag, pkt.meta,
                                 tuple(bench.rng.integers(0, 1 << 62, length).tolist()))
                bench.send(src, pkt)
    await bench.drain()
    write_summary(bench.summary(), test="test_every_kind_every_port_pair")


@cocotb.test()
async def test_multicast_every_subset(dut):
    """Dispatch to every subset of chiplets (1..C destinations and the empty set), with and without reduction;
    each replica is answered, so this also reduces 1..C partials per token."""
    bench = SwitchBench(dut, idle=0.2, backpressure=0.2)
    await bench.start()
    tag = 0
    for reduce in (False, True):
        for mask in range(1 << bench.C):
            bench.send(0, bench.dispatch(tag, [c for c in range(bench.C) if mask >> c & 1], reduce))
            tag += 1
    await bench.drain()
    expected = sum(bin(mask).count("1") for mask in range(1 << bench.C))
    assert bench.model.replicas == 2 * expected
    assert bench.model.reduced == (1 << bench.C) - 1
    write_summary(bench.summary(), test="test_multicast_every_subset")


@cocotb.test()
async def test_back_to_back_max_length(dut):
    """Maximum-length packets back to back, every input to a different output, no idle and no backpressure:
    every output must sustain the documented flits per cycle (counted in simulated cycles)."""
    bench = SwitchBench(dut, idle=0.0, backpressure=0.0, respond=False)
    await bench.start()
    targets = _targets(bench.topo)
    count = 12
    for src in range(bench.P):
        out = (src + 1) % bench.P
        for _ in range(count):
            bench.send(src, bench.unicast(src, dst=targets[out], kind=PacketKind.MEM_DATA,
                                          max_payload=bench.proto.max_payload_flits))
    spans = {}
    first = {}

    def clock_it(port, pkt, cycle):
        first.setdefault(port, cycle - len(pkt.payload))
        spans[port] = (cycle - first[port] + 1, spans.get(port, (0, 0))[1] + len(pkt.payload) + 1)
    bench.observers.append(clock_it)
    await bench.drain()
    rates = {port: flits / cycles for port, (cycles, flits) in spans.items()}
    for port, rate in rates.items():
        # Simulated cycles, not wall time. Packets are not exactly max length (random_packet draws 0..max).
        assert rate >= 0.99 * bench.switch.flits_per_cycle, (
            f"output {port} must sustain {bench.switch.flits_per_cycle} flits/cycle, not {rate:.3f}")
    write_summary(bench.summary(min_flits_per_cycle=min(rates.values()),
                                per_output={str(port): rate for port, rate in sorted(rates.items())}),
                  test="test_back_to_back_max_length")


@cocotb.test()
async def test_reduction_table_pressure(dut):
    """Reducing dispatches back to back (more tokens than table entries) with unicast traffic on every port.
    With ``hardware.reduction_entries = 1`` this is the forward-progress test of the table at size 1."""
    bench = SwitchBench(dut, idle=0.05, backpressure=0.1)
    await bench.start()
    tokens = min(8 * bench.cfg.hardware.reduction_entries + 40, 1 << bench.proto.tag_bits)
    for tag in range(tokens):
        bench.send(0, bench.dispatch(tag, bench.random_subset() or [tag % bench.C]))
        port = int(bench.rng.integers(1, bench.P))
        bench.send(port, bench.unicast(port))
    await bench.drain()
    assert bench.model.reduced == tokens
    write_summary(bench.summary(tokens=tokens), test="test_reduction_table_pressure")


@cocotb.test()
async def test_random_soak(dut):
    """MOZART_PACKETS random packets of every kind on every port (plus the chiplets' answers), random idle and
    backpressure per port; exact payloads, per-flow order, no loss or duplication, drained at the end."""
    gen = rng("soak rates")
    P = Protocol(test_config()).topology.switch_ports
    bench = SwitchBench(dut, idle=gen.uniform(0.0, 0.5, P).tolist(), backpressure=gen.uniform(0.0, 0.5, P).tolist())
    await bench.start()
    total = env_int("MOZART_PACKETS", 1500)
    while bench.sent_packets < total:
        if bench.rng.random() < 0.3:
            tag = bench.free_tag()
            reduce = tag is not None and bench.rng.random() < 0.7
            bench.send(0, bench.dispatch(tag if tag is not None else 0, bench.random_subset(), reduce))
        else:
            port = int(bench.rng.integers(bench.P))
            bench.send(port, bench.unicast(port))
        while sum(d.pending for d in bench.drivers) > 40 * bench.P:  # bounded backlog, like real sources
            await RisingEdge(dut.clk)
    await bench.drain()
    write_summary(bench.summary(), test="test_random_soak")


# -- measurements for bench/bench_switch.py (MOZART_BENCH=1) ---------------------------------------------------
@cocotb.test(skip=not BENCH)
async def bench_zero_load_latency(dut):
    """Head-flit latency per packet kind at zero load: edges from the head's acceptance to its departure."""
    bench = SwitchBench(dut, idle=0.0, backpressure=0.0, respond=False)
    await bench.start()
    targets = _targets(bench.topo)
    accepted = []
    bench.drivers[0].driver.on_sent.append(lambda f: accepted.append(bench.clock.cycle) if f.first else None)
    left = []
    bench.observers.append(lambda port, pkt, cycle: left.append(cycle - len(pkt.payload)))
    latency = {}
    for kind in PacketKind:
        dst = targets[bench.topo.memctrl_port]
        pkt = bench.dispatch(1, [0], reduce=False) if kind is PacketKind.DISPATCH else \
            bench.unicast(0, dst=dst, kind=kind, max_payload=0)
        accepted.clear(), left.clear()
        bench.send(0, pkt)
        await bench.drain()
        latency[kind.name] = left[0] - accepted[0]
    write_summary({"latency": latency, "head_latency": bench.switch.head_latency}, test="bench_zero_load_latency")


@cocotb.test(skip=not BENCH)
async def bench_uniform_random(dut):
    """Accepted vs offered load, uniform random destinations over the switch's ports (including the own one),
    Bernoulli packet injection at every input. Rates are in flits per cycle per port."""
    bench = SwitchBench(dut, idle=0.0, backpressure=0.0, respond=False, watchdog=20000)
    await bench.start()
    targets = list(_targets(bench.topo).values())
    length = env_int("MOZART_BENCH_LENGTH", 4)  # payload flits per packet
    cycles = env_int("MOZART_BENCH_CYCLES", 3000)
    results = []
    for load in (0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0):
        p_packet = load / (length + 1)
        start_out = sum(m.transfers for m in bench.monitors)
        start = bench.clock.cycle
        for _ in range(cycles):
            for port in range(bench.P):
                # Offered load is what the sources generate; a source backlog is capped like a finite NIC.
                if bench.rng.random() < p_packet and bench.drivers[port].pending < 64:
                    dst = targets[int(bench.rng.integers(len(targets)))]
                    bench.send(port, Packet(PacketKind.MEM_DATA, dst, 0, 0, {}, tuple(range(length))))
            await RisingEdge(dut.clk)
        accepted = (sum(m.transfers for m in bench.monitors) - start_out) / (bench.clock.cycle - start) / bench.P
        results.append((load, accepted))
        await bench.drain()
    write_summary({"uniform": results, "payload_flits": length}, test="bench_uniform_random")


@cocotb.test(skip=not BENCH)
async def bench_reduction_rate(dut):
    """Tokens reduced per cycle with every chiplet contributing and the partials already waiting at the inputs."""
    bench = SwitchBench(dut, idle=0.0, backpressure=0.0, respond=True)
    await bench.start()
    tokens = 64
    done = []
    bench.observers.append(lambda port, pkt, cycle: done.append(cycle) if port == 0 else None)
    # The chiplets answer each replica at once, so partials queue up at the reduction unit, which sets the pace.
    for tag in range(tokens):
        bench.send(0, bench.dispatch(tag, list(range(bench.C))))
    await bench.drain()
    rate = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 else 0.0
    write_summary({"tokens_per_cycle": rate, "documented": bench.switch.reduction_tokens_per_cycle},
                  test="bench_reduction_rate")
