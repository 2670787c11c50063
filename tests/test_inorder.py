"""The root's in-order replay with finite buffers (model/perf/inorder.py) and its use in predict_cycles."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from mozart.model.config import load_config
from mozart.model.host import HostCommand, HostOp
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


def test_finite_buffer_couples_chiplets(cfg):
    """Six tokens for chiplet 0 (group 0), then six for chiplet 2 (group 1). Unbounded, chiplet 2 starts at
    once and both finish after about 6 tokens of compute. With 2 buffer entries and a root queue of one packet (3
    flits on tiny),
    chiplet 0 holds at most 3 of its tokens (2 inside, 1 queued) and the root is stuck on the rest, so
    chiplet 2 starts only after chiplet 0 finished its first 2 tokens: at least 2 tokens' compute later."""
    program = [token(t, [0]) for t in range(6)] + [token(6 + t, [4]) for t in range(6)]
    free = in_order_cycles(cfg, program, e2c(), {}, UNBOUNDED)
    tight = in_order_cycles(cfg, program, e2c(), {}, replace(UNBOUNDED, token_slots=2, queue_flits=3))
    assert free < 6 * CPE + 100
    assert tight >= free + 2 * CPE
    # a full chiplet alone does not stop the root while its group's queue has room
    assert in_order_cycles(cfg, program, e2c(), {}, replace(UNBOUNDED, token_slots=2)) == free


def test_wait_holds_every_later_command(cfg):
    """A WAIT_LOADED for a late load holds the token behind it, and so every token after that one, even one
    for a chiplet whose weights were loaded long before."""
    late = 5000.0
    loads = {**loads_for([0, 1, 2, 3]), (2, 0): [(0.0, late)]}
    program = [HostCommand(HostOp.LOAD, {"group": g, "chiplet": c, "slot": s, "local": s, "addr": 0})
               for g in range(2) for c in range(2) for s in range(2)]
    early = [token(0, [0])]
    held = [HostCommand(HostOp.WAIT_LOADED, {"group": 1, "chiplet": 0, "slot": 0}), token(1, [4])]
    after = [token(2, [2])]
    without_wait = in_order_cycles(cfg, program + early + after, e2c(), loads, UNBOUNDED)
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
    per_expert = in_order_cycles(cfg, [two], e2c(), {}, one_entry)
    one_packet = in_order_cycles(cfg, [dedup], e2c(), {}, one_entry)
    assert one_packet >= 2 * CPE
    # the second packet enters only after the first one's compute, then crosses the switch again
    assert per_expert >= one_packet + UNBOUNDED.hop_cycles + UNBOUNDED.chiplet_input_flits
    assert in_order_cycles(cfg, [two], e2c(), {}, UNBOUNDED) < per_expert


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
    held = in_order_cycles(cfg, [first, second], e2c(), {}, UNBOUNDED, steps)
    alone = in_order_cycles(cfg, [first], e2c(), {}, UNBOUNDED, steps)
    free = in_order_cycles(cfg, [token(0, [0]), token(1, [4])], e2c(), {}, UNBOUNDED)
    assert alone > 100 and held >= alone + 50 + CPE and free < 100 + CPE
    with pytest.raises(Exception, match="waits for output 1 before"):   # a step that waits for a later token
        in_order_cycles(cfg, [replace(token(0, [0]), release=2)], e2c(), {}, UNBOUNDED, steps)


def test_a_layers_tables_route_its_tokens(cfg):
    """With one expert table per layer, a token after the second TABLE block goes where the second says."""
    table = [HostCommand(HostOp.TABLE, {"expert": 0, "group": 0, "chiplet": 0, "local": 0})]
    program = table + [token(0, [0])] + table + [token(1, [0])]
    moved = e2c().copy()
    moved[0] = 3
    same = in_order_cycles(cfg, program, np.stack([e2c(), e2c()]), {}, UNBOUNDED)
    other = in_order_cycles(cfg, program, np.stack([e2c(), moved]), {}, UNBOUNDED)
    assert other < same   # the second token computes on another chiplet, in parallel with the first
