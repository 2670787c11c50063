"""The memory controller's transaction-level reference model and a random request generator (plain Python).

:class:`MemoryReference` says, request by request, what the memory controller of a group must answer and write
(``docs/memctrl.md``); :class:`RequestGenerator` makes random traffic for it. The cocotb testbench
(``tb/tb_memctrl.py``) and the amaranth.sim tests check the hardware against them.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np

from .protocol import MemError, Packet, PacketKind, Protocol, pack_elements
from .topology import Topology

__all__ = ["MemoryReference", "RequestGenerator", "pack_words", "unpack_words"]


def pack_words(words: Sequence[int], word_bits: int, words_per_flit: int) -> tuple[int, ...]:
    """DRAM words packed ``words_per_flit`` to a flit, word 0 lowest, unused words 0."""
    return tuple(pack_elements(words, word_bits, words_per_flit * word_bits))


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
