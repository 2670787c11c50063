"""The replay of the root's command stream, issue window and finite buffers (model/perf/inorder.py) and its use in
predict_cycles."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mozart.model.config import load_config
from mozart.model.host import HostCommand, HostInterface, HostOp
from mozart.model.perf import inorder
from mozart.model.perf.inorder import InOrderTiming, in_order_cycles

CPE = 64
#: buffers too large to ever fill
UNBOUNDED = InOrderTiming(cycles_per_expert=CPE, token_slots=10 ** 6, queue_flits=10 ** 6,
                          reduction_entries=10 ** 6, queue_latency=2.0,
                          hop_cycles=2.0, chiplet_input_flits=4, chiplet_output_flits=3, loaded_cycles=5.0)


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny")   # 2 groups x 2 chiplets, 8 experts (2 per chiplet), top-2


def e2c():
    return np.repeat(np.arange(4), 2)   # experts 2c and 2c + 1 on chiplet c


def token(t: int, experts: list[int], dedup: int = 1) -> HostCommand:
    return HostCommand(HostOp.TOKEN, {"token": t, "first": 1, "final": 1, "dedup": dedup, "save": 0,
                                      "valid": [1, 0], "experts": [experts[0], 0], "gates": [1, 0]})


def loads_for(chiplets, done: float = 0.0) -> dict:
    return {(c, s): [(0.0, done)] for c in chiplets for s in range(2)}


#: A LOAD of every slot of tiny's four chiplets, slot s holding local expert s (experts 2c + s): the root
#: dispatches a token only once its experts are resident.
LOADS = [HostCommand(HostOp.LOAD, {"group": g, "chiplet": c, "slot": s, "local": s, "addr": 0})
         for g in range(2) for c in range(2) for s in range(2)]
LOADED_AT_ONCE = loads_for(range(4))


def test_finite_buffer_couples_chiplets(cfg):
    """Six tokens for chiplet 0 (group 0), then six for chiplet 2 (group 1). Unbounded, chiplet 2 starts at
    once and both finish after about 6 tokens of compute. With 2 buffer entries and a root queue of one packet (3
    flits on tiny),
    chiplet 0 holds at most 3 of its tokens (2 inside, 1 queued) and the root is stuck on the rest, so
    chiplet 2 starts only after chiplet 0 finished its first 2 tokens: at least 2 tokens' compute later."""
    program = LOADS + [token(t, [0]) for t in range(6)] + [token(6 + t, [4]) for t in range(6)]
    free = in_order_cycles(cfg, program, e2c(), LOADED_AT_ONCE, UNBOUNDED)
    tight = in_order_cycles(cfg, program, e2c(), LOADED_AT_ONCE, replace(UNBOUNDED, token_slots=2, queue_flits=3))
    assert free < 6 * CPE + 100
    assert tight >= free + 2 * CPE
    # a full chiplet alone does not stop the root while its group's queue has room
    assert in_order_cycles(cfg, program, e2c(), LOADED_AT_ONCE, replace(UNBOUNDED, token_slots=2)) == free


def test_wait_holds_every_later_command(cfg):
    """A WAIT_LOADED for a late load holds the token behind it, and so every token after that one, even one
    for a chiplet whose weights were loaded long before."""
    late = 5000.0
    loads = {**LOADED_AT_ONCE, (2, 0): [(0.0, late)]}
    program = LOADS
    early = [token(0, [0])]
    held = [HostCommand(HostOp.WAIT_LOADED, {"group": 1, "chiplet": 0, "slot": 0}), token(1, [4])]
    after = [token(2, [2])]
    without_wait = in_order_cycles(cfg, program + early + [token(1, [2])], e2c(), loads, UNBOUNDED)
    with_wait = in_order_cycles(cfg, program + early + held + after, e2c(), loads, UNBOUNDED)
    assert without_wait < 3 * CPE
    # token 2 (chiplet 1, loaded at 0) is issued after the wait: its output comes after the late load
    assert with_wait > late + CPE


