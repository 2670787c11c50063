"""One group's packet emitter in the root: a TOKEN's DISPATCH(es) or a LOAD, into the group's queue."""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import index_bits

from .link_fifo import LinkFifo
from .protocol import PacketKind, fields_layout, header_layout, link_signature, route_layout
from .expressions import named
from .root_interfaces import bits, elements, expert_route_layout, slot_command_layout, token_layout

__all__ = ["RootGroupEmitter", "SLOT_COMMAND_TAG"]

#: The tag of the root's LOAD and UPDATE packets: no combine entry is involved (the chiplet's LOADED or UPDATED
#: names its slot and expert instead).
SLOT_COMMAND_TAG = 0


class RootGroupEmitter(wiring.Component):
    """Group ``g``'s packet generator: a TOKEN's DISPATCH(es) to switch ``g``, a LOAD to memctrl ``g`` or an
    UPDATE to one of the group's chiplets.

    Every group has one, all started together by the :class:`~mozart.hw.root_dispatcher.RootDispatcher`.

    On ``start`` it sends the token's packets to this group: with ``dedup`` one DISPATCH (``reduce=1``) whose
    route words carry, for every destination chiplet (ascending), its local expert mask and gates; without it one
    DISPATCH per selected expert here (``reduce=0``, one chiplet, one mask bit), in the token's expert order. A
    backward token's DISPATCHes (``backward=1``) carry its output gradient and then the token after the route
    words (:meth:`Protocol.backward_dispatch_to_group`). A LOAD (``load``) becomes one header-only LOAD packet to
    the memory controller, an UPDATE one header-only UPDATE packet to ``chiplet(g, chiplet)`` (tag
    :data:`SLOT_COMMAND_TAG`, meta ``slot`` and ``addr``). Packets go into a queue of
    ``contract.queue.depth`` flits (:class:`~mozart.hw.link_fifo.LinkFifo`) in front of ``down``, so a group whose
    switch is backed up does not stop the others until its queue is full.

    Members
    -------
    token : In(token_layout)
        The token being dispatched; must hold from ``start`` until ``idle`` again.
    experts : In(data.ArrayLayout(expert_route_layout, top_k))
        The token's experts as the expert table places them.
    start : In(1)
        Send the token's packets (only when ``idle``).
    load : In(stream.Signature(slot_command_layout))
        A LOAD or UPDATE command; taken when ``idle`` (``start`` comes first).
    down : Out(link_signature(cfg))
        To switch ``g``'s up port (the queue's output).
    idle : Out(1)
        Ready for a token or a LOAD.

    Latency and throughput
    ----------------------
    One flit per cycle into the queue: a scan cycle per expert without ``dedup`` (one with it), then per packet
    the header, ``destinations * route_flits`` route flits and ``token_flits`` token flits (backward:
    ``2 token_flits``); back to ``idle`` the cycle after the last scan. A LOAD or UPDATE takes one cycle after the
    cycle it is taken. The queue adds
    ``contract.queue.latency`` cycles.
    """

    def __init__(self, contract, group: int):
        cfg = contract.cfg
        self.contract, self.group = contract, group
        self.experts_layout = data.ArrayLayout(expert_route_layout(contract), cfg.moe.top_k)
        self.load_layout = slot_command_layout(contract)
        super().__init__({
            "token": In(bits(token_layout(contract))),
            "experts": In(bits(self.experts_layout)),
            "start": In(1),
            "load": In(stream.Signature(bits(self.load_layout))),
            "down": Out(link_signature(cfg)),
            "idle": Out(1),
        })

    def _route_words(self, m, selected):
        """Per destination chiplet its route word (mask and gates of the selected experts there), the chiplet
        mask, the chiplet of the p-th destination (ascending) and the number of destinations."""
        cfg, proto = self.contract.cfg, self.contract.host.proto
        chiplets, top_k, per_chiplet = cfg.chiplets_per_group, cfg.moe.top_k, cfg.experts_per_chiplet
        experts = [self.experts_layout(self.experts)[i] for i in range(top_k)]
        route = route_layout(cfg)
        routing = fields_layout(self.contract.host.route_fields)
        token = token_layout(self.contract)(self.token)
        gates = elements(routing(token.route.as_value()[:routing.size]).gates, top_k)
        chiplet_mask = [named(m, Cat(*(selected[i] & (experts[i].chiplet == c) for i in range(top_k))).any(),
                               f"chiplet{c}") for c in range(chiplets)]
        words = []
        for c in range(chiplets):
            # plain bits under a view: a layout-shaped signal would add a Verilog wire per field
            word = route(Signal(route.size, name=f"route{c}"))
            expert_bits, gate_fields = elements(word.experts, per_chiplet), elements(word.gates, per_chiplet)
            for local in range(per_chiplet):
                hit = [named(m, selected[i] & (experts[i].chiplet == c) & (experts[i].local == local),
                              f"hit{c}_{local}_{i}") for i in range(top_k)]
                m.d.comb += expert_bits[local].eq(Cat(*hit).any())
                gate = Const(0, cfg.numerics.gate_bits)
                for i in range(top_k):
                    gate = Mux(hit[i], gates[i], gate)
                m.d.comb += gate_fields[local].eq(gate)
            words.append(Cat(word.as_value(), Const(0, proto.route_flits * cfg.hardware.flit_bits - route.size)))
        count_bits = index_bits(chiplets + 1) + 1
        destinations = Const(0, count_bits)
        position = [Const(0, index_bits(chiplets)) for _ in range(chiplets)]
        for c in range(chiplets):
            for p in range(chiplets):
                position[p] = named(m, Mux(chiplet_mask[c] & (destinations == p), c, position[p]),
                                     f"position{p}_{c}", index_bits(chiplets))
            destinations = named(m, destinations + chiplet_mask[c], f"destinations{c}", count_bits)
        return words, chiplet_mask, position, destinations

    def _scan(self, m, dedup, expert, here):
        """The SCAN state: the next packet to send, or back to IDLE. With ``dedup`` the group's one packet if any
        expert is here; without it the next expert here, one cycle per expert looked at."""
        top_k = self.contract.cfg.moe.top_k
        with m.If(dedup):
            with m.If((expert == 0) & Cat(*here).any()):
                m.next = "HEAD"
            with m.Else():
                m.next = "IDLE"
        with m.Elif(expert == top_k):
            m.next = "IDLE"
        with m.Else():
            with m.Switch(expert):
                for i in range(top_k):
                    with m.Case(i):
                        with m.If(here[i]):
                            m.next = "HEAD"
                        with m.Else():
                            m.d.sync += expert.eq(expert + 1)

    def _load_meta(self, meta, load):
        """A LOAD packet's meta fields from the host's LOAD arguments."""
        return [meta.addr.eq(load.addr), meta.image_words.eq(self.contract.host.proto.image_words),
                meta.chiplet.eq(load.chiplet), meta.slot.eq(load.slot), meta.expert.eq(load.local)]

    def _dispatch_header(self, header, token_header, chiplet_mask, length):
        """A DISPATCH's header fields for this group from the token's header (``length``: its payload flits)."""
        topo, meta = self.contract.host.proto.topology, header.meta.dispatch
        return [header.kind.eq(PacketKind.DISPATCH), header.dst.eq(topo.switch(self.group)), header.src.eq(topo.root),
                header.tag.eq(token_header.token), header.length.eq(length), meta.chiplets.eq(Cat(*chiplet_mask)),
                meta.reduce.eq(token_header.dedup), meta.save.eq(token_header.save),
                meta.save_index.eq(token_header.save_index), meta.backward.eq(token_header.backward)]

    def _send_slot_command(self, m, out, header, slot_command):
        """The LOAD state: one header-only LOAD (to the memory controller) or UPDATE (to the chiplet) packet."""
        topo = self.contract.host.proto.topology
        m.d.comb += [out.valid.eq(1), out.payload.first.eq(1), out.payload.last.eq(1),
                     header.src.eq(topo.root), header.tag.eq(SLOT_COMMAND_TAG), header.length.eq(0)]
        with m.If(slot_command.update):
            m.d.comb += self._update_header(header, slot_command.arguments)
        with m.Else():
            m.d.comb += [header.kind.eq(PacketKind.LOAD), header.dst.eq(topo.memctrl(self.group)),
                         self._load_meta(header.meta.load, slot_command.arguments)]
        with m.If(out.ready):
            m.next = "IDLE"

    def _update_header(self, header, update):
        """An UPDATE packet's destination and meta fields from the host's UPDATE arguments."""
        topo = self.contract.host.proto.topology
        chiplet_node = topo.chiplet(self.group, 0) + update.chiplet
        return [header.kind.eq(PacketKind.UPDATE), header.dst.eq(chiplet_node),
                header.meta.update.slot.eq(update.slot), header.meta.update.addr.eq(update.addr)]

    def elaborate(self, platform):
        m = Module()
        cfg, proto = self.contract.cfg, self.contract.host.proto
        top_k = cfg.moe.top_k
        token_flits, route_flits_per_chiplet = proto.token_flits, proto.route_flits
        m.submodules.queue = queue = LinkFifo(cfg, self.contract.queue.depth)
        wiring.connect(m, queue.o, wiring.flipped(self.down))
        out = queue.i
        header = header_layout(cfg)(Signal(header_layout(cfg).size, name="header"))   # (plain bits: see above)
        expert = Signal(range(top_k + 1))   # the expert being sent (one packet per expert), top_k when done
        vector_flits = self.contract.window_token_flits   # a backward token's output gradient, then the token
        flit = Signal(range(max(cfg.chiplets_per_group * route_flits_per_chiplet, vector_flits) + 1))
        token = token_layout(self.contract)(self.token)
        token_header = token.header
        here = [self.experts_layout(self.experts)[i].here for i in range(top_k)]
        # the experts this packet carries: all of the group's (dedup) or the current one alone (one per expert)
        selected = [named(m, Mux(token_header.dedup, here[i], here[i] & (expert == i)), f"selected{i}")
                    for i in range(top_k)]
        words, chiplet_mask, position, destinations = self._route_words(m, selected)
        route_flits = Signal(range(cfg.chiplets_per_group * route_flits_per_chiplet + 1))
        m.d.comb += route_flits.eq(destinations * route_flits_per_chiplet)
        destination = Signal(range(cfg.chiplets_per_group))
        word_flit = Signal(range(route_flits_per_chiplet))
        slot_command = self.load_layout(Signal.like(self.load.payload, name="slot_command"))
        # the vectors' first flit: the output gradient's (backward), else the token's (the gradient is skipped)
        first_vector_flit = Mux(token_header.backward, 0, vector_flits - token_flits)
        m.d.comb += out.payload.data.eq(header.as_value()[:proto.header_bits])
        with m.FSM(name="emit"):
            with m.State("IDLE"):
                m.d.comb += [self.idle.eq(1), self.load.ready.eq(1)]
                with m.If(self.load.valid):
                    m.d.sync += slot_command.eq(self.load.payload)
                with m.If(self.start):
                    m.d.sync += expert.eq(0)
                    m.next = "SCAN"
                with m.Elif(self.load.valid):
                    m.next = "LOAD"
            with m.State("SCAN"):
                self._scan(m, token_header.dedup, expert, here)
            with m.State("HEAD"):
                m.d.comb += [out.valid.eq(1), out.payload.first.eq(1),
                             self._dispatch_header(header, token_header, chiplet_mask,
                                                   route_flits + vector_flits - first_vector_flit)]
                with m.If(out.ready):
                    m.d.sync += [destination.eq(0), word_flit.eq(0)]
                    with m.If(route_flits != 0):
                        m.d.sync += flit.eq(0)
                        m.next = "ROUTE"
                    with m.Else():
                        m.d.sync += flit.eq(first_vector_flit)
                        m.next = "TOKEN"
            with m.State("ROUTE"):
                route_word = Array(words)[Array(position)[destination]]
                m.d.comb += [out.valid.eq(1),
                             out.payload.data.eq(route_word.word_select(word_flit, cfg.hardware.flit_bits))]
                with m.If(out.ready):
                    with m.If(word_flit == route_flits_per_chiplet - 1):
                        m.d.sync += [word_flit.eq(0), destination.eq(destination + 1)]
                    with m.Else():
                        m.d.sync += word_flit.eq(word_flit + 1)
                    m.d.sync += flit.eq(flit + 1)
                    with m.If(flit == route_flits - 1):
                        m.d.sync += flit.eq(first_vector_flit)
                        m.next = "TOKEN"
            with m.State("TOKEN"):
                flits = Array([token.grad[i] for i in range(token_flits)]
                              + [token.flits[i] for i in range(token_flits)])
                m.d.comb += [out.valid.eq(1), out.payload.data.eq(flits[flit]),
                             out.payload.last.eq(flit == vector_flits - 1)]
                with m.If(out.ready):
                    m.d.sync += flit.eq(flit + 1)
                    with m.If(flit == vector_flits - 1):
                        m.d.sync += expert.eq(Mux(token_header.dedup, top_k, expert + 1))
                        m.next = "SCAN"
            with m.State("LOAD"):
                self._send_slot_command(m, out, header, slot_command)
        return m
