"""``mozart clean``: remove the Verilator build cache and say how much space it frees.

The cache is :func:`mozart.sim.build.build_root` (``$MOZART_BUILD_DIR``, default ``./.mozart-build``): one
folder per block, holding a folder per (config, waves) build and its lock files. ``mozart clean`` removes only
what has that shape, so a ``MOZART_BUILD_DIR`` pointed at the wrong folder by mistake loses nothing: any other
entry makes it refuse (exit 2) before deleting anything. Later runs rebuild what they need.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mozart.model.errors import MozartError
from mozart.sim.designs import DESIGNS


def register(sub) -> None:
    parser = sub.add_parser("clean", help="remove the Verilator build cache and print the space freed",
                            description=__doc__.split("\n\n")[1])
    parser.add_argument("--dry-run", action="store_true", help="only print what would be removed and its size")
    parser.add_argument("blocks", nargs="*", metavar="BLOCK",
                        help="remove only these blocks' builds (default: all): " + ", ".join(sorted(DESIGNS)))
    parser.set_defaults(func=_clean)


def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if p.is_file() or p.is_symlink())


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _clean(args) -> int:
    from mozart.sim.build import build_root  # noqa: PLC0415

    root = build_root()
    for block in args.blocks:
        if block not in DESIGNS:
            raise MozartError(f"BLOCK must be one of {', '.join(sorted(DESIGNS))}, not {block!r}")
    if root.exists() and not root.is_dir():
        raise MozartError(f"the build folder (MOZART_BUILD_DIR) must be a folder, not the file {str(root)!r}")
    if not root.exists():
        print(f"{root}: no build cache, nothing to remove")
        return 0
    foreign = sorted(p.name for p in root.iterdir() if p.name not in DESIGNS)
    if foreign:
        raise MozartError(f"{root} must hold only mozart builds (folders named after blocks), not "
                          f"{', '.join(map(repr, foreign[:3]))}{' ...' if len(foreign) > 3 else ''}; "
                          "remove it by hand if it is yours to remove")
    targets = [root / b for b in (args.blocks or sorted(p.name for p in root.iterdir())) if (root / b).exists()]
    total = 0
    for target in targets:
        size = _size(target)
        total += size
        if not args.dry_run:
            shutil.rmtree(target)
        print(f"{'would remove' if args.dry_run else 'removed'} {target} ({_mb(size)})")
    if not args.dry_run and not args.blocks and not any(root.iterdir()):
        root.rmdir()
    print(f"{'would free' if args.dry_run else 'freed'} {_mb(total)}")
    return 0
