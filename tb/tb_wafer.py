"""cocotb testbench of the whole wafer (design ``wafer``): MoE layers end to end against the model.

The model (:func:`mozart.model.wafer_run.build_run`) gives the DRAM images of every layer, the host commands,
the host's attention stand-ins, the expected outputs and the DISPATCH packets expected on every link. The
testbench preloads every group's DRAM through its backdoor, drives the commands on ``host_in`` with seeded random
idle cycles (each held until its attention step has ended, by the harness's stand-in), takes the outputs from
``host_out`` with seeded random backpressure, and checks:

- every output of every layer bit-exact against :func:`mozart.model.golden.moe_layer` (a layer's tokens are the
  previous layer's outputs, :func:`mozart.model.golden.next_layer_tokens`), in token order;
- the activations the chiplets saved: every group's DRAM, read back through its backdoor after the run, holds
  at each (tag, chiplet, local expert) entry the hidden vector the model says the last layer to use that entry
  saved there (:meth:`mozart.model.wafer_run.WaferRun.saved_activations`);
- a training step (``train``): every input gradient (after the outputs, in token order) bit-exact, the GATE_GRADs
  the root forwarded on ``grads_out`` per chiplet against :meth:`mozart.model.wafer_run.WaferRun.gate_grads`, every
  group's weight images after the updates against the golden update, and, on DRAMs of at most
  ``UNTOUCHED_CHECK_WORDS`` words, every other word still zero;
- the DISPATCH packets counted by the hardware on every link equal the model's counts (C_T per link), summed
  over the layers (the counters run through the whole run, and layers overlap on the links by design);
- everything drained at the end: no link holds a flit, the root is idle, no unexpected packet or bad memory
  request was seen;
- the cycles from the first command to the last output flit, next to the performance model's prediction
  (:func:`mozart.model.perf.rtl.predict_cycles`), with the error in the summary (the pytest co-simulations
  assert it within a tolerance: cycle counts are deterministic, so that checks the model, not the machine).

A watchdog fails a hang and names the stuck node: links blocked at their receiver, and the host command the
root is stuck on.

Options (set by ``mozart cosim wafer`` and the tests): one :class:`mozart.model.cosim_options.WaferOptions` (variant,
placement, trace, tokens, layer, layers, attention, slots, skew, idle, backpressure, fault, timeline), passed as
JSON in ``MOZART_WAFER``.
"""

from __future__ import annotations

import bisect
import itertools
import time

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, Timer

from mozart.model.blocks import ChipletContract
from mozart.model import lfsr
from mozart.model.harness import BACKPRESSURE_STREAM, IDLE_STREAM, OUTPUT_FLITS, check_fits
from mozart.model.cosim_options import WaferOptions
from mozart.model.perf.breakdown import CATEGORIES as ACTIVITY
from mozart.model.host import HostInterface
from mozart.model.protocol import CYCLE_BITS, Protocol

from .env import clock_and_reset, test_config, test_seed, write_summary
from .stream import FlitCodec
from .watchdog import Watchdog


#: A training run reads back every word of a DRAM up to this size (one word per cycle, all groups in parallel) to
#: check that nothing wrote outside the images and saves; bigger DRAMs (paper4x4's 1.3M words) are not read whole.
UNTOUCHED_CHECK_WORDS = 1 << 16


