"""End-to-end MoE layers for the RTL wafer: everything the model says before the hardware runs.

:func:`build_run` takes a config, a trace (or a seed for a synthetic one), a placement method, a variant and a
number of consecutive layers, and returns a :class:`WaferRun`:

- per layer (:class:`RunLayer`): its placement, the quantised weights (seeded, a stream per layer) and each
  group's DRAM image (:func:`mozart.model.golden.expert_image` at :meth:`Protocol.expert_image_base` of the
  expert's place in its group and its layer), the tokens (seeded for the first layer; for the next,
  :func:`mozart.model.golden.next_layer_tokens` of the previous layer's outputs), the quantised gates, the
  expected outputs (:func:`mozart.model.golden.moe_layer`), the forward schedule
  (:func:`mozart.model.schedule.build_schedule`) and the DISPATCH packets the model expects on every link (the
  hardware's C_T, per link);
- the host program: every layer's schedule translated into host commands (:mod:`mozart.model.host`), layer
  after layer;
- the host's attention stand-ins (:class:`AttentionStandIn`; by default only with several layers): one per
  Attention command of each layer's schedule, which starts once the host holds the outputs the micro-batch's
  tokens come from (none for the first layer) and the previous stand-in has ended, and lasts
  :func:`mozart.model.perf.regime.host_attention_cycles_per_token` per token. The host holds each TOKEN of the
  micro-batch (and, in the Baseline, the layer's loads) until then (:attr:`HostCommand.release`): the stand-in
  for the attention block that produces the next layer's tokens, so that the overlap of the next layer's loads
  with attention is measured, not assumed.

How a layer's schedule becomes host commands (the root reads them in order and reorders only TOKENs, in its
issue window: :mod:`mozart.model.host`): the layer's expert table; then per weight round ``r``: the round's LOADs
in the schedule's order (a reload of a group's slots, which includes a later layer's first round, is preceded by
``WAIT_COMBINED`` of that group, and by the ``WAIT_LOADED`` of the slot's previous load if nothing waited for it
yet); then the round's token dispatches micro-batch by micro-batch, tokens ascending, each token with its
experts of round ``r`` (one TOKEN command, which the root turns into one DISPATCH per group, or one per expert
without de-duplication). No WAIT_LOADED precedes a token: the root holds a TOKEN in its window until every expert
it selects is resident, and dispatches a younger token whose experts are in ahead of it. The program ends with
the WAIT_LOADED of every load nothing waited for yet. The schedule's per-chiplet dispatches of one (micro-batch,
round) thus become one host TOKEN per token: the root merges the chiplets of a group into one packet. Coarser
than the schedule: the reload waits for the whole group (the root counts results per group), and a token waits
for every expert it selects in the round, not per chiplet. The Baseline's barriers become WAIT_LOADED of every
load of a round before the round's first dispatch, a reload that waits for every group's results, and (with
attention) loads held until the layer's attention has ended: no prefetch across attention.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from . import golden
from .errors import ConfigError, ScheduleError
from .host import HostCommand, HostInterface, HostOp
from .protocol import Packet, PacketKind, Protocol
from .schedule import Attention, Dispatch, Load, Schedule, Variant, WriteBack, build_schedule

__all__ = ["WaferRun", "RunLayer", "AttentionStandIn", "build_run", "default_placement", "FAULTS"]

#: Deliberate faults for testing the testbench: ``drop-load`` removes the first LOAD, so its expert never becomes
#: resident and the root holds every TOKEN that selects it (and any WAIT_LOADED of its slot) forever (the watchdog);
#: ``drop-save`` clears the ``save`` bit of the first TOKEN whose saved activations are not all zero, so one
#: DRAM entry is never written (the check of the saved activations); ``drop-update`` (a training run) removes the
#: first UPDATE, so that slot's gradient is never applied nor written back (the check of the weight images);
#: ``stray-write`` sends the first UPDATE's write-back to the DRAM's last image-sized words, where nothing belongs
#: (the check that the rest of the DRAM is untouched).
FAULTS = ("none", "drop-load", "drop-save", "drop-update", "stray-write")


def default_placement(variant: str) -> str:
    """The paper's placements: C runs on the clustered one, Baseline/A/B on the framework default."""
    return "mozart" if Variant.parse(variant).clustered else "contiguous"


