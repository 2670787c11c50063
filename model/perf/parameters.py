"""The performance model's full-size parameters: one TOML file per paper model plus a shared hardware file.

Files live in ``mozart.model.perf``'s ``params/`` folder (``hardware.toml``, ``<model>.toml``). Every
parameter is a table with a ``value`` and a ``source`` that starts with ``paper:`` (a number of docs/paper.md) or
``assumption:`` (an open choice, with its reason). A model file names its wafer config
(``config = "<preset>"``), from which the MoE shape comes; its parameters override the hardware file's.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import resources
from typing import Any, Mapping

from ..errors import ConfigError

__all__ = ["Param", "PerfParams", "load_params", "hardware_params", "model_names", "params_for"]

_PACKAGE = "mozart.model.perf"
_SOURCES = ("paper:", "assumption:")


@dataclass(frozen=True)
class Param:
    """One parameter: its value and where it comes from."""

    name: str
    value: Any
    source: str


@dataclass(frozen=True)
class PerfParams:
    """All parameters of one model (hardware file merged with the model file)."""

    model: str
    config: str
    params: Mapping[str, Param]

    def __getattr__(self, name: str) -> Any:
        params = self.__dict__.get("params", {})
        if name in params:
            return params[name].value
        raise AttributeError(f"performance parameters of {self.__dict__.get('model')!r} have no {name!r}")

    def table(self) -> list[Param]:
        return [self.params[k] for k in sorted(self.params)]


def model_names() -> list[str]:
    """Models with a parameter file."""
    files = resources.files(_PACKAGE).joinpath("params")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml") and p.name != "hardware.toml")


def _read(name: str) -> dict[str, Any]:
    text = resources.files(_PACKAGE).joinpath("params", f"{name}.toml").read_text()
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"perf params {name}.toml: not valid TOML: {exc}") from None


def _params(name: str, data: Mapping[str, Any]) -> dict[str, Param]:
    out = {}
    for key, entry in data.items():
        if key == "config":
            continue
        if not isinstance(entry, Mapping) or set(entry) != {"value", "source"}:
            raise ConfigError(f"perf params {name}.toml: {key} must be a table with value and source, not {entry!r}")
        if not str(entry["source"]).startswith(_SOURCES):
            raise ConfigError(f"perf params {name}.toml: {key}.source must start with 'paper:' or 'assumption:', "
                              f"not {entry['source']!r}")
        out[key] = Param(key, entry["value"], entry["source"])
    return out


def load_params(model: str) -> PerfParams:
    """The parameters of ``model`` (one of :func:`model_names`)."""
    if model not in model_names():
        raise ConfigError(f"model must be one of {', '.join(model_names())}, not {model!r}")
    data = _read(model)
    if "config" not in data:
        raise ConfigError(f"perf params {model}.toml must name its wafer config (config = \"<preset>\")")
    merged = _params("hardware", _read("hardware")) | _params(model, data)
    return PerfParams(model, data["config"], merged)


def hardware_params() -> PerfParams:
    """The hardware file alone: the per-operation energies and per-unit areas that price a config with no
    parameter file of its own (the RTL configs, timed from their own fields)."""
    return PerfParams("hardware", "", _params("hardware", _read("hardware")))


def _expert_shape(cfg) -> tuple[int, int, int]:
    return cfg.moe.d_model, cfg.moe.d_ff, cfg.moe.shared_experts


def params_for(cfg) -> PerfParams | None:
    """The full-size parameters of the paper model ``cfg`` is, recognised by its content, never its name: the
    expert shape (d_model, d_ff, shared experts) of the model's preset, which no two paper models share and
    which a sweep's axes over layers, experts, top-k, sequences or hardware leave unchanged. None: ``cfg`` is no
    paper model (it is timed from its own RTL fields, ``HardwareTiming.scaled``)."""
    from ..config import load_config  # noqa: PLC0415 (the configs import nothing of perf)
    for model in model_names():
        params = load_params(model)
        if _expert_shape(load_config(params.config)) == _expert_shape(cfg):
            return params
    return None
