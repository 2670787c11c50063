"""The contract of the wafer's test harness (``mozart.hw.wafer_harness``): its capacity and its port meanings.

The harness wraps the wafer for co-simulation so that nothing runs in Python per cycle: a stream player sends the
host program, a recorder takes the outputs, both with seeded random idle and backpressure (:mod:`mozart.model.lfsr`),
and counters stamp cycles. The testbench loads and reads them through backdoors and checks everything in Python.
"""

from __future__ import annotations

__all__ = ["PROGRAM_FLITS", "OUTPUT_FLITS", "ATTENTION_STEPS", "IDLE_STREAM", "BACKPRESSURE_STREAM"]

#: Host-program flits the player holds (a 1,024-token layer of the 4x4 wafer takes about 5,000; a deeper memory makes
#: the Verilog conversion slow).
PROGRAM_FLITS = 1 << 13
#: Output flits the recorder holds.
OUTPUT_FLITS = 1 << 13
#: Attention stand-ins the harness holds (``mozart.model.wafer_run.AttentionStandIn``: one per micro-batch and layer).
ATTENTION_STEPS = 64
#: Names of the two coins, for :func:`mozart.model.lfsr.seed_for`.
IDLE_STREAM = "host idle"
BACKPRESSURE_STREAM = "host backpressure"