def test_per_expert_packets_take_one_entry_each(cfg):
    """Without de-duplication a token selecting two experts of one chiplet sends two packets, each taking a
    buffer entry: with one entry the second packet waits for the first one's compute."""
    two = HostCommand(HostOp.TOKEN, {"token": 0, "first": 1, "final": 1, "dedup": 0, "save": 0,
                                     "valid": [1, 1], "experts": [0, 1], "gates": [1, 1]})
    one_entry = replace(UNBOUNDED, token_slots=1)
    dedup = replace(two, args={**two.args, "dedup": 1})
    per_expert = in_order_cycles(cfg, LOADS + [two], e2c(), LOADED_AT_ONCE, one_entry)
    one_packet = in_order_cycles(cfg, LOADS + [dedup], e2c(), LOADED_AT_ONCE, one_entry)
    assert one_packet >= 2 * CPE
    # the second packet enters only after the first one's compute, then crosses the switch again
    assert per_expert >= one_packet + UNBOUNDED.hop_cycles + UNBOUNDED.chiplet_input_flits
    assert in_order_cycles(cfg, LOADS + [two], e2c(), LOADED_AT_ONCE, UNBOUNDED) < per_expert


def test_predict_cycles_in_order_is_never_below_the_engine():
    from mozart.model.perf.rtl import predict_cycles  # noqa: PLC0415
    from mozart.model.wafer_run import build_run  # noqa: PLC0415

    tiny = load_config("tiny")
    for variant in ("baseline", "B"):
        run = build_run(tiny, variant=variant, seed=1, tokens=64)
        engine = predict_cycles(run, in_order=False)
        assert predict_cycles(run) >= engine


def test_attention_steps_hold_commands_and_wait_for_outputs(cfg):
    """Step 1 (100 cycles) waits for nothing, step 2 (50 cycles) for the first output: a token released by step
    1 goes after 100 cycles, one released by step 2 only 50 cycles after the first output left. Without the
    steps (the mutant) both go at once."""
    from mozart.model.wafer_run import AttentionStandIn  # noqa: PLC0415
    steps = [AttentionStandIn(0, 100), AttentionStandIn(1, 50)]
    first, second = replace(token(0, [0]), release=1), replace(token(1, [4]), release=2)
    held = in_order_cycles(cfg, LOADS + [first, second], e2c(), LOADED_AT_ONCE, UNBOUNDED, steps)
    alone = in_order_cycles(cfg, LOADS + [first], e2c(), LOADED_AT_ONCE, UNBOUNDED, steps)
    free = in_order_cycles(cfg, LOADS + [token(0, [0]), token(1, [4])], e2c(), LOADED_AT_ONCE, UNBOUNDED)
    assert alone > 100 and held >= alone + 50 + CPE and free < 100 + CPE
    with pytest.raises(Exception, match="waits for output 1 before"):   # a step that waits for a later token
        in_order_cycles(cfg, LOADS + [replace(token(0, [0]), release=2)], e2c(), LOADED_AT_ONCE, UNBOUNDED, steps)


def test_a_layers_tables_route_its_tokens(cfg):
    """With one expert table per layer, a token after the second TABLE block goes where the second says."""
    table = [HostCommand(HostOp.TABLE, {"expert": 0, "group": 0, "chiplet": 0, "local": 0})]
    program = LOADS + table + [token(0, [0])] + table + [token(1, [0])]
    moved = e2c().copy()
    moved[0] = 3   # local 0 of chiplet 3 (ascending global id: 0, 6, 7)
    same = in_order_cycles(cfg, program, np.stack([e2c(), e2c()]), LOADED_AT_ONCE, UNBOUNDED)
    other = in_order_cycles(cfg, program, np.stack([e2c(), moved]), LOADED_AT_ONCE, UNBOUNDED)
    assert other < same   # the second token computes on another chiplet, in parallel with the first


# --- the issue window (hardware.issue_window): a ready younger TOKEN goes ahead of one waiting for its load ---

LATE = 3000.0
#: expert 0's load (chiplet 0, slot 0) ends late; every other expert is resident at once
LATE_EXPERT_0 = {**LOADED_AT_ONCE, (0, 0): [(0.0, LATE)]}
WINDOW_2 = replace(UNBOUNDED, issue_window=2)
#: twenty tokens for chiplet 2 (expert 4, resident at once): 20 tokens' compute if they wait for expert 0
READY_TOKENS = [token(t, [4]) for t in range(1, 21)]


