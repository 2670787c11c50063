"""The wafer inside its co-simulation harness: host program player, output recorder and cycle stamps."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mozart.model.perf.breakdown import CATEGORIES
from mozart.model.harness import ATTENTION_STEPS, GRAD_FLITS, OUTPUT_FLITS, PROGRAM_FLITS
from mozart.model.lfsr import COIN_BITS, STATE_BITS
from mozart.model.protocol import COUNTER_BITS, CYCLE_BITS

from .dram import BackdoorSignature
from .host_attention import HostAttention, attention_step_layout
from .protocol import flit_layout
from .stream_player import StreamPlayer
from .stream_recorder import StreamRecorder
from .wafer import Wafer

__all__ = ["WaferHarness"]


class WaferHarness(wiring.Component):
    """:class:`~mozart.hw.wafer.Wafer` with a :class:`StreamPlayer` on ``host_in`` and a :class:`StreamRecorder` on
    ``host_out``, so a co-simulation needs no Python in the simulator's per-cycle loop.

    The testbench preloads the DRAMs (``backdoor``) and the host program (``program_*``), sets the seeds and
    thresholds of the idle and backpressure coins, raises ``start``, and waits in long timer steps while it polls
    ``output_flits`` and ``moved`` (the watchdog). Afterwards it reads the outputs (``output_*``) and the stamps.

    Members
    -------
    backdoor : In(BackdoorSignature(cfg)).array(G)
        The wafer's DRAM backdoors.
    program_addr, program_data, program_release, program_en, program_length : In
        The player's load port (with each flit, the attention steps it waits for) and the program's length.
    attention_addr, attention_data, attention_en, attention_count : In
        The host's attention stand-in (:class:`~mozart.hw.host_attention.HostAttention`): its load port and its
        number of steps (0: none); ``attention_released`` counts the steps that ended.
    start : In(1)
        Level: play and record from the next edge on; the cycle counter counts from it.
    idle_seed, idle_threshold, backpressure_seed, backpressure_threshold : In
        The two coins (:mod:`mozart.model.lfsr`).
    program_sent : Out
        Host flits taken by the wafer so far.
    output_flits, output_frames : Out(CYCLE_BITS)
        Output flits and frames recorded so far.
    output_addr, output_data, output_stamp_addr, output_stamp : recorder read backdoors.
    grads_flits : Out(CYCLE_BITS)
        Flits recorded from the wafer's ``grads_out`` (the GATE_GRAD packets, verbatim) so far, by a second
        recorder that is always ready once started (no backpressure coin: it never stalls the root's up links).
    grads_addr, grads_data : its read backdoor (``GRAD_FLITS`` flits, :mod:`mozart.model.harness`).
    command_stamp_addr, command_stamp : the cycle at which host command ``addr``'s last flit was taken.
    cycle : Out(CYCLE_BITS)
        Cycles since ``start``.
    first_command_cycle, last_output_cycle : Out(CYCLE_BITS)
        ``cycle`` when the first host flit and the last output flit so far were taken.
    busy, errors, link_valid, link_ready, dispatches, moved : the wafer's.
    outputs_expected : In(CYCLE_BITS)
        The run's outputs: the activity record counts from ``start`` until that many outputs are in.
    activity_busy, activity_exposed : Out(CYCLE_BITS).array
        The per-cycle activity record, counted: category ``i`` of
        :data:`mozart.model.perf.breakdown.CATEGORIES` (in that order: the host's attention stand-in, then the
        wafer's ``activity``) was busy in ``activity_busy[i]`` cycles, and was the first busy one in that order
        in ``activity_exposed[i]`` cycles; ``activity_exposed[-1]`` counts the cycles with nothing busy (idle:
        waiting on dependencies). The exposed counts sum to the cycles counted, as
        :func:`mozart.model.perf.breakdown.breakdown`'s do.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.wafer = Wafer(cfg)
        G, L = cfg.groups, len(self.wafer.links)
        super().__init__({
            "backdoor": In(BackdoorSignature(cfg)).array(G),
            "program_addr": In(range(PROGRAM_FLITS)), "program_data": In(flit_layout(cfg)),
            "program_en": In(1), "program_length": In(range(PROGRAM_FLITS + 1)),
            "program_release": In(range(ATTENTION_STEPS + 1)),
            "attention_addr": In(range(ATTENTION_STEPS)), "attention_data": In(attention_step_layout),
            "attention_en": In(1), "attention_count": In(range(ATTENTION_STEPS + 1)),
            "attention_released": Out(range(ATTENTION_STEPS + 1)),
            "start": In(1),
            "idle_seed": In(STATE_BITS), "idle_threshold": In(COIN_BITS),
            "backpressure_seed": In(STATE_BITS), "backpressure_threshold": In(COIN_BITS),
            "program_sent": Out(range(PROGRAM_FLITS + 1)),
            "output_flits": Out(CYCLE_BITS), "output_frames": Out(CYCLE_BITS),
            "output_addr": In(range(OUTPUT_FLITS)), "output_data": Out(flit_layout(cfg)),
            "output_stamp_addr": In(range(OUTPUT_FLITS)), "output_stamp": Out(CYCLE_BITS),
            "grads_flits": Out(CYCLE_BITS),
            "grads_addr": In(range(GRAD_FLITS)), "grads_data": Out(flit_layout(cfg)),
            "command_stamp_addr": In(range(PROGRAM_FLITS)), "command_stamp": Out(CYCLE_BITS),
            "cycle": Out(CYCLE_BITS), "first_command_cycle": Out(CYCLE_BITS), "last_output_cycle": Out(CYCLE_BITS),
            "busy": Out(1), "errors": Out(COUNTER_BITS), "link_valid": Out(L), "link_ready": Out(L),
            "dispatches": Out(COUNTER_BITS).array(L), "moved": Out(CYCLE_BITS),
            "outputs_expected": In(CYCLE_BITS),
            "activity_busy": Out(CYCLE_BITS).array(len(CATEGORIES)),
            "activity_exposed": Out(CYCLE_BITS).array(len(CATEGORIES) + 1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.wafer = wafer = self.wafer
        m.submodules.player = player = StreamPlayer(self.cfg, PROGRAM_FLITS, ATTENTION_STEPS)
        m.submodules.attention = attention = HostAttention(ATTENTION_STEPS)
        m.submodules.recorder = recorder = StreamRecorder(self.cfg, OUTPUT_FLITS)
        wiring.connect(m, player.o, wafer.host_in)
        wiring.connect(m, wafer.host_out, recorder.i)
        m.submodules.grads_recorder = grads_recorder = StreamRecorder(self.cfg, GRAD_FLITS)
        wiring.connect(m, wafer.grads_out, grads_recorder.i)
        m.d.comb += [grads_recorder.start.eq(self.start), grads_recorder.backpressure_threshold.eq(0),  # always ready
                     grads_recorder.now.eq(self.cycle), self.grads_flits.eq(grads_recorder.count),
                     grads_recorder.read_addr.eq(self.grads_addr), self.grads_data.eq(grads_recorder.read_data)]
        for g in range(self.cfg.groups):
            wiring.connect(m, wiring.flipped(self.backdoor[g]), wafer.backdoor[g])

        m.d.comb += [
            player.load_addr.eq(self.program_addr), player.load_data.eq(self.program_data),
            player.load_en.eq(self.program_en), player.load_release.eq(self.program_release),
            player.released.eq(attention.released), self.attention_released.eq(attention.released),
            attention.load_addr.eq(self.attention_addr), attention.load_data.eq(self.attention_data),
            attention.load_en.eq(self.attention_en), attention.count.eq(self.attention_count),
            attention.start.eq(self.start), attention.outputs.eq(recorder.frames),
            player.length.eq(self.program_length), player.start.eq(self.start),
            player.idle_seed.eq(self.idle_seed), player.idle_threshold.eq(self.idle_threshold),
            player.now.eq(self.cycle), self.program_sent.eq(player.sent),
            player.stamp_addr.eq(self.command_stamp_addr), self.command_stamp.eq(player.stamp_data),
            recorder.start.eq(self.start), recorder.backpressure_seed.eq(self.backpressure_seed),
            recorder.backpressure_threshold.eq(self.backpressure_threshold), recorder.now.eq(self.cycle),
            self.output_flits.eq(recorder.count), self.output_frames.eq(recorder.frames),
            recorder.read_addr.eq(self.output_addr), self.output_data.eq(recorder.read_data),
            recorder.stamp_addr.eq(self.output_stamp_addr), self.output_stamp.eq(recorder.stamp_data),
        ]
        with m.If(self.start):
            m.d.sync += self.cycle.eq(self.cycle + 1)
        self._count_activity(m, [attention.busy, *(wafer.activity[name] for name in CATEGORIES[1:])],
                             self.start & (recorder.frames < self.outputs_expected))
        started = Signal()
        with m.If(wafer.host_in.valid & wafer.host_in.ready & ~started):
            m.d.sync += [started.eq(1), self.first_command_cycle.eq(self.cycle)]
        with m.If(wafer.host_out.valid & wafer.host_out.ready):
            m.d.sync += self.last_output_cycle.eq(self.cycle)

        m.d.comb += [self.busy.eq(wafer.busy), self.errors.eq(wafer.errors), self.link_valid.eq(wafer.link_valid),
                     self.link_ready.eq(wafer.link_ready), self.moved.eq(wafer.moved)]
        for i in range(len(wafer.links)):
            m.d.comb += self.dispatches[i].eq(wafer.dispatches[i])
        return m

    def _count_activity(self, m, busy: list, counting) -> None:
        """Busy and exposed cycles per category (priority in list order) and idle cycles, while ``counting``."""
        earlier = 0   # some category before this one is busy
        with m.If(counting):
            for flag, busy_cycles, exposed in zip(busy, self.activity_busy, self.activity_exposed):
                m.d.sync += [busy_cycles.eq(busy_cycles + flag), exposed.eq(exposed + (flag & ~earlier))]
                earlier = earlier | flag
            idle = self.activity_exposed[-1]
            m.d.sync += idle.eq(idle + ~earlier)
