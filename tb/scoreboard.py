"""A transaction-level scoreboard: expected packets per output port, checked as the monitors see them.

The testbench (or the reference model) says what each output port must emit with :meth:`Scoreboard.expect`;
monitors report what it did emit with :meth:`Scoreboard.observe`; :meth:`Scoreboard.check_drained` at the end
proves that nothing was lost (nothing expected is left) and, since every observed packet had to match an
expected one, nothing was duplicated or invented.

Ordering rule
-------------
``ordered=True`` (default): packets of one *flow* on one port must come in the order they were expected;
different flows may interleave freely. The flow is the ``flow`` key given to ``expect`` (e.g. ``(src, tag)``
or the input port); ``None`` puts all of a port's packets into one flow, i.e. strict order per port.
``ordered=False``: a port's packets may come in any order (a multiset per port).
"""

from __future__ import annotations

import collections
from typing import Any, Hashable

from mozart.model.protocol import Packet

__all__ = ["Scoreboard", "describe_packet", "packet_diff"]


def describe_packet(p: Any, limit: int = 4) -> str:
    """A short, readable form of a packet (long payloads are cut)."""
    if not isinstance(p, Packet):
        return repr(p)
    payload = ", ".join(f"0x{w:x}" for w in p.payload[:limit]) + (", ..." if len(p.payload) > limit else "")
    meta = ", ".join(f"{k}={v}" for k, v in p.meta.items())
    return (f"{p.kind.name}(dst={p.dst}, src={p.src}, tag={p.tag}" + (f", {meta}" if meta else "")
            + f", {len(p.payload)} payload flits [{payload}])")


def packet_diff(expected: Any, got: Any) -> str:
    """Which fields differ, e.g. ``"tag 3 != 4, payload flit 2 0x10 != 0x11"``."""
    if not (isinstance(expected, Packet) and isinstance(got, Packet)):
        return f"{expected!r} != {got!r}"
    diffs = [f"{name} {getattr(expected, name)} != {getattr(got, name)}"
             for name in ("kind", "dst", "src", "tag") if getattr(expected, name) != getattr(got, name)]
    if expected.meta != got.meta:
        diffs.append(f"meta {dict(expected.meta)} != {dict(got.meta)}")
    if len(expected.payload) != len(got.payload):
        diffs.append(f"payload length {len(expected.payload)} != {len(got.payload)}")
    else:
        bad = [i for i, (a, b) in enumerate(zip(expected.payload, got.payload)) if a != b]
        if bad:
            i = bad[0]
            diffs.append(f"payload flit {i} 0x{expected.payload[i]:x} != 0x{got.payload[i]:x}"
                         + (f" (and {len(bad) - 1} more flits)" if len(bad) > 1 else ""))
    return ", ".join(diffs) or "equal"


