"""The root's issue window: holds a few TOKENs and dispatches the oldest whose experts are resident."""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .root_interfaces import (bits, entry_probe_signature, loaded_layout, needs_probe_signature, replicas_layout,
                              token_layout)

__all__ = ["RootIssueWindow"]


class RootIssueWindow(wiring.Component):
    """Between the sequencer and the dispatcher: ``contract.window`` positions, oldest first (``docs/wafer.md`` §1).

    - A TOKEN on ``token_in`` is stored in the first free position, with the RESIDENT bits of the local experts it
      selects (asked of the expert table on ``needs``).
    - **RESIDENT** bits: ``evict`` (a LOAD or UPDATE the sequencer took) clears one and makes its slot the local
      expert's latest; ``loaded`` (a LOADED or UPDATED packet) sets one only if it comes from that latest slot (a
      local index names another expert in each layer: an answer of an older LOAD or UPDATE of the same index, in
      another slot, is not the new expert's; before the bit's first LOAD, any slot's); a set wins over a clear in
      one cycle.
    - A stored token is **ready** when every RESIDENT bit it needs is set, its combine entry is free if it is a
      ``first`` dispatch (``entry[p]`` asks the combine tracker), no older stored token has its entry (two
      dispatches of one token leave in order), and, if it is a **backward** token, every chiplet it goes to has
      room for its replicas: ``credit`` (replicas in flight) plus its own (1 per chiplet with ``dedup``, else its
      experts there) is at most ``contract.credit_limit`` (:class:`~mozart.hw.root_credit.RootBackwardCredit`).
      Forward tokens take no credit. A backward token's replicas are booked on ``spend`` when it is taken.
      ``token`` offers the oldest ready one; it stays stored (and ``token.payload`` holds) from the transfer
      until ``token.ready`` is high again (the dispatcher reads it while its emitters send), then leaves and the
      younger ones move up.

    Members
    -------
    token_in : In(stream.Signature(token_layout))
        TOKENs from the sequencer, in program order; taken while a position is free.
    needs : Out(needs_probe_signature)
        The expert table's answer for ``token_in``'s routing.
    loaded : In(stream.Signature(loaded_layout, always_ready=True))
        Sets a RESIDENT bit if its slot is the bit's latest.
    evict : In(stream.Signature(loaded_layout, always_ready=True))
        Clears a RESIDENT bit; its slot becomes the bit's latest.
    entry : Out(entry_probe_signature).array(window)
        Is position ``p``'s combine entry occupied.
    token : Out(stream.Signature(token_layout))
        To the dispatcher (see above for how long its payload holds).
    credit : In(replicas_layout)
        Backward replicas in flight per chiplet.
    spend : Out(stream.Signature(replicas_layout, always_ready=True))
        The replicas per chiplet of a backward token, in the cycle ``token`` is taken.
    empty : Out(1)
        No token stored: every TOKEN taken has been dispatched.

    Latency and throughput
    ----------------------
    A TOKEN offered on ``token_in`` is taken in that cycle if a position is free and can be offered on ``token``
    the next cycle (one register stage). One token is dispatched at a time; its position is free the cycle after
    ``token.ready`` is high again, and the next ready token can be offered in that same cycle. With
    ``window = 1`` the tokens leave in program order, each once its experts are resident.
    """

    def __init__(self, contract):
        self.contract = contract
        self.layout = token_layout(contract)
        super().__init__({
            "token_in": In(stream.Signature(bits(self.layout))),
            "needs": Out(needs_probe_signature(contract)),
            "loaded": In(stream.Signature(bits(loaded_layout(contract)), always_ready=True)),
            "evict": In(stream.Signature(bits(loaded_layout(contract)), always_ready=True)),
            "entry": Out(entry_probe_signature(contract)).array(contract.window),
            "token": Out(stream.Signature(bits(self.layout))),
            "credit": In(bits(replicas_layout(contract))),
            "spend": Out(stream.Signature(bits(replicas_layout(contract)), always_ready=True)),
            "empty": Out(1),
        })

    def _resident_bits(self, m):
        contract = self.contract
        resident = Signal(contract.residents)
        never = contract.slots   # no LOAD or UPDATE of the bit yet: an answer from any slot sets it
        latest = Array(Signal(range(never + 1), init=never, name=f"latest_slot{r}") for r in range(contract.residents))
        layout = loaded_layout(contract)
        evict, report = layout(self.evict.payload), layout(self.loaded.payload)
        for r in range(contract.residents):   # one comparator a bit: a dynamic-index write is a case per bit
            with m.If(self.evict.valid & (evict.resident == r)):
                m.d.sync += latest[r].eq(evict.slot)
        newest = Signal.like(latest[0])   # the report's bit's latest slot, an evict of it in this cycle included
        m.d.comb += newest.eq(Mux(self.evict.valid & (evict.resident == report.resident), evict.slot,
                                  latest[report.resident]))
        one = Const(1, contract.residents)
        evicted = Mux(self.evict.valid, one << evict.resident, 0)
        reported = Mux(self.loaded.valid & ((report.slot == newest) | (newest == never)), one << report.resident, 0)
        m.d.sync += resident.eq(resident & ~evicted | reported)
        return resident

    def _replicas(self, header, needs):
        """Per chiplet, the backward replicas a token sends it: 1 if it selects an expert there and is
        de-duplicated, else the number of its experts there (its RESIDENT bits: a chiplet's are contiguous)."""
        per_chiplet, replicas = self.contract.cfg.experts_per_chiplet, []
        for chiplet in range(self.contract.chiplets):
            selected = needs[self.contract.resident_index(chiplet, 0):][:per_chiplet]
            count = sum(selected[i] for i in range(per_chiplet))
            replicas.append(Mux(header.dedup, selected.any(), count))
        return replicas

    def _has_credit(self, header, replicas):
        """A forward token, or a backward one every chiplet of which has room for its replicas."""
        credit = replicas_layout(self.contract)(self.credit)
        room = Cat(*(credit[chiplet] + replicas[chiplet] <= self.contract.credit_limit
                     for chiplet in range(self.contract.chiplets)))
        return ~header.backward | room.all()

    def _ready(self, m, stored, payload, needs, resident):
        """Per position: stored, its experts resident, its entry free if first, no older position has its entry."""
        ready = []
        headers = [self.layout(p).header for p in payload]
        for p, header in enumerate(headers):
            m.d.comb += self.entry[p].entry.eq(header.token)
            older_same_entry = Cat(*(stored[q] & (headers[q].token == header.token) for q in range(p)))
            ready.append(stored[p] & ~(needs[p] & ~resident).any() & (~header.first | ~self.entry[p].occupied)
                         & ~older_same_entry.any())
        return ready

    def _spend(self, m, replicas, chosen):
        """Books the chosen token's replicas on ``spend`` when it is taken, if it is backward."""
        layout = replicas_layout(self.contract)
        # one vector of replicas_layout per position, selected by position (a spent token had room: no count
        # exceeds the limit, so each fits its element)
        vectors = [Signal(layout, name=f"replicas{p}") for p in range(len(replicas))]
        for vector, counts in zip(vectors, replicas):
            m.d.comb += [vector[chiplet].eq(count) for chiplet, count in enumerate(counts)]
        m.d.comb += [self.spend.payload.eq(Cat(*vectors).word_select(chosen, layout.size)),
                     self.spend.valid.eq(self.token.valid & self.token.ready
                                         & self.layout(self.token.payload).header.backward)]

    def _oldest(self, m, ready):
        """The lowest ready position (position 0 holds the oldest token)."""
        chosen = Signal(range(self.contract.window))
        for p in reversed(range(self.contract.window)):
            with m.If(ready[p]):
                m.d.comb += chosen.eq(p)
        return chosen

    def elaborate(self, platform):
        m = Module()
        window = self.contract.window
        payload = [Signal(len(self.token.payload), name=f"stored_token{p}") for p in range(window)]
        needs = [Signal(self.contract.residents, name=f"stored_needs{p}") for p in range(window)]
        count = Signal(range(window + 1))
        stored = [count > p for p in range(window)]
        resident = self._resident_bits(m)
        replicas = [self._replicas(self.layout(payload[p]).header, needs[p]) for p in range(window)]
        ready = [ready & self._has_credit(self.layout(payload[p]).header, replicas[p])
                 for p, ready in enumerate(self._ready(m, stored, payload, needs, resident))]

        # the oldest ready position; while sending, the position being sent
        chosen, sending, sent = self._oldest(m, ready), Signal(), Signal(range(window))
        current = Mux(sending, sent, chosen)
        m.d.comb += [self.token.valid.eq(~sending & Cat(*ready).any()),
                     self.token.payload.eq(Cat(*payload).word_select(current, len(self.token.payload)))]
        self._spend(m, replicas, chosen)
        with m.If(self.token.valid & self.token.ready):
            m.d.sync += [sending.eq(1), sent.eq(chosen)]
        leaves = Signal()
        m.d.comb += leaves.eq(sending & self.token.ready)
        with m.If(leaves):
            m.d.sync += sending.eq(0)

        # storage: the leaving position's younger neighbours move up one; a new token goes behind the last
        takes = self.token_in.valid & self.token_in.ready
        m.d.comb += [self.token_in.ready.eq(count < window),
                     self.needs.route.eq(self.layout(self.token_in.payload).route.as_value())]
        remaining = count - leaves
        for p in range(window):
            with m.If(takes & (remaining == p)):
                m.d.sync += [payload[p].eq(self.token_in.payload), needs[p].eq(self.needs.needs)]
            if p + 1 < window:   # the last position has no younger neighbour
                with m.Elif(leaves & (sent <= p)):
                    m.d.sync += [payload[p].eq(payload[p + 1]), needs[p].eq(needs[p + 1])]
        m.d.sync += count.eq(remaining + takes)
        m.d.comb += self.empty.eq(count == 0)
        return m
