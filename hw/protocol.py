"""Amaranth layouts of the on-package protocol, derived from :mod:`mozart.model.protocol`.

Nothing here restates a width: every layout is built from the model's :class:`~mozart.model.protocol.Field`
lists, so the RTL, the reference model and the testbench encoders cannot drift apart.

- :func:`flit_layout`: a link's payload (``data``, ``first``, ``last``); :func:`link_signature` wraps it
  in an ``amaranth.lib.stream.Signature``.
- :func:`header_layout`: the header flit's ``data``: common fields plus ``meta``, a union with one struct per
  packet kind (``header.meta.dispatch.chiplets``, ``header.meta.weight.slot``, ...).
- :func:`route_layout`: one chiplet's route word (local expert mask and gates).
"""

from __future__ import annotations

import types
from functools import lru_cache

from amaranth.hdl import unsigned
from amaranth.lib import data, enum, stream

from mozart.model import protocol as model_protocol
from mozart.model.protocol import Field, Protocol

__all__ = ["PacketKind", "MemError", "flit_layout", "link_signature", "header_layout", "meta_layout",
           "route_layout", "fields_layout"]


def _hw_enum(py_enum, shape: int):
    """An ``amaranth.lib.enum.Enum`` with the members of a model ``IntEnum``."""
    return types.new_class(py_enum.__name__, (enum.Enum,), {"shape": shape},
                           lambda ns: [ns.__setitem__(m.name, m.value) for m in py_enum])


#: Packet kinds as an Amaranth enum (same names and values as the model's).
PacketKind = _hw_enum(model_protocol.PacketKind, model_protocol.KIND_BITS)
#: MEM_ERROR codes as an Amaranth enum.
MemError = _hw_enum(model_protocol.MemError, model_protocol.MEM_ERROR_BITS)

_ENUM_FIELDS = {"kind": PacketKind, "code": MemError}


def fields_layout(fields: tuple[Field, ...]) -> data.StructLayout:
    """A ``StructLayout`` of model fields, LSB first; array fields become ``ArrayLayout`` s."""
    members = {}
    for f in fields:
        shape = _ENUM_FIELDS.get(f.name, unsigned(f.width))
        members[f.name] = data.ArrayLayout(shape, f.count) if f.count > 1 else shape
    return data.StructLayout(members)


@lru_cache(maxsize=None)
def _protocol(cfg) -> Protocol:
    return Protocol(cfg)


def flit_layout(cfg) -> data.StructLayout:
    return fields_layout(_protocol(cfg).flit_fields)


def link_signature(cfg) -> stream.Signature:
    """The signature of every link: a stream of flits (valid/ready, ``payload`` = :func:`flit_layout`)."""
    return stream.Signature(flit_layout(cfg))


def meta_layout(cfg) -> data.UnionLayout:
    proto = _protocol(cfg)
    return data.UnionLayout({kind.name.lower(): fields_layout(fields) for kind, fields in proto.meta_fields.items()})


def header_layout(cfg) -> data.StructLayout:
    """The header flit's data, padded to ``flit_bits``."""
    proto = _protocol(cfg)
    members = dict(fields_layout(proto.common_fields).members)
    members["meta"] = meta_layout(cfg)
    members["_pad"] = unsigned(proto.flit_bits - proto.header_bits)
    return data.StructLayout(members)


def route_layout(cfg) -> data.StructLayout:
    return fields_layout(_protocol(cfg).route_fields)
