"""The sweep specification: which wafer configs, axes, trace, placement methods and variants a sweep covers.

A spec is a TOML file, validated completely when it is loaded, so a typo fails before any point runs::

    [sweep]
    name = "example"                        # optional; default: the file's stem
    configs = ["wafer4x4", "olmoe-1b-7b"]   # base configs: preset names or TOML paths (relative to the spec)
    methods = ["contiguous", "mozart"]      # placement methods of mozart.model.placers (default: ["mozart"])
    variants = ["baseline", "A", "B", "C"]  # performance-model variants (default: all of them)
    seed = 0                                # the one seed every point's randomness is derived from
    replicates = 1                          # independent trace/placement draws per point (default 1)

    [trace]                  # a synthetic structured trace (the default) ...
    tokens = 2048            # optional; default: each point's training.sequences x training.seq_len
    structured = true
    # ... or a trace file, relative to the spec:   file = "traces/olmoe.npz"

    [axes]                   # dotted keys; each a list or an inclusive range {start, stop, step}
    "dram.banks" = [4, 8, 16]
    "tree.chiplets_per_group" = { start = 2, stop = 4 }                # step defaults to 1
    "perf.network" = ["tree", "mesh"]                                  # a performance-model option
    "perf.hbm_gbps" = { start = 128.0, stop = 512.0, step = 128.0 }    # a performance-model parameter

Rules checked here (each a :class:`SweepError` naming the spec file, the key, the value and the rule):
unknown sections and keys; an axis key that is not a config field (``section.field``), a performance-model
option (:func:`perf_options`) or parameter (:func:`perf_parameters`); an empty axis; repeated axis values;
a value of the wrong type for its field; a bad range (zero step, stop before start, more than
:data:`MAX_AXIS_VALUES` values); an unknown placement method or variant; a missing trace file; more than
:data:`MAX_POINTS` points.

Combinations that make an invalid wafer (e.g. ``moe.experts`` not a multiple of the chiplet count) are
*not* spec errors: the sweep records them per point, with the config's own message, and goes on.

The points themselves (their order, ids and seeds) are made by :mod:`mozart.sim.sweep`.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Mapping

from .config import load_config, to_dict
from .errors import MozartError

__all__ = ["SweepError", "Axis", "TraceSource", "SweepSpec", "load_spec", "spec_from_dict", "known_methods",
           "known_variants", "perf_options", "perf_parameters", "MAX_POINTS", "MAX_AXIS_VALUES"]

#: A sweep larger than this is almost certainly a mistake in a range (and would not fit a results file).
MAX_POINTS = 1_000_000
#: Values one range may expand to.
MAX_AXIS_VALUES = 10_000

_SECTIONS = {"sweep", "trace", "axes"}
_SWEEP_KEYS = {"name", "configs", "methods", "variants", "seed", "replicates"}
_TRACE_KEYS = {"tokens", "structured", "file"}
_RANGE_KEYS = {"start", "stop", "step"}
#: Axis keys in this namespace are performance-model parameters, not config fields.
PERF_NAMESPACE = "perf"


class SweepError(MozartError, ValueError):
    """A sweep spec, its output file or a sweep backend is unusable."""


def known_methods() -> list[str]:
    """The placement methods a spec may name (those registered in :mod:`mozart.model.placers`)."""
    from .placers import method_names  # noqa: PLC0415 (loads the placement algorithms only when asked)
    return list(method_names())


def known_variants() -> list[str]:
    """The performance-model variants a spec may name, in the model's order."""
    from .schedule import VARIANTS  # noqa: PLC0415 (the schedules load only when a sweep needs them)
    return list(VARIANTS)


def perf_options() -> dict[str, tuple[str, ...]]:
    """The performance model's evaluation choices an axis may set (``perf.network`` etc.), with their values.

    ``network``: the NoP-Tree or the 2D mesh; ``dram``: HBM2 or SSD (full-size models); ``mode``: the
    micro-batch-aggregated fast path or the per-token mode. The first value of each is the default.
    """
    from .perf.engine import MODES  # noqa: PLC0415
    from .perf.network import NETWORKS  # noqa: PLC0415
    from .perf.timing import DRAM_KINDS  # noqa: PLC0415
    return {"network": tuple(NETWORKS), "dram": tuple(DRAM_KINDS), "mode": tuple(MODES)}


