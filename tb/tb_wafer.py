"""cocotb testbench of the whole wafer (design ``wafer``): one MoE layer end to end against the model.

The model (:func:`mozart.model.wafer_run.build_run`) gives the DRAM images, the host commands, the expected
outputs and the DISPATCH packets expected on every link. The testbench preloads every group's DRAM through its
backdoor, drives the commands on ``host_in`` with seeded random idle cycles, takes the outputs from
``host_out`` with seeded random backpressure, and checks:

- every output bit-exact against :func:`mozart.model.golden.moe_layer`, in token order;
- the DISPATCH packets counted by the hardware on every link equal the model's counts (C_T per link);
- everything drained at the end: no link holds a flit, the root is idle, no unexpected packet or bad memory
  request was seen;
- the cycles from the first command to the last output flit, next to the performance model's prediction
  (:func:`mozart.hw.wafer.predict_cycles`); the error is reported, not asserted (speed is the bench's job).

A watchdog fails a hang and names the stuck node: links blocked at their receiver, and the host command the
root is stuck on.

Environment (set by ``mozart cosim wafer`` and the tests): ``MOZART_VARIANT`` (baseline, A, B, C),
``MOZART_PLACEMENT`` (a placement method; default: ``mozart`` for C, ``contiguous`` otherwise),
``MOZART_TOKENS`` (256), ``MOZART_TRACE`` (a trace file; default a synthetic trace of the seed),
``MOZART_LAYER`` (0), ``MOZART_SLOTS`` (weight slots the schedule uses; fewer than the experts per chiplet
force reloads mid-layer), ``MOZART_SKEW`` (Zipf exponent of the synthetic trace: hot experts), ``MOZART_IDLE``
and ``MOZART_BACKPRESSURE`` (probabilities, default 0.2 each),
``MOZART_FAULT`` (``drop-load`` to test the watchdog), ``MOZART_TIMELINE`` (non-empty: the summary also lists
the cycle each host command and each output was taken, from the first command, for model-vs-RTL studies).
"""

from __future__ import annotations

import os
import time

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge

from mozart.hw.chiplet import DEFAULT_TOKEN_SLOTS, ChipletTiming
from mozart.model.host import HostInterface
from mozart.model.protocol import Protocol

from .env import clock_and_reset, env_int, rng, test_config, test_seed, write_summary
from .stream import StreamDriver, StreamMonitor
from .watchdog import Watchdog


