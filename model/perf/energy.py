"""Energy of one training step by component, from the work the engine did and cited per-operation energies.

Contract
--------
The engine counts, per run (:class:`Traffic`): multiply-accumulates (experts and attention), bytes read from
the chiplets' stacked SRAM by the arrays (each resident expert's weights once per dispatch, as the engine's
SRAM bound), byte-hops over links (a transfer's bytes once per link of its path), and bytes to and from each
memory tier (group DRAMs, the attention chiplet's DRAM, the SSD tier). :func:`step_energy` prices them with the
``*_pj*`` parameters of ``hardware.toml`` (each with its source) and returns joules per component:

- ``macs``: ``macs x mac_pj`` (an FP16 multiply and add);
- ``sram``: ``sram bytes x sram_pj_per_byte``;
- ``links``: ``byte-hops x link_pj_per_byte_hop``;
- ``dram``: HBM2 bytes ``x 8 x hbm_pj_per_bit``;
- ``ssd``: SSD-tier bytes ``x ssd_pj_per_byte`` (on the ``"ssd"`` configuration every DRAM byte is an SSD byte).

Static power (leakage, refresh, idle links) is not counted: the result is the step's dynamic energy.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Traffic", "step_energy", "COMPONENTS"]

COMPONENTS = ("macs", "sram", "links", "dram", "ssd")


@dataclass
class Traffic:
    """What one engine run did (accumulated command by command)."""

    macs: float = 0.0
    sram_bytes: float = 0.0
    link_byte_hops: float = 0.0
    dram_bytes: float = 0.0   # group DRAMs and the attention chiplet's DRAM
    ssd_bytes: float = 0.0    # the slow tier of layers beyond a stack's capacity

    def add_moved(self, resource: tuple, nbytes: float) -> None:
        """``nbytes`` moved over ``resource`` (a link, a DRAM channel, the root DRAM or an SSD device)."""
        kind = resource[0]
        if kind in ("dram", "root-dram"):
            self.dram_bytes += nbytes
        elif kind == "ssd":
            self.ssd_bytes += nbytes
        elif kind not in ("chip", "root", "reduce", "root-port"):  # the root's input port is no hop
            self.link_byte_hops += nbytes


def step_energy(traffic: Traffic, params, dram: str) -> dict[str, float]:
    """Joules per component of :data:`COMPONENTS` for one step's ``traffic`` on ``dram`` (``"hbm2"`` or ``"ssd"``)."""
    p = params
    dram_bytes, ssd_bytes = traffic.dram_bytes, traffic.ssd_bytes
    if dram == "ssd":  # one SSD device in place of each stack: the DRAM channels are SSD reads and writes
        dram_bytes, ssd_bytes = 0.0, ssd_bytes + dram_bytes
    pj = {"macs": traffic.macs * p.mac_pj, "sram": traffic.sram_bytes * p.sram_pj_per_byte,
          "links": traffic.link_byte_hops * p.link_pj_per_byte_hop, "dram": dram_bytes * 8 * p.hbm_pj_per_bit,
          "ssd": ssd_bytes * p.ssd_pj_per_byte}
    return {k: v * 1e-12 for k, v in pj.items()}
