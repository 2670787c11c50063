"""The regime of one MoE layer: which resource sets its time, as ratios to the expert compute.

Contract
--------
:func:`regime` takes a config and returns a :class:`Regime`: the busy cycles each resource needs for one
forward layer of a training step (``training.tokens_per_step`` tokens in ``training.micro_batches``
micro-batches, the per-layer reading of ``docs/performance.md`` §2.2), every expert equally loaded
(``tokens x top_k / experts`` pairs each), and their ratios to the expert compute of one chiplet. The cycles
come from the performance model's own code, nothing restated:

- a full-size paper model (:func:`~mozart.model.perf.parameters.params_for` recognises it):
  :meth:`HardwareTiming.full_size` and :meth:`Workload.full_size` (systolic arrays, SRAM bound, HBM2 or the
  SSD tier for layers beyond the stack's capacity, the attention chiplet);
- any other config (the RTL wafers): :func:`~mozart.model.perf.rtl.rtl_timing` and :meth:`Workload.scaled`,
  with packet lengths in flits from the protocol (:class:`~mozart.model.protocol.Protocol`, the route words
  included) and the host port of :class:`~mozart.model.host.HostInterface`.

Resources (:data:`RESOURCES`), per layer:

``compute``         one chiplet's expert compute: per weight round and micro-batch, ``timing.dispatch_cycles``
                    of the round's resident experts on their tokens;
``weights``         one group's expert weights streamed from its DRAM: ``channels`` streams at the smaller of
                    a channel's and a leaf link's rate (the engine's ``_dram_stream``), plus the DRAM latency;
``dispatch``        one root link down, the Baseline's packets: one per (token, expert), ``1/groups`` of them;
``combine``         one root link up, the Baseline's partials: one per (token, expert);
``combine_port``    the root's input for every group's combines: the RTL merges its ``groups`` up-links into
                    one port of one flit per cycle (``hw/root.py``'s PacketMux), so it carries all of them;
                    the full-size model has a port per link (= ``combine``);
``root_feed``       producing the layer's tokens at the root: the attention chiplet's compute (full size) or,
                    in the RTL, where the host stands in for attention, the host port's TOKEN flits.

Besides the ratios: ``rounds`` (weight rounds: ``ceil(experts per chiplet / sram_slots)``), tokens per expert
per micro-batch, and ``dedup_saving``: the share of the Baseline's ``top_k`` replicas per token that
de-duplication removes under uniform routing on the contiguous placement, ``1 - E[distinct chiplets] / top_k``
(variant B's ``1 - C_T / k`` on a uniform trace; 0 when no two of a token's experts can share a chiplet).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ConfigError
from ..host import HostInterface, HostOp
from ..protocol import Protocol
from .parameters import params_for
from .rtl import rtl_timing
from .timing import DRAM_KINDS, HardwareTiming
from .workload import Workload

__all__ = ["Regime", "regime", "RESOURCES", "RATIOS", "format_regimes", "ATTENTION_REFERENCE",
           "host_attention_cycles_per_token"]

#: Resources whose per-layer busy cycles :func:`regime` computes (see the module docstring).
RESOURCES = ("compute", "weights", "dispatch", "combine", "combine_port", "root_feed")

#: The quantities :meth:`Regime.quantities` reports, in table order: resource ratios, then the structure.
RATIOS = tuple(f"{r}/compute" for r in RESOURCES[1:]) + ("rounds", "tokens/expert/micro-batch", "dedup_saving")


@dataclass(frozen=True)
class Regime:
    """One forward layer of ``config`` on ``timing_kind`` (``"full size, hbm2"``, ``"RTL"``...).

    ``cycles`` maps each of :data:`RESOURCES` to its busy cycles in the layer."""

    config: str
    timing_kind: str
    layer: int
    cycles: dict[str, float]
    rounds: int
    tokens_per_expert_per_micro_batch: float
    dedup_saving: float

    def ratio(self, resource: str) -> float:
        return self.cycles[resource] / self.cycles["compute"]

    @property
    def critical(self) -> str:
        """The resource with the most busy cycles: the layer cannot take less (every variant)."""
        return max(RESOURCES, key=lambda r: self.cycles[r])

    def quantities(self) -> dict[str, float]:
        """Every quantity of :data:`RATIOS` by name."""
        out = {f"{r}/compute": self.ratio(r) for r in RESOURCES[1:]}
        return out | {"rounds": float(self.rounds), "tokens/expert/micro-batch": self.tokens_per_expert_per_micro_batch,
                      "dedup_saving": self.dedup_saving}


def regime(cfg, *, dram: str = "hbm2", layer: int = 0) -> Regime:
    """The :class:`Regime` of forward layer ``layer`` of ``cfg`` (see the module docstring). ``dram`` (full-size
    models only) is ``"hbm2"`` or ``"ssd"``; a layer beyond the HBM2 stack's capacity streams from the SSD tier."""
    if dram not in DRAM_KINDS:
        raise ConfigError(f"dram must be one of {', '.join(DRAM_KINDS)}, not {dram!r}")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < cfg.moe.layers:
        raise ConfigError(f"layer must be in 0..{cfg.moe.layers - 1}, not {layer!r}")
    params = params_for(cfg)
    moe, tokens, micro_batches = cfg.moe, cfg.training.tokens_per_step, cfg.training.micro_batches
    pairs = tokens * moe.top_k
    if params is not None:
        timing, workload = HardwareTiming.full_size(params, cfg, dram), Workload.full_size(params, cfg)
        flit = timing.flit_bytes
        dispatch_flits = timing.packet_bytes(workload.dispatch_elements(False) * timing.act_bytes) / flit
        combine_flits = timing.packet_bytes(moe.d_model * timing.partial_bytes) / flit
        root_feed = micro_batches * timing.attention_cycles(tokens // micro_batches, workload, False)
        combine_port = None                                            # a port per root link: the link's time
        kind = f"full size, {dram}"
    else:
        timing, workload = rtl_timing(cfg), Workload.scaled(cfg)
        proto = Protocol(cfg)
        dispatch_flits, combine_flits = proto.dispatch_flits(1), 1 + proto.partial_flits
        root_feed = tokens * HostInterface(cfg).flits(HostOp.TOKEN)   # one host flit per cycle
        combine_port = pairs * combine_flits                           # one PacketMux, one flit per cycle
        kind = "RTL"
    link_cycles = timing.flit_bytes / timing.link_bytes_per_cycle      # cycles per flit on a link
    cycles = {
        "compute": _compute_cycles(cfg, timing, workload),
        "weights": _weight_cycles(cfg, timing, workload, layer),
        "dispatch": pairs / cfg.groups * dispatch_flits * link_cycles,
        "combine": pairs / cfg.groups * combine_flits * link_cycles,
        "root_feed": root_feed,
    }
    cycles["combine_port"] = cycles["combine"] if combine_port is None else combine_port
    slots = cfg.hardware.sram_slots
    return Regime(cfg.name, kind, layer, cycles, math.ceil(cfg.experts_per_chiplet / slots),
                  tokens // micro_batches * moe.top_k / moe.experts,
                  1 - _distinct_chiplets(cfg) / moe.top_k)


#: The full-size model whose attention a scaled wafer's host stands in for (docs/regime.md §3): the paper's
#: main model, from which ``paper4x4`` is derived.
ATTENTION_REFERENCE = "qwen3-30b-a3b"


def host_attention_cycles_per_token(cfg) -> float:
    """Cycles per token the host of a scaled (RTL) wafer spends standing in for the attention block: the
    reference model's attention-to-expert-compute ratio (``root_feed/compute`` of :data:`ATTENTION_REFERENCE`'s
    HBM2 layer, 5.23) times ``cfg``'s layer compute, over its tokens per step. So the scaled layer's attention is
    as long, relative to its expert compute, as the full-size one's (docs/regime.md §3: 175 cycles per token on
    ``paper4x4``)."""
    from ..config import load_config  # noqa: PLC0415
    if params_for(cfg) is not None:
        raise ConfigError(f"the host's attention stand-in is for scaled (RTL) configs; {cfg.name!r} is a full-size "
                          f"model with its own attention chiplet")
    reference = regime(load_config(ATTENTION_REFERENCE)).ratio("root_feed")
    return reference * regime(cfg).cycles["compute"] / cfg.training.tokens_per_step


def _compute_cycles(cfg, timing, workload) -> float:
    """One chiplet's expert compute in the layer: its experts in rounds of ``sram_slots``, each round's
    experts on each micro-batch's tokens (one dispatch per (micro-batch, round), as the schedule builds)."""
    moe, slots = cfg.moe, cfg.hardware.sram_slots
    micro_batches = cfg.training.micro_batches
    per_expert = cfg.training.tokens_per_step // micro_batches * moe.top_k / moe.experts
    total = 0.0
    for first in range(0, cfg.experts_per_chiplet, slots):
        resident = min(slots, cfg.experts_per_chiplet - first)
        hit = 1 - math.comb(moe.experts - resident, moe.top_k) / math.comb(moe.experts, moe.top_k)
        dispatch_tokens = cfg.training.tokens_per_step // micro_batches * hit  # only for a per-token overhead
        total += micro_batches * timing.dispatch_cycles([per_expert] * resident, resident * per_expert,
                                                        dispatch_tokens, workload, False)
    return total


def _weight_cycles(cfg, timing, workload, layer: int) -> float:
    """One group's experts streamed from its DRAM (or the SSD tier beyond the HBM2 stack's capacity): each
    stream on a channel at the smaller of the channel's and the leaf link's rate, as the engine streams."""
    group_bytes = cfg.experts_per_group * workload.expert_weight_elements * timing.weight_bytes
    if timing.hbm_expert_layers is not None and layer >= timing.hbm_expert_layers:
        channels, channel_rate = 1, timing.overflow_bytes_per_cycle
    else:
        channels, channel_rate = timing.dram_channels, timing.channel_bytes_per_cycle
    streams = min(channels, cfg.chiplets_per_group)     # a chiplet's images come one after another
    rate = streams * min(channel_rate, timing.link_bytes_per_cycle)
    return timing.dram_latency_cycles + group_bytes / rate


def _distinct_chiplets(cfg) -> float:
    """Expected distinct chiplets a token's ``top_k`` experts fall on, uniform routing, contiguous placement."""
    moe, per_chiplet = cfg.moe, cfg.experts_per_chiplet
    miss = math.comb(moe.experts - per_chiplet, moe.top_k) / math.comb(moe.experts, moe.top_k)
    return cfg.chiplets * (1 - miss)


def format_regimes(regimes: list[Regime]) -> list[str]:
    """A text table: one row per quantity of :data:`RATIOS` plus the critical resource, one column per regime."""
    head = ["quantity"] + [f"{r.config} ({r.timing_kind}, layer {r.layer})" for r in regimes]
    rows = [[name] + [f"{r.quantities()[name]:.3g}" for r in regimes] for name in RATIOS]
    rows.append(["critical resource"] + [r.critical for r in regimes])
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows]]
