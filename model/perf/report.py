"""Text tables of a sweep: Table 4 next to the paper, sensitivity studies, tree against mesh, and the checks.

:func:`checks` compares the sweep with the paper: orderings (the paper's qualitative claims) and magnitudes
(Table 4, the A/B/C decomposition, C_T, the SSD/HBM2 ratio, the sequence-length trend, absolute seconds),
each within a stated :class:`Band`. A check that fails is reported as failing; :func:`summary` counts them.

Every function takes the :class:`~mozart.model.perf.evaluation.Cell` list of
:func:`~mozart.model.perf.evaluation.run_sweep` and returns lines of text.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .evaluation import PAPER_SEQ, PAPER_SSD, PAPER_TABLE4, VARIANT_LABELS, Cell
from .energy import COMPONENTS
from .step import WEIGHT_READINGS
from .timing import DRAM_KINDS

__all__ = ["table4", "sequence_table", "dram_table", "mesh_table", "sections", "checks", "summary", "Check", "Band",
           "lookup", "readings", "of_reading", "capacity_table", "energy_table"]


def lookup(cells: list[Cell], model: str, variant: str, seq_len: int = 256, dram: str = "hbm2",
           network: str = "tree") -> Cell | None:
    """The cell of ``(model, variant, seq_len, dram, network)``, or None. ``cells`` must be of one reading
    (:func:`of_reading`): the same cell of two readings is two step times, and which came first in a sweep
    depends on its workers."""
    found = [c for c in cells
             if (c.model, c.variant, c.seq_len, c.dram, c.network) == (model, variant, seq_len, dram, network)]
    if len({c.reading for c in found}) > 1:
        raise ValueError(f"lookup needs the cells of one reading, not of {sorted({c.reading for c in found})}: "
                         f"select one with of_reading")
    return found[0] if found else None


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


def energy_table(cells: list[Cell]) -> list[str]:
    """Dynamic energy of one step by component (seq 256, NoP-Tree), per model, configuration and DRAM, then each
    model's chip area by component."""
    lines = ["Energy per step by component, J (seq 256, NoP-Tree; dynamic energy, model/perf/energy.py)",
             f"{'model':18s} {'config':8s} {'DRAM':5s} " + " ".join(f"{k:>8s}" for k in COMPONENTS) + f" {'total':>8s}"]
    for model in _models(cells):
        for dram in DRAM_KINDS:
            for variant in VARIANT_LABELS:
                cell = lookup(cells, model, variant, dram=dram)
                if cell is None or not cell.energy:
                    continue
                lines.append(f"{model:18s} {VARIANT_LABELS[variant]:8s} {dram:5s} "
                             + " ".join(f"{j:8.3f}" for j in cell.energy) + f" {sum(cell.energy):8.3f}")
    lines.append("Chip area per model's wafer (model/perf/area.py; the same for every configuration and DRAM):")
    lines += [f"  {model:18s} {_area(model).line()}" for model in _models(cells)]
    return lines


def _area(model: str):
    from ..config import load_config  # noqa: PLC0415
    from .area import config_area  # noqa: PLC0415
    from .parameters import load_params  # noqa: PLC0415
    params = load_params(model)
    return config_area(load_config(params.config), params)


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


# -- checks against the paper ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Band:
    """How far ours may be from the paper's and still hold. ``kind``: ``"abs"`` (``|ours - paper| <= width``),
    ``"rel"`` (``|ours / paper - 1| <= width``) or ``"factor"`` (``1 / width <= ours / paper <= width``).
    Set when the checks were written and never changed after a result (docs/performance.md §4)."""

    kind: str
    width: float

    def holds(self, ours: float, paper: float) -> bool:
        if self.kind == "abs":
            return abs(ours - paper) <= self.width
        ratio = ours / paper
        if self.kind == "rel":
            return abs(ratio - 1) <= self.width
        return 1 / self.width <= ratio <= self.width

    def __str__(self) -> str:
        return {"abs": f"±{self.width:g}", "rel": f"±{100 * self.width:g}%", "factor": f"x/÷{self.width:g}"}[self.kind]


#: The bands of the magnitude checks (docs/performance.md §4 says why each is as wide as it is).
NORM_LATENCY_BAND = Band("abs", 0.10)    # Table 4's normalised latency of A, B and C
SPEEDUP_BAND = Band("rel", 0.20)         # speedup of C over the Baseline
CUT_BAND = Band("factor", 1.5)           # the A/B/C decomposition: the share each step cuts
C_T_BAND = Band("abs", 0.5)              # distinct chiplets per token (our traces are synthetic)
SSD_RATIO_BAND = Band("factor", 1.5)     # SSD over HBM2 step time
SEQ_RATIO_BAND = Band("factor", 1.5)     # Baseline step at 512 over at 128
SECONDS_BAND = Band("factor", 2.0)       # absolute Baseline step seconds


