"""The root's input port: the RTL root merges the G up links into one packet mux that passes
one flit per cycle, so every result packet of every group goes through it one after another. The event engine
(``root_port_bytes_per_cycle``) and the in-order replay (``port_flits_per_cycle``) both charge it."""

from dataclasses import replace

import numpy as np
import pytest

import mozart.model.perf.rtl as rtl
from mozart.model.config import load_config, override
from mozart.model.perf.rtl import in_order_timing, predict_cycles, rtl_timing
from mozart.model.wafer_run import build_run

#: wafer4x4 with experts of d_ff 8: each token's results (9 flits per group) outweigh its compute, so the
#: root's port, not the chiplets, sets the layer's time.
LINK_HEAVY = {"moe.d_ff": 8}


def result_packets(run) -> int:
    """Result packets that reach the root: one per token and group with de-duplication, else one per pair."""
    layer = run.layers[0]
    chiplets = layer.expert_to_chiplet[layer.experts]
    if run.variant in ("baseline", "A"):
        return chiplets.size
    groups = chiplets // run.cfg.chiplets_per_group
    return sum(len(np.unique(row)) for row in groups)


def without_port(monkeypatch):
    """The pre-issue mutant: every up link has a root port of its own (the engine and the replay)."""
    monkeypatch.setattr(rtl, "rtl_timing",
                        lambda cfg, **kw: replace(rtl_timing(cfg, **kw), root_port_bytes_per_cycle=0.0))
    monkeypatch.setattr(rtl, "in_order_timing",
                        lambda cfg: replace(in_order_timing(cfg), port_flits_per_cycle=float("inf")))


def test_the_rtl_numbers_of_the_port():
    for name in ("tiny", "wafer4x4"):
        cfg = load_config(name)
        assert rtl_timing(cfg).root_port_bytes_per_cycle == cfg.hardware.flit_bits / 8  # one flit per cycle
        assert in_order_timing(cfg).port_flits_per_cycle == 1.0


@pytest.mark.parametrize("variant", ["baseline", "C"])
def test_a_link_heavy_layer_takes_at_least_its_result_flits(variant, monkeypatch):
    """The port's bound: the RTL cannot finish before every result flit has passed the mux, one per cycle.
    Both the engine and the replay respect it; the mutant without the port predicts well under it."""
    cfg = override(load_config("wafer4x4"), LINK_HEAVY)
    run = build_run(cfg, seed=1, variant=variant)
    bound = result_packets(run) * in_order_timing(cfg).chiplet_output_flits
    assert predict_cycles(run, in_order=False) >= bound   # the engine alone
    assert predict_cycles(run) >= bound
    without_port(monkeypatch)
    assert predict_cycles(run) < 0.6 * bound


@pytest.mark.parametrize("name", ["tiny", "wafer4x4"])
def test_the_compute_bound_presets_do_not_wait_for_the_port(name, monkeypatch):
    """On the presets the chiplets' compute spaces the results out: the port never delays one, and the
    prediction the co-simulation is compared with is the one without it."""
    runs = [build_run(load_config(name), seed=1, variant=v) for v in ("baseline", "A", "B", "C")]
    with_port = [predict_cycles(r) for r in runs]
    without_port(monkeypatch)
    assert with_port == [predict_cycles(r) for r in runs]
