"""Placement benchmark: prints numbers, asserts nothing about time.

(a) the comparison table (every method) on structured synthetic traces of the paper's three model shapes;
(b) the mean gap of every method to the exact C_T optimum on 20 seeded small structured instances
    (16 experts on 4 chiplets, top-2 and top-4); target: refinement within 2 % on average;
(c) wall time of Algorithm 1 + allocation + refinement for one layer of 128 experts on 16 chiplets
    (target < 1 s);
(d) wall time of ``mozart compare`` on a 48-layer Qwen3-shaped trace of 64k tokens (target < 60 s).

Run: ``python bench/bench_placement.py`` (``--help`` for sizes). C_T in (a) and (b) is measured on the tokens
the methods placed (as ``mozart compare`` does); (a) also prints the held-out C_T of each method, measured on
a second half of tokens the methods did not see.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mozart.model.config import load_config, override
from mozart.model.metrics import layer_c_t
from mozart.model.placers import PLACERS, LayerData, place_layer
from mozart.model.placers.allocation import clusters_to_chiplets
from mozart.model.placers.clustering import cluster_experts
from mozart.model.placers.refine import refine_clusters
from mozart.model.synth import synthesize, synthesize_for
from mozart.model.trace import Trace
from mozart.sim.commands.compare import compare, default_methods, format_table

SHAPES = ("qwen3-30b-a3b", "olmoe-1b-7b", "deepseek-moe-16b")


def table_on_paper_shapes(tokens: int, layers: int | None) -> None:
    print(f"(a) every method on structured synthetic traces ({tokens} tokens to place + {tokens} held out)")
    for name in SHAPES:
        cfg = load_config(name)
        if layers:
            cfg = override(cfg, {"moe.layers": layers})
        both = synthesize_for(cfg, 2 * tokens, seed=0)
        fit = Trace(both.experts[:, :tokens], both.weights[:, :tokens], both.num_experts, both.source)
        held = both.experts[:, tokens:]
        results, stats_s = compare(fit, cfg, default_methods(cfg))
        print(f"\n{name}: {cfg.moe.layers} layers, {cfg.moe.experts} experts top-{cfg.moe.top_k}, "
              f"statistics {stats_s:.2f} s")
        print(format_table(results))
        def held_out_c_t(p) -> float:
            return float(np.mean([layer_c_t(held[layer], p.expert_to_chiplet[layer]) for layer in range(fit.layers)]))
        print("held-out C_T: " + ", ".join(f"{r.method} {held_out_c_t(r.placement):.3f}" for r in results))


def gaps_to_exact(instances: int, tokens: int) -> None:
    print(f"\n(b) mean gap to the exact optimum, {instances} seeded structured instances of 16 experts on "
          f"4 chiplets, {tokens} tokens each (in-sample, as the optimum is)")
    methods = [m for m in PLACERS if m != "exact"]
    for coactivation in (0.4, 0.1):  # the generator's default strength, and a weak structure
        for top_k in (2, 4):
            cfg = override(load_config("wafer4x4"), {"tree.groups": 2, "tree.chiplets_per_group": 2,
                                                     "moe.top_k": top_k})
            gaps = {m: [] for m in methods}
            for seed in range(instances):
                trace = synthesize(16, top_k, 1, tokens, seed=seed, groups_of=4, coactivation=coactivation)
                data = LayerData(trace, 0)
                best = layer_c_t(data.experts, place_layer(data, cfg, "exact"))
                for m in methods:
                    gaps[m].append(layer_c_t(data.experts, place_layer(data, cfg, m, seed=seed)) / best - 1)
            label = f"co-activation {coactivation}, top-{top_k}"
            print(f"  {label}: " + ", ".join(f"{m} {100 * np.mean(g):.2f} % (max {100 * np.max(g):.2f})"
                                             for m, g in gaps.items()))
            refine = 100 * np.mean(gaps["mozart+refine"])
            print(f"  {label}: mozart+refine mean gap {refine:.2f} %: "
                  + ("target (<= 2 %) met" if refine <= 2 else "TARGET (<= 2 %) NOT MET"))


def one_layer_time(tokens_list: list[int], repeats: int) -> None:
    print(f"\n(c) Algorithm 1 + allocation + refinement, one layer of 128 experts on 16 chiplets "
          f"(median of {repeats}; statistics V, C computed before timing, shown separately)")
    cfg = load_config("qwen3-30b-a3b")
    for tokens in tokens_list:
        trace = synthesize_for(override(cfg, {"moe.layers": 1}), tokens, seed=1)
        stats_t, alg_t, cpu_t = [], [], []
        for _ in range(repeats):
            data = LayerData(trace, 0)
            t0 = time.perf_counter()
            coact, freq = data.coactivation, data.frequency
            t1, c1 = time.perf_counter(), time.process_time()
            labels = refine_clusters(data.experts, cluster_experts(coact, cfg.chiplets), cfg.chiplets)
            clusters_to_chiplets(labels, freq, cfg)
            t2, c2 = time.perf_counter(), time.process_time()
            stats_t.append(t1 - t0)
            alg_t.append(t2 - t1)
            cpu_t.append(c2 - c1)
        alg, st, cpu = statistics.median(alg_t), statistics.median(stats_t), statistics.median(cpu_t)
        print(f"  {tokens:6d} tokens: {alg:.3f} s wall, {cpu:.3f} s CPU (+ {st:.3f} s statistics) "
              + ("target (< 1 s) met" if alg + st < 1 else "TARGET (< 1 s) NOT MET"))


def compare_time(tokens: int, layers: int) -> None:
    from mozart.model.trace_io import save_trace  # noqa: PLC0415

    print(f"\n(d) `mozart compare` on a {layers}-layer Qwen3-shaped trace of {tokens} tokens (wall time of the "
          f"whole command in a fresh process; trace generation not included)")
    cfg = override(load_config("qwen3-30b-a3b"), {"moe.layers": layers})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "qwen3.npz"
        save_trace(synthesize_for(cfg, tokens, seed=2), path)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "mozart.sim", "compare", "--config", "qwen3-30b-a3b",
                              "--trace", str(path)], capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if out.returncode:
        print(f"  failed (exit {out.returncode}): {out.stderr.strip()}")
        return
    print("  " + out.stdout.strip().replace("\n", "\n  "))
    print(f"  wall time {wall:.1f} s, CPU time {cpu:.1f} s (wall exceeds CPU when other processes share the cores; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores): "
          + ("target (< 60 s) met" if wall < 60 else "TARGET (< 60 s) NOT MET"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=8192, help="tokens per layer for (a) (default: one step)")
    parser.add_argument("--layers", type=int, help="layers per model for (a) (default: the model's)")
    parser.add_argument("--instances", type=int, default=20, help="small instances for (b) (default: 20)")
    parser.add_argument("--small-tokens", type=int, default=2000, help="tokens per small instance (default: 2000)")
    parser.add_argument("--skip", default="", help="parts to skip, e.g. 'a,d'")
    args = parser.parse_args()
    skip = set(args.skip.split(","))
    if "a" not in skip:
        table_on_paper_shapes(args.tokens, args.layers)
    if "b" not in skip:
        gaps_to_exact(args.instances, args.small_tokens)
    if "c" not in skip:
        one_layer_time([8192, 65536], repeats=5)
    if "d" not in skip:
        compare_time(65536, 48)


if __name__ == "__main__":
    main()
