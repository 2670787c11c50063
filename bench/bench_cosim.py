"""Co-simulation speed of the fifo design: simulated cycles per second, and Verilator build times.

Prints numbers, asserts nothing (timing belongs in a benchmark, not in a test)::

    python bench/bench_cosim.py                      # cycles/s at the default build flags, cached build
    python bench/bench_cosim.py --packets 5000       # a longer run
    python bench/bench_cosim.py --compare-flags      # cold builds (no ccache) at -O0 vs Verilator's default -Os

Cycles/s is given two ways: wall time inside the cocotb test (the results XML), and cycles per CPU second of the
simulator process with its start-up cancelled out (robust when other jobs load the machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path

from mozart.model.config import load_config, override
from mozart.sim import build as build_module
from mozart.sim import cosim


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(built, packets: int, seed: int) -> tuple[dict, float, object]:
    cpu = _child_cpu()
    result = cosim.run(built, seed=seed, testcase="test_random_packets", extra_env={"MOZART_PACKETS": str(packets)})
    return result.summary["test_random_packets"], _child_cpu() - cpu, result


def measure(cfg, packets: int, seed: int) -> dict:
    """Cycles/s two ways: wall time inside the test, and CPU time of the simulator process with its start-up
    cancelled out (a short and a long run, differenced), which other load on the machine does not skew."""
    built = build_module.build("fifo", cfg)
    short, short_cpu, _ = _run(built, max(1, packets // 10), seed)
    summary, cpu, result = _run(built, packets, seed)
    return {"build_s": built.seconds, "rebuilt": built.rebuilt, "cycles": summary["cycles"],
            "flits": summary["flits"], "test_s": result.test_seconds, "process_s": result.seconds,
            "cycles_per_s": summary["cycles"] / max(result.test_seconds, 1e-9),
            "cycles_per_cpu_s": (summary["cycles"] - short["cycles"]) / max(cpu - short_cpu, 1e-9),
            "startup_cpu_s": short_cpu - short["cycles"] * (cpu - short_cpu) / max(summary["cycles"] - short["cycles"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--packets", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--compare-flags", action="store_true",
                        help="cold-build (ccache off) into a temporary root at -O0 and at -Os and compare")
    args = parser.parse_args()
    cfg = load_config(args.config)
    configs = {cfg.name: cfg, f"{cfg.name}+flit128": override(cfg, {"hardware.flit_bits": 128})}

    if not args.compare_flags:
        print(f"fifo co-simulation, {args.packets} random packets, 30% idle and backpressure, flags "
              f"{' '.join(build_module.BUILD_ARGS)}")
        for name, c in configs.items():
            m = measure(c, args.packets, args.seed)
            print(f"  {name:14s} {m['cycles']:7d} cycles: {m['cycles_per_s']:6.0f} cycles/s wall, "
                  f"{m['cycles_per_cpu_s']:6.0f} cycles/CPU-s; start-up {m['startup_cpu_s']:.1f} CPU-s; "
                  f"build {'built' if m['rebuilt'] else 'cached'} {m['build_s']:.1f} s")
        return

    default_args = build_module.BUILD_ARGS
    variants = {"-O0": default_args, "-Os (Verilator default)": tuple(
        a for a in default_args if a not in ("-CFLAGS", "-O0"))}
    os.environ["CCACHE_DISABLE"] = "1"  # measure the compiler, not the cache
    for label, flags in variants.items():
        with tempfile.TemporaryDirectory() as root:
            os.environ["MOZART_BUILD_DIR"] = root
            build_module.BUILD_ARGS = flags
            start = time.perf_counter()
            m = measure(cfg, args.packets, args.seed)
            print(f"  {label:24s} cold build {m['build_s']:5.1f} s, {m['cycles_per_cpu_s']:6.0f} cycles/CPU-s "
                  f"(total {time.perf_counter() - start:.1f} s)")
    build_module.BUILD_ARGS = default_args


if __name__ == "__main__":
    main()
