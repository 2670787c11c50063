"""The chip-area estimate (model/perf/area.py): unit counts from the config, per-unit areas from hardware.toml."""

import dataclasses

import pytest

from mozart.model.config import load_config, override
from mozart.model.perf import load_params
from mozart.model.perf.area import COMPONENTS, AreaUnits, chip_area, config_area
from mozart.model.perf.parameters import hardware_params
from mozart.model.perf.workload import Workload

AREA_PARAMS = ("pe_um2", "adder_um2", "sram_mm2_per_mb", "bump_pitch_um", "hbm_phy_mm2", "hbm_stack_mm2")


def full_size(model="olmoe-1b-7b"):
    params = load_params(model)
    return params, load_config(params.config)


def full_size_area(model="olmoe-1b-7b"):
    params, cfg = full_size(model)
    return config_area(cfg, params)


def test_every_area_parameter_cites_its_source():
    table = hardware_params().params
    for name in AREA_PARAMS:
        assert table[name].source.startswith(("paper:", "assumption:")) and len(table[name].source) > 40, name


def test_full_size_components_by_hand():
    """The paper's wafer, each component written out from the parameters' values."""
    area = full_size_area()
    pes = (16 + 1) * 64 * 16 * 256        # 16 expert chiplets and the attention chiplet, 64 tiles of 16 x 256 PEs
    assert area.components["pes"] == pytest.approx(pes * 1161.5e-6)
    assert area.components["sram"] == pytest.approx(17 * 64 * 2.265 * 1.52)
    assert area.components["link_phys"] == pytest.approx(20 * 2 * 2 * 512 * 0.05 ** 2)  # 20 links, 2 ends
    lanes, buffer_bytes = 4 * 512 // 16, 6 * 2 * 8 * 512 / 8  # 6 ports x 2 directions x 8 flits of 512 bits
    assert area.components["switches"] == pytest.approx(4 * (lanes * 526.5e-6 + buffer_bytes / 2**20 * 1.52))
    assert area.components["dram_phys"] == 6 * 10.0  # 4 group stacks and the attention chiplet's 2
    assert area.total_mm2 == pytest.approx(sum(area.components.values()))
    assert list(area.components) == list(COMPONENTS)


def test_footprint_takes_the_larger_of_stacked_dies_and_counts_the_dram_stacks():
    params, cfg = full_size()
    units = AreaUnits.full_size(params, cfg)
    base = chip_area(units, params)
    # Halving the SRAM (still smaller than the logic die under it) shrinks the silicon, not the footprint.
    less_sram = chip_area(dataclasses.replace(units, sram_bytes_per_chiplet=units.sram_bytes_per_chiplet / 2,
                                              root_sram_bytes=units.root_sram_bytes / 2), params)
    assert less_sram.total_mm2 < base.total_mm2 and less_sram.footprint_mm2 == pytest.approx(base.footprint_mm2)
    # Quadrupling it makes the SRAM die the larger one: the footprint grows too.
    more_sram = chip_area(dataclasses.replace(units, sram_bytes_per_chiplet=units.sram_bytes_per_chiplet * 4),
                          params)
    assert more_sram.footprint_mm2 > base.footprint_mm2
    assert base.footprint_mm2 > 6 * 92.0  # the six bought stacks are on the wafer, outside the silicon total


def test_rtl_configs_from_their_own_fields():
    tiny = load_config("tiny")
    area = config_area(tiny)
    hw = tiny.hardware
    assert area.components["pes"] == pytest.approx(4 * hw.mac_lanes * 1161.5e-6)  # no attention PEs in the RTL
    sram = 4 * hw.sram_slots * Workload.scaled(tiny).expert_weight_elements * tiny.numerics.weight_bits / 8
    assert area.components["sram"] == pytest.approx(sram / 2**20 * 1.52)
    assert area.components["dram_phys"] == 2 * 10.0  # one DRAM per group
    bigger = config_area(override(tiny, {"tree.chiplets_per_group": 4, "hardware.sram_slots": 4}))
    for name in ("pes", "sram", "switches", "link_phys"):
        assert bigger.components[name] > area.components[name], name


def test_evaluate_prints_the_area_next_to_the_energy():
    from mozart.model.perf.evaluation import Cell
    from mozart.model.perf.report import energy_table
    cells = [Cell("olmoe-1b-7b", v, 256, "hbm2", "tree", 1.0, 8.0, 8.0, energy=(1.0,) * 5)
             for v in ("baseline", "A", "B", "C")]
    lines = energy_table(cells)
    area = full_size_area()
    assert lines[-1] == f"  {'olmoe-1b-7b':18s} {area.line()}"
    assert "silicon 9,084.6 mm^2" in lines[-1] and "pes 5,176.2" in lines[-1]
