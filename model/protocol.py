"""The on-package protocol: packet kinds, field specs, flit encoding and the DRAM memory map.

Everything here is plain Python derived from a :class:`~mozart.model.config.WaferConfig`. ``mozart.hw``
builds its ``data.StructLayout`` s from these :class:`Field` lists (``mozart.hw.protocol``), and ``mozart.tb``
packs and unpacks flits with :class:`Protocol`. No width is written anywhere else. ``docs/protocol.md`` has
the rules (ordering, atomicity, deadlock freedom) with pictures of each packet.

Links and flits
---------------
Every link is an ``amaranth.lib.stream`` valid/ready stream whose payload is a flit: ``data``
(``hardware.flit_bits``), ``first`` (head flit) and ``last`` (tail flit). A packet is one header flit and
``length`` payload flits; a one-flit packet has ``first`` and ``last`` both set. Switching is wormhole: once a
head flit wins an output, the packet's flits pass on that output without any other packet's flits between
them.

Header flit (LSB first)::

    kind (4) | dst (node_bits) | src (node_bits) | tag (tag_bits) | length (length_bits) | meta (union per kind)

Payloads
--------
Vectors of ``n``-bit elements are packed ``flit_bits // n`` to a flit, element 0 in the low bits, never split
across flits. A dispatch carries, after its header, one *route word* per destination chiplet (ascending chiplet
index; each route word takes ``route_flits`` flits: the chiplet's local expert mask and one gate per local
expert), then the token (``d_model`` activations). A combine carries ``d_model`` partials. Memory packets
carry DRAM words, ``flit_bits // dram.word_bits`` to a flit.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Iterable, Mapping, Sequence

import numpy as np

from .errors import ConfigError, ProtocolError
from .topology import Topology

__all__ = [
    "PacketKind", "MemError", "Field", "Flit", "Packet", "Protocol", "KIND_BITS", "MEM_ERROR_BITS", "COUNTER_BITS",
    "CYCLE_BITS", "check_fits",
    "pack_fields", "unpack_fields", "pack_elements", "unpack_elements", "index_bits",
]

KIND_BITS = 4
#: Width of a MEM_ERROR packet's ``code`` (:class:`MemError`).
MEM_ERROR_BITS = 2
#: Width of the status counters every block reports (errors, DISPATCH heads per link); they wrap.
COUNTER_BITS = 16
#: Width of cycle counters (the wafer's sign of life, the harness's stamps).
CYCLE_BITS = 32


class PacketKind(enum.IntEnum):
    """Packet kinds. Values are the header's ``kind`` field."""

    DISPATCH = 0   #: root -> switch (the group's chiplet set), and switch -> chiplet (one replica each)
    COMBINE = 1    #: chiplet -> switch -> root: a token's gate-weighted partial output
    MEM_READ = 2   #: any node -> memory controller: read ``words`` words from ``addr``
    MEM_WRITE = 3  #: any node -> memory controller: write the payload's ``words`` words at ``addr``
    MEM_DATA = 4   #: memory controller -> requester: read data
    MEM_ACK = 5    #: memory controller -> requester: write done (only when the write asked, ``ack=1``)
    MEM_ERROR = 6  #: memory controller -> requester: bad request, with a :class:`MemError` code
    LOAD = 7       #: root -> memory controller: stream an expert's weights into a chiplet's SRAM slot
    WEIGHT = 8     #: memory controller -> chiplet: weight data for one slot, at word ``offset``
    LOADED = 9     #: chiplet -> root: the slot now holds the expert completely
    GATE_GRAD = 10  #: chiplet -> root: a backward token's gate gradients, one per selected local expert
    UPDATE = 11    #: root -> chiplet: apply the slot's accumulated gradient and write the image back at ``addr``
    UPDATED = 12   #: chiplet -> root: the slot's updated image is in the DRAM (its last write acknowledged)


class MemError(enum.IntEnum):
    """``code`` of a MEM_ERROR packet."""

    ADDRESS = 1  #: the address is past the end of the DRAM
    LENGTH = 2   #: zero words, more than a burst, or running past the end of the DRAM
    KIND = 3     #: the memory controller does not serve this packet kind


@dataclass(frozen=True)
class Field:
    """A named bit field: ``count`` elements of ``width`` bits (``count == 1``: a plain field)."""

    name: str
    width: int
    count: int = 1

    @property
    def bits(self) -> int:
        return self.width * self.count


@dataclass(frozen=True)
class Flit:
    data: int
    first: bool
    last: bool


