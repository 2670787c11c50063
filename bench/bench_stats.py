"""Benchmark: routing statistics, placement metrics and synthetic-trace generation speed (acceptance 4, first item).

Run ``python3 bench/bench_stats.py``. Prints measured numbers; asserts nothing (speed is never a test). Each
figure is the best of ``--repeat`` runs, in wall-clock and in CPU time of this process: on a shared machine
the CPU time is the fairer one-core figure. BLAS threads are pinned to one before numpy loads (the statistics
do not use BLAS, but nothing here may borrow a second core).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from mozart.model.config import load_config  # noqa: E402
from mozart.model.metrics import placement_metrics  # noqa: E402
from mozart.model.placement import Placement  # noqa: E402
from mozart.model.stats import activation_frequency, coactivation_counts, coactivation_probability  # noqa: E402
from mozart.model.synth import SYNTH_PRESETS, synthesize_uniform  # noqa: E402


def _best(fn, repeat: int) -> tuple[float, float]:
    """Best (wall, cpu) seconds of ``repeat`` calls."""
    wall = cpu = float("inf")
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = min(wall, time.perf_counter() - w0), min(cpu, time.process_time() - c0)
    return wall, cpu


def _rate(count: float, seconds: float) -> str:
    return f"{count / seconds / 1e6:8.2f} M/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=1_000_000, help="tokens for the statistics (default 1M)")
    parser.add_argument("--synth-tokens", type=int, default=65_536, help="tokens per layer for the generator")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best counts (default 3)")
    args = parser.parse_args()

    cfg = load_config("qwen3-30b-a3b")
    e, k = cfg.moe.experts, cfg.moe.top_k
    print(f"statistics: {args.tokens} tokens, top-{k} over {e} experts, one layer, one core")
    trace = synthesize_uniform(e, k, 1, args.tokens, seed=0)

    wall, cpu = _best(lambda: coactivation_counts(trace, 0), args.repeat)
    print(f"  co-activation C        {wall:7.3f} s wall {_rate(args.tokens, wall)} tokens | {cpu:7.3f} s cpu "
          f"{_rate(args.tokens, cpu)} tokens   (target >= 1 M tokens/s)")

    def all_stats():
        activation_frequency(trace, 0)
        coactivation_probability(coactivation_counts(trace, 0))

    wall, cpu = _best(all_stats, args.repeat)
    print(f"  V + C + P              {wall:7.3f} s wall {_rate(args.tokens, wall)} tokens | {cpu:7.3f} s cpu "
          f"{_rate(args.tokens, cpu)} tokens")

    contiguous = Placement(np.arange(e) // cfg.experts_per_chiplet, cfg.chiplets_per_group)
    wall, cpu = _best(lambda: placement_metrics(trace, contiguous, cfg), args.repeat)
    print(f"  placement metrics      {wall:7.3f} s wall {_rate(args.tokens, wall)} tokens | {cpu:7.3f} s cpu "
          f"{_rate(args.tokens, cpu)} tokens")

    print(f"synthetic generation: {args.synth_tokens} tokens per layer, structured presets")
    for name, spec in SYNTH_PRESETS.items():
        wall, cpu = _best(lambda: spec.synthesize(args.synth_tokens, seed=1), args.repeat)
        rows = args.synth_tokens * spec.layers
        print(f"  {name:17s} {spec.layers:3d} layers {wall:7.3f} s wall {_rate(rows, wall)} token-layers | "
              f"{cpu:7.3f} s cpu {_rate(rows, cpu)} token-layers")


if __name__ == "__main__":
    main()
