"""The evaluation of one sweep point with the performance model, and the fingerprint of the code it runs.

:func:`evaluate_point` is what every backend of :mod:`mozart.sim.sweep` calls for a point: config, traces,
placement, schedules (their loads ordered by the profiling trace, as ``mozart evaluate`` orders them), one
simulated training step, and the row's outputs (step time and its breakdown, C_T, chip area, energy per step
and power, per-link bytes and busy time). Each worker process keeps small caches of the intermediate results that
neighbouring points share; they change run times, never rows.

:func:`code_fingerprint` hashes the code and data those rows depend on, so that a sweep never mixes rows of
two model versions (the journal records it; Dask workers must match the driver).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from mozart.model.sweep_spec import SweepError

__all__ = ["evaluate_point", "code_fingerprint"]

#: This module and the engine: their imports root the fingerprint's import graph.
_SWEEP_FILES = (Path(__file__), Path(__file__).with_name("sweep.py"))


class _Memo:
    """A worker's small LRU of intermediate results that neighbouring points share.

    Results are pure functions of their keys, so caching changes the run time, never a row.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = self.items[key] = make()
        if len(self.items) > self.size:
            self.items.popitem(last=False)
        return value


_TRACES, _PLACEMENTS, _SCHEDULES = _Memo(4), _Memo(16), _Memo(16)


def _section_key(cfg_dict: dict, *sections: str) -> str:
    return json.dumps({s: cfg_dict[s] for s in sections}, sort_keys=True)


def evaluate_point(point: dict) -> dict:
    """Evaluate one point with the performance model (:mod:`mozart.model.perf`).

    The point's config is its base config with the config-field axes applied
    (:func:`mozart.model.config.override`). Its traces are synthesised (or read; see :func:`_traces`), its
    placement made with its method on the profiling trace, its schedules built for its variant with their
    loads ordered by that profile (never by the timed step's own routing), and one
    training step simulated on the step's trace. A full-size model (a preset
    with a parameter file: ``olmoe-1b-7b``, ...) is timed from its parameters, with the ``perf.*`` axes
    applied; any other config is timed from its own RTL fields (``hardware``, ``dram``), as the model's
    ``HardwareTiming.scaled`` does.

    Parameters
    ----------
    point : dict
        A point of :func:`mozart.sim.sweep.expand`.

    Returns
    -------
    dict
        Output column -> scalar; see ``docs/sweep.md`` for the columns.

    Raises
    ------
    MozartError
        The point's config combination, trace, placement or perf setting is invalid (recorded as ``status``
        "invalid").
    """
    from mozart.model import perf  # noqa: PLC0415 (workers import the model once, on their first point)
    from mozart.model.config import config_from_dict, override, to_dict  # noqa: PLC0415
    from mozart.model.placers import place  # noqa: PLC0415
    from mozart.model.sweep_spec import perf_options  # noqa: PLC0415

    settings = point["settings"]
    perf_settings = {k.split(".", 1)[1]: v for k, v in settings.items() if k.startswith("perf.")}
    cfg = config_from_dict(point["base"], point["config"])
    config_settings = {k: v for k, v in settings.items() if not k.startswith("perf.")}
    if config_settings:
        cfg = override(cfg, config_settings)
    cfg_dict = to_dict(cfg)
    options = {name: values[0] for name, values in perf_options().items()}
    options.update({k: v for k, v in perf_settings.items() if k in options})
    params = {k: v for k, v in perf_settings.items() if k not in options}
    base_params = _full_size_params(perf, cfg, params)
    timing, workload = _timing(perf, cfg, base_params, options["dram"] != perf_options()["dram"][0],
                               options["dram"], params)

    # Each stage is cached on the config sections it reads (synth and placers: tree, moe; schedules: also
    # hardware and training), so axes that only change the timing reuse the trace, placement and schedules.
    source = point["trace"]
    tokens = source["tokens"] or cfg.training.tokens_per_step
    trace_key = (source["file"], source["sha256"], _section_key(cfg_dict, "tree", "moe"), tokens,
                 point["trace_seed"], source["structured"])
    profile, trace = _TRACES.get(trace_key, lambda: _traces(cfg, source, tokens, point["trace_seed"]))
    place_key = (trace_key, point["method"], point["placement_seed"])
    placement = _PLACEMENTS.get(place_key, lambda: place(profile, cfg, point["method"], seed=point["placement_seed"]))
    schedules = _SCHEDULES.get((place_key, _section_key(cfg_dict, "hardware", "training"), point["variant"]),
                               lambda: perf.step_schedules(cfg, placement, trace, point["variant"], profile=profile))
    step = perf.simulate_step(schedules, trace, timing, workload, cfg, network=options["network"],
                              mode=options["mode"], record=True)
    outputs = {
        "tokens": trace.tokens, "chiplets": cfg.chiplets, "experts_per_chiplet": cfg.experts_per_chiplet,
        "step_time_s": step.seconds, "step_cycles": step.cycles,
        "c_t": perf.placement_c_t(trace, placement), "replicas_per_token": step.replicas_per_token,
    }
    outputs.update(_cost_columns(cfg, base_params, step, options["dram"]))
    outputs.update(_breakdown_columns(step, timing))
    outputs.update(_link_columns(step, timing))
    return outputs


