"""The transaction-level scoreboard of mozart.tb: ordering rules, loss, duplication and its messages."""

import pytest

from mozart.model.protocol import Packet, PacketKind
from mozart.tb.scoreboard import Scoreboard


def pkt(tag, src=1, payload=(1, 2)):
    return Packet(PacketKind.COMBINE, dst=0, src=src, tag=tag, meta={"reduce": 1}, payload=payload)


def test_in_order_per_flow_allows_flows_to_interleave():
    sb = Scoreboard()
    for tag in range(3):
        sb.expect("up", pkt(tag, src=1), flow=1)
        sb.expect("up", pkt(tag, src=2), flow=2)
    for tag in range(3):
        sb.observe("up", pkt(tag, src=2))
    for tag in range(3):
        sb.observe("up", pkt(tag, src=1))
    sb.check_drained()
    assert sb.matched == 6 and sb.pending == 0


def test_reordering_within_a_flow_names_port_flow_and_expected():
    sb = Scoreboard("sw")
    sb.expect("up", pkt(0), flow="a")
    sb.expect("up", pkt(1), flow="a")
    with pytest.raises(AssertionError, match=r"sw: port up, flow a: packets must come in order, but got "
                       r"COMBINE\(dst=0, src=1, tag=1.*number 2 in line; expected first COMBINE\(.*tag=0.*"
                       r"differs: tag 0 != 1"):
        sb.observe("up", pkt(1))


def test_unordered_accepts_any_order_but_not_extras():
    sb = Scoreboard(ordered=False)
    sb.expect(3, pkt(0))
    sb.expect(3, pkt(1))
    sb.observe(3, pkt(1))
    sb.observe(3, pkt(0))
    with pytest.raises(AssertionError, match=r"port 3 must emit only expected packets.*nothing more is expected "
                       r"there \(a duplicate or an invented packet\)"):
        sb.observe(3, pkt(0))


def test_wrong_payload_and_wrong_port_are_explained():
    sb = Scoreboard()
    sb.expect("down0", pkt(5, payload=(1, 2, 3)))
    with pytest.raises(AssertionError, match=r"port down0 must emit only expected packets.*differs: "
                       r"payload flit 1 0x2 != 0x9"):
        sb.observe("down0", pkt(5, payload=(1, 9, 3)))
    with pytest.raises(AssertionError, match=r"port down1 must emit only expected packets.*that packet is "
                       r"expected on port down0"):
        sb.observe("down1", pkt(5, payload=(1, 2, 3)))


def test_check_drained_reports_what_was_lost():
    sb = Scoreboard("sw")
    sb.expect("up", pkt(0), flow=1)
    sb.expect("up", pkt(1), flow=1)
    sb.expect("down", pkt(2))
    sb.observe("up", pkt(0))
    assert sb.pending == 2 and sb.pending_per_port() == {"up": 1, "down": 1}
    with pytest.raises(AssertionError, match=r"sw: every expected packet must arrive, but 2 of 3 did not: "
                       r"port up: 1 packets, next flow 1: COMBINE\(.*tag=1.*\| port down: 1 packets"):
        sb.check_drained()
