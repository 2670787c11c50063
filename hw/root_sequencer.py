"""The root's host command sequencer: decodes ``host_in`` in order; TOKENs go to the issue window."""

from __future__ import annotations

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model.host import OP_BITS, HostOp

from .protocol import fields_layout, link_signature
from .root_interfaces import bits, loaded_layout, slot_command_layout, token_layout

__all__ = ["RootSequencer"]


class RootSequencer(wiring.Component):
    """Takes the host commands in order (``docs/wafer.md`` section 1); a command that waits holds ``host_in.ready`` low.

    - **TABLE** is passed on ``table`` (one cycle, always taken) once the issue window is empty.
    - **LOAD** and **UPDATE** are offered on ``load[group]`` once the window is empty (``update`` tells them
      apart); the command is taken when that group's emitter takes it, and it clears the slot's LOADED bit and
      (on ``evict``) the local expert's RESIDENT bit. A ``loaded`` report (a LOADED or an UPDATED packet) sets
      the LOADED bit (a report wins over a clear in one cycle).
    - **WAIT_LOADED** holds until the slot's LOADED bit is set; **WAIT_COMBINED** until the window is empty and
      every masked group is drained (``groups_drained``).
    - **TOKEN** (forward or backward): its header and flits are stored, then offered on ``token`` until the
      issue window takes it (``token.payload`` holds until then).
    - An unknown op or a flit outside a command pulses ``error`` (an unknown op's remaining flits are dropped).

    Members
    -------
    host_in : In(link_signature(cfg))
        Host commands.
    table : Out(stream.Signature(TABLE arguments, always_ready=True))
        Expert table writes.
    load : Out(stream.Signature(slot_command_layout)).array(groups)
        LOAD and UPDATE commands, to group ``g``'s emitter.
    evict : Out(stream.Signature(loaded_layout, always_ready=True))
        The RESIDENT bit a LOAD or UPDATE clears and its slot (the slot whose answer may set the bit again), in
        the cycle it is taken.
    loaded : In(stream.Signature(loaded_layout, always_ready=True))
        A LOADED or UPDATED packet arrived (its ``slot`` sets the LOADED bit).
    groups_drained : In(groups)
        Bit ``g``: no result of group ``g`` outstanding.
    window_empty : In(1)
        Every TOKEN taken has been dispatched (:class:`~mozart.hw.root_issue_window.RootIssueWindow`).
    token : Out(stream.Signature(token_layout))
        The stored TOKEN, to the issue window.
    idle : Out(1)
        Waiting for a command (no TOKEN stored).
    error : Out(1)
        Pulses on an unknown op or a stray flit.

    Latency and throughput
    ----------------------
    TABLE, LOAD, UPDATE and the WAITs take one cycle each when not held. A TOKEN takes its ``1 + route_flits +
    token_flits`` host flits (backward: ``2 token_flits``) at one per cycle, is offered on ``token`` the cycle
    after its last flit, and the next command is taken the cycle after the window takes it.
    """

    def __init__(self, contract):
        cfg, host = contract.cfg, contract.host
        self.contract = contract
        self.slots = contract.slots
        super().__init__({
            "host_in": In(link_signature(cfg)),
            "table": Out(stream.Signature(bits(fields_layout(host.fields[HostOp.TABLE])), always_ready=True)),
            "load": Out(stream.Signature(bits(slot_command_layout(contract)))).array(cfg.groups),
            "evict": Out(stream.Signature(bits(loaded_layout(contract)), always_ready=True)),
            "loaded": In(stream.Signature(bits(loaded_layout(contract)), always_ready=True)),
            "groups_drained": In(cfg.groups),
            "window_empty": In(1),
            "token": Out(stream.Signature(bits(token_layout(contract)))),
            "idle": Out(1),
            "error": Out(1),
        })

    def _loaded_bits(self, m):
        """The LOADED bit of every slot, and the mask of bits a LOAD clears this cycle (one vector updated by
        masks: an indexed write is a case statement per bit)."""
        loaded, cleared = Signal(self.slots), Signal(self.slots)
        report = loaded_layout(self.contract)(self.loaded.payload)
        reported = Mux(self.loaded.valid, Const(1, self.slots) << report.slot, 0)
        m.d.sync += loaded.eq(loaded & ~cleared | reported)   # a report wins over a clear in one cycle
        return loaded, cleared

    def _token_store(self, m):
        """The stored TOKEN: its header, and a shift register of its flits in ``token_layout`` order (routing,
        output gradient, token). Not an indexed register file (a write by index is a decoder and a mux per
        register): each flit enters at the end and moves one register up per flit, so after the last one the
        routing sits at the front. A forward TOKEN has no output gradient: its routing's last register takes from
        the token's first instead, skipping the gradient's registers, so its routing and token land in place too."""
        host = self.contract.host
        header_layout = fields_layout(host.fields[HostOp.TOKEN])
        token_header = header_layout(Signal(header_layout.size, name="token_header"))
        token_flits = [Signal(self.contract.cfg.hardware.flit_bits, name=f"token_flit{i}")
                       for i in range(host.route_flits + self.contract.window_token_flits)]
        m.d.comb += self.token.payload.eq(Cat(token_header, *token_flits))
        shift = Signal()   # a flit of the TOKEN arrives (its header is stored already)
        after_route = Mux(token_header.backward, token_flits[host.route_flits],
                          token_flits[host.route_flits + host.token_flits])
        shifted_in = [after_route if i == host.route_flits - 1 else token_flits[i + 1]
                      for i in range(len(token_flits) - 1)]
        with m.If(shift):
            m.d.sync += [register.eq(source) for register, source in zip(token_flits, shifted_in)]
            m.d.sync += token_flits[-1].eq(self.host_in.payload.data)
        return token_header, shift

    def elaborate(self, platform):
        m = Module()
        host = self.contract.host
        command = self.host_in
        op = command.payload.data[:OP_BITS]
        arguments = command.payload.data[OP_BITS:]

        def arguments_of(kind):
            layout = fields_layout(host.fields[kind])
            return layout(arguments[:layout.size])

        token_header, shift = self._token_store(m)
        loaded, cleared = self._loaded_bits(m)

        def chiplet_index(a):
            return self.contract.chiplet_index(a.group, a.chiplet)

        with m.FSM(name="cmd"):
            with m.State("CMD"):
                m.d.comb += self.idle.eq(1)
                with m.If(command.valid & command.payload.first):
                    with m.Switch(op):
                        with m.Case(HostOp.TABLE):
                            m.d.comb += [command.ready.eq(self.window_empty), self.table.valid.eq(self.window_empty),
                                         self.table.payload.eq(arguments_of(HostOp.TABLE))]
                        with m.Case(HostOp.LOAD, HostOp.UPDATE):   # same fields (slot_command_layout)
                            a = arguments_of(HostOp.LOAD)
                            for group, load in enumerate(self.load):
                                command_to_emitter = slot_command_layout(self.contract)(load.payload)
                                m.d.comb += [command_to_emitter.arguments.eq(a),
                                             command_to_emitter.update.eq(op == HostOp.UPDATE)]
                                with m.If((a.group == group) & self.window_empty):
                                    m.d.comb += [command.ready.eq(load.ready), load.valid.eq(1)]
                            slot = self.contract.slot_index(chiplet_index(a), a.slot)
                            evict = loaded_layout(self.contract)(self.evict.payload)
                            m.d.comb += [self.evict.valid.eq(command.ready), evict.slot.eq(slot),
                                         evict.resident.eq(self.contract.resident_index(chiplet_index(a), a.local))]
                            with m.If(command.ready):
                                m.d.comb += cleared.eq(Const(1, self.slots) << slot)
                        with m.Case(HostOp.WAIT_LOADED):
                            a = arguments_of(HostOp.WAIT_LOADED)
                            waited_slot = self.contract.slot_index(chiplet_index(a), a.slot)
                            m.d.comb += command.ready.eq(loaded.bit_select(waited_slot, 1))
                        with m.Case(HostOp.WAIT_COMBINED):
                            waited = Cat(arguments_of(HostOp.WAIT_COMBINED).groups)
                            m.d.comb += command.ready.eq(self.window_empty & (self.groups_drained | ~waited).all())
                        with m.Case(HostOp.TOKEN):
                            m.d.comb += command.ready.eq(1)
                            m.d.sync += token_header.eq(arguments_of(HostOp.TOKEN))
                            with m.If(~command.payload.last):
                                m.next = "PAYLOAD"
                        with m.Default():
                            m.d.comb += [command.ready.eq(1), self.error.eq(1)]
                            with m.If(~command.payload.last):
                                m.next = "DROP"
                with m.Elif(command.valid):   # a stray flit outside a command
                    m.d.comb += [command.ready.eq(1), self.error.eq(1)]
            with m.State("PAYLOAD"):
                m.d.comb += command.ready.eq(1)
                m.d.comb += shift.eq(command.valid)
                with m.If(command.valid):
                    with m.If(command.payload.last):
                        m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.d.comb += self.token.valid.eq(1)
                with m.If(self.token.ready):
                    m.next = "CMD"
            with m.State("DROP"):
                m.d.comb += command.ready.eq(1)
                with m.If(command.valid & command.payload.last):
                    m.next = "CMD"
        return m
