"""The model side of the end-to-end run: host command codec and the schedule -> host program translation."""

from __future__ import annotations

import numpy as np
import pytest

from mozart.model.config import load_config, override
from mozart.model.errors import ConfigError, ProtocolError, ScheduleError
from mozart.model.host import HostCommand, HostInterface, HostOp
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
    with pytest.raises(ProtocolError, match="token flits"):
        host.encode(HostCommand(HostOp.TOKEN, tok.args, (0,)))
    with pytest.raises(ProtocolError, match="must fit"):
        host.encode(HostCommand(HostOp.TABLE, {"expert": 99}))


@pytest.mark.parametrize("variant", ["baseline", "A", "B", "C"])
@pytest.mark.parametrize("slots", [None, 1])
def test_program_serves_every_pair_once_after_its_load(variant, slots):
    cfg = load_config("tiny")
    run = build_run(cfg, variant=variant, tokens=64, seed=3, slots=slots, skew=1.0)
    host = HostInterface(cfg)
    served = np.zeros(run.experts.shape, dtype=int)
    waited, resident = set(), {}
    for cmd in run.commands:
        a = cmd.args
        if cmd.op is HostOp.LOAD:
            resident[(a["group"], a["chiplet"], a["slot"])] = a["local"]
            waited.discard((a["group"], a["chiplet"], a["slot"]))
        elif cmd.op is HostOp.WAIT_LOADED:
            waited.add((a["group"], a["chiplet"], a["slot"]))
        elif cmd.op is HostOp.TOKEN:
            t = [i for i in range(run.tokens) if i % host.entries == a["token"]][0]
            for j, v in enumerate(a["valid"]):
                if v:
                    e = a["experts"][j]
                    c = int(run.expert_to_chiplet[e])
                    g, cl = divmod(c, cfg.chiplets_per_group)
                    assert any(k[:2] == (g, cl) and k in waited for k in resident), "dispatch before LOADED"
                    served[t, j] += 1
            assert a["dedup"] == (variant in ("B", "C"))
    assert (served == 1).all()
    assert run.rounds == (2 if slots == 1 else 1)
    # the chiplet links carry the schedule's replicas (the translation checks it; here the totals)
    assert run.replicas_per_token()["chiplet"] == pytest.approx(run.schedule.replicas_per_token())


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
