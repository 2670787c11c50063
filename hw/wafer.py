"""The scaled-down wafer: root, G switches, G x C expert chiplets and G memory controllers with DRAM models."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.blocks import ChipletContract, MemoryControllerContract, RootContract, SwitchContract
from mozart.model.protocol import COUNTER_BITS, CYCLE_BITS, Protocol
from mozart.model.perf.breakdown import CATEGORIES

from .chiplet import ExpertChiplet
from .dram import BackdoorSignature
from .memctrl import MemoryController
from .protocol import PacketKind, header_layout, link_signature
from .root import Root
from .switch import Switch

__all__ = ["Wafer", "activity_layout"]


#: The wafer's activity in one cycle (``Wafer.activity``): the performance model's breakdown categories
#: (:data:`mozart.model.perf.breakdown.CATEGORIES`) but the first, ``attention``, which is the host's.
activity_layout = data.StructLayout({name: 1 for name in CATEGORIES[1:]})


class Wafer(wiring.Component):
    """A whole wafer built from the config, wired by :mod:`mozart.model.topology`'s numbering and ports.

    Root ``down[g]``/``up[g]`` meet switch ``g``'s port 0; switch port ``1 + c`` meets chiplet ``(g, c)``; port
    ``C + 1`` meets memory controller ``g``. Nothing is hand-wired: any config that validates builds.

    Members
    -------
    host_in, host_out : the root's host interface (:class:`~mozart.hw.root.Root`, ``docs/wafer.md``).
    grads_out : Out(link_signature(cfg))
        The root's: every GATE_GRAD packet the chiplets send, verbatim, in arrival order (training).
    backdoor : In(BackdoorSignature(cfg)).array(G)
        Group ``g``'s DRAM storage port (preload the weight image before traffic).
    busy : Out(1)
        The root has work outstanding.
    errors : Out(COUNTER_BITS)
        The root's unexpected packets plus every memory controller's bad requests.
    link_valid, link_ready : Out(L)
        ``valid`` and ``ready`` of every directed link, bit ``i`` = ``links[i]`` (``Topology.links`` order).
    dispatches : Out(COUNTER_BITS).array(L)
        DISPATCH packet heads that crossed each link so far (the replica counts, C_T, measured in hardware).
    moved : Out(CYCLE_BITS)
        Cycles in which some flit moved on some link (the watchdog's sign of life).
    activity : Out(activity_layout)
        This cycle: ``expert``, some chiplet's MACs compute; ``dispatch``, a flit of a DISPATCH or COMBINE packet
        moves on some link; ``weights``, some DRAM reads a column (weight streams); ``saving``, some DRAM writes
        one (saved activations). The per-cycle record the harness counts.
    """

    def __new__(cls, cfg):
        # Every block's contract first: a config one of them rejects raises before any component exists, so
        # no half-built wafer leaves unelaborated blocks behind (which Amaranth would report as unused).
        RootContract(cfg)
        for g in range(cfg.groups):
            SwitchContract(cfg, g)
            MemoryControllerContract(cfg, g)
            for c in range(cfg.chiplets_per_group):
                ChipletContract(cfg, g, c)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, cfg):
        self.cfg = cfg
        self.proto = Protocol(cfg)
        self.topology = self.proto.topology
        self.links = self.topology.links
        L, G = len(self.links), cfg.groups
        super().__init__({
            "host_in": In(link_signature(cfg)),
            "host_out": Out(link_signature(cfg)),
            "grads_out": Out(link_signature(cfg)),
            "backdoor": In(BackdoorSignature(cfg)).array(G),
            "busy": Out(1),
            "errors": Out(COUNTER_BITS),
            "link_valid": Out(L),
            "link_ready": Out(L),
            "dispatches": Out(COUNTER_BITS).array(L),
            "moved": Out(CYCLE_BITS),
            "activity": Out(activity_layout),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, topo = self.cfg, self.topology
        G, C = cfg.groups, cfg.chiplets_per_group
        m.submodules.root = root = Root(cfg)
        wiring.connect(m, wiring.flipped(self.host_in), root.host_in)
        wiring.connect(m, root.host_out, wiring.flipped(self.host_out))
        wiring.connect(m, root.grads_out, wiring.flipped(self.grads_out))
        # (sender's output stream, receiver's input stream) of every directed link
        ends = {}
        mc_errors, mc_reading, mc_writing, computing = [], [], [], []
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
                computing.append(ch.mac_active)
            mc = m.submodules[f"memctrl{g}"] = MemoryController(cfg, g)
            wiring.connect(m, wiring.flipped(self.backdoor[g]), mc.backdoor)
            n = topo.memctrl(g)
            ends[(s, n)] = (sw.port_out[topo.memctrl_port], mc.port_in)
            ends[(n, s)] = (mc.port_out, sw.port_in[topo.memctrl_port])
            mc_errors.append(mc.errors)
            mc_reading.append(mc.dram_reading)
            mc_writing.append(mc.dram_writing)
        if set(ends) != set(self.links):
            raise AssertionError(f"wafer wiring must cover the topology's links exactly, not {sorted(ends)}")
        moving, exchanging = [], []   # flits on every link; flits of DISPATCH and COMBINE packets
        for i, link in enumerate(self.links):
            src, dst = ends[link]
            wiring.connect(m, src, dst)
            m.d.comb += [self.link_valid[i].eq(src.valid), self.link_ready[i].eq(dst.ready)]
            head = header_layout(cfg)(src.payload.data)
            fire = src.valid & dst.ready
            moving.append(fire)
            exchanging.append(fire & self._exchange_packet(m, i, src.payload.first, head.kind))
            with m.If(fire & src.payload.first & (head.kind == PacketKind.DISPATCH)):
                m.d.sync += self.dispatches[i].eq(self.dispatches[i] + 1)
        with m.If(Cat(*moving).any()):
            m.d.sync += self.moved.eq(self.moved + 1)
        total = root.errors
        for e in mc_errors:
            total = total + e
        m.d.comb += [self.busy.eq(root.busy), self.errors.eq(total),
                     self.activity.expert.eq(Cat(*computing).any()), self.activity.dispatch.eq(Cat(*exchanging).any()),
                     self.activity.weights.eq(Cat(*mc_reading).any()), self.activity.saving.eq(Cat(*mc_writing).any())]
        return m

    @staticmethod
    def _exchange_packet(m, link: int, first, kind):
        """Whether the flit on the link belongs to a DISPATCH or COMBINE packet: the head's kind, held for the
        packet's other flits (only heads carry it)."""
        held = Signal(name=f"exchange_packet{link}")
        current = Mux(first, (kind == PacketKind.DISPATCH) | (kind == PacketKind.COMBINE), held)
        m.d.sync += held.eq(current)
        return current
