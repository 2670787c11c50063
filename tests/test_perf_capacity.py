"""Capacity: expert weights beyond a group's HBM2 stack stream from the SSD tier (model/perf/capacity.py)."""

import dataclasses

import numpy as np
import pytest

from mozart.model.config import load_config, override
from mozart.model.perf import HardwareTiming, Workload, load_params, simulate_step, step_schedules
from mozart.model.perf.capacity import hbm_layers
from mozart.model.placement import Placement
from mozart.model.synth import synthesize_for


def test_qwen3_overflows_four_8gb_stacks_and_olmoe_fits():
    params = load_params("qwen3-30b-a3b")
    cap = hbm_layers(params, load_config(params.config))
    assert cap.weight_bytes_per_layer * cap.layers == 32 * 3 * 2048 * 768 * 2 * 48  # 14.5 GB per group
    assert 0 < cap.layers_in_hbm < 48 and "stream from the SSD tier" in cap.line()
    assert cap.layers_in_hbm * cap.weight_bytes_per_layer + cap.saved_bytes <= 8192 * 2**20
    assert (cap.layers_in_hbm + 1) * cap.weight_bytes_per_layer + cap.saved_bytes > 8192 * 2**20
    olmoe = load_params("olmoe-1b-7b")
    assert hbm_layers(olmoe, load_config(olmoe.config)).overflow_layers == 0
    hbm = HardwareTiming.full_size(params, load_config(params.config), "hbm2")
    assert hbm.hbm_expert_layers == cap.layers_in_hbm and hbm.overflow_bytes_per_cycle == pytest.approx(15.8)
    assert HardwareTiming.full_size(params, load_config(params.config), "ssd").hbm_expert_layers is None


def test_layers_beyond_the_stack_stream_from_the_ssd_and_take_longer():
    params = load_params("olmoe-1b-7b")
    cfg = override(load_config(params.config), {"moe.layers": 2, "training.sequences": 4, "training.seq_len": 64})
    e = cfg.moe.experts
    placement = Placement(np.arange(e) // (e // cfg.chiplets), cfg.chiplets_per_group)
    trace = synthesize_for(cfg, cfg.training.tokens_per_step, seed=1)
    schedules = step_schedules(cfg, placement, trace, "B")
    fits = HardwareTiming.full_size(params, cfg, "hbm2")
    assert fits.hbm_expert_layers is None
    overflow = dataclasses.replace(fits, hbm_expert_layers=1, overflow_bytes_per_cycle=15.8)
    workload = Workload.full_size(params, cfg)
    run = simulate_step(schedules, trace, overflow, workload, cfg, record=True)
    ssd = {r.layer for r in run.records if r.resource[0] == "ssd"}
    assert ssd == {1}
    # The mutant that ignores capacity (everything from HBM2) is faster: the check is not vacuous.
    assert simulate_step(schedules, trace, fits, workload, cfg).cycles < run.cycles


def test_one_micro_batch_at_a_time_holds_fewer_saved_activations():
    params = load_params("qwen3-30b-a3b")
    cfg = load_config(params.config)
    step, micro = hbm_layers(params, cfg, "per-layer"), hbm_layers(params, cfg, "per-micro-batch")
    assert micro.saved_bytes * cfg.training.micro_batches == pytest.approx(step.saved_bytes)
    assert micro.layers_in_hbm > step.layers_in_hbm
    timing = HardwareTiming.full_size(params, cfg, "hbm2", "per-micro-batch")
    assert timing.hbm_expert_layers == micro.layers_in_hbm
