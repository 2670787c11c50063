"""Cross-check of :mod:`.systolic` against SCALE-Sim (``scalesim`` on PyPI, a cycle-level systolic-array simulator).

:func:`scalesim_cycles` runs one GEMM on one weight-stationary array in SCALE-Sim and returns its compute
cycles: the rows of the demand matrices its ``systolic_compute_ws`` generates, one row per cycle. SCALE-Sim's
memory model is not run: in scalesim 3.0.0 it fails under NumPy 2 (``int()`` of a one-element array in
``double_buffered_scratchpad_mem.service_memory_requests``), and our systolic model has no memory stalls either
(the SRAM bandwidth bound is a separate term of the chiplet's time).

:func:`crosscheck` compares, for each expert GEMM of the three paper models at several token counts, our
chiplet cycles (:meth:`SystolicArrays.gemm_cycles`) with SCALE-Sim's cycles for the busiest array's part of the
GEMM (:meth:`SystolicArrays.array_share`). ``scalesim`` is imported only here, and only when called.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .systolic import SystolicArrays, expert_gemms

__all__ = ["scalesim_cycles", "crosscheck", "Row"]

_CONFIG = """[general]
run_name = mozart

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = 1024
FilterSramSzkB = 1024
OfmapSramSzkB = 1024
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Dataflow = ws
Bandwidth = 10
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
FilterCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 10
IfmapSRAMBankPort = 2
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 10
FilterSRAMBankPort = 2

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40
"""


def scalesim_cycles(m: int, k: int, n: int, rows: int, cols: int) -> int:
    """SCALE-Sim's compute cycles of ``[m x k] @ [k x n]`` on one ``rows x cols`` weight-stationary array."""
    from scalesim.scale_sim import scalesim  # noqa: PLC0415 (an optional dev dependency)
    from scalesim.single_layer_sim import single_layer_sim  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "arch.cfg").write_text(_CONFIG.format(rows=rows, cols=cols))
        (folder / "gemm.csv").write_text(f"Layer, M, N, K,\ngemm, {m}, {n}, {k},\n")
        (folder / "layout.csv").write_text("Layer name,\n")
        with contextlib.redirect_stdout(io.StringIO()):  # SCALE-Sim prints banners
            sim = scalesim(save_disk_space=True, verbose=False, config=str(folder / "arch.cfg"),
                           topology=str(folder / "gemm.csv"), layout=str(folder / "layout.csv"),
                           input_type_gemm=True)
            layer = single_layer_sim()
            layer.set_params(layer_id=0, config_obj=sim.config, topology_obj=sim.topo, layout_obj=sim.layout,
                             verbose=False)
            ops = layer.op_mat_obj
            layer.compute_system.set_params(config_obj=sim.config, ifmap_op_mat=ops.get_ifmap_matrix()[1],
                                            filter_op_mat=ops.get_filter_matrix()[1],
                                            ofmap_op_mat=ops.get_ofmap_matrix()[1])
            demand, _, _ = layer.compute_system.get_demand_matrices()
    return int(demand.shape[0])


@dataclass(frozen=True)
class Row:
    """One GEMM of the cross-check: ours is the chiplet's cycles, SCALE-Sim's the busiest array's."""

    model: str
    tokens: int
    phase: str
    gemm: tuple[int, int, int]
    count: int                          # GEMMs of this shape in the expert (gate and up: 2)
    share: tuple[int, int, int, int]   # (folds, m', k', n') of the busiest array
    ours: int
    scalesim: int

    @property
    def error(self) -> float:
        return self.ours / self.scalesim - 1


def crosscheck(shapes: dict[str, tuple[int, int, int]], token_counts, arrays: SystolicArrays) -> list[Row]:
    """Every distinct expert GEMM of ``shapes`` (model -> (d_model, d_ff, matrices)) at ``token_counts``,
    forward and backward, on ``arrays``: ours against SCALE-Sim's run of the busiest array's part."""
    rows = []
    for model, (d_model, d_ff, matrices) in shapes.items():
        for tokens in token_counts:
            for phase in ("forward", "backward"):
                for m, k, n, count in expert_gemms(tokens, d_model, d_ff, matrices, phase == "backward"):
                    share = arrays.array_share(m, k, n)
                    _, m_sub, k_sub, n_sub = share
                    theirs = scalesim_cycles(m_sub, k_sub, n_sub, arrays.rows, arrays.cols)
                    rows.append(Row(model, tokens, phase, (m, k, n), count, share, arrays.gemm_cycles(m, k, n), theirs))
    return rows
