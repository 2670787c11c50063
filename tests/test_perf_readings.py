"""The two readings of the paper's micro-batches (model/perf/step.py): weights streamed once per layer per step,
or once per micro-batch as each micro-batch passes the whole model."""

import numpy as np
import pytest

from mozart.model.config import load_config, override
from mozart.model.errors import ConfigError
from mozart.model.perf import HardwareTiming, Workload, load_params
from mozart.model.perf.evaluation import run_sweep
from mozart.model.perf.step import micro_batch_passes, simulate_passes, simulate_step, step_schedules
from mozart.model.placement import Placement
from mozart.model.synth import synthesize_for


def forward_weight_bytes(result):
    return sum(r.nbytes for r in result.records
               if r.category == "weights" and r.resource[0] == "dram" and r.phase == "forward")


@pytest.fixture(scope="module")
def small():
    params = load_params("olmoe-1b-7b")
    cfg = override(load_config(params.config), {"moe.layers": 2, "training.sequences": 8, "training.seq_len": 64})
    e = cfg.moe.experts
    placement = Placement(np.arange(e) // (e // cfg.chiplets), cfg.chiplets_per_group)
    trace = synthesize_for(cfg, cfg.training.tokens_per_step, seed=2)
    return params, cfg, placement, trace


def test_per_micro_batch_streams_the_weights_once_per_micro_batch(small):
    params, cfg, placement, trace = small
    timing, workload = HardwareTiming.full_size(params, cfg), Workload.full_size(params, cfg)
    per_layer = simulate_step(step_schedules(cfg, placement, trace, "B"), trace, timing, workload, cfg, record=True)
    passes = micro_batch_passes(cfg, placement, trace, "B")
    assert len(passes) == cfg.training.micro_batches
    assert sum(p.tokens for _, p in passes) == trace.tokens
    per_mb = simulate_passes(passes, timing, workload, cfg, record=True)
    assert forward_weight_bytes(per_mb) == pytest.approx(cfg.training.micro_batches * forward_weight_bytes(per_layer))
    assert per_mb.cycles > per_layer.cycles


def test_passes_run_one_after_another(small):
    params, cfg, placement, trace = small
    timing, workload = HardwareTiming.full_size(params, cfg), Workload.full_size(params, cfg)
    passes = micro_batch_passes(cfg, placement, trace, "A")
    one = simulate_passes(passes[:1], timing, workload, cfg)
    two = simulate_passes(passes[:2], timing, workload, cfg)
    assert two.cycles > 1.5 * one.cycles


def test_the_sweep_reports_both_readings_and_refuses_an_unknown_one():
    cells = run_sweep(["olmoe-1b-7b"], seq_lens=(128, 256), drams=("hbm2",), mesh=False, workers=1,
                      changes={"moe.layers": 1})
    # Both readings at seq 256; the sensitivity study's other lengths in the second reading for Qwen3 only.
    assert {c.reading for c in cells if c.seq_len == 256} == {"per-layer", "per-micro-batch"}
    assert {c.reading for c in cells if c.seq_len == 128} == {"per-layer"} and len(cells) == 12
    with pytest.raises(ConfigError, match="reading must be one of per-layer, per-micro-batch, not 'per-token'"):
        run_sweep(["olmoe-1b-7b"], readings=("per-token",))
