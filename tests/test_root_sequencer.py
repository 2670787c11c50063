"""The root's command sequencer alone in amaranth.sim: the contracts its neighbours rely on (no Verilator).

``token`` holds its payload until the issue window takes it, and takes no command before; TABLE and LOAD wait for an
empty window; a LOAD goes to its group's ``load`` stream, waits for it, and clears its expert's RESIDENT bit.
"""

from __future__ import annotations

import pytest
from amaranth import Const
from amaranth.sim import Simulator

from mozart.hw.root_interfaces import loaded_layout, token_layout
from mozart.hw.root_sequencer import RootSequencer
from mozart.model.blocks.root import RootContract
from mozart.model.config import load_config
from mozart.model.host import HostCommand, HostOp


def _token_command(contract, entry):
    cfg, host = contract.cfg, contract.host
    k = cfg.moe.top_k
    args = {"token": entry, "first": 1, "final": 1, "dedup": 1, "save": 0, "valid": [1] * k,
            "experts": list(range(k)), "gates": [3] * k}
    return HostCommand(HostOp.TOKEN, args, tuple(host.proto.pack_token(range(cfg.moe.d_model))))


def _run(contract, bench, sequencer_class=RootSequencer):
    dut = sequencer_class(contract)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench(dut))
    sim.run()


def _window_empty(dut):
    return getattr(dut, "window_empty_port", dut.window_empty)


class _IgnoresTheWindow(RootSequencer):
    """The mutant: takes TABLE, LOAD and WAIT_COMBINED while tokens are still in the window."""

    def __init__(self, contract):
        super().__init__(contract)
        self.window_empty_port, self.window_empty = self.window_empty, Const(1)


async def _send(ctx, port, flit):
    ctx.set(port.payload, {"data": flit.data, "first": flit.first, "last": flit.last})
    ctx.set(port.valid, 1)
    for _ in range(50):
        _, _, ready = await ctx.tick().sample(port.ready)
        if ready:
            break
    else:
        raise AssertionError("the sequencer did not take a host flit")
    ctx.set(port.valid, 0)


def test_token_goes_to_the_window_and_table_waits_for_an_empty_window(sequencer_class=RootSequencer):
    contract = RootContract(load_config("tiny"))
    host = contract.host
    command = host.encode(_token_command(contract, entry=5))
    table = host.encode(HostCommand(HostOp.TABLE, {"expert": 1, "group": 1, "chiplet": 0, "local": 0}))[0]
    seen = {}

    def bench(dut):
        async def process(ctx):
            ctx.set(dut.token.ready, 0)
            ctx.set(_window_empty(dut), 1)
            for flit in command:
                await _send(ctx, dut.host_in, flit)
            ctx.set(dut.host_in.payload, {"data": table.data, "first": 1, "last": 1})
            ctx.set(dut.host_in.valid, 1)
            for _ in range(5):   # the window is full: the token is offered and held, no command taken
                _, _, valid, payload, taken = await ctx.tick().sample(dut.token.valid, dut.token.payload,
                                                                      dut.host_in.ready)
                assert valid and not taken
                seen.setdefault("payload", payload)
                assert payload == seen["payload"]
            ctx.set(dut.token.ready, 1)           # the window takes it
            await ctx.tick()
            ctx.set(dut.token.ready, 0)
            ctx.set(_window_empty(dut), 0)          # ... and holds it: a TABLE waits
            for _ in range(6):
                _, _, taken, write, valid = await ctx.tick().sample(dut.host_in.ready, dut.table.valid,
                                                                    dut.token.valid)
                assert not taken and not write and not valid
            ctx.set(_window_empty(dut), 1)          # dispatched: the table may change
            _, _, taken, write = await ctx.tick().sample(dut.host_in.ready, dut.table.valid)
            assert taken and write
        return process

    _run(contract, bench, sequencer_class)
    token = token_layout(contract).from_bits(seen["payload"])
    assert token.header.token == 5 and token.header.dedup == 1
    route = [command[1 + i].data for i in range(host.route_flits)]
    flits = [command[1 + host.route_flits + i].data for i in range(host.token_flits)]
    assert [token.route[i] for i in range(host.route_flits)] == route
    assert [token.flits[i] for i in range(host.token_flits)] == flits


def test_load_waits_for_an_empty_window_goes_to_its_group_and_evicts_its_expert(sequencer_class=RootSequencer):
    contract = RootContract(load_config("tiny"))
    cfg, groups = contract.cfg, contract.cfg.groups
    load = {"group": groups - 1, "chiplet": 1, "slot": 1, "local": 1, "addr": 77}
    (flit,) = contract.host.encode(HostCommand(HostOp.LOAD, load))

    def bench(dut):
        async def process(ctx):
            for g in range(groups):
                ctx.set(dut.load[g].ready, 1)
            ctx.set(_window_empty(dut), 0)
            ctx.set(dut.host_in.payload, {"data": flit.data, "first": 1, "last": 1})
            ctx.set(dut.host_in.valid, 1)
            for _ in range(4):   # a token is still in the window: the LOAD is not offered
                sampled = await ctx.tick().sample(dut.host_in.ready, dut.evict.valid,
                                                  *(dut.load[g].valid for g in range(groups)))
                assert not any(sampled[2:])
            ctx.set(_window_empty(dut), 1)
            for g in range(groups):
                ctx.set(dut.load[g].ready, 0)
            for _ in range(4):   # the group's emitter is busy: the command waits
                sampled = await ctx.tick().sample(dut.host_in.ready, *(dut.load[g].valid for g in range(groups)))
                taken, valid = sampled[2], sampled[3:]
                assert not taken and list(valid) == [g == groups - 1 for g in range(groups)]
            ctx.set(dut.load[groups - 1].ready, 1)
            _, _, taken, payload, evict, evicted = await ctx.tick().sample(
                dut.host_in.ready, dut.load[groups - 1].payload, dut.evict.valid, dut.evict.payload)
            assert taken and evict
            evicted = loaded_layout(contract).from_bits(evicted)
            assert evicted.resident == ((groups - 1) * cfg.chiplets_per_group + 1) * cfg.experts_per_chiplet + 1
            assert evicted.slot == contract.slot_index((groups - 1) * cfg.chiplets_per_group + 1, load["slot"])
            fields = contract.host.fields[HostOp.LOAD]
            offset = 0
            for field in fields:
                assert (payload >> offset) & ((1 << field.bits) - 1) == load[field.name], field.name
                offset += field.bits
        return process

    _run(contract, bench, sequencer_class)


@pytest.mark.parametrize("test", [test_token_goes_to_the_window_and_table_waits_for_an_empty_window,
                                  test_load_waits_for_an_empty_window_goes_to_its_group_and_evicts_its_expert])
def test_a_sequencer_that_ignores_the_window_is_caught(test):
    with pytest.raises(AssertionError):
        test(_IgnoresTheWindow)
