"""Node numbering, routing and the deadlock check of the NoP-Tree.

Numbering (every block, model and testbench uses this and nothing else)::

    0                               the root (attention chiplet)
    1 .. G                          switch of group g           -> 1 + g
    G+1 .. G+G*C                    expert chiplet c of group g -> 1 + G + g*C + c
    G+G*C+1 .. G+G*C+G              memory controller of g      -> 1 + G + G*C + g

Switch ports: port 0 is up (to the root), ports 1..C go down to chiplets 0..C-1, port C+1 to the group's
memory controller. Routing is up*/down*: a packet climbs until the node it wants is below it, then
descends; the root forwards between groups. Such routing on a tree has an acyclic channel dependency
graph, which :meth:`Topology.check_deadlock_free` verifies rather than assumes, the way NoC generators do
before they emit RTL.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Callable, Iterable

import networkx as nx

from .errors import ConfigError

__all__ = ["NodeKind", "Node", "Topology", "channel_dependency_graph", "check_acyclic"]


class NodeKind(enum.IntEnum):
    ROOT = 0
    SWITCH = 1
    CHIPLET = 2
    MEMCTRL = 3


@dataclass(frozen=True)
class Node:
    id: int
    kind: NodeKind
    group: int  #: -1 for the root
    index: int  #: chiplet index within its group; 0 otherwise

    @property
    def label(self) -> str:
        if self.kind is NodeKind.ROOT:
            return "root"
        if self.kind is NodeKind.CHIPLET:
            return f"chiplet{self.group}.{self.index}"
        return f"{self.kind.name.lower()}{self.group}"


Link = tuple[int, int]


class Topology:
    """The tree of one config: nodes, links, ports and the routing function."""

    def __init__(self, groups: int, chiplets_per_group: int):
        if groups < 1 or chiplets_per_group < 1:
            raise ConfigError(f"a tree needs at least one group and one chiplet, not {groups} x {chiplets_per_group}")
        self.groups = groups
        self.chiplets_per_group = chiplets_per_group

    @classmethod
    def of(cls, cfg) -> "Topology":
        return cls(cfg.tree.groups, cfg.tree.chiplets_per_group)

    # -- numbering -------------------------------------------------------------------------------------
    root = 0

    def switch(self, group: int) -> int:
        self._check_group(group)
        return 1 + group

    def chiplet(self, group: int, index: int) -> int:
        self._check_group(group)
        if not 0 <= index < self.chiplets_per_group:
            raise ValueError(f"chiplet index must be in 0..{self.chiplets_per_group - 1}, not {index!r}")
        return 1 + self.groups + group * self.chiplets_per_group + index

    def memctrl(self, group: int) -> int:
        self._check_group(group)
        return 1 + self.groups + self.groups * self.chiplets_per_group + group

    def _check_group(self, group: int) -> None:
        if not 0 <= group < self.groups:
            raise ValueError(f"group must be in 0..{self.groups - 1}, not {group!r}")

    @property
    def num_nodes(self) -> int:
        return 1 + self.groups * (self.chiplets_per_group + 2)

    @property
    def node_bits(self) -> int:
        """Width of a node id field."""
        return max(1, (self.num_nodes - 1).bit_length())

    @cached_property
    def nodes(self) -> tuple[Node, ...]:
        out = [Node(0, NodeKind.ROOT, -1, 0)]
        out += [Node(self.switch(g), NodeKind.SWITCH, g, 0) for g in range(self.groups)]
        out += [Node(self.chiplet(g, c), NodeKind.CHIPLET, g, c)
                for g in range(self.groups) for c in range(self.chiplets_per_group)]
        out += [Node(self.memctrl(g), NodeKind.MEMCTRL, g, 0) for g in range(self.groups)]
        return tuple(out)

    def node(self, node_id: int) -> Node:
        if not 0 <= node_id < self.num_nodes:
            raise ValueError(f"node id must be in 0..{self.num_nodes - 1}, not {node_id!r}")
        return self.nodes[node_id]

    def parent(self, node_id: int) -> int | None:
        node = self.node(node_id)
        if node.kind is NodeKind.ROOT:
            return None
        if node.kind is NodeKind.SWITCH:
            return self.root
        return self.switch(node.group)

    def children(self, node_id: int) -> list[int]:
        node = self.node(node_id)
        if node.kind is NodeKind.ROOT:
            return [self.switch(g) for g in range(self.groups)]
        if node.kind is NodeKind.SWITCH:
            return [self.chiplet(node.group, c) for c in range(self.chiplets_per_group)] + [self.memctrl(node.group)]
        return []

    # -- switch ports ----------------------------------------------------------------------------------
    UP_PORT = 0

    @property
    def switch_ports(self) -> int:
        """Ports of a switch: up, C chiplets, memory controller."""
        return self.chiplets_per_group + 2

    @property
    def memctrl_port(self) -> int:
        return self.chiplets_per_group + 1

    def switch_port_of(self, group: int, dst: int) -> int:
        """The output port a switch of ``group`` sends a packet for ``dst`` to."""
        node = self.node(dst)
        if node.group != group or node.kind in (NodeKind.ROOT, NodeKind.SWITCH):
            return self.UP_PORT
        if node.kind is NodeKind.CHIPLET:
            return 1 + node.index
        return self.memctrl_port

    # -- routing ---------------------------------------------------------------------------------------
    def next_hop(self, at: int, dst: int) -> int:
        """Up*/down* routing: descend if ``dst`` is below ``at``, else climb."""
        if at == dst:
            raise ValueError(f"node {at} is already the destination")
        here = self.node(at)
        there = self.node(dst)
        if here.kind is NodeKind.ROOT:
            return self.switch(there.group)
        if here.kind is NodeKind.SWITCH and there.group == here.group and there.kind in (NodeKind.CHIPLET,
                                                                                         NodeKind.MEMCTRL):
            return dst
        parent = self.parent(at)
        assert parent is not None
        return parent

    def route(self, src: int, dst: int) -> list[int]:
        """Nodes visited from ``src`` to ``dst``, both included."""
        path = [src]
        while path[-1] != dst:
            path.append(self.next_hop(path[-1], dst))
            if len(path) > self.num_nodes:
                raise RuntimeError(f"routing loop from {src} to {dst}: {path}")
        return path

    @cached_property
    def links(self) -> tuple[Link, ...]:
        """Every directed link (a, b)."""
        out = []
        for node in self.nodes:
            for child in self.children(node.id):
                out += [(node.id, child), (child, node.id)]
        return tuple(out)

    def check_deadlock_free(self) -> None:
        """Raise :class:`ConfigError` if the routing's channel dependency graph has a cycle."""
        _check_tree_shape(self.groups, self.chiplets_per_group)