@dataclass(frozen=True)
class Check:
    """One comparison with the paper: ``ours`` and ``paper`` are numbers (magnitude checks, with a ``band``)
    or text (orderings, ``band`` says which order)."""

    name: str
    ours: str
    paper: str
    band: str
    holds: bool

    def line(self) -> str:
        verdict = "holds" if self.holds else "FAILS"
        return f"{verdict:5s}  {self.name}: ours {self.ours}, paper {self.paper}, band {self.band}"


def _magnitude(name: str, ours: float, paper: float, band: Band) -> Check:
    return Check(name, f"{ours:.3g}", f"{paper:.3g}", str(band), band.holds(ours, paper))


def _order(name: str, values: list[float], ok: bool, paper: str, relation: str) -> Check:
    return Check(name, relation.join(f"{v:.4f}" for v in values), paper, "strict order", ok)


READING_TITLES = {"per-layer": "weights streamed once per layer per step (the micro-batches pass a layer together)",
                  "per-micro-batch": "weights streamed once per micro-batch (each micro-batch passes the whole model)"}


def readings(cells: list[Cell]) -> list[str]:
    """The readings of ``cells``, in :data:`~mozart.model.perf.step.WEIGHT_READINGS` order."""
    present = {c.reading for c in cells}
    return [r for r in WEIGHT_READINGS if r in present]


def of_reading(cells: list[Cell], reading: str) -> list[Cell]:
    return [c for c in cells if c.reading == reading]


def capacity_table(cells: list[Cell]) -> list[str]:
    """Per model and sequence length: does a group's HBM2 stack hold its expert weights and saved activations,
    and which layers stream from the SSD tier (charged in the HBM2 runs)."""
    from ..config import load_config, override  # noqa: PLC0415
    from .capacity import hbm_layers  # noqa: PLC0415
    from .parameters import load_params  # noqa: PLC0415

    lines = ["Capacity of a group's HBM2 stack (FP16 expert weights + the saved activations held at once: the "
             "step's, or one micro-batch's)"]
    for model, seq, reading in sorted(dict.fromkeys((c.model, c.seq_len, c.reading) for c in cells)):
        params = load_params(model)
        cfg = override(load_config(params.config), {"training.seq_len": seq})
        lines.append(f"  {model:18s} seq {seq:4d} {reading:15s}: {hbm_layers(params, cfg, reading).line()}")
    return lines


def sections(cells: list[Cell]) -> list[list[str]]:
    """Every table the sweep allows: capacity, then per micro-batch reading Table 4, sequence length, HBM2/SSD
    and mesh."""
    out = [capacity_table(cells)]
    for reading in readings(cells):
        mine = of_reading(cells, reading)
        out.append([f"=== Reading '{reading}': {READING_TITLES[reading]} ==="])
        out.append(table4(mine))
        out.append(energy_table(mine))
        if len({c.seq_len for c in mine}) > 1:
            out.append(sequence_table(mine))
        if len({c.dram for c in mine}) > 1:
            out.append(dram_table(mine))
        if len({c.network for c in mine}) > 1:
            out.append(mesh_table(mine))
    return out


def checks(cells: list[Cell]) -> list[Check]:
    """Every comparison with the paper the sweep ``cells`` allow, per micro-batch reading (named with it), each
    with ours, the paper's, the band and whether it holds. A check whose cells were not run is left out (never
    counted as holding)."""
    out = []
    for reading in readings(cells):
        out += [dataclasses.replace(c, name=f"[{reading}] {c.name}") for c in _checks(of_reading(cells, reading))]
    return out


def _checks(cells: list[Cell]) -> list[Check]:
    out: list[Check] = []
    seqs = sorted({c.seq_len for c in cells})
    for model in _models(cells):
        out += _table4_checks(cells, model)
        for variant in VARIANT_LABELS:
            row = [lookup(cells, model, variant, s) for s in seqs]
            if len(row) > 1 and None not in row:
                ok = all(a.seconds < b.seconds for a, b in zip(row, row[1:]))
                out.append(_order(f"{model} {VARIANT_LABELS[variant]}: latency grows with sequence length",
                                  [c.seconds for c in row], ok, "grows", " < "))
            for seq in seqs:
                hbm, ssd = lookup(cells, model, variant, seq), lookup(cells, model, variant, seq, "ssd")
                if hbm and ssd:
                    out.append(_order(f"{model} {VARIANT_LABELS[variant]} seq {seq}: SSD slower than HBM2",
                                      [ssd.seconds, hbm.seconds], ssd.seconds > hbm.seconds, "SSD slower", " > "))
        for seq in seqs:
            hbm, ssd = _speedup(cells, model, "hbm2", seq), _speedup(cells, model, "ssd", seq)
            if hbm and ssd:
                out.append(_order(f"{model} seq {seq}: Mozart's gain (speedup of C) smaller on SSD than HBM2",
                                  [ssd, hbm], ssd < hbm, "smaller on SSD", " < "))
            for dram in DRAM_KINDS:  # seq 256 on HBM2 is Table 4's, checked there
                lat = [lookup(cells, model, v, seq, dram) for v in VARIANT_LABELS]
                if None not in lat and (seq, dram) != (256, "hbm2"):
                    ok = all(a.seconds > b.seconds for a, b in zip(lat, lat[1:]))
                    out.append(_order(f"{model} seq {seq} {dram}: Baseline > A > B > C", [c.seconds for c in lat],
                                      ok, "Baseline > A > B > C", " > "))
    out += _qwen3_sensitivity_checks(cells, seqs)
    return out


