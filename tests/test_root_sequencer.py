"""The root's command sequencer alone in amaranth.sim: the contracts its neighbours rely on (no Verilator).

``token`` waits for a free combine entry, then holds its payload from the transfer until the dispatcher is idle
again and takes no command before; a LOAD goes to its group's ``load`` stream and waits for it.
"""

from __future__ import annotations

from amaranth.sim import Simulator

from mozart.hw.root_interfaces import token_layout
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


def _run(contract, bench):
    dut = RootSequencer(contract)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench(dut))
    sim.run()


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


def test_token_waits_for_its_entry_and_holds_until_the_dispatcher_is_idle():
    contract = RootContract(load_config("tiny"))
    host = contract.host
    command = host.encode(_token_command(contract, entry=5))
    table = host.encode(HostCommand(HostOp.TABLE, {"expert": 1, "group": 1, "chiplet": 0, "local": 0}))[0]
    seen = {}

    def bench(dut):
        async def process(ctx):
            ctx.set(dut.entry.occupied, 1)
            ctx.set(dut.token.ready, 0)
            for flit in command:
                await _send(ctx, dut.host_in, flit)
            for _ in range(5):   # entry 5 still occupied: not offered
                _, _, valid, entry = await ctx.tick().sample(dut.token.valid, dut.entry.entry)
                assert not valid and entry == 5
            ctx.set(dut.entry.occupied, 0)
            _, _, valid, payload = await ctx.tick().sample(dut.token.valid, dut.token.payload)
            assert valid
            seen["payload"] = payload
            ctx.set(dut.token.ready, 1)           # the transfer
            await ctx.tick()
            ctx.set(dut.token.ready, 0)           # the dispatcher is busy: payload holds, no command taken
            ctx.set(dut.host_in.payload, {"data": table.data, "first": 1, "last": 1})
            ctx.set(dut.host_in.valid, 1)
            for _ in range(8):
                _, _, valid, payload, taken = await ctx.tick().sample(dut.token.valid, dut.token.payload,
                                                                      dut.host_in.ready)
                assert not valid and not taken and payload == seen["payload"]
            ctx.set(dut.token.ready, 1)           # idle again: back to commands
            _, _, taken = await ctx.tick().sample(dut.host_in.ready)
            assert not taken
            _, _, taken, write = await ctx.tick().sample(dut.host_in.ready, dut.table.valid)
            assert taken and write
        return process

    _run(contract, bench)
    token = token_layout(contract).from_bits(seen["payload"])
    assert token.header.token == 5 and token.header.dedup == 1
    route = [command[1 + i].data for i in range(host.route_flits)]
    flits = [command[1 + host.route_flits + i].data for i in range(host.token_flits)]
    assert [token.route[i] for i in range(host.route_flits)] == route
    assert [token.flits[i] for i in range(host.token_flits)] == flits


def test_load_goes_to_its_group_and_waits_for_it():
    contract = RootContract(load_config("tiny"))
    groups = contract.cfg.groups
    load = {"group": groups - 1, "chiplet": 1, "slot": 0, "local": 1, "addr": 77}
    (flit,) = contract.host.encode(HostCommand(HostOp.LOAD, load))

    def bench(dut):
        async def process(ctx):
            for g in range(groups):
                ctx.set(dut.load[g].ready, 0)
            ctx.set(dut.host_in.payload, {"data": flit.data, "first": 1, "last": 1})
            ctx.set(dut.host_in.valid, 1)
            for _ in range(4):   # the group's emitter is busy: the command waits
                sampled = await ctx.tick().sample(dut.host_in.ready, *(dut.load[g].valid for g in range(groups)))
                taken, valid = sampled[2], sampled[3:]
                assert not taken and list(valid) == [g == groups - 1 for g in range(groups)]
            ctx.set(dut.load[groups - 1].ready, 1)
            _, _, taken, payload = await ctx.tick().sample(dut.host_in.ready, dut.load[groups - 1].payload)
            assert taken
            fields = contract.host.fields[HostOp.LOAD]
            offset = 0
            for field in fields:
                assert (payload >> offset) & ((1 << field.bits) - 1) == load[field.name], field.name
                offset += field.bits
        return process

    _run(contract, bench)
