"""Transaction-level model of the NoP-Tree switch: what leaves which port for each packet that arrives.

The model is untimed. It says *which* packets each output port must emit and in which per-flow order; the
hardware (``mozart.hw.switch.Switch``) decides *when*. It is the scoreboard reference of the switch's tests.

Rules (``docs/protocol.md`` has the full text):

- A DISPATCH that arrives on the up port for this switch (``dst`` = the switch's node id) is *multicast*: one
  replica per destination chiplet (ascending chiplet index), each with ``dst`` = that chiplet,
  ``chiplets`` = only that chiplet, the same ``src``/``tag`` and other meta fields, and as payload that chiplet's
  route word followed by the token (a backward dispatch: the output gradient, then the token). With ``reduce=1``
  and at least one chiplet the switch opens a
  *reduction entry* for the tag, expecting one partial per destination chiplet.
- A COMBINE with ``reduce=1`` that arrives on a chiplet port, whose tag has an open entry and whose length is
  ``partial_flits``, is *absorbed*. The last expected one completes the entry: one COMBINE goes up with the
  header of that last partial, ``src`` = the switch, and the element-wise sum of the partials
  (:func:`reduce_partials`). Any other COMBINE goes on by ``dst`` unchanged.
- Every other packet is routed by ``dst`` (:meth:`SwitchModel.port_of`), unchanged.

Ordering: packets from one input port to one output port keep their order (the *flow* of an output is its
input port); reduced results leave in completion order, each in its own flow here because completion order
depends on timing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Hashable, Sequence

from . import golden
from .errors import ProtocolError
from .protocol import Packet, PacketKind, Protocol
from .topology import Topology

__all__ = ["SwitchModel", "Emission", "reduce_partials", "saturate"]


def saturate(value: int, bits: int) -> int:
    """``value`` clamped to a signed ``bits``-bit integer (:func:`mozart.model.golden.saturate`)."""
    return int(golden.saturate(int(value), bits))


def reduce_partials(partials: Sequence[Sequence[int]], bits: int) -> list[int]:
    """The switch's element-wise reduction of partial vectors: the exact sum, saturated once to ``bits``.

    ``saturate(p0 + p1 + ... + pn)`` equals ``golden.saturating_add(p0 + ... + p(n-1), pn, bits)`` and equals a
    chain of two-operand saturating adds whenever no intermediate sum overflows. The hardware keeps
    ``clog2(C)`` guard bits in its accumulator, adds exactly, and saturates when the last partial is added.
    Unlike a chain of two-operand saturating adds this does not depend on the order in which the partials
    arrive, so the result is the same whatever the network's timing.
    """
    if not partials:
        raise ProtocolError("a reduction must have at least one partial, not none")
    width = len(partials[0])
    if any(len(p) != width for p in partials):
        raise ProtocolError(f"partials of one token must all have {width} elements")
    return [int(v) for v in golden.reduce_partials(partials, bits)]


@dataclass(frozen=True)
class Emission:
    """A packet the switch emits: on ``port``, in ``flow`` (its input port, or ``("reduce", tag)``)."""

    port: int
    packet: Packet
    flow: Hashable


@dataclass
class _Entry:
    expected: int
    partials: list = field(default_factory=list)


class SwitchModel:
    """The switch of ``group`` at transaction level.

    Parameters
    ----------
    cfg : WaferConfig
    group : int
        Which switch (0 .. ``tree.groups - 1``).

    Feed every packet that enters the switch with :meth:`accept` (port, packet), in the order it enters that
    port; it returns the :class:`Emission` s the packet causes. Tests must respect the protocol's causality: a
    partial is fed only after the dispatch that opened its entry.
    """

    def __init__(self, cfg, group: int = 0):
        self.cfg = cfg
        self.protocol = Protocol(cfg)
        self.topology: Topology = self.protocol.topology
        if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group < self.topology.groups:
            raise ProtocolError(f"switch group must be in 0..{self.topology.groups - 1}, not {group!r}")
        self.group = group
        self.node = self.topology.switch(group)
        self.ports = self.topology.switch_ports
        self.chiplets = self.topology.chiplets_per_group
        self.per_flit = self.protocol.flit_bits // cfg.numerics.partial_bits
        self.entries: dict[int, _Entry] = {}
        #: counters for tests and benchmarks
        self.replicas = 0
        self.reduced = 0
        self.absorbed = 0

    # -- routing -------------------------------------------------------------------------------------
    def port_of(self, dst: int) -> int:
        """The output port for ``dst``: its chiplet or memory-controller port if it is below, else up (0)."""
        if not 0 <= dst < self.topology.num_nodes:
            return self.topology.UP_PORT  # the hardware sends anything it does not know upward
        return self.topology.switch_port_of(self.group, dst)

    def is_multicast(self, port: int, pkt: Packet) -> bool:
        return port == self.topology.UP_PORT and pkt.kind is PacketKind.DISPATCH and pkt.dst == self.node

    def is_reducible(self, port: int, pkt: Packet) -> bool:
        """A partial the reduction unit takes: COMBINE with ``reduce=1`` from a chiplet port."""
        return 1 <= port <= self.chiplets and pkt.kind is PacketKind.COMBINE and bool(pkt.meta.get("reduce", 0))

    @property
    def live_entries(self) -> int:
        """Open reduction entries (the hardware has ``hardware.reduction_entries`` of them)."""
        return len(self.entries)

    # -- the switch ----------------------------------------------------------------------------------
    def accept(self, port: int, pkt: Packet) -> list[Emission]:
        """What the switch emits because ``pkt`` entered input ``port``."""
        if not 0 <= port < self.ports:
            raise ProtocolError(f"switch input port must be in 0..{self.ports - 1}, not {port!r}")
        pkt = self.protocol.decode(self.protocol.encode(pkt))  # every meta field, in decode's form: packets compare
        if self.is_multicast(port, pkt):
            return self._multicast(pkt)
        if self.is_reducible(port, pkt):
            return self._reduce(port, pkt)
        return [Emission(self.port_of(pkt.dst), pkt, port)]

    def _multicast(self, pkt: Packet) -> list[Emission]:
        proto = self.protocol
        chiplets = [c for c, bit in enumerate(pkt.meta["chiplets"]) if bit]
        rf = proto.route_flits
        want = proto.dispatch_flits(len(chiplets), bool(pkt.meta["backward"])) - 1
        if len(pkt.payload) != want:
            what = "the output gradient and the token" if pkt.meta["backward"] else "the token"
            raise ProtocolError(f"dispatch tag {pkt.tag} must carry {len(chiplets)} route words and {what} "
                                f"({want} flits), not {len(pkt.payload)}")
        if pkt.meta["reduce"] and chiplets:
            if pkt.tag in self.entries:
                raise ProtocolError(f"dispatch tag must not be in flight already (the root's promise), not "
                                    f"{pkt.tag!r}")
            self.entries[pkt.tag] = _Entry(len(chiplets))
        token = pkt.payload[len(chiplets) * rf:]
        out = []
        for rank, c in enumerate(chiplets):
            meta = dict(pkt.meta, chiplets=tuple(int(k == c) for k in range(self.chiplets)))
            route = pkt.payload[rank * rf:(rank + 1) * rf]
            replica = Packet(PacketKind.DISPATCH, self.topology.chiplet(self.group, c), pkt.src, pkt.tag, meta,
                             tuple(route) + tuple(token))
            out.append(Emission(1 + c, replica, self.topology.UP_PORT))
        self.replicas += len(out)
        return out

    def _reduce(self, port: int, pkt: Packet) -> list[Emission]:
        entry = self.entries.get(pkt.tag)
        if entry is None or len(pkt.payload) != self.protocol.partial_flits:
            # Not a token this switch reduces (a protocol violation upstream): pass it on unchanged.
            return [Emission(self.port_of(pkt.dst), pkt, port)]
        entry.partials.append(pkt.payload)
        self.absorbed += 1
        if len(entry.partials) < entry.expected:
            return []
        del self.entries[pkt.tag]
        self.reduced += 1
        summed = self._sum_flits(entry.partials)
        result = Packet(PacketKind.COMBINE, pkt.dst, self.node, pkt.tag, pkt.meta, summed)
        return [Emission(self.port_of(pkt.dst), result, ("reduce", pkt.tag))]

    def _sum_flits(self, partials: Sequence[Sequence[int]]) -> tuple[int, ...]:
        """Element-wise reduction over every element slot of every flit (unused slots too), as the adder does."""
        bits, per = self.cfg.numerics.partial_bits, self.per_flit
        mask = (1 << bits) - 1

        def slots(flit: int) -> list[int]:
            raw = [(flit >> (i * bits)) & mask for i in range(per)]
            return [v - (1 << bits) if v >> (bits - 1) else v for v in raw]

        out = []
        for k in range(len(partials[0])):
            summed = reduce_partials([slots(p[k]) for p in partials], bits)
            out.append(sum((v & mask) << (i * bits) for i, v in enumerate(summed)))
        return tuple(out)

    @staticmethod
    def guard_bits(chiplets: int) -> int:
        """Extra accumulator bits so that the sum of ``chiplets`` partials cannot overflow."""
        return math.ceil(math.log2(chiplets)) if chiplets > 1 else 0
