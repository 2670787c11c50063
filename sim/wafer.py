"""Running the wafer's end-to-end co-simulation from Python or the command line (``mozart cosim wafer``).

:func:`run_layer` builds (or reuses) the wafer for a config, runs ``tb/tb_wafer.py`` for one variant and returns
a :class:`LayerResult`; :func:`compare` runs Baseline, A, B and C on the same trace and seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mozart.model.cosim_options import WaferOptions
from mozart.model.errors import MozartError
from mozart.model.schedule import VARIANTS, Variant

__all__ = ["LayerResult", "validate", "run_layer", "compare", "compared_runs", "BALANCED_PLACEMENT", "format_layer",
           "format_compare", "format_activity", "plot_activity", "check_probability"]


@dataclass
class LayerResult:
    variant: str
    cosim: object          # mozart.sim.cosim.CosimResult
    summary: dict          # what tb_wafer wrote (empty if the simulator stopped early)

    @property
    def ok(self) -> bool:
        return self.cosim.ok

    @property
    def cycles(self) -> float:
        return self.summary.get("cycles", float("nan"))

    @property
    def model_cycles(self) -> float:
        return self.summary.get("model_cycles", float("nan"))


def check_probability(name: str, p: float) -> float:
    if not 0.0 <= p < 1.0:
        raise MozartError(f"{name} must be a probability in [0, 1), not {p!r}")
    return p


def validate(cfg, *, variant: str = "C", seed: int = 1, trace: str | None = None, placement: str | None = None,
             tokens: int = 256, layer: int = 0, layers: int = 1, attention: bool | None = None,
             slots: int | None = None, skew: float | None = None,
             idle: float = 0.0, backpressure: float = 0.0, train: bool = False) -> None:
    """Raise :class:`MozartError` (one line) for bad arguments before anything is built or simulated."""
    from mozart.model.harness import check_fits  # noqa: PLC0415
    from mozart.model.placers import method_names  # noqa: PLC0415
    from mozart.model.trace_io import load_trace  # noqa: PLC0415
    from mozart.model.wafer_run import build_run  # noqa: PLC0415

    Variant.parse(variant, "--variant")
    if placement is not None and placement not in method_names() and not placement.endswith(".json"):
        raise MozartError(f"--placement must be one of {', '.join(method_names())} or a placement file (.json, "
                          f"from 'mozart allocate'), not {placement!r}")
    if placement is not None and placement.endswith(".json") and not Path(placement).is_file():
        raise MozartError(f"--placement must be an existing placement file, not {placement!r}")
    if trace is not None and not Path(trace).is_file():
        raise MozartError(f"--trace must be an existing trace file, not {trace!r}")
    check_probability("--idle", idle)
    check_probability("--backpressure", backpressure)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise MozartError(f"--seed must be a non-negative integer, not {seed!r}")
    # the model's own checks (trace shape, tokens, slots, entries), then the harness's capacity
    check_fits(build_run(cfg, trace=load_trace(trace) if trace else None, seed=seed, placement=placement,
                         variant=variant, tokens=tokens, layer=layer, layers=layers, attention=attention, slots=slots,
                         skew=skew, train=train))


def run_layer(cfg, *, variant: str = "C", seed: int = 1, trace: str | None = None, placement: str | None = None,
              tokens: int = 256, layer: int = 0, layers: int = 1, attention: bool | None = None,
             slots: int | None = None, skew: float | None = None,
              idle: float = 0.0, backpressure: float = 0.0, waves: bool = False, built=None,
              timeout: float | None = None, progress=None, timeline: bool = False, train: bool = False) -> LayerResult:
    """``layers`` MoE layers of ``variant`` on the RTL wafer of ``cfg``; the checks are ``tb/tb_wafer.py``'s.
    ``progress``:
    see :func:`mozart.sim.cosim.run`."""
    from mozart.sim import cosim  # noqa: PLC0415
    from mozart.sim.build import build  # noqa: PLC0415

    validate(cfg, variant=variant, seed=seed, trace=trace, placement=placement, tokens=tokens, layer=layer,
             layers=layers, attention=attention, slots=slots, skew=skew, idle=idle, backpressure=backpressure)
    built = built or build("wafer", cfg, waves=waves, progress=progress)
    options = WaferOptions(variant=variant, placement=placement, trace=trace, tokens=tokens, layer=layer,
                           layers=layers, attention=attention, slots=slots, skew=skew, idle=idle,
                           backpressure=backpressure, timeline=timeline, train=train)
    label = str(variant) if placement is None else f"{variant}-{Path(placement).stem}"
    result = cosim.run(built, seed=seed, extra_env=options.to_env(), check=False, timeout=timeout, label=label,
                       progress=progress)
    return LayerResult(variant, result, result.summary.get("test_layer", {}))


#: The load-capped placement (``mozart+balance``) the comparison adds as a fifth run, of variant C.
BALANCED_PLACEMENT = "mozart+balance"


def compare(cfg, *, placement: str | None = None, **kwargs) -> list[LayerResult]:
    """Baseline, A, B and C on the same trace and seed (placements: ``placement``, else each variant's default:
    ``mozart`` for C, ``contiguous`` for the others), and without ``placement`` a fifth run: C on the
    load-balanced placement (:data:`BALANCED_PLACEMENT`). One build serves them all."""
    from mozart.sim.build import build  # noqa: PLC0415
    built = kwargs.pop("built", None) or build("wafer", cfg, waves=kwargs.get("waves", False))
    return [run_layer(cfg, variant=v, placement=p, built=built, **kwargs) for v, p in compared_runs(placement)]


def compared_runs(placement: str | None = None) -> list[tuple[Variant, str | None]]:
    """(variant, placement) of each run of :func:`compare`."""
    return [(v, placement) for v in VARIANTS] + ([(Variant.C, BALANCED_PLACEMENT)] if placement is None else [])


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def format_layer(cfg, r: LayerResult) -> str:
    s = r.summary
    lines = [r.cosim.report(waveform=False)]   # the command prints the waveform's path last
    if not s:
        return "\n".join(lines)
    lines.append(f"variant {r.variant}, placement {s['placement']}, {s.get('layers', 1)} layer(s) of {s['tokens']} "
                 f"tokens, host attention steps {s.get('attention_steps', 0)}, {s['rounds']} weight "
                 f"round(s), host idle {s['idle']:g}, output backpressure {s['backpressure']:g}")
    lines.append(f"outputs bit-exact with the golden model: {'yes' if s['bit_exact'] else 'NO'}")
    if s.get("train"):
        lines.append(f"training step: input gradients in the outputs above; weight images after the updates "
                     f"({s['image_words']} words) and {s['gate_grads']} GATE_GRAD packets equal the golden "
                     f"backward's: {'yes' if s['trained_exact'] else 'NO'}; RTL cycles forward {s['forward_cycles']}, "
                     f"backward {s['cycles'] - s['forward_cycles']}; model forward "
                     f"{s['model_forward_cycles']:.0f}, backward {s['model_cycles'] - s['model_forward_cycles']:.0f}")
    lines.append(f"DISPATCH packets on every link equal the model's: {'yes' if s['links_match'] else 'NO'}")
    lines.append(f"replicas per token (C_T): root links {s['replicas_root_per_token']:.3f}, chiplet links "
                 f"{s['replicas_chiplet_per_token']:.3f}")
    lines.append(f"cycles: RTL {s['cycles']}, model {s['model_cycles']:.0f} (error {_pct(s['model_error'])}; "
                 f"the event engine alone {s.get('model_cycles_engine', float('nan')):.0f})")
    lines.append("DISPATCH packets per link (RTL):")
    links = sorted((k, v) for k, v in s["dispatches"].items() if v)
    width = max((len(k) for k, _ in links), default=0)
    lines += [f"  {k:{width}s} {v}" for k, v in links]
    return "\n".join(lines)


def _paper_speedups(variant) -> str:
    """The paper's speedup of ``variant`` over its Baseline (Table 4: 1 / normalised latency), per model."""
    from mozart.model.perf.evaluation import PAPER_TABLE4  # noqa: PLC0415
    index = {"A": 0, "B": 1, "C": 2}.get(str(variant))
    if index is None:
        return "1.00"
    return "/".join(f"{1 / row['latency'][index]:.2f}" for row in PAPER_TABLE4.values())


