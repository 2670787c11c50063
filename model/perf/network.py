"""The two on-package networks the performance model compares: the NoP-Tree and a 2D mesh.

A network names its directed links and gives the path (a tuple of links) of every transfer the schedule
causes. Transfers reserve every link of their path for the same interval (cut-through), so two transfers
that share a link contend.

``TreeNetwork`` (the paper): root -> switch ``g`` (``("root-down", g)``), switch -> chiplet ``c``
(``("leaf-down", c)``) and the reverse links. The group's DRAM attaches to its switch natively; its weight
streams use the chiplet's leaf link. Switches reduce the partials of a token (``reduces = True``).

``MeshNetwork`` (our comparison, not in the paper): the chiplets of group ``g`` form row ``g`` of a
``groups x chiplets_per_group`` mesh; the attention chiplet attaches to the west column (one link per row)
and group ``g``'s DRAM to the east end of row ``g``. Routing is dimension order (X then Y); since every
transfer starts and ends in one row, it only moves along X. There is no in-network reduction: every
partial travels to the root. Mesh links carry ``mesh_link_bytes_per_cycle``: the tree's wire budget spread
over the mesh's links.

Both networks: when ``timing.root_port_bytes_per_cycle`` is set, every transfer into the root also takes the
root's one input port (``root_port``: the resource ``("root-port",)`` at that rate, no hop of its own), so
the groups' up links share it; otherwise ``root_port`` is empty.
"""

from __future__ import annotations

Link = tuple

__all__ = ["TreeNetwork", "MeshNetwork", "NETWORKS", "make_network"]


ROOT_PORT: Link = ("root-port",)


class _Network:
    """What both networks share: the per-link rate and the root's input port."""

    def __init__(self, groups: int, chiplets_per_group: int, rate: float, timing):
        self.groups, self.per_group, self.rate = groups, chiplets_per_group, rate
        self.port_rate = timing.root_port_bytes_per_cycle
        self.root_port = (ROOT_PORT,) if self.port_rate else ()

    def link_rate(self, link: Link) -> float:
        return self.port_rate if link == ROOT_PORT else self.rate


class TreeNetwork(_Network):
    name = "tree"
    reduces = True

    def __init__(self, groups: int, chiplets_per_group: int, timing):
        super().__init__(groups, chiplets_per_group, timing.link_bytes_per_cycle, timing)

    def dispatch_path(self, chiplet: int) -> tuple[Link, ...]:
        return (("root-down", chiplet // self.per_group), ("leaf-down", chiplet))

    def leaf_up(self, chiplet: int) -> tuple[Link, ...]:
        return (("leaf-up", chiplet),)

    def root_up(self, group: int) -> tuple[Link, ...]:
        return (("root-up", group),)

    def combine_path(self, chiplet: int) -> tuple[Link, ...]:
        return self.leaf_up(chiplet) + self.root_up(chiplet // self.per_group)

    def weight_path(self, chiplet: int) -> tuple[Link, ...]:
        return (("leaf-down", chiplet),)

    def write_path(self, chiplet: int) -> tuple[Link, ...]:
        return (("leaf-up", chiplet),)


class MeshNetwork(_Network):
    name = "mesh"
    reduces = False

    def __init__(self, groups: int, chiplets_per_group: int, timing):
        super().__init__(groups, chiplets_per_group, timing.mesh_link_bytes_per_cycle, timing)

    def _where(self, chiplet: int) -> tuple[int, int]:
        return divmod(chiplet, self.per_group)

    def _x_path(self, row: int, start: int, stop: int) -> tuple[Link, ...]:
        step = 1 if stop > start else -1
        return tuple(("mesh", (row, x), (row, x + step)) for x in range(start, stop, step))

    def dispatch_path(self, chiplet: int) -> tuple[Link, ...]:
        row, col = self._where(chiplet)
        return (("root-down", row),) + self._x_path(row, 0, col)

    def combine_path(self, chiplet: int) -> tuple[Link, ...]:
        row, col = self._where(chiplet)
        return self._x_path(row, col, 0) + (("root-up", row),)

    def weight_path(self, chiplet: int) -> tuple[Link, ...]:
        row, col = self._where(chiplet)
        return self._x_path(row, self.per_group - 1, col)

    def write_path(self, chiplet: int) -> tuple[Link, ...]:
        row, col = self._where(chiplet)
        return self._x_path(row, col, self.per_group - 1)


NETWORKS = {"tree": TreeNetwork, "mesh": MeshNetwork}


def make_network(name: str, cfg, timing):
    """The network ``name`` (``"tree"`` or ``"mesh"``) for ``cfg``'s groups and chiplets."""
    from ..errors import ConfigError  # noqa: PLC0415 (kept local: the module is otherwise dependency-free)
    if name not in NETWORKS:
        raise ConfigError(f"network must be one of {', '.join(NETWORKS)}, not {name!r}")
    return NETWORKS[name](cfg.groups, cfg.chiplets_per_group, timing)
