"""``mozart trace synth|stats|convert``: make, inspect and convert routing traces.

File formats, the generator's knobs and the metrics are documented in ``docs/traces.md`` and in
:mod:`mozart.model.trace_io`, :mod:`mozart.model.synth`, :mod:`mozart.model.metrics`.
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from mozart.model.config import load_config
from mozart.model.metrics import expected_distinct_chiplets, placement_metrics
from mozart.model.placement import Placement
from mozart.model.stats import activation_frequency, coactivation_counts, top_pairs
from mozart.model.synth import check_size, synthesize_for
from mozart.model.trace_io import check_output_path, load_trace_with_meta, save_trace

from ._common import (LayerProgress, add_out_argument, check_output_file, fraction, non_negative,
                      non_negative_float, positive)
from .config import add_config_argument


def _add_reader_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--top-k", type=positive, metavar="K",
                        help="top-k for router-logits input (default: --config's, else the file's top_k entry)")
    parser.add_argument("--renormalize", action="store_true",
                        help="router logits: divide the top-k gates by their sum (default: plain softmax "
                        "probabilities, as R(x) = topk(softmax(g(x)), k) reads)")
    parser.add_argument("--num-experts", type=positive, metavar="E",
                        help="experts per layer of a JSON Lines input (default: --config's, else its "
                        "num_experts field, else the largest id + 1)")


def register(sub) -> None:
    parser = sub.add_parser("trace", help="synthesise, inspect and convert MoE routing traces",
                            description="Routing traces: each token's top-k experts and gates per MoE layer. "
                            "Formats: the mozart .npz, JSON Lines (.jsonl) and raw router logits (.npy/.npz). "
                            "See docs/traces.md.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    actions.required = True

    synth = actions.add_parser("synth", help="generate a seeded synthetic trace for a config's MoE shape",
                               description="Generate a synthetic trace (skewed popularity, co-activation groups "
                               "of experts_per_chiplet experts, drift between steps) shaped like --config.")
    add_config_argument(synth, default=None)
    synth.add_argument("--tokens", type=positive, metavar="N",
                       help="tokens per layer (default: one training step, sequences x seq_len)")
    synth.add_argument("--seed", type=non_negative, default=0, metavar="S", help="random seed (default: 0)")
    synth.add_argument("--step", type=non_negative, default=0, metavar="STEP",
                       help="training step: the routing structure drifts slowly with it (default: 0)")
    synth.add_argument("--uniform", action="store_true", help="uniform random routing (no skew, no groups)")
    synth.add_argument("--coactivation", type=fraction, metavar="X",
                       help="grouping strength in [0, 1], 0 = independent (default: 0.4)")
    synth.add_argument("--skew", type=non_negative_float, metavar="X",
                       help="Zipf exponent of expert popularity, 0 = equal (default: 0.3)")
    add_out_argument(synth, required=True, help="output trace (.npz or .jsonl); its folder is created if missing")
    synth.set_defaults(func=_synth)

    stats = actions.add_parser("stats", help="print a trace's activation and co-activation statistics",
                               description="Print the activation frequency V, the most co-activated pairs and, "
                               "with --config, C_T of the contiguous layout with de-duplication.")
    stats.add_argument("file", metavar="FILE", help="trace file (.npz, .jsonl, .npy)")
    stats.add_argument("--config", metavar="PRESET|FILE",
                       help="also print C_T of the contiguous layout on this config (preset name or TOML file)")
    stats.add_argument("--pairs", type=positive, default=10, metavar="N",
                       help="co-activated pairs to list (default: 10)")
    _add_reader_options(stats)
    stats.set_defaults(func=_stats)

    convert = actions.add_parser("convert", help="convert a trace between formats",
                                 description="Convert JSON Lines or router logits to the mozart .npz, or .npz "
                                 "to JSON Lines; the output format follows the output file's suffix.")
    convert.add_argument("input", metavar="IN", help="input trace (.npz, .jsonl, .npy)")
    add_out_argument(convert, required=True, help="output trace (.npz or .jsonl); its folder is created if missing")
    convert.add_argument("--config", metavar="PRESET|FILE",
                         help="take --top-k and --num-experts from a config (and check the trace fits it)")
    _add_reader_options(convert)
    convert.set_defaults(func=_convert)


def _load(path: str, args, cfg=None):
    """Read a trace with the reader options of ``args``, falling back on the config's shape."""
    progress = LayerProgress(f"reading {path}", "B")
    top_k = args.top_k if args.top_k is not None else (cfg.moe.top_k if cfg else None)
    num_experts = args.num_experts if args.num_experts is not None else (cfg.moe.experts if cfg else None)
    try:
        return load_trace_with_meta(path, num_experts=num_experts, top_k=top_k, renormalize=args.renormalize,
                                    progress=progress)
    finally:
        progress.close()


