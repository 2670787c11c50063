"""What a co-simulation run tells its cocotb testbench: the environment variables and the wafer's typed options.

:func:`mozart.sim.cosim.run` sets the variables; the testbench side reads them (:mod:`mozart.tb.env`). A
testbench with options of its own gets them as one typed object, serialised once to one variable and parsed once
(:class:`WaferOptions` for the wafer and the root), so the two sides cannot disagree on a name or a default.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Mapping

from .errors import ConfigError
from .lfsr import threshold

__all__ = ["ENV_CONFIG", "ENV_SEED", "ENV_SUMMARY", "ENV_DESIGN", "ENV_WAFER", "WaferOptions"]

ENV_CONFIG = "MOZART_CONFIG"    #: the config as TOML text
ENV_SEED = "MOZART_SEED"        #: the run's seed (an int)
ENV_SUMMARY = "MOZART_SUMMARY"  #: where the testbench writes its JSON summary
ENV_DESIGN = "MOZART_DESIGN"    #: the block's name
ENV_WAFER = "MOZART_WAFER"      #: :class:`WaferOptions` as JSON


@dataclass(frozen=True)
class WaferOptions:
    """MoE layers on the wafer (``tb/tb_wafer.py``; ``tb/tb_root.py`` reads ``variant`` and ``tokens``).

    Members
    -------
    variant : str
        ``baseline``, ``A``, ``B`` or ``C``.
    placement : str or None
        A placement method or an ``allocate`` placement file (absolute path); None: the variant's default.
    trace : str or None
        A trace file (absolute path); None: a synthetic trace of the run's seed.
    tokens, layer, layers : int
        Tokens per layer, the trace's first layer, and how many consecutive layers run.
    attention : bool or None
        The host stands in for attention between layers (None: when ``layers > 1``).
    slots : int or None
        Weight slots the schedule uses per chiplet (fewer than its experts: reloads mid-layer).
    skew : float or None
        Zipf exponent of the synthetic trace's expert popularity (hot experts).
    idle, backpressure : float
        Probabilities of an idle cycle before a host flit and of an output cycle not ready, in [0, 1).
    fault : str
        ``none``, ``drop-load`` (a LOAD left out of the program, to test the watchdog), ``drop-save`` (one
        TOKEN's ``save`` bit cleared, to test the check of the saved activations), ``drop-update`` (a training
        run's first UPDATE left out, to test the check of the updated weight images) or ``stray-write`` (its
        write-back sent where nothing belongs, to test the check of the untouched DRAM).
    timeline : bool
        Also record the cycle each host command and each output was taken.
    train : bool
        One training step: the forward through the layers, then the backward through them in reverse, with the
        weight updates and write-backs (:func:`mozart.model.wafer_run.build_run`).
    """

    variant: str = "C"
    placement: str | None = None
    trace: str | None = None
    tokens: int = 256
    layer: int = 0
    layers: int = 1
    attention: bool | None = None
    slots: int | None = None
    skew: float | None = None
    idle: float = 0.2
    backpressure: float = 0.2
    fault: str = "none"
    timeline: bool = False
    train: bool = False

    def __post_init__(self):
        threshold(self.idle)
        threshold(self.backpressure)
        # The testbench runs in a folder of its own: files must reach it by absolute paths.
        if self.trace is not None:
            object.__setattr__(self, "trace", str(Path(self.trace).absolute()))
        if self.placement is not None and self.placement.endswith(".json"):   # a file, not a method's name
            object.__setattr__(self, "placement", str(Path(self.placement).absolute()))

    def to_env(self) -> dict[str, str]:
        return {ENV_WAFER: json.dumps(asdict(self))}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "WaferOptions":
        """The options the runner passed (defaults without any)."""
        text = (os.environ if environ is None else environ).get(ENV_WAFER)
        if not text:
            return cls()
        try:
            values = json.loads(text)
        except ValueError:
            raise ConfigError(f"{ENV_WAFER} must be the JSON of WaferOptions, not {text!r}") from None
        known = {f.name for f in fields(cls)}
        if not isinstance(values, dict) or set(values) - known:
            raise ConfigError(f"{ENV_WAFER} must hold only the fields {sorted(known)}, not {text!r}")
        return cls(**values)