def ignore_readiness(monkeypatch):
    """Mutant: the root dispatches a token whether or not its experts are resident."""
    monkeypatch.setattr(inorder._Replay, "_ready", lambda self, entry, experts: 0.0)


def test_window_lets_a_ready_token_go_ahead(cfg, monkeypatch):
    """Token 0 waits for expert 0's late load. In order (W = 1) the twenty ready tokens behind it wait too; with
    W = 2 they are dispatched while it waits, and token 0 still computes only after its load."""
    program = LOADS + [token(0, [0])] + READY_TOKENS
    in_order = in_order_cycles(cfg, program, e2c(), LATE_EXPERT_0, UNBOUNDED)
    window = in_order_cycles(cfg, program, e2c(), LATE_EXPERT_0, WINDOW_2)
    assert in_order >= LATE + 20 * CPE
    assert LATE + CPE <= window <= in_order - 15 * CPE
    ignore_readiness(monkeypatch)
    assert in_order_cycles(cfg, program, e2c(), LATE_EXPERT_0, WINDOW_2) < LATE


def test_a_token_no_load_made_resident_is_an_error(cfg):
    """The root would hold it forever (a later LOAD waits for the window to empty): the replay says so."""
    with pytest.raises(Exception, match="TOKEN 0 selects expert 0, which no earlier LOAD made resident"):
        in_order_cycles(cfg, [token(0, [0])], e2c(), {}, WINDOW_2)


def test_same_entry_holds_a_younger_token_back(cfg, monkeypatch):
    """A token split over two dispatches (first on expert 0, waiting for its load; final on expert 4, ready):
    the final dispatch must not pass the first one, so the window stays full and the twenty ready tokens behind
    wait for the load. Mutant without the same-entry rule: they go at once."""
    split = [HostCommand(HostOp.TOKEN, {"token": 0, "first": 1, "final": 0, "dedup": 1, "save": 0,
                                        "valid": [1, 0], "experts": [0, 4], "gates": [1, 1]}),
             HostCommand(HostOp.TOKEN, {"token": 0, "first": 0, "final": 1, "dedup": 1, "save": 0,
                                        "valid": [0, 1], "experts": [0, 4], "gates": [1, 1]})]
    program = LOADS + split + READY_TOKENS
    assert in_order_cycles(cfg, program, e2c(), LATE_EXPERT_0, WINDOW_2) >= LATE + 20 * CPE
    monkeypatch.setattr(inorder._Replay, "_held_by_older", lambda self, i: False)
    assert in_order_cycles(cfg, program, e2c(), LATE_EXPERT_0, WINDOW_2) < LATE + 5 * CPE


@pytest.mark.parametrize("command", [
    HostCommand(HostOp.TABLE, {"expert": 0, "group": 0, "chiplet": 0, "local": 0}),
    HostCommand(HostOp.LOAD, {"group": 1, "chiplet": 1, "slot": 0, "local": 0, "addr": 0}),
    HostCommand(HostOp.WAIT_COMBINED, {"groups": [1, 1]})], ids=lambda c: c.op.name)
def test_table_load_and_wait_combined_wait_for_an_empty_window(cfg, monkeypatch, command):
    """The command after the waiting token 0 holds the ready tokens behind it until token 0 was dispatched (after
    its load). Mutant where the command does not wait for the window: they go ahead."""
    program = LOADS + [token(0, [0]), command] + READY_TOKENS
    loads = {**LATE_EXPERT_0, (3, 0): [(0.0, 0.0), (0.0, 0.0)]}
    assert in_order_cycles(cfg, program, e2c(), loads, WINDOW_2) >= LATE + 20 * CPE
    monkeypatch.setattr(inorder._Replay, "WAIT_FOR_EMPTY_WINDOW", ())
    assert in_order_cycles(cfg, program, e2c(), loads, WINDOW_2) < LATE + 5 * CPE