def format_compare(results: list[LayerResult]) -> str:
    from mozart.model.perf.evaluation import PAPER_TABLE4  # noqa: PLC0415
    base = results[0]
    lines = ["variant   placement        RTL cycles  model cycles   error  RTL speedup  model speedup  C_T root  ok"
             "  paper speedup"]
    for r in results:
        s = r.summary
        if not s:
            lines.append(f"{r.variant:9s} (failed: {', '.join(r.cosim.failed_tests) or 'no summary'})")
            continue
        rtl_speed = base.cycles / r.cycles
        model, error = f"{s['model_cycles']:13.0f}", _pct(s['model_error'])
        model_speed, split = f"{base.model_cycles / r.model_cycles:13.2f}x", ""
        if s.get("train"):   # the step's forward/backward split, RTL | model
            split = (f"  fwd/bwd RTL {s['forward_cycles']}/{s['cycles'] - s['forward_cycles']}, model "
                     f"{s['model_forward_cycles']:.0f}/{s['model_cycles'] - s['model_forward_cycles']:.0f}")
        lines.append(f"{r.variant:9s} {s['placement']:15s} {s['cycles']:10d} {model} "
                     f"{error:>7s} {rtl_speed:11.2f}x {model_speed} "
                     f"{s['replicas_root_per_token']:9.3f}  {'yes' if r.ok else 'NO ':3s} {_paper_speedups(r.variant)}"
                     f"{split}")
    lines.append("speedup = Baseline cycles / variant cycles; model = the performance model on the RTL's timing "
                 "(the same Baseline as the RTL's); paper = Table 4's full-size wafer, "
                 f"{' / '.join(PAPER_TABLE4)}, for reference (a different machine and regime)")
    return "\n".join(lines)


