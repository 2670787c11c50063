"""cocotb testbench of :class:`mozart.hw.memctrl.MemoryController` (design ``memctrl``), and its reference model.

:class:`MemoryReference` is the transaction-level judge: a Python memory plus the controller's rules (what each
request answers, what it writes). The controller promises strict request order, so the scoreboard checks the
output port as one in-order flow: data exact, order exact, nothing lost or duplicated. At the end the DRAM is read
back through the backdoor and compared word for word with the reference memory.

Run it with ``mozart cosim memctrl --config tiny`` or :func:`mozart.sim.cosim.run`. Options (environment):
``MOZART_REQUESTS`` (random requests of ``test_random_mix``, default 3000), ``MOZART_IDLE`` and
``MOZART_BACKPRESSURE`` (probabilities, default 0.2 and 0.3).
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence

import numpy as np

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from mozart.model.protocol import MemError, Packet, PacketKind, Protocol
from mozart.model.topology import Topology

__all__ = ["MemoryReference", "RequestGenerator", "pack_words", "MemCtrlBench"]


def pack_words(words: Sequence[int], word_bits: int, words_per_flit: int) -> tuple[int, ...]:
    """DRAM words packed ``words_per_flit`` to a flit, word 0 lowest, unused words 0."""
    return tuple(sum(int(w) << (i * word_bits) for i, w in enumerate(words[s:s + words_per_flit]))
                 for s in range(0, len(words), words_per_flit))


def unpack_words(flits: Sequence[int], count: int, word_bits: int, words_per_flit: int) -> list[int]:
    mask = (1 << word_bits) - 1
    return [(flits[i // words_per_flit] >> ((i % words_per_flit) * word_bits)) & mask for i in range(count)]


class MemoryReference:
    """What the memory controller of ``group`` must answer and write, request by request.

    Parameters
    ----------
    cfg : WaferConfig
    group : int
    contents : sequence of int, optional
        Initial DRAM words (default all 0), e.g. the quantised expert weights image.

    Attributes
    ----------
    memory : list of int
        The DRAM words after every request given so far.
    errors : int
        Bad requests so far (the controller's ``errors`` output must equal it, modulo 2**16).
    """

    def __init__(self, cfg, group: int = 0, contents: Sequence[int] | None = None):
        self.cfg = cfg
        self.proto = Protocol(cfg)
        self.topology = Topology.of(cfg)
        self.group = group
        self.node = self.topology.memctrl(group)
        self.wpf = self.proto.words_per_flit
        self.word_bits = cfg.dram.word_bits
        self.memory = [0] * cfg.dram.words
        if contents is not None:
            if len(contents) > cfg.dram.words:
                raise ValueError(f"contents must be at most dram.words ({cfg.dram.words}) words, not {len(contents)}")
            self.memory[:len(contents)] = [int(w) for w in contents]
        self.errors = 0

    def _error(self, req: Packet, code: MemError, addr: int = 0) -> list[Packet]:
        self.errors += 1
        return [Packet(PacketKind.MEM_ERROR, req.src, self.node, req.tag, {"code": int(code), "addr": addr})]

    def _range_error(self, addr: int, words: int, limit: int) -> MemError | None:
        if addr >= self.cfg.dram.words:
            return MemError.ADDRESS
        if words == 0 or words > limit or addr + words > self.cfg.dram.words:
            return MemError.LENGTH
        return None

    def request(self, req: Packet) -> list[Packet]:
        """Apply ``req`` (a packet arriving on ``port_in``); the packets the controller must send, in order."""
        p = self.proto
        maxw = p.max_burst_words
        if req.kind is PacketKind.MEM_READ:
            addr, words = req.meta["addr"], req.meta["words"]
            code = self._range_error(addr, words, maxw) or (MemError.LENGTH if req.payload else None)
            if code:
                return self._error(req, code, addr)
            data = self.memory[addr:addr + words]
            return [Packet(PacketKind.MEM_DATA, req.src, self.node, req.tag, {"addr": addr, "words": words},
                           pack_words(data, self.word_bits, self.wpf))]
        if req.kind is PacketKind.MEM_WRITE:
            addr, words = req.meta["addr"], req.meta["words"]
            code = self._range_error(addr, words, maxw)
            if code is None and len(req.payload) != -(-words // self.wpf):
                code = MemError.LENGTH
            if code:
                return self._error(req, code, addr)
            self.memory[addr:addr + words] = unpack_words(req.payload, words, self.word_bits, self.wpf)
            if req.meta.get("ack", 0):
                return [Packet(PacketKind.MEM_ACK, req.src, self.node, req.tag, {"addr": addr, "words": words})]
            return []
        if req.kind is PacketKind.LOAD:
            addr, count, chiplet = req.meta["addr"], req.meta["image_words"], req.meta["chiplet"]
            if chiplet >= self.cfg.tree.chiplets_per_group:
                code = MemError.ADDRESS
            else:
                code = self._range_error(addr, count, p.image_words) or (MemError.LENGTH if req.payload else None)
            if code:
                return self._error(req, code, addr)
            dst = self.topology.chiplet(self.group, chiplet)
            out = []
            for offset in range(0, count, maxw):
                chunk = self.memory[addr + offset:addr + min(count, offset + maxw)]
                out.append(Packet(PacketKind.WEIGHT, dst, self.node, req.tag,
                                  {"slot": req.meta["slot"], "expert": req.meta["expert"], "offset": offset,
                                   "final": int(offset + maxw >= count)},
                                  pack_words(chunk, self.word_bits, self.wpf)))
            return out
        return self._error(req, MemError.KIND, 0)


class RequestGenerator:
    """Random memory traffic for one group: reads, writes (with and without ack), LOADs and bad requests.

    Addresses are drawn from a few hot windows and uniformly, so the DRAM sees row hits, misses and
    conflicts and the same addresses are read and written again (what per-address order is about).
    """

    def __init__(self, cfg, rng: np.random.Generator, group: int = 0):
        self.cfg = cfg
        self.proto = Protocol(cfg)
        self.topology = Topology.of(cfg)
        self.rng = rng
        self.group = group
        self.node = self.topology.memctrl(group)
        self.sources = [self.topology.root] + [self.topology.chiplet(group, c)
                                               for c in range(cfg.tree.chiplets_per_group)]
        words = cfg.dram.words
        self.hot = [int(rng.integers(0, words)) for _ in range(4)]

    def _tag(self) -> int:
        return int(self.rng.integers(1 << self.proto.tag_bits))

    def _addr(self, words: int) -> int:
        total = self.cfg.dram.words
        if self.rng.random() < 0.6:
            base = self.hot[int(self.rng.integers(len(self.hot)))] + int(self.rng.integers(-64, 64))
        else:
            base = int(self.rng.integers(0, total))
        return int(min(max(base, 0), total - words))

    def _words(self) -> int:
        maxw = self.proto.max_burst_words
        return int(self.rng.integers(1, maxw + 1)) if self.rng.random() < 0.7 else int(self.rng.choice([1, maxw]))

    def read(self, addr: int | None = None, words: int | None = None, src: int | None = None) -> Packet:
        words = self._words() if words is None else words
        addr = self._addr(words) if addr is None else addr
        src = self.sources[int(self.rng.integers(len(self.sources)))] if src is None else src
        return Packet(PacketKind.MEM_READ, self.node, src, self._tag(), {"addr": addr, "words": words})

    def write(self, addr: int | None = None, words: int | None = None, ack: int | None = None,
              src: int | None = None, data: Sequence[int] | None = None) -> Packet:
        words = self._words() if words is None else words
        addr = self._addr(words) if addr is None else addr
        src = self.sources[int(self.rng.integers(len(self.sources)))] if src is None else src
        ack = int(self.rng.random() < 0.5) if ack is None else ack
        wb = self.cfg.dram.word_bits
        if data is None:
            data = [int.from_bytes(self.rng.bytes(wb // 8), "little") for _ in range(words)]
        return Packet(PacketKind.MEM_WRITE, self.node, src, self._tag(), {"addr": addr, "words": words, "ack": ack},
                      pack_words(data, wb, self.proto.words_per_flit))

    def load(self, slot_in_group: int, chiplet: int, slot: int, expert: int) -> Packet:
        p = self.proto
        return Packet(PacketKind.LOAD, self.node, self.topology.root, self._tag(),
                      {"addr": p.expert_image_base(slot_in_group), "image_words": p.image_words,
                       "chiplet": chiplet, "slot": slot, "expert": expert})

    def bad(self, which: str) -> Packet:
        """A bad request: ``address``, ``zero``, ``too_long``, ``past_end``, ``write_length``, ``read_payload``,
        ``load_address``, ``load_chiplet``, ``load_length`` or ``kind``."""
        p, total, maxw = self.proto, self.cfg.dram.words, self.proto.max_burst_words
        src, tag = self.sources[int(self.rng.integers(len(self.sources)))], self._tag()
        top_addr = (1 << p.addr_bits) - 1
        junk = tuple(int.from_bytes(self.rng.bytes(p.flit_bits // 8), "little") for _ in range(2))
        if which == "address":
            if total > top_addr:
                raise ValueError(f"dram.words ({total}) must leave addresses past the end for an ADDRESS error")
            return Packet(PacketKind.MEM_READ, self.node, src, tag,
                          {"addr": int(self.rng.integers(total, top_addr + 1)), "words": 1})
        if which == "zero":
            return Packet(PacketKind.MEM_READ, self.node, src, tag, {"addr": self._addr(1), "words": 0})
        if which == "too_long":
            if maxw + 1 >= 1 << p.words_bits:
                raise ValueError("the words field must be able to say more than max_burst_words")
            return Packet(PacketKind.MEM_WRITE, self.node, src, tag,
                          {"addr": 0, "words": int(self.rng.integers(maxw + 1, 1 << p.words_bits)), "ack": 1}, junk)
        if which == "past_end":
            words = int(self.rng.integers(2, maxw + 1))
            return Packet(PacketKind.MEM_READ, self.node, src, tag, {"addr": total - words + 1, "words": words})
        if which == "write_length":
            # one flit too many or one too few, within the largest payload the protocol carries
            words = int(self.rng.integers(p.words_per_flit + 1, maxw + 1))
            flits = -(-words // p.words_per_flit)
            wrong = [n for n in (flits - 1, flits + 1) if 1 <= n <= p.max_payload_flits]
            payload = tuple(junk[0] for _ in range(wrong[int(self.rng.integers(len(wrong)))]))
            return Packet(PacketKind.MEM_WRITE, self.node, src, tag, {"addr": 0, "words": words, "ack": 1}, payload)
        if which == "read_payload":
            return Packet(PacketKind.MEM_READ, self.node, src, tag, {"addr": 0, "words": 1}, junk)
        if which == "load_address":
            return Packet(PacketKind.LOAD, self.node, src, tag,
                          {"addr": min(total, top_addr), "image_words": 1, "chiplet": 0, "slot": 0, "expert": 0})
        if which == "load_chiplet":
            c = self.cfg.tree.chiplets_per_group
            if c >= 1 << p.chiplet_bits:
                raise ValueError(f"chiplets_per_group ({c}) must leave chiplet ids out of range for this error")
            return Packet(PacketKind.LOAD, self.node, src, tag,
                          {"addr": 0, "image_words": 1, "chiplet": c, "slot": 0, "expert": 0})
        if which == "load_length":
            return Packet(PacketKind.LOAD, self.node, src, tag,
                          {"addr": total - 1, "image_words": 2, "chiplet": 0, "slot": 0, "expert": 0})
        if which == "kind":
            kinds = [k for k in PacketKind if k not in (PacketKind.MEM_READ, PacketKind.MEM_WRITE, PacketKind.LOAD)]
            kind = kinds[int(self.rng.integers(len(kinds)))]
            meta = {f.name: 0 for f in p.meta_fields[kind] if f.count == 1}
            meta.update({f.name: (0,) * f.count for f in p.meta_fields[kind] if f.count > 1})
            return Packet(kind, self.node, src, tag, meta, junk[:int(self.rng.integers(0, 3))])
        raise ValueError(f"bad request must be one of address, zero, too_long, past_end, write_length, "
                         f"read_payload, load_address, load_chiplet, load_length, kind; not {which!r}")

    def bad_kinds(self) -> list[str]:
        """The bad requests this config can express."""
        p, c = self.proto, self.cfg.tree.chiplets_per_group
        out = ["zero", "past_end", "write_length", "read_payload", "load_length", "kind"]
        if self.cfg.dram.words <= (1 << p.addr_bits) - 1:
            out += ["address", "load_address"]
        if p.max_burst_words + 1 < 1 << p.words_bits:
            out.append("too_long")
        if c < 1 << p.chiplet_bits:
            out.append("load_chiplet")
        return out

    def mix(self, count: int, *, bad: float = 0.02) -> Iterable[Packet]:
        """``count`` random requests: about half reads, half writes, a fraction ``bad`` of bad requests."""
        kinds = self.bad_kinds()
        for _ in range(count):
            r = self.rng.random()
            if r < bad:
                yield self.bad(kinds[int(self.rng.integers(len(kinds)))])
            elif r < 0.5 + bad / 2:
                yield self.read()
            else:
                yield self.write()


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
        self.sb = Scoreboard("memctrl scoreboard")  # one flow: the controller answers in request order
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
        for response in self.ref.request(request):
            self.sb.expect("port_out", response)
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
    # tags whose activation entries fit this (small) DRAM
    entry = activation_addr(cfg, 0, 1, 0) - activation_addr(cfg, 0, 0, 0)
    tags = min(1 << proto.tag_bits, (cfg.dram.words - proto.activation_base) // entry)
    saves = 0
    for n, slot_in_group in enumerate(order):
        chiplet, expert = divmod(int(slot_in_group), cfg.experts_per_chiplet)
        bench.send(gen.load(int(slot_in_group), chiplet, slot=n % cfg.hardware.sram_slots, expert=expert))
        for c in range(cfg.chiplets_per_group):
            tag, e = int(gen.rng.integers(tags)), int(gen.rng.integers(cfg.experts_per_chiplet))
            h = gen.rng.integers(-(1 << (cfg.numerics.act_bits - 1)), 1 << (cfg.numerics.act_bits - 1),
                                 size=cfg.moe.d_ff)
            packets = save_packets(cfg, bench.ctrl.group, c, tag, e, h)
            for p in packets:
                bench.send(p)
            saves += 1
            words = min(proto.max_burst_words, sum(p.meta["words"] for p in packets))
            bench.send(gen.read(addr=activation_addr(cfg, c, tag, e), words=words))
    await bench.drain()
    weights = bench.sb.matched  # every WEIGHT packet matched the image, in order
    write_summary(bench.summary(loads=len(order), saves=saves, matched=weights), test="test_weight_streams_with_activation_writes")


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
    await measure("weights_and_activation_writes", mixed)
    await bench.drain()
    write_summary(bench.summary(**{f"words_per_cycle_{k}": v for k, v in results.items()},
                                load_efficiency=bench.ctrl.load_efficiency), test="test_bandwidth")