@dataclass
class AttentionStandIn:
    """One attention step the host stands in for: it starts once the host holds ``outputs`` outputs (counted over
    every layer, in order) and the previous step has ended, and lasts ``cycles``. A command with ``release = n``
    waits for the end of step ``n`` (:attr:`HostCommand.release`)."""

    outputs: int
    cycles: int


@dataclass
class RunLayer:
    """One MoE layer of a run: its placement, data, expected outputs, schedule and link counts."""

    index: int                      # the trace's (and the DRAM's) layer
    expert_to_chiplet: np.ndarray   # [E] global chiplet
    local: np.ndarray               # [E] index on its chiplet (ascending global id)
    image_index: np.ndarray         # [E] place in its group's DRAM region of the layer
    w1: np.ndarray                  # [E, d_ff, d_model]
    w2: np.ndarray                  # [E, d_model, d_ff]
    x: np.ndarray                   # [T, d_model]: seeded (first layer) or the previous layer's outputs requantised
    experts: np.ndarray             # [T, k]
    gates: np.ndarray               # [T, k] raw unsigned
    expected: np.ndarray            # [T, d_model] golden outputs
    schedule: Schedule
    link_dispatches: dict = field(default_factory=dict)  # (a, b) -> DISPATCH packets expected
    grads: np.ndarray | None = None         # [T, d_model] the output gradient dY (a training run)
    backward: object = None                 # golden_backward.LayerBackward of the layer (a training run)
    link_backward: dict = field(default_factory=dict)    # (a, b) -> backward DISPATCH packets expected

    @property
    def rounds(self) -> int:
        return int(max((d.round for d in self.schedule.of_kind(Dispatch, "forward")), default=0)) + 1


