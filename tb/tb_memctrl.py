"""cocotb testbench of the memory controller (design ``memctrl``, ``hw/memctrl.py``).

:class:`~mozart.model.memctrl_reference.MemoryReference` is the transaction-level judge: a Python memory plus the
controller's rules (what each
request answers, what it writes). The controller promises strict request order (``dram.reorder_window`` 1), so
the scoreboard checks the output port as one in-order flow; with a reorder window, as one in-order flow per
request source: data exact, order exact, nothing lost or duplicated. At the end the DRAM is read
back through the backdoor and compared word for word with the reference memory.

Run it with ``mozart cosim memctrl --config tiny`` or :func:`mozart.sim.cosim.run`. Options (environment):
``MOZART_REQUESTS`` (random requests of ``test_random_mix``, default 3000), ``MOZART_IDLE`` and
``MOZART_BACKPRESSURE`` (probabilities, default 0.2 and 0.3).
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from mozart.model.memctrl_reference import MemoryReference, RequestGenerator
from mozart.model.protocol import Packet, Protocol

__all__ = ["MemCtrlBench"]


# -- the cocotb testbench -----------------------------------------------------------------------------------------

def _option(name: str, default: float) -> float:
    value = os.environ.get(name)
    try:
        return default if value in (None, "") else float(value)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {value!r}") from None


class MemCtrlBench:
    """Packet driver on ``port_in``, packet monitor on ``port_out``, the reference model feeding an in-order
    scoreboard, a watchdog, and the DRAM backdoor for preload and readback."""

    def __init__(self, dut, *, idle: float, backpressure: float, group: int = 0):
        from mozart.model.blocks import MemoryControllerContract  # noqa: PLC0415
        from .env import test_config  # noqa: PLC0415
        from .scoreboard import Scoreboard  # noqa: PLC0415
        from .stream import PacketDriver, PacketMonitor  # noqa: PLC0415
        from .watchdog import Watchdog  # noqa: PLC0415

        self.dut = dut
        self.cfg = test_config()
        self.proto = Protocol(self.cfg)
        self.ctrl = MemoryControllerContract(self.cfg, group)   # the design's documented numbers
        self.ref = MemoryReference(self.cfg, group)
        self.sb = Scoreboard("memctrl scoreboard")  # in request order (per source with a reorder window)
        self.driver = PacketDriver(dut, "port_in", self.proto, idle=idle)
        self.monitor = PacketMonitor(dut, "port_out", self.proto, backpressure=backpressure,
                                     callback=lambda p: self.sb.observe("port_out", p), keep=False)
        # a conflict plus a refresh plus a full outstanding queue stays far below this
        self.watchdog = Watchdog(dut.clk, [self.driver, self.monitor], timeout=2000,
                                 pending=[self.sb.pending_summary], name="memctrl watchdog")
        self.requests = 0

    async def start(self, contents: Sequence[int]):
        """Reset, preload the whole DRAM (it keeps its contents across the module's tests), start the ports."""
        from .env import clock_and_reset  # noqa: PLC0415
        self.clock = await clock_and_reset(self.dut)
        self.dut.backdoor__we.value = 0
        contents = list(contents) + [0] * (self.cfg.dram.words - len(contents))
        await self.preload(contents)
        self.monitor.start()
        self.driver.start()
        self.watchdog.start()

    async def preload(self, contents: Sequence[int]) -> None:
        """Write ``contents`` from word 0 through the backdoor (before traffic), and into the reference."""
        edge = RisingEdge(self.dut.clk)
        self.dut.backdoor__we.value = 1
        for addr, word in enumerate(contents):
            self.dut.backdoor__addr.value = addr
            self.dut.backdoor__wdata.value = int(word)
            await edge
        self.dut.backdoor__we.value = 0
        self.ref.memory[:len(contents)] = [int(w) for w in contents]

    async def readback(self) -> list[int]:
        """Every DRAM word, through the backdoor: the address goes out at a falling edge, the word is read at the
        next one (one cycle of read latency, and no race with the rising edge)."""
        fall = FallingEdge(self.dut.clk)
        words = []
        await fall
        for addr in range(self.cfg.dram.words):
            self.dut.backdoor__addr.value = addr
            await fall
            words.append(int(self.dut.backdoor__rdata.value))
        return words

    def send(self, request: Packet) -> None:
        # strict order (W = 1): one flow; with a reorder window the promise is each source's request order
        flow = request.src if self.cfg.dram.reorder_window > 1 else None
        for response in self.ref.request(request):
            self.sb.expect("port_out", response, flow=flow)
        self.driver.send(request)
        self.requests += 1

    async def drain(self) -> None:
        """Wait for every expected response, then check the controller is quiet and its DRAM equals the model."""
        while self.sb.pending or self.driver.pending:
            await ClockCycles(self.dut.clk, 16)
        await ClockCycles(self.dut.clk, 64)  # anything more coming out now is a duplicate: the scoreboard fails it
        self.sb.check_drained()
        assert self.monitor.in_packet == 0, f"port_out must not stop inside a packet ({self.monitor.describe()})"
        errors = int(self.dut.errors.value)
        assert errors == self.ref.errors % (1 << 16), (f"errors must count the {self.ref.errors} bad requests, "
                                                       f"not {errors}")
        self.watchdog.stop()
        self.monitor.stop()
        memory = await self.readback()
        bad = [a for a, (x, y) in enumerate(zip(memory, self.ref.memory)) if x != y]
        assert not bad, (f"DRAM word {bad[0]} must be 0x{self.ref.memory[bad[0]]:x} after the requests, not "
                         f"0x{memory[bad[0]]:x} ({len(bad)} words differ)")

    def summary(self, **extra) -> dict:
        return {"cycles": self.clock.cycle, "requests": self.requests, "packets": self.sb.matched,
                "errors": self.ref.errors, "flits_in": self.driver.transfers, "flits_out": self.monitor.transfers,
                **extra}


def _random_contents(cfg, gen: np.random.Generator) -> list[int]:
    wb = cfg.dram.word_bits
    return [int.from_bytes(gen.bytes(wb // 8), "little") for _ in range(cfg.dram.words)]


def _expert_images(cfg, gen: np.random.Generator) -> list[int]:
    """The group's quantised expert weight images, back to back from word 0 (``Protocol.expert_image_base``)."""
    from mozart.model.golden import expert_image  # noqa: PLC0415

    moe, wb = cfg.moe, cfg.numerics.weight_bits
    lo, hi = -(1 << (wb - 1)), 1 << (wb - 1)
    words = []
    for _ in range(cfg.experts_per_group):
        w1 = gen.integers(lo, hi, size=(moe.d_ff, moe.d_model))
        w2 = gen.integers(lo, hi, size=(moe.d_model, moe.d_ff))
        words += expert_image(w1, w2, cfg)
    return words


@cocotb.test()
async def test_random_mix(dut):
    """Random reads and writes (sizes, addresses, sources, acks) with a few bad requests, random idle and
    backpressure: data exact, in order, nothing lost, the DRAM equal to the model at the end."""
    from .env import env_int, rng, write_summary  # noqa: PLC0415

    idle, bp = _option("MOZART_IDLE", 0.2), _option("MOZART_BACKPRESSURE", 0.3)
    bench = MemCtrlBench(dut, idle=idle, backpressure=bp)
    gen = RequestGenerator(bench.cfg, rng("requests"))
    await bench.start(_random_contents(bench.cfg, rng("contents")))
    count = env_int("MOZART_REQUESTS", 3000)
    # feed in slices so the driver's queue and the scoreboard stay short in long soaks
    for request in gen.mix(count, bad=0.01):
        bench.send(request)
        if bench.driver.pending > 2000:
            await ClockCycles(dut.clk, 500)
    await bench.drain()
    write_summary(bench.summary(idle=idle, backpressure=bp), test="test_random_mix")


@cocotb.test()
async def test_weight_streams_with_activation_writes(dut):
    """LOADs of every expert of the group to its chiplet (heaviest first, as a schedule orders them), interleaved
    with the chiplets' activation saves (``golden.save_packets``) and reads of them back."""
    from mozart.model.golden import activation_addr, save_packets  # noqa: PLC0415

    from .env import rng, write_summary  # noqa: PLC0415

    bench = MemCtrlBench(dut, idle=0.1, backpressure=0.2)
    cfg, proto = bench.cfg, bench.proto
    gen = RequestGenerator(cfg, rng("weights"))
    await bench.start(_expert_images(cfg, rng("images")))
    order = list(gen.rng.permutation(cfg.experts_per_group))  # the schedule's order (stands for load weights)
    # token records whose activation entries fit this (small) DRAM
    entry = activation_addr(cfg, 0, 1, 0) - activation_addr(cfg, 0, 0, 0)
    records = min(proto.saved_tokens, (cfg.dram.words - proto.activation_base) // entry)
    saves = 0
    for n, slot_in_group in enumerate(order):
        chiplet, expert = divmod(int(slot_in_group), cfg.experts_per_chiplet)
        bench.send(gen.load(int(slot_in_group), chiplet, slot=n % cfg.hardware.sram_slots, expert=expert))
        for c in range(cfg.chiplets_per_group):
            record, e = int(gen.rng.integers(records)), int(gen.rng.integers(cfg.experts_per_chiplet))
            z = gen.rng.integers(-(1 << (cfg.numerics.act_bits - 1)), 1 << (cfg.numerics.act_bits - 1),
                                 size=cfg.moe.d_ff)
            packets = save_packets(cfg, bench.ctrl.group, c, record % (1 << proto.tag_bits), record, e, z)
            for p in packets:
                bench.send(p)
            saves += 1
            words = min(proto.max_burst_words, sum(p.meta["words"] for p in packets))
            bench.send(gen.read(addr=activation_addr(cfg, c, record, e), words=words))
    await bench.drain()
    weights = bench.sb.matched  # every WEIGHT packet matched the image, in order
    write_summary(bench.summary(loads=len(order), saves=saves, matched=weights),
                  test="test_weight_streams_with_activation_writes")


@cocotb.test()
async def test_every_bad_request(dut):
    """Each kind of bad request this config can express, between good ones: MEM_ERROR with the right code,
    payload dropped, nothing written, the error counter exact."""
    from .env import rng, write_summary  # noqa: PLC0415

    bench = MemCtrlBench(dut, idle=0.3, backpressure=0.3)
    gen = RequestGenerator(bench.cfg, rng("bad"))
    await bench.start(_random_contents(bench.cfg, rng("bad-contents")))
    kinds = gen.bad_kinds()
    for _ in range(3):
        for which in kinds:
            bench.send(gen.bad(which))
            bench.send(gen.write())
            bench.send(gen.read())
    await bench.drain()
    assert bench.ref.errors == 3 * len(kinds)
    write_summary(bench.summary(bad_kinds=len(kinds)), test="test_every_bad_request")


@cocotb.test()
async def test_bandwidth(dut):
    """No idle, no backpressure: sequential full-burst reads, random single-burst reads, and LOADs mixed with
    activation writes. Records DRAM words per cycle for each (the benchmark prints them); checks data too."""
    from .env import rng, write_summary  # noqa: PLC0415

    bench = MemCtrlBench(dut, idle=0.0, backpressure=0.0)
    cfg, proto = bench.cfg, bench.proto
    gen = RequestGenerator(cfg, rng("bandwidth"))
    await bench.start(_random_contents(cfg, rng("bandwidth-contents")))
    maxw = proto.max_burst_words
    results = {}

    async def measure(name, requests):
        words = 0
        start = bench.clock.cycle
        for r in requests:
            bench.send(r)
            words += r.meta.get("words", 0) or r.meta.get("image_words", 0)
        while bench.sb.pending or bench.driver.pending:
            await RisingEdge(dut.clk)
        results[name] = words / max(1, bench.clock.cycle - start)

    span = min(cfg.dram.words, 64 * maxw) // maxw * maxw
    await measure("sequential_read", [gen.read(addr=a, words=maxw, src=0) for a in range(0, span, maxw)])
    await measure("sequential_write", [gen.write(addr=a, words=maxw, ack=0, src=0) for a in range(0, span, maxw)]
                  + [gen.write(addr=0, words=1, ack=1, src=0)])
    await measure("random_read", [gen.read(src=0) for _ in range(200)])
    await measure("random_read_full_bursts",
                  [gen.read(addr=int(gen.rng.integers(0, cfg.dram.words - maxw)), words=maxw, src=0)
                   for _ in range(100)])
    mixed = []
    for i in range(cfg.experts_per_group):
        mixed.append(gen.load(i, i // cfg.experts_per_chiplet, 0, i % cfg.experts_per_chiplet))
        base = proto.activation_base + (i * 2 * maxw) % max(maxw, cfg.dram.words - proto.activation_base - 2 * maxw)
        mixed += [gen.write(addr=base, words=maxw, ack=0), gen.write(addr=base + maxw, words=maxw, ack=0)]
    # an acknowledged write last: its MEM_ACK leaves once every write before it is in the DRAM (the write buffer
    # takes payload ahead of the DRAM, so the driver finishing does not mean the writes did)
    await measure("weights_and_activation_writes", mixed + [gen.write(addr=proto.activation_base, words=1, ack=1)])
    await bench.drain()
    write_summary(bench.summary(**{f"words_per_cycle_{k}": v for k, v in results.items()},
                                load_efficiency=bench.ctrl.load_efficiency), test="test_bandwidth")
