"""Which packet goes into an expert chiplet's one input link next: the root's and the switch's rules for a
:class:`~mozart.model.chiplet_program.ChipletProgram`, for simulations of the chiplet alone.

Contract
--------
:class:`InputScheduler` holds the program's input sequence and a
:class:`~mozart.model.chiplet_memory.ChipletMemory`. A driver tells it every packet the chiplet sends
(:meth:`~InputScheduler.observe`, with the cycle of its last flit) and, whenever the input link is free, asks
:meth:`~InputScheduler.next_input` for the next packet to send whole. The answer, in this order:

1. the memory's oldest answer, if it is due (the switch merges memory answers in between the program's packets);
2. the program's next packet, once every :class:`~mozart.model.chiplet_program.Barrier` before it is met (the
   outputs it counts are out; a met Barrier takes no cycle) and, for a backward DISPATCH, the root's backward
   credit allows it: at most ``program.token_slots`` backward tokens whose GATE_GRAD is not out yet;
3. ``None``: nothing may go in this cycle (:attr:`~InputScheduler.drained` says whether anything is left).

Both drivers call it: :func:`mozart.hw.pysim.run_pysim` (amaranth.sim) and the cocotb testbench
``mozart.tb.tb_chiplet`` (Verilator). It holds no timing of its own: the cycle comes from the driver.
"""

from __future__ import annotations

from collections import Counter, deque

from .chiplet_memory import ChipletMemory
from .chiplet_program import Barrier, ChipletProgram
from .protocol import Packet, PacketKind

__all__ = ["InputScheduler", "is_backward_dispatch"]


def is_backward_dispatch(packet: Packet) -> bool:
    """A DISPATCH of a token's backward (it takes one unit of the backward credit until its GATE_GRAD is out)."""
    return packet.kind is PacketKind.DISPATCH and bool(packet.meta.get("backward", 0))


class InputScheduler:
    """The next input packet of a chiplet program (see the module doc).

    Parameters
    ----------
    program : ChipletProgram
        Its ``inputs`` (packets and Barriers) and ``token_slots`` (the backward credit).
    memory : ChipletMemory
        Sees every output packet; its due answers go first.
    """

    def __init__(self, program: ChipletProgram, memory: ChipletMemory):
        self.memory = memory
        self.credit = program.token_slots
        self.backward_in_flight = 0              #: backward DISPATCHes sent whose GATE_GRAD is not out yet
        self.outputs = 0                         #: output packets seen
        self.outputs_by_kind: Counter = Counter()
        self._inputs: deque = deque(program.inputs)

    @property
    def drained(self) -> bool:
        """Nothing left to send: the program's inputs are out and the memory owes no answer."""
        return not self._inputs and not self.memory.pending

    @property
    def inputs_left(self) -> int:
        """Program inputs (packets and Barriers) not sent yet."""
        return len(self._inputs)

    def observe(self, cycle: int, packet: Packet) -> None:
        """The chiplet sent ``packet``, its last flit in ``cycle``."""
        self.memory.request(cycle, packet)
        self.outputs += 1
        self.outputs_by_kind[packet.kind] += 1
        self.backward_in_flight -= packet.kind is PacketKind.GATE_GRAD

    def next_input(self, cycle: int) -> Packet | None:
        """The packet to send now, taken out of the queue; ``None`` if nothing may go in ``cycle``."""
        while True:
            answer = self.memory.due(cycle)
            if answer is not None:
                return answer
            if not self._inputs or not self.may_send(self._inputs[0]):
                return None
            item = self._inputs.popleft()
            if isinstance(item, Packet):
                self.backward_in_flight += is_backward_dispatch(item)
                return item

    def may_send(self, item: Packet | Barrier) -> bool:
        """A Barrier is met, or a packet is allowed by the backward credit."""
        if isinstance(item, Barrier):
            seen = self.outputs if item.kind is None else self.outputs_by_kind[item.kind]
            return seen >= item.outputs
        return not is_backward_dispatch(item) or self.backward_in_flight < self.credit

    def describe(self) -> str:
        """One line for a watchdog: what the program still has to send and what holds it, '' when drained."""
        parts = [self.memory.describe()] if self.memory.pending else []
        if self._inputs:
            head = self._inputs[0]
            if isinstance(head, Barrier):
                kind = head.kind.name + " " if head.kind else ""
                seen = self.outputs if head.kind is None else self.outputs_by_kind[head.kind]
                held = f"a Barrier waiting for {head.outputs} {kind}outputs ({seen} out)"
            elif is_backward_dispatch(head):
                held = (f"a backward DISPATCH (tag {head.tag}), {self.backward_in_flight} backward tokens in "
                        f"flight of the credit {self.credit}")
            else:
                held = f"a {head.kind.name} (tag {head.tag})"
            parts.append(f"input scheduler: {len(self._inputs)} program inputs left, next {held}")
        return "; ".join(parts)
