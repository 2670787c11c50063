"""Text tables of a sweep: Table 4 next to the paper, sensitivity studies, tree against mesh, and the trends.

Every function takes the :class:`~mozart.model.perf.evaluation.Cell` list of
:func:`~mozart.model.perf.evaluation.run_sweep` and returns lines of text.
"""

from __future__ import annotations

from .evaluation import PAPER_SEQ, PAPER_TABLE4, VARIANT_LABELS, Cell

__all__ = ["table4", "sequence_table", "dram_table", "mesh_table", "trends", "lookup"]


def lookup(cells: list[Cell], model: str, variant: str, seq_len: int = 256, dram: str = "hbm2",
           network: str = "tree") -> Cell | None:
    for c in cells:
        if (c.model, c.variant, c.seq_len, c.dram, c.network) == (model, variant, seq_len, dram, network):
            return c
    return None


def _models(cells: list[Cell]) -> list[str]:
    return list(dict.fromkeys(c.model for c in cells))


def _dev(ours: float, paper: float | None) -> str:
    if paper is None:
        return "-"
    return f"{ours - paper:+.3f} ({100 * (ours - paper) / paper:+.0f}%)"


def table4(cells: list[Cell]) -> list[str]:
    """Table 4 (sequence length 256, HBM2, NoP-Tree) with the paper's numbers and the deviation per cell."""
    lines = ["Table 4: step latency normalised to the Baseline, and C_T (seq 256, HBM2, NoP-Tree)",
             f"{'model':18s} {'config':8s} {'step s':>8s} {'norm':>6s} {'paper':>6s} {'deviation':>15s}   "
             f"{'C_T':>5s} {'paper':>6s} {'deviation':>15s}  {'replicas/token':>14s}"]
    for model in _models(cells):
        base = lookup(cells, model, "baseline")
        if base is None:
            continue
        paper = PAPER_TABLE4.get(model)
        for i, variant in enumerate(VARIANT_LABELS):
            cell = lookup(cells, model, variant)
            norm = cell.seconds / base.seconds
            p_lat = 1.0 if variant == "baseline" else (paper["latency"][i - 1] if paper else None)
            p_ct = (paper["c_t"][0] if variant == "baseline" else paper["c_t"][i - 1]) if paper else None
            lines.append(f"{model if i == 0 else '':18s} {VARIANT_LABELS[variant]:8s} {cell.seconds:8.4f} "
                         f"{norm:6.3f} {_fmt(p_lat):>6s} {_dev(norm, p_lat):>15s}   {cell.c_t:5.2f} {_fmt(p_ct):>6s} "
                         f"{_dev(cell.c_t, p_ct):>15s}  {cell.replicas_per_token:14.2f}")
        speedup = base.seconds / lookup(cells, model, "C").seconds
        p_sp = paper["speedup"] if paper else None
        lines.append(f"{'':18s} {'speedup of C':21s} {speedup:6.2f}x {_fmt(p_sp):>5s}x {_dev(speedup, p_sp):>15s}")
    return lines


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def sequence_table(cells: list[Cell]) -> list[str]:
    """Step seconds per sequence length (HBM2, tree) and the speedup of C; the paper's Qwen3 numbers."""
    seqs = sorted({c.seq_len for c in cells})
    lines = ["Sensitivity to sequence length (HBM2, NoP-Tree): step seconds, speedup of C over the Baseline",
             f"{'model':18s} {'seq':>4s} " + " ".join(f"{VARIANT_LABELS[v]:>9s}" for v in VARIANT_LABELS)
             + f" {'speedup':>8s}   paper (Baseline s, speedup)"]
    for model in _models(cells):
        for seq in seqs:
            row = [lookup(cells, model, v, seq) for v in VARIANT_LABELS]
            if any(c is None for c in row):
                continue
            paper = PAPER_SEQ.get(seq) if model == "qwen3-30b-a3b" else None
            ref = "" if paper is None else f"   {_fmt(paper[0])}, {paper[1]}x"
            lines.append(f"{model:18s} {seq:4d} " + " ".join(f"{c.seconds:9.4f}" for c in row)
                         + f" {row[0].seconds / row[-1].seconds:7.2f}x{ref}")
    return lines