def index_bits(n: int) -> int:
    """Bits to number ``n`` distinct values (at least 1): the width of an index, ``clog2(n)`` but never 0."""
    return max(1, (n - 1).bit_length())


def pack_fields(fields: Sequence[Field], values: Mapping[str, int | Sequence[int]], what: str = "packet") -> int:
    """Pack ``values`` LSB first in the order of ``fields``; a missing value is 0.

    Array fields take sequences; a field of count 1 takes an int or a one-element sequence, so that callers
    need not special-case configs where an array happens to have one element (one expert per chiplet)."""
    unknown = set(values) - {f.name for f in fields}
    if unknown:
        raise ProtocolError(f"{what} has no field {sorted(unknown)[0]!r}; its fields are "
                            + ", ".join(f.name for f in fields))
    word, offset = 0, 0
    for f in fields:
        raw = values.get(f.name, 0)
        elements = [raw] if isinstance(raw, (int, np.integer)) else list(raw)
        if len(elements) != f.count:
            raise ProtocolError(f"{what}.{f.name} must have {f.count} elements, not {len(elements)}")
        for i, v in enumerate(elements):
            v = int(v)
            if not 0 <= v < (1 << f.width):
                raise ProtocolError(f"{what}.{f.name} must fit {f.width} bits (0..{(1 << f.width) - 1}), not {v!r}")
            word |= v << (offset + i * f.width)
        offset += f.bits
    return word


def unpack_fields(fields: Sequence[Field], word: int) -> dict[str, int | tuple[int, ...]]:
    out: dict[str, int | tuple[int, ...]] = {}
    offset = 0
    for f in fields:
        mask = (1 << f.width) - 1
        elements = tuple((word >> (offset + i * f.width)) & mask for i in range(f.count))
        out[f.name] = elements if f.count > 1 else elements[0]
        offset += f.bits
    return out


def pack_elements(values: Iterable[int], bits: int, flit_bits: int) -> list[int]:
    """Pack integers (two's complement, ``bits`` wide) ``flit_bits // bits`` to a flit, element 0 lowest."""
    per_flit = flit_bits // bits
    mask = (1 << bits) - 1
    values = [int(v) for v in values]
    flits = []
    for start in range(0, len(values), per_flit):
        word = 0
        for i, v in enumerate(values[start:start + per_flit]):
            if not -(1 << (bits - 1)) <= v < (1 << bits):
                raise ProtocolError(f"element {start + i} must fit {bits} bits, not {v!r}")
            word |= (v & mask) << (i * bits)
        flits.append(word)
    return flits


