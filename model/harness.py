"""The contract of the wafer's test harness (``mozart.hw.wafer_harness``): its capacity and its port meanings.

The harness wraps the wafer for co-simulation so that nothing runs in Python per cycle: a stream player sends the
host program, a recorder takes the outputs, both with seeded random idle and backpressure (:mod:`mozart.model.lfsr`),
and counters stamp cycles. The testbench loads and reads them through backdoors and checks everything in Python.
"""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["PROGRAM_FLITS", "OUTPUT_FLITS", "GRAD_FLITS", "ATTENTION_STEPS", "IDLE_STREAM", "BACKPRESSURE_STREAM",
           "check_fits"]

#: Host-program flits the player holds (a 1,024-token layer of the 4x4 wafer takes about 5,000; a deeper memory makes
#: the Verilog conversion slow).
PROGRAM_FLITS = 1 << 13
#: Output flits the recorder holds.
OUTPUT_FLITS = 1 << 13
#: GATE_GRAD flits (headers and payloads, from ``grads_out``) the second recorder holds: a backward token sends one
#: GATE_GRAD of ``1 + gate_grad_flits`` flits per replica, so this holds as many as the outputs' recorder.
GRAD_FLITS = 1 << 13
#: Attention stand-ins the harness holds (``mozart.model.wafer_run.AttentionStandIn``: one per micro-batch and layer).
ATTENTION_STEPS = 64
#: Names of the two coins, for :func:`mozart.model.lfsr.seed_for`.
IDLE_STREAM = "host idle"
BACKPRESSURE_STREAM = "host backpressure"


def check_fits(run) -> None:
    """Raise :class:`ConfigError` unless ``run`` (a :class:`mozart.model.wafer_run.WaferRun`) fits the harness:
    its host program, its outputs and its attention steps (checked before anything is built)."""
    from .host import HostInterface  # noqa: PLC0415
    host = HostInterface(run.cfg)
    flits = sum(host.command_flits(cmd) for cmd in run.commands)
    if flits > PROGRAM_FLITS:
        raise ConfigError(f"the host program must fit the harness's {PROGRAM_FLITS} flits, not {flits}: run fewer "
                          f"tokens or layers")
    outputs = run.outputs * host.output_flits
    if outputs > OUTPUT_FLITS:
        raise ConfigError(f"the outputs must fit the harness's {OUTPUT_FLITS} flits, not {outputs}: run fewer tokens "
                          f"or layers")
    grads = sum(len(packets) for packets in run.gate_grads().values()) * (1 + host.proto.gate_grad_flits)
    if grads > GRAD_FLITS:
        raise ConfigError(f"the gate gradients must fit the harness's {GRAD_FLITS} flits, not {grads}: run fewer "
                          f"tokens or layers")
    if len(run.attention) > ATTENTION_STEPS:
        raise ConfigError(f"the attention steps must fit the harness's {ATTENTION_STEPS}, not {len(run.attention)}: "
                          f"run fewer layers")
