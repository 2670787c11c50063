"""The model side of the end-to-end run: host command codec and the schedule -> host program translation."""

from __future__ import annotations

import numpy as np
import pytest

from mozart.model.config import load_config, override
from mozart.model.errors import ConfigError, ProtocolError, ScheduleError
from mozart.model.host import HostCommand, HostInterface, HostOp
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
    with pytest.raises(ProtocolError, match="token flits"):
        host.encode(HostCommand(HostOp.TOKEN, tok.args, (0,)))
    with pytest.raises(ProtocolError, match="must fit"):
        host.encode(HostCommand(HostOp.TABLE, {"expert": 99}))


@pytest.mark.parametrize("variant", ["baseline", "A", "B", "C"])
@pytest.mark.parametrize("slots,layers", [(None, 1), (1, 1), (1, 2)])
def test_program_serves_every_pair_once_after_its_load(variant, slots, layers):
    """Every (token, expert) pair of every layer is dispatched once, after the LOADED of a slot of its chiplet
    that holds that layer's expert; a layer's tokens follow its expert table."""
    cfg = load_config("tiny")
    run = build_run(cfg, variant=variant, tokens=64, seed=3, slots=slots, skew=1.0, layers=layers)
    host = HostInterface(cfg)
    served = np.zeros((layers, *run.layers[0].experts.shape), dtype=int)
    waited, resident = set(), {}
    table, layer, previous = {}, -1, None
    for cmd in run.commands:
        a = cmd.args
        if cmd.op is HostOp.TABLE:
            if previous is not HostOp.TABLE:
                layer, table = layer + 1, {}
            table[a["expert"]] = a["local"]
        elif cmd.op is HostOp.LOAD:
            resident[(a["group"], a["chiplet"], a["slot"])] = (a["addr"], a["local"])
            waited.discard((a["group"], a["chiplet"], a["slot"]))
        elif cmd.op is HostOp.WAIT_LOADED:
            waited.add((a["group"], a["chiplet"], a["slot"]))
        elif cmd.op is HostOp.TOKEN:
            this = run.layers[layer]
            t = [i for i in range(run.tokens) if i % host.entries == a["token"]][0]
            assert list(a["experts"]) == this.experts[t].tolist()
            for j, v in enumerate(a["valid"]):
                if v:
                    e = a["experts"][j]
                    g, cl = divmod(int(this.expert_to_chiplet[e]), cfg.chiplets_per_group)
                    image = Protocol(cfg).expert_image_base(int(this.image_index[e]), this.index)
                    assert any(k[:2] == (g, cl) and k in waited and resident[k] == (image, table[e])
                               for k in resident), "dispatch before the LOADED of its layer's expert"
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
