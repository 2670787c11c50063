"""Layouts and signatures shared by the root's components (:class:`mozart.hw.root.Root`).

Each is derived from the root's contract (:class:`mozart.model.blocks.RootContract`): the TOKEN a sequencer hands
to the dispatcher, the dispatch record the combine tracker books, the result flits the receiver feeds it, and the
two ports through which the sequencer and the output streamer look at the tracker's combine entries.

Ports between the root's components carry a layout's bits as a plain value (:func:`bits`) and each side views them
with the layout: a layout-shaped port adds a Verilog wire and an assignment per field in every module it passes
through, which would make the split root larger than the one-module root it replaces.
"""

from __future__ import annotations

from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.host import HostOp

from .protocol import fields_layout

__all__ = ["bits", "elements", "token_layout", "expert_route_layout", "issue_layout", "result_layout",
           "accumulator_layout", "result_count_shape", "entry_probe_signature", "release_signature", "loaded_layout",
           "needs_probe_signature", "slot_command_layout", "replicas_layout"]


def bits(layout) -> int:
    """The width a port carrying ``layout`` has (see the module docstring); view it with ``layout(port)``."""
    return data.Layout.cast(layout).size


def elements(view, count: int):
    """A field of ``count`` elements as a list (a count-1 field is a plain value)."""
    return [view[i] for i in range(count)] if count > 1 else [view]


def token_layout(contract) -> data.StructLayout:
    """A TOKEN command: its header fields, its ``route_flits`` routing flits, a backward TOKEN's output gradient
    (``grad``, ``token_flits`` flits; unused by a forward TOKEN) and the token (``flits``, ``token_flits``)."""
    host, flit_bits = contract.host, contract.cfg.hardware.flit_bits
    return data.StructLayout({
        "header": fields_layout(host.fields[HostOp.TOKEN]),
        "route": data.ArrayLayout(flit_bits, host.route_flits),
        "grad": data.ArrayLayout(flit_bits, host.token_flits),
        "flits": data.ArrayLayout(flit_bits, host.token_flits),
    })


def slot_command_layout(contract) -> data.StructLayout:
    """A LOAD or an UPDATE for a group's emitter: the command's arguments (LOAD and UPDATE have the same fields)
    and ``update`` (0: a LOAD to the memory controller, 1: an UPDATE to the chiplet)."""
    host = contract.host
    if host.fields[HostOp.UPDATE] != host.fields[HostOp.LOAD]:
        raise AssertionError("the root sends LOAD and UPDATE through one port: their host fields must be equal")
    return data.StructLayout({"arguments": fields_layout(host.fields[HostOp.LOAD]), "update": 1})


def replicas_layout(contract) -> data.ArrayLayout:
    """Backward replicas per wafer-wide chiplet (a dispatched backward token's, or counted in flight): at most
    ``hardware.token_slots`` in flight (:class:`~mozart.hw.root_credit.RootBackwardCredit`)."""
    return data.ArrayLayout(range(contract.credit_limit + 1), contract.chiplets)


def expert_route_layout(contract) -> data.StructLayout:
    """Where one of a token's experts is: in this group (``here``, valid experts only), its chiplet, local index."""
    proto = contract.host.proto
    return data.StructLayout({"here": 1, "chiplet": proto.chiplet_bits, "local": proto.expert_bits})


def result_count_shape(contract) -> range:
    """Results one dispatch makes per group: at most one per selected expert."""
    return range(contract.cfg.moe.top_k + 1)


def issue_layout(contract) -> data.StructLayout:
    """A dispatch the dispatcher accepted: its combine entry, ``first``/``final`` and the results per group."""
    return data.StructLayout({
        "entry": contract.cfg.hardware.tag_bits, "first": 1, "final": 1,
        "results": data.ArrayLayout(result_count_shape(contract), contract.cfg.groups),
    })


def result_layout(contract) -> data.StructLayout:
    """One flit of a COMBINE: its entry (the tag), its index in the packet, its source group, data, ``last``."""
    cfg = contract.cfg
    return data.StructLayout({
        "entry": cfg.hardware.tag_bits, "flit": range(contract.host.output_flits + 1), "group": range(cfg.groups),
        "data": cfg.hardware.flit_bits, "last": 1,
    })


def accumulator_layout(contract) -> data.ArrayLayout:
    """One accumulator word: the elements of one output flit, each ``partial_bits + guard_bits`` wide."""
    numerics = contract.cfg.numerics
    return data.ArrayLayout(numerics.partial_bits + contract.host.guard_bits,
                            contract.cfg.hardware.flit_bits // numerics.partial_bits)


def entry_probe_signature(contract) -> wiring.Signature:
    """Asks whether combine entry ``entry`` is occupied (the answer is combinational)."""
    return wiring.Signature({"entry": Out(contract.cfg.hardware.tag_bits), "occupied": In(1)})


def release_signature(contract) -> wiring.Signature:
    """The output side of the combine entries: is ``entry`` complete, its accumulator word ``flit``, ``done``."""
    return wiring.Signature({
        "entry": Out(range(contract.entries)), "flit": Out(range(contract.host.output_flits)),
        "complete": In(1), "data": In(bits(accumulator_layout(contract))), "done": Out(1),
    })


def loaded_layout(contract) -> data.StructLayout:
    """A LOADED packet at the root: the wafer-wide index of its slot and of its local expert (RootContract)."""
    return data.StructLayout({"slot": range(contract.slots), "resident": range(contract.residents)})


def needs_probe_signature(contract) -> wiring.Signature:
    """Asks the expert table which local experts a token's routing selects: one bit per RESIDENT bit
    (combinational)."""
    return wiring.Signature({"route": Out(bits(token_layout(contract)["route"].shape)),
                             "needs": In(contract.residents)})
