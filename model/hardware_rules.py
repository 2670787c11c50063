"""The RTL's own constraints on a config, checked by the model so that ``mozart config check`` applies them.

A :class:`~mozart.model.config.WaferConfig` is valid for the reference and performance models when it loads;
the hardware (``mozart.hw``) needs more: :func:`hardware_problems` lists every rule a config breaks, and
:func:`check_hardware` raises the first as a :class:`~mozart.model.errors.ConfigError` of the usual form
("<field> must be <rule>, not <value>"). The full-size presets (``qwen3-30b-a3b``, ...) are meant for the
performance model only and break the MAC-lane rule; the co-simulation presets (``tiny``, ``wafer4x4``) keep
every rule.

Rules (each the condition a hardware block needs; the block contracts of :mod:`mozart.model.blocks` apply the same
functions, so there is one statement of each rule):

- ``hardware.mac_lanes`` divides ``moe.d_model``, ``moe.d_ff`` and the weights and activations per flit
  (``hardware.flit_bits // numerics.weight_bits``, ``// numerics.act_bits``): the expert chiplet's engine
  works in lane chunks that never straddle a row or a flit.
- ``dram.t_cl`` is at least 2: the RTL DRAM model spends one cycle reading its memory and one in its read
  buffer.
- ``dram.words`` holds the group's weight images and the chiplets' saved-activation region (every combine tag x
  chiplet x expert; :func:`mozart.model.golden.activation_addr`).
"""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["hardware_problems", "check_hardware", "lane_problems", "dram_model_problems",
           "activation_region_problems", "raise_first", "MIN_RTL_T_CL"]

#: Cycles of CAS latency the RTL DRAM model needs at least (memory read, then the read buffer).
MIN_RTL_T_CL = 2


def lane_problems(cfg) -> list[str]:
    """The MAC-lane rule (the expert chiplet's engine, :class:`mozart.model.blocks.EngineGeometry`)."""
    hw, num, moe = cfg.hardware, cfg.numerics, cfg.moe
    lanes = hw.mac_lanes
    return [f"hardware.mac_lanes must divide {what} ({n}) so that a lane chunk never straddles a row or a flit, "
            f"not {lanes!r}"
            for what, n in (("moe.d_model", moe.d_model), ("moe.d_ff", moe.d_ff),
                            ("hardware.flit_bits // numerics.weight_bits", hw.flit_bits // num.weight_bits),
                            ("hardware.flit_bits // numerics.act_bits", hw.flit_bits // num.act_bits))
            if n % lanes]


def dram_model_problems(cfg) -> list[str]:
    """The RTL DRAM model's rule (:class:`mozart.model.blocks.MemoryControllerContract`)."""
    if cfg.dram.t_cl < MIN_RTL_T_CL:
        return [f"dram.t_cl must be at least {MIN_RTL_T_CL} for the RTL DRAM model (one cycle of memory read and "
                f"one of read buffer), not {cfg.dram.t_cl!r}"]
    return []


def activation_region_problems(cfg) -> list[str]:
    """The DRAM capacity rule (the chiplets save activations at :func:`mozart.model.golden.activation_addr`)."""
    from .golden import activation_entry_words, activation_region_words  # noqa: PLC0415 (golden imports the protocol)
    from .protocol import Protocol  # noqa: PLC0415
    need = Protocol(cfg).activation_base + activation_region_words(cfg)
    if need <= cfg.dram.words:
        return []
    return [f"dram.words must hold the weight images and saved activations ({need} words: "
            f"{Protocol(cfg).saved_tokens} token records (moe.layers x the tokens of a training step) x "
            f"{cfg.chiplets_per_group} chiplets x {cfg.experts_per_chiplet} experts x {activation_entry_words(cfg)} "
            f"words), not {cfg.dram.words}"]


def hardware_problems(cfg) -> list[str]:
    """Every hardware rule ``cfg`` breaks, one message each ("<field> must be <rule>, not <value>")."""
    return lane_problems(cfg) + dram_model_problems(cfg) + activation_region_problems(cfg)


def raise_first(problems: list[str]) -> None:
    """Raise the first of ``problems`` as a :class:`ConfigError` (the hardware contracts' own check)."""
    if problems:
        raise ConfigError(problems[0])


def check_hardware(cfg) -> None:
    """Raise :class:`ConfigError` with the first hardware rule ``cfg`` breaks (see :func:`hardware_problems`)."""
    problems = hardware_problems(cfg)
    if problems:
        raise ConfigError(f"{cfg.name}: {problems[0]}")
