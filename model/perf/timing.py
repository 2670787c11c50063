"""The timing interface between hardware blocks and the performance model.

A :class:`HardwareTiming` holds every latency and throughput the model uses, in cycles of one clock. Two
constructors fill it:

- :meth:`HardwareTiming.full_size`: the paper's wafer from :class:`~mozart.model.perf.params.PerfParams`
  (1 GHz; HBM2 or SSD).
- :meth:`HardwareTiming.scaled`: a small config (``tiny``, ``wafer4x4``) from the RTL parameters of the config:
  one ``flit_bits`` flit per cycle per link, ``dram.word_bits`` per cycle from DRAM, ``mac_lanes`` MACs per
  cycle, ``t_rcd + t_cl`` DRAM latency, the golden model's element widths. So the wafer co-simulation can
  compare RTL cycle counts with the model on the same config.

RTL blocks document their latency and throughput as properties; plug them in with
:func:`dataclasses.replace`, e.g. ``replace(timing, hop_cycles=switch.latency,
reduce_bytes_per_cycle=switch.reduce_flits_per_cycle * timing.flit_bytes)``.

Members
-------
clock_hz : float
    Cycles per second (reports convert cycles to seconds with it).
flit_bytes : int
    Packet granularity: a packet is one header flit plus its payload rounded up to flits.
burst_flits : int
    Payload flits of one memory packet (a DRAM burst); the per-token mode cuts streams into such bursts.
link_bytes_per_cycle : float
    Per direction, per tree link.
mesh_link_bytes_per_cycle : float
    Per direction, per mesh link (the tree's total wire budget spread over the mesh's links).
hop_cycles : float
    Latency of one switch/router hop, added once per hop of a transfer.
reduce_bytes_per_cycle : float
    Partials a switch can add per cycle (in-network reduction throughput).
chiplet_macs_per_cycle, root_macs_per_cycle : float
    Multiply-accumulates per cycle of an expert chiplet and of the attention (root) chiplet.
sram_bytes_per_cycle : float
    Bandwidth from a chiplet's stacked SRAM to its arrays: every resident expert's weights are read once per
    dispatch (weight-stationary), so a dispatch takes at least ``weights / sram_bytes_per_cycle``.
token_overhead_cycles : float
    Fixed cycles per token a chiplet spends outside MACs (gate scaling, local sum, control).
dram_bytes_per_cycle, dram_latency_cycles : float
    One group's DRAM: peak bandwidth and first-word latency of a stream.
dram_channels : int
    Streams a group DRAM serves at once; each gets ``dram_bytes_per_cycle / dram_channels``.
attention_dram_bytes_per_cycle : float
    The attention chiplet's DRAM (0: no attention DRAM traffic).
act_bytes, partial_bytes, weight_bytes : float
    Bytes of one activation, partial sum (or gradient) and weight.
hbm_expert_layers : int or None
    Layers whose expert weights fit a group's DRAM (:mod:`.capacity`); the later layers' loads and write-backs
    stream from the slow tier at ``overflow_bytes_per_cycle`` on its own channel. None: everything fits.
overflow_bytes_per_cycle : float
    The slow (SSD) tier's bandwidth per group.
root_port_bytes_per_cycle : float
    The root's one input port that every up link merges into (the RTL root's PacketMux), shared by all
    groups' results; 0 (the full-size and scaled timings): each up link has a port of its own.
expert_arrays, root_arrays : SystolicArrays or None
    The systolic arrays of an expert chiplet and of the attention chiplet (:mod:`.systolic`); None (the
    scaled RTL timing) keeps the MAC-rate formulas.

Methods
-------
chiplet_cycles(pairs, tokens, experts, macs_per_pair, expert_weight_bytes, backward=False)
    The chiplet's cycles per dispatch (the cycles-per-token formula): ``max(pairs * macs_per_pair /
    chiplet_macs_per_cycle, experts * expert_weight_bytes / sram_bytes_per_cycle) + tokens *
    token_overhead_cycles``. A subclass may replace it with an RTL block's measured formula.
dispatch_cycles(expert_tokens, pairs, tokens, workload, backward)
    The engine's entry: with ``expert_arrays``, the experts' GEMMs on the systolic arrays (one expert after
    another, docs/paper.md) or the SRAM bound, whichever is longer; without, :meth:`chiplet_cycles`.
attention_cycles(tokens, workload, backward)
    The attention chiplet's compute for one micro-batch: its GEMMs on ``root_arrays``, or the MAC-rate formula.
packet_bytes(payload_bytes)
    Link bytes of one packet (header flit + payload flits).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from ..errors import ConfigError
from .capacity import hbm_layers
from .systolic import SystolicArrays, attention_gemms, expert_gemms

__all__ = ["HardwareTiming", "DRAM_KINDS"]

DRAM_KINDS = ("hbm2", "ssd")


@dataclass(frozen=True)
class HardwareTiming:
    clock_hz: float
    flit_bytes: int
    burst_flits: int
    link_bytes_per_cycle: float
    mesh_link_bytes_per_cycle: float
    hop_cycles: float
    reduce_bytes_per_cycle: float
    chiplet_macs_per_cycle: float
    root_macs_per_cycle: float
    sram_bytes_per_cycle: float
    token_overhead_cycles: float
    dram_bytes_per_cycle: float
    dram_latency_cycles: float
    dram_channels: int
    attention_dram_bytes_per_cycle: float
    act_bytes: float
    partial_bytes: float
    weight_bytes: float
    expert_arrays: SystolicArrays | None = None
    root_arrays: SystolicArrays | None = None
    hbm_expert_layers: int | None = None
    overflow_bytes_per_cycle: float = 0.0
    root_port_bytes_per_cycle: float = 0.0

    def __post_init__(self) -> None:
        for name in ("clock_hz", "link_bytes_per_cycle", "mesh_link_bytes_per_cycle", "reduce_bytes_per_cycle",
                     "chiplet_macs_per_cycle", "root_macs_per_cycle", "sram_bytes_per_cycle",
                     "dram_bytes_per_cycle", "act_bytes", "partial_bytes", "weight_bytes"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"timing.{name} must be positive, not {getattr(self, name)!r}")
        if self.dram_channels < 1:
            raise ConfigError(f"timing.dram_channels must be at least 1, not {self.dram_channels!r}")

    # -- derived -------------------------------------------------------------------------------------------
    def packet_bytes(self, payload_bytes: float) -> float:
        """Bytes a packet occupies on a link: header flit plus payload rounded up to flits."""
        return self.flit_bytes * (1 + math.ceil(payload_bytes / self.flit_bytes))

    def chiplet_cycles(self, pairs: float, tokens: float, experts: int, macs_per_pair: float,
                       expert_weight_bytes: float, backward: bool = False) -> float:
        """Cycles a chiplet takes for one dispatch: ``pairs`` (token, expert) computations of ``tokens`` tokens
        on ``experts`` resident experts. MAC-bound or bound by reading each expert's weights from SRAM once,
        plus a fixed cost per token (``macs_per_pair`` already says which pass it is)."""
        macs = pairs * macs_per_pair / self.chiplet_macs_per_cycle
        sram = experts * expert_weight_bytes / self.sram_bytes_per_cycle
        return max(macs, sram) + tokens * self.token_overhead_cycles

    def dispatch_cycles(self, expert_tokens, pairs: float, tokens: float, workload, backward: bool) -> float:
        """Cycles of one dispatch of ``tokens`` tokens, ``pairs`` (token, expert) pairs, ``expert_tokens[i]``
        of them for its ``i``-th expert (only read with systolic arrays)."""
        weight_bytes = workload.expert_weight_elements * self.weight_bytes
        if self.expert_arrays is None:
            return self.chiplet_cycles(pairs, tokens, len(expert_tokens), workload.expert_macs_per_pair(backward),
                                       weight_bytes, backward)
        systolic = sum(_expert_cycles(self.expert_arrays, int(t), workload.d_model, workload.d_ff,
                                      workload.expert_matrices, backward) for t in expert_tokens)
        sram = len(expert_tokens) * weight_bytes / self.sram_bytes_per_cycle
        return max(systolic, sram) + tokens * self.token_overhead_cycles

    def attention_cycles(self, tokens: int, workload, backward: bool) -> float:
        """The attention chiplet's compute cycles for one micro-batch of ``tokens`` tokens."""
        if self.root_arrays is None:
            return tokens * workload.root_macs_per_token(backward) / self.root_macs_per_cycle
        return _attention_cycles(self.root_arrays, tokens, workload, backward)

    @property
    def channel_bytes_per_cycle(self) -> float:
        return self.dram_bytes_per_cycle / self.dram_channels

    def seconds(self, cycles: float) -> float:
        return cycles / self.clock_hz

    # -- constructors --------------------------------------------------------------------------------------
    @classmethod
    def full_size(cls, params, cfg, dram: str = "hbm2", reading: str = "per-layer") -> "HardwareTiming":
        """The paper's wafer: ``params`` is a :class:`PerfParams`, ``cfg`` its wafer config (the tree shape),
        ``dram`` is ``"hbm2"`` or ``"ssd"``; ``reading`` of the micro-batches sets how many saved activations
        share the DRAM with the weights (:mod:`.capacity`)."""
        if dram not in DRAM_KINDS:
            raise ConfigError(f"dram must be one of {', '.join(DRAM_KINDS)}, not {dram!r}")
        p = params
        clock = p.clock_ghz * 1e9
        per_cycle = lambda gbps: gbps * 1e9 / clock  # noqa: E731 (GB/s -> bytes per cycle)
        link = per_cycle(p.wire_gbps * p.link_wires)
        # The mesh gets the tree's wire budget (root and leaf links; memory controllers attach natively).
        tree_links = cfg.groups * (1 + cfg.chiplets_per_group)
        mesh_links = _mesh_links(cfg.groups, cfg.chiplets_per_group, p.mesh_root_links)
        mesh_wires = math.floor(tree_links * p.link_wires / mesh_links)
        dram_gbps = p.hbm_gbps if dram == "hbm2" else p.ssd_gbps
        dram_rate = per_cycle(dram_gbps)
        macs = lambda tiles: tiles * p.arrays_per_tile * p.pes_per_array  # noqa: E731
        capacity = hbm_layers(p, cfg, reading)
        overflow = dram == "hbm2" and capacity.overflow_layers > 0  # an SSD tier holds everything
        return cls(
            clock_hz=clock, flit_bytes=p.link_wires // 8, burst_flits=cfg.hardware.max_burst_flits,
            link_bytes_per_cycle=link,
            mesh_link_bytes_per_cycle=per_cycle(p.wire_gbps * mesh_wires),
            hop_cycles=p.hop_ns * p.clock_ghz, reduce_bytes_per_cycle=p.reduce_ports * link,
            chiplet_macs_per_cycle=macs(p.tiles_per_chiplet), root_macs_per_cycle=macs(p.root_tiles),
            sram_bytes_per_cycle=per_cycle(p.sram_gbps_per_tile * p.tiles_per_chiplet),
            token_overhead_cycles=0.0, dram_bytes_per_cycle=dram_rate,
            dram_latency_cycles=p.dram_latency_ns * p.clock_ghz,
            # Concurrent streams: as many as one link can carry of the DRAM's bandwidth (HBM2: 4, SSD: 1).
            dram_channels=max(1, math.floor(dram_rate / link)),
            attention_dram_bytes_per_cycle=p.attention_stacks * dram_rate,
            act_bytes=p.element_bytes, partial_bytes=p.element_bytes, weight_bytes=p.element_bytes,
            expert_arrays=SystolicArrays.square(p.pes_per_array, p.tiles_per_chiplet * p.arrays_per_tile),
            root_arrays=SystolicArrays.square(p.pes_per_array, p.root_tiles * p.arrays_per_tile),
            hbm_expert_layers=capacity.layers_in_hbm if overflow else None,
            overflow_bytes_per_cycle=per_cycle(p.ssd_gbps) if overflow else 0.0)

    @classmethod
    def scaled(cls, cfg) -> "HardwareTiming":
        """A small config's RTL: one flit per cycle per link, ``mac_lanes`` MACs and a DRAM word per cycle."""
        hw, num, dram = cfg.hardware, cfg.numerics, cfg.dram
        flit = hw.flit_bits // 8
        links = cfg.groups * (1 + cfg.chiplets_per_group)
        mesh = _mesh_links(cfg.groups, cfg.chiplets_per_group, cfg.groups)
        return cls(
            clock_hz=1e9, flit_bytes=flit, burst_flits=hw.max_burst_flits, link_bytes_per_cycle=flit,
            mesh_link_bytes_per_cycle=flit * links / mesh, hop_cycles=1.0,
            reduce_bytes_per_cycle=flit, chiplet_macs_per_cycle=hw.mac_lanes, root_macs_per_cycle=hw.mac_lanes,
            sram_bytes_per_cycle=hw.mac_lanes * max(1, num.weight_bits // 8), token_overhead_cycles=1.0,
            dram_bytes_per_cycle=dram.word_bits / 8, dram_latency_cycles=dram.t_rcd + dram.t_cl,
            dram_channels=1, attention_dram_bytes_per_cycle=dram.word_bits / 8,
            act_bytes=num.act_bits / 8, partial_bytes=num.partial_bits / 8, weight_bytes=num.weight_bits / 8)


@lru_cache(maxsize=None)
def _expert_cycles(arrays: SystolicArrays, tokens: int, d_model: int, d_ff: int, matrices: int,
                   backward: bool) -> int:
    return arrays.cycles(expert_gemms(tokens, d_model, d_ff, matrices, backward))


@lru_cache(maxsize=None)
def _attention_cycles(arrays: SystolicArrays, tokens: int, workload, backward: bool) -> int:
    w = workload
    if not w.attention_params:
        return 0
    other = w.root_weight_elements - w.attention_params  # router and shared experts
    return arrays.cycles(attention_gemms(tokens, w.seq_len, w.d_model, w.q_dim, w.kv_dim, w.head_dim, other,
                                         backward))


def _mesh_links(rows: int, cols: int, root_links: int) -> int:
    """Bidirectional links of a rows x cols mesh plus the root's links."""
    return rows * (cols - 1) + cols * (rows - 1) + root_links
