"""Energy per step (model/perf/energy.py): what the engine counts, and how it is priced."""

import numpy as np
import pytest

from mozart.model.config import load_config, override
from mozart.model.perf import HardwareTiming, Workload, load_params, simulate_step, step_schedules
from mozart.model.perf.energy import COMPONENTS, Traffic, step_energy
from mozart.model.placement import Placement
from mozart.model.schedule import Attention, Dispatch, Load
from mozart.model.synth import synthesize_for


def test_traffic_classifies_resources():
    t = Traffic()
    for resource, nbytes in [(("dram", 0, 1), 10), (("root-dram",), 5), (("ssd", 2), 7), (("leaf-down", 3), 4),
                             (("root-up", 1), 2), (("chip", 1), 100), (("reduce", 0), 100)]:
        t.add_moved(resource, nbytes)
    assert (t.dram_bytes, t.ssd_bytes, t.link_byte_hops) == (15, 7, 6)


def test_step_energy_prices_each_component_with_its_parameter():
    params = load_params("olmoe-1b-7b")
    t = Traffic(macs=1e12, sram_bytes=1e9, link_byte_hops=1e9, dram_bytes=1e9, ssd_bytes=1e8)
    hbm = step_energy(t, params, "hbm2")
    assert list(hbm) == list(COMPONENTS)
    assert hbm["macs"] == pytest.approx(1e12 * params.mac_pj * 1e-12)
    assert hbm["dram"] == pytest.approx(8e9 * params.hbm_pj_per_bit * 1e-12)
    assert hbm["ssd"] == pytest.approx(1e8 * params.ssd_pj_per_byte * 1e-12)
    ssd = step_energy(t, params, "ssd")  # the SSD configuration: every DRAM byte is an SSD byte
    assert ssd["dram"] == 0 and ssd["ssd"] == pytest.approx(1.1e9 * params.ssd_pj_per_byte * 1e-12)


def test_the_engine_counts_every_mac_and_weight_byte():
    params = load_params("olmoe-1b-7b")
    cfg = override(load_config(params.config), {"moe.layers": 1, "training.sequences": 4, "training.seq_len": 64})
    e = cfg.moe.experts
    placement = Placement(np.arange(e) // (e // cfg.chiplets), cfg.chiplets_per_group)
    trace = synthesize_for(cfg, cfg.training.tokens_per_step, seed=1)
    timing, workload = HardwareTiming.full_size(params, cfg), Workload.full_size(params, cfg)
    (schedule,) = step_schedules(cfg, placement, trace, "B")
    result = simulate_step([schedule], trace, timing, workload, cfg)
    macs = sum(d.pairs * workload.expert_macs_per_pair(d.phase == "backward") for d in schedule.of_kind(Dispatch))
    macs += sum(a.tokens * workload.root_macs_per_token(a.phase == "backward") for a in schedule.of_kind(Attention))
    assert result.traffic.macs == pytest.approx(macs)
    weights = len(schedule.of_kind(Load)) * workload.expert_weight_elements * timing.weight_bytes
    assert result.traffic.dram_bytes > weights  # loads, write-backs, saved activations, attention
    assert result.traffic.link_byte_hops > weights  # every load crosses the chiplet's leaf link