def test_ties_go_to_the_oldest(cfg, monkeypatch):
    """Tokens 0 and 1 both wait for loads that end together: the window dispatches the older first, as in order
    (same cycles as W = 1). Mutant that breaks ties to the youngest: token 1 first, so output 0 leaves later."""
    program = LOADS + [token(0, [0]), token(1, [1])]
    loads = {**LATE_EXPERT_0, (0, 1): [(0.0, LATE)]}   # both end together
    in_order = in_order_cycles(cfg, program, e2c(), loads, UNBOUNDED)
    assert in_order_cycles(cfg, program, e2c(), loads, WINDOW_2) == in_order
    start = inorder._Replay._start
    monkeypatch.setattr(inorder._Replay, "_start",
                        lambda self, i: None if (s := start(self, i)) is None else s - 1e-6 * i)
    assert in_order_cycles(cfg, program, e2c(), loads, WINDOW_2) > in_order


def test_outputs_leave_in_token_order_after_out_of_order_dispatch(cfg, monkeypatch):
    """Tokens 1-3 go ahead of token 0 (waiting for its load) and finish first, but the outputs leave in token order:
    the attention step that waits for two outputs (0 and 1) ends only 100 cycles after token 0's, and the token it
    releases computes after that. Mutant that numbers outputs in the order they complete: the step takes tokens 1
    and 2 and ends long before token 0's load."""
    from mozart.model.wafer_run import AttentionStandIn  # noqa: PLC0415
    program = LOADS + [token(t, [0 if t == 0 else 4]) for t in range(4)] + [replace(token(4, [4]), release=1)]
    steps = [AttentionStandIn(2, 100)]
    window_4 = replace(UNBOUNDED, issue_window=4)
    assert in_order_cycles(cfg, program, e2c(), LATE_EXPERT_0, window_4, steps) >= LATE + 2 * CPE + 100
    monkeypatch.setattr(inorder._Outputs, "returned",
                        lambda self, output, done: self.done.setdefault(len(self.done), done))
    assert in_order_cycles(cfg, program, e2c(), LATE_EXPERT_0, window_4, steps) < LATE + 2 * CPE + 100


def test_in_order_timing_takes_the_configs_window(cfg):
    from mozart.model.config import override  # noqa: PLC0415
    from mozart.model.perf.rtl import in_order_timing  # noqa: PLC0415
    assert in_order_timing(cfg).issue_window == cfg.hardware.issue_window
    assert in_order_timing(override(cfg, {"hardware.issue_window": 5})).issue_window == 5


def test_output_numbers_follow_the_tokens_not_their_final_dispatches():
    """With two weight rounds a token's final dispatch may come before an older token's: the replay numbers each
    TOKEN's output from its combine entry (here entry = token, 64 entries per 64-token layer), which counting
    final dispatches in program order (the mutant) gets wrong."""
    from mozart.model.config import override  # noqa: PLC0415
    from mozart.model.wafer_run import build_run  # noqa: PLC0415
    cfg = override(load_config("tiny"), {"hardware.tag_bits": 6})
    run = build_run(cfg, variant="C", tokens=64, seed=3, slots=1, layers=2)
    numbers, layer, finals, previous = inorder._OutputNumbers(64), -1, 0, None
    by_entry, by_final_order = [], []
    for cmd in run.commands:
        layer += cmd.op is HostOp.TABLE and previous is not HostOp.TABLE
        previous = cmd.op
        if cmd.op is HostOp.TOKEN:
            by_entry.append((numbers.take(cmd.args["token"], bool(cmd.args["final"])), layer * 64 + cmd.args["token"]))
            if cmd.args["final"]:
                by_final_order.append((finals, layer * 64 + cmd.args["token"]))
                finals += 1
    assert len(by_entry) > 128 and all(n == truth for n, truth in by_entry)
    assert any(n != truth for n, truth in by_final_order)


def test_a_groups_loads_stream_one_after_another(cfg, monkeypatch):
    """Two LOADs of group 0 issued back to back, an image of 1000 cycles each: the second expert is resident one
    image later than the first. Mutant where the controller streams them side by side: one cycle apart."""
    timing = replace(UNBOUNDED, load_cycles=1000.0)
    two = [HostCommand(HostOp.LOAD, {"group": 0, "chiplet": 0, "slot": s, "local": s, "addr": 0}) for s in range(2)]

    def gap():
        first = in_order_cycles(cfg, two + [token(0, [0])], e2c(), LOADED_AT_ONCE, timing)
        second = in_order_cycles(cfg, two + [token(0, [1])], e2c(), LOADED_AT_ONCE, timing)
        return second - first

    assert gap() == pytest.approx(1000.0)
    command = inorder._Replay.command

    def side_by_side(self, cmd):
        self.group_free.clear()
        command(self, cmd)

    monkeypatch.setattr(inorder._Replay, "command", side_by_side)
    assert gap() < 10


