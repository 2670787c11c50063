"""The expert chiplet's weight-update unit: an UPDATE applies a slot's accumulated gradient to its weights, clears
the gradient and writes the updated image back to the DRAM."""

from __future__ import annotations

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from mozart.model import golden_backward
from mozart.model.blocks.chiplet import ChipletContract
from mozart.model.protocol import Protocol, index_bits

from .chiplet_layouts import slot_expert_signature
from .expressions import clamp, rshift_round
from .protocol import PacketKind, header_layout, link_signature

__all__ = ["ChipletWeightUpdate"]


def command_layout(cfg) -> data.StructLayout:
    """An UPDATE as the unit takes it: the weight slot, the DRAM word address of the expert's image, the tag."""
    proto = Protocol(cfg)
    return data.StructLayout({"slot": proto.slot_bits, "addr": proto.addr_bits, "tag": cfg.hardware.tag_bits})


def _update_shifts(cfg) -> tuple[int, int]:
    """The shifts from W1's and W2's gradient format to the weights' (``golden_backward.update_shift``)."""
    return golden_backward.update_shift(cfg, "w1"), golden_backward.update_shift(cfg, "w2")


class ChipletWeightUpdate(wiring.Component):
    """Applies ``W <- sat_w(W - rshift_round(dW, s))`` to one weight slot per UPDATE, bit-exact with
    :func:`mozart.model.golden_backward.update_weights` (``s = update_shift(cfg, "w1")`` for W1's elements,
    ``update_shift(cfg, "w2")`` for W2's), and writes the updated image back.

    Memories (both outside; ``L = mac_lanes``, ``G = 2 d_model d_ff / L`` gradient words per slot)
    -----------------------------------------------------------------------------------------------
    - Weight SRAM: slot ``s`` at flits ``s * image_flits ..``, layout :func:`mozart.model.golden.expert_image_flits`
      (W1 ``[d_ff, d_model]`` then W2 ``[d_model, d_ff]`` on a fresh flit, ``flit_bits // weight_bits`` weights a
      flit). Read port ``w_addr/w_data`` (synchronous: ``w_data`` is the flit at the previous ``w_addr``), write
      port ``w_wr_addr/w_wr_data/w_wr_en``.
    - Gradient SRAM: word ``s * G + n // L`` holds, in lane ``n % L``, slot ``s``'s gradient of image element
      ``n`` (W1 row-major, then W2, no flit padding), signed ``step_grad_bits(cfg)``. Read port
      ``g_addr/g_data`` (synchronous), write port ``g_wr_addr/g_wr_data/g_wr_en``.

    What it does with a ``command`` (slot, addr, tag)
    -------------------------------------------------
    Reads the slot's gradient words in order, one a cycle, each with the weight flit it belongs to (``L`` divides
    the weights of a flit and both matrices, so a word never straddles a flit); writes each updated flit back to
    the weight SRAM (padding zero) and zero over each gradient word it read; other slots are untouched. The
    updated flits leave, through a FIFO of ``2 max_burst_flits``, as MEM_WRITE packets to ``memctrl(group)``
    (src this chiplet, the command's tag, ``addr`` advancing by the words sent, at most ``max_burst_flits``
    flits each, ``ack = 1`` on the last only). A packet starts only when all its flits are updated, then sends
    one flit per cycle while ``o.ready`` (a packet once started is sent whole). A backed-up ``o`` only stalls the
    reading (it waits for room in the FIFO). After the last packet it waits for ``ack`` (the MEM_ACK of that
    write), then sends UPDATED (dst root, the tag, meta slot and the expert ``slot_expert`` names) and takes the
    next command.

    Latency and throughput
    ----------------------
    ``ChipletContract.update_cycles``: from the command taken to the last MEM_WRITE flit sent, ``o`` always
    ready. Gradient word ``w`` is read in cycle ``1 + w`` and its flit is in the FIFO from cycle ``3 + w`` (the
    SRAM read, then update and push: ``ChipletContract.UPDATE_PIPELINE``);
    packet ``p`` (``n_p`` flits, last word ``w_p``) starts at ``S_p = max(S_{p-1} + 1 + n_{p-1}, 3 + w_p)``;
    the last flit leaves in ``S_last + n_last``: ``G + 2 + n_last`` when reading is the bottleneck
    (``flit_bits // weight_bits >= 2 L``), the link's ``image_flits + packets`` plus the first packet's fill
    when it is. The ack is taken in the cycle it is valid; UPDATED's single flit follows in the next cycle; the
    next command is taken in the cycle after UPDATED leaves.

    Members
    -------
    command : In(stream.Signature(command layout))
    slot_expert : Out(slot_expert_signature(cfg))
    w_addr, w_data, w_wr_addr, w_wr_data, w_wr_en : the weight SRAM's read and write ports
    g_addr, g_data, g_wr_addr, g_wr_data, g_wr_en : the gradient SRAM's read and write ports
    o : Out(link_signature(cfg))
        MEM_WRITE and UPDATED packets.
    ack : In(stream.Signature(0))
        The MEM_ACK of the last write (an event).
    """

    def __new__(cls, cfg, group: int, index: int, node: int):
        ChipletContract(cfg, group, index)   # rejects before a component exists
        _update_shifts(cfg)
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, cfg, group: int, index: int, node: int):
        self._cfg, self._proto = cfg, Protocol(cfg)
        self._group, self._node = group, node
        hw, moe = cfg.hardware, cfg.moe
        self.lanes = hw.mac_lanes
        self.grad_bits = golden_backward.step_grad_bits(cfg)
        self.matrix_words = moe.d_model * moe.d_ff // self.lanes        # gradient words of W1, and of W2
        self.slot_words = 2 * self.matrix_words
        self.words_per_weight_flit = hw.flit_bits // cfg.numerics.weight_bits // self.lanes
        self.fifo_flits = 2 * hw.max_burst_flits                        # one packet sending, the next filling
        self.shifts = _update_shifts(cfg)
        self.contract = ChipletContract(cfg, group, index)
        weight_depth = hw.sram_slots * self._proto.image_flits
        grad_depth = hw.sram_slots * self.slot_words
        super().__init__({
            "command": In(stream.Signature(command_layout(cfg))),
            "slot_expert": Out(slot_expert_signature(cfg)),
            "w_addr": Out(range(weight_depth)), "w_data": In(hw.flit_bits),
            "w_wr_addr": Out(range(weight_depth)), "w_wr_data": Out(hw.flit_bits), "w_wr_en": Out(1),
            "g_addr": Out(range(grad_depth)), "g_data": In(self.lanes * self.grad_bits),
            "g_wr_addr": Out(range(grad_depth)), "g_wr_data": Out(self.lanes * self.grad_bits), "g_wr_en": Out(1),
            "o": Out(link_signature(cfg)),
            "ack": In(stream.Signature(0)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.flits = flits = fifo.SyncFIFO(width=self._cfg.hardware.flit_bits, depth=self.fifo_flits)
        command = Signal(command_layout(self._cfg))
        busy = Signal()        # a command is taken and its UPDATED not yet sent
        start = Signal()       # the command is taken in this cycle
        m.d.comb += [self.command.ready.eq(~busy), start.eq(self.command.valid & ~busy),
                     self.slot_expert.slot.eq(command.slot)]
        with m.If(start):
            m.d.sync += [command.eq(self.command.payload), busy.eq(1)]
        stage = self._reader(m, command, start, busy, flits)
        self._updater(m, stage, flits)
        done = self._sender(m, command, start, flits)
        with m.If(done):
            m.d.sync += busy.eq(0)
        return m

    def _reader(self, m, command, start, busy, flits):
        """Issues one gradient word and its weight flit per cycle while the FIFO has room for the flit it may
        complete; returns the registered description of the word whose data arrives in this cycle."""
        proto, per_flit = self._proto, self.words_per_weight_flit
        word = Signal(range(self.slot_words + 1))          # next gradient word of the slot to read
        flit = Signal(range(proto.image_flits + 1))        # the image flit it belongs to
        sub = Signal(index_bits(per_flit))                 # its lane chunk within that flit
        stage = Signal(data.StructLayout({"valid": 1, "word": len(self.g_addr), "flit": len(self.w_addr),
                                          "sub": len(sub), "w2": 1, "flit_end": 1}))
        matrix_end = (word == self.matrix_words - 1) | (word == self.slot_words - 1)
        flit_end = (sub == per_flit - 1) | matrix_end
        completing = stage.valid & stage.flit_end          # a flit enters the FIFO in this cycle
        room = flits.level + completing < self.fifo_flits
        issue = busy & (word < self.slot_words) & room
        word_address = command.slot * self.slot_words + word
        flit_address = command.slot * proto.image_flits + flit
        m.d.comb += [self.g_addr.eq(word_address), self.w_addr.eq(flit_address)]
        m.d.sync += [stage.valid.eq(issue), stage.word.eq(word_address), stage.flit.eq(flit_address),
                     stage.sub.eq(sub), stage.w2.eq(word >= self.matrix_words), stage.flit_end.eq(flit_end)]
        with m.If(start):
            m.d.sync += [word.eq(0), flit.eq(0), sub.eq(0)]
        with m.Elif(issue):
            m.d.sync += word.eq(word + 1)
            with m.If(flit_end):
                m.d.sync += [flit.eq(flit + 1), sub.eq(0)]
            with m.Else():
                m.d.sync += sub.eq(sub + 1)
        return stage

    def _updater(self, m, stage, flits):
        """The read data of ``stage``: ``L`` updated weights placed in their chunk of the flit being assembled; a
        completed flit goes to the weight SRAM and the FIFO; the gradient word read is zeroed."""
        cfg, lanes, per_flit = self._cfg, self.lanes, self.words_per_weight_flit
        weight_bits, chunk_bits = cfg.numerics.weight_bits, lanes * cfg.numerics.weight_bits
        old_chunk = self.w_data.word_select(stage.sub, chunk_bits)
        new_weights = []
        for lane in range(lanes):
            weight = old_chunk[lane * weight_bits:(lane + 1) * weight_bits].as_signed()
            grad = self.g_data[lane * self.grad_bits:(lane + 1) * self.grad_bits].as_signed()
            step_w1, step_w2 = (rshift_round(m, grad, shift, f"lane{lane}_{which}")
                                for shift, which in zip(self.shifts, ("w1", "w2")))
            new = clamp(m, weight - Mux(stage.w2, step_w2, step_w1), weight_bits, f"lane{lane}_weight")
            new_weights.append(new.as_unsigned()[:weight_bits])
        new_chunk = Cat(*new_weights)
        assembled = Signal(per_flit * chunk_bits)          # the chunks of the current flit updated so far
        chunks = [Mux(stage.sub == s, new_chunk, Mux(stage.sub > s, assembled.word_select(s, chunk_bits), 0))
                  for s in range(per_flit)]
        updated_flit = Signal(cfg.hardware.flit_bits)      # padding (past the last chunk, past W1's end) zero
        m.d.comb += updated_flit.eq(Cat(*chunks))
        with m.If(stage.valid):
            m.d.sync += assembled.eq(updated_flit)
        completing = stage.valid & stage.flit_end
        m.d.comb += [self.w_wr_addr.eq(stage.flit), self.w_wr_data.eq(updated_flit), self.w_wr_en.eq(completing),
                     flits.w_data.eq(updated_flit), flits.w_en.eq(completing),
                     self.g_wr_addr.eq(stage.word), self.g_wr_data.eq(0), self.g_wr_en.eq(stage.valid)]

    def _sender(self, m, command, start, flits):
        """The FIFO's flits as MEM_WRITE packets, then UPDATED after the ack; returns the cycle UPDATED leaves."""
        cfg, proto, burst = self._cfg, self._proto, self._cfg.hardware.max_burst_flits
        remaining = Signal(range(proto.image_flits + 1))   # image flits not yet sent
        addr = Signal(proto.addr_bits)                     # DRAM word address of the next packet
        sent = Signal(range(burst))                        # flits of the current packet sent
        length = Signal(range(burst + 1))
        m.d.comb += length.eq(Mux(remaining > burst, burst, remaining))
        last_packet = remaining == length
        header = Signal(header_layout(cfg))
        m.d.comb += self.o.payload.data.eq(header.as_value()[:proto.header_bits])   # pad bits: zero-extended
        done = Signal()
        with m.If(start):
            m.d.sync += [remaining.eq(proto.image_flits), addr.eq(self.command.payload.addr)]
        with m.FSM(name="tx"):
            with m.State("IDLE"):
                with m.If(start):
                    m.next = "HEAD"
            with m.State("HEAD"):
                with m.If(self._packet_ready(flits, length)):
                    self._head(m, header, PacketKind.MEM_WRITE, proto.topology.memctrl(self._group), command.tag,
                               length)
                    m.d.comb += [header.meta.mem_write.addr.eq(addr),
                                 header.meta.mem_write.words.eq(length * proto.words_per_flit),
                                 header.meta.mem_write.ack.eq(last_packet)]
                    with m.If(self.o.ready):
                        m.d.sync += sent.eq(0)
                        m.next = "DATA"
            with m.State("DATA"):
                packet_end = sent == length - 1
                # the FIFO holds the packet's flits (``_packet_ready``), so valid stays high to its last flit
                m.d.comb += [self.o.valid.eq(flits.r_rdy), self.o.payload.last.eq(packet_end),
                             self.o.payload.data.eq(flits.r_data), flits.r_en.eq(self.o.ready)]
                with m.If(self.o.ready & flits.r_rdy):
                    m.d.sync += sent.eq(sent + 1)
                    with m.If(packet_end):
                        m.d.sync += [remaining.eq(remaining - length),
                                     addr.eq(addr + length * proto.words_per_flit)]
                        m.next = "HEAD"
                        with m.If(last_packet):
                            m.next = "ACK"
            with m.State("ACK"):
                m.d.comb += self.ack.ready.eq(1)
                with m.If(self.ack.valid):
                    m.next = "UPDATED"
            with m.State("UPDATED"):
                self._head(m, header, PacketKind.UPDATED, proto.topology.root, command.tag)
                m.d.comb += [self.o.payload.last.eq(1), header.meta.updated.slot.eq(command.slot),
                             header.meta.updated.expert.eq(self.slot_expert.expert)]
                with m.If(self.o.ready):
                    m.d.comb += done.eq(1)
                    m.next = "IDLE"
        return done

    def _packet_ready(self, flits, length):
        """A packet starts only when all its flits wait in the FIFO: then it leaves one flit a cycle."""
        return flits.level >= length

    def _head(self, m, header, kind, dst, tag, length=0):
        # src is set with the other fields, in the state (a field driven only by a constant becomes a
        # sensitivity-less ``always @*`` in the Verilog, which Verilator never runs: ALWNEVER)
        m.d.comb += [self.o.valid.eq(1), self.o.payload.first.eq(1), header.kind.eq(kind), header.dst.eq(dst),
                     header.src.eq(self._node), header.tag.eq(tag), header.length.eq(length)]
