"""The systolic compute model (model/perf/systolic.py) and its cross-check against SCALE-Sim."""

import dataclasses

import pytest

from mozart.model.perf.systolic import SystolicArrays, attention_gemms, expert_gemms

try:
    import scalesim  # noqa: F401
    HAVE_SCALESIM = True
except ImportError:
    HAVE_SCALESIM = False
needs_scalesim = pytest.mark.skipif(not HAVE_SCALESIM, reason="scalesim (the dev extra) is not importable here: "
                                    "pip install 'mozart-wafer[dev]' runs the SCALE-Sim cross-check")


def test_a_fold_pays_fill_skew_and_drain_once_per_fold():
    one = SystolicArrays(16, 16, 1)
    assert one.fold_cycles(0) == 16 + 15 + 15
    assert one.gemm_cycles(8, 16, 16) == 46 + 8
    assert one.gemm_cycles(8, 32, 48) == 6 * (46 + 8)     # 2 x 3 folds, one after another
    assert one.gemm_cycles(8, 17, 16) == 2 * (46 + 8)     # a partial fold costs a whole one


def test_tiling_over_arrays_and_few_tokens_run_below_peak():
    chiplet = SystolicArrays.square(256, 1024)
    # Qwen3's up-projection: 128 x 48 folds over 1024 arrays: 6 folds per array.
    assert chiplet.gemm_cycles(128, 2048, 768) == 6 * (46 + 128)
    # Fewer folds than arrays: each fold on 1024 // 64 = 16 arrays that split the 2048 streamed rows.
    assert chiplet.gemm_cycles(2048, 128, 128) == 46 + 2048 // 16
    peak = 8 * 3 * 2048 * 768 / chiplet.macs_per_cycle
    assert chiplet.cycles(expert_gemms(8, 2048, 768, 3, False)) > 5 * peak   # 8 tokens: fill and drain dominate
    big = chiplet.cycles(expert_gemms(4096, 2048, 768, 3, False))
    assert big < 1.02 * 4096 * 3 * 2048 * 768 / chiplet.macs_per_cycle     # many tokens: near peak


def test_expert_and_attention_gemms_count_the_macs():
    gemms = expert_gemms(10, 64, 32, 3, backward=False)
    assert sum(m * k * n * c for m, k, n, c in gemms) == 10 * 3 * 64 * 32
    back = expert_gemms(10, 64, 32, 3, backward=True)
    assert sum(m * k * n * c for m, k, n, c in back) == 2 * 10 * 3 * 64 * 32
    att = attention_gemms(512, 256, 2048, 4096, 512, 128, 0, backward=False)
    macs = sum(m * k * n * c for m, k, n, c in att)
    assert macs == 512 * 2048 * (2 * 4096 + 2 * 512) + 2 * 2 * 32 * 256 * 128 * 256
    assert expert_gemms(0, 64, 32, 3, False) == []


def test_bad_array_shapes_are_refused():
    with pytest.raises(ValueError, match="pes_per_array must be a square number"):
        SystolicArrays.square(300, 4)
    with pytest.raises(ValueError, match="systolic arrays must be a positive integer, not 0"):
        SystolicArrays(16, 16, 0)


@needs_scalesim
def test_scalesim_agrees_on_whole_gemms_on_one_array():
    from mozart.model.perf.scalesim_check import scalesim_cycles
    for m, k, n, rows, cols in [(8, 40, 20, 16, 16), (100, 64, 48, 16, 16), (5, 64, 48, 8, 4), (1, 16, 16, 16, 16)]:
        ours = SystolicArrays(rows, cols, 1).gemm_cycles(m, k, n)
        assert abs(ours - scalesim_cycles(m, k, n, rows, cols)) <= 0.10 * ours


@needs_scalesim
def test_scalesim_crosscheck_of_a_small_expert_within_10_percent():
    from mozart.model.perf.scalesim_check import crosscheck
    rows = crosscheck({"small": (256, 96, 3)}, (4, 64), SystolicArrays(16, 16, 8))
    assert len(rows) == 2 * (2 + 4) and all(abs(r.error) <= 0.10 for r in rows), [(r.gemm, r.ours,
                                                                                   r.scalesim) for r in rows]


@needs_scalesim
def test_mutant_without_fill_and_drain_fails_the_crosscheck():
    from mozart.model.perf.scalesim_check import scalesim_cycles

    @dataclasses.dataclass(frozen=True)
    class PeakOnly(SystolicArrays):  # the pre-issue-19 model: MACs at peak rate, no fill or drain
        @property
        def fill_drain_cycles(self) -> int:
            return 0

    ours = PeakOnly(16, 16, 1).gemm_cycles(8, 64, 48)
    assert abs(ours - scalesim_cycles(8, 64, 48, 16, 16)) > 0.10 * scalesim_cycles(8, 64, 48, 16, 16)


def test_full_size_attention_and_experts_run_on_the_arrays_and_the_scaled_timing_keeps_its_formula():
    from mozart.model.config import load_config
    from mozart.model.perf import HardwareTiming, Workload, load_params

    params = load_params("qwen3-30b-a3b")
    cfg = load_config(params.config)
    timing, workload = HardwareTiming.full_size(params, cfg), Workload.full_size(params, cfg)
    assert timing.root_arrays == SystolicArrays(16, 16, 64 * 16) == timing.expert_arrays
    tokens = cfg.training.tokens_per_micro_batch
    peak = tokens * workload.root_macs_per_token(False) / timing.root_macs_per_cycle
    assert timing.attention_cycles(tokens, workload, False) > peak  # fill, drain and full score blocks
    # A dispatch is at least its experts' systolic GEMMs, one after another, and at least the SRAM bound.
    one = timing.dispatch_cycles([128], 128, 128, workload, False)
    two = timing.dispatch_cycles([128, 128], 256, 256, workload, False)
    assert one >= timing.expert_arrays.cycles(expert_gemms(128, 2048, 768, 3, False))
    assert two == pytest.approx(2 * one)
    scaled = HardwareTiming.scaled(load_config("tiny"))
    small = Workload.scaled(load_config("tiny"))
    assert scaled.expert_arrays is None and scaled.dispatch_cycles([3, 5], 8, 6, small, False) == \
        scaled.chiplet_cycles(8, 6, 2, small.expert_macs_per_pair(False),
                              small.expert_weight_elements * scaled.weight_bytes)
