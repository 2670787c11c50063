"""The group DRAM and switch behind one expert chiplet, at transaction level, for simulations of the chiplet alone.

Contract
--------
:class:`ChipletMemory` keeps the DRAM words every MEM_WRITE the chiplet sends writes (at once, when the request
is seen), answers a MEM_READ with MEM_DATA (the words as they are when the read is seen, so a read after a write
returns what the write wrote) and a MEM_WRITE with ``ack=1`` with MEM_ACK. Each answer is due ``latency`` cycles
after the cycle the request's last flit left the chiplet, and answers go back in request order (one source, as the
group's memory controller serves one chiplet). Addresses never written read as 0. Other packets are not memory
traffic and are ignored.

Both drivers of the chiplet's training programs use it: :func:`mozart.hw.pysim.run_pysim` (amaranth.sim) and the
cocotb testbench ``mozart.tb.tb_chiplet`` (Verilator), through :class:`~mozart.model.chiplet_input_scheduler.
InputScheduler`.

``DEFAULT_LATENCY`` is an assumption, not a paper figure: a short round trip through the switch and a row hit.
Correctness must not depend on it; the chiplet's timing with a real memory controller is the wafer's business.
"""

from __future__ import annotations

from collections import deque

from .protocol import Packet, PacketKind, Protocol

__all__ = ["ChipletMemory", "DEFAULT_LATENCY"]

#: Cycles from a request's last flit to its answer being due (an assumption, see the module doc).
DEFAULT_LATENCY = 8


class ChipletMemory:
    """The DRAM and switch behind a chiplet (see the module doc).

    Parameters
    ----------
    protocol : Protocol or WaferConfig
    latency : int
        Cycles from a request to its answer being due (non-negative).

    Attributes
    ----------
    words : dict
        DRAM address -> word, for every address written so far.
    """

    def __init__(self, protocol, latency: int = DEFAULT_LATENCY):
        if isinstance(latency, bool) or not isinstance(latency, int) or latency < 0:
            raise ValueError(f"memory latency must be a non-negative number of cycles, not {latency!r}")
        self.proto = protocol if isinstance(protocol, Protocol) else Protocol(protocol)
        self.latency = latency
        self.words: dict[int, int] = {}
        self._answers: deque[tuple[int, Packet]] = deque()   # (cycle due, packet), in request order

    @property
    def pending(self) -> int:
        """Answers not yet taken with :meth:`due`."""
        return len(self._answers)

    def request(self, cycle: int, packet: Packet) -> None:
        """The chiplet sent ``packet``, its last flit in ``cycle``: apply a write, queue the answer if any."""
        word_bits = self.proto.cfg.dram.word_bits
        per, mask = self.proto.words_per_flit, (1 << word_bits) - 1
        addr, words = packet.meta.get("addr", 0), packet.meta.get("words", 0)
        if packet.kind is PacketKind.MEM_WRITE:
            for i in range(words):
                self.words[addr + i] = (packet.payload[i // per] >> (i % per * word_bits)) & mask
            if packet.meta["ack"]:
                self._answer(cycle, PacketKind.MEM_ACK, packet, ())
        elif packet.kind is PacketKind.MEM_READ:
            values = [self.words.get(addr + i, 0) for i in range(words)]
            flits = [sum(v << (j * word_bits) for j, v in enumerate(values[i:i + per])) for i in range(0, words, per)]
            self._answer(cycle, PacketKind.MEM_DATA, packet, flits)

    def due(self, cycle: int) -> Packet | None:
        """The oldest answer if it is due by ``cycle`` (taken out of the queue), else ``None``."""
        if self._answers and self._answers[0][0] <= cycle:
            return self._answers.popleft()[1]
        return None

    def describe(self) -> str:
        """One line for a watchdog: the answers waiting, '' when none."""
        if not self._answers:
            return ""
        due, first = self._answers[0]
        return f"memory: {len(self._answers)} answers waiting, the first a {first.kind.name} due at cycle {due}"

    def _answer(self, cycle: int, kind: PacketKind, request: Packet, payload) -> None:
        self._answers.append((cycle + self.latency, Packet(kind, request.src, request.dst, request.tag,
                                                           {"addr": request.meta["addr"],
                                                            "words": request.meta["words"]}, tuple(payload))))
