"""The model side of the end-to-end run: host command codec and the schedule -> host program translation."""

from __future__ import annotations

import numpy as np
import pytest

from mozart.model.config import load_config, override
from mozart.model.errors import ConfigError, ProtocolError, ScheduleError
from mozart.model.host import HostCommand, HostInterface, HostOp
from mozart.model import golden
from mozart.model.protocol import Protocol
from mozart.model.wafer_run import build_run


def test_host_codec_round_trip():
    cfg = load_config("wafer4x4")
    host = HostInterface(cfg)
    cmd = HostCommand(HostOp.LOAD, {"group": 3, "chiplet": 2, "slot": 1, "local": 0, "addr": 640})
    (flit,) = host.encode(cmd)
    assert flit.first and flit.last
    assert host.decode_header(flit.data).args == dict(cmd.args)
    tok = HostCommand(HostOp.TOKEN, {"token": 5, "first": 1, "final": 1, "dedup": 1, "save": 0, "valid": [1] * 4,
                                     "experts": [1, 2, 3, 4], "gates": [9, 8, 7, 6]}, (0, 0))
    assert len(host.encode(tok)) == host.flits(HostOp.TOKEN) == 1 + host.route_flits + host.token_flits
    with pytest.raises(ProtocolError, match="TOKEN must carry 2 token flits"):
        host.encode(HostCommand(HostOp.TOKEN, tok.args, (0,)))
    backward = HostCommand(HostOp.TOKEN, {**tok.args, "backward": 1}, (0,) * 4)   # the output gradient, the token
    assert len(host.encode(backward)) == host.command_flits(backward) == 1 + host.route_flits + 2 * host.token_flits
    with pytest.raises(ProtocolError, match="TOKEN must carry 4 token flits"):
        host.encode(HostCommand(HostOp.TOKEN, backward.args, (0, 0)))
    update = HostCommand(HostOp.UPDATE, {"group": 1, "chiplet": 3, "slot": 1, "local": 0, "addr": 4096})
    assert host.decode_header(host.encode(update)[0].data).args == dict(update.args)
    with pytest.raises(ProtocolError, match="must fit"):
        host.encode(HostCommand(HostOp.TABLE, {"expert": 99}))


@pytest.mark.parametrize("variant", ["baseline", "A", "B", "C"])
@pytest.mark.parametrize("slots,layers", [(None, 1), (1, 1), (1, 2)])
def test_program_serves_every_pair_once_after_its_load(variant, slots, layers):
    """Every (token, expert) pair of every layer is dispatched once, by a TOKEN after the LOAD of that layer's
    expert into a slot of its chiplet that no later LOAD overwrote (the root holds the TOKEN until the expert is
    RESIDENT); in the Baseline also after that slot's WAIT_LOADED (its barrier); a layer's tokens follow its
    expert table."""
    cfg = load_config("tiny")
    run = build_run(cfg, variant=variant, tokens=64, seed=3, slots=slots, skew=1.0, layers=layers)
    host = HostInterface(cfg)
    served = np.zeros((layers, *run.layers[0].experts.shape), dtype=int)
    waited, loaded, holder = set(), {}, {}
    table, layer, previous = {}, -1, None
    for cmd in run.commands:
        a = cmd.args
        if cmd.op is HostOp.TABLE:
            if previous is not HostOp.TABLE:
                layer, table = layer + 1, {}
            table[a["expert"]] = a["local"]
        elif cmd.op is HostOp.LOAD:
            slot = (a["group"], a["chiplet"], a["slot"])
            loaded[(a["group"], a["chiplet"], a["local"])] = (slot, a["addr"])
            holder[slot] = a["local"]
            waited.discard(slot)
        elif cmd.op is HostOp.WAIT_LOADED:
            waited.add((a["group"], a["chiplet"], a["slot"]))
        elif cmd.op is HostOp.TOKEN:
            this = run.layers[layer]
            t = (a["token"] - layer * run.tokens) % host.entries   # tags continue over the layers
            assert list(a["experts"]) == this.experts[t].tolist()
            for j, v in enumerate(a["valid"]):
                if v:
                    e = a["experts"][j]
                    g, cl = divmod(int(this.expert_to_chiplet[e]), cfg.chiplets_per_group)
                    image = Protocol(cfg).expert_image_base(int(this.image_index[e]), this.index)
                    slot, addr = loaded[(g, cl, table[e])]
                    assert addr == image and holder[slot] == table[e], "dispatch before the LOAD of its layer's expert"
                    assert slot in waited or variant != "baseline", "a Baseline dispatch before its barrier"
                    served[layer, t, j] += 1
            assert a["dedup"] == (variant in ("B", "C"))
        previous = cmd.op
    assert (served == 1).all()
    assert run.rounds == (2 if slots == 1 else 1)
    # the chiplet links carry the schedules' replicas (the translation checks it; here the totals)
    replicas = sum(layer.schedule.replicas_per_token() for layer in run.layers) / layers
    assert run.replicas_per_token()["chiplet"] == pytest.approx(replicas)