class LinkActivity:
    """The wafer's links and the harness's player and recorder as one watchdog port: ``transfers`` counts cycles
    with movement on some link plus host flits sent and output flits taken; ``describe()`` names every link whose
    sender holds a flit its receiver does not take."""

    name = "wafer links"
    pending = 0

    def __init__(self, dut, run):
        self.dut = dut
        self.topology = Protocol(run.cfg).topology
        self.run = run

    @property
    def transfers(self) -> int:
        dut = self.dut
        return (int(dut.moved.value) + int(dut.program_sent.value) + int(dut.output_flits.value)
                + int(getattr(dut, f"activity_busy__{ACTIVITY.index('attention')}").value))   # the host's steps

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
    """Drives the wafer through its harness (``hw/wafer_harness.py``): the host program and the DRAM images go in
    through backdoors, the player and recorder run with seeded idle and backpressure coins, and Python only wakes
    every ``POLL_CYCLES`` cycles (the watchdog) until every output is in; then it reads everything back and checks."""

    POLL_CYCLES = 512
    PERIOD_NS = 10

    def __init__(self, dut):
        from mozart.model.trace_io import load_trace  # noqa: PLC0415
        from mozart.model.wafer_run import build_run  # noqa: PLC0415

        self.dut = dut
        self.cfg = cfg = test_config()
        self.proto = Protocol(cfg)
        self.host = HostInterface(cfg)
        self.codec = FlitCodec(self.proto)
        self.options = opt = WaferOptions.from_env()
        self.run = build_run(cfg, trace=load_trace(opt.trace) if opt.trace else None, seed=test_seed(),
                             placement=opt.placement, variant=opt.variant, tokens=opt.tokens, layer=opt.layer,
                             layers=opt.layers, attention=opt.attention, slots=opt.slots, skew=opt.skew,
                             fault=opt.fault, train=opt.train)
        self.idle, self.backpressure = opt.idle, opt.backpressure
        self.program = [self.host.encode(cmd) for cmd in self.run.commands]
        self.command_ends = list(itertools.accumulate(len(flits) for flits in self.program))
        check_fits(self.run)

    def commands_done(self) -> int:
        return bisect.bisect_right(self.command_ends, int(self.dut.program_sent.value))

    def pending(self) -> str:
        run = self.run
        outputs = int(self.dut.output_frames.value)
        if outputs >= run.outputs:
            return ""
        done = self.commands_done()
        released = int(self.dut.attention_released.value)
        if done < len(run.commands) and run.commands[done].release > released:
            where = (f"the host holds command {done} ({run.commands[done].describe()}) until attention step "
                     f"{run.commands[done].release} ends ({released} ended)")
        elif done < len(run.commands):
            where = f"root stuck on host command {done} of {len(run.commands)}: {run.commands[done].describe()}"
        else:
            where = "all host commands taken"
        return f"{run.outputs - outputs} of {run.outputs} outputs outstanding; {where}"

    # -- phases ----------------------------------------------------------------------------------------------
    async def preload(self) -> None:
        """Every group's DRAM image through the backdoors (all groups in parallel) and the host program through
        the player's load port, one word per cycle each."""
        dut = self.dut
        streams = [[(base + i, w) for base, words in group for i, w in enumerate(words)] for group in self.run.dram]
        flits = [(f, command.release) for command, encoded in zip(self.run.commands, self.program) for f in encoded]
        steps = self.run.attention
        for step in range(max(len(flits), *(len(s) for s in streams))):
            await FallingEdge(dut.clk)
            for g, s in enumerate(streams):
                bd = f"backdoor__{g}__"
                if step < len(s):
                    getattr(dut, bd + "addr").value = s[step][0]
                    getattr(dut, bd + "wdata").value = s[step][1]
                    getattr(dut, bd + "we").value = 1
                else:
                    getattr(dut, bd + "we").value = 0
            if step < len(flits):
                dut.program_addr.value = step
                dut.program_data.value = self.codec.pack(flits[step][0])
                dut.program_release.value = flits[step][1]
                dut.program_en.value = 1
            else:
                dut.program_en.value = 0
            if step < len(steps):
                dut.attention_addr.value = step
                dut.attention_data.value = steps[step].outputs | steps[step].cycles << CYCLE_BITS
                dut.attention_en.value = 1
            else:
                dut.attention_en.value = 0
        await FallingEdge(dut.clk)
        for g in range(len(streams)):
            getattr(dut, f"backdoor__{g}__we").value = 0
        dut.program_en.value = 0
        dut.attention_en.value = 0
        dut.program_length.value = len(flits)
        dut.outputs_expected.value = self.run.outputs
        dut.attention_count.value = len(steps)

    async def run_layer(self) -> None:
        dut, run = self.dut, self.run
        for g in range(self.cfg.groups):
            getattr(dut, f"backdoor__{g}__we").value = 0
        dut.start.value = 0
        dut.program_en.value = 0
        dut.attention_en.value = 0
        seed = test_seed()
        dut.idle_seed.value = lfsr.seed_for(seed, IDLE_STREAM)
        dut.idle_threshold.value = lfsr.threshold(self.idle)
        dut.backpressure_seed.value = lfsr.seed_for(seed, BACKPRESSURE_STREAM)
        dut.backpressure_threshold.value = lfsr.threshold(self.backpressure)
        await clock_and_reset(dut, period_ns=self.PERIOD_NS)
        await self.preload()
        links = LinkActivity(dut, run)
        quiet = ChipletContract(self.cfg).quiet_cycles
        self.watchdog = Watchdog(dut.clk, [links], timeout=int(4 * quiet / (1 - self.backpressure)) + 1000,
                                 pending=[self.pending, lambda: "; ".join(links.blocked())],
                                 name="wafer watchdog", period_ns=self.PERIOD_NS)
        self.watchdog.start()
        wall, cpu = time.perf_counter(), time.process_time()
        dut.start.value = 1
        poll = Timer(self.POLL_CYCLES * self.PERIOD_NS, unit="ns")
        while int(dut.output_frames.value) < run.outputs:
            await poll
        self.sim_seconds = time.perf_counter() - wall   # simulation of the layer only (no model, no preload)
        self.sim_cpu_seconds = time.process_time() - cpu   # the simulator process's CPU: robust on a loaded machine
        self.cycles = int(dut.last_output_cycle.value) - self.first_cycle() + 1
        while int(dut.program_sent.value) < self.command_ends[-1]:
            await poll
        await Timer(64 * self.PERIOD_NS, unit="ns")   # anything still moving now would be traffic nobody expects
        self.watchdog.stop()
        self.outputs = await self.read_outputs()
        self.saved = run.saved_activations()
        self.saved_read = await self.read_dram([sorted(words) for words in self.saved])
        self.images = run.final_images() if run.train else []
        self.images_read = await self.read_dram([sorted(words) for words in self.images]) if run.train else []
        self.gate_grads = await self.read_gate_grads() if run.train else {}
        # the rest of a small DRAM must still be zero (nothing wrote where nothing should); a big one is skipped
        self.untouched = [{a: 0 for a in range(self.cfg.dram.words) if a not in self.saved[g] and a not in images}
                          for g, images in enumerate(run.final_images())] \
            if run.train and self.cfg.dram.words <= UNTOUCHED_CHECK_WORDS else []
        self.untouched_read = await self.read_dram([sorted(words) for words in self.untouched])
        self.timeline = await self.read_timeline() if self.options.timeline or run.train else None
        self.check(links)

    def activity(self) -> dict:
        """The harness's activity record: busy and exposed cycles per category, and idle cycles."""
        dut = self.dut
        def count(name: str, i: int) -> int:
            return int(getattr(dut, f"{name}__{i}").value)
        busy = {c: count("activity_busy", i) for i, c in enumerate(ACTIVITY)}
        exposed = {c: count("activity_exposed", i) for i, c in enumerate(ACTIVITY)}
        return {"busy": busy, "exposed": exposed, "idle": count("activity_exposed", len(ACTIVITY))}

    def first_cycle(self) -> int:
        """Where the run's cycles start: the first host command, or with an attention stand-in the host's first
        attention step (cycle 0 of the harness: the model's time 0 too, where the first step starts)."""
        return 0 if self.run.attention else int(self.dut.first_command_cycle.value)

    async def read_back(self, addr, data, count: int) -> list[int]:
        """``count`` words of a harness read backdoor (combinational: set the address, let one time step pass)."""
        out = []
        for i in range(count):
            addr.value = i
            await Timer(1, unit="ps")
            out.append(data.value.to_unsigned())
        return out

    async def read_dram(self, addresses: list[list[int]]) -> list[list[int]]:
        """Words of every group's DRAM at ``addresses[g]`` through the backdoors, all groups in parallel, one word
        per cycle (the backdoor's read port answers the cycle after its address)."""
        dut = self.dut
        out: list[list[int]] = [[] for _ in addresses]
        for step in range(max(map(len, addresses), default=0) + 1):
            await FallingEdge(dut.clk)
            for g, addrs in enumerate(addresses):
                backdoor = f"backdoor__{g}__"
                if 0 < step <= len(addrs):
                    out[g].append(getattr(dut, backdoor + "rdata").value.to_unsigned())
                if step < len(addrs):
                    getattr(dut, backdoor + "addr").value = addrs[step]
        return out

    async def read_outputs(self) -> list[list[int]]:
        """The recorded outputs as frames of flit data; a framing error (``first``/``last``) fails the test."""
        dut, pf = self.dut, self.proto.partial_flits
        flits = [self.codec.unpack(w) for w in
                 await self.read_back(dut.output_addr, dut.output_data, min(int(dut.output_flits.value), OUTPUT_FLITS))]
        frames = []
        for i in range(0, len(flits), pf):
            frame = flits[i:i + pf]
            framing = [(f.first, f.last) for f in frame]
            expected = [(j == 0, j == pf - 1) for j in range(pf)]
            assert framing == expected, (f"output {len(frames)} must be {pf} flits framed first..last, not "
                                         f"{framing}")
            frames.append([f.data for f in frame])
        return frames

    # -- checks ----------------------------------------------------------------------------------------------
    def output_problems(self) -> list[str]:
        """Every output against the golden model, layer by layer, in token order (training: then every layer's
        input gradients, the last layer first)."""
        run, problems = self.run, []
        if len(self.outputs) != run.outputs:
            problems.append(f"outputs: expected {run.outputs}, got {len(self.outputs)}")
        blocks = [(f"layer {layer.index}", "outputs", layer.expected) for layer in run.layers]
        blocks += [(f"layer {layer.index}", "input gradients", layer.backward.dx) for layer in run.backward_layers]
        for i, (name, what, expected) in enumerate(blocks):
            frames = self.outputs[i * run.tokens:(i + 1) * run.tokens]
            got = np.array([self.proto.unpack_partial(f) for f in frames]).reshape(-1, expected.shape[1])
            bad = [t for t in range(len(got)) if (got[t] != expected[t]).any()]
            if bad:
                t = bad[0]
                problems.append(f"{name}: {len(bad)} of {run.tokens} {what} differ from the golden model; first: "
                                f"token {t} expected {expected[t].tolist()} got {got[t].tolist()}")
        return problems

    def training_problems(self) -> list[str]:
        """A training step: every group's weight images after the updates (:meth:`WaferRun.final_images`) and the
        gate gradients on ``grads_out`` (:meth:`WaferRun.gate_grads`, per chiplet, as multisets)."""
        problems = _dram_problems("weight images", "the golden update", self.images, self.images_read)
        problems += _dram_problems("untouched DRAM", "zero (no write belongs there)", self.untouched,
                                   self.untouched_read)
        if not self.run.train:
            return problems
        want = {node: sorted(map(repr, packets)) for node, packets in self.run.gate_grads().items()}
        got = {node: sorted(map(repr, packets)) for node, packets in self.gate_grads.items()}
        for node in sorted(set(want) | set(got)):
            if want.get(node, []) != got.get(node, []):
                label = self.proto.topology.node(node).label
                problems.append(f"gate gradients from {label}: expected {len(want.get(node, []))} GATE_GRAD packets, "
                                f"got {len(got.get(node, []))}, "
                                f"{len(set(want.get(node, [])) ^ set(got.get(node, [])))} differ")
        return problems

    async def read_gate_grads(self) -> dict[int, list]:
        """The GATE_GRAD packets the root forwarded on ``grads_out`` (recorded by the harness), per source."""
        from mozart.model.harness import GRAD_FLITS  # noqa: PLC0415
        dut = self.dut
        flits = [self.codec.unpack(w) for w in
                 await self.read_back(dut.grads_addr, dut.grads_data, min(int(dut.grads_flits.value), GRAD_FLITS))]
        out: dict[int, list] = {}
        start = 0
        for i, f in enumerate(flits):
            if f.last:
                packet = self.proto.decode(flits[start:i + 1])
                out.setdefault(packet.src, []).append(packet)
                start = i + 1
        return out

    def saved_problems(self) -> list[str]:
        """The saved activations in every group's DRAM against the model's (:meth:`WaferRun.saved_activations`)."""
        return _dram_problems("saved activations", "the model's", self.saved, self.saved_read)

    def check(self, links: LinkActivity) -> None:
        from mozart.model.perf.rtl import predict_breakdown, predict_cycles, predict_training  # noqa: PLC0415

        dut, run, topo = self.dut, self.run, self.proto.topology
        wrong_outputs, wrong_saves, wrong_training = self.output_problems(), self.saved_problems(), \
            self.training_problems()
        problems = wrong_outputs + wrong_saves + wrong_training
        measured, wrong, expected = {}, [], run.link_dispatches   # summed over the layers
        for i, link in enumerate(topo.links):
            n = int(getattr(dut, f"dispatches__{i}").value)
            measured[run.link_label(link)] = n
            if n != expected[link]:
                wrong.append(f"{run.link_label(link)}: model {expected[link]}, RTL {n}")
        if wrong:
            problems.append("DISPATCH packets per link differ: " + "; ".join(wrong))
        if int(dut.link_valid.value):
            problems.append("not drained: " + "; ".join(links.blocked() or ["a link still offers a flit"]))
        if int(dut.busy.value):
            problems.append("not drained: the root is still busy after the last output")
        if int(dut.errors.value):
            problems.append(f"{int(dut.errors.value)} unexpected packets or bad memory requests")
        # a training step: the larger of the event engine and the in-order replay, with the forward's end
        model_forward, model = predict_training(run) if run.train else (None, predict_cycles(run))
        engine = predict_cycles(run, in_order=False)
        error = (self.cycles - model) / model
        summary = {"cycles": self.cycles, "model_cycles": round(model, 1), "model_error": round(error, 4),
                   "model_cycles_engine": round(engine, 1), "train": run.train,
                   "model_forward_cycles": model_forward and round(model_forward, 1),
                   "trained_exact": not wrong_training, "image_words": sum(len(words) for words in self.images),
                   "untouched_words": sum(len(words) for words in self.untouched),
                   "gate_grads": sum(len(p) for p in self.gate_grads.values()),
                   "tokens": run.tokens, "layers": len(run.layers), "attention_steps": len(run.attention),
                   "variant": run.variant, "placement": run.placement,
                   "bit_exact": not wrong_outputs,
                   "saved_exact": not wrong_saves,
                   "saved_words": sum(len(words) for words in self.saved),
                   "replicas_root_per_token": run.replicas_per_token()["root"],
                   "replicas_chiplet_per_token": run.replicas_per_token()["chiplet"],
                   "links_match": not wrong, "rounds": run.rounds, "idle": self.idle,
                   "backpressure": self.backpressure, "sim_seconds": round(self.sim_seconds, 3),
                   "sim_cpu_seconds": round(self.sim_cpu_seconds, 3),
                   "dispatches": measured, "activity": self.activity(),
                   "model_activity": None if run.train else _activity_of(predict_breakdown(run))}
        if run.train:   # the forward ends with its last output (the backward's outputs follow)
            forward_outputs = run.tokens * len(run.layers)
            summary["forward_cycles"] = self.timeline["outputs"][forward_outputs - 1] + 1
        if self.options.timeline:   # per-command and per-output cycles, for model-vs-RTL studies
            summary["command_cycles"] = self.timeline["commands"]
            summary["output_cycles"] = self.timeline["outputs"]
        write_summary(summary, test="test_layer")
        predicted = f"model {model:.0f} ({100 * error:+.1f}%)"
        self.dut._log.info(f"{run.variant}, {len(run.layers)} layer(s){', training' if run.train else ''}: "
                           f"{self.cycles} cycles, {predicted}, bit-exact {summary['bit_exact']}, "
                           f"links match {not wrong}")
        assert not problems, "; ".join(problems)


    async def read_timeline(self) -> dict[str, list[int]]:
        """The cycle each host command and each output was taken, counted from :meth:`first_cycle` (``cycles``
        counts both ends: the last output's entry is ``cycles - 1``)."""
        dut, first = self.dut, self.first_cycle()
        commands = await self.read_back(dut.command_stamp_addr, dut.command_stamp, len(self.program))
        outputs = await self.read_back(dut.output_stamp_addr, dut.output_stamp, int(dut.output_frames.value))
        return {"commands": [c - first for c in commands], "outputs": [c - first for c in outputs]}


def _dram_problems(what: str, whose: str, expected: list[dict[int, int]], got: list[list[int]]) -> list[str]:
    """Per group, the words read back (``got[g]``, at the sorted addresses of ``expected[g]``) against them."""
    problems = []
    for g, (want, read) in enumerate(zip(expected, got)):
        bad = [(a, want[a], w) for a, w in zip(sorted(want), read) if w != want[a]]
        if bad:
            a, word, w = bad[0]
            problems.append(f"{what}: {len(bad)} of {len(want)} words of group {g}'s DRAM differ from {whose}; "
                            f"first: word {a} expected {word:#x} got {w:#x}")
    return problems


def _activity_of(breakdown) -> dict:
    """The model's breakdown in the shape of :meth:`WaferBench.activity` (cycles rounded)."""
    return {"busy": {c: round(v) for c, v in breakdown.busy.items()},
            "exposed": {c: round(v) for c, v in breakdown.exposed.items()}, "idle": round(breakdown.idle)}


@cocotb.test()
async def test_layer(dut):
    """MoE layers end to end: bit-exact outputs, replica counts per link, drained, cycles vs model."""
    await WaferBench(dut).run_layer()
