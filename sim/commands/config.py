"""``mozart config list|show|check|regime``: the shipped presets, config validation and a config's regime."""

from __future__ import annotations

import argparse

from mozart.model.config import load_config, preset_names, preset_text, to_toml
from mozart.model.errors import ConfigError
from mozart.model.hardware_rules import check_hardware, hardware_problems
from mozart.model.perf.regime import format_regimes, regime
from mozart.model.perf.timing import DRAM_KINDS
from mozart.model.protocol import Protocol

from ._common import non_negative


def add_config_argument(parser: argparse.ArgumentParser, default: str | None = "tiny") -> None:
    """The ``--config`` option every command shares: a preset name or a TOML path."""
    parser.add_argument("--config", default=default, required=default is None, metavar="PRESET|FILE",
                        help=f"preset name ({', '.join(preset_names())}) or a TOML file"
                        + (f" (default: {default})" if default else ""))


def register(sub) -> None:
    parser = sub.add_parser("config", help="list, show and check wafer configs",
                            description="Wafer configs: presets ship with the package; copy one with "
                            "'mozart config show NAME > my.toml', edit it and pass --config my.toml.")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=type(parser))
    actions.required = True
    actions.add_parser("list", help="list the presets").set_defaults(func=_list)
    show = actions.add_parser("show", help="print a preset's TOML (or a file's, normalised)")
    show.add_argument("name", metavar="PRESET|FILE")
    show.set_defaults(func=_show)
    check = actions.add_parser("check", help="validate a config and print its derived widths",
                               description="Validate a config: every field, the rules spanning sections, the "
                               "protocol and deadlock check, and the hardware's own rules (what 'mozart "
                               "verilog' and 'mozart cosim' need). Exit 2 with one line naming the first "
                               "broken rule.")
    check.add_argument("name", metavar="PRESET|FILE")
    check.add_argument("--model-only", action="store_true",
                       help="skip the hardware's rules: the config is for the reference and performance models "
                       "only (like the full-size presets)")
    check.set_defaults(func=_check)
    regime = actions.add_parser("regime", help="which resource sets a layer's time: busy cycles over expert compute",
                                description="For each config, one forward layer's busy cycles per resource "
                                "(weight streaming, root links, the root's combine port, the root's token feed) "
                                "over one chiplet's expert compute, the weight rounds, tokens per expert per "
                                "micro-batch and the de-duplication saving; full-size models on the performance "
                                "model's timing, the others on the RTL blocks' (docs/regime.md).")
    regime.add_argument("names", nargs="+", metavar="PRESET|FILE")
    regime.add_argument("--dram", choices=DRAM_KINDS, default="hbm2", help="full-size models' DRAM (default: hbm2)")
    regime.add_argument("--layer", type=non_negative, default=0, metavar="L",
                        help="the layer (full-size models: beyond the HBM2 stack's capacity its weights come from "
                        "the SSD tier; default: 0)")
    regime.set_defaults(func=_regime)


def _list(args) -> int:
    for name in preset_names():
        print(f"{name:18s} {load_config(name).description}")
    return 0


def _show(args) -> int:
    print(preset_text(args.name) if args.name in preset_names() else to_toml(load_config(args.name)), end="")
    return 0


def _check(args) -> int:
    cfg = load_config(args.name)
    if not args.model_only:
        try:
            check_hardware(cfg)
        except ConfigError as exc:
            raise ConfigError(f"{exc}; for the models only, check with --model-only") from None
    proto = Protocol(cfg)
    rtl = hardware_problems(cfg)
    print(f"{cfg.name}: valid" + (" for the models (not buildable as RTL)" if rtl else ""))
    print(f"  tree      {cfg.groups} groups x {cfg.chiplets_per_group} chiplets, {proto.topology.num_nodes} nodes "
          f"({proto.node_bits}-bit ids), deadlock-free routing")
    print(f"  moe       {cfg.moe.experts} experts ({cfg.experts_per_chiplet} per chiplet), top-{cfg.moe.top_k}, "
          f"d_model {cfg.moe.d_model}, d_ff {cfg.moe.d_ff}, {cfg.moe.layers} layers")
    print(f"  protocol  {proto.header_bits}-bit header in {cfg.hardware.flit_bits}-bit flits; dispatch up to "
          f"{proto.max_dispatch_flits + 1} flits, combine {proto.partial_flits + 1}")
    print(f"  dram      {cfg.dram.bytes} bytes; weight images {proto.activation_base} words, "
          f"activations from word {proto.activation_base}")
    return 0


def _regime(args) -> int:
    configs = [load_config(name) for name in args.names]
    regimes = [regime(cfg, dram=args.dram, layer=args.layer) for cfg in configs]   # every check before printing
    print("\n".join(format_regimes(regimes)))
    return 0
