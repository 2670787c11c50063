"""The contract of the NoP-Tree switch (:class:`mozart.hw.switch.Switch`)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import WaferConfig
from ..errors import ConfigError
from ..protocol import Protocol, index_bits
from .link_fifo import LinkFifoContract

__all__ = ["SwitchContract"]


@dataclass(frozen=True)
class SwitchContract:
    """Sizes, latency and throughput of one group's switch.

    Members
    -------
    group : int
        Which group (its node id is ``1 + group``).
    ports : int
        ``chiplets_per_group + 2``: up, the chiplets, the memory controller.
    buffer_depth : int
        Flits per input queue (default ``hardware.buffer_depth``).
    reduction_entries : int
        Reduction-table entries (default ``hardware.reduction_entries``).
    voq : bool
        Virtual output queues (default) or one FIFO per input.
    head_latency : int
        Cycles a head flit spends in the switch when nothing blocks it: its queue's latency
        (:class:`LinkFifoContract`; the queues' output registers are the hop's only stage).
    flits_per_cycle : float
        Sustained flits per cycle per port: its queue's throughput.
    guard_bits : int
        Extra accumulator bits of the reduction (``clog2(C)``), so a sum of ``C`` partials is exact.
    """

    cfg: WaferConfig
    group: int = 0
    buffer_depth: int | None = None
    reduction_entries: int | None = None
    voq: bool = True

    def __post_init__(self):
        cfg = self.cfg
        if not isinstance(cfg, WaferConfig):
            raise ConfigError(f"Switch cfg must be a WaferConfig, not {type(cfg).__name__}")
        topo = Protocol(cfg).topology
        if isinstance(self.group, bool) or not isinstance(self.group, int) or not 0 <= self.group < topo.groups:
            raise ConfigError(f"Switch group must be in 0..{topo.groups - 1} (tree.groups = {topo.groups}), "
                              f"not {self.group!r}")
        depth = cfg.hardware.buffer_depth if self.buffer_depth is None else self.buffer_depth
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ConfigError(f"Switch buffer_depth must be a positive number of flits, not {depth!r}")
        entries = cfg.hardware.reduction_entries if self.reduction_entries is None else self.reduction_entries
        if isinstance(entries, bool) or not isinstance(entries, int) or entries < 1:
            raise ConfigError(f"Switch reduction_entries must be a positive integer, not {entries!r}")
        if not isinstance(self.voq, bool):
            raise ConfigError(f"Switch voq must be True or False, not {self.voq!r}")
        if topo.switch_ports < 3:
            raise ConfigError(f"Switch ports must be at least 3 (up, a chiplet, memory), not {topo.switch_ports}")
        object.__setattr__(self, "buffer_depth", depth)
        object.__setattr__(self, "reduction_entries", entries)

    @property
    def protocol(self) -> Protocol:
        return Protocol(self.cfg)

    @property
    def ports(self) -> int:
        return self.protocol.topology.switch_ports

    @property
    def queue(self) -> LinkFifoContract:
        return LinkFifoContract(self.buffer_depth)

    @property
    def head_latency(self) -> int:
        return self.queue.latency

    @property
    def flits_per_cycle(self) -> float:
        return self.queue.throughput

    def reduction_rate(self, contributions: int) -> float:
        """Tokens reduced per cycle when each token has ``contributions`` partials: the reduction unit takes one
        flit per cycle, a partial being its header and ``partial_flits`` payload flits."""
        return 1.0 / (contributions * (self.protocol.partial_flits + 1))

    @property
    def reduction_tokens_per_cycle(self) -> float:
        return self.reduction_rate(self.protocol.topology.chiplets_per_group)

    @property
    def guard_bits(self) -> int:
        chiplets = self.protocol.topology.chiplets_per_group
        return index_bits(chiplets) if chiplets > 1 else 0
