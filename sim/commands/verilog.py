"""``mozart verilog BLOCK --config PRESET -o DIR``: write a block's Verilog for a config."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from mozart.model.config import load_config
from mozart.model.hardware_rules import check_hardware
from mozart.sim.designs import DESIGNS, design

from ._common import check_output_folder
from .config import add_config_argument


def blocks_help() -> str:
    """The registered blocks, one per line, for ``--help`` epilogs."""
    width = max((len(n) for n in DESIGNS), default=0)
    return "blocks:\n" + "\n".join(f"  {name:{width}s}  {d.summary}" for name, d in sorted(DESIGNS.items()))


def register(sub) -> None:
    parser = sub.add_parser("verilog", help="write a block's Verilog for a config",
                            description="Write DIR/BLOCK.v: the block's Verilog for the config (Amaranth, no "
                            "source locations, so the text is stable; the file is rewritten only when it "
                            "changes). The top module's ports are the component's signature members joined "
                            "with '__' (i__valid, down__0__payload), plus clk and rst.",
                            epilog=blocks_help(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("block", metavar="BLOCK", help="one of: " + ", ".join(sorted(DESIGNS)))
    add_config_argument(parser)
    parser.add_argument("-o", "--out", default=".", metavar="DIR",
                        help="output folder, created if missing (default: .); DIR/BLOCK.v is rewritten when its "
                        "text changes")
    parser.set_defaults(func=_run)


def _run(args) -> int:
    from mozart.sim.build import write_verilog  # noqa: PLC0415 (imports Amaranth only when used)

    d = design(args.block)  # unknown block: MozartError -> one line, exit 2
    cfg = load_config(args.config)
    check_hardware(cfg)
    out = check_output_folder(args.out, "-o/--out")
    created = _missing_folders(out)
    start = time.perf_counter()
    try:
        path = write_verilog(d, cfg, out)
    except BaseException:
        for folder in created:  # deepest first; only the empty ones this run made
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    lines = path.read_text().count("\n")
    print(f"{path}: module {d.toplevel}, {lines} lines, config {cfg.name} ({time.perf_counter() - start:.1f} s)")
    return 0


def _missing_folders(path: Path) -> list[Path]:
    """The folders of ``path`` that do not exist yet, deepest first (what a failed run must remove again)."""
    missing = []
    path = path.absolute()
    while not path.exists():
        missing.append(path)
        path = path.parent
    return missing