class Scoreboard:
    """Expected packets per output port, with an ordering rule (see the module doc).

    Parameters
    ----------
    name : str
        Used in messages.
    ordered : bool
        In order per (port, flow) if ``True``; any order per port if ``False``.

    Attributes
    ----------
    matched : int
        Packets observed that matched an expectation.
    expected_total : int
        Packets expected so far.
    """

    def __init__(self, name: str = "scoreboard", *, ordered: bool = True):
        self.name = name
        self.ordered = ordered
        # port -> flow -> deque of expected packets (ordered); port -> Counter (unordered)
        self._queues: dict[Hashable, dict[Hashable, collections.deque]] = collections.defaultdict(dict)
        self._bags: dict[Hashable, collections.Counter] = collections.defaultdict(collections.Counter)
        self.matched = 0
        self.expected_total = 0
        self.matched_per_port: collections.Counter = collections.Counter()

    # -- filling and checking -----------------------------------------------------------------------------
    def expect(self, port: Hashable, packet: Any, flow: Hashable = None) -> None:
        """``port`` must emit ``packet`` (after the earlier packets of the same ``flow``, if ordered)."""
        self.expected_total += 1
        if self.ordered:
            self._queues[port].setdefault(flow, collections.deque()).append(packet)
        else:
            self._bags[port][packet] += 1

    def observe(self, port: Hashable, packet: Any) -> None:
        """``port`` emitted ``packet``: it must match an expected packet, else ``AssertionError``."""
        if self.ordered:
            self._observe_ordered(port, packet)
        else:
            bag = self._bags.get(port)
            if not bag or bag[packet] <= 0:
                raise AssertionError(self._unexpected(port, packet))
            bag[packet] -= 1
            if not bag[packet]:
                del bag[packet]
        self.matched += 1
        self.matched_per_port[port] += 1

    def _observe_ordered(self, port: Hashable, packet: Any) -> None:
        flows = self._queues.get(port, {})
        for flow, queue in flows.items():
            if queue and queue[0] == packet:
                queue.popleft()
                if not queue:
                    del flows[flow]
                return
        for flow, queue in flows.items():  # expected, but not yet: an ordering violation
            for position, candidate in enumerate(queue):
                if candidate == packet:
                    raise AssertionError(
                        f"{self.name}: port {port}, flow {flow}: packets must come in order, but got "
                        f"{describe_packet(packet)} which is number {position + 1} in line; expected first "
                        f"{describe_packet(queue[0])} (differs: {packet_diff(queue[0], packet)})")
        raise AssertionError(self._unexpected(port, packet))

    def _unexpected(self, port: Hashable, packet: Any) -> str:
        where = self.ports_expecting(packet)
        msg = (f"{self.name}: port {port} must emit only expected packets, but emitted {describe_packet(packet)} "
               f"({self.matched_per_port[port]} matched on this port before)")
        if where:
            msg += f"; that packet is expected on port {', '.join(map(str, where))}"
        heads = self._heads(port)
        if heads:
            flow, head = heads[0]
            msg += ("; expected next" + (f" (flow {flow})" if self.ordered else "") + f": {describe_packet(head)}"
                    f" (differs: {packet_diff(head, packet)})")
            if len(heads) > 1:
                msg += f" or one of {len(heads) - 1} other flows' heads"
        else:
            msg += "; nothing more is expected there (a duplicate or an invented packet)"
        return msg

    def _heads(self, port: Hashable) -> list[tuple[Hashable, Any]]:
        if self.ordered:
            return [(flow, q[0]) for flow, q in self._queues.get(port, {}).items() if q]
        return [(None, p) for p in self._bags.get(port, {})]

    def ports_expecting(self, packet: Any) -> list[Hashable]:
        if self.ordered:
            return [port for port, flows in self._queues.items() if any(packet in q for q in flows.values())]
        return [port for port, bag in self._bags.items() if bag.get(packet, 0) > 0]

    # -- the end ----------------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        """Expected packets not yet observed."""
        if self.ordered:
            return sum(len(q) for flows in self._queues.values() for q in flows.values())
        return sum(sum(bag.values()) for bag in self._bags.values())

    def pending_per_port(self) -> dict[Hashable, int]:
        if self.ordered:
            counts = {port: sum(len(q) for q in flows.values()) for port, flows in self._queues.items()}
        else:
            counts = {port: sum(bag.values()) for port, bag in self._bags.items()}
        return {port: n for port, n in counts.items() if n}

    def pending_summary(self, limit: int = 3) -> str:
        """What is still expected, per port, with the first packet of each: '' when drained."""
        parts = []
        for port, count in self.pending_per_port().items():
            heads = self._heads(port)[:limit]
            parts.append(f"port {port}: {count} packets, next " + "; ".join(
                (f"flow {flow}: " if self.ordered and flow is not None else "") + describe_packet(p)
                for flow, p in heads))
        return " | ".join(parts)

    def check_drained(self) -> None:
        """Every expected packet must have been observed (no loss); ``AssertionError`` names what is missing."""
        if self.pending:
            raise AssertionError(f"{self.name}: every expected packet must arrive, but {self.pending} of "
                                 f"{self.expected_total} did not: {self.pending_summary()}")
