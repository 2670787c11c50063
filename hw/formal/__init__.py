"""Formal harnesses of the switch's blocks (one per block) and the mutants that show each property bites.

:data:`FORMAL_BLOCKS` is what ``mozart formal`` runs: a name, a summary and how to build the harness for a
config (``build(cfg, only=None, block=None)``; ``block`` replaces the block under test, e.g. by a mutant).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from mozart.model.errors import MozartError
from mozart.model.protocol import Protocol

__all__ = ["FormalBlock", "FORMAL_BLOCKS", "formal_block"]


@dataclass(frozen=True)
class FormalBlock:
    name: str
    summary: str
    make: Callable  #: make(cfg, **kwargs) -> FormalHarness
    harness: str    #: the harness class, "module:Class" inside this package (its PROPERTIES, without building it)

    def build(self, cfg, only=None, block=None):
        kwargs = {"only": only}
        if block is not None:
            kwargs["block"] = block
        return self.make(cfg, **kwargs)

    def harness_class(self):
        module, _, cls = self.harness.partition(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), cls)

    def properties(self, cfg, only=None) -> list[str]:
        """The properties a run checks (``only`` validated: ValueError), without building anything."""
        return self.harness_class().select(only)


def _fifo(cfg, **kw):
    from .link_fifo import LinkFifoHarness  # noqa: PLC0415 (harnesses import Amaranth only when built)
    return LinkFifoHarness(cfg, **kw)


def _arbiter(cfg, **kw):
    from .arbiter import ArbiterHarness  # noqa: PLC0415
    return ArbiterHarness(Protocol(cfg).topology.switch_ports + 1, **kw)  # the up port's: P queues + reducer


def _mux(cfg, **kw):
    from .packet_mux import PacketMuxHarness  # noqa: PLC0415
    return PacketMuxHarness(cfg, Protocol(cfg).topology.switch_ports + 1, **kw)


def _switch_input(port):
    def make(cfg, **kw):
        from .switch_input import SwitchInputHarness  # noqa: PLC0415
        return SwitchInputHarness(cfg, port, **kw)
    return make


def _reducer(cfg, **kw):
    from .reducer import ReducerHarness  # noqa: PLC0415
    return ReducerHarness(cfg, **kw)


def _switch(cfg, **kw):
    from .switch import SwitchHarness  # noqa: PLC0415
    return SwitchHarness(cfg, **kw)


FORMAL_BLOCKS: dict[str, FormalBlock] = {b.name: b for b in [
    FormalBlock("fifo", "LinkFifo (buffer_depth): stream rules, conservation, order, liveness", _fifo,
                "link_fifo:LinkFifoHarness"),
    FormalBlock("arbiter", "PacketArbiter (switch_ports + 1 requesters): one owner, lock, round-robin fairness",
                _arbiter, "arbiter:ArbiterHarness"),
    FormalBlock("mux", "PacketMux (switch_ports + 1 inputs): stream rules, conservation, no interleaving", _mux,
                "packet_mux:PacketMuxHarness"),
    FormalBlock("switch_input", "SwitchInput on the up port: multicast to exactly the mask, table allocation, "
                "liveness", _switch_input(0), "switch_input:SwitchInputHarness"),
    FormalBlock("switch_input_chiplet", "SwitchInput on chiplet port 1: routing and reducing partials",
                _switch_input(1), "switch_input:SwitchInputHarness"),
    FormalBlock("reducer", "Reducer (partial_bits 16, 2 entries): one saturated exact sum per tag, entries, "
                "backpressure", _reducer, "reducer:ReducerHarness"),
    FormalBlock("switch", "the whole Switch: stream rules and framing on every port, a watched packet's delivery",
                _switch, "switch:SwitchHarness"),
]}


def formal_block(name: str) -> FormalBlock:
    if name not in FORMAL_BLOCKS:
        raise MozartError(f"block must be one of {', '.join(FORMAL_BLOCKS)}, not {name!r}")
    return FORMAL_BLOCKS[name]
