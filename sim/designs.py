"""The registry of hardware blocks that ``mozart verilog`` and ``mozart cosim`` know.

Each entry names the Amaranth component (``module:Class``, built as ``Class(cfg)``) and the cocotb
testbench module that co-simulates it. Entries are strings so that listing the blocks imports no HDL.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
from dataclasses import dataclass

from mozart.model.errors import MozartError


@dataclass(frozen=True)
class Design:
    name: str
    component: str   #: "mozart.hw.switch:Switch"; called with the config
    testbench: str   #: cocotb test module, e.g. "mozart.tb.tb_switch"
    toplevel: str    #: Verilog top module name
    summary: str
    #: The component co-simulation builds instead (the block inside its test harness), or None for the block
    #: itself; its Verilog top module is ``<toplevel>_harness``.
    harness: str | None = None

    def build(self, cfg, *, simulation: bool = False):
        """The component for ``cfg``: the block itself, or with ``simulation`` its harness if it has one."""
        module, _, cls = (self.harness if simulation and self.harness else self.component).partition(":")
        return getattr(importlib.import_module(module), cls)(cfg)

    @property
    def sim_toplevel(self) -> str:
        """The Verilog top module a co-simulation runs."""
        return f"{self.toplevel}_harness" if self.harness else self.toplevel

    def tests(self) -> list[str]:
        """The cocotb tests of the testbench module, in file order: the functions decorated ``@cocotb.test``
        (with or without arguments), read from its source with ``ast``, so cocotb is never imported."""
        spec = importlib.util.find_spec(self.testbench)
        if spec is None or spec.origin is None:
            raise MozartError(f"testbench of block {self.name!r} must be an importable module, not "
                              f"{self.testbench!r}")
        with open(spec.origin, encoding="utf-8") as f:
            tree = ast.parse(f.read(), spec.origin)
        return [node.name for node in tree.body
                if isinstance(node, (ast.AsyncFunctionDef, ast.FunctionDef))
                and any(_is_cocotb_test(d) for d in node.decorator_list)]


#: One line per block; add yours here.
DESIGNS: dict[str, Design] = {d.name: d for d in [
    Design("fifo", "mozart.hw.link_fifo:LinkFifo", "mozart.tb.tb_fifo", "link_fifo",
           "flit FIFO of a link (the switch input buffer); the co-simulation demo"),
    Design("switch", "mozart.hw.switch:Switch", "mozart.tb.tb_switch", "switch",
           "NoP-Tree switch: wormhole routing, round-robin arbitration, dispatch multicast, in-network reduction"),
    Design("chiplet", "mozart.hw.chiplet:ExpertChiplet", "mozart.tb.tb_chiplet", "expert_chiplet",
           "expert chiplet: weight SRAM slots, MAC-lane engine, bit-exact expert FFN and gated partial, saving"),
    Design("memctrl", "mozart.hw.memctrl:MemoryController", "mozart.tb.tb_memctrl", "memctrl",
           "memory controller + DRAM timing model of one group (reads, writes, weight streaming, errors)"),
    Design("root", "mozart.hw.root:Root", "mozart.tb.tb_root", "root",
           "root node: host command interface, dispatch with de-duplication, combine, outputs in token order"),
    Design("wafer", "mozart.hw.wafer:Wafer", "mozart.tb.tb_wafer", "wafer",
           "the whole wafer: root (host interface), G switches, G x C chiplets, G memory controllers + DRAM",
           harness="mozart.hw.wafer_harness:WaferHarness"),
]}


def _is_cocotb_test(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Attribute) and target.attr == "test" and isinstance(target.value, ast.Name)
            and target.value.id == "cocotb")


def design(name: str) -> Design:
    if name not in DESIGNS:
        raise MozartError(f"block must be one of {', '.join(sorted(DESIGNS)) or '(none yet)'}, not {name!r}")
    return DESIGNS[name]