def perf_parameters() -> dict[str, Any]:
    """The performance-model parameters an axis may set (``perf.<name>``), with a value of each.

    These are the numeric entries of the parameter files of :mod:`mozart.model.perf.params`, over all
    models (``hbm_gbps``, ``link_wires``, ...). They apply to the full-size models the files describe; a
    scaled config (``tiny``, ``wafer4x4``) is timed from its own config fields instead.
    """
    from .perf import load_params, model_names  # noqa: PLC0415 (loads only for perf.* axes)
    out: dict[str, Any] = {}
    for model in model_names():
        for name, param in load_params(model).params.items():
            if isinstance(param.value, (int, float)) and not isinstance(param.value, bool):
                out.setdefault(name, param.value)
    return out


@dataclass(frozen=True)
class Axis:
    """One swept key and its values, in the order the spec gives them.

    Members
    -------
    key : str
        ``section.field`` of the wafer config, or ``perf.<parameter>``.
    values : tuple
        At least one value, no repeats.
    """

    key: str
    values: tuple

    @property
    def is_perf(self) -> bool:
        return self.key.startswith(PERF_NAMESPACE + ".")


@dataclass(frozen=True)
class TraceSource:
    """Where each point's routing trace comes from.

    Members
    -------
    file : str or None
        An absolute trace path (read by :func:`mozart.model.trace_io.load_trace`); None for synthetic.
    sha256 : str or None
        The file's digest when the spec was loaded, so a changed file never resumes an old sweep.
    tokens : int or None
        Synthetic tokens per trace; None: the point's ``training.sequences x training.seq_len``.
    structured : bool
        Synthetic traces with co-activation structure (the paper's premise) or uniform random routing.
    """

    file: str | None = None
    sha256: str | None = None
    tokens: int | None = None
    structured: bool = True

    @property
    def label(self) -> str:
        """One short string for the results' ``trace`` column."""
        if self.file:
            return f"file:{Path(self.file).name}"
        kind = "structured" if self.structured else "uniform"
        return f"synthetic:{kind}" + (f":{self.tokens}" if self.tokens else "")


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep specification (see the module docstring for the file format).

    Members
    -------
    source : str
        The spec file (for messages).
    name : str
    configs : tuple of (str, dict)
        Each base config's name and its full nested dict (:func:`mozart.model.config.to_dict`). The points
        carry the dict, so remote workers need neither the preset nor the file.
    methods, variants : tuple of str
    seed, replicates : int
    trace : TraceSource
    axes : tuple of Axis
    """

    source: str
    name: str
    configs: tuple
    methods: tuple
    variants: tuple
    seed: int
    replicates: int
    trace: TraceSource
    axes: tuple

    @property
    def size(self) -> int:
        """The number of points: configs x axis values x replicates x methods x variants."""
        return (len(self.configs) * math.prod(len(a.values) for a in self.axes) * self.replicates
                * len(self.methods) * len(self.variants))

    @property
    def digest(self) -> str:
        """A hash of everything that determines the results; an output file records it."""
        canonical = {
            "configs": self.configs, "methods": self.methods, "variants": self.variants, "seed": self.seed,
            "replicates": self.replicates, "trace": [self.trace.sha256 or self.trace.file, self.trace.tokens,
                                                     self.trace.structured],
            "axes": [[a.key, list(a.values)] for a in self.axes],
        }
        return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


class _Checker:
    """Builds the error messages: every one starts with the spec file and names key, rule and value."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, key: str, rule: str, value: Any) -> None:
        raise SweepError(f"{self.source}: {key} must be {rule}, not {value!r}")

    def table(self, key: str, value: Any, known: set[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            self.fail(key, "a table", value)
        for name in value:
            if name not in known:
                raise SweepError(f"{self.source}: unknown key {key}.{name}; known keys of [{key}] are "
                                 + ", ".join(sorted(known)))
        return value

    def int(self, key: str, value: Any, lo: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(key, "an integer", value)
        if value < lo:
            self.fail(key, f"at least {lo}", value)
        return value

    def names(self, key: str, value: Any, known: list[str], what: str) -> tuple[str, ...]:
        if not isinstance(value, list) or not value:
            self.fail(key, f"a non-empty list of {what}", value)
        for i, name in enumerate(value):
            if name not in known:
                self.fail(f"{key}[{i}]", "one of " + ", ".join(known), name)
        if len(set(value)) != len(value):
            self.fail(key, "a list without repeats", value)
        return tuple(value)


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a sweep spec file.

    Parameters
    ----------
    path : str or Path
        The TOML file; relative config and trace paths inside it are taken relative to its folder.

    Raises
    ------
    SweepError
        The file is missing, not TOML, or breaks a rule (see the module docstring).
    """
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"sweep spec must be an existing TOML file, not {str(path)!r}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SweepError(f"{path}: not valid TOML: {exc}") from None
    return spec_from_dict(data, source=str(path), base_dir=path.parent)


def spec_from_dict(data: Mapping[str, Any], source: str = "spec", base_dir: str | Path = ".") -> SweepSpec:
    """Validate the TOML shape of a spec (nested dicts) and build a :class:`SweepSpec`."""
    check = _Checker(source)
    base_dir = Path(base_dir)
    for key in data:
        if key not in _SECTIONS:
            raise SweepError(f"{source}: unknown section [{key}]; known sections are "
                             + ", ".join(sorted(_SECTIONS)))
    if "sweep" not in data:
        raise SweepError(f"{source}: section [sweep] is missing (it names at least the configs)")
    sweep = check.table("sweep", data["sweep"], _SWEEP_KEYS)
    if "configs" not in sweep:
        raise SweepError(f"{source}: sweep.configs is missing (a list of presets or config files)")
    configs = _configs(check, sweep["configs"], base_dir)
    methods = check.names("sweep.methods", sweep.get("methods", ["mozart"]), known_methods(), "placement methods")
    variants = check.names("sweep.variants", sweep.get("variants", known_variants()), known_variants(), "variants")
    seed = check.int("sweep.seed", sweep.get("seed", 0), 0)
    replicates = check.int("sweep.replicates", sweep.get("replicates", 1), 1)
    name = sweep.get("name", Path(source).stem)
    if not isinstance(name, str) or not name:
        check.fail("sweep.name", "a non-empty string", name)
    trace = _trace(check, data.get("trace", {}), base_dir)
    axes = _axes(check, data.get("axes", {}), configs)
    spec = SweepSpec(source=source, name=name, configs=configs, methods=methods, variants=variants, seed=seed,
                     replicates=replicates, trace=trace, axes=axes)
    if spec.size > MAX_POINTS:
        raise SweepError(f"{source}: the sweep must have at most {MAX_POINTS} points, not {spec.size} "
                         f"(configs x axis values x replicates x methods x variants)")
    return spec


def _configs(check: _Checker, value: Any, base_dir: Path) -> tuple:
    if not isinstance(value, list) or not value:
        check.fail("sweep.configs", "a non-empty list of preset names or config files", value)
    out, names = [], {}
    for i, item in enumerate(value):
        if not isinstance(item, str):
            check.fail(f"sweep.configs[{i}]", "a preset name or a config file path", item)
        path = base_dir / item
        try:  # a preset name wins; otherwise a path relative to the spec
            cfg = load_config(item if not path.is_file() else path)
        except MozartError as exc:
            raise SweepError(f"{check.source}: sweep.configs[{i}]: {exc}") from None
        if cfg.name in names:
            check.fail(f"sweep.configs[{i}]", f"a config whose name differs from sweep.configs[{names[cfg.name]}] "
                       f"(both are named {cfg.name!r}; results are labelled by name)", item)
        names[cfg.name] = i
        out.append((cfg.name, to_dict(cfg)))
    return tuple(out)


def _trace(check: _Checker, value: Any, base_dir: Path) -> TraceSource:
    table = check.table("trace", value, _TRACE_KEYS)
    if "file" in table:
        if set(table) - {"file"}:
            check.fail("trace", "either a file or synthetic settings (tokens, structured), not both", dict(table))
        file = table["file"]
        if not isinstance(file, str) or not (base_dir / file).is_file():
            check.fail("trace.file", "an existing trace file (relative to the spec)", file)
        path = (base_dir / file).resolve()
        return TraceSource(file=str(path), sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    tokens = table.get("tokens")
    if tokens is not None:
        check.int("trace.tokens", tokens, 1)
    structured = table.get("structured", True)
    if not isinstance(structured, bool):
        check.fail("trace.structured", "true or false", structured)
    return TraceSource(tokens=tokens, structured=structured)


def _axes(check: _Checker, value: Any, configs: tuple) -> tuple:
    if not isinstance(value, Mapping):
        check.fail("axes", "a table of dotted keys", value)
    axes = []
    for key, raw in _flatten(value):
        where = f"axes.{key!r}" if "." in key else f"axes.{key}"
        kind = _field_kind(check, where, key, configs)
        values = _range(check, where, raw, kind) if isinstance(raw, Mapping) else raw
        if not isinstance(values, list) or not values:
            check.fail(where, "a non-empty list or a range {start, stop, step}", raw)
        for i, item in enumerate(values):
            _check_kind(check, f"{where}[{i}]", item, kind)
        if len({json.dumps(v) for v in values}) != len(values):
            check.fail(where, "a list without repeated values", values)
        axes.append(Axis(key, tuple(values)))
    return tuple(axes)


def _flatten(table: Mapping[str, Any], prefix: str = ""):
    """Yield (dotted key, value): ``"dram.banks" = [..]`` and ``[axes.dram] banks = [..]`` mean the same."""
    for key, value in table.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and not (set(value) & _RANGE_KEYS):
            yield from _flatten(value, dotted + ".")
        else:
            yield dotted, value


def _field_kind(check: _Checker, where: str, key: str, configs: tuple) -> type | tuple:
    """The type an axis key's values must have (from the base config or the perf parameters), or the tuple
    of an option's names."""
    section, _, field = key.partition(".")
    if section == PERF_NAMESPACE:
        options, params = perf_options(), perf_parameters()
        if field in options:
            return options[field]
        if field not in params:
            check.fail(where, "a performance-model option or parameter perf.<name> with a name of "
                       + ", ".join([*options, *sorted(params)]), key)
        return type(params[field])
    sections = configs[0][1]
    known = sorted(f"{s}.<field>" for s, v in sections.items() if isinstance(v, dict))
    if section not in sections or not isinstance(sections[section], dict) or not field or "." in field:
        check.fail(where, "a config field section.field (sections: " + ", ".join(known)
                   + f") or {PERF_NAMESPACE}.<parameter>", key)
    if field not in sections[section]:
        check.fail(where, f"a field of [{section}] (" + ", ".join(sorted(sections[section])) + ")", key)
    return type(sections[section][field])


def _check_kind(check: _Checker, where: str, value: Any, kind: type | tuple) -> None:
    if isinstance(kind, tuple):  # an option: one of its names
        if value not in kind:
            check.fail(where, "one of " + ", ".join(kind), value)
        return
    rule = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]
    ok = {bool: lambda v: isinstance(v, bool),
          int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
          str: lambda v: isinstance(v, str)}[kind]
    if not ok(value):
        check.fail(where, f"{rule} (the type of the field it sets)", value)


def _range(check: _Checker, where: str, table: Mapping[str, Any], kind: type) -> list:
    """An inclusive range; decimal arithmetic so that 0.1 steps give 0.3, not 0.30000000000000004."""
    for name in table:
        if name not in _RANGE_KEYS:
            raise SweepError(f"{check.source}: unknown key {name!r} in range {where}; a range has start, stop "
                             "and step (optional, default 1)")
    for name in ("start", "stop"):
        if name not in table:
            check.fail(where, f"a range with {name} (and start, stop, optional step)", dict(table))
    if kind not in (int, float):
        name = "an option" if isinstance(kind, tuple) else kind.__name__
        check.fail(where, f"a list (a range needs a numeric field; this one is {name})", dict(table))
    start, stop, step = table["start"], table["stop"], table.get("step", 1)
    for name, v in (("start", start), ("stop", stop), ("step", step)):
        _check_kind(check, f"{where}.{name}", v, kind)
    if step <= 0:
        check.fail(f"{where}.step", "positive", step)
    if stop < start:
        check.fail(f"{where}.stop", f"at least start ({start})", stop)
    d_start, d_step = Decimal(repr(start)), Decimal(repr(step))
    count = int((Decimal(repr(stop)) - d_start) / d_step) + 1
    if count > MAX_AXIS_VALUES:
        check.fail(where, f"a range of at most {MAX_AXIS_VALUES} values", f"{count} values")
    values = [d_start + i * d_step for i in range(count)]
    return [int(v) for v in values] if kind is int else [float(v) for v in values]
