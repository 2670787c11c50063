"""The model's environment of a chiplet alone (no simulator): :class:`ChipletMemory` (writes kept, reads and
acknowledged writes answered after the latency, in order) and :class:`InputScheduler` (memory answers first,
Barriers, the backward credit), each rule with a broken variant it must reject."""

import numpy as np
import pytest

from mozart.model.chiplet_input_scheduler import InputScheduler
from mozart.model.chiplet_memory import ChipletMemory
from mozart.model.chiplet_program import Barrier, ChipletProgram
from mozart.model.config import load_config
from mozart.model.protocol import Packet, PacketKind, Protocol

TINY = load_config("tiny")
PROTO = Protocol(TINY)


def _write(addr: int, values, ack: int = 0) -> Packet:
    per, bits = PROTO.words_per_flit, TINY.dram.word_bits
    flits = [sum(v << (j * bits) for j, v in enumerate(values[i:i + per])) for i in range(0, len(values), per)]
    return Packet(PacketKind.MEM_WRITE, 7, 3, 5, {"addr": addr, "words": len(values), "ack": ack}, tuple(flits))


def _read(addr: int, words: int) -> Packet:
    return Packet(PacketKind.MEM_READ, 7, 3, 6, {"addr": addr, "words": words})


def test_memory_answers_a_read_with_what_the_writes_wrote_after_the_latency_in_order():
    memory = ChipletMemory(TINY, latency=8)
    values = [0x11, 0x22, 0x33]
    memory.request(10, _write(100, values, ack=1))
    memory.request(11, _read(99, 5))          # one word before and one after the write: never written, 0
    assert memory.pending == 2 and memory.due(17) is None
    ack = memory.due(18)
    assert ack.kind is PacketKind.MEM_ACK and (ack.dst, ack.src, ack.tag) == (3, 7, 5)
    assert memory.due(18) is None             # the read is due one cycle later
    data = memory.due(19)
    assert data.kind is PacketKind.MEM_DATA and data.meta == {"addr": 99, "words": 5}
    words = [(flit >> (j * TINY.dram.word_bits)) & ((1 << TINY.dram.word_bits) - 1)
             for flit in data.payload for j in range(PROTO.words_per_flit)]
    assert words[:5] == [0, *values, 0]
    assert memory.pending == 0 and memory.describe() == ""


def test_memory_ignores_traffic_that_is_not_memory_and_rejects_a_bad_latency():
    memory = ChipletMemory(PROTO)
    memory.request(0, _write(0, [1]))         # no ack asked: nothing owed
    memory.request(0, Packet(PacketKind.LOADED, 0, 3, 1, {"slot": 0, "expert": 0}))
    assert memory.pending == 0 and memory.words == {0: 1}
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match=rf"memory latency must be a non-negative number of cycles, not "
                                             rf"{bad!r}"):
            ChipletMemory(TINY, latency=bad)


def _training(tokens: int = 12) -> ChipletProgram:
    return ChipletProgram(TINY, np.random.default_rng(4), token_slots=2).training_program(tokens)


def _run_without_chiplet(scheduler: InputScheduler, program: ChipletProgram) -> list[Packet]:
    """Send whatever the scheduler allows; a GATE_GRAD comes out for a backward DISPATCH only when asked."""
    sent = []
    for cycle in range(10_000):
        packet = scheduler.next_input(cycle)
        if packet is None:
            return sent
        sent.append(packet)
    raise AssertionError("the scheduler kept sending")


def test_the_backward_credit_holds_the_next_backward_dispatch_until_a_gate_gradient_is_out():
    program = _training()
    scheduler = InputScheduler(program, ChipletMemory(TINY))
    for e in program.expected:
        if e.packet.kind is not PacketKind.GATE_GRAD:   # every output but the gate gradients: barriers met
            scheduler.observe(0, e.packet)
    sent = _run_without_chiplet(scheduler, program)
    backward = [p for p in sent if p.kind is PacketKind.DISPATCH and p.meta.get("backward")]
    assert len(backward) == program.token_slots == scheduler.backward_in_flight
    assert "next a backward DISPATCH" in scheduler.describe() and "of the credit 2" in scheduler.describe()
    scheduler.observe(1, next(e.packet for e in program.expected if e.packet.kind is PacketKind.GATE_GRAD))
    more = _run_without_chiplet(scheduler, program)
    assert [p.meta.get("backward") for p in more[:1]] == [1] and scheduler.backward_in_flight == 2


def test_a_barrier_holds_the_program_until_its_outputs_are_out_and_memory_answers_go_first():
    program = _training()
    scheduler = InputScheduler(program, ChipletMemory(TINY, latency=3))
    first = program.inputs.index(next(i for i in program.inputs if isinstance(i, Barrier)))
    sent = _run_without_chiplet(scheduler, program)
    assert sent == program.inputs[:first]     # everything before the first Barrier, nothing after it
    barrier = program.inputs[first]
    for e in program.expected[:barrier.outputs - 1]:
        scheduler.observe(0, e.packet)
    assert scheduler.next_input(1) is None    # one output short: still held (saves answer nothing: no acks)
    scheduler.observe(0, program.expected[barrier.outputs - 1].packet)
    scheduler.memory.request(0, _read(0, 1))  # a read answered at cycle 3 goes before the program's next packet
    assert scheduler.next_input(2) is program.inputs[first + 1]
    assert scheduler.next_input(3).kind is PacketKind.MEM_DATA
    assert not scheduler.drained


def test_a_scheduler_without_the_credit_would_send_every_backward_dispatch_at_once():
    """The check above fails on a scheduler that ignores the credit (the mutant the co-simulation also runs)."""

    class NoCredit(InputScheduler):
        def may_send(self, item):
            return isinstance(item, Packet) or super().may_send(item)

    program = _training()
    scheduler = NoCredit(program, ChipletMemory(TINY))
    for e in program.expected:
        if e.packet.kind is not PacketKind.GATE_GRAD:
            scheduler.observe(0, e.packet)
    sent = _run_without_chiplet(scheduler, program)
    assert sum(p.kind is PacketKind.DISPATCH and bool(p.meta.get("backward")) for p in sent) > program.token_slots