def test_several_rounds_need_every_token_in_flight():
    cfg = override(load_config("tiny"), {"hardware.tag_bits": 5})
    with pytest.raises(ScheduleError, match="at most 32 tokens"):
        build_run(cfg, variant="C", tokens=64, slots=1)
    assert build_run(cfg, variant="C", tokens=64).rounds == 1   # one round: entries are reused in order


def test_bad_arguments_name_the_rule():
    cfg = load_config("tiny")
    with pytest.raises(ConfigError, match="tokens"):
        build_run(cfg, tokens=2)
    with pytest.raises(ConfigError, match="slots"):
        build_run(cfg, tokens=16, slots=3)
    with pytest.raises(ConfigError, match="fault"):
        build_run(cfg, tokens=16, fault="boom")


def test_baseline_barrier_waits_for_every_load_before_dispatching():
    cfg = load_config("tiny")
    for variant, barrier in (("baseline", True), ("A", False)):
        ops = [c.op for c in build_run(cfg, variant=variant, tokens=64, seed=2).commands]
        first_token = ops.index(HostOp.TOKEN)
        waits_before = ops[:first_token].count(HostOp.WAIT_LOADED)
        assert (waits_before == ops.count(HostOp.LOAD)) == barrier


def test_layers_chain_outputs_into_the_next_layers_tokens():
    """Layer l + 1's tokens are layer l's outputs requantised; every layer has its own placement, weights and
    DRAM region, and the host program rewrites the expert table before each layer's tokens."""
    cfg = load_config("tiny")
    run = build_run(cfg, variant="C", tokens=64, seed=4, layers=2)
    first, second = run.layers
    assert (second.x == golden.next_layer_tokens(first.expected, cfg)).all()
    assert (second.expected == golden.moe_layer(second.x, second.w1, second.w2, second.experts, second.gates,
                                                second.expert_to_chiplet, cfg)).all()
    assert not (first.w1 == second.w1).all() and (first.index, second.index) == (0, 1)
    assert run.outputs == 128 and (run.expected == np.concatenate([first.expected, second.expected])).all()
    proto = Protocol(cfg)
    images = sorted((g, base) for g, group in enumerate(run.dram) for base, _ in group)
    assert max(base for _, base in images) < proto.activation_base and len(set(images)) == 2 * cfg.moe.experts
    ops = [c.op for c in run.commands]
    tables = [i for i, op in enumerate(ops) if op is HostOp.TABLE and (i == 0 or ops[i - 1] is not HostOp.TABLE)]
    assert len(tables) == 2 and ops[tables[1] - 1] is HostOp.TOKEN   # after the first layer's last token


def test_attention_steps_gate_the_tokens_and_the_baselines_loads():
    """With several layers the host stands in for attention: one step per micro-batch and layer (the Baseline:
    one per layer), each waiting for the previous layer's outputs of its tokens; a token waits for its
    micro-batch's step, and only the Baseline holds the next layer's loads until its attention has ended."""
    from mozart.model.perf.regime import host_attention_cycles_per_token
    cfg = load_config("tiny")
    per_token = host_attention_cycles_per_token(cfg)
    for variant, steps_per_layer in (("A", cfg.training.micro_batches), ("baseline", 1)):
        run = build_run(cfg, variant=variant, tokens=64, seed=4, layers=2)
        assert len(run.attention) == 2 * steps_per_layer
        assert [s.outputs for s in run.attention[:steps_per_layer]] == [0] * steps_per_layer
        assert run.attention[-1].outputs == 64 and run.attention[0].cycles == round(64 / steps_per_layer * per_token)
        releases = [c.release for c in run.commands]
        assert releases == sorted(releases) and releases[-1] == len(run.attention)
        second_layer_loads = [c for c in run.commands if c.op is HostOp.LOAD][cfg.moe.experts:]
        held = {c.release for c in second_layer_loads}
        assert (held == {2 * steps_per_layer}) == (variant == "baseline")
    assert build_run(cfg, variant="A", tokens=64, layers=2, attention=False).attention == []
    assert build_run(cfg, variant="A", tokens=64).attention == []   # one layer: none by default


