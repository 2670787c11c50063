"""The expert chiplet: a compute tile and its stacked weight SRAM on one down port of a switch."""

from __future__ import annotations

from amaranth import Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out, flipped

from mozart.model.blocks.chiplet import ChipletContract
from mozart.model.protocol import Protocol

from .chiplet_decoder import ChipletDecoder
from .chiplet_job_queue import ChipletJobQueue
from .chiplet_output import ChipletOutput
from .chiplet_restore import ChipletRestore
from .chiplet_weight_update import ChipletWeightUpdate
from .chiplet_token_receiver import ChipletTokenReceiver
from .chiplet_weight_loader import ChipletWeightLoader
from .chiplet_layouts import gradient_word_layout
from .expert_backward_engine import ExpertBackwardEngine
from .expert_engine import ExpertEngine
from .packet_mux import PacketMux
from .protocol import flit_layout, header_layout, link_signature

__all__ = ["ExpertChiplet"]


class ExpertChiplet(wiring.Component):
    """An expert chiplet: weight SRAM slots, an activation buffer, the forward :class:`ExpertEngine`, the
    backward engine, the restore and update units and the packet handling of its link, bit-exact with
    :func:`mozart.model.golden.chiplet_partial` (forward) and :mod:`mozart.model.golden_backward` (backward and
    update).

    Structure (one component per file, joined here by ``wiring.connect``)
    -------------------------------------------------------------------
    ``port_in`` -> :class:`~mozart.hw.chiplet_decoder.ChipletDecoder` (by packet kind) -> WEIGHT:
    :class:`~mozart.hw.chiplet_weight_loader.ChipletWeightLoader` (weight SRAM write port, slot table),
    DISPATCH: :class:`~mozart.hw.chiplet_token_receiver.ChipletTokenReceiver` (activation buffer write port)
    -> :class:`~mozart.hw.chiplet_job_queue.ChipletJobQueue` (token ring, one job per selected expert) ->
    :class:`~mozart.hw.expert_engine.ExpertEngine` (its sequencer and MAC datapath; reads both memories) ->
    :class:`~mozart.hw.chiplet_output.ChipletOutput` (LOADED, COMBINE, GATE_GRAD, MEM_WRITE, the packet mux's)
    -> ``port_out``. Backward tokens: the receiver, :class:`~mozart.hw.chiplet_restore.ChipletRestore` (MEM_READ
    of the saved ``z``, MEM_DATA into the restore buffer), the job queue (a job waits for its ``z``),
    :class:`~mozart.hw.expert_backward_engine.ExpertBackwardEngine` (gradient SRAM read-modify-write). UPDATE and
    MEM_ACK: :class:`~mozart.hw.chiplet_weight_update.ChipletWeightUpdate`. The memories live here; the weight
    SRAM's and activation buffer's read ports follow the engine that issues (``_jobs``, ``_read_ports``).

    What it does with each packet on ``port_in``
    ---------------------------------------------
    - **WEIGHT** (meta ``slot``, ``expert``, ``offset``, ``final``; from the group's memory controller): the
      payload flits are written into the slot at flit ``offset // words_per_flit``. The first header of a load
      marks the slot empty and names its new expert, and empties any other slot holding that expert (one copy
      of a local expert, the newest: the index names another expert in each layer); when the ``final``
      packet's last flit is written the slot holds the expert completely, and the chiplet sends **LOADED**
      (dst root, tag of the packet, meta slot and expert).
    - **DISPATCH** (header, one route word of ``route_flits`` flits, ``token_flits`` token flits): the token
      goes into the activation buffer (``token_slots`` entries) with its expert mask, gates, tag, ``reduce``,
      ``save`` and ``save_index``. Its selected local experts run in ascending order, each on the slot that
      holds it; the gate-weighted sum leaves as one **COMBINE** (dst root, same tag, ``reduce`` echoed, d_model signed
      ``partial_bits``). Tokens leave in arrival order. A mask with no expert gives an all-zero partial.
    - with ``save=1``, every selected expert's pre-activation ``z`` (the requantised ``W1 x``, before the
      activation; the backward pass restores it) also leaves as **MEM_WRITE** packets to ``memctrl(group)``
      (the token's tag, ack 0, at most ``max_burst_flits`` flits each) at
      :func:`mozart.model.golden.activation_addr` ``(cfg, index, save_index, expert)``, i.e.
      ``activation_base + ((save_index * chiplets_per_group + index) * experts_per_chiplet + expert) * entry_words``.
    - **DISPATCH** with ``backward=1`` (route word, the output gradient, the token): restore reads of each
      selected expert's saved ``z`` (held while a save is unsent), then the backward jobs; one **COMBINE** with
      the input-gradient partial and one **GATE_GRAD** (one ``dg`` per local expert) leave; the weight gradients
      add up in the gradient SRAM. **MEM_DATA** answers the restore reads (an unasked one is dropped).
    - **UPDATE** (slot, addr; waits while a token inside needs the slot's expert): the slot's weights are
      updated and its gradient cleared, the image is written back as **MEM_WRITE** s (the last with ``ack=1``),
      and after its **MEM_ACK** the chiplet sends **UPDATED** (dst root, the tag, slot, expert). No job starts on
      the slot meanwhile.
    - other kinds, and WEIGHT packets naming a slot that does not exist, are consumed and dropped.

    Interlocks (hold for every packet order; no combinational path from ``port_out`` to ``port_in``)
    -------------------------------------------------------------------------------------------------
    - A job starts only when a slot holds its expert completely (``valid``); a token waits for it inside.
    - ``pending[e]`` counts the accepted tokens that still need local expert ``e`` (from the last flit of
      the dispatch to the cycle the engine's last read of the expert's weights is issued). A WEIGHT header for
      a slot whose *valid* expert has ``pending > 0`` waits at the input, and so does one whose expert another
      valid slot holds with ``pending > 0``. Deadlock-free: those tokens are
      already inside, and they need only the engine and the output to finish.
    - A ``final`` WEIGHT waits while that slot's previous LOADED is not yet sent.
    - Output backpressure only delays the engine (partials and saved activations are held until sent); the
      input keeps taking weights while tokens wait.

    How the schedule releases a slot (the contract with the root)
    --------------------------------------------------------------
    The root dispatches a token to this chiplet only after it has received LOADED for every local expert
    the token selects here, and sends a LOAD for a slot only after it has received the COMBINE (the reduced
    result) of *every* token it dispatched that uses the slot's current expert. Under this contract tokens
    never wait for weights and WEIGHT packets never wait for tokens; the interlocks above only make a
    violation safe where it can be: a token whose expert is in no slot waits for its load, and a load into a
    slot still needed waits. Two orders remain fatal and are the root's to avoid: a token dispatched before
    its expert's load and stuck in front of it while the activation buffer is full, and a load that
    replaces an expert that a queued token still needs. Dispatch packets and weight packets take different
    paths through the switch, so "LOADED before dispatch" and "COMBINE before reload" are the only orders the
    root can rely on.

    Parameters
    ----------
    cfg : WaferConfig
    group, index : int
        Where the chiplet sits: its node id is ``Topology.chiplet(group, index)``; its saved activations go
        to ``memctrl(group)``. The activation buffer has ``hardware.token_slots`` entries (tokens of the current
        micro-batch held at once).

    Members
    -------
    port_in : In(link_signature(cfg))
        From the switch: DISPATCH replicas and WEIGHT packets.
    port_out : Out(link_signature(cfg))
        To the switch: COMBINE, LOADED and MEM_WRITE packets.
    mac_active : Out(1)
        High in every cycle in which the ``mac_lanes`` MACs work (utilisation measurements).

    Latency and throughput
    ----------------------
    ``L = mac_lanes``, ``n`` = selected local experts of a token (``.contract``, a
    :class:`mozart.model.blocks.ChipletContract`, has each as a member):

    - ``cycles_per_expert`` ``= 2 d_model d_ff / L + max(0, 4 - d_ff / L)``; MAC utilisation
      ``2 d_model d_ff / L / cycles_per_expert`` (1.0 when ``d_ff >= 4 L``).
    - ``cycles_per_token(n)`` = n * cycles_per_expert`` in steady state (1 when ``n == 0``), as long as
      the input delivers a dispatch (``1 + route_flits + token_flits`` flits) and the output takes a COMBINE
      (``1 + partial_flits``) and the saves in that time.
    - ``latency(n)``: first dispatch flit in to last COMBINE flit out on an idle chiplet:
      ``(1 + route_flits + token_flits) + n * cycles_per_expert + 6 + (1 + partial_flits)`` (``n = 0``: 4
      instead of ``n * cycles_per_expert + 6``).
    - weight loading uses its own SRAM write port: one flit per cycle, no compute stall.
    """

    def __new__(cls, cfg, group: int = 0, index: int = 0):
        ChipletContract(cfg, group, index)   # rejects before a component exists
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, cfg, group: int = 0, index: int = 0):
        self.contract = ChipletContract(cfg, group, index)
        self._cfg, self._proto = cfg, Protocol(cfg)
        self.group, self.index, self.node = group, index, self.contract.node
        self.token_slots = self.contract.token_slots
        super().__init__({"port_in": In(link_signature(cfg)), "port_out": Out(link_signature(cfg)),
                          "mac_active": Out(1)})

    def elaborate(self, platform):
        m = Module()
        cfg, proto, flit_bits = self._cfg, self._proto, self._cfg.hardware.flit_bits
        weight_flits = cfg.hardware.sram_slots * proto.image_flits
        token_flits = self.token_slots * self.contract.geo.entry_flits
        m.submodules.weight_sram = weight_sram = Memory(shape=flit_bits, depth=weight_flits, init=[])
        m.submodules.activation_buffer = activations = Memory(shape=flit_bits, depth=token_flits, init=[])
        m.submodules.decoder = decoder = ChipletDecoder(cfg)
        m.submodules.loader = loader = ChipletWeightLoader(cfg)
        m.submodules.receiver = receiver = ChipletTokenReceiver(cfg, self.token_slots)
        m.submodules.queue = queue = ChipletJobQueue(cfg, self.token_slots)
        m.submodules.engine = engine = ExpertEngine(cfg, token_slots=self.token_slots, weight_depth=weight_flits,
                                                    act_depth=token_flits)
        m.submodules.output = output = ChipletOutput(cfg, self.group, self.index, self.node)
        m.submodules.restore = restore = ChipletRestore(cfg, self.group, self.index, self.node, self.token_slots)
        m.submodules.restore_buffer = restore_buffer = Memory(shape=flit_bits, depth=restore.depth, init=[])
        m.submodules.backward = backward = ExpertBackwardEngine(
            cfg, token_slots=self.token_slots, restore_slots=self.token_slots * cfg.experts_per_chiplet,
            entry_flits=self.contract.geo.entry_flits, weight_depth=weight_flits, act_depth=token_flits,
            restore_depth=restore.depth)
        m.submodules.gradient_sram = gradients = Memory(shape=gradient_word_layout(cfg),
                                                        depth=backward.geo.grad_depth, init=[])

        wiring.connect(m, flipped(self.port_in), decoder.i)
        wiring.connect(m, decoder.weight, loader.i)
        wiring.connect(m, decoder.dispatch, receiver.i)
        wiring.connect(m, decoder.mem_data, restore.data)
        wiring.connect(m, restore.write, restore_buffer.write_port())
        m.submodules.packets = packets = PacketMux(flit_layout(cfg), 2)   # restore reads, the update's packets
        wiring.connect(m, restore.o, packets.i[0])
        wiring.connect(m, packets.o, output.packets)
        wiring.connect(m, loader.write, weight_sram.write_port())
        wiring.connect(m, receiver.write, activations.write_port())
        wiring.connect(m, queue.ring, receiver.ring)
        wiring.connect(m, receiver.token, queue.token)
        wiring.connect(m, queue.lookup, loader.lookup)
        wiring.connect(m, loader.loaded, output.loaded)
        wiring.connect(m, engine.partial, output.partial)
        wiring.connect(m, backward.partial, output.grad_partial)
        wiring.connect(m, backward.gate_grads, output.gate_grads)
        wiring.connect(m, engine.hidden, output.hidden)
        wiring.connect(m, output.o, flipped(self.port_out))
        m.d.comb += [
            loader.loaded_unsent.eq(output.loaded_unsent), loader.expert_busy.eq(queue.expert_busy),
            self.mac_active.eq(engine.mac_active | backward.mac_active),
            queue.restored.eq(restore.restored),
        ]
        self._hold_reads_behind_saves(m, output, engine)
        for side, unit in enumerate((engine, backward)):
            m.d.comb += [queue.done_expert[side].eq(unit.done_expert), queue.done_token[side].eq(unit.done_token),
                         queue.done_local[side].eq(unit.done_local)]
        self._jobs(m, queue, engine, backward)
        self._read_ports(m, engine, backward, weight_sram, activations, restore_buffer, gradients)
        self._restore_requests(m, receiver, queue, restore)
        self._update_unit(m, decoder, loader, weight_sram, gradients, packets.i[1])
        return m

    @staticmethod
    def _hold_reads_behind_saves(m, output, engine):
        """A restore read (a packet of ``output.packets``) waits while the engine has a save not yet sent: a token's
        backward may arrive as soon as its forward COMBINE is out, before its saves (docs/protocol.md)."""
        m.d.comb += output.hold_packets.eq(engine.save_pending)

    def _jobs(self, m, queue, forward, backward):
        """Each job to the engine of its kind; a job is taken only while the other engine is idle or in its last
        issue cycle (its ``job.ready``), so the two never issue in the same cycle and share the read ports."""
        job, experts = queue.job.payload, self._cfg.experts_per_chiplet
        m.d.comb += [
            forward.job.payload.eq(job),
            forward.job.valid.eq(queue.job.valid & ~job.backward & backward.job.ready),
            backward.job.valid.eq(queue.job.valid & job.backward & forward.job.ready),
            queue.job.ready.eq(Mux(job.backward, backward.job.ready & forward.job.ready,
                                   forward.job.ready & backward.job.ready)),
            backward.job.payload.restore.eq(job.tok * experts + job.expert),
        ]
        m.d.comb += [getattr(backward.job.payload, name).eq(getattr(job, name))
                     for name in ("tok", "wslot", "expert", "gate", "first", "last", "none", "tag", "reduce")]

    @staticmethod
    def _read_ports(m, forward, backward, weight_sram, activations, restore_buffer, gradients):
        """The weight SRAM's and activation buffer's read ports follow the engine that issues (the backward one
        in its issue cycles, else the forward one); the restore buffer and the gradient SRAM are the backward
        engine's."""
        issuing = backward.mac_active
        weight_read, token_read = weight_sram.read_port(), activations.read_port()
        restore_read, gradient_read, gradient_write = restore_buffer.read_port(), gradients.read_port(), \
            gradients.write_port()
        m.d.comb += [
            weight_read.addr.eq(Mux(issuing, backward.w_addr, forward.w_addr)),
            token_read.addr.eq(Mux(issuing, backward.x_addr, forward.x_addr)),
            forward.w_data.eq(weight_read.data), backward.w_data.eq(weight_read.data),
            forward.x_data.eq(token_read.data), backward.x_data.eq(token_read.data),
            restore_read.addr.eq(backward.z_addr), backward.z_data.eq(restore_read.data),
            gradient_read.addr.eq(backward.g_addr), backward.g_data.eq(gradient_read.data),
            gradient_write.addr.eq(backward.g_wr_addr), gradient_write.data.eq(backward.g_wr_data),
            gradient_write.en.eq(backward.g_wr_en),
        ]

    @staticmethod
    def _restore_requests(m, receiver, queue, restore):
        """A backward token, as it enters its ring entry, asks for its experts' saved pre-activations (the restore
        unit's queue has a place for every ring entry, so the request is always taken)."""
        token = receiver.token.payload
        m.d.comb += [restore.request.valid.eq(receiver.token.valid & token.backward),
                     restore.request.payload.entry.eq(queue.ring.entry),
                     restore.request.payload.experts.eq(token.experts),
                     restore.request.payload.save_index.eq(token.save_index),
                     restore.request.payload.tag.eq(token.tag)]

    def _update_unit(self, m, decoder, loader, weight_sram, gradients, packets):
        """The weight-update unit with its own ports on the weight and gradient SRAMs, its UPDATE and MEM_ACK from
        the decoder, its packets to the output. An UPDATE waits at the input while a token inside still needs the
        slot's expert; the slot counts as not found for new jobs until its UPDATED is out."""
        m.submodules.update = update = ChipletWeightUpdate(self._cfg, self.group, self.index, self.node)
        wiring.connect(m, update.o, packets)
        wiring.connect(m, update.slot_expert, loader.slot_expert)
        weight_read, weight_write = weight_sram.read_port(), weight_sram.write_port()
        gradient_read, gradient_write = gradients.read_port(), gradients.write_port()
        m.d.comb += [weight_read.addr.eq(update.w_addr), update.w_data.eq(weight_read.data),
                     weight_write.addr.eq(update.w_wr_addr), weight_write.data.eq(update.w_wr_data),
                     weight_write.en.eq(update.w_wr_en),
                     gradient_read.addr.eq(update.g_addr), update.g_data.eq(gradient_read.data),
                     gradient_write.addr.eq(update.g_wr_addr), gradient_write.data.eq(update.g_wr_data),
                     gradient_write.en.eq(update.g_wr_en)]
        header = header_layout(self._cfg)(decoder.update.payload.data).meta.update
        blocked = loader.slot_in_use.bit_select(header.slot, 1)
        m.d.comb += [update.command.valid.eq(decoder.update.valid & ~blocked),
                     decoder.update.ready.eq(update.command.ready & ~blocked),
                     update.command.payload.slot.eq(header.slot), update.command.payload.addr.eq(header.addr),
                     update.command.payload.tag.eq(header_layout(self._cfg)(decoder.update.payload.data).tag),
                     update.ack.valid.eq(decoder.mem_ack.valid), decoder.mem_ack.ready.eq(update.ack.ready)]
        updating = Signal(range(self._cfg.hardware.sram_slots))   # the slot of the command being done
        with m.If(update.command.valid & update.command.ready):
            m.d.sync += updating.eq(header.slot)
        m.d.comb += loader.held.eq(Mux(update.command.ready, 0, 1 << updating))
