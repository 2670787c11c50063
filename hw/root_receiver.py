"""The root's receiver: merges the groups' up links and sorts what arrives (COMBINE, LOADED/UPDATED, GATE_GRAD,
unexpected)."""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import PacketKind as ModelKind

from .packet_mux import PacketMux
from .protocol import PacketKind, flit_layout, header_layout, link_signature
from .root_interfaces import bits, loaded_layout, result_layout

__all__ = ["RootReceiver"]


class RootReceiver(wiring.Component):
    """Sinks every packet from the switches (``docs/protocol.md``: the root is always ready, but see GATE_GRAD).

    The G up links share one :class:`~mozart.hw.packet_mux.PacketMux` (round-robin by packet). A COMBINE's data
    flits go out on ``results`` with its tag (the combine entry), their index and the source group (the switch's
    or one of its chiplets'); a LOADED or an UPDATED (same meta fields) reports its slot and local expert on
    ``loaded``; a GATE_GRAD is forwarded whole and verbatim (header and payload) on ``grads_out``, in arrival
    order, and its source chiplet is reported on ``answered`` with its header (the backward credit); any other
    kind pulses ``error`` and is dropped. Only a backed-up ``grads_out`` holds the up links (nothing is lost; the
    wafer harness's recorder is always ready).

    Members
    -------
    up : In(link_signature(cfg)).array(groups)
        From switch ``g``'s up port; always ready.
    results : Out(stream.Signature(result_layout, always_ready=True))
        The data flits of COMBINE packets.
    loaded : Out(stream.Signature(loaded_layout, always_ready=True))
        A LOADED or UPDATED: its slot and its local expert, numbered wafer-wide
        (:class:`~mozart.model.blocks.RootContract`).
    grads_out : Out(link_signature(cfg))
        The GATE_GRAD packets, verbatim.
    answered : Out(stream.Signature(range(chiplets), always_ready=True))
        A GATE_GRAD's source chiplet (wafer-wide), in the cycle its header leaves on ``grads_out``.
    error : Out(1)
        Pulses on a packet of another kind.

    Latency and throughput
    ----------------------
    One flit per cycle of one up link at a time; a header is decoded in its own cycle and a data flit leaves on
    ``results`` in the cycle it arrives (combinational). A GATE_GRAD's flits leave on ``grads_out`` in the cycle
    they arrive (combinational, one per cycle while ``grads_out`` is ready).
    """

    def __init__(self, contract):
        cfg = contract.cfg
        self.contract = contract
        super().__init__({
            "up": In(link_signature(cfg)).array(cfg.groups),
            "results": Out(stream.Signature(bits(result_layout(self.contract)), always_ready=True)),
            "loaded": Out(stream.Signature(bits(loaded_layout(contract)), always_ready=True)),
            "grads_out": Out(link_signature(cfg)),
            "answered": Out(stream.Signature(range(contract.chiplets), always_ready=True)),
            "error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        cfg, topo = self.contract.cfg, self.contract.host.proto.topology
        m.submodules.up_mux = merge = PacketMux(flit_layout(cfg), cfg.groups)
        for g in range(cfg.groups):
            wiring.connect(m, wiring.flipped(self.up[g]), merge.i[g])
        flit = merge.o
        proto = self.contract.host.proto
        if proto.meta_fields[ModelKind.UPDATED] != proto.meta_fields[ModelKind.LOADED]:
            raise AssertionError("the receiver reads an UPDATED's slot and expert as a LOADED's: their meta must match")
        grads = self.grads_out
        m.d.comb += [flit.ready.eq(1), grads.payload.eq(flit.payload)]   # ready: see GATE_GRAD below
        header = header_layout(cfg)(flit.payload.data)
        source_group = Signal(range(cfg.groups))
        for g in range(cfg.groups):
            nodes = [topo.switch(g)] + [topo.chiplet(g, c) for c in range(cfg.chiplets_per_group)]
            with m.If(Cat(*(header.src == n for n in nodes)).any()):
                m.d.comb += source_group.eq(g)
        result = result_layout(self.contract)(self.results.payload)
        loaded, chiplet = loaded_layout(self.contract)(self.loaded.payload), header.src - topo.chiplet(0, 0)
        entry, index, group = (Signal(result_layout(self.contract)[name].shape, name=name)
                               for name in ("entry", "flit", "group"))
        m.d.comb += [result.entry.eq(entry), result.flit.eq(index), result.group.eq(group),
                     result.data.eq(flit.payload.data), result.last.eq(flit.payload.last),
                     loaded.slot.eq(self.contract.slot_index(chiplet, header.meta.loaded.slot)),
                     loaded.resident.eq(self.contract.resident_index(chiplet, header.meta.loaded.expert))]
        with m.FSM(name="rx"):
            with m.State("HEAD"):
                with m.If(flit.valid & flit.payload.first):
                    with m.Switch(header.kind):
                        with m.Case(PacketKind.COMBINE):
                            m.d.sync += [entry.eq(header.tag), group.eq(source_group), index.eq(0)]
                            with m.If(~flit.payload.last):
                                m.next = "DATA"
                        with m.Case(PacketKind.GATE_GRAD):
                            m.d.comb += [grads.valid.eq(1), flit.ready.eq(grads.ready),
                                         self.answered.valid.eq(grads.ready), self.answered.payload.eq(chiplet)]
                            with m.If(grads.ready & ~flit.payload.last):
                                m.next = "GRADS"
                        with m.Case(PacketKind.LOADED, PacketKind.UPDATED):
                            m.d.comb += self.loaded.valid.eq(1)
                            with m.If(~flit.payload.last):
                                m.next = "DROP"
                        with m.Default():
                            m.d.comb += self.error.eq(1)
                            with m.If(~flit.payload.last):
                                m.next = "DROP"
            with m.State("DATA"):
                m.d.comb += self.results.valid.eq(flit.valid)
                with m.If(flit.valid):
                    m.d.sync += index.eq(index + 1)
                    with m.If(flit.payload.last):
                        m.next = "HEAD"
            with m.State("GRADS"):
                m.d.comb += [grads.valid.eq(flit.valid), flit.ready.eq(grads.ready)]
                with m.If(flit.valid & grads.ready & flit.payload.last):
                    m.next = "HEAD"
            with m.State("DROP"):
                with m.If(flit.valid & flit.payload.last):
                    m.next = "HEAD"
        return m
