"""The protocol: field packing, flit encoding round trips, and the hardware layouts agreeing with the model."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from mozart.model.config import load_config, override
from mozart.model.errors import ProtocolError
from mozart.model.protocol import Flit, Packet, PacketKind, Protocol, pack_elements, unpack_elements

CONFIGS = ["tiny", "wafer4x4", "qwen3-30b-a3b"]


@pytest.mark.parametrize("name", CONFIGS)
def test_every_kind_round_trips(name):
    proto = Protocol(load_config(name))
    rng = np.random.default_rng(1)
    for kind, fields in proto.meta_fields.items():
        meta = {f.name: (rng.integers(0, 2, f.count).tolist() if f.count > 1 else int(rng.integers(0, 1 << f.width)))
                for f in fields}
        payload = tuple(int(x) for x in rng.integers(0, 1 << 62, proto.max_payload_flits % 5))
        pkt = Packet(kind, 1, 0, 3, meta, payload)
        flits = proto.encode(pkt)
        assert flits[0].first and flits[-1].last and len(flits) == len(payload) + 1
        back = proto.decode(flits)
        assert back.kind == kind and back.payload == payload
        assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in back.meta.items()} == meta


@given(st.lists(st.integers(-128, 127), min_size=1, max_size=40), st.sampled_from([16, 64, 72, 512]))
@settings(max_examples=50, deadline=None)
def test_elements_round_trip(values, flit_bits):
    flits = pack_elements(values, 8, flit_bits)
    assert len(flits) == -(-len(values) // (flit_bits // 8))
    assert unpack_elements(flits, len(values), 8, flit_bits).tolist() == values


def test_dispatch_to_group_carries_routes_and_token():
    proto = Protocol(load_config("tiny"))
    pkt = proto.dispatch_to_group(7, 1, {0: ([1, 1], [10, 20]), 1: ([0, 1], [0, 30])}, list(range(-4, 4)))
    assert pkt.dst == proto.topology.switch(1) and pkt.meta["chiplets"] == [1, 1]
    assert len(pkt.payload) == 2 * proto.route_flits + proto.token_flits
    assert proto.unpack_route(pkt.payload[proto.route_flits:]) == ((0, 1), (0, 30))
    assert proto.unpack_token(pkt.payload[2 * proto.route_flits:]).tolist() == list(range(-4, 4))


def test_malformed_packets_are_rejected():
    proto = Protocol(load_config("tiny"))
    good = proto.encode(Packet(PacketKind.COMBINE, 0, 5, 1, {"reduce": 1}, (1, 2)))
    with pytest.raises(ProtocolError, match="flit 1 of 3 must have first=False and last=False"):
        proto.decode([good[0], Flit(1, False, True), good[2]])
    with pytest.raises(ProtocolError, match="length must equal its payload flits"):
        proto.decode([good[0], Flit(1, False, True)])
    with pytest.raises(ProtocolError, match=r"COMBINE meta\.reduce must fit 1 bits"):
        proto.encode(Packet(PacketKind.COMBINE, 0, 5, 1, {"reduce": 2}))
    with pytest.raises(ProtocolError, match="has no field 'bogus'"):
        proto.encode(Packet(PacketKind.COMBINE, 0, 5, 1, {"bogus": 1}))
    with pytest.raises(ProtocolError, match="payload must be at most"):
        proto.encode(Packet(PacketKind.WEIGHT, 5, 8, 0, {}, (0,) * (proto.max_payload_flits + 1)))


@pytest.mark.parametrize("name", CONFIGS)
def test_hardware_layouts_match_the_model(name):
    from mozart.hw.protocol import header_layout, route_layout

    cfg = load_config(name)
    proto = Protocol(cfg)
    layout = header_layout(cfg)
    assert layout.size == cfg.hardware.flit_bits
    pkt = Packet(PacketKind.LOAD, 2, 0, 5, {"addr": 77, "chiplet": 1, "slot": 1, "expert": 0, "image_words": 9})
    view = layout.from_bits(proto.header_word(pkt))  # the model's header word read through the hw layout
    assert (view.kind.value, view.tag, view.src) == (int(PacketKind.LOAD), 5, 0)
    assert (view.meta.load.addr, view.meta.load.chiplet, view.meta.load.image_words) == (77, 1, 9)
    # Field offsets in the Amaranth layout equal the model's packing offsets.
    offset = 0
    for f in proto.common_fields:
        assert layout[f.name].offset == offset
        offset += f.bits
    assert layout["meta"].offset == offset
    meta = layout["meta"].shape
    for kind, fields in proto.meta_fields.items():
        inner, off = meta[kind.name.lower()].shape, 0
        for f in fields:
            assert inner[f.name].offset == off
            off += f.bits
    assert route_layout(cfg).size == proto.route_bits


def test_route_word_round_trips_with_one_expert_per_chiplet():
    cfg = override(load_config("tiny"), {"moe.experts": 4})
    proto = Protocol(cfg)
    assert proto.unpack_route(proto.pack_route((1,), (200,))) == ((1,), (200,))
    assert proto.unpack_route(proto.pack_route(1, 200)) == ((1,), (200,))
    with pytest.raises(ProtocolError, match="must have 1 elements, not 2"):
        proto.pack_route((1, 0), (3, 4))
