"""The wafer config: one frozen, validated description from which every width and count is derived.

A :class:`WaferConfig` has one section per concern; each section is a frozen dataclass that validates
itself at construction, and :class:`WaferConfig` checks the rules that span sections. Every error is a
:class:`~mozart.model.errors.ConfigError` of the form ``"<section>.<field> must be <rule>, not <value>"``.

Presets ship as TOML files in ``mozart.model.presets``; :func:`load_config` takes a preset name or a path,
:func:`override` derives a changed config from dotted keys (``{"moe.top_k": 4}``), :func:`to_toml` writes one
back out.

Sections
--------
``tree``      the NoP-Tree: ``groups`` switches under the root, ``chiplets_per_group`` expert chiplets each.
``moe``       the MoE layer: routed experts, top-k, d_model, d_ff, layers, shared experts.
``training``  one training step: sequences, sequence length, micro-batches (docs/paper.md: 32 x 256 in 4 of 8).
``numerics``  the fixed-point formats of the golden arithmetic (see ``mozart.model.golden``).
``hardware``  RTL parameters: flit width, buffer depths, tag width, MAC lanes, SRAM slots, reduction table.
``dram``      the per-group DRAM timing model: banks, rows, row size, data width, tRCD/tCL/tRP, refresh.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from .errors import ConfigError

__all__ = [
    "TreeConfig", "MoEConfig", "TrainingConfig", "NumericsConfig", "HardwareConfig", "DramConfig",
    "WaferConfig", "ACTIVATIONS", "load_config", "preset_names", "preset_text", "config_from_dict",
    "override", "to_dict", "to_toml", "NAME_PATTERN",
]

ACTIVATIONS = ("relu", "silu", "gelu")

#: A config's ``name`` keys build folders and file names: a safe file name, never a path.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")
_NAME_RULE = "a file-name-safe name (letters, digits, '.', '_', '+', '-'; first a letter or digit; up to 64)"


def _fail(path: str, rule: str, value: Any) -> None:
    raise ConfigError(f"{path} must be {rule}, not {value!r}")


def _check_int(path: str, value: Any, lo: int | None = None, hi: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(path, "an integer", value)
    if lo is not None and hi is not None and not lo <= value <= hi:
        _fail(path, f"between {lo} and {hi}", value)
    if lo is not None and value < lo:
        _fail(path, "positive" if lo == 1 else f"at least {lo}", value)
    if hi is not None and value > hi:
        _fail(path, f"at most {hi}", value)


class _Section:
    """Validation shared by the sections: every int field is checked against its ``bounds``."""

    SECTION = ""
    #: field name -> (lowest, highest or None) for integer fields
    BOUNDS: Mapping[str, tuple[int, int | None]] = {}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            lo, hi = self.BOUNDS.get(f.name, (None, None))
            value = getattr(self, f.name)
            if f.type in ("int", int):
                _check_int(f"{self.SECTION}.{f.name}", value, lo, hi)
        self._validate()

    def _validate(self) -> None:
        pass

    def _path(self, name: str) -> str:
        return f"{self.SECTION}.{name}"


@dataclass(frozen=True)
class TreeConfig(_Section):
    """The NoP-Tree: one root (attention chiplet), ``groups`` switches, ``chiplets_per_group`` leaves each."""

    SECTION = "tree"
    BOUNDS = {"groups": (1, 32), "chiplets_per_group": (1, 32)}

    groups: int
    chiplets_per_group: int

    @property
    def chiplets(self) -> int:
        return self.groups * self.chiplets_per_group


@dataclass(frozen=True)
class MoEConfig(_Section):
    """One MoE layer shape, repeated ``layers`` times. ``shared_experts`` run on every token (DeepSeek)."""

    SECTION = "moe"
    BOUNDS = {"experts": (1, 4096), "top_k": (1, None), "d_model": (1, None), "d_ff": (1, None),
              "layers": (1, None), "shared_experts": (0, None)}

    experts: int
    top_k: int
    d_model: int
    d_ff: int
    layers: int = 1
    shared_experts: int = 0

    def _validate(self) -> None:
        if self.top_k > self.experts:
            _fail(self._path("top_k"), f"at most moe.experts ({self.experts})", self.top_k)


@dataclass(frozen=True)
class TrainingConfig(_Section):
    """One training step: ``sequences`` of ``seq_len`` tokens, streamed in ``micro_batches``; the update's
    learning rate is ``2**-lr_shift``."""

    SECTION = "training"
    BOUNDS = {"sequences": (1, None), "seq_len": (1, None), "micro_batches": (1, None), "lr_shift": (0, 62)}

    sequences: int = 32
    seq_len: int = 256
    micro_batches: int = 4
    #: The learning rate of the weight update, ``2**-lr_shift`` (:mod:`mozart.model.golden_backward`).
    lr_shift: int = 8

    def _validate(self) -> None:
        if self.sequences % self.micro_batches:
            _fail(self._path("micro_batches"), f"a divisor of training.sequences ({self.sequences})",
                  self.micro_batches)

    @property
    def tokens_per_step(self) -> int:
        return self.sequences * self.seq_len

    @property
    def tokens_per_micro_batch(self) -> int:
        return self.tokens_per_step // self.micro_batches


@dataclass(frozen=True)
class NumericsConfig(_Section):
    """Fixed-point formats of the golden arithmetic; ``mozart.model.golden`` defines how they are used.

    Activations and weights are signed ``act_bits``/``weight_bits`` integers, dot products accumulate in
    signed ``acc_bits``, the hidden vector is requantised by ``hidden_shift`` and the expert output by
    ``output_shift`` (rounding and saturating). Gates are unsigned Q0.``gate_bits`` fractions. Combine
    partials and reductions are signed ``partial_bits`` integers with saturating addition.
    """

    SECTION = "numerics"
    BOUNDS = {"act_bits": (2, 16), "weight_bits": (2, 16), "acc_bits": (8, 64), "gate_bits": (1, 16),
              "partial_bits": (8, 64), "hidden_shift": (0, 63), "output_shift": (0, 63)}

    act_bits: int = 8
    weight_bits: int = 8
    acc_bits: int = 32
    gate_bits: int = 8
    partial_bits: int = 32
    hidden_shift: int = 7
    output_shift: int = 7
    activation: str = "relu"

    def _validate(self) -> None:
        if self.activation not in ACTIVATIONS:
            _fail(self._path("activation"), "one of " + ", ".join(ACTIVATIONS), self.activation)
        if self.acc_bits < self.act_bits + self.weight_bits:
            _fail(self._path("acc_bits"),
                  f"at least act_bits + weight_bits ({self.act_bits + self.weight_bits})", self.acc_bits)
        if self.partial_bits < self.act_bits:
            _fail(self._path("partial_bits"), f"at least numerics.act_bits ({self.act_bits})",
                  self.partial_bits)


@dataclass(frozen=True)
class HardwareConfig(_Section):
    """RTL parameters shared by every block.

    ``flit_bits``          data width of every link (one flit per cycle per link).
    ``buffer_depth``       input buffer depth of a switch port, in flits.
    ``tag_bits``           width of token tags and memory request ids.
    ``mac_lanes``          parallel multiply-accumulate lanes of an expert chiplet's compute engine.
    ``sram_slots``         expert weight slots of a chiplet's stacked SRAM (>= 2: load one while using one).
    ``reduction_entries``  tokens a switch can reduce at once (its reduction table).
    ``max_burst_flits``    payload flits of the longest memory or weight packet (a DRAM burst).
    ``token_slots``        activation-buffer entries of an expert chiplet (tokens it holds at once).
    ``root_queue_packets`` maximum-length (forward) dispatches the root's queue in front of each group's link holds.
    ``issue_window``       TOKEN commands the root holds at once: it dispatches the oldest whose experts are all
                           resident, so a token whose weights are in goes ahead of one that waits (1: in order).
    """

    SECTION = "hardware"
    BOUNDS = {"flit_bits": (16, 4096), "buffer_depth": (1, 4096), "tag_bits": (1, 24),
              "mac_lanes": (1, 4096), "sram_slots": (2, 256), "reduction_entries": (1, 4096),
              "max_burst_flits": (1, 4096), "token_slots": (1, 4096), "root_queue_packets": (1, 4096),
              "issue_window": (1, 16)}

    flit_bits: int = 64
    buffer_depth: int = 4
    tag_bits: int = 8
    mac_lanes: int = 4
    sram_slots: int = 2
    reduction_entries: int = 4
    max_burst_flits: int = 16
    token_slots: int = 4
    root_queue_packets: int = 4
    issue_window: int = 2

    def _validate(self) -> None:
        if self.flit_bits % 8:
            _fail(self._path("flit_bits"), "a multiple of 8", self.flit_bits)


@dataclass(frozen=True)
class DramConfig(_Section):
    """The group DRAM (HBM) timing model, in cycles of the wafer clock.

    ``banks`` x ``rows`` x ``row_words`` words of ``word_bits`` each; ``word_bits`` is the peak data width per
    cycle. An access to the open row of a bank is a hit (``t_cl``); to a closed bank a miss
    (``t_rcd + t_cl``); to another row of an open bank a conflict (``t_rp + t_rcd + t_cl``). Every
    ``refresh_interval`` cycles the DRAM stalls for ``refresh_cycles`` (0 and 0: no refresh). The controller
    keeps at most ``max_outstanding`` requests in flight. ``reorder_window`` is how many waiting requests the
    controller may choose among (row hits first, with an age limit); 1 serves strictly in arrival order.
    """

    SECTION = "dram"
    BOUNDS = {"banks": (1, 1024), "rows": (1, None), "row_words": (1, None), "word_bits": (8, 4096),
              "t_rcd": (0, 1000), "t_cl": (1, 1000), "t_rp": (0, 1000), "refresh_interval": (0, None),
              "refresh_cycles": (0, None), "max_outstanding": (1, 1024),
              "reorder_window": (1, 16)}

    banks: int = 4
    rows: int = 64
    row_words: int = 32
    word_bits: int = 64
    t_rcd: int = 4
    t_cl: int = 4
    t_rp: int = 4
    refresh_interval: int = 0
    refresh_cycles: int = 0
    max_outstanding: int = 4
    reorder_window: int = 1

    def _validate(self) -> None:
        if self.word_bits % 8:
            _fail(self._path("word_bits"), "a multiple of 8", self.word_bits)
        if (self.refresh_interval == 0) != (self.refresh_cycles == 0):
            _fail(self._path("refresh_cycles"),
                  "0 exactly when dram.refresh_interval is 0 (both 0 disables refresh)", self.refresh_cycles)
        if self.refresh_interval and self.refresh_cycles >= self.refresh_interval:
            _fail(self._path("refresh_cycles"),
                  f"less than dram.refresh_interval ({self.refresh_interval})", self.refresh_cycles)

    @property
    def words(self) -> int:
        return self.banks * self.rows * self.row_words

    @property
    def bytes(self) -> int:
        return self.words * self.word_bits // 8


@dataclass(frozen=True)
class WaferConfig:
    """A whole wafer: the sections above plus the rules that span them."""

    name: str
    tree: TreeConfig
    moe: MoEConfig
    training: TrainingConfig = field(default_factory=TrainingConfig)
    numerics: NumericsConfig = field(default_factory=NumericsConfig)
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    dram: DramConfig = field(default_factory=DramConfig)
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.fullmatch(self.name):
            _fail("name", _NAME_RULE, self.name)
        if self.moe.experts % self.tree.chiplets:
            _fail("moe.experts", f"a multiple of the chiplet count, tree.groups x tree.chiplets_per_group "
                  f"({self.tree.chiplets})", self.moe.experts)
        # The protocol's header must fit one flit; the protocol module owns that rule.
        from .protocol import check_fits  # noqa: PLC0415 (protocol imports this module)
        check_fits(self)

    # Derived counts: every block uses these, none restates them.
    @property
    def groups(self) -> int:
        return self.tree.groups

    @property
    def chiplets_per_group(self) -> int:
        return self.tree.chiplets_per_group

    @property
    def chiplets(self) -> int:
        return self.tree.chiplets

    @property
    def experts_per_chiplet(self) -> int:
        return self.moe.experts // self.tree.chiplets

    @property
    def experts_per_group(self) -> int:
        return self.experts_per_chiplet * self.tree.chiplets_per_group

    @property
    def expert_weight_bytes(self) -> int:
        """Bytes of one expert's W1 (d_ff x d_model) and W2 (d_model x d_ff)."""
        return 2 * self.moe.d_model * self.moe.d_ff * math.ceil(self.numerics.weight_bits / 8)


