"""``mozart allocate``: place the experts of a routing trace on the wafer and write a placement file."""

from __future__ import annotations

import sys
import time

from mozart.model.config import load_config
from mozart.model.errors import PlacementError
from mozart.model.metrics import placement_metrics
from mozart.model.placement_io import save_ep_rank, save_placement
from mozart.model.placers import PLACERS, place

from ._common import LayerProgress, add_out_argument, check_output_file, non_negative, seed
from .config import add_config_argument


def add_trace_argument(parser) -> None:
    """The ``--trace`` option shared by ``allocate`` and ``compare``."""
    parser.add_argument("--trace", required=True, metavar="FILE",
                        help="routing trace (.npz, or any format 'mozart trace convert' reads)")


def register(sub) -> None:
    parser = sub.add_parser(
        "allocate", help="place experts on chiplets from a routing trace",
        description="Place every layer's experts on the wafer's chiplets (and so groups) with one method, "
        "and write the placement as JSON. Methods: " + "; ".join(f"{p.name}: {p.summary}" for p in PLACERS.values()))
    add_config_argument(parser, default=None)
    add_trace_argument(parser)
    parser.add_argument("--method", default="mozart+refine", choices=list(PLACERS), metavar="NAME",
                        help="placement method: " + ", ".join(PLACERS) + " (default: mozart+refine)")
    parser.add_argument("--seed", type=seed, default=0, help="seed of the random methods (default: 0)")
    add_out_argument(parser, required=True, help="placement JSON to write (its folder is created if missing)")
    parser.add_argument("--ep-rank", metavar="FILE",
                        help='also write {"expert_to_ep_rank": [...]} for serving frameworks')
    parser.add_argument("--ep-rank-layer", type=non_negative, metavar="L",
                        help="export only layer L as one flat list (default: a list per layer)")
    parser.set_defaults(func=_allocate)


def _allocate(args) -> int:
    from mozart.model.trace_io import load_trace  # noqa: PLC0415 (keeps 'mozart --help' fast)

    cfg = load_config(args.config)
    check_output_file(args.out, "-o/--out", force=args.force)
    if args.ep_rank:
        check_output_file(args.ep_rank, "--ep-rank", force=args.force)
    trace = load_trace(args.trace)
    trace.check_fits(cfg)
    if trace.tokens == 0:
        raise PlacementError(f"--trace must hold tokens to place experts by, not 0 tokens ({args.trace})")
    if args.ep_rank_layer is not None:
        if not args.ep_rank:
            raise PlacementError(f"--ep-rank-layer needs --ep-rank FILE, not only --ep-rank-layer {args.ep_rank_layer}")
        if not 0 <= args.ep_rank_layer < trace.layers:
            raise PlacementError(f"--ep-rank-layer must be in 0..{trace.layers - 1}, not {args.ep_rank_layer}")
    start = time.perf_counter()
    progress = LayerProgress("allocate")
    try:
        placement = place(trace, cfg, args.method, seed=args.seed, progress=progress)
    finally:
        progress.close()
    elapsed = time.perf_counter() - start
    m = placement_metrics(trace, placement, cfg)  # before writing: a failure leaves no file behind
    save_placement(placement, args.out, cfg)
    if args.ep_rank:
        save_ep_rank(placement, args.ep_rank, args.ep_rank_layer)
    print(f"{args.method}: {placement.layers} layers of {cfg.moe.experts} experts on {cfg.chiplets} chiplets "
          f"in {elapsed:.2f} s; C_T {m.c_t:.3f} (k = {trace.top_k}), root replicas {m.root_replicas:.3f}, "
          f"group imbalance {m.group_imbalance:.3f} -> {args.out}", file=sys.stdout)
    return 0