#: Variants that are the same computation on a point's inputs (what :func:`mozart.sim.sweep.same_computations`
#: reads): the schedule builds B and C alike (de-duplicated dispatch, micro-batch streaming), C differing only
#: by running on the clustered placement; a sweep point's placement is its method, so C with method m is B
#: with method m, and the engine computes it once.
evaluate_point.same_variants = {"C": "B"}


def _breakdown_columns(step, timing) -> dict[str, float]:
    """Exposed and hidden seconds per category, and idle (``mozart.model.perf.breakdown``).

    The exposed times and idle add up to the step time; hidden time ran under something of higher priority.
    """
    from mozart.model.perf.breakdown import CATEGORIES, breakdown  # noqa: PLC0415
    parts = breakdown(step.records, step.cycles)
    out = {}
    for category in CATEGORIES:
        out[f"exposed_{category}_s"] = timing.seconds(parts.exposed[category])
        out[f"hidden_{category}_s"] = timing.seconds(parts.hidden[category])
    out["idle_s"] = timing.seconds(parts.idle)
    return out


#: Resource kinds of the perf model's records that are network links (``mozart.model.perf.network``).
_LINK_KINDS = ("root-down", "root-up", "leaf-down", "leaf-up", "mesh")


def _link_columns(step, timing) -> dict[str, Any]:
    """Bytes each network link carries during the step, the seconds it is busy, and the busiest link.

    The engine records, for every transfer crossing a link, its bytes and its interval: the bytes at the
    link's bandwidth plus its hop latency. The busy time is the union of those intervals. Links are named
    ``root-down.G``, ``leaf-up.C``, ``mesh.R:X-R:X2``.
    """
    spans: dict[str, list[tuple[float, float]]] = {}
    traffic: dict[str, float] = {}
    for record in step.records:
        if record.resource[0] in _LINK_KINDS:
            name = _link_name(record.resource)
            spans.setdefault(name, []).append((record.start, record.end))
            traffic[name] = traffic.get(name, 0.0) + record.nbytes
    busy = {name: _union_length(intervals) for name, intervals in spans.items()}
    names = sorted(busy, key=_link_order)
    out: dict[str, Any] = {f"link_bytes.{name}": traffic[name] for name in names}
    out.update({f"link_busy_s.{name}": timing.seconds(busy[name]) for name in names})
    busiest = max(sorted(busy, key=_link_order), key=busy.__getitem__, default=None)
    out["link_busiest"] = busiest
    out["link_busy_max_s"] = timing.seconds(busy[busiest]) if busiest else 0.0
    out["link_utilisation_max"] = busy[busiest] / step.cycles if busiest and step.cycles else 0.0
    return out


def _link_name(resource: tuple) -> str:
    if resource[0] == "mesh":
        (r0, x0), (r1, x1) = resource[1], resource[2]
        return f"mesh.{r0}:{x0}-{r1}:{x1}"
    return f"{resource[0]}.{resource[1]}"


def _link_order(name: str) -> tuple:
    kind, _, where = name.partition(".")
    return (_LINK_KINDS.index(kind), [int(n) for n in re.findall(r"\d+", where)])


def _union_length(intervals: list[tuple[float, float]]) -> float:
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _traces(cfg, source: dict, tokens: int, seed: int):
    """The profiling trace (what the placement sees) and the step's trace (what is timed).

    As ``mozart evaluate`` does (:mod:`mozart.model.perf.evaluation`): a synthetic profile is step 0 of the
    router and the timed step is step 1, since the paper profiles once and trains afterwards; a trace file
    is both, cut or repeated to ``tokens``.
    """
    if source["file"]:
        from mozart.model.perf.evaluation import prepare_trace  # noqa: PLC0415
        from mozart.model.trace_io import load_trace  # noqa: PLC0415
        trace = load_trace(source["file"])
        trace.check_fits(cfg)
        trace = prepare_trace(trace, tokens)
        return trace, trace
    from mozart.model.synth import synthesize_for  # noqa: PLC0415
    return tuple(synthesize_for(cfg, tokens, seed, structured=source["structured"], step=step) for step in (0, 1))