def _synth(args) -> int:
    cfg = load_config(args.config)
    check_output_path(args.out)
    check_output_file(args.out, "-o/--out", force=args.force)
    tokens = args.tokens or cfg.training.tokens_per_step
    check_size(cfg.moe.layers, tokens, cfg.moe.top_k)
    knobs = {name: getattr(args, name) for name in ("coactivation", "skew") if getattr(args, name) is not None}
    progress = LayerProgress("synthesising", "layer")
    try:
        trace = synthesize_for(cfg, tokens, args.seed, structured=not args.uniform, step=args.step,
                               progress=progress, **knobs)
    finally:
        progress.close()
    save_trace(trace, args.out, meta={"generator": trace.source, "config": cfg.name})
    print(f"wrote {args.out}: {trace.layers} layers x {trace.tokens} tokens, top-{trace.top_k} of "
          f"{trace.num_experts} experts")
    return 0


def _stats(args) -> int:
    cfg = load_config(args.config) if args.config else None
    trace, info = _load(args.file, args, cfg)
    if cfg:
        trace.check_fits(cfg)
    ids = info["layer_ids"]
    print(f"{args.file}: {trace.layers} layers x {trace.tokens} tokens, top-{trace.top_k} of {trace.num_experts} "
          f"experts ({info['format']})")
    print(f"source: {info['origin']}")
    if trace.tokens == 0:
        print("no tokens: nothing to count")
        return 0
    e = trace.num_experts
    progress = LayerProgress("counting co-activations", "layer")
    freq, counts = [], []
    for layer in range(trace.layers):
        freq.append(activation_frequency(trace, layer))
        counts.append(coactivation_counts(trace, layer))
        progress(layer + 1, trace.layers)
    progress.close()
    v = np.array(freq)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0 log 0 = 0
        plogp = np.where(v > 0, v * np.log(v), 0.0)
    entropy = -plogp.sum(axis=1) / math.log(e) if e > 1 else np.ones(trace.layers)  # 1 = perfectly even
    print("activation frequency V (per layer, mean over layers): "
          f"max/mean {(v.max(axis=1) * e).mean():.2f}, min/mean {(v.min(axis=1) * e).mean():.2f}, "
          f"normalised entropy {entropy.mean():.3f}, experts never chosen {(v == 0).sum(axis=1).mean():.1f}")
    busiest = int(np.argmax(v.max(axis=1)))
    top = np.argsort(-v[busiest], kind="stable")[:5]
    print(f"  most popular, layer {ids[busiest]}: " + ", ".join(f"{i} ({100 * v[busiest, i]:.1f}%)" for i in top))
    if trace.top_k > 1:
        pairs_per_layer = trace.tokens * trace.top_k * (trace.top_k - 1) // 2
        best = sorted(((c, layer, i, j) for layer, C in enumerate(counts) for i, j, c in top_pairs(C, args.pairs)),
                      key=lambda t: (-t[0], t[1], t[2], t[3]))[:args.pairs]
        print(f"top co-activated pairs (C_ij; share of the layer's {pairs_per_layer} pairs; uniform: "
              f"{100 / (e * (e - 1) / 2):.3f}%):")
        for c, layer, i, j in best:
            print(f"  layer {ids[layer]:>3}  experts {i:>4} {j:>4}  {c:>9}  {100 * c / pairs_per_layer:.3f}%")
    if cfg:
        contiguous = Placement(np.arange(e, dtype=np.int32) // cfg.experts_per_chiplet, cfg.chiplets_per_group,
                               "contiguous")
        m = placement_metrics(trace, contiguous, cfg)
        print(f"contiguous layout on {cfg.name} ({cfg.chiplets} chiplets in {cfg.groups} groups), de-duplicated:")
        print(f"  C_T {m.c_t:.3f} (k = {trace.top_k} without de-duplication; uniform routing would give "
              f"{expected_distinct_chiplets(e, trace.top_k, cfg.chiplets):.3f})")
        print(f"  root-link replicas {m.root_replicas:.3f}, chiplet imbalance {m.chiplet_imbalance:.3f}, group "
              f"imbalance {m.group_imbalance:.3f}")
        print(f"  co-activated pairs split across chiplets {100 * m.cross_chiplet_fraction:.1f}%, across groups "
              f"{100 * m.cross_group_fraction:.1f}%")
    return 0


def _convert(args) -> int:
    cfg = load_config(args.config) if args.config else None
    check_output_path(args.out)
    check_output_file(args.out, "-o/--out", force=args.force)
    trace, info = _load(args.input, args, cfg)
    if cfg:
        trace.check_fits(cfg)
    progress = LayerProgress(f"writing {args.out}", "layer")
    try:
        save_trace(trace, args.out, layer_ids=info["layer_ids"], meta=info["meta"], progress=progress)
    finally:
        progress.close()
    print(f"wrote {args.out}: {trace.layers} layers x {trace.tokens} tokens, top-{trace.top_k} of "
          f"{trace.num_experts} experts (from {info['format']})")
    return 0
