"""The scaled-down wafer: root, G switches, G x C expert chiplets and G memory controllers with DRAM models."""

from __future__ import annotations

from dataclasses import dataclass, replace

from amaranth import Cat, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mozart.model.perf.timing import HardwareTiming
from mozart.model.protocol import Protocol

from .chiplet import ChipletTiming, ExpertChiplet
from .dram import BackdoorSignature
from .memctrl import MemoryController
from .protocol import PacketKind, header_layout, link_signature
from .root import Root
from .switch import Switch

__all__ = ["Wafer", "RtlTiming", "rtl_timing", "in_order_timing", "predict_cycles", "COUNTER_BITS"]

COUNTER_BITS = 16


class Wafer(wiring.Component):
    """A whole wafer built from the config, wired by :mod:`mozart.model.topology`'s numbering and ports.

    Root ``down[g]``/``up[g]`` meet switch ``g``'s port 0; switch port ``1 + c`` meets chiplet ``(g, c)``; port
    ``C + 1`` meets memory controller ``g``. Nothing is hand-wired: any config that validates builds.

    Members
    -------
    host_in, host_out : the root's host interface (:class:`~mozart.hw.root.Root`, ``docs/wafer.md``).
    backdoor : In(BackdoorSignature(cfg)).array(G)
        Group ``g``'s DRAM storage port (preload the weight image before traffic).
    busy : Out(1)
        The root has work outstanding.
    errors : Out(16)
        The root's unexpected packets plus every memory controller's bad requests.
    link_valid, link_ready : Out(L)
        ``valid`` and ``ready`` of every directed link, bit ``i`` = ``links[i]`` (``Topology.links`` order).
    dispatches : Out(COUNTER_BITS).array(L)
        DISPATCH packet heads that crossed each link so far (the replica counts, C_T, measured in hardware).
    moved : Out(32)
        Cycles in which some flit moved on some link (the watchdog's sign of life).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.proto = Protocol(cfg)
        self.topology = self.proto.topology
        self.links = self.topology.links
        L, G = len(self.links), cfg.groups
        super().__init__({
            "host_in": In(link_signature(cfg)),
            "host_out": Out(link_signature(cfg)),
            "backdoor": In(BackdoorSignature(cfg)).array(G),
            "busy": Out(1),
            "errors": Out(16),
            "link_valid": Out(L),
            "link_ready": Out(L),
            "dispatches": Out(COUNTER_BITS).array(L),
            "moved": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, topo = self.cfg, self.topology
        G, C = cfg.groups, cfg.chiplets_per_group
        m.submodules.root = root = Root(cfg)
        wiring.connect(m, wiring.flipped(self.host_in), root.host_in)
        wiring.connect(m, root.host_out, wiring.flipped(self.host_out))
        # (sender's output stream, receiver's input stream) of every directed link
        ends = {}
        mc_errors = []
        for g in range(G):
            sw = m.submodules[f"switch{g}"] = Switch(cfg, g)
            s = topo.switch(g)
            ends[(topo.root, s)] = (root.down[g], sw.port_in[topo.UP_PORT])
            ends[(s, topo.root)] = (sw.port_out[topo.UP_PORT], root.up[g])
            for c in range(C):
                ch = m.submodules[f"chiplet{g}_{c}"] = ExpertChiplet(cfg, g, c)
                n = topo.chiplet(g, c)
                ends[(s, n)] = (sw.port_out[1 + c], ch.port_in)
                ends[(n, s)] = (ch.port_out, sw.port_in[1 + c])
            mc = m.submodules[f"memctrl{g}"] = MemoryController(cfg, g)
            wiring.connect(m, wiring.flipped(self.backdoor[g]), mc.backdoor)
            n = topo.memctrl(g)
            ends[(s, n)] = (sw.port_out[topo.memctrl_port], mc.port_in)
            ends[(n, s)] = (mc.port_out, sw.port_in[topo.memctrl_port])
            mc_errors.append(mc.errors)
        if set(ends) != set(self.links):
            raise AssertionError(f"wafer wiring must cover the topology's links exactly, not {sorted(ends)}")
        moving = []
        for i, link in enumerate(self.links):
            src, dst = ends[link]
            wiring.connect(m, src, dst)
            m.d.comb += [self.link_valid[i].eq(src.valid), self.link_ready[i].eq(dst.ready)]
            head = header_layout(cfg)(src.payload.data)
            fire = src.valid & dst.ready
            moving.append(fire)
            with m.If(fire & src.payload.first & (head.kind == PacketKind.DISPATCH)):
                m.d.sync += self.dispatches[i].eq(self.dispatches[i] + 1)
        with m.If(Cat(*moving).any()):
            m.d.sync += self.moved.eq(self.moved + 1)
        total = root.errors
        for e in mc_errors:
            total = total + e
        m.d.comb += [self.busy.eq(root.busy), self.errors.eq(total)]
        return m


# -- the performance model with the RTL blocks' documented numbers --------------------------------------------
@dataclass(frozen=True)
class RtlTiming(HardwareTiming):
    """:meth:`HardwareTiming.scaled` with the chiplet's RTL formula for its compute time: a token selecting
    ``n`` local experts takes ``n * cycles_per_expert`` cycles (:class:`~mozart.hw.chiplet.ChipletTiming`), so
    a dispatch of ``pairs`` pairs takes ``pairs * cycles_per_expert``."""

    cycles_per_expert: int = 1

    def chiplet_cycles(self, pairs, tokens, experts, macs_per_pair, expert_weight_bytes) -> float:
        return pairs * self.cycles_per_expert


def _numbers_of(block):
    """``block``, built only to read its latency and throughput properties: it is never elaborated, which
    Amaranth would otherwise report as an unused elaboratable."""
    block._MustUse__silence = True
    return block


def rtl_timing(cfg) -> RtlTiming:
    """The scaled timing of ``cfg`` with the latency and throughput properties of the RTL blocks plugged in:
    switch hop latency and reduction rate, the chiplet's cycles per expert, the memory controller's DRAM
    latency and weight-stream efficiency. Nothing is fitted to measured cycles."""
    sw = _numbers_of(Switch(cfg, 0))
    mc = _numbers_of(MemoryController(cfg, 0))
    _numbers_of(mc.dram)
    chip = ChipletTiming(cfg)
    base = HardwareTiming.scaled(cfg)
    partial_bytes = cfg.moe.d_model * cfg.numerics.partial_bits / 8
    fields = {f: getattr(base, f) for f in base.__dataclass_fields__}
    fields.update(
        hop_cycles=float(sw.head_latency),
        link_bytes_per_cycle=base.link_bytes_per_cycle * sw.flits_per_cycle,
        reduce_bytes_per_cycle=sw.reduction_rate(1) * partial_bytes,
        dram_latency_cycles=float(mc.dram.miss_latency),
        dram_bytes_per_cycle=mc.peak_words_per_cycle * cfg.dram.word_bits / 8 * mc.load_efficiency,
        token_overhead_cycles=0.0,
    )
    return RtlTiming(**fields, cycles_per_expert=chip.cycles_per_expert)


def in_order_timing(cfg) -> "InOrderTiming":
    """The RTL properties of the root's in-order issue and the blocks' buffers
    (:class:`~mozart.model.perf.inorder.InOrderTiming`): the chiplet's ``token_slots`` and cycles per expert,
    the root's queue per group (depth in flits, latency), the switch's head latency and reduction table."""
    from mozart.model.perf.inorder import InOrderTiming  # noqa: PLC0415

    from .link_fifo import LinkFifo  # noqa: PLC0415

    sw = _numbers_of(Switch(cfg, 0))
    root = _numbers_of(Root(cfg))
    chip = _numbers_of(ExpertChiplet(cfg, 0, 0))
    # the root's queue per group
    fifo = _numbers_of(LinkFifo(cfg, root.queue_packets * root.proto.max_dispatch_flits + 1))
    return InOrderTiming(cycles_per_expert=chip.cycles_per_expert, token_slots=chip.token_slots,
                         queue_flits=fifo.depth, reduction_entries=sw.reduction_entries,
                         queue_latency=float(fifo.latency),
                         hop_cycles=float(sw.head_latency), chiplet_input_flits=chip.input_flits,
                         chiplet_output_flits=chip.output_flits,
                         loaded_cycles=1 + 2 * float(sw.head_latency))


def predict_cycles(run, *, bulk: bool | None = None, in_order: bool = True) -> float:
    """The performance model's cycles for the forward pass of ``run``'s schedule (a
    :class:`~mozart.model.wafer_run.WaferRun`) on :func:`rtl_timing`. ``bulk=False`` runs the Baseline's
    dispatches without store-and-forward (the RTL chiplets stream); None keeps the schedule's.

    ``in_order`` (default): the larger of the event engine's cycles and the replay of the run's host program
    through the root's in-order command stream with the RTL's finite buffers
    (:func:`mozart.model.perf.inorder.in_order_cycles`, loads timed by the engine). The engine has no buffer
    limits and takes each command when its own dependencies are met; the replay has no link contention beyond
    the root links, no reduction throughput and no activation saving; each is a bound the RTL's time cannot
    beat for the reasons the other leaves out. False: the engine alone."""
    from mozart.model.perf.engine import Engine  # noqa: PLC0415
    from mozart.model.perf.inorder import in_order_cycles  # noqa: PLC0415
    from mozart.model.perf.network import make_network  # noqa: PLC0415
    from mozart.model.perf.workload import Workload  # noqa: PLC0415
    from mozart.model.schedule import Dispatch, Load, Schedule  # noqa: PLC0415

    cfg = run.cfg
    timing = rtl_timing(cfg)
    schedule = run.schedule
    if bulk is not None:
        schedule = Schedule([replace(c, bulk=bulk) if isinstance(c, Dispatch) else c for c in schedule.commands],
                            schedule.layer, schedule.variant, schedule.micro_batches, schedule.slots,
                            schedule.chiplets_per_group, schedule.tokens)
    engine = Engine(timing, make_network("tree", cfg, timing), Workload.scaled(cfg), "aggregate", record=in_order)
    engine.run(schedule, "forward", run.experts)
    if not in_order:
        return engine.end
    load_times: dict = {}
    for c in schedule.of_kind(Load, "forward"):
        load_times.setdefault((c.chiplet, c.slot), []).append(engine.command_times[c.id])
    replay = in_order_cycles(cfg, run.commands, run.expert_to_chiplet, load_times, in_order_timing(cfg))
    return max(engine.end, replay)
