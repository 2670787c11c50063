"""The RTL's own constraints on a config, checked by the model so that ``mozart config check`` applies them.

A :class:`~mozart.model.config.WaferConfig` is valid for the reference and performance models when it loads;
the hardware (``mozart.hw``) needs more: :func:`hardware_problems` lists every rule a config breaks, and
:func:`check_hardware` raises the first as a :class:`~mozart.model.errors.ConfigError` of the usual form
("<field> must be <rule>, not <value>"). The full-size presets (``qwen3-30b-a3b``, ...) are meant for the
performance model only and break the MAC-lane rule; the co-simulation presets (``tiny``, ``wafer4x4``) keep
every rule.

Rules (each the condition a hardware block needs):

- ``hardware.mac_lanes`` divides ``moe.d_model``, ``moe.d_ff`` and the weights and activations per flit
  (``hardware.flit_bits // numerics.weight_bits``, ``// numerics.act_bits``): the expert chiplet's engine
  works in lane chunks that never straddle a row or a flit.
- ``dram.t_cl`` is at least 2: the RTL DRAM model spends one cycle reading its memory and one in its read
  buffer.
"""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["hardware_problems", "check_hardware", "MIN_RTL_T_CL"]

#: Cycles of CAS latency the RTL DRAM model needs at least (memory read, then the read buffer).
MIN_RTL_T_CL = 2


def hardware_problems(cfg) -> list[str]:
    """Every hardware rule ``cfg`` breaks, one message each ("<field> must be <rule>, not <value>")."""
    hw, num, moe = cfg.hardware, cfg.numerics, cfg.moe
    lanes = hw.mac_lanes
    problems = []
    for what, n in (("moe.d_model", moe.d_model), ("moe.d_ff", moe.d_ff),
                    ("hardware.flit_bits // numerics.weight_bits", hw.flit_bits // num.weight_bits),
                    ("hardware.flit_bits // numerics.act_bits", hw.flit_bits // num.act_bits)):
        if n % lanes:
            problems.append(f"hardware.mac_lanes must divide {what} ({n}) so that a lane chunk never straddles "
                            f"a row or a flit, not {lanes!r}")
    if cfg.dram.t_cl < MIN_RTL_T_CL:
        problems.append(f"dram.t_cl must be at least {MIN_RTL_T_CL} for the RTL DRAM model (one cycle of memory "
                        f"read and one of read buffer), not {cfg.dram.t_cl!r}")
    return problems


def check_hardware(cfg) -> None:
    """Raise :class:`ConfigError` with the first hardware rule ``cfg`` breaks (see :func:`hardware_problems`)."""
    problems = hardware_problems(cfg)
    if problems:
        raise ConfigError(f"{cfg.name}: {problems[0]}")
