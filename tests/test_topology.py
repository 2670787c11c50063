"""Node numbering, up*/down* routing and the channel-dependency deadlock check."""

import networkx as nx
import pytest

from mozart.model.errors import ConfigError
from mozart.model.topology import NodeKind, Topology, channel_dependency_graph, check_acyclic


@pytest.mark.parametrize("groups,cpg", [(2, 2), (4, 4), (3, 5), (1, 1)])
def test_numbering_is_dense_and_routes_are_minimal(groups, cpg):
    topo = Topology(groups, cpg)
    assert [n.id for n in topo.nodes] == list(range(topo.num_nodes))
    assert sum(n.kind is NodeKind.CHIPLET for n in topo.nodes) == groups * cpg
    for a in range(topo.num_nodes):
        for b in range(topo.num_nodes):
            if a != b:
                path = topo.route(a, b)
                assert path[0] == a and path[-1] == b
                assert len(path) - 1 == nx.shortest_path_length(nx.Graph(topo.links), a, b)
    topo.check_deadlock_free()


def test_switch_ports():
    topo = Topology(2, 3)
    assert topo.switch_port_of(1, topo.chiplet(1, 2)) == 3
    assert topo.switch_port_of(1, topo.memctrl(1)) == 4
    assert topo.switch_port_of(1, topo.chiplet(0, 0)) == 0
    assert topo.switch_port_of(1, topo.root) == 0


def test_cyclic_routing_is_rejected():
    # A ring of four nodes routed clockwise always has a cyclic channel dependency graph.
    ring = lambda at, dst: (at + 1) % 4  # noqa: E731
    with pytest.raises(ConfigError, match="acyclic channel dependency graph.*not one with the cycle"):
        check_acyclic(channel_dependency_graph(range(4), ring), "ring")