@lru_cache(maxsize=64)
def _check_tree_shape(groups: int, chiplets_per_group: int) -> None:
    # The graph depends on the shape alone; sweeps validate many configs of few shapes.
    topo = Topology(groups, chiplets_per_group)
    check_acyclic(channel_dependency_graph(range(topo.num_nodes), topo.next_hop), "NoP-Tree")


def channel_dependency_graph(nodes: Iterable[int], next_hop: Callable[[int, int], int]) -> nx.DiGraph:
    """Dally and Seitz's channel dependency graph of a destination-based routing function: an edge from
    link (a,b) to link (b,c) when a packet for some destination holds (a,b) while it requests (b,c).
    Wormhole routing is deadlock-free if this graph is acyclic.

    A packet's next hop depends only on where it is and where it goes, so every packet for ``dst`` that
    reaches ``x`` takes the same two links from there; one pass per destination finds every edge.
    """
    nodes = list(nodes)
    cdg = nx.DiGraph()
    for dst in nodes:
        for x in nodes:
            if x == dst:
                continue
            hop = next_hop(x, dst)
            cdg.add_node((x, hop))
            if hop != dst:
                cdg.add_edge((x, hop), (hop, next_hop(hop, dst)))
    return cdg


def check_acyclic(cdg: nx.DiGraph, what: str) -> None:
    try:
        cycle = nx.find_cycle(cdg)
    except nx.NetworkXNoCycle:
        return
    links = " -> ".join(f"{a}->{b}" for (a, b), _ in cycle)
    raise ConfigError(f"{what} routing must have an acyclic channel dependency graph (deadlock freedom), "
                      f"not one with the cycle {links}")
