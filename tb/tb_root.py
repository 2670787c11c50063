"""cocotb testbench of the root node alone (design ``root``), with behavioural groups on its ports.

The host program, data and expected outputs come from :func:`mozart.model.wafer_run.build_run` (like the
wafer's testbench). Each group is a transaction-level stand-in for a switch with its chiplets and memory
controller: it answers a LOAD with the chiplet's LOADED, and a DISPATCH with the chiplets' partials
(:func:`mozart.model.golden.chiplet_partial`), reduced into one COMBINE from the switch when ``reduce=1``
(:func:`~mozart.model.golden.reduce_partials`) or one COMBINE per chiplet when not. Answers go back in a
random order after random delays, so results reach the root out of order. Checks: outputs bit-exact and in
token order, every packet well-formed, nothing unexpected, the root idle at the end.

``variant`` (C) and ``tokens`` (64) of :class:`~mozart.model.cosim_options.WaferOptions` choose the run.
"""

from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles

from mozart.model import golden
from mozart.model.cosim_options import ENV_WAFER, WaferOptions
from mozart.model.host import HostInterface
from mozart.model.protocol import Packet, PacketKind, Protocol

from .env import clock_and_reset, rng, test_config, test_seed, write_summary
from .stream import PacketDriver, PacketMonitor, StreamDriver, StreamMonitor
from .watchdog import Watchdog


class GroupStub:
    """Switch ``g`` with its chiplets and memory controller, at transaction level."""

    def __init__(self, dut, g, run, proto):
        self.g, self.run, self.proto, self.topo = g, run, proto, proto.topology
        self.layer = run.layers[0]   # the program is one layer's
        self.pending: list[Packet] = []
        self.driver = PacketDriver(dut, f"up__{g}", proto, idle=0.2, rng=rng("up", g))
        self.monitor = PacketMonitor(dut, f"down__{g}", proto, backpressure=0.2, rng=rng("down", g),
                                     callback=self.answer, keep=False)
        self.rng = rng("answers", g)
        self.dut = dut

    def local_experts(self, chiplet: int) -> np.ndarray:
        return np.flatnonzero(self.layer.expert_to_chiplet == self.g * self.run.cfg.chiplets_per_group + chiplet)

    def answer(self, pkt: Packet) -> None:
        topo, proto, cfg = self.topo, self.proto, self.run.cfg
        assert pkt.dst in (topo.switch(self.g), topo.memctrl(self.g)), f"group {self.g} got {pkt}"
        if pkt.kind is PacketKind.LOAD:
            self.pending.append(Packet(PacketKind.LOADED, topo.root, topo.chiplet(self.g, pkt.meta["chiplet"]), 0,
                                       {"slot": pkt.meta["slot"], "expert": pkt.meta["expert"]}))
            return
        assert pkt.kind is PacketKind.DISPATCH, f"group {self.g} got {pkt.kind.name}"
        chiplets = [c for c, bit in enumerate(pkt.meta["chiplets"]) if bit] if isinstance(pkt.meta["chiplets"], tuple) \
            else [0] if pkt.meta["chiplets"] else []
        x = proto.unpack_token(pkt.payload[len(chiplets) * proto.route_flits:])
        partials = []
        for i, c in enumerate(chiplets):
            mask, gates = proto.unpack_route(pkt.payload[i * proto.route_flits:(i + 1) * proto.route_flits])
            local = self.local_experts(c)
            p = golden.chiplet_partial(x, (self.layer.w1[local], self.layer.w2[local]), mask, gates, cfg)
            partials.append((c, p))
        if pkt.meta["reduce"]:
            total = golden.reduce_partials([p for _, p in partials], cfg.numerics.partial_bits)
            self.pending.append(Packet(PacketKind.COMBINE, topo.root, topo.switch(self.g), pkt.tag, {"reduce": 1},
                                       tuple(proto.pack_partial(total))))
        else:
            for c, p in partials:
                self.pending.append(Packet(PacketKind.COMBINE, topo.root, topo.chiplet(self.g, c), pkt.tag,
                                           {"reduce": 0}, tuple(proto.pack_partial(p))))

    async def serve(self) -> None:
        clk = self.dut.clk
        while True:
            await ClockCycles(clk, int(self.rng.integers(1, 24)))
            if self.pending:
                self.driver.send(self.pending.pop(int(self.rng.integers(len(self.pending)))))


@cocotb.test()
async def test_host_program(dut):
    """A whole host program of ``build_run`` against behavioural groups: outputs bit-exact, in token order."""
    from mozart.model.wafer_run import build_run  # noqa: PLC0415

    cfg = test_config()
    proto, host = Protocol(cfg), HostInterface(cfg)
    options = WaferOptions.from_env() if ENV_WAFER in os.environ else WaferOptions(tokens=64)
    run = build_run(cfg, seed=test_seed(), variant=options.variant, tokens=options.tokens)
    clock = await clock_and_reset(dut)
    groups = [GroupStub(dut, g, run, proto) for g in range(cfg.groups)]
    outputs, frame = [], []

    def take(flit):
        frame.append(flit.data)
        if flit.last:
            outputs.append(list(frame))
            frame.clear()

    driver = StreamDriver(dut, "host_in", proto, idle=0.2, rng=rng("host idle"))
    monitor = StreamMonitor(dut, "host_out", proto, backpressure=0.2, rng=rng("host out"), callback=take, keep=False)
    for grp in groups:
        grp.monitor.monitor.start()
        cocotb.start_soon(grp.serve())
    monitor.start()
    ports = [driver, monitor] + [p for grp in groups for p in (grp.driver, grp.monitor)]
    Watchdog(dut.clk, ports, timeout=2000, name="root watchdog",
             pending=[lambda: f"{run.tokens - len(outputs)} outputs outstanding" if len(outputs) < run.tokens
                      else ""]).start()
    for cmd in run.commands:
        driver.send(host.encode(cmd))
    while len(outputs) < run.tokens:
        await ClockCycles(dut.clk, 16)
    await ClockCycles(dut.clk, 32)
    got = np.array([proto.unpack_partial(f) for f in outputs])
    bad = np.flatnonzero((got != run.expected).any(axis=1))
    write_summary({"cycles": clock.cycle, "tokens": run.tokens, "mismatches": len(bad)}, test="test_host_program")
    assert not len(bad), f"{len(bad)} outputs differ; first token {bad[0]}: expected {run.expected[bad[0]].tolist()} " \
                         f"got {got[bad[0]].tolist()}"
    assert int(dut.busy.value) == 0 and int(dut.errors.value) == 0, "the root must be idle with no errors"