_SECTIONS = {
    "tree": TreeConfig, "moe": MoEConfig, "training": TrainingConfig, "numerics": NumericsConfig,
    "hardware": HardwareConfig, "dram": DramConfig,
}
_TOP_KEYS = ("name", "description")


def config_from_dict(data: Mapping[str, Any], source: str = "config") -> WaferConfig:
    """Build a :class:`WaferConfig` from nested dicts (the TOML shape); unknown keys are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: must be a table of sections, not {type(data).__name__}")
    for key in data:
        if key not in _SECTIONS and key not in _TOP_KEYS:
            raise ConfigError(f"{source}: unknown key {key!r}; known keys are "
                              + ", ".join([*_TOP_KEYS, *_SECTIONS]))
    for required in ("tree", "moe"):
        if required not in data:
            raise ConfigError(f"{source}: section [{required}] is missing")
    sections = {}
    for name, cls in _SECTIONS.items():
        table = data.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"{source}: {name} must be a table, not {table!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        for key in table:
            if key not in known:
                raise ConfigError(f"{source}: unknown key {name}.{key}; known keys of [{name}] are "
                                  + ", ".join(sorted(known)))
        try:
            sections[name] = cls(**table)
        except TypeError as exc:  # a required field is missing
            missing = sorted(f.name for f in dataclasses.fields(cls)
                             if f.name not in table and f.default is dataclasses.MISSING)
            raise ConfigError(f"{source}: [{name}] is missing " + ", ".join(f"{name}.{m}" for m in missing)) from exc
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    try:
        return WaferConfig(name=data.get("name", _name_from(source)), description=data.get("description", ""),
                           **sections)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def _name_from(source: str) -> str:
    """A config without ``name`` is named after its file: the stem, with unsafe characters replaced."""
    stem = re.sub(r"[^A-Za-z0-9._+-]", "_", Path(source).stem)[:64]
    return stem if NAME_PATTERN.fullmatch(stem) else f"config_{stem}"[:64]


def preset_names() -> list[str]:
    """Names of the presets shipped with the package."""
    files = resources.files("mozart.model.presets")
    return sorted(p.name[:-5] for p in files.iterdir() if p.name.endswith(".toml"))


def preset_text(name: str) -> str:
    """The TOML text of preset ``name``."""
    if name not in preset_names():
        raise ConfigError(f"preset must be one of {', '.join(preset_names())}, not {name!r}")
    return resources.files("mozart.model.presets").joinpath(f"{name}.toml").read_text()


def load_config(name_or_path: str | Path) -> WaferConfig:
    """Load a preset by name (``"tiny"``) or a TOML file by path."""
    text_name = str(name_or_path)
    if text_name in preset_names():
        text, source = preset_text(text_name), f"preset {text_name!r}"
    else:
        path = Path(name_or_path)
        if not path.is_file():
            raise ConfigError(f"config must be a preset name ({', '.join(preset_names())}) or an existing "
                              f"TOML file, not {text_name!r}")
        source = str(path)
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{source}: a config must be a UTF-8 TOML text file, not binary or other-encoded "
                              f"data (byte {exc.start} is {exc.object[exc.start:exc.start + 1]!r})") from None
        if "\x00" in text:
            raise ConfigError(f"{source}: a config must be a TOML text file, not binary data (a NUL byte at "
                              f"offset {text.index(chr(0))})")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    return config_from_dict(data, source)


def to_dict(cfg: WaferConfig) -> dict[str, Any]:
    """The nested-dict (TOML) shape of a config."""
    out: dict[str, Any] = {"name": cfg.name}
    if cfg.description:
        out["description"] = cfg.description
    for name in _SECTIONS:
        out[name] = dataclasses.asdict(getattr(cfg, name))
    return out


def override(cfg: WaferConfig, changes: Mapping[str, Any]) -> WaferConfig:
    """A new, validated config with dotted keys replaced: ``override(cfg, {"dram.banks": 8})``."""
    data = to_dict(cfg)
    for key, value in changes.items():
        section, _, name = key.partition(".")
        if section in _TOP_KEYS and not name:
            data[section] = value
            continue
        if section not in _SECTIONS or not name:
            raise ConfigError(f"override key must be <section>.<field> with a section of "
                              f"{', '.join(_SECTIONS)}, not {key!r}")
        data[section][name] = value
    return config_from_dict(data, f"{cfg.name} with overrides")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    raise TypeError(f"cannot write {value!r} as TOML")


def to_toml(cfg: WaferConfig) -> str:
    """TOML text that :func:`load_config` reads back into an equal config."""
    data = to_dict(cfg)
    lines = [f"{k} = {_toml_value(data[k])}" for k in _TOP_KEYS if k in data]
    for name in _SECTIONS:
        lines += ["", f"[{name}]"] + [f"{k} = {_toml_value(v)}" for k, v in data[name].items()]
    return "\n".join(lines) + "\n"
