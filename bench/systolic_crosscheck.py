"""The systolic compute model against SCALE-Sim on the expert GEMMs of the three paper models (prints a table).

For each model, token count and phase, the sum over the expert's GEMMs (gate and up, down; backward: their input and
weight gradients) of our chiplet cycles
(``SystolicArrays.gemm_cycles`` on 64 tiles x 16 arrays of 16 x 16) and of SCALE-Sim's cycles for the busiest
array's part of each GEMM, and the largest per-GEMM error. Needs the ``dev`` extra (``scalesim``).

Usage: ``python bench/systolic_crosscheck.py`` (prints Markdown; docs/performance.md §3 has its output).
"""

from __future__ import annotations

from collections import defaultdict

from mozart.model.config import load_config
from mozart.model.perf import HardwareTiming, load_params, model_names
from mozart.model.perf.scalesim_check import crosscheck

TOKENS = (1, 8, 32, 128, 512)


def main() -> None:
    shapes, arrays = {}, None
    for model in model_names():
        params = load_params(model)
        cfg = load_config(params.config)
        shapes[model] = (cfg.moe.d_model, cfg.moe.d_ff, params.expert_matrices)
        arrays = HardwareTiming.full_size(params, cfg).expert_arrays
    rows = crosscheck(shapes, TOKENS, arrays)
    sums = defaultdict(lambda: [0, 0, 0.0])
    for r in rows:
        s = sums[r.model, r.tokens, r.phase]
        s[0] += r.count * r.ours
        s[1] += r.count * r.scalesim
        s[2] = max(s[2], abs(r.error))
    print(f"{arrays.arrays} arrays of {arrays.rows} x {arrays.cols}, weight stationary; {len(rows)} GEMMs\n")
    print("| model | tokens | phase | ours (cycles) | SCALE-Sim (cycles) | error | largest per-GEMM error |")
    print("|---|---|---|---|---|---|---|")
    for (model, tokens, phase), (ours, theirs, worst) in sums.items():
        print(f"| {model} | {tokens} | {phase} | {ours} | {theirs} | {100 * (ours / theirs - 1):+.1f}% | "
              f"{100 * worst:.1f}% |")


if __name__ == "__main__":
    main()
