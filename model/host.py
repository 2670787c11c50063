"""The root node's host interface: command words, their field specs, and the root's transaction-level model.

Plain Python derived from the config, in the style of :mod:`mozart.model.protocol`: ``mozart.hw.root`` builds
its Amaranth layouts from these :class:`~mozart.model.protocol.Field` lists, and ``mozart.tb`` packs commands
with :meth:`HostInterface.encode`. ``docs/wafer.md`` describes the interface.

Streams
-------
``host_in`` and ``host_out`` have the links' flit layout (``data`` of ``hardware.flit_bits``, ``first``,
``last``). A host **command** is one header word, LSB first ``op (3) | arguments of op``, and for TOKEN the
token's routing (``route_flits`` flits: ``valid[k] | experts[k] | gates[k]``, LSB first) and its
``token_flits`` activation flits (packed like a DISPATCH's token). An **output** is ``partial_flits``
flits (``first`` on the first, ``last`` on the last): the token's combined result, ``partial_bits`` signed
elements packed like a COMBINE. The root returns outputs **in token order** (it reorders by tag).

Commands (read in order; only TOKENs are reordered, in the root's issue window)
--------------------------------------------------------------------------------
``TABLE``          ``expert -> (group, chiplet, local)``: one entry of the expert table (local = the expert's
                   index on its chiplet, ascending global id).
``LOAD``           a LOAD packet to ``memctrl(group)``: stream the image at word ``addr`` into ``(chiplet, slot)``
                   as local expert ``local``. Clears the root's LOADED bit of ``(group, chiplet, slot)`` and its
                   RESIDENT bit of ``(group, chiplet, local)``; the chiplet's LOADED packet (slot and local) sets
                   both.
``WAIT_LOADED``    hold every later command until LOADED of ``(group, chiplet, slot)`` arrived.
``WAIT_COMBINED``  hold every later command until every result dispatched to the groups in the ``groups`` mask is
                   back.
``UPDATE``         an UPDATE packet to ``chiplet(group, chiplet)``: apply slot ``slot``'s accumulated gradient and
                   write the updated image back at word ``addr`` of the group's DRAM. Like a LOAD, clears the
                   LOADED bit of ``(group, chiplet, slot)`` and the RESIDENT bit of ``(group, chiplet, local)``;
                   the chiplet's UPDATED packet sets both (so a WAIT_LOADED of the slot also waits for it).
``TOKEN``          dispatch a token: ``experts[k]``/``gates[k]`` with ``valid[k]``, combine entry ``token``
                   (the token's output index, counted over the run's layers, modulo ``entries``: the root
                   returns outputs in that order), ``first``/``final`` (its first/last dispatch of the
                   layer: a token whose experts are split over weight rounds is dispatched once per round),
                   ``dedup`` (one DISPATCH per destination group with per-chiplet masks and gates and
                   ``reduce=1``; 0: one DISPATCH per selected expert, ``reduce=0``: the Baseline and A) and
                   ``save``/``save_index`` (the DISPATCH's: save the pre-activations in the token's record,
                   ``Protocol.save_index`` of its layer and position). With ``backward`` the TOKEN carries the
                   token's output gradient and then the token (``2 token_flits``), ``save`` is 0 and
                   ``save_index`` names the record the chiplets restore; its result, the input gradient, comes
                   back on ``host_out`` like an output, in token order.

Training (``docs/protocol.md``, "The backward pass"): each chiplet answers a backward replica with a GATE_GRAD,
which the root forwards verbatim (header and payload) on ``grads_out``, in arrival order; it is also the root's
credit: a backward TOKEN is dispatched only while every chiplet it goes to has fewer than ``hardware.token_slots``
backward replicas without their GATE_GRAD (counting its own replicas: one per chiplet de-duplicated, one per
expert otherwise). The host program keeps a layer's forward and backward apart with WAIT_COMBINED of every group,
sends a slot's UPDATE only after the slot's last backward token is back, and a LOAD of a slot only after a
WAIT_LOADED of its UPDATE.

The issue window (``hardware.issue_window`` = W TOKENs): a TOKEN is stored in a free window entry (the command
stream holds while all W are full) and the root dispatches, one at a time, the **oldest stored TOKEN that is
ready**: every expert it selects is RESIDENT (by the expert table), its combine entry is free if it is a
``first`` dispatch, and no older stored TOKEN has the same combine entry. So a token whose weights are in goes
ahead of one whose weights are still loading, and the root itself keeps "LOADED before dispatch": the host
program needs no WAIT_LOADED in front of a token. TABLE, LOAD and WAIT_COMBINED first wait until the window is
empty (every stored TOKEN dispatched), so the table a token is looked up in, the slots it was checked against
and the results a WAIT_COMBINED counts are those of the commands before it. Outputs still leave in token
order (the combine entries' ring). W = 1 dispatches the TOKENs in program order.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

from .errors import ConfigError, ProtocolError
from .protocol import Field, Flit, Protocol, index_bits, pack_fields, unpack_fields

__all__ = ["HostOp", "HostCommand", "HostInterface", "OP_BITS"]

OP_BITS = 3


class HostOp(enum.IntEnum):
    TABLE = 0
    LOAD = 1
    WAIT_LOADED = 2
    WAIT_COMBINED = 3
    TOKEN = 4
    UPDATE = 5


@dataclass(frozen=True)
class HostCommand:
    """One host command. ``release`` is the host's, not the root's: the host sends the command only once that
    many of its attention stand-ins have ended (:class:`mozart.model.wafer_run.AttentionStandIn`); it is not
    encoded on ``host_in``."""

    op: HostOp
    args: Mapping[str, int | Sequence[int]] = field(default_factory=dict)
    payload: tuple[int, ...] = ()
    release: int = 0

    def describe(self) -> str:
        args = ", ".join(f"{k}={list(v) if isinstance(v, (tuple, list)) else v}" for k, v in self.args.items())
        held = f" after attention {self.release}" if self.release else ""
        return f"{HostOp(self.op).name}({args}){held}"


class HostInterface:
    """Field specs and codecs of the root's host interface for one config.

    Attributes
    ----------
    entries : int
        Combine entries of the root (``2 ** hardware.tag_bits``): tokens in flight at once; a token's entry
        (and its packets' tag) is its output index (over every layer of a run) modulo ``entries``.
    guard_bits : int
        Extra accumulator bits of the root's combine: ``clog2(top_k)`` (a token has at most ``top_k``
        contributions, one per expert in the Baseline), so the sum is exact and saturated once
        (:func:`mozart.model.golden.reduce_partials`).
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.proto = proto = Protocol(cfg)
        k = cfg.moe.top_k
        self.entries = 1 << cfg.hardware.tag_bits
        self.group_bits = index_bits(cfg.groups)
        self.expert_id_bits = index_bits(cfg.moe.experts)
        self.guard_bits = max(1, math.ceil(math.log2(k))) if k > 1 else 1
        self.token_flits = proto.token_flits
        self.output_flits = proto.partial_flits
        group, chiplet = Field("group", self.group_bits), Field("chiplet", proto.chiplet_bits)
        slot, local = Field("slot", proto.slot_bits), Field("local", proto.expert_bits)
        self.fields: dict[HostOp, tuple[Field, ...]] = {
            HostOp.TABLE: (Field("expert", self.expert_id_bits), group, chiplet, local),
            HostOp.LOAD: (group, chiplet, slot, local, Field("addr", proto.addr_bits)),
            HostOp.WAIT_LOADED: (group, chiplet, slot),
            HostOp.WAIT_COMBINED: (Field("groups", 1, cfg.groups),),
            HostOp.TOKEN: (Field("token", cfg.hardware.tag_bits), Field("first", 1), Field("final", 1),
                           Field("dedup", 1), Field("save", 1), Field("save_index", proto.save_index_bits),
                           Field("backward", 1)),
            HostOp.UPDATE: (group, chiplet, slot, local, Field("addr", proto.addr_bits)),
        }
        #: The routing of a TOKEN, in the ``route_flits`` flits after its header (before the token).
        self.route_fields = (Field("valid", 1, k), Field("experts", self.expert_id_bits, k),
                             Field("gates", cfg.numerics.gate_bits, k))
        self.route_flits = math.ceil(sum(f.bits for f in self.route_fields) / cfg.hardware.flit_bits)
        self.header_bits = OP_BITS + max(sum(f.bits for f in fs) for fs in self.fields.values())
        if self.header_bits > cfg.hardware.flit_bits:
            raise ConfigError(f"hardware.flit_bits must hold the {self.header_bits}-bit host command header, "
                              f"not {cfg.hardware.flit_bits!r}")

    def entry_of(self, output: int) -> int:
        """The combine entry (and packet tag) of the run's output ``output``: its index modulo ``entries``."""
        return output % self.entries

    def flits(self, op: HostOp, backward: bool = False) -> int:
        """Flits of one command of kind ``op`` on ``host_in`` (a backward TOKEN carries two vectors)."""
        return 1 + (self.route_flits + self.vectors(backward) * self.token_flits if op is HostOp.TOKEN else 0)

    def command_flits(self, cmd: HostCommand) -> int:
        """Flits of ``cmd`` on ``host_in``."""
        return self.flits(cmd.op, bool(cmd.args.get("backward", 0)))

    @staticmethod
    def vectors(backward: bool) -> int:
        """Vectors a TOKEN carries: the token (forward), or its output gradient and the token (backward)."""
        return 2 if backward else 1

    def encode(self, cmd: HostCommand) -> list[Flit]:
        op = HostOp(cmd.op)
        route_names = {f.name for f in self.route_fields}
        head = {k: v for k, v in cmd.args.items() if op is not HostOp.TOKEN or k not in route_names}
        word = int(op) | (pack_fields(self.fields[op], head, f"host {op.name}") << OP_BITS)
        words = [word]
        if op is HostOp.TOKEN:
            want = self.vectors(bool(cmd.args.get("backward", 0))) * self.token_flits
            if len(cmd.payload) != want:
                raise ProtocolError(f"host TOKEN must carry {want} token flits (the token, or a backward token's "
                                    f"output gradient and the token), not {len(cmd.payload)}")
            route = pack_fields(self.route_fields, {k: v for k, v in cmd.args.items() if k in route_names},
                                "host TOKEN routing")
            mask = (1 << self.cfg.hardware.flit_bits) - 1
            words += [(route >> (i * self.cfg.hardware.flit_bits)) & mask for i in range(self.route_flits)]
        elif cmd.payload:
            raise ProtocolError(f"host {op.name} must carry no payload, not {len(cmd.payload)} flits")
        words += list(cmd.payload)
        return [Flit(w, i == 0, i == len(words) - 1) for i, w in enumerate(words)]

    def decode_header(self, word: int) -> HostCommand:
        op_value = word & ((1 << OP_BITS) - 1)
        try:
            op = HostOp(op_value)
        except ValueError:
            raise ProtocolError(f"host command op must be one of {[o.value for o in HostOp]}, not {op_value}") from None
        return HostCommand(op, unpack_fields(self.fields[op], word >> OP_BITS))