def test_layers_must_fit_the_dram_and_the_trace():
    cfg = load_config("tiny")
    with pytest.raises(ConfigError, match=r"layers must be between 1 and moe.layers \(2.*not 3"):
        build_run(cfg, tokens=16, layers=3)
    with pytest.raises(ConfigError, match=r"layer must be in 0..1 .*not 2"):
        build_run(cfg, tokens=16, layer=2)
    with pytest.raises(ConfigError, match=r"layer must be in 0..0 \(the first of 2"):
        build_run(cfg, tokens=16, layer=1, layers=2)


def _stray_wait_loaded(commands) -> list[int]:
    """Indices of WAIT_LOADEDs that neither precede a LOAD (a reload waits for the slot's previous load) nor
    belong to the program's final waits (after its last TOKEN): the ones that hold tokens."""
    ops = [c.op for c in commands]
    last_token = max(i for i, op in enumerate(ops) if op is HostOp.TOKEN)
    stray = []
    for i, op in enumerate(ops[:last_token]):
        if op is HostOp.WAIT_LOADED:
            following = next(o for o in ops[i:] if o is not HostOp.WAIT_LOADED)
            if following is not HostOp.LOAD:
                stray.append(i)
    return stray


@pytest.mark.parametrize("slots", [None, 1])
def test_streaming_programs_hold_no_token_behind_a_wait_loaded(slots):
    """The streaming variants leave a token's wait for its weights to the root's issue window: no WAIT_LOADED
    between a round's LOADs and its tokens (only before a reload and at the end). The Baseline keeps its barriers:
    a WAIT_LOADED of every load of the round before the round's first TOKEN. Mutant: a WAIT_LOADED put back in
    front of a token is found."""
    cfg = load_config("tiny")
    for variant in ("A", "B", "C"):
        commands = build_run(cfg, variant=variant, tokens=64, seed=2, slots=slots, layers=2).commands
        assert _stray_wait_loaded(commands) == []
        first_token = next(i for i, c in enumerate(commands) if c.op is HostOp.TOKEN)
        load = next(c for c in commands if c.op is HostOp.LOAD).args
        wait = HostCommand(HostOp.WAIT_LOADED, {k: load[k] for k in ("group", "chiplet", "slot")})
        assert _stray_wait_loaded(commands[:first_token] + [wait] + commands[first_token:]) == [first_token]
    baseline = build_run(cfg, variant="baseline", tokens=64, seed=2, slots=slots, layers=2).commands
    ops = [c.op for c in baseline]
    first_token = ops.index(HostOp.TOKEN)
    round_loads = ops[:first_token].count(HostOp.LOAD)
    assert ops[:first_token].count(HostOp.WAIT_LOADED) == round_loads
    assert len(_stray_wait_loaded(baseline)) >= round_loads


def test_drop_load_leaves_a_token_never_resident():
    """The watchdog's fault: without the first LOAD, a token's expert never becomes resident, so the root would
    hold it forever, as the replay reports."""
    from mozart.model.perf.rtl import predict_cycles  # noqa: PLC0415
    cfg = load_config("tiny")
    good = build_run(cfg, tokens=16)
    assert predict_cycles(good) > 0
    with pytest.raises(ScheduleError, match="no earlier LOAD made resident"):
        predict_cycles(build_run(cfg, tokens=16, fault="drop-load"))


