"""The host's attention stand-in between MoE layers (test harness): releases micro-batches after timed waits."""

from __future__ import annotations

from amaranth import Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mozart.model.protocol import CYCLE_BITS

__all__ = ["HostAttention", "attention_step_layout"]

#: One attention step: it starts once the host holds ``outputs`` outputs and lasts ``cycles``.
attention_step_layout = data.StructLayout({"outputs": CYCLE_BITS, "cycles": CYCLE_BITS})


class HostAttention(wiring.Component):
    """Plays ``count`` attention steps one after another, as the host standing in for the attention block
    (:class:`mozart.model.wafer_run.AttentionStandIn`): step ``n`` starts in the first cycle in which the host holds
    at least its ``outputs`` outputs and step ``n - 1`` has ended, and ``released`` counts the steps that ended. A
    host command with ``release = n`` waits for ``released >= n`` (the :class:`StreamPlayer`'s gate).

    Members
    -------
    load_addr, load_data, load_en : In
        The backdoor write port of the steps (before ``start``).
    count : In(range(steps + 1))
        Steps to play.
    start : In(1)
        Level: play from the next edge on.
    outputs : In(CYCLE_BITS)
        Outputs the host holds (the recorder's frames).
    released : Out(range(steps + 1))
        Steps that have ended.
    busy : Out(1)
        A step is running (the watchdog counts it as progress).

    Latency and throughput: a step of ``c`` cycles that starts in cycle ``s`` is counted in ``released`` from
    cycle ``s + c`` on (``c = 0``: from ``s + 1``); steps run back to back.
    """

    def __init__(self, steps: int):
        self.steps = steps
        super().__init__({
            "load_addr": In(range(steps)), "load_data": In(attention_step_layout), "load_en": In(1),
            "count": In(range(steps + 1)), "start": In(1), "outputs": In(CYCLE_BITS),
            "released": Out(range(steps + 1)), "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.steps = steps = Memory(shape=attention_step_layout, depth=self.steps, init=[])
        load = steps.write_port()
        m.d.comb += [load.addr.eq(self.load_addr), load.data.eq(self.load_data), load.en.eq(self.load_en)]
        step = steps.read_port(domain="comb")
        m.d.comb += step.addr.eq(self.released)

        remaining = Signal(CYCLE_BITS)
        m.d.comb += self.busy.eq(remaining != 0)
        with m.If(self.start & (self.released < self.count)):
            with m.If(remaining > 1):
                m.d.sync += remaining.eq(remaining - 1)
            with m.Elif(remaining == 1):
                m.d.sync += [remaining.eq(0), self.released.eq(self.released + 1)]
            with m.Elif(self.outputs >= step.data.outputs):   # idle: start the next step
                with m.If(step.data.cycles <= 1):
                    m.d.sync += self.released.eq(self.released + 1)
                with m.Else():
                    m.d.sync += remaining.eq(step.data.cycles - 1)
        return m