def unpack_elements(flits: Sequence[int], count: int, bits: int, flit_bits: int, signed: bool = True) -> np.ndarray:
    """Inverse of :func:`pack_elements`: ``count`` elements as int64."""
    per_flit = flit_bits // bits
    mask = (1 << bits) - 1
    out = np.empty(count, dtype=np.int64)
    for i in range(count):
        v = (flits[i // per_flit] >> ((i % per_flit) * bits)) & mask
        out[i] = v - (1 << bits) if signed and v >> (bits - 1) else v
    return out


@dataclass(frozen=True)
class Packet:
    """A packet at transaction level: header fields, kind-specific ``meta`` and payload flits (ints)."""

    kind: PacketKind
    dst: int
    src: int
    tag: int = 0
    meta: Mapping[str, int] = field(default_factory=dict)
    payload: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", PacketKind(self.kind))
        object.__setattr__(self, "meta", dict(self.meta))
        object.__setattr__(self, "payload", tuple(int(p) for p in self.payload))

    def __hash__(self) -> int:
        return hash((self.kind, self.dst, self.src, self.tag, tuple(sorted(self.meta.items())), self.payload))


class Protocol:
    """All widths, layouts and codecs of the protocol for one config."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.topology = Topology.of(cfg)
        hw, num, moe, dram = cfg.hardware, cfg.numerics, cfg.moe, cfg.dram
        self.flit_bits = hw.flit_bits
        self.node_bits = self.topology.node_bits
        self.tag_bits = hw.tag_bits
        self.chiplet_bits = index_bits(cfg.tree.chiplets_per_group)
        self.slot_bits = index_bits(hw.sram_slots)
        self.expert_bits = index_bits(cfg.experts_per_chiplet)
        self.words_per_flit = hw.flit_bits // dram.word_bits
        self.addr_bits = index_bits(dram.words)
        self.max_burst_words = hw.max_burst_flits * self.words_per_flit
        self.words_bits = self.max_burst_words.bit_length()
        self.token_flits = math.ceil(moe.d_model / (hw.flit_bits // num.act_bits))
        self.partial_flits = math.ceil(moe.d_model / (hw.flit_bits // num.partial_bits))
        self.route_fields = (Field("experts", 1, cfg.experts_per_chiplet),
                             Field("gates", num.gate_bits, cfg.experts_per_chiplet))
        self.route_bits = sum(f.bits for f in self.route_fields)
        self.route_flits = math.ceil(self.route_bits / hw.flit_bits)
        #: A backward dispatch carries the token's output gradient and then the token itself.
        self.max_dispatch_flits = cfg.tree.chiplets_per_group * self.route_flits + 2 * self.token_flits
        #: A GATE_GRAD's payload: one gate gradient (signed ``acc_bits``) per local expert, packed like a vector.
        self.gate_grad_flits = math.ceil(cfg.experts_per_chiplet / (hw.flit_bits // num.acc_bits))
        self.max_payload_flits = max(self.max_dispatch_flits, self.partial_flits, hw.max_burst_flits,
                                     self.gate_grad_flits)
        self.length_bits = self.max_payload_flits.bit_length()
        self.image_flits = 2 * math.ceil(moe.d_model * moe.d_ff / (hw.flit_bits // num.weight_bits))
        #: Tokens of one training step (``training.sequences * training.seq_len``) and the (layer, token) records
        #: of the saved-activation region: every layer keeps its step's activations for its backward pass.
        self.step_tokens = cfg.training.sequences * cfg.training.seq_len
        self.saved_tokens = moe.layers * self.step_tokens
        self.save_index_bits = index_bits(self.saved_tokens)
        self.image_words = self.image_flits * self.words_per_flit

    def dispatch_flits(self, chiplets: int, backward: bool = False) -> int:
        """Flits of one DISPATCH to ``chiplets`` chiplets of a group: its header, one route word each, the token
        (backward: the token's output gradient, then the token)."""
        return 1 + chiplets * self.route_flits + (2 if backward else 1) * self.token_flits

    # -- layouts -----------------------------------------------------------------------------------------
    @cached_property
    def flit_fields(self) -> tuple[Field, ...]:
        return (Field("data", self.flit_bits), Field("first", 1), Field("last", 1))

    @cached_property
    def common_fields(self) -> tuple[Field, ...]:
        return (Field("kind", KIND_BITS), Field("dst", self.node_bits), Field("src", self.node_bits),
                Field("tag", self.tag_bits), Field("length", self.length_bits))

    @cached_property
    def meta_fields(self) -> dict[PacketKind, tuple[Field, ...]]:
        """Kind-specific header fields, packed right after the common ones."""
        addr, words = Field("addr", self.addr_bits), Field("words", self.words_bits)
        slot, expert = Field("slot", self.slot_bits), Field("expert", self.expert_bits)
        return {
            # chiplets: destination chiplets of the group; reduce: the switch sums the partials of this token
            # (0 = Baseline, each partial goes up alone); save: write the pre-activation W1 x to DRAM for the
            # backward pass, in the record save_index (:meth:`save_index`); backward: the payload is the output
            # gradient and the token, the chiplet restores the saved pre-activations from save_index.
            PacketKind.DISPATCH: (Field("chiplets", 1, self.cfg.tree.chiplets_per_group), Field("reduce", 1),
                                  Field("save", 1), Field("save_index", self.save_index_bits), Field("backward", 1)),
            PacketKind.COMBINE: (Field("reduce", 1),),
            PacketKind.MEM_READ: (addr, words),
            PacketKind.MEM_WRITE: (addr, words, Field("ack", 1)),
            PacketKind.MEM_DATA: (addr, words),
            PacketKind.MEM_ACK: (addr, words),
            PacketKind.MEM_ERROR: (Field("code", MEM_ERROR_BITS), addr),
            PacketKind.LOAD: (addr, Field("image_words", index_bits(self.image_words + 1)),
                              Field("chiplet", self.chiplet_bits), slot, expert),
            PacketKind.WEIGHT: (slot, expert, Field("offset", index_bits(self.image_words)), Field("final", 1)),
            PacketKind.LOADED: (slot, expert),
            PacketKind.GATE_GRAD: (Field("experts", 1, self.cfg.experts_per_chiplet),),
            PacketKind.UPDATE: (slot, addr),
            PacketKind.UPDATED: (slot, expert),
        }

    @cached_property
    def meta_bits(self) -> int:
        return max(sum(f.bits for f in fs) for fs in self.meta_fields.values())

    @cached_property
    def header_bits(self) -> int:
        return sum(f.bits for f in self.common_fields) + self.meta_bits

    # -- headers and packets -------------------------------------------------------------------------------
    def header_word(self, pkt: Packet) -> int:
        common = pack_fields(self.common_fields, {"kind": int(pkt.kind), "dst": pkt.dst, "src": pkt.src,
                                                  "tag": pkt.tag, "length": len(pkt.payload)},
                             f"{pkt.kind.name} header")
        meta = pack_fields(self.meta_fields[pkt.kind], pkt.meta, f"{pkt.kind.name} meta")
        return common | (meta << sum(f.bits for f in self.common_fields))

    def parse_header(self, word: int) -> tuple[PacketKind, dict, dict]:
        """(kind, common fields, meta fields) of a header flit's data."""
        common = unpack_fields(self.common_fields, word)
        try:
            kind = PacketKind(common["kind"])
        except ValueError:
            raise ProtocolError(f"header kind must be one of {[k.value for k in PacketKind]}, "
                                f"not {common['kind']}") from None
        meta = unpack_fields(self.meta_fields[kind], word >> sum(f.bits for f in self.common_fields))
        return kind, common, meta

    def encode(self, pkt: Packet) -> list[Flit]:
        if len(pkt.payload) > self.max_payload_flits:
            raise ProtocolError(f"{pkt.kind.name} payload must be at most {self.max_payload_flits} flits, "
                                f"not {len(pkt.payload)}")
        for i, word in enumerate(pkt.payload):
            if not 0 <= word < (1 << self.flit_bits):
                raise ProtocolError(f"{pkt.kind.name} payload flit {i} must fit {self.flit_bits} bits, not {word!r}")
        words = [self.header_word(pkt), *pkt.payload]
        return [Flit(w, i == 0, i == len(words) - 1) for i, w in enumerate(words)]

    def decode(self, flits: Sequence[Flit]) -> Packet:
        """Inverse of :meth:`encode`; a malformed flit sequence is a :class:`ProtocolError`."""
        if not flits:
            raise ProtocolError("a packet must have at least its header flit, not none")
        for i, f in enumerate(flits):
            if f.first != (i == 0) or f.last != (i == len(flits) - 1):
                raise ProtocolError(f"flit {i} of {len(flits)} must have first={i == 0} and "
                                    f"last={i == len(flits) - 1}, not first={f.first} last={f.last}")
        kind, common, meta = self.parse_header(flits[0].data)
        if common["length"] != len(flits) - 1:
            raise ProtocolError(f"{kind.name} header length must equal its payload flits ({len(flits) - 1}), "
                                f"not {common['length']}")
        return Packet(kind, common["dst"], common["src"], common["tag"], meta, tuple(f.data for f in flits[1:]))

    # -- payload helpers ---------------------------------------------------------------------------------
    def pack_token(self, x: Sequence[int]) -> list[int]:
        return pack_elements(x, self.cfg.numerics.act_bits, self.flit_bits)

    def unpack_token(self, flits: Sequence[int]) -> np.ndarray:
        return unpack_elements(flits, self.cfg.moe.d_model, self.cfg.numerics.act_bits, self.flit_bits)

    def pack_partial(self, y: Sequence[int]) -> list[int]:
        return pack_elements(y, self.cfg.numerics.partial_bits, self.flit_bits)

    def unpack_partial(self, flits: Sequence[int]) -> np.ndarray:
        return unpack_elements(flits, self.cfg.moe.d_model, self.cfg.numerics.partial_bits, self.flit_bits)

    def pack_route(self, experts: Sequence[int], gates: Sequence[int]) -> list[int]:
        """One chiplet's route word (local expert mask bits and raw gates), as ``route_flits`` flits."""
        word = pack_fields(self.route_fields, {"experts": experts, "gates": gates}, "route word")
        mask = (1 << self.flit_bits) - 1
        return [(word >> (i * self.flit_bits)) & mask for i in range(self.route_flits)]

    def unpack_route(self, flits: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        word = sum(f << (i * self.flit_bits) for i, f in enumerate(flits[:self.route_flits]))
        fields = unpack_fields(self.route_fields, word)
        as_tuple = lambda v: v if isinstance(v, tuple) else (v,)  # noqa: E731 (count 1 unpacks to a plain int)
        return as_tuple(fields["experts"]), as_tuple(fields["gates"])

    def dispatch_to_group(self, tag: int, group: int, routes: Mapping[int, tuple[Sequence[int], Sequence[int]]],
                          token: Sequence[int], reduce: bool = True, save: bool = False,
                          save_index: int = 0) -> Packet:
        """Root -> switch dispatch: ``routes`` maps chiplet index -> (local expert mask, raw gates)."""
        return self._dispatch(tag, group, routes, [token], reduce=reduce, save=int(save), save_index=save_index)

    def backward_dispatch_to_group(self, tag: int, group: int,
                                   routes: Mapping[int, tuple[Sequence[int], Sequence[int]]], grad: Sequence[int],
                                   token: Sequence[int], save_index: int, reduce: bool = True) -> Packet:
        """Root -> switch backward dispatch: the token's output gradient ``grad`` and the token itself; the
        chiplets restore the pre-activations saved in the record ``save_index``."""
        return self._dispatch(tag, group, routes, [grad, token], reduce=reduce, save=0, save_index=save_index,
                              backward=1)

    def _dispatch(self, tag, group, routes, vectors, **meta) -> Packet:
        chiplets = [1 if c in routes else 0 for c in range(self.cfg.tree.chiplets_per_group)]
        payload = [flit for c in sorted(routes) for flit in self.pack_route(*routes[c])]
        payload += [flit for v in vectors for flit in self.pack_token(v)]
        return Packet(PacketKind.DISPATCH, self.topology.switch(group), self.topology.root, tag,
                      {"chiplets": chiplets, **meta}, tuple(payload))

    def pack_gate_grads(self, dg: Sequence[int]) -> list[int]:
        """A GATE_GRAD's payload: ``experts_per_chiplet`` signed ``acc_bits`` gate gradients (0 where unselected)."""
        return pack_elements(dg, self.cfg.numerics.acc_bits, self.flit_bits)

    def unpack_gate_grads(self, flits: Sequence[int]) -> np.ndarray:
        return unpack_elements(flits, self.cfg.experts_per_chiplet, self.cfg.numerics.acc_bits, self.flit_bits)

    # -- memory map of a group's DRAM ----------------------------------------------------------------------
    def expert_image_base(self, slot_in_group: int, layer: int = 0) -> int:
        """Word address of the weight image of the group's ``slot_in_group``-th expert of MoE layer ``layer``.

        A group's DRAM holds every layer's images (``moe.layers`` regions of ``layer_image_words``), layer by
        layer. The image is W1 (d_ff x d_model, row-major) then W2 (d_model x d_ff, row-major), ``weight_bits``
        elements packed as :func:`pack_elements` packs them, each matrix starting on a fresh flit."""
        return layer * self.layer_image_words + slot_in_group * self.image_words

    @property
    def layer_image_words(self) -> int:
        """Words of one layer's weight images in a group's DRAM."""
        return self.cfg.experts_per_group * self.image_words

    def save_index(self, layer: int, position: int) -> int:
        """The saved-activation record of token ``position`` of MoE layer ``layer``: ``layer * step_tokens +
        position % step_tokens`` (a run longer than a training step reuses the step's records in token order)."""
        if not (0 <= layer < self.cfg.moe.layers and position >= 0):
            raise ValueError(f"(layer, position) must be within moe.layers ({self.cfg.moe.layers}) and non-negative, "
                             f"not ({layer}, {position})")
        return layer * self.step_tokens + position % self.step_tokens

    @property
    def activation_base(self) -> int:
        """First word after every layer's weight images: the region where saved activations go."""
        return self.cfg.moe.layers * self.layer_image_words


def check_fits(cfg) -> None:
    """The rules that tie the protocol to a config; :class:`WaferConfig` calls this at construction."""
    hw, num, dram = cfg.hardware, cfg.numerics, cfg.dram
    if hw.flit_bits % dram.word_bits:
        raise ConfigError(f"dram.word_bits must divide hardware.flit_bits ({hw.flit_bits}), not {dram.word_bits!r}")
    for name in ("act_bits", "weight_bits", "partial_bits"):
        if getattr(num, name) > hw.flit_bits:
            raise ConfigError(f"numerics.{name} must be at most hardware.flit_bits ({hw.flit_bits}), "
                              f"not {getattr(num, name)!r}")
    proto = Protocol(cfg)
    if proto.header_bits > hw.flit_bits:
        raise ConfigError(f"hardware.flit_bits must hold the {proto.header_bits}-bit packet header of this config, "
                          f"not {hw.flit_bits!r}")
    if dram.words < proto.activation_base:
        raise ConfigError(f"dram must hold the weight images of a group's {cfg.experts_per_group} experts in each "
                          f"of moe.layers ({cfg.moe.layers}) layers ({proto.activation_base} words of {dram.word_bits} "
                          f"bits): dram.rows must be at least "
                          f"{math.ceil(proto.activation_base / (dram.banks * dram.row_words))}, not {dram.rows!r}")
    proto.topology.check_deadlock_free()
