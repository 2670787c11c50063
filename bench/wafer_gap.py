"""Where the model-vs-RTL cycle gap of the wafer comes from (``docs/wafer.md`` §7 has the numbers).

Runs one layer per variant on the RTL with ``timeline=True`` (the testbench records when each host command
and each output was taken) and prints, next to the RTL's cycles:

- ``engine``: the event engine alone (unbounded queues, each command when its own dependencies are met);
- ``in-order, unbounded``: the root's in-order replay of the host program with buffers too large to fill;
- ``+ chiplet buffer``: the chiplets' ``token_slots`` entries; ``+ queues, table``: also the root's queue
  per group and the switches' reduction tables (the replay ``predict_cycles`` uses);
- the first TOKEN's acceptance in the RTL, and the RTL's last TOKEN against its last output.

Run: ``python bench/wafer_gap.py [--config tiny] [--seed 1] [--variant A ...]``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="tiny")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--variant", action="append", help="default: baseline, A, B, C")
    args = parser.parse_args()
    from mozart.model.perf.rtl import in_order_timing, predict_cycles, rtl_timing  # noqa: PLC0415
    from mozart.model.config import load_config  # noqa: PLC0415
    from mozart.model.host import HostOp  # noqa: PLC0415
    from mozart.model.perf.engine import Engine  # noqa: PLC0415
    from mozart.model.perf.inorder import in_order_cycles  # noqa: PLC0415
    from mozart.model.perf.network import make_network  # noqa: PLC0415
    from mozart.model.perf.workload import Workload  # noqa: PLC0415
    from mozart.model.schedule import Load  # noqa: PLC0415
    from mozart.model.wafer_run import build_run  # noqa: PLC0415
    from mozart.sim import wafer  # noqa: PLC0415

    cfg = load_config(args.config)
    big = 10 ** 9
    print(f"{args.config}, seed {args.seed}, {args.tokens} tokens")
    print("variant   RTL cycles  engine  in-order unbounded  + chiplet buffer  + queues, table  first TOKEN  "
          "last TOKEN / last output")
    for variant in args.variant or ["baseline", "A", "B", "C"]:
        r = wafer.run_layer(cfg, variant=variant, tokens=args.tokens, seed=args.seed, timeline=True)
        s = r.summary
        run = build_run(cfg, variant=variant, seed=args.seed, tokens=args.tokens)
        layer = run.layers[0]
        sch = layer.schedule
        timing = rtl_timing(cfg)
        eng = Engine(timing, make_network("tree", cfg, timing), Workload.scaled(cfg), "aggregate", record=True)
        eng.run(sch, "forward", layer.experts)
        loads: dict = {}
        for c in sch.of_kind(Load, "forward"):
            loads.setdefault((c.chiplet, c.slot), []).append(eng.command_times[c.id])
        t = in_order_timing(cfg)
        replay = {name: in_order_cycles(cfg, run.commands, layer.expert_to_chiplet, loads, tm) for name, tm in (
            ("free", replace(t, token_slots=big, queue_flits=big, reduction_entries=big)),
            ("chiplet", replace(t, queue_flits=big, reduction_entries=big)),
            ("all", t))}
        cc = s["command_cycles"]
        tokens = [i for i, c in enumerate(run.commands) if c.op is HostOp.TOKEN]
        rtl = s["cycles"]
        pct = lambda m: f"{m:7.0f} ({100 * (rtl - m) / m:+5.1f}%)"  # noqa: E731
        print(f"{variant:9s} {rtl:10d} {pct(eng.end)} {pct(replay['free'])} {pct(replay['chiplet'])} "
              f"{pct(replay['all'])} {cc[tokens[0]]:6d} {cc[tokens[-1]]:8d} / {s['output_cycles'][-1]}")
        assert abs(predict_cycles(run) - max(eng.end, replay["all"])) < 1e-6


if __name__ == "__main__":
    main()