# --- training programs: backward TOKENs (the root's credit, the restore) and UPDATEs (docs/wafer.md §7) ---

#: the backward's numbers, distinct enough that each term shows in a sum
BACKWARD = inorder.BackwardTiming(cycles_per_job=128, input_flits=6, restore_cycles=30.0, restore_flits=5,
                                  gate_grad_flits=2, update_cycles=100.0, ack_latency=5.0)


def backward_token(t: int, experts: list[int]) -> HostCommand:
    valid = [1] * len(experts) + [0] * (2 - len(experts))
    return HostCommand(HostOp.TOKEN, {"token": t, "first": 1, "final": 1, "dedup": 1, "save": 0, "backward": 1,
                                      "valid": valid, "experts": (experts + [0])[:2], "gates": [1, 1]})


def sizes(cfg):
    """(backward TOKEN host flits, backward DISPATCH flits to one chiplet, output flits) of ``cfg``."""
    from mozart.model.host import HostInterface  # noqa: PLC0415
    host = HostInterface(cfg)
    return host.flits(HostOp.TOKEN, backward=True), host.proto.dispatch_flits(1, backward=True), host.output_flits


def after_dispatch(t: InOrderTiming, dispatch_flits: int) -> float:
    """From the dispatcher's start to the replica's first job: the root queue, a hop, the replica, the restore."""
    return dispatch_flits + t.queue_latency + t.hop_cycles + BACKWARD.input_flits + BACKWARD.restore_cycles


def test_a_backward_token_by_hand(cfg):
    """One backward TOKEN selecting experts 0 and 1 (both on chiplet 0), after the eight LOADs (one host flit each):
    stored after its host flits, its DISPATCH queued and sent, at the chiplet its z restored, two backward jobs
    (the second z came ``restore_flits`` later, long before the first job ends), the result back, the output."""
    token_flits, dispatch_flits, output_flits = sizes(cfg)
    u = UNBOUNDED
    first_job = len(LOADS) + token_flits + after_dispatch(u, dispatch_flits)
    result = first_job + 2 * BACKWARD.cycles_per_job + u.chiplet_output_flits + 2 * u.hop_cycles
    program = LOADS + [backward_token(0, [0, 1])]
    assert in_order_cycles(cfg, program, e2c(), LOADED_AT_ONCE, u, backward=BACKWARD) == result + output_flits
    with pytest.raises(Exception, match="needs the backward timing"):
        in_order_cycles(cfg, program, e2c(), LOADED_AT_ONCE, u)


def test_a_restore_overlaps_the_previous_tokens_compute(cfg):
    """Two backward tokens for chiplet 0 (one expert each): the second's z is restored while the first computes,
    so its job follows the first one's at once: outputs exactly one job apart."""
    program = LOADS + [backward_token(0, [0]), backward_token(1, [0])]
    times = inorder.in_order_output_times(cfg, program, e2c(), LOADED_AT_ONCE, UNBOUNDED, backward=BACKWARD)
    assert times[1] - times[0] == BACKWARD.cycles_per_job


def test_the_credit_holds_a_backward_token(cfg, monkeypatch):
    """One buffer entry: the second backward token for chiplet 0 is dispatched only when the first one's GATE_GRAD
    is back at the root (its compute's end, the COMBINE's way back, the GATE_GRAD's flits), then crosses to the
    chiplet and restores its z. Mutant without the credit: it waits at the chiplet's input only until the first
    token's compute ends, and its restore is hidden behind nothing."""
    one_entry = replace(UNBOUNDED, token_slots=1)
    _, dispatch_flits, _ = sizes(cfg)
    program = LOADS + [backward_token(0, [0]), backward_token(1, [0])]

    def gap():
        times = inorder.in_order_output_times(cfg, program, e2c(), LOADED_AT_ONCE, one_entry, backward=BACKWARD)
        return times[1] - times[0]

    back = UNBOUNDED.chiplet_output_flits + 2 * UNBOUNDED.hop_cycles   # the first result's (and GATE_GRAD's) way
    assert gap() == back + BACKWARD.gate_grad_flits + after_dispatch(UNBOUNDED, dispatch_flits) + \
        BACKWARD.cycles_per_job
    monkeypatch.setattr(inorder._Dispatcher, "credit", lambda self, s: 0.0)
    assert gap() == UNBOUNDED.hop_cycles + BACKWARD.input_flits + BACKWARD.restore_cycles + BACKWARD.cycles_per_job