def dram_table(cells: list[Cell]) -> list[str]:
    """HBM2 against SSD at sequence length 256: seconds, slow-down, and the speedup of C on each."""
    lines = ["HBM2 (256 GB/s) against SSD (15.8 GB/s), seq 256, NoP-Tree: step seconds",
             f"{'model':18s} {'config':8s} {'HBM2':>9s} {'SSD':>9s} {'SSD/HBM2':>9s}"]
    for model in _models(cells):
        for variant in VARIANT_LABELS:
            hbm, ssd = lookup(cells, model, variant), lookup(cells, model, variant, dram="ssd")
            if hbm is None or ssd is None:
                continue
            lines.append(f"{model if variant == 'baseline' else '':18s} {VARIANT_LABELS[variant]:8s} "
                         f"{hbm.seconds:9.4f} {ssd.seconds:9.4f} {ssd.seconds / hbm.seconds:8.2f}x")
        gains = [_speedup(cells, model, d) for d in ("hbm2", "ssd")]
        if None not in gains:
            lines.append(f"{'':18s} speedup of C: HBM2 {gains[0]:.2f}x, SSD {gains[1]:.2f}x")
    return lines


def _speedup(cells: list[Cell], model: str, dram: str, seq_len: int = 256, network: str = "tree") -> float | None:
    base = lookup(cells, model, "baseline", seq_len, dram, network)
    full = lookup(cells, model, "C", seq_len, dram, network)
    return None if base is None or full is None else base.seconds / full.seconds


def mesh_table(cells: list[Cell]) -> list[str]:
    """The NoP-Tree against a 2D mesh of equal link budget (seq 256, HBM2)."""
    lines = ["NoP-Tree against a 2D mesh with the same wire budget and DRAMs (seq 256, HBM2): step seconds",
             f"{'model':18s} {'config':8s} {'tree':>9s} {'mesh':>9s} {'mesh/tree':>9s}"]
    for model in _models(cells):
        for variant in VARIANT_LABELS:
            tree, mesh = lookup(cells, model, variant), lookup(cells, model, variant, network="mesh")
            if tree is None or mesh is None:
                continue
            lines.append(f"{model if variant == 'baseline' else '':18s} {VARIANT_LABELS[variant]:8s} "
                         f"{tree.seconds:9.4f} {mesh.seconds:9.4f} {mesh.seconds / tree.seconds:8.2f}x")
    return lines


def trends(cells: list[Cell]) -> list[tuple[str, bool, str]]:
    """The paper's qualitative claims checked on the sweep: (claim, holds, detail) per model and claim."""
    out = []
    seqs = sorted({c.seq_len for c in cells})
    for model in _models(cells):
        lat = [lookup(cells, model, v) for v in VARIANT_LABELS]
        if None not in lat:
            ok = all(a.seconds > b.seconds for a, b in zip(lat, lat[1:]))
            out.append((f"{model}: Baseline > A > B > C", ok, " > ".join(f"{c.seconds:.4f}" for c in lat)))
        for variant in VARIANT_LABELS:
            row = [lookup(cells, model, variant, s) for s in seqs]
            if len(row) > 1 and None not in row:
                ok = all(a.seconds < b.seconds for a, b in zip(row, row[1:]))
                out.append((f"{model} {VARIANT_LABELS[variant]}: latency grows with sequence length", ok,
                            " < ".join(f"{c.seconds:.4f}" for c in row)))
            for seq in seqs:
                hbm, ssd = lookup(cells, model, variant, seq), lookup(cells, model, variant, seq, "ssd")
                if hbm and ssd:
                    out.append((f"{model} {VARIANT_LABELS[variant]} seq {seq}: SSD slower than HBM2",
                                ssd.seconds > hbm.seconds, f"{ssd.seconds:.4f} vs {hbm.seconds:.4f}"))
        for seq in seqs:
            hbm, ssd = _speedup(cells, model, "hbm2", seq), _speedup(cells, model, "ssd", seq)
            if hbm and ssd:
                out.append((f"{model} seq {seq}: Mozart's gain smaller on SSD", ssd < hbm,
                            f"speedup of C {ssd:.2f}x on SSD vs {hbm:.2f}x on HBM2"))
    return out