@pytest.mark.parametrize("variant", ["baseline", "C"])
@pytest.mark.parametrize("slots,layers", [(None, 1), (1, 2)])
def test_training_program_dispatches_every_pair_backward_and_updates_every_trained_slot(variant, slots, layers):
    """A training run: the forward program, a WAIT_COMBINED of every group, then per layer (the last first) the
    backward TOKENs (output gradient and token, the record the forward saved) of every (token, expert) pair once,
    and per round an UPDATE of every slot the round trained, after a WAIT_COMBINED; a LOAD into a slot that an
    UPDATE left comes after that UPDATE's WAIT_LOADED. The golden backward chains the layers."""
    from mozart.model import golden_backward
    cfg = load_config("tiny")
    run = build_run(cfg, variant=variant, tokens=64, seed=3, slots=slots, layers=layers, train=True)
    proto = Protocol(cfg)
    tokens = [i for i, c in enumerate(run.commands) if c.op is HostOp.TOKEN]
    first_backward = next(i for i in tokens if run.commands[i].args["backward"])
    last_forward = max(i for i in tokens if i < first_backward)
    assert any(c.op is HostOp.WAIT_COMBINED and c.args["groups"] == [1] * cfg.groups
               for c in run.commands[last_forward:first_backward]), "the phases are apart"
    served = {}
    updated, waiting = set(), set()
    for cmd in run.commands[first_backward - 1:]:
        a = cmd.args
        if cmd.op is HostOp.TOKEN:
            assert a["backward"] and not a["save"]
            layer, t = divmod(a["save_index"], proto.step_tokens)
            this = next(lay for lay in run.layers if lay.index == layer)
            assert cmd.payload == tuple(proto.pack_token(this.grads[t]) + proto.pack_token(this.x[t]))
            for j, v in enumerate(a["valid"]):
                if v:
                    served[(layer, t, j)] = served.get((layer, t, j), 0) + 1
        elif cmd.op is HostOp.UPDATE:
            updated.add((a["group"], a["chiplet"], a["slot"]))
            waiting.add((a["group"], a["chiplet"], a["slot"]))
        elif cmd.op is HostOp.WAIT_LOADED:
            waiting.discard((a["group"], a["chiplet"], a["slot"]))
        elif cmd.op is HostOp.LOAD:
            assert (a["group"], a["chiplet"], a["slot"]) not in waiting, "a LOAD must wait for its slot's UPDATED"
    pairs = {(lay.index, t, j) for lay in run.layers for t in range(run.tokens) for j in range(cfg.moe.top_k)}
    assert served == {p: 1 for p in pairs}
    assert not waiting and updated, "every UPDATE is waited for before the run ends"
    assert len(run.expected) == run.outputs == 2 * layers * run.tokens
    last = run.backward_layers[-1]   # the first layer: its output gradient is the next layer's input gradient
    if layers > 1:
        assert (last.grads == golden_backward.previous_layer_gradient(run.backward_layers[0].backward.dx,
                                                                        cfg)).all()
    replicas = sum(n for (a_, _), n in run.layers[0].link_backward.items() if a_ != proto.topology.root)
    assert sum(len(p) for p in run.gate_grads().values()) == sum(
        sum(n for (a_, _), n in lay.link_backward.items() if a_ != proto.topology.root) for lay in run.layers)
    assert replicas > 0
    images = run.final_images()
    assert sum(map(len, images)) == layers * cfg.moe.experts * proto.image_words
    changed = sum(w != dict(words_of(run, g)).get(a) for g in range(cfg.groups) for a, w in images[g].items())
    assert changed > 0, "the update changes some weights"


def words_of(run, group: int):
    """The group's preloaded DRAM words, ``(address, word)``."""
    return [(base + i, w) for base, words in run.dram[group] for i, w in enumerate(words)]


def test_training_run_longer_than_a_step_is_rejected():
    cfg = load_config("tiny")
    with pytest.raises(ConfigError, match="tokens must be at most a training step's 256"):
        build_run(cfg, tokens=512, train=True)


def test_a_per_expert_backward_token_is_split_to_fit_the_credit():
    """With one activation-buffer entry per chiplet, a Baseline backward token's experts on one chiplet go in
    TOKENs of one expert there each (the root's credit counts a replica per expert), and every pair still once."""
    cfg = override(load_config("tiny"), {"hardware.token_slots": 1})
    run = build_run(cfg, variant="baseline", tokens=64, seed=3, train=True)
    layer, served, split = run.layers[0], {}, 0
    for cmd in run.commands:
        if cmd.op is HostOp.TOKEN and cmd.args["backward"]:
            chiplets = [int(layer.expert_to_chiplet[e]) for e, v in zip(cmd.args["experts"], cmd.args["valid"]) if v]
            assert len(chiplets) == len(set(chiplets)), "at most token_slots (1) experts per chiplet in a TOKEN"
            split += not (cmd.args["first"] and cmd.args["final"])
            t = cmd.args["save_index"] % Protocol(cfg).step_tokens
            for j, v in enumerate(cmd.args["valid"]):
                served[(t, j)] = served.get((t, j), 0) + v
    assert split > 0 and set(served.values()) == {1} and len(served) == 64 * cfg.moe.top_k


def test_a_chiplet_has_one_update_unanswered_at_a_time():
    """Before a chiplet's next UPDATE the program waits for the previous one's UPDATED (WAIT_LOADED of its slot):
    a second UPDATE would wait at the chiplet's input in front of the first one's MEM_ACK (docs/protocol.md)."""
    run = build_run(load_config("tiny"), variant="C", tokens=64, seed=3, train=True)
    unanswered: dict[tuple[int, int], tuple[int, int, int]] = {}
    for cmd in run.commands:
        a = cmd.args
        if cmd.op is HostOp.UPDATE:
            assert (a["group"], a["chiplet"]) not in unanswered, "an UPDATE while the chiplet's previous one is out"
            unanswered[(a["group"], a["chiplet"])] = (a["group"], a["chiplet"], a["slot"])
        elif cmd.op is HostOp.WAIT_LOADED:
            key = (a["group"], a["chiplet"])
            if unanswered.get(key) == (a["group"], a["chiplet"], a["slot"]):
                del unanswered[key]
