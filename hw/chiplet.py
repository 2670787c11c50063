"""The expert chiplet: a compute tile and its stacked weight SRAM on one down port of a switch."""

from __future__ import annotations

import math

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mozart.model import golden
from mozart.model.blocks.chiplet import ChipletContract
from mozart.model.protocol import Protocol, index_bits

from .expert_engine import ExpertEngine
from .protocol import PacketKind, header_layout, link_signature

__all__ = ["ExpertChiplet"]



def _next(p, n: int):
    """Wrapping increment of a ring pointer over ``n`` entries (any ``n``)."""
    return Mux(p == n - 1, 0, p + 1)


def _lowest(bits: list) -> tuple:
    """(any, index of the lowest set bit) of a list of 1-bit values."""
    idx = Const(0, index_bits(len(bits)))
    for i in reversed(range(len(bits))):
        idx = Mux(bits[i], i, idx)
    return Cat(*bits).any(), idx


class ExpertChiplet(wiring.Component):
    """An expert chiplet: weight SRAM slots, an activation buffer, the :class:`ExpertEngine` and the
    packet handling of its link, bit-exact with :func:`mozart.model.golden.chiplet_partial`.

    What it does with each packet on ``port_in``
    ---------------------------------------------
    - **WEIGHT** (meta ``slot``, ``expert``, ``offset``, ``final``; from the group's memory controller): the
      payload flits are written into the slot at flit ``offset // words_per_flit``. The first header of a load
      marks the slot empty and names its new expert; when the ``final`` packet's last flit is written the
      slot holds the expert completely, and the chiplet sends **LOADED** (dst root, tag of the packet, meta
      slot and expert).
    - **DISPATCH** (header, one route word of ``route_flits`` flits, ``token_flits`` token flits): the token
      goes into the activation buffer (``token_slots`` entries) with its expert mask, gates, tag, ``reduce``
      and ``save``. Its selected local experts run in ascending order, each on the slot that holds it; the
      gate-weighted sum leaves as one **COMBINE** (dst root, same tag, ``reduce`` echoed, d_model signed
      ``partial_bits``). Tokens leave in arrival order. A mask with no expert gives an all-zero partial.
    - with ``save=1``, every selected expert's hidden vector ``act(W1 x)`` also leaves as **MEM_WRITE**
      packets to ``memctrl(group)`` (ack 0, at most ``max_burst_flits`` flits each) at
      :func:`mozart.model.golden.activation_addr` ``(cfg, index, tag, expert)``, i.e.
      ``activation_base + ((tag * chiplets_per_group + index) * experts_per_chiplet + expert) * entry_words``.
    - other kinds, and WEIGHT packets naming a slot that does not exist, are consumed and dropped.

    Interlocks (hold for every packet order; no combinational path from ``port_out`` to ``port_in``)
    -------------------------------------------------------------------------------------------------
    - A job starts only when a slot holds its expert completely (``valid``); a token waits for it inside.
    - ``pending[e]`` counts the accepted tokens that still need local expert ``e`` (from the last flit of
      the dispatch to the cycle the engine's last read of the expert's weights is issued). A WEIGHT header for
      a slot whose *valid* expert has ``pending > 0`` waits at the input. Deadlock-free: those tokens are
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

    # -- hardware ----------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        cfg, proto = self._cfg, self._proto
        hw, num = cfg.hardware, cfg.numerics
        S, E, N = hw.sram_slots, cfg.experts_per_chiplet, self.token_slots
        TF, IMG, FB = proto.token_flits, proto.image_flits, hw.flit_bits
        topo = proto.topology

        m.submodules.wmem = wmem = Memory(shape=FB, depth=S * IMG, init=[])
        m.submodules.amem = amem = Memory(shape=FB, depth=N * TF, init=[])
        w_wr, w_rd = wmem.write_port(), wmem.read_port()
        a_wr, a_rd = amem.write_port(), amem.read_port()
        m.submodules.engine = eng = ExpertEngine(cfg, token_slots=N, weight_depth=S * IMG, act_depth=N * TF)
        m.d.comb += [w_rd.addr.eq(eng.w_addr), eng.w_data.eq(w_rd.data),
                     a_rd.addr.eq(eng.x_addr), eng.x_data.eq(a_rd.data), self.mac_active.eq(eng.mac_active)]

        # ---- state shared by input, job generator and output ------------------------------------------------
        slot_valid = Array(Signal(name=f"slot{s}_valid") for s in range(S))
        slot_expert = Array(Signal(proto.expert_bits, name=f"slot{s}_expert") for s in range(S))
        lp = Array(Signal(name=f"slot{s}_loaded_pending") for s in range(S))      # LOADED to send
        lp_tag = Array(Signal(hw.tag_bits, name=f"slot{s}_loaded_tag") for s in range(S))
        lp_expert = Array(Signal(proto.expert_bits, name=f"slot{s}_loaded_expert") for s in range(S))
        pend_w = index_bits(N + 1) + 1
        pend = Array(Signal(pend_w, name=f"pending{e}") for e in range(E))
        tok_mask = Array(Signal(E, name=f"tok{t}_mask") for t in range(N))
        tok_gates = Array(Signal(E * num.gate_bits, name=f"tok{t}_gates") for t in range(N))
        tok_tag = Array(Signal(hw.tag_bits, name=f"tok{t}_tag") for t in range(N))
        tok_reduce = Array(Signal(name=f"tok{t}_reduce") for t in range(N))
        tok_save = Array(Signal(name=f"tok{t}_save") for t in range(N))
        wr = Signal(range(N))       # entry being received
        gen = Signal(range(N))      # entry the job generator works on
        n_tok = Signal(range(N + 1))   # entries committed and not yet released by the engine
        n_gen = Signal(range(N + 1))   # entries committed and not yet fully handed to the engine

        # ---- input parser -----------------------------------------------------------------------------------
        pin = self.port_in
        hdr = header_layout(cfg)(pin.payload.data)
        cur_slot = Signal(proto.slot_bits)
        cur_final = Signal()
        cur_tag = Signal(hw.tag_bits)
        cur_expert = Signal(proto.expert_bits)
        w_ptr = Signal(range(S * IMG + 1))
        w_end = Signal(range(S * IMG + 1))   # a packet running past its slot must not write the next one
        cnt = Signal(range(proto.max_payload_flits + 1))
        route = Signal(proto.route_flits * FB)
        commit = Signal()           # the last token flit is written this cycle
        d_reduce, d_save = Signal(), Signal()
        mask_bits = route[:E]

        wslot = hdr.meta.weight.slot
        slot_ok = wslot < S
        w_block = (slot_valid[wslot] & (pend[slot_expert[wslot]] != 0)) | (hdr.meta.weight.final & lp[wslot])
        wpf = proto.words_per_flit
        with m.FSM(name="rx"):
            with m.State("HEAD"):
                with m.If(pin.valid & pin.payload.first):
                    with m.Switch(hdr.kind):
                        with m.Case(PacketKind.WEIGHT):
                            m.d.comb += pin.ready.eq(~slot_ok | ~w_block)
                            with m.If(pin.ready & slot_ok):
                                m.d.sync += [slot_valid[wslot].eq(0), slot_expert[wslot].eq(hdr.meta.weight.expert),
                                             cur_slot.eq(wslot), cur_final.eq(hdr.meta.weight.final),
                                             cur_tag.eq(hdr.tag), cur_expert.eq(hdr.meta.weight.expert),
                                             w_ptr.eq(wslot * IMG + hdr.meta.weight.offset // wpf),
                                             w_end.eq(wslot * IMG + IMG)]
                                with m.If(pin.payload.last):
                                    with m.If(hdr.meta.weight.final):   # a header-only final packet
                                        m.d.sync += [slot_valid[wslot].eq(1), lp[wslot].eq(1),
                                                     lp_tag[wslot].eq(hdr.tag),
                                                     lp_expert[wslot].eq(hdr.meta.weight.expert)]
                                with m.Else():
                                    m.next = "WEIGHT"
                            with m.Elif(pin.ready & ~pin.payload.last):
                                m.next = "DROP"
                        with m.Case(PacketKind.DISPATCH):
                            m.d.comb += pin.ready.eq(n_tok < N)
                            with m.If(pin.ready):
                                m.d.sync += [cur_tag.eq(hdr.tag), d_reduce.eq(hdr.meta.dispatch.reduce),
                                             d_save.eq(hdr.meta.dispatch.save), cnt.eq(0)]
                                with m.If(~pin.payload.last):
                                    m.next = "DISPATCH"
                        with m.Default():
                            m.d.comb += pin.ready.eq(1)
                            with m.If(~pin.payload.last):
                                m.next = "DROP"
                with m.Elif(pin.valid):   # a stray payload flit outside a packet
                    m.d.comb += pin.ready.eq(1)
            with m.State("WEIGHT"):
                m.d.comb += [pin.ready.eq(1), w_wr.addr.eq(w_ptr), w_wr.data.eq(pin.payload.data),
                             w_wr.en.eq(pin.valid & (w_ptr < w_end))]
                with m.If(pin.valid):
                    m.d.sync += w_ptr.eq(w_ptr + 1)
                    with m.If(pin.payload.last):
                        m.next = "HEAD"
                        with m.If(cur_final):
                            m.d.sync += [slot_valid[cur_slot].eq(1), lp[cur_slot].eq(1),
                                         lp_tag[cur_slot].eq(cur_tag), lp_expert[cur_slot].eq(cur_expert)]
            with m.State("DISPATCH"):
                m.d.comb += [pin.ready.eq(1), a_wr.addr.eq(wr * TF + cnt - proto.route_flits),
                             a_wr.data.eq(pin.payload.data), a_wr.en.eq(pin.valid & (cnt >= proto.route_flits))]
                with m.If(pin.valid):
                    m.d.sync += cnt.eq(cnt + 1)
                    for i in range(proto.route_flits):
                        with m.If(cnt == i):
                            m.d.sync += route[i * FB:(i + 1) * FB].eq(pin.payload.data)
                    with m.If(pin.payload.last):
                        m.next = "HEAD"
                        m.d.comb += commit.eq(1)
            with m.State("DROP"):
                m.d.comb += pin.ready.eq(1)
                with m.If(pin.valid & pin.payload.last):
                    m.next = "HEAD"

        # A committed token: its route word is complete (route flits come before the last token flit).
        with m.If(commit):
            m.d.sync += [tok_mask[wr].eq(mask_bits), tok_gates[wr].eq(route[E:E + E * num.gate_bits]),
                         tok_tag[wr].eq(cur_tag), tok_reduce[wr].eq(d_reduce), tok_save[wr].eq(d_save),
                         wr.eq(_next(wr, N))]

        # ---- job generator: the head token's next selected expert, on the slot that holds it ----------------
        gen_done = Signal(E)
        remaining = tok_mask[gen] & ~gen_done
        _, e_sel = _lowest([remaining[e] for e in range(E)])
        hits = [slot_valid[s] & (slot_expert[s] == e_sel) for s in range(S)]
        resident, s_sel = _lowest(hits)
        none = tok_mask[gen] == 0
        is_last = (remaining & ~(Const(1, E) << e_sel)[:E]) == 0
        job = eng.job.payload
        m.d.comb += [
            eng.job.valid.eq((n_gen != 0) & (none | resident)),
            job.tok.eq(gen), job.wslot.eq(s_sel), job.expert.eq(e_sel),
            job.gate.eq(tok_gates[gen].word_select(e_sel, num.gate_bits)),
            job.first.eq(gen_done == 0), job.last.eq(none | is_last), job.none.eq(none),
            job.save.eq(tok_save[gen]), job.tag.eq(tok_tag[gen]), job.reduce.eq(tok_reduce[gen]),
        ]
        gen_step = eng.job.valid & eng.job.ready & job.last
        with m.If(eng.job.valid & eng.job.ready):
            with m.If(job.last):
                m.d.sync += [gen.eq(_next(gen, N)), gen_done.eq(0)]
            with m.Else():
                m.d.sync += gen_done.eq(gen_done | (Const(1, E) << e_sel)[:E])
        m.d.sync += n_gen.eq(n_gen + commit - gen_step)
        m.d.sync += n_tok.eq(n_tok + commit - eng.done_token)
        for e in range(E):
            m.d.sync += pend[e].eq(pend[e] + (commit & mask_bits[e]) - (eng.done_expert & (eng.done_local == e)))

        # ---- output: LOADED > COMBINE > MEM_WRITE, one whole packet at a time ------------------------------
        pout = self.port_out
        ohdr = Signal(header_layout(cfg))
        any_lp, lp_sel = _lowest([lp[s] for s in range(S)])
        lp_cur = Signal(proto.slot_bits)
        part, hid = eng.partial.payload, eng.hidden.payload
        o_cnt = Signal(range(max(proto.partial_flits, golden.hidden_flits(cfg)) + 1))
        s_pkt = Signal(range(math.ceil(golden.hidden_flits(cfg) / hw.max_burst_flits) + 1))
        HF, BURST = golden.hidden_flits(cfg), hw.max_burst_flits
        p_per, a_per = FB // num.partial_bits, FB // num.act_bits

        def flits_of(view, count, per):
            # elements packed like Protocol.pack_elements: element 0 in the low bits, never split
            return Array(Cat(*(view[j] for j in range(i * per, min(count, (i + 1) * per))))
                         for i in range(math.ceil(count / per)))

        comb_flits = flits_of(part.data, cfg.moe.d_model, p_per)
        save_flits = flits_of(hid.data, cfg.moe.d_ff, a_per)
        entry = (hid.tag * cfg.chiplets_per_group + self.index) * E + hid.expert
        s_addr = proto.activation_base + entry * golden.activation_entry_words(cfg) + s_pkt * (BURST * wpf)
        s_len = Mux(HF - s_pkt * BURST > BURST, BURST, HF - s_pkt * BURST)
        m.d.comb += pout.payload.data.eq(ohdr.as_value()[:proto.header_bits])   # pad bits: zero-extended

        def head(kind, dst, tag, length=0):
            # src is set with the other fields, in the state: a field driven only by a constant becomes a
            # sensitivity-less ``always @*`` in the Verilog, which Verilator never runs (ALWNEVER)
            return [pout.valid.eq(1), pout.payload.first.eq(1), ohdr.kind.eq(kind), ohdr.dst.eq(dst),
                    ohdr.src.eq(self.node), ohdr.tag.eq(tag), ohdr.length.eq(length)]

        with m.FSM(name="tx"):
            with m.State("IDLE"):
                with m.If(any_lp):
                    m.d.sync += lp_cur.eq(lp_sel)
                    m.next = "LOADED"
                with m.Elif(eng.partial.valid):
                    m.d.sync += o_cnt.eq(0)
                    m.next = "COMB_HDR"
                with m.Elif(eng.hidden.valid):
                    m.d.sync += [o_cnt.eq(0), s_pkt.eq(0)]
                    m.next = "SAVE_HDR"
            with m.State("LOADED"):
                m.d.comb += head(PacketKind.LOADED, topo.root, lp_tag[lp_cur])
                m.d.comb += [pout.payload.last.eq(1), ohdr.meta.loaded.slot.eq(lp_cur),
                             ohdr.meta.loaded.expert.eq(lp_expert[lp_cur])]
                with m.If(pout.ready):
                    m.d.sync += lp[lp_cur].eq(0)
                    m.next = "IDLE"
            with m.State("COMB_HDR"):
                m.d.comb += head(PacketKind.COMBINE, topo.root, part.tag, proto.partial_flits)
                m.d.comb += ohdr.meta.combine.reduce.eq(part.reduce)
                with m.If(pout.ready):
                    m.next = "COMB_DATA"
            with m.State("COMB_DATA"):
                last = o_cnt == proto.partial_flits - 1
                m.d.comb += [pout.valid.eq(1), pout.payload.last.eq(last),
                             pout.payload.data.eq(comb_flits[o_cnt])]
                with m.If(pout.ready):
                    m.d.sync += o_cnt.eq(o_cnt + 1)
                    with m.If(last):
                        m.d.comb += eng.partial.ready.eq(1)
                        m.next = "IDLE"
            with m.State("SAVE_HDR"):
                m.d.comb += head(PacketKind.MEM_WRITE, topo.memctrl(self.group), hid.tag, s_len)
                m.d.comb += [ohdr.meta.mem_write.addr.eq(s_addr), ohdr.meta.mem_write.words.eq(s_len * wpf),
                             ohdr.meta.mem_write.ack.eq(0)]
                with m.If(pout.ready):
                    m.next = "SAVE_DATA"
            with m.State("SAVE_DATA"):
                pkt_end = (o_cnt == HF - 1) | (o_cnt == (s_pkt + 1) * BURST - 1)
                m.d.comb += [pout.valid.eq(1), pout.payload.last.eq(pkt_end),
                             pout.payload.data.eq(save_flits[o_cnt])]
                with m.If(pout.ready):
                    m.d.sync += o_cnt.eq(o_cnt + 1)
                    with m.If(o_cnt == HF - 1):
                        m.d.comb += eng.hidden.ready.eq(1)
                        m.next = "IDLE"
                    with m.Elif(pkt_end):
                        m.d.sync += s_pkt.eq(s_pkt + 1)
                        m.next = "SAVE_HDR"
        return m