@functools.lru_cache(maxsize=1)  # the parameter files do not change while a worker runs
def _perf_models() -> dict[str, str]:
    """Preset name -> the perf model whose parameter file names that preset."""
    from mozart.model.perf import load_params, model_names  # noqa: PLC0415
    return {load_params(m).config: m for m in model_names()}


def _full_size_params(perf, cfg, params: dict):
    """The full-size parameters of ``cfg`` with the point's ``perf.*`` axes applied; None for an RTL config."""
    base = perf.params_for(cfg)  # by the config's content (its expert shape), never its name
    if base is None or not params:
        return base
    from mozart.model.perf.parameters import Param  # noqa: PLC0415
    return replace(base, params={**base.params, **{k: Param(k, v, "sweep: an axis of the sweep spec")
                                                   for k, v in params.items()}})


def _timing(perf, cfg, base, other_dram: bool, dram: str, params: dict):
    """The hardware timing and workload of ``cfg``: full size from its perf model's parameters ``base``, else
    scaled."""
    if base is None:
        swept = [f"perf.{k}" for k in params] + (["perf.dram"] if other_dram else [])
        if swept:
            raise SweepError(f"{', '.join(swept)} must be swept only on the full-size models "
                             f"({', '.join(sorted(_perf_models()))}), not on {cfg.name!r}, which is timed from "
                             "its own config fields (hardware.*, dram.*)")
        return perf.HardwareTiming.scaled(cfg), perf.Workload.scaled(cfg)
    return perf.HardwareTiming.full_size(base, cfg, dram), perf.Workload.full_size(base, cfg)


def _cost_columns(cfg, base, step, dram: str) -> dict[str, float]:
    """Chip area (silicon mm^2 by component and in total, wafer footprint) and the step's dynamic energy (J by
    component and in total) and its average power (W), priced with the full-size parameters ``base`` or, for an
    RTL config, the hardware file's (:mod:`mozart.model.perf.area`, :mod:`mozart.model.perf.energy`)."""
    from mozart.model.perf.area import config_area  # noqa: PLC0415
    from mozart.model.perf.energy import step_energy  # noqa: PLC0415
    from mozart.model.perf.parameters import hardware_params  # noqa: PLC0415
    area = config_area(cfg, base)
    energy = step_energy(step.traffic, base or hardware_params(), dram)
    out = {"area_mm2": area.total_mm2, "footprint_mm2": area.footprint_mm2}
    out.update({f"area_{k}_mm2": v for k, v in area.components.items()})
    out["energy_j"] = sum(energy.values())
    out.update({f"energy_{k}_j": v for k, v in energy.items()})
    out["power_w"] = out["energy_j"] / step.seconds if step.seconds > 0 else 0.0
    return out


def code_fingerprint() -> str:
    """A hash of the code and data a row depends on: this module and the sweep engine, every
    ``mozart.model`` module they import, transitively (found in the source files, not in what this process
    happens to have loaded), the presets and the performance parameters. Edits elsewhere (the golden
    arithmetic, hardware models) do not count.

    A journal records it, so that a sweep never resumes with rows of another model version, and the Dask
    backend checks that every worker runs the same code as the driver.
    """
    import mozart.model  # noqa: PLC0415
    root = Path(mozart.model.__file__).parent
    files = sorted(_model_sources(root)) + sorted(root.glob("presets/*.toml")) + sorted(root.glob("perf/params/*.toml"))
    digest = hashlib.sha256()
    for path in [*files, *_SWEEP_FILES]:
        name = path.relative_to(root.parent) if root.parent in path.parents else Path(path.name)
        digest.update(str(name).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _model_sources(root: Path) -> set[Path]:
    """The files of the ``mozart.model`` modules the sweep's files import, and of theirs, transitively."""
    import ast  # noqa: PLC0415

    def imports(path: Path, package: str) -> list[str]:
        found = []
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                target = ".".join(p for p in (base, node.module) if p)
                found += [target] + [f"{target}.{a.name}" for a in node.names]  # a name may be a submodule
        return [m for m in found if m.startswith("mozart.model")]

    def source(module: str) -> Path | None:
        parts = module.split(".")[2:]  # below mozart.model
        for path in (root.joinpath(*parts, "__init__.py"), root.joinpath(*parts).with_suffix(".py")):
            if parts and path.is_file() or not parts and path.name == "__init__.py":
                return path
        return None

    seen: set[Path] = set()
    todo = [m for path in _SWEEP_FILES for m in imports(path, "mozart.sim")]
    while todo:
        module = todo.pop()
        path = source(module)
        if path is None or path in seen:
            continue
        seen.add(path)
        todo += imports(path, module if path.name == "__init__.py" else module.rpartition(".")[0])
    return seen