def env_float(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {text!r}") from None


class LinkActivity:
    """The wafer's links as one watchdog port: ``transfers`` = cycles with movement (the hardware's ``moved``
    counter); ``describe()`` names every link whose sender holds a flit its receiver does not take."""

    name = "wafer links"
    pending = 0

    def __init__(self, dut, run):
        self.dut = dut
        self.topology = Protocol(run.cfg).topology
        self.run = run

    @property
    def transfers(self) -> int:
        return int(self.dut.moved.value)

    def blocked(self) -> list[str]:
        valid = self.dut.link_valid.value.to_unsigned()
        ready = self.dut.link_ready.value.to_unsigned()
        out = []
        for i, (a, b) in enumerate(self.topology.links):
            if (valid >> i) & 1 and not (ready >> i) & 1:
                out.append(f"{self.topology.node(b).label} does not take the flit {self.topology.node(a).label} "
                           f"offers")
        return out

    def describe(self) -> str:
        blocked = self.blocked()
        return "wafer links: " + ("; ".join(blocked) if blocked else "no link holds a flit")


class WaferBench:
    def __init__(self, dut):
        from mozart.model.trace_io import load_trace  # noqa: PLC0415
        from mozart.model.wafer_run import build_run  # noqa: PLC0415

        self.dut = dut
        self.cfg = cfg = test_config()
        self.proto = Protocol(cfg)
        self.host = HostInterface(cfg)
        trace_path = os.environ.get("MOZART_TRACE") or None
        self.run = build_run(cfg, trace=load_trace(trace_path) if trace_path else None, seed=test_seed(),
                             placement=os.environ.get("MOZART_PLACEMENT") or None,
                             variant=os.environ.get("MOZART_VARIANT") or "C",
                             tokens=env_int("MOZART_TOKENS", 256), layer=env_int("MOZART_LAYER", 0),
                             slots=env_int("MOZART_SLOTS", 0) or None,
                             skew=env_float("MOZART_SKEW", -1.0) if os.environ.get("MOZART_SKEW") else None,
                             fault=os.environ.get("MOZART_FAULT") or "none")
        self.idle = env_float("MOZART_IDLE", 0.2)
        self.backpressure = env_float("MOZART_BACKPRESSURE", 0.2)
        self.outputs: list[list[int]] = []
        self._frame: list[int] = []
        self.last_output_cycle = 0
        self.commands_done = 0
        self.command_cycles: list[int] = []   # cycle each host command's last flit was taken
        self.output_cycles: list[int] = []    # cycle each output's last flit was taken

    # -- callbacks -------------------------------------------------------------------------------------------
    def _output(self, flit) -> None:
        if flit.first:
            self._frame = []
        self._frame.append(flit.data)
        if flit.last:
            self.outputs.append(self._frame)
            self.last_output_cycle = self.clock.cycle
            self.output_cycles.append(self.clock.cycle)

    def _sent(self, flit) -> None:
        if flit.last:
            self.commands_done += 1
            self.command_cycles.append(self.clock.cycle)

    def pending(self) -> str:
        run = self.run
        if len(self.outputs) >= run.tokens:
            return ""
        where = (f"root stuck on host command {self.commands_done} of {len(run.commands)}: "
                 f"{run.commands[self.commands_done].describe()}" if self.commands_done < len(run.commands)
                 else "all host commands taken")
        return f"{run.tokens - len(self.outputs)} of {run.tokens} outputs outstanding; {where}"

    # -- phases ----------------------------------------------------------------------------------------------
    async def preload(self) -> None:
        """Every group's DRAM image through the backdoors, all groups in parallel, one word per cycle."""
        dut = self.dut
        streams = [[(base + i, w) for base, words in group for i, w in enumerate(words)] for group in self.run.dram]
        for step in range(max(len(s) for s in streams)):
            await FallingEdge(dut.clk)
            for g, s in enumerate(streams):
                bd = f"backdoor__{g}__"
                if step < len(s):
                    getattr(dut, bd + "addr").value = s[step][0]
                    getattr(dut, bd + "wdata").value = s[step][1]
                    getattr(dut, bd + "we").value = 1
                else:
                    getattr(dut, bd + "we").value = 0
        await FallingEdge(dut.clk)
        for g in range(len(streams)):
            getattr(dut, f"backdoor__{g}__we").value = 0

    async def run_layer(self) -> None:
        dut, run = self.dut, self.run
        for g in range(self.cfg.groups):
            getattr(dut, f"backdoor__{g}__we").value = 0
        self.clock = await clock_and_reset(dut)
        await self.preload()
        driver = StreamDriver(dut, "host_in", self.proto, idle=self.idle, rng=rng("host idle"))
        driver.on_sent.append(self._sent)
        monitor = StreamMonitor(dut, "host_out", self.proto, backpressure=self.backpressure,
                                rng=rng("host backpressure"), callback=self._output, keep=False)
        links = LinkActivity(dut, run)
        chip = ChipletTiming(self.cfg)
        quiet = DEFAULT_TOKEN_SLOTS * chip.cycles_per_token(self.cfg.experts_per_chiplet)
        self.watchdog = Watchdog(dut.clk, [driver, monitor, links], timeout=int(4 * quiet / (1 - self.backpressure))
                                 + 1000, pending=[self.pending, lambda: "; ".join(links.blocked())],
                                 name="wafer watchdog")
        monitor.start()
        self.watchdog.start()
        start, wall = self.clock.cycle, time.perf_counter()
        for cmd in run.commands:
            driver.send(self.host.encode(cmd))
        while len(self.outputs) < run.tokens:
            await ClockCycles(dut.clk, 32)
        self.cycles = self.last_output_cycle - start
        self.start_cycle = start
        self.sim_seconds = time.perf_counter() - wall   # simulation of the layer only (no model, no preload)
        await driver.wait_sent()
        await ClockCycles(dut.clk, 64)   # anything still moving now would be traffic nobody expects
        self.watchdog.stop()
        self.check(links)

    # -- checks ----------------------------------------------------------------------------------------------
    def check(self, links: LinkActivity) -> None:
        from mozart.hw.wafer import predict_cycles  # noqa: PLC0415 (imports Amaranth; only needed here)

        dut, run, topo = self.dut, self.run, self.proto.topology
        problems = []
        got = np.array([self.proto.unpack_partial(f) for f in self.outputs[:run.tokens]])
        bad = np.flatnonzero((got != run.expected).any(axis=1))
        if len(self.outputs) != run.tokens:
            problems.append(f"outputs: expected {run.tokens}, got {len(self.outputs)}")
        if len(bad):
            t = int(bad[0])
            problems.append(f"{len(bad)} of {run.tokens} outputs differ from the golden model; first: token {t} "
                            f"expected {run.expected[t].tolist()} got {got[t].tolist()}")
        measured, wrong = {}, []
        for i, link in enumerate(topo.links):
            n = int(getattr(dut, f"dispatches__{i}").value)
            measured[run.link_label(link)] = n
            if n != run.link_dispatches[link]:
                wrong.append(f"{run.link_label(link)}: model {run.link_dispatches[link]}, RTL {n}")
        if wrong:
            problems.append("DISPATCH packets per link differ: " + "; ".join(wrong))
        if int(dut.link_valid.value):
            problems.append("not drained: " + "; ".join(links.blocked() or ["a link still offers a flit"]))
        if int(dut.busy.value):
            problems.append("not drained: the root is still busy after the last output")
        if int(dut.errors.value):
            problems.append(f"{int(dut.errors.value)} unexpected packets or bad memory requests")
        model = predict_cycles(run, bulk=False)
        engine = predict_cycles(run, bulk=False, in_order=False)
        error = (self.cycles - model) / model
        summary = {"cycles": self.cycles, "model_cycles": round(model, 1), "model_error": round(error, 4),
                   "model_cycles_engine": round(engine, 1),
                   "tokens": run.tokens, "variant": run.variant, "placement": run.placement,
                   "bit_exact": not len(bad) and len(self.outputs) == run.tokens,
                   "replicas_root_per_token": run.replicas_per_token()["root"],
                   "replicas_chiplet_per_token": run.replicas_per_token()["chiplet"],
                   "links_match": not wrong, "rounds": run.rounds, "idle": self.idle,
                   "backpressure": self.backpressure, "sim_seconds": round(self.sim_seconds, 3),
                   "dispatches": measured}
        if os.environ.get("MOZART_TIMELINE"):   # per-command and per-output cycles, for model-vs-RTL studies
            summary["command_cycles"] = [c - self.start_cycle for c in self.command_cycles]
            summary["output_cycles"] = [c - self.start_cycle for c in self.output_cycles]
        if run.variant == "baseline":
            summary["model_cycles_bulk"] = round(predict_cycles(run), 1)
        write_summary(summary)
        self.dut._log.info(f"{run.variant}: {self.cycles} cycles, model {model:.0f} ({100 * error:+.1f}%), "
                           f"bit-exact {summary['bit_exact']}, links match {not wrong}")
        assert not problems, "; ".join(problems)


@cocotb.test()
async def test_layer(dut):
    """One MoE layer end to end: bit-exact outputs, replica counts per link, drained, cycles vs model."""
    await WaferBench(dut).run_layer()
