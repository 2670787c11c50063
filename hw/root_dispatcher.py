"""The root's dispatcher: the expert table, and which group gets what of a token."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mozart.model.host import HostOp
from mozart.model.protocol import index_bits

from .protocol import fields_layout
from .expressions import named
from .root_interfaces import bits, elements, expert_route_layout, issue_layout, needs_probe_signature, token_layout

__all__ = ["RootDispatcher"]


class RootDispatcher(wiring.Component):
    """Looks a token's experts up in the expert table and starts every group's emitter on it.

    The table maps each expert to ``(group, chiplet, local)``. A token on ``token`` is taken when every group's
    :class:`~mozart.hw.root_emitter.RootGroupEmitter` is idle (``emitters_idle``); ``start`` then tells them all
    to write their packets in parallel, each from its ``experts[g]`` (where the token's experts are, and which
    of them are in group ``g``). The transfer is booked on ``issued``: the token's combine entry,
    ``first``/``final`` and the results each group will send back (with ``dedup`` one per group it dispatches to,
    without it one per selected expert there).

    Members
    -------
    table : In(stream.Signature(TABLE arguments, always_ready=True))
        Expert table writes.
    token : In(stream.Signature(token_layout))
        Tokens to dispatch; ``ready`` is high exactly when every emitter is idle, and the payload must hold until
        ``ready`` is high again after the transfer (the emitters read it while they send).
    emitters_idle : In(groups)
        Bit ``g``: group ``g``'s emitter is idle.
    start : Out(1)
        The emitters' start (the cycle of the transfer).
    experts : Out(data.ArrayLayout(expert_route_layout, top_k)).array(groups)
        Group ``g``'s view of the token's experts (combinational from the payload).
    issued : Out(stream.Signature(issue_layout, always_ready=True))
        One transfer per token taken, in the cycle it is taken.
    needs : In(needs_probe_signature)
        The issue window asks which local experts a token it stores selects (by the same table).

    Latency and throughput
    ----------------------
    Combinational from ``token`` to ``start``, ``experts`` and ``issued``, and from ``needs.route`` to
    ``needs.needs``: one token per cycle when the emitters are idle (they then take a few cycles per packet,
    :class:`~mozart.hw.root_emitter.RootGroupEmitter`). A table write takes effect the next cycle.
    """

    def __init__(self, contract):
        cfg, host = contract.cfg, contract.host
        self.contract = contract
        self.experts_layout = data.ArrayLayout(expert_route_layout(contract), cfg.moe.top_k)
        super().__init__({
            "table": In(stream.Signature(bits(fields_layout(host.fields[HostOp.TABLE])), always_ready=True)),
            "token": In(stream.Signature(bits(token_layout(contract)))),
            "emitters_idle": In(cfg.groups),
            "start": Out(1),
            "experts": Out(bits(self.experts_layout)).array(cfg.groups),
            "issued": Out(stream.Signature(bits(issue_layout(contract)), always_ready=True)),
            "needs": In(needs_probe_signature(contract)),
        })

    def _table(self, m):
        """The expert table: ``expert -> (group, chiplet, local)``, written by TABLE commands."""
        host, proto = self.contract.host, self.contract.host.proto
        entry = data.StructLayout({"group": host.group_bits, "chiplet": proto.chiplet_bits, "local": proto.expert_bits})
        # A memory, not registers behind multiplexers: written once per TABLE command, read by every token.
        m.submodules.table = table = Memory(shape=entry, depth=self.contract.cfg.moe.experts, init=[])
        write = fields_layout(host.fields[HostOp.TABLE])(self.table.payload)
        table_write = table.write_port()
        m.d.comb += [table_write.addr.eq(write.expert), table_write.en.eq(self.table.valid),
                     table_write.data.group.eq(write.group), table_write.data.chiplet.eq(write.chiplet),
                     table_write.data.local.eq(write.local)]
        return table

    def _look_up(self, m, table, route_flits, name):
        """Per expert of a token's routing (``route_flits``): valid, and its group, chiplet and local index."""
        cfg, host, proto = self.contract.cfg, self.contract.host, self.contract.host.proto
        routing = fields_layout(host.route_fields)
        route = routing(route_flits[:routing.size])
        top_k = cfg.moe.top_k
        valid, chosen = elements(route.valid, top_k), elements(route.experts, top_k)
        # one asynchronous read port per expert of the token: combinational, as the registers were
        group = [Signal(host.group_bits, name=f"{name}_group{j}") for j in range(top_k)]
        chiplet = [Signal(proto.chiplet_bits, name=f"{name}_chiplet{j}") for j in range(top_k)]
        local = [Signal(proto.expert_bits, name=f"{name}_local{j}") for j in range(top_k)]
        for j in range(top_k):
            lookup = table.read_port(domain="comb")
            m.d.comb += [lookup.addr.eq(chosen[j]), group[j].eq(lookup.data.group),
                         chiplet[j].eq(lookup.data.chiplet), local[j].eq(lookup.data.local)]
        return valid, group, chiplet, local

    def _needs(self, m, table):
        """The ``needs`` probe: the RESIDENT bit of every local expert the probed routing selects."""
        contract, residents = self.contract, self.contract.residents
        needs = Const(0, residents)
        for valid, group, chiplet, local in zip(*self._look_up(m, table, self.needs.route, "probe")):
            resident = contract.resident_index(contract.chiplet_index(group, chiplet), local)
            needs = needs | Mux(valid, Const(1, residents) << resident, 0)
        m.d.comb += self.needs.needs.eq(needs)

    def elaborate(self, platform):
        m = Module()
        cfg = self.contract.cfg
        top_k, header = cfg.moe.top_k, token_layout(self.contract)(self.token.payload).header
        issued = issue_layout(self.contract)(self.issued.payload)
        table = self._table(m)
        route = token_layout(self.contract)(self.token.payload).route.as_value()
        valid, group, chiplet, local = self._look_up(m, table, route, "token")
        self._needs(m, table)
        m.d.comb += [self.token.ready.eq(self.emitters_idle.all()), self.start.eq(self.token.valid & self.token.ready)]
        for g in range(cfg.groups):
            here = [named(m, valid[j] & (group[j] == g), f"here{g}_{j}") for j in range(top_k)]
            experts = self.experts_layout(self.experts[g])
            for j in range(top_k):
                m.d.comb += [experts[j].here.eq(here[j]), experts[j].chiplet.eq(chiplet[j]),
                             experts[j].local.eq(local[j])]
            # results from this group: with dedup one if any expert is here, else one per expert here
            per_expert = Const(0, index_bits(top_k + 1) + 1)
            for bit in here:
                per_expert = per_expert + bit
            m.d.comb += issued.results[g].eq(Mux(header.dedup, Cat(*here).any(), per_expert))
        m.d.comb += [self.issued.valid.eq(self.start), issued.entry.eq(header.token), issued.first.eq(header.first),
                     issued.final.eq(header.final)]
        return m
