"""The performance model on the RTL blocks' documented numbers: what the wafer co-simulation is compared with.

:func:`rtl_timing` is :meth:`HardwareTiming.scaled` with the latency and throughput of the block contracts
(:mod:`mozart.model.blocks`) plugged in; :func:`in_order_timing` gives the root's in-order replay its buffers;
:func:`predict_cycles` is the prediction ``docs/wafer.md`` (section 7) explains. Nothing is fitted to measured
cycles, and no hardware is built to read a number.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..blocks import ChipletContract, MemoryControllerContract, RootContract, SwitchContract
from ..blocks.chiplet import BackwardGeometry
from ..protocol import Protocol
from .inorder import BackwardTiming, InOrderTiming
from .timing import HardwareTiming

__all__ = ["RtlTiming", "rtl_timing", "in_order_timing", "backward_timing", "predict_cycles", "predict_breakdown",
           "predict_training"]


@dataclass(frozen=True)
class RtlTiming(HardwareTiming):
    """:meth:`HardwareTiming.scaled` with the chiplet's RTL formula for its compute time: a token selecting
    ``n`` local experts takes ``n * cycles_per_expert`` cycles (:class:`~mozart.model.blocks.ChipletContract`), so
    a dispatch of ``pairs`` pairs takes ``pairs * cycles_per_expert``; backward, ``pairs * backward_cycles_per_job``
    (:class:`~mozart.model.blocks.chiplet.BackwardGeometry`: twice the MACs on the same lanes)."""

    cycles_per_expert: int = 1
    backward_cycles_per_job: int = 2
    #: The host's attention stand-in (:func:`~mozart.model.perf.regime.host_attention_cycles_per_token`); 0: none.
    host_attention_cycles_per_token: float = 0.0

    def chiplet_cycles(self, pairs, tokens, experts, macs_per_pair, expert_weight_bytes, backward=False) -> float:
        return pairs * (self.backward_cycles_per_job if backward else self.cycles_per_expert)

    def attention_cycles(self, tokens: int, workload, backward: bool) -> float:
        """The host's stand-in for attention: a whole number of cycles per micro-batch, as the host waits; none in
        the backward pass (the co-simulation's host sends the backward tokens at once)."""
        return 0.0 if backward else float(round(tokens * self.host_attention_cycles_per_token))


def rtl_timing(cfg, *, host_attention_cycles_per_token: float = 0.0) -> RtlTiming:
    """The scaled timing of ``cfg`` with the RTL blocks' numbers: switch hop latency and reduction rate, the
    chiplet's cycles per expert, the DRAM model's miss latency and the memory controller's weight-stream
    efficiency, and the root's one input port: the G up links merge in one packet mux
    (``RootContract.up_port_flits_per_cycle``), fed by the switches' up queues. ``host_attention_cycles_per_token``:
    the host's attention stand-in, as :meth:`RtlTiming.attention_cycles` charges it (0: the host feeds tokens at
    once)."""
    switch, memctrl, chiplet = SwitchContract(cfg), MemoryControllerContract(cfg), ChipletContract(cfg)
    port_flits_per_cycle = min(RootContract.up_port_flits_per_cycle, switch.flits_per_cycle)
    base = HardwareTiming.scaled(cfg)
    partial_bytes = cfg.moe.d_model * cfg.numerics.partial_bits / 8
    link_bytes_per_cycle = base.link_bytes_per_cycle * switch.flits_per_cycle
    return RtlTiming(**{f: getattr(base, f) for f in base.__dataclass_fields__} | dict(
        hop_cycles=float(switch.head_latency),
        link_bytes_per_cycle=link_bytes_per_cycle,
        root_port_bytes_per_cycle=base.link_bytes_per_cycle * port_flits_per_cycle,
        reduce_bytes_per_cycle=switch.reduction_rate(1) * partial_bytes,
        dram_latency_cycles=float(memctrl.dram.miss_latency),
        dram_bytes_per_cycle=memctrl.peak_words_per_cycle * cfg.dram.word_bits / 8 * memctrl.load_efficiency,
        token_overhead_cycles=0.0,
    ), cycles_per_expert=chiplet.cycles_per_expert, backward_cycles_per_job=BackwardGeometry(cfg).cycles_per_job,
        host_attention_cycles_per_token=host_attention_cycles_per_token)


def in_order_timing(cfg) -> InOrderTiming:
    """The RTL numbers of the root's in-order issue and the blocks' buffers (:class:`InOrderTiming`): the
    chiplet's ``token_slots`` and cycles per expert, the root's queue per group (depth in flits, latency), the
    switch's head latency and reduction table, the root's input port (its packet mux, fed by the switches' up
    queues), and the memory controller's weight stream (an image at its load rate; the DRAM's miss latency and
    the WEIGHT path's two hops)."""
    switch, root, chiplet = SwitchContract(cfg), RootContract(cfg), ChipletContract(cfg)
    memctrl = MemoryControllerContract(cfg)
    return InOrderTiming(cycles_per_expert=chiplet.cycles_per_expert, token_slots=chiplet.token_slots,
                         queue_flits=root.queue.depth, reduction_entries=switch.reduction_entries,
                         queue_latency=float(root.queue.latency), hop_cycles=float(switch.head_latency),
                         chiplet_input_flits=chiplet.input_flits, chiplet_output_flits=chiplet.output_flits,
                         loaded_cycles=1 + 2 * float(switch.head_latency),
                         port_flits_per_cycle=min(root.up_port_flits_per_cycle, switch.flits_per_cycle),
                         issue_window=cfg.hardware.issue_window, load_cycles=memctrl.image_stream_cycles,
                         load_latency=float(memctrl.dram.miss_latency + 2 * switch.head_latency))


def backward_timing(cfg) -> BackwardTiming:
    """The RTL numbers the replay of a training program adds (:class:`BackwardTiming`): the backward engine's
    cycles per job (``BackwardGeometry.cycles_per_job``); a backward replica's flits
    (``Protocol.dispatch_flits(1, backward=True)``); the restore of a saved ``z`` (``docs/chiplet.md``: the first
    MEM_READ one cycle after the token, a switch hop to the memory controller, its ``read_latency``, the MEM_DATA's
    hop back and its header and ``hidden_flits``); a GATE_GRAD's header and ``Protocol.gate_grad_flits``; the
    update unit's ``ChipletContract.update_cycles``; and the write-back's ack (``docs/memctrl.md``: the last flit's
    words reach the DRAM 2 cycles after it is taken, write buffer and gearbox; the MEM_ACK's hop back and its one
    flit). Assumption: the DRAM writes as fast as the link feeds it (the image stream at the load rate)."""
    switch, memctrl, chiplet, geometry = SwitchContract(cfg), MemoryControllerContract(cfg), ChipletContract(cfg), \
        BackwardGeometry(cfg)
    proto = Protocol(cfg)
    hop = float(switch.head_latency)
    restore_flits = 1 + geometry.hidden_flits
    return BackwardTiming(cycles_per_job=geometry.cycles_per_job, input_flits=proto.dispatch_flits(1, backward=True),
                          restore_cycles=1 + hop + memctrl.read_latency + hop + restore_flits,
                          restore_flits=restore_flits, gate_grad_flits=1 + proto.gate_grad_flits,
                          update_cycles=float(chiplet.update_cycles), ack_latency=2 + hop + 1)


def predict_cycles(run, *, in_order: bool = True) -> float:
    """The performance model's cycles for the forward pass of ``run``'s layers (a
    :class:`~mozart.model.wafer_run.WaferRun`: each layer's schedule, one after another on one engine, as a
    training step chains them) on :func:`rtl_timing`, with the host's attention stand-in when the run has one.

    ``in_order`` (default): the larger of the event engine's cycles and the replay of the run's host program
    through the root's in-order command stream with the RTL's finite buffers
    (:func:`mozart.model.perf.inorder.in_order_cycles`; a group's loads in order at the memory controller's
    load rate, none ending before the engine's). The engine has no buffer
    limits and takes each command when its own dependencies are met; the replay has no link contention beyond
    the root links, no reduction throughput and no activation saving; each is a bound the RTL's time cannot
    beat for the reasons the other leaves out. False: the engine alone.

    A training run: the whole step (forward, then backward), each of the two predictions over the step; the replay
    with :func:`backward_timing` (:func:`predict_training` gives the forward's part too)."""
    engine, load_times, _ = _run_engine(run, record=in_order)
    if not in_order:
        return engine.end
    return max(engine.end, _replay(run, load_times)[-1])


def _replay(run, load_times) -> list[float]:
    """The in-order replay of ``run``'s host program: when each output's last flit left (at least one 0.0)."""
    from .inorder import in_order_output_times  # noqa: PLC0415

    # a layer's table holds from its TABLE commands on: the forward's layers, then the backward's
    tables = [layer.expert_to_chiplet for layer in run.layers + run.backward_layers]
    times = in_order_output_times(run.cfg, run.commands, tables, load_times, in_order_timing(run.cfg), run.attention,
                                  backward_timing(run.cfg) if run.train else None)
    return times or [0.0]


def predict_breakdown(run):
    """The event engine's breakdown of ``run`` (:func:`mozart.model.perf.breakdown.breakdown`: busy and exposed
    cycles per category), next to which the co-simulation puts the RTL's activity record."""
    from .breakdown import breakdown  # noqa: PLC0415
    engine, _, _ = _run_engine(run, record=True)
    return breakdown(engine.records, engine.end)


def _run_engine(run, record: bool):
    """The event engine over ``run``'s layers (training: then their backward phases, the last layer first), the
    (ready, done) of every load per (chiplet, slot) in program order (the forward's, then the backward's), and the
    engine's time at the forward's end."""
    from .engine import Engine  # noqa: PLC0415
    from .network import make_network  # noqa: PLC0415
    from .regime import host_attention_cycles_per_token  # noqa: PLC0415
    from .workload import Workload  # noqa: PLC0415

    cfg = run.cfg
    timing = rtl_timing(cfg, host_attention_cycles_per_token=host_attention_cycles_per_token(cfg)
                        if run.attention else 0.0)
    engine = Engine(timing, make_network("tree", cfg, timing), Workload.scaled(cfg), "aggregate", record=record)
    load_times: dict = {}
    for layer in run.layers:
        schedule = layer.schedule
        engine.run(schedule, "forward", layer.experts)
        _record_loads(engine, schedule, "forward", load_times, record)
    forward_end = engine.end
    for layer in run.backward_layers:
        engine.run(layer.schedule, "backward", layer.experts)
        _record_loads(engine, layer.schedule, "backward", load_times, record)
    return engine, load_times, forward_end


def _record_loads(engine, schedule, phase: str, load_times: dict, record: bool) -> None:
    """Append the engine's (ready, done) of ``phase``'s loads of ``schedule`` (just run) per (chiplet, slot)."""
    from ..schedule import Load  # noqa: PLC0415
    for c in schedule.of_kind(Load, phase) if record else ():   # ids restart with every layer
        load_times.setdefault((c.chiplet, c.slot), []).append(engine.command_times[c.id])


def predict_training(run, *, in_order: bool = True) -> tuple[float, float]:
    """A training run's (forward, whole step) cycles on :func:`rtl_timing`: the event engine over the layers'
    forward phases, then their backward phases in reverse (the chiplet's backward jobs at
    ``BackwardGeometry.cycles_per_job``, the restore reads and the write-backs as the engine streams them, no
    attention in the backward); with ``in_order`` (default) each the larger of the engine's and the in-order
    replay's (:func:`predict_cycles`): the forward ends with the replay's last forward output."""
    engine, load_times, forward_end = _run_engine(run, record=in_order)
    if not in_order:
        return forward_end, engine.end
    times = _replay(run, load_times)
    forward_outputs = run.tokens * len(run.layers)
    return max(forward_end, times[forward_outputs - 1]), max(engine.end, times[-1])