def format_activity(results: list[LayerResult]) -> str:
    """Where each run's cycles go, measured (the harness's per-cycle activity record) next to the model's (the
    event engine's records): exposed cycles per category, each cycle counted once, for its first busy category
    in the order attention, expert compute, dispatch/combine, weight streaming, activation saving; idle: none."""
    from mozart.model.perf.breakdown import CATEGORIES  # noqa: PLC0415
    names = (*CATEGORIES, "idle")
    lines = ["exposed cycles, RTL / model:", f"{'variant':9s} {'placement':15s} "
             + " ".join(f"{n:>17s}" for n in names)]
    for r in results:
        s = r.summary
        if "activity" not in s or s.get("model_activity") is None:
            continue
        cells = []
        for n in names:
            rtl, model = ((a["idle"] if n == "idle" else a["exposed"][n]) for a in (s["activity"], s["model_activity"]))
            cells.append(f"{rtl:>8d} / {model:<7d}")
        lines.append(f"{r.variant:9s} {s['placement']:15s} " + " ".join(cells))
    return "\n".join(lines)


def plot_activity(results: list[LayerResult], path, title: str) -> Path:
    """The breakdown of :func:`format_activity` as a PNG (:func:`mozart.model.perf.plots.write_activity_plot`)."""
    from mozart.model.perf.plots import write_activity_plot  # noqa: PLC0415
    rows = [(f"{r.variant} ({r.summary['placement']})", r.summary["activity"], r.summary["model_activity"])
            for r in results if "activity" in r.summary and r.summary.get("model_activity") is not None]
    return write_activity_plot(Path(path), title, rows)