def test_an_update_delays_the_slots_reload(cfg, monkeypatch):
    """A backward token on expert 0, the round's results back, the UPDATE of its slot, a WAIT_LOADED of the slot
    (its UPDATED), a reload and a forward token on the reloaded expert. The UPDATE reaches the chiplet (root queue,
    a hop, its flit), runs the update unit, its writes reach the controller a hop later, the MEM_ACK and UPDATED
    follow: the forward token computes only after that. Mutant where an UPDATE costs nothing (the WAIT_LOADED
    finds the first LOAD's LOADED): it computes update_cycles and more earlier."""
    u = UNBOUNDED
    update = [HostCommand(HostOp.WAIT_COMBINED, {"groups": [1, 1]}),
              HostCommand(HostOp.UPDATE, {"group": 0, "chiplet": 0, "slot": 0, "local": 0, "addr": 0}),
              HostCommand(HostOp.WAIT_LOADED, {"group": 0, "chiplet": 0, "slot": 0}),
              LOADS[0], token(1, [0])]
    program = LOADS + [backward_token(0, [0])] + update
    loads = {**LOADED_AT_ONCE, (0, 0): [(0.0, 0.0), (0.0, 0.0)]}
    times = inorder.in_order_output_times(cfg, program, e2c(), loads, u, backward=BACKWARD)
    combined = times[0] - HostInterface(cfg).output_flits   # the backward result at the root
    sent = combined + 1   # the UPDATE's one host flit after the WAIT_COMBINED
    at_chiplet = sent + u.queue_latency + u.hop_cycles + 1
    updated = at_chiplet + BACKWARD.update_cycles + u.hop_cycles + BACKWARD.ack_latency + u.loaded_cycles
    reloaded = updated + 1 + u.loaded_cycles   # the LOAD's host flit; the image at once (load_cycles = 0)
    forward_result = reloaded + u.hop_cycles + u.chiplet_input_flits + CPE + u.chiplet_output_flits + \
        2 * u.hop_cycles
    stored = updated + 1 + HostInterface(cfg).flits(HostOp.TOKEN)   # arrives before its expert is resident
    assert stored < reloaded
    _, _, output_flits = sizes(cfg)
    forward_flits = HostInterface(cfg).proto.dispatch_flits(1)
    assert times[1] == forward_result + forward_flits + u.queue_latency + output_flits
    monkeypatch.setattr(inorder._Replay, "_update", lambda self, a: None)
    early = inorder.in_order_output_times(cfg, program, e2c(), loads, u, backward=BACKWARD)
    assert early[1] <= times[1] - BACKWARD.update_cycles


def test_predict_training_is_never_below_the_engine():
    """The training step's forward and whole-step predictions are each at least the engine's, and
    predict_cycles of a training run is the whole step."""
    from mozart.model.perf.rtl import predict_cycles, predict_training  # noqa: PLC0415
    from mozart.model.wafer_run import build_run  # noqa: PLC0415

    run = build_run(load_config("tiny"), variant="C", seed=3, tokens=32, train=True)
    engine_forward, engine_step = predict_training(run, in_order=False)
    forward, step = predict_training(run)
    assert forward >= engine_forward and step >= engine_step and forward < step
    assert predict_cycles(run) == step and predict_cycles(run, in_order=False) == engine_step


def test_a_backward_token_with_more_replicas_than_credit_is_an_error(cfg):
    """Per expert, two replicas on chiplet 0 with one buffer entry: the root would never have the credit."""
    two = replace(backward_token(0, [0, 1]), args={**backward_token(0, [0, 1]).args, "dedup": 0})
    with pytest.raises(Exception, match="sends 2 replicas to chiplet 0, more than its token_slots"):
        in_order_cycles(cfg, LOADS + [two], e2c(), LOADED_AT_ONCE, replace(UNBOUNDED, token_slots=1),
                        backward=BACKWARD)