def _table4_checks(cells: list[Cell], model: str) -> list[Check]:
    """Seq 256, HBM2: the ordering, Table 4's magnitudes and the A/B/C decomposition."""
    lat = [lookup(cells, model, v) for v in VARIANT_LABELS]
    if None in lat:
        return []
    seconds = [c.seconds for c in lat]
    out = [_order(f"{model} seq 256 hbm2: Baseline > A > B > C", seconds,
                  all(a > b for a, b in zip(seconds, seconds[1:])), "Baseline > A > B > C", " > ")]
    paper = PAPER_TABLE4.get(model)
    if paper is None:
        return out
    norm = [s / seconds[0] for s in seconds]
    paper_norm = (1.0,) + tuple(paper["latency"])
    for i, variant in enumerate(list(VARIANT_LABELS)[1:], start=1):
        out.append(_magnitude(f"{model}: Table 4 latency of {variant} (normalised)", norm[i], paper_norm[i],
                              NORM_LATENCY_BAND))
    steps = ("A over the Baseline", "B over A", "C over B")
    for i, step in enumerate(steps, start=1):
        out.append(_magnitude(f"{model}: share of the step cut by {step}", 1 - norm[i] / norm[i - 1],
                              1 - paper_norm[i] / paper_norm[i - 1], CUT_BAND))
    out.append(_magnitude(f"{model}: speedup of C", seconds[0] / seconds[-1], paper["speedup"], SPEEDUP_BAND))
    for i, variant in ((2, "B"), (3, "C")):
        out.append(_magnitude(f"{model}: C_T of {variant}", lat[i].c_t, paper["c_t"][i - 1], C_T_BAND))
    return out


def _qwen3_sensitivity_checks(cells: list[Cell], seqs: list[int]) -> list[Check]:
    """The paper's sensitivity studies (Qwen3 only): SSD/HBM2 ratio, sequence-length trend, absolute seconds."""
    model = "qwen3-30b-a3b"
    out = []
    for seq in seqs:
        hbm, ssd = lookup(cells, model, "baseline", seq), lookup(cells, model, "baseline", seq, "ssd")
        p_hbm, p_ssd = PAPER_SSD.get(seq, (None, None))
        if hbm and p_hbm:
            out.append(_magnitude(f"{model} seq {seq}: Baseline step seconds (HBM2)", hbm.seconds, p_hbm,
                                  SECONDS_BAND))
        if hbm and ssd and p_hbm:
            out.append(_magnitude(f"{model} seq {seq}: Baseline SSD/HBM2 step-time ratio", ssd.seconds / hbm.seconds,
                                  p_ssd / p_hbm, SSD_RATIO_BAND))
        speedup, p_seq = _speedup(cells, model, "hbm2", seq), PAPER_SEQ.get(seq)
        if speedup and p_seq and seq != 256:  # seq 256's speedup is Table 4's, checked there
            out.append(_magnitude(f"{model} seq {seq}: speedup of C", speedup, p_seq[1], SPEEDUP_BAND))
    short, long = lookup(cells, model, "baseline", 128), lookup(cells, model, "baseline", 512)
    if short and long:
        out.append(_magnitude(f"{model}: Baseline step at seq 512 over seq 128", long.seconds / short.seconds,
                              PAPER_SEQ[512][0] / PAPER_SEQ[128][0], SEQ_RATIO_BAND))
    return out


def summary(found: list[Check]) -> list[str]:
    """The checks' summary: how many of those that ran hold, then every check, failing ones first."""
    held = sum(c.holds for c in found)
    lines = [f"Checks against the paper: {held} of {len(found)} hold ({len(found) - held} fail; a failing check is "
             "a finding about the model, not an error)"]
    return lines + ["  " + c.line() for c in sorted(found, key=lambda c: c.holds)]