@dataclass
class WaferRun:
    cfg: object
    variant: str
    placement: str
    trace_source: str
    layers: list                    # RunLayer, in run order
    dram: list                      # per group: list of (word address, words)
    commands: list = field(default_factory=list)     # HostCommand, in order
    attention: list = field(default_factory=list)    # AttentionStandIn, in order (empty: none)
    train: bool = False             # forward through the layers, then backward through them in reverse

    @property
    def backward_layers(self) -> list:
        """The layers of the backward pass, in run order (the last forward layer first); none without training."""
        return self.layers[::-1] if self.train else []

    @property
    def tokens(self) -> int:
        """Tokens per layer."""
        return len(self.layers[0].x)

    @property
    def outputs(self) -> int:
        """Outputs the host receives: every layer's tokens, layer after layer (training: then every layer's input
        gradients, the last layer first)."""
        return self.tokens * (len(self.layers) + len(self.backward_layers))

    @property
    def expected(self) -> np.ndarray:
        """``[outputs, d_model]``: every layer's golden outputs, then (training) every layer's golden input
        gradients in the backward order: in the order the root returns them."""
        return np.concatenate([layer.expected for layer in self.layers]
                              + [layer.backward.dx for layer in self.backward_layers])

    @property
    def rounds(self) -> int:
        return max(layer.rounds for layer in self.layers)

    @property
    def link_dispatches(self) -> dict:
        """DISPATCH packets expected per link over the whole run (forward and backward)."""
        first = self.layers[0].link_dispatches
        return {link: sum(layer.link_dispatches[link] + layer.link_backward.get(link, 0) for layer in self.layers)
                for link in first}

    def link_label(self, link: tuple[int, int]) -> str:
        topo = Protocol(self.cfg).topology
        return f"{topo.node(link[0]).label}->{topo.node(link[1]).label}"

    def saved_activations(self) -> list[dict[int, int]]:
        """Per group, the DRAM words the chiplets' saves leave behind (``{word address: word}``): every
        (token, expert) pair of every layer whose dispatch saves writes its pre-activation ``z`` at
        :func:`mozart.model.golden.activation_addr` of its chiplet, token record (``Protocol.save_index`` of the
        layer and the token's position) and local index; a token past a training step's tokens overwrites the
        record of the token a step earlier (same chiplet, so in order)."""
        cfg, proto = self.cfg, Protocol(self.cfg)
        C, words = cfg.chiplets_per_group, golden.activation_entry_words(cfg)
        memory: list[dict[int, int]] = [{} for _ in range(cfg.groups)]
        for layer in self.layers:
            if not any(d.save for d in layer.schedule.of_kind(Dispatch, "forward")):
                continue
            for t, (x, experts) in enumerate(zip(layer.x, layer.experts)):
                record = proto.save_index(layer.index, t)
                for e in experts:
                    chiplet = int(layer.expert_to_chiplet[e])
                    addr = golden.activation_addr(cfg, chiplet % C, record, int(layer.local[e]))
                    entry = golden.saved_words(golden.pre_activation(x, layer.w1[e], cfg), cfg)
                    memory[chiplet // C].update(zip(range(addr, addr + words), entry))
        return memory

    def gate_grads(self) -> dict[int, list]:
        """The GATE_GRAD packets the chiplets send (training), per source chiplet node: one per backward replica
        (de-duplicated: per chiplet of the TOKEN's valid experts, with their local mask; else per expert), each
        with the golden gate gradients (:attr:`RunLayer.backward` ``.dg``) at the local places. The root forwards
        them in arrival order, which the issue window may change between tokens: compare per source, as
        multisets."""
        cfg, proto = self.cfg, Protocol(self.cfg)
        topo, C, E = proto.topology, cfg.chiplets_per_group, cfg.experts_per_chiplet
        by_index = {layer.index: layer for layer in self.layers}
        out: dict[int, list] = {}
        for cmd in self.commands:
            if cmd.op is not HostOp.TOKEN or not cmd.args["backward"]:
                continue
            layer = by_index[cmd.args["save_index"] // proto.step_tokens]
            t = cmd.args["save_index"] % proto.step_tokens
            valid = [j for j, v in enumerate(cmd.args["valid"]) if v]
            groups = [[j for j in valid if int(layer.expert_to_chiplet[cmd.args["experts"][j]]) == c]
                      for c in sorted({int(layer.expert_to_chiplet[cmd.args["experts"][j]]) for j in valid})] \
                if cmd.args["dedup"] else [[j] for j in valid]
            for js in groups:
                chiplet = int(layer.expert_to_chiplet[cmd.args["experts"][js[0]]])
                mask, dg = [0] * E, [0] * E
                for j in js:
                    local = int(layer.local[cmd.args["experts"][j]])
                    mask[local], dg[local] = 1, int(layer.backward.dg[t, j])
                node = topo.chiplet(chiplet // C, chiplet % C)
                packet = Packet(PacketKind.GATE_GRAD, topo.root, node, cmd.args["token"], {"experts": mask},
                                tuple(proto.pack_gate_grads(dg)))
                out.setdefault(node, []).append(proto.decode(proto.encode(packet)))
        return out

    def final_images(self) -> list[dict[int, int]]:
        """Per group, the weight images' DRAM words after the run (``{word address: word}``): every layer's images,
        training's updated ones (:attr:`RunLayer.backward` ``.w1``/``.w2``; an expert no token chose keeps its
        weights, as its zero gradient updates nothing)."""
        cfg, proto, C = self.cfg, Protocol(self.cfg), self.cfg.chiplets_per_group
        memory: list[dict[int, int]] = [{} for _ in range(cfg.groups)]
        for layer in self.layers:
            w1, w2 = (layer.backward.w1, layer.backward.w2) if layer.backward is not None else (layer.w1, layer.w2)
            for e in range(cfg.moe.experts):
                base = proto.expert_image_base(int(layer.image_index[e]), layer.index)
                words = golden.expert_image(w1[e], w2[e], cfg)
                memory[int(layer.expert_to_chiplet[e]) // C].update(zip(range(base, base + len(words)), words))
        return memory

    def replicas_per_token(self) -> dict[str, float]:
        """DISPATCH packets per token on the root links and on the chiplet links (the hardware's C_T)."""
        topo = Protocol(self.cfg).topology
        links = self.link_dispatches
        root = sum(n for (a, _), n in links.items() if a == topo.root)
        leaf = sum(n for (a, b), n in links.items() if a != topo.root)
        return {"root": root / self.outputs, "chiplet": leaf / self.outputs}


def build_run(cfg, *, trace=None, seed: int = 1, placement: str | None = None, variant: str = "C",
              tokens: int = 256, layer: int = 0, layers: int = 1, slots: int | None = None,
              skew: float | None = None, attention: bool | None = None, fault: str = "none",
              train: bool = False) -> WaferRun:
    """Everything the testbench needs for ``layers`` consecutive MoE layers from ``layer`` on; see the module doc.
    With ``train``, one training step: the forward through the layers, then the backward through them in reverse
    (:func:`_backward_chain`).

    ``placement``: a method name, or the path of a placement file (``.json``, as ``mozart allocate`` writes;
    its rows ``layer..layer + layers - 1`` are used). ``trace`` None: a synthetic trace of ``tokens`` tokens from
    ``seed`` (:func:`mozart.model.synth.synthesize_for`, with Zipf popularity exponent ``skew`` if given: 1.5
    makes a few hot experts take most tokens). ``slots``: weight slots the schedule uses per chiplet (default
    ``hardware.sram_slots``); fewer slots than experts per chiplet make the schedule reload slots mid-layer.
    ``attention``: the host stands in for the attention block between layers (default: when ``layers > 1``)."""
    from .placement import Placement  # noqa: PLC0415
    from .synth import synthesize_for  # noqa: PLC0415

    if fault not in FAULTS:
        raise ConfigError(f"fault must be one of {', '.join(FAULTS)}, not {fault!r}")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < cfg.training.micro_batches:
        raise ConfigError(f"tokens must be an integer of at least training.micro_batches "
                          f"({cfg.training.micro_batches}), not {tokens!r}")
    step = Protocol(cfg).step_tokens
    if train and tokens > step:
        raise ConfigError(f"tokens must be at most a training step's {step} (training.sequences x "
                          f"training.seq_len: the activation records and gradient accumulators hold one step), "
                          f"not {tokens}")
    if not golden.reduction_is_exact(cfg):
        raise ConfigError(f"numerics.partial_bits must make the reduction exact for the end-to-end check "
                          f"(no partial sum may saturate), not {cfg.numerics.partial_bits!r}")
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= cfg.moe.layers:
        raise ConfigError(f"layers must be between 1 and moe.layers ({cfg.moe.layers}: the DRAM holds that many "
                          f"layers' weights), not {layers!r}")
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer <= cfg.moe.layers - layers:
        raise ConfigError(f"layer must be in 0..{cfg.moe.layers - layers} (the first of {layers} layer(s) of "
                          f"moe.layers = {cfg.moe.layers}), not {layer!r}")
    if slots is not None and (isinstance(slots, bool) or not isinstance(slots, int)
                              or not 1 <= slots <= cfg.hardware.sram_slots):
        raise ConfigError(f"slots must be between 1 and hardware.sram_slots ({cfg.hardware.sram_slots}), "
                          f"not {slots!r}")
    host = HostInterface(cfg)
    placement = placement or default_placement(variant)
    if trace is None:
        trace = synthesize_for(cfg, tokens, seed, **({} if skew is None else {"skew": skew}))
    trace.check_fits(cfg)
    if layer + layers > trace.layers:
        raise ConfigError(f"layer + layers must be at most the trace's {trace.layers} layers, not "
                          f"{layer} + {layers}")
    if trace.tokens < tokens:
        raise ConfigError(f"tokens must be at most the trace's {trace.tokens} tokens, not {tokens}")
    plc = _placement(cfg, trace, placement, layer, layers, seed)

    num, moe = cfg.numerics, cfg.moe
    x = np.random.default_rng([seed, 8]).integers(-(1 << (num.act_bits - 1)), 1 << (num.act_bits - 1),
                                                  size=(tokens, moe.d_model))
    run_layers, dram = [], [[] for _ in range(cfg.groups)]
    for i in range(layers):
        one = trace.layer(layer + i).head(tokens)
        row = Placement(plc.expert_to_chiplet[i:i + 1], cfg.chiplets_per_group, plc.method)
        run_layers.append(_run_layer(cfg, one, row, layer + i, x, seed, variant, slots, dram))
        x = golden.next_layer_tokens(run_layers[-1].expected, cfg)
    run = WaferRun(cfg, variant, placement, trace.source, run_layers, dram, train=train)
    if train:
        _backward_chain(run, seed)
    if attention if attention is not None else layers > 1:
        run.attention = _attention_steps(run)
    _translate(run, host)
    if fault == "drop-load":
        first = next(i for i, c in enumerate(run.commands) if c.op is HostOp.LOAD)
        del run.commands[first]
    if fault == "drop-save":
        _drop_a_save(run)
    if fault in ("drop-update", "stray-write"):
        if not train:
            raise ConfigError(f"fault {fault} needs a training run (train), not a forward one")
        first = next(i for i, c in enumerate(run.commands) if c.op is HostOp.UPDATE)
        if fault == "drop-update":
            del run.commands[first]
        else:
            cmd = run.commands[first]
            stray = cfg.dram.words - Protocol(cfg).image_words
            run.commands[first] = dataclasses.replace(cmd, args={**cmd.args, "addr": stray})
    return run


def _backward_chain(run: WaferRun, seed: int) -> None:
    """The golden backward of every layer, the last first: a seeded output gradient for the last layer; each
    earlier layer's is the input gradient of the one after it, requantised
    (:func:`mozart.model.golden_backward.previous_layer_gradient`: the host stands in for the attention block's
    backward, an identity on the values)."""
    from . import golden_backward  # noqa: PLC0415
    cfg = run.cfg
    a = cfg.numerics.act_bits
    grads = np.random.default_rng([seed, 9]).integers(-(1 << (a - 1)), 1 << (a - 1), size=(run.tokens, cfg.moe.d_model))
    for layer in run.backward_layers:
        layer.grads = grads
        layer.backward = golden_backward.moe_backward(layer.x, grads, layer.w1, layer.w2, layer.experts, layer.gates,
                                                      layer.expert_to_chiplet, cfg)
        grads = golden_backward.previous_layer_gradient(layer.backward.dx, cfg)


def _drop_a_save(run: WaferRun) -> None:
    """The ``drop-save`` fault: the first saving TOKEN of the first layer whose pre-activations are not all zero
    is sent with ``save = 0`` (so the DRAM keeps zeros where the model expects them)."""
    layer = run.layers[0]
    nonzero = [t for t, (x, experts) in enumerate(zip(layer.x, layer.experts))
               if any(golden.pre_activation(x, layer.w1[e], run.cfg).any() for e in experts)]
    tag = HostInterface(run.cfg).entry_of(nonzero[0] if nonzero else 0)
    for i, cmd in enumerate(run.commands):
        if cmd.op is HostOp.TOKEN and cmd.args["save"] and cmd.args["token"] == tag:
            run.commands[i] = dataclasses.replace(cmd, args={**cmd.args, "save": 0})
            return


def _placement(cfg, trace, placement: str, layer: int, layers: int, seed: int):
    """The placement of the run's layers (one row each), from a method or a placement file."""
    from .placement import Placement  # noqa: PLC0415
    from .placers import place  # noqa: PLC0415 (the placers import networkx and scipy)
    if placement.endswith(".json"):  # a file from `mozart allocate`: its rows for these layers
        from .placement_io import load_placement  # noqa: PLC0415
        given = load_placement(placement, cfg)
        if layer + layers > given.layers:
            raise ConfigError(f"layer + layers must be at most the placement file's {given.layers} layers, not "
                              f"{layer} + {layers}")
        return Placement(given.expert_to_chiplet[layer:layer + layers], cfg.chiplets_per_group, given.method)
    rows = [place(trace.layer(layer + i), cfg, placement, seed=seed).expert_to_chiplet[0] for i in range(layers)]
    return Placement(np.stack(rows), cfg.chiplets_per_group, placement)


def _run_layer(cfg, trace, plc, index: int, x, seed: int, variant: str, slots, dram) -> RunLayer:
    """One layer: its schedule, seeded weights (a stream per layer), golden outputs and DRAM images."""
    num, moe = cfg.numerics, cfg.moe
    proto = Protocol(cfg)
    e2c = plc.expert_to_chiplet[0].astype(np.int64)
    schedule = dataclasses.replace(build_schedule(cfg, plc, trace, 0, variant, slots=slots), layer=index)
    gen = np.random.default_rng([seed, 7] if index == 0 else [seed, 7, index])
    wlo, whi = -(1 << (num.weight_bits - 1)), 1 << (num.weight_bits - 1)
    w1 = gen.integers(wlo, whi, size=(moe.experts, moe.d_ff, moe.d_model))
    w2 = gen.integers(wlo, whi, size=(moe.experts, moe.d_model, moe.d_ff))
    experts = trace.experts[0].astype(np.int64)
    gates = golden.quantise(trace.weights[0], num.gate_bits, num.gate_bits, signed=False)
    expected = golden.moe_layer(x, w1, w2, experts, gates, e2c, cfg)
    C = cfg.chiplets_per_group
    local = plc.local_index(0).astype(np.int64)
    image_index = (e2c % C) * cfg.experts_per_chiplet + local   # the expert's place in its group's DRAM
    for e in range(moe.experts):
        dram[int(e2c[e]) // C].append((proto.expert_image_base(int(image_index[e]), index),
                                       golden.expert_image(w1[e], w2[e], cfg)))
    return RunLayer(index, e2c, local, image_index, w1, w2, x, experts, gates, expected, schedule)


def _attention_steps(run: WaferRun) -> list[AttentionStandIn]:
    """The host's attention stand-ins, one per Attention command of each layer's schedule (per micro-batch, or one
    for all micro-batches in the Baseline): each waits for its tokens' outputs of the previous layer (none for
    the first) and takes :func:`~mozart.model.perf.regime.host_attention_cycles_per_token` per token."""
    from .perf.regime import host_attention_cycles_per_token  # noqa: PLC0415
    per_token = host_attention_cycles_per_token(run.cfg)
    steps = []
    for i, layer in enumerate(run.layers):
        last = 0   # one past the step's last token: the Attention commands cover the tokens in order
        for att in layer.schedule.of_kind(Attention, "forward"):
            last += att.tokens
            steps.append(AttentionStandIn((i - 1) * run.tokens + last if i else 0, round(att.tokens * per_token)))
    return steps


class _Program:
    """The host program being written: commands, the loads so far and which LOADED were waited for."""

    def __init__(self, run: WaferRun, host: HostInterface):
        self.run, self.host, self.proto = run, host, host.proto
        self.cmds = run.commands
        self.loads: list = []        # the Load commands of the whole run, in program order
        self.waited: set[int] = set()
        self.pending_load: dict[tuple[int, int], int] = {}   # (chiplet, slot) -> index of its latest load
        self.pending_update: dict[int, int] = {}   # chiplet -> index (in loads) of its latest UPDATE
        self.release = 0             # attention steps the next commands wait for
        self.outputs = 0             # tokens of the layers written so far
        self.reloads = False         # a load now reloads a slot (not the run's first round)

    def add(self, op: HostOp, args: dict, payload: tuple = ()) -> None:
        self.cmds.append(HostCommand(op, args, payload, self.release))

    def wait_loaded(self, i: int) -> None:
        if i not in self.waited:
            ld = self.loads[i]
            self.add(HostOp.WAIT_LOADED, {"group": ld.group, "chiplet": ld.chiplet % self.run.cfg.chiplets_per_group,
                                          "slot": ld.slot})
            self.waited.add(i)


def _translate(run: WaferRun, host: HostInterface) -> None:
    """Every layer's forward schedule as host commands, one after another, and the DISPATCH packets expected
    per link of each layer."""
    program = _Program(run, host)
    attention = iter(range(1, len(run.attention) + 1))
    for layer in run.layers:
        _translate_layer(program, layer, attention if run.attention else None)
    if run.train:   # the forward's results are all back before the first backward token (docs/protocol.md)
        program.add(HostOp.WAIT_COMBINED, {"groups": [1] * run.cfg.groups})
    for layer in run.backward_layers:
        _translate_layer(program, layer, None, "backward")
    for i in range(len(program.loads)):
        program.wait_loaded(i)


def _translate_layer(program: _Program, layer: RunLayer, attention, phase: str = "forward") -> None:
    """One layer's commands of one phase (the module doc's rules): per round its loads, then its tokens (backward:
    then, once the round's results are back, the UPDATE of each of its slots); the expert table before the first
    token; the layer's attention steps gate its forward tokens (the Baseline: its loads too)."""
    run, host, proto = program.run, program.host, program.proto
    cfg, topo, C = run.cfg, proto.topology, run.cfg.chiplets_per_group
    e2c = layer.expert_to_chiplet
    backward = phase == "backward"
    loads = layer.schedule.of_kind(Load, phase)
    dispatches = layer.schedule.of_kind(Dispatch, phase)
    # the round of each load: the n-th load of a (chiplet, slot) is round n
    seen: dict[tuple[int, int], int] = {}
    load_round = []
    for ld in loads:
        load_round.append(seen.get((ld.chiplet, ld.slot), 0))
        seen[(ld.chiplet, ld.slot)] = load_round[-1] + 1
    rounds = max([d.round for d in dispatches] + load_round + [0]) + 1
    round_of = {ld.expert: r for ld, r in zip(loads, load_round)}
    if len(round_of) != len(loads):
        raise ScheduleError(f"each expert must be loaded exactly once in the {phase} pass of the schedule")
    per_expert = {d.per_expert for d in dispatches}
    if len(per_expert) > 1:
        raise ScheduleError("a schedule's dispatches must all be per-expert or all de-duplicated")
    dedup = not per_expert.pop() if per_expert else True
    save = any(d.save for d in dispatches)
    barriers = not layer.schedule.variant.streaming
    micro_batches = sorted({d.micro_batch for d in dispatches})
    mb_steps = {}
    if attention is not None and not backward:   # the layer's attention steps, in the schedule's order
        for att in layer.schedule.of_kind(Attention, "forward"):
            mb_steps[att.micro_batch] = next(attention)

    # the dispatch units: per round, per micro-batch, tokens ascending, each with its experts of the round
    tok_of_mb = {mb: sorted({int(t) for d in dispatches if d.micro_batch == mb for t in d.tokens})
                 for mb in micro_batches}
    units = []   # (round, micro-batch, token, [positions j in the token's top-k])
    for r in range(rounds):
        for mb in micro_batches:
            for t in tok_of_mb[mb]:
                js = [j for j, e in enumerate(layer.experts[t]) if round_of[int(e)] == r]
                if js and backward and not dedup:
                    units += [(r, mb, t, part) for part in _credit_parts(js, layer, t, cfg.hardware.token_slots)]
                elif js:
                    units.append((r, mb, t, js))
    first_unit, last_unit = {}, {}
    for i, (_, _, t, _) in enumerate(units):
        first_unit.setdefault(t, i)
        last_unit[t] = i
    # the root returns outputs in tag order, over the whole run: a layer's tokens continue the previous one's
    first_output = program.outputs
    program.outputs += len(layer.x)
    _check_entries([(r, t, js) for r, _, t, js in units], first_unit, last_unit, host, first_output)
    offset = len(program.loads)
    program.loads += loads
    links = {link: 0 for link in topo.links}
    unit_index = 0
    write_backs = layer.schedule.of_kind(WriteBack, phase)
    if barriers and mb_steps:   # the Baseline loads only after the layer's attention
        program.release = max(mb_steps.values())
    for e in range(cfg.moe.experts):   # the layer's expert table: the previous layer's tokens are all dispatched
        c = int(e2c[e])
        program.add(HostOp.TABLE, {"expert": e, "group": c // C, "chiplet": c % C, "local": int(layer.local[e])})
    for r in range(rounds):
        combined_groups: set[int] = set()
        for i, ld in enumerate(loads):
            if load_round[i] != r:
                continue
            if program.reloads and ld.group not in combined_groups:
                # the Baseline's barrier waits for every group's results, the streaming variants for the group's
                groups = [1 if barriers or g == ld.group else 0 for g in range(cfg.groups)]
                program.add(HostOp.WAIT_COMBINED, {"groups": groups})
                combined_groups.update(g for g in range(cfg.groups) if groups[g])
            previous = program.pending_load.get((ld.chiplet, ld.slot))
            if previous is not None:
                program.wait_loaded(previous)
            program.pending_load[(ld.chiplet, ld.slot)] = offset + i
            program.add(HostOp.LOAD, {"group": ld.group, "chiplet": ld.chiplet % C, "slot": ld.slot,
                                      "local": int(layer.local[ld.expert]),
                                      "addr": proto.expert_image_base(int(layer.image_index[ld.expert]), layer.index)})
        program.reloads = True
        if barriers:   # the Baseline's barrier: every load of the round is in before any dispatch
            for i in range(len(loads)):
                if load_round[i] == r:
                    program.wait_loaded(offset + i)
        while unit_index < len(units) and units[unit_index][0] == r:
            _, mb, t, js = units[unit_index]
            if mb_steps:
                program.release = max(program.release, mb_steps[mb])
            k = cfg.moe.top_k
            vectors = [layer.grads[t], layer.x[t]] if backward else [layer.x[t]]
            program.add(HostOp.TOKEN, {
                "token": host.entry_of(first_output + t), "first": int(first_unit[t] == unit_index),
                "final": int(last_unit[t] == unit_index), "dedup": int(dedup), "save": int(save and not backward),
                "save_index": proto.save_index(layer.index, t), "backward": int(backward),
                "valid": [1 if j in js else 0 for j in range(k)], "experts": [int(e) for e in layer.experts[t]],
                "gates": [int(g) for g in layer.gates[t]]}, tuple(f for v in vectors for f in proto.pack_token(v)))
            _count_links(links, topo, C, [int(e2c[layer.experts[t][j]]) for j in js], dedup)
            unit_index += 1
        _update_round(program, layer, [wb for wb in write_backs if round_of[wb.expert] == r], barriers)
    if backward:
        layer.link_backward = links
    else:
        layer.link_dispatches = links
    # The model's two counts must agree: replicas on the chiplet links are the schedule's replicas.
    leaf = sum(n for (a, _), n in links.items() if a != topo.root)
    if leaf != sum(d.replicas for d in dispatches):
        raise ScheduleError(f"host program sends {leaf} {phase} replicas to chiplets but the schedule counts "
                            f"{sum(d.replicas for d in dispatches)}")


def _credit_parts(js: list[int], layer: RunLayer, t: int, slots: int) -> list[list[int]]:
    """A per-expert backward token's experts ``js`` in TOKENs of at most ``slots`` experts per chiplet: the root's
    credit counts each of its replicas (one per expert), so one TOKEN with more could never go (docs/wafer.md)."""
    parts: list[list[int]] = []
    for j in js:
        chiplet = int(layer.expert_to_chiplet[layer.experts[t][j]])
        for part in parts:
            if sum(int(layer.expert_to_chiplet[layer.experts[t][i]]) == chiplet for i in part) < slots:
                part.append(j)
                break
        else:
            parts.append([j])
    return parts


def _update_round(program: _Program, layer: RunLayer, write_backs: list, barriers: bool) -> None:
    """A backward round's end: once its groups' results are back (the Baseline: every group's), an UPDATE of
    each slot it used, which a later LOAD of the slot waits for (its UPDATED). A chiplet has one UPDATE
    unanswered at a time (docs/protocol.md's promise 3: a second one would wait at its input, in front of the
    first one's MEM_ACK): each UPDATE after the chiplet's previous one's WAIT_LOADED."""
    if not write_backs:
        return
    cfg, C = program.run.cfg, program.run.cfg.chiplets_per_group
    groups = {wb.group for wb in write_backs}
    program.add(HostOp.WAIT_COMBINED, {"groups": [1 if barriers or g in groups else 0 for g in range(cfg.groups)]})
    for wb in write_backs:
        previous = program.pending_update.get(wb.chiplet)
        if previous is not None:
            program.wait_loaded(previous)
        program.pending_update[wb.chiplet] = len(program.loads)
        program.pending_load[(wb.chiplet, wb.slot)] = len(program.loads)
        program.loads.append(wb)
        program.add(HostOp.UPDATE, {"group": wb.group, "chiplet": wb.chiplet % C, "slot": wb.slot,
                                    "local": int(layer.local[wb.expert]),
                                    "addr": program.proto.expert_image_base(int(layer.image_index[wb.expert]),
                                                                            layer.index)})


def _count_links(links: dict, topo, C: int, chips: list[int], dedup: bool) -> None:
    """The DISPATCH packets one TOKEN puts on each link: per group and chiplet (de-duplicated) or per expert."""
    if dedup:
        for g in sorted({c // C for c in chips}):
            links[(topo.root, topo.switch(g))] += 1
        for c in sorted(set(chips)):
            links[(topo.switch(c // C), topo.chiplet(c // C, c % C))] += 1
    else:
        for c in chips:
            links[(topo.root, topo.switch(c // C))] += 1
            links[(topo.switch(c // C), topo.chiplet(c // C, c % C))] += 1


def _check_entries(units, first_unit, last_unit, host: HostInterface, first_output: int) -> None:
    """The root returns tokens in order from a ring of ``host.entries`` combine entries: token ``t`` (of a layer
    whose first token is the run's output ``first_output``) takes entry ``host.entry_of(first_output + t)`` at its
    first dispatch, which must find token ``t - entries`` returned, so every token before it must have had its
    final dispatch already (else the root would wait forever)."""
    entries = host.entries
    finals_before = -1   # highest token index such that all tokens <= it had their final dispatch
    done = set()
    for i, (_, t, _) in enumerate(units):
        if first_unit[t] == i and t - entries > finals_before:
            raise ScheduleError(f"token {t} would need combine entry {host.entry_of(first_output + t)} while token "
                                f"{t - entries} still waits for a later weight round: a schedule with several "
                                f"rounds may have at most {entries} tokens (2 ** hardware.tag_bits)")
        if last_unit[t] == i:
            done.add(t)
            while finals_before + 1 in done:
                finals_before += 1
