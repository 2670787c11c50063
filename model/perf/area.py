"""Chip-area estimate of one wafer configuration, by component, from unit counts and cited per-unit areas.

Contract
--------
:class:`AreaUnits` counts what a configuration builds; :func:`chip_area` prices it with the area parameters
of ``hardware.toml`` (``pe_um2``, ``adder_um2``, ``sram_mm2_per_mb``, ``bump_pitch_um``, ``hbm_phy_mm2``,
``hbm_stack_mm2``; each with its source, chosen before any area was computed) and returns an :class:`Area`:
silicon mm^2 per component of :data:`COMPONENTS` and the wafer footprint.

- ``pes``: processing elements of the expert chiplets and the attention chiplet, ``pe_um2`` each;
- ``sram``: the chiplets' stacked SRAM dies, ``sram_mm2_per_mb``;
- ``switches``: each switch's reduction lanes (``adder_um2`` each) and its port buffers (``buffer_depth``
  flits per port and direction, at the SRAM density);
- ``link_phys``: the bump fields of the tree links, ``pitch^2`` per wire, both directions, at both ends;
- ``dram_phys``: one HBM2 PHY and controller per DRAM stack.

``total_mm2`` is the silicon the design builds (the sum). The DRAM stacks themselves are bought, not built:
they count in the footprint only. The footprint is what sits on the wafer (the interposer): each chiplet
takes the larger of its logic die (PEs and link bumps) and the SRAM die stacked on it, switches and PHYs
their area, each stack ``hbm_stack_mm2``; no spacing between dies is counted.

Unit counts (:meth:`AreaUnits.full_size`, the paper's wafer, and :meth:`AreaUnits.scaled`, an RTL config as
``HardwareTiming.scaled`` times it) come from the config and the performance parameters, written once here.
"""

from __future__ import annotations

from dataclasses import dataclass

from .parameters import hardware_params
from .workload import Workload

__all__ = ["AreaUnits", "Area", "chip_area", "config_area", "COMPONENTS"]

COMPONENTS = ("pes", "sram", "switches", "link_phys", "dram_phys")
_MB = 2**20


@dataclass(frozen=True)
class AreaUnits:
    """What one configuration builds (counts of the wafer, per-chiplet sizes)."""

    chiplets: int                  # expert chiplets
    pes_per_chiplet: int
    root_pes: int                  # the attention chiplet's (0: no attention compute)
    sram_bytes_per_chiplet: float
    root_sram_bytes: float
    switches: int
    switch_lanes: int              # reduction adders of one switch
    switch_buffer_bits: int        # port buffers of one switch
    links: int                     # tree links (root-switch and switch-chiplet)
    link_wires: int                # per direction per link
    dram_stacks: int

    @classmethod
    def full_size(cls, params, cfg) -> "AreaUnits":
        """The paper's wafer: ``params`` a :class:`~mozart.model.perf.parameters.PerfParams`, ``cfg`` its config."""
        p = params
        pes = lambda tiles: tiles * p.arrays_per_tile * p.pes_per_array  # noqa: E731
        element_bits = 8 * p.element_bytes
        return cls(cfg.chiplets, pes(p.tiles_per_chiplet), pes(p.root_tiles),
                   p.tiles_per_chiplet * p.sram_mb_per_tile * _MB, p.root_tiles * p.sram_mb_per_tile * _MB,
                   cfg.groups, p.reduce_ports * p.link_wires // element_bits,
                   _switch_buffer_bits(cfg, p.link_wires), _tree_links(cfg), p.link_wires,
                   cfg.groups + p.attention_stacks)

    @classmethod
    def scaled(cls, cfg, workload) -> "AreaUnits":
        """An RTL config (``tiny``, ``wafer4x4``): ``mac_lanes`` PEs per chiplet, ``sram_slots`` experts' weights
        of SRAM, ``flit_bits`` wires per link, one flit of partials reduced per cycle per switch, one DRAM per
        group; the root does no attention compute (``workload``: :meth:`Workload.scaled`)."""
        hw, num = cfg.hardware, cfg.numerics
        sram = hw.sram_slots * workload.expert_weight_elements * num.weight_bits / 8
        return cls(cfg.chiplets, hw.mac_lanes, 0, sram, 0.0, cfg.groups, hw.flit_bits // num.partial_bits,
                   _switch_buffer_bits(cfg, hw.flit_bits), _tree_links(cfg), hw.flit_bits, cfg.groups)


def _tree_links(cfg) -> int:
    return cfg.groups * (1 + cfg.chiplets_per_group)


def _switch_buffer_bits(cfg, flit_bits: int) -> int:
    ports = cfg.chiplets_per_group + 2  # its chiplets, the up link, the memory controller
    return ports * 2 * cfg.hardware.buffer_depth * flit_bits


@dataclass(frozen=True)
class Area:
    """Silicon mm^2 per component of :data:`COMPONENTS`, and the wafer footprint (mm^2)."""

    components: dict[str, float]
    footprint_mm2: float

    @property
    def total_mm2(self) -> float:
        return sum(self.components.values())

    def line(self) -> str:
        parts = ", ".join(f"{k} {_mm2(v)}" for k, v in self.components.items())
        return f"silicon {_mm2(self.total_mm2)} mm^2 ({parts}); wafer footprint {_mm2(self.footprint_mm2)} mm^2"


def _mm2(value: float) -> str:
    # Full-size components run to thousands of mm^2, the RTL configs' PEs to hundredths.
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def chip_area(units: AreaUnits, params) -> Area:
    """The :class:`Area` of ``units`` priced with ``params``' area parameters (mm^2)."""
    p, u = params, units
    um2 = 1e-6
    sram_mm2 = lambda nbytes: nbytes / _MB * p.sram_mm2_per_mb  # noqa: E731
    # One bump per wire and direction at each of a link's two ends.
    link_end_mm2 = 2 * u.link_wires * (p.bump_pitch_um * 1e-3) ** 2
    switch_mm2 = u.switch_lanes * p.adder_um2 * um2 + sram_mm2(u.switch_buffer_bits / 8)
    components = {
        "pes": (u.chiplets * u.pes_per_chiplet + u.root_pes) * p.pe_um2 * um2,
        "sram": sram_mm2(u.chiplets * u.sram_bytes_per_chiplet + u.root_sram_bytes),
        "switches": u.switches * switch_mm2,
        "link_phys": 2 * u.links * link_end_mm2,
        "dram_phys": u.dram_stacks * p.hbm_phy_mm2,
    }
    chiplet_mm2 = max(u.pes_per_chiplet * p.pe_um2 * um2 + link_end_mm2, sram_mm2(u.sram_bytes_per_chiplet))
    root_mm2 = max(u.root_pes * p.pe_um2 * um2 + u.switches * link_end_mm2, sram_mm2(u.root_sram_bytes))
    switch_ends = (u.chiplets // u.switches + 1) * link_end_mm2  # its chiplets' links and its up link
    footprint = (u.chiplets * chiplet_mm2 + root_mm2 + u.switches * (switch_mm2 + switch_ends)
                 + components["dram_phys"] + u.dram_stacks * p.hbm_stack_mm2)
    return Area(components, footprint)


def config_area(cfg, params=None) -> Area:
    """The :class:`Area` of ``cfg``: with ``params`` (its full-size parameters) the paper's wafer, without them
    the RTL config priced with the hardware file's per-unit areas."""
    if params is None:
        return chip_area(AreaUnits.scaled(cfg, Workload.scaled(cfg)), hardware_params())
    return chip_area(AreaUnits.full_size(params, cfg), params)
