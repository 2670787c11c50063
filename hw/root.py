"""The root node: the attention chiplet's stand-in at the top of the NoP-Tree, driven by a host stream."""

from __future__ import annotations

from amaranth import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from mozart.model.blocks.root import RootContract
from mozart.model.host import OP_BITS, HostOp
from mozart.model.protocol import COUNTER_BITS, Protocol, index_bits

from .link_fifo import LinkFifo
from .packet_mux import PacketMux
from .protocol import PacketKind, fields_layout, flit_layout, header_layout, link_signature, route_layout

__all__ = ["Root"]


def _named(m, value, name: str, shape=None) -> Signal:
    """``value`` in a signal of its own: a Python expression used several times would be emitted each time."""
    sig = Signal(shape if shape is not None else value.shape(), name=name)
    m.d.comb += sig.eq(value)
    return sig


def _elements(view, count: int):
    """A field of ``count`` elements as a list (a count-1 field is a plain value)."""
    return [view[i] for i in range(count)] if count > 1 else [view]


class Root(wiring.Component):
    """The root node: executes host commands in order, dispatches tokens, combines results, returns outputs.

    The host interface (``mozart.model.host``, ``docs/wafer.md``): ``host_in`` carries commands (TABLE, LOAD,
    WAIT_LOADED, WAIT_COMBINED, TOKEN), ``host_out`` the combined outputs in token order.

    - **TABLE** writes one entry of the expert table (``expert -> group, chiplet, local index``).
    - **LOAD** sends a header-only LOAD packet to the group's memory controller and clears that slot's LOADED
      bit; a LOADED packet from the chiplet sets it. **WAIT_LOADED** holds the command stream until it is set.
    - **TOKEN** looks up its experts in the table and sends, with ``dedup``, one DISPATCH per destination group
      (``reduce=1``, per-chiplet route words with the chiplet's local expert mask and gates), without it one
      DISPATCH per selected expert (``reduce=0``, one chiplet, one mask bit: the Baseline). The packets to
      different groups are written in parallel, each group's one after the other, into a per-group queue of
      ``hardware.root_queue_packets`` maximum-length dispatches in front of ``down[g]``, so a group whose switch is
      backed up
      does not stop the others until its queue is full. Its tag is the token's combine
      entry (``token``); a first dispatch waits until that entry is free, so tags in flight are unique.
    - **Combine**: every COMBINE arriving from a switch is added element-wise into the token's entry, in
      ``partial_bits + guard_bits`` (:attr:`HostInterface.guard_bits`) bits, so the sum is exact; the output
      is saturated once (:func:`mozart.model.golden.reduce_partials`). The root counts the results it expects
      per entry (one per group with ``dedup``, one per expert without) and per group; **WAIT_COMBINED** holds
      until the masked groups have no result outstanding.
    - **Return**: entries leave in ring order (token order) once their final dispatch was sent and every
      result arrived; each output is ``partial_flits`` flits on ``host_out``.

    Members
    -------
    host_in : In(link_signature(cfg))
        Host commands (always drained: a WAIT holds ``ready`` low, nothing else does for long).
    host_out : Out(link_signature(cfg))
        Outputs, one ``first``..``last`` frame of ``partial_flits`` flits per token, in token order.
    down : Out(link_signature(cfg)).array(G)
        To switch ``g``'s up port.
    up : In(link_signature(cfg)).array(G)
        From switch ``g``'s up port. Always ready: the root sinks everything (``docs/protocol.md``).
    busy : Out(1)
        A command, dispatch, result or output is outstanding.
    errors : Out(COUNTER_BITS)
        Packets the root did not expect (a kind other than COMBINE or LOADED) and unknown host ops.

    Parameters
    ----------
    cfg : WaferConfig
        Sizes everything; each group's output queue holds ``hardware.root_queue_packets`` maximum-length DISPATCH
        packets.

    Latency and throughput
    ----------------------
    A TOKEN takes ``1 + route_flits + token_flits`` host flits, then ``Protocol.dispatch_flits`` cycles to write
    its packets (the longest group's) into the queues, then one cycle back to the command state. A packet leaves
    on ``down[g]`` two cycles after it entered an empty queue (``contract.queue.latency``; ``.contract`` is a
    :class:`mozart.model.blocks.RootContract`). Results are
    absorbed one flit per cycle (one of the G up links at a time, round-robin by packet); an output leaves
    ``partial_flits`` cycles after its last result flit at the earliest.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.contract = RootContract(cfg)
        self.proto = Protocol(cfg)
        self.host = self.contract.host
        G = cfg.groups
        super().__init__({
            "host_in": In(link_signature(cfg)),
            "host_out": Out(link_signature(cfg)),
            "down": Out(link_signature(cfg)).array(G),
            "up": In(link_signature(cfg)).array(G),
            "busy": Out(1),
            "errors": Out(COUNTER_BITS),
        })

    # -- hardware ----------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        cfg, proto, host = self.cfg, self.proto, self.host
        topo = proto.topology
        G, C, S, E = cfg.groups, cfg.chiplets_per_group, cfg.hardware.sram_slots, cfg.moe.experts
        K, R, FB = cfg.moe.top_k, host.entries, cfg.hardware.flit_bits
        TF, PF, HRF = proto.token_flits, proto.partial_flits, host.route_flits
        PB, AW = cfg.numerics.partial_bits, cfg.numerics.partial_bits + host.guard_bits
        PER = FB // PB
        CNT = max(2, (K + 1).bit_length() + 1)   # per-entry result counters (mod 2**CNT; at most K in flight)

        args = {op: fields_layout(host.fields[op]) for op in HostOp}
        hin = self.host_in
        op = hin.payload.data[:OP_BITS]
        word = hin.payload.data[OP_BITS:]

        def args_of(kind):
            return args[kind](word[:args[kind].size])

        # ---- state ------------------------------------------------------------------------------------------
        tab_group = Array(Signal(host.group_bits, name=f"tab{e}_group") for e in range(E))
        tab_chip = Array(Signal(proto.chiplet_bits, name=f"tab{e}_chiplet") for e in range(E))
        tab_local = Array(Signal(proto.expert_bits, name=f"tab{e}_local") for e in range(E))
        loaded = Array(Signal(name=f"loaded{i}") for i in range(G * C * S))
        # Per-entry state in memories (one word per combine entry), each written by one side: the dispatch
        # (final, results expected so far), the receiver (results arrived) and, for the two flags, the side that
        # sets and the side that clears them. Comb read ports: a read sees the registered state, as a signal would.
        entry_dispatch = data.StructLayout({"final": 1, "sent": CNT})
        m.submodules.entry_dispatch = dispatch_mem = Memory(shape=entry_dispatch, depth=R, init=[])
        m.submodules.entry_recv = recv_mem = Memory(shape=CNT, depth=R, init=[])
        m.submodules.entry_occupied = occupied_mem = Memory(shape=1, depth=R, init=[])
        # fresh: no result yet, the accumulator holds the previous token's sum
        m.submodules.entry_fresh = fresh_mem = Memory(shape=1, depth=R, init=[])
        occupied_count = Signal(range(R + 1))
        outstanding = [Signal(16, name=f"outstanding{g}") for g in range(G)]
        dispatching, received, returned = Signal(), Signal(), Signal()
        errors = Signal(16)
        m.d.comb += self.errors.eq(errors)

        # the TOKEN being dispatched: header fields, routing, token flits
        t_hdr = Signal(args[HostOp.TOKEN])
        t_pay = Array(Signal(FB, name=f"tok_flit{i}") for i in range(HRF + TF))
        t_route = Signal(fields_layout(host.route_fields))
        m.d.comb += t_route.eq(Cat(*(t_pay[i] for i in range(HRF)))[:len(t_route.as_value())])
        valid = _elements(t_route.valid, K)
        gates = _elements(t_route.gates, K)
        ex = _elements(t_route.experts, K)
        # table lookups, each into its own signal (an Array read used many times is a mux each time)
        grp = [Signal(host.group_bits, name=f"tok_group{j}") for j in range(K)]
        chip = [Signal(proto.chiplet_bits, name=f"tok_chiplet{j}") for j in range(K)]
        loc = [Signal(proto.expert_bits, name=f"tok_local{j}") for j in range(K)]
        for j in range(K):
            m.d.comb += [grp[j].eq(tab_group[ex[j]]), chip[j].eq(tab_chip[ex[j]]), loc[j].eq(tab_local[ex[j]])]
        match = [[_named(m, valid[j] & (grp[j] == g), f"match{g}_{j}") for j in range(K)] for g in range(G)]

        # per-group results this TOKEN makes: dedup 1 if any expert there, else one per expert
        def popcount(bits):
            total = Const(0, index_bits(K + 1) + 1)
            for b in bits:
                total = total + b
            return total
        count_g = [_named(m, Mux(t_hdr.dedup, Cat(*match[g]).any(), popcount(match[g])), f"count{g}")
                   for g in range(G)]
        count_all = Const(0, 16)
        for g in range(G):
            count_all = count_all + count_g[g]

        # ---- the per-group packet emitters ------------------------------------------------------------------
        go = Signal()
        load_go = [Signal(name=f"load_go{g}") for g in range(G)]
        load_args = [Signal(args[HostOp.LOAD], name=f"load{g}") for g in range(G)]
        idle = [Signal(name=f"emit{g}_idle") for g in range(G)]
        for g in range(G):
            self._emitter(m, g, go, load_go[g], load_args[g], idle[g], t_hdr, t_pay, match[g], chip, loc, gates,
                          HRF)

        # ---- host command processor --------------------------------------------------------------------------
        t_cnt = Signal(range(HRF + TF + 1))
        # entry state read once each (an Array read inside an Array write would be a mux per element)
        cur_occupied, cur_final, cur_sent = Signal(), Signal(), Signal(CNT)
        dispatch_rd = dispatch_mem.read_port(domain="comb")
        occupied_rd = occupied_mem.read_port(domain="comb")
        m.d.comb += [dispatch_rd.addr.eq(t_hdr.token), occupied_rd.addr.eq(t_hdr.token),
                     cur_occupied.eq(occupied_rd.data), cur_final.eq(dispatch_rd.data.final),
                     cur_sent.eq(dispatch_rd.data.sent)]
        inc = [Signal(16, name=f"inc{g}") for g in range(G)]
        dec = [Signal(name=f"dec{g}") for g in range(G)]
        cmd_idle = Signal()
        with m.FSM(name="cmd"):
            with m.State("CMD"):
                m.d.comb += cmd_idle.eq(1)
                with m.If(hin.valid & hin.payload.first):
                    with m.Switch(op):
                        with m.Case(HostOp.TABLE):
                            a = args_of(HostOp.TABLE)
                            m.d.comb += hin.ready.eq(1)
                            m.d.sync += [tab_group[a.expert].eq(a.group), tab_chip[a.expert].eq(a.chiplet),
                                         tab_local[a.expert].eq(a.local)]
                        with m.Case(HostOp.LOAD):
                            a = args_of(HostOp.LOAD)
                            for g in range(G):
                                with m.If(a.group == g):
                                    m.d.comb += [hin.ready.eq(idle[g]), load_go[g].eq(idle[g])]
                                    with m.If(idle[g]):
                                        m.d.sync += load_args[g].eq(a)
                            with m.If(hin.ready):
                                m.d.sync += loaded[(a.group * C + a.chiplet) * S + a.slot].eq(0)
                        with m.Case(HostOp.WAIT_LOADED):
                            a = args_of(HostOp.WAIT_LOADED)
                            m.d.comb += hin.ready.eq(loaded[(a.group * C + a.chiplet) * S + a.slot])
                        with m.Case(HostOp.WAIT_COMBINED):
                            a = args_of(HostOp.WAIT_COMBINED)
                            mask = _elements(a.groups, G)
                            m.d.comb += hin.ready.eq(Cat(*((outstanding[g] == 0) | ~mask[g]
                                                           for g in range(G))).all())
                        with m.Case(HostOp.TOKEN):
                            m.d.comb += hin.ready.eq(1)
                            m.d.sync += [t_hdr.eq(args_of(HostOp.TOKEN)), t_cnt.eq(0)]
                            with m.If(~hin.payload.last):
                                m.next = "PAYLOAD"
                        with m.Default():
                            m.d.comb += hin.ready.eq(1)
                            m.d.sync += errors.eq(errors + 1)
                            with m.If(~hin.payload.last):
                                m.next = "DROP"
                with m.Elif(hin.valid):   # a stray flit outside a command
                    m.d.comb += hin.ready.eq(1)
                    m.d.sync += errors.eq(errors + 1)
            with m.State("PAYLOAD"):
                m.d.comb += hin.ready.eq(1)
                with m.If(hin.valid):
                    m.d.sync += [t_pay[t_cnt].eq(hin.payload.data), t_cnt.eq(t_cnt + 1)]
                    with m.If(hin.payload.last):
                        m.next = "DISPATCH"
            with m.State("DISPATCH"):
                ready = Cat(*idle).all() & (~t_hdr.first | ~cur_occupied)
                with m.If(ready):
                    m.d.comb += go.eq(1)
                    m.d.comb += dispatching.eq(1)
                    m.d.comb += [inc[g].eq(count_g[g]) for g in range(G)]
                    m.next = "EMIT"
            with m.State("EMIT"):
                with m.If(Cat(*idle).all()):
                    m.next = "CMD"
            with m.State("DROP"):
                m.d.comb += hin.ready.eq(1)
                with m.If(hin.valid & hin.payload.last):
                    m.next = "CMD"
        for g in range(G):
            m.d.sync += outstanding[g].eq(outstanding[g] + inc[g] - dec[g])

        # ---- results: one merged stream of the G up links, always drained -------------------------------------
        m.submodules.up_mux = mux = PacketMux(flit_layout(cfg), G)
        for g in range(G):
            wiring.connect(m, wiring.flipped(self.up[g]), mux.i[g])
        rx = mux.o
        m.d.comb += rx.ready.eq(1)
        rhdr = header_layout(cfg)(rx.payload.data)
        r_tag = Signal(cfg.hardware.tag_bits)
        r_group = Signal(range(G))
        r_cnt = Signal(range(PF + 1))
        cur_recv, cur_fresh = Signal(CNT), Signal()
        recv_rd = recv_mem.read_port(domain="comb")
        fresh_rd = fresh_mem.read_port(domain="comb")
        m.d.comb += [recv_rd.addr.eq(r_tag), fresh_rd.addr.eq(r_tag), cur_recv.eq(recv_rd.data),
                     cur_fresh.eq(fresh_rd.data)]
        src_group = Signal(range(G))
        for g in range(G):
            nodes = [topo.switch(g)] + [topo.chiplet(g, c) for c in range(C)]
            with m.If(Cat(*(rhdr.src == n for n in nodes)).any()):
                m.d.comb += src_group.eq(g)
        m.submodules.acc = acc = Memory(shape=PER * AW, depth=R * PF, init=[])
        acc_rd = acc.read_port(domain="comb")
        acc_wr = acc.write_port()
        out_rd = acc.read_port(domain="comb")
        with m.FSM(name="rx"):
            with m.State("HEAD"):
                with m.If(rx.valid & rx.payload.first):
                    with m.Switch(rhdr.kind):
                        with m.Case(PacketKind.COMBINE):
                            m.d.sync += [r_tag.eq(rhdr.tag), r_group.eq(src_group), r_cnt.eq(0)]
                            with m.If(~rx.payload.last):
                                m.next = "DATA"
                        with m.Case(PacketKind.LOADED):
                            l_idx = Signal(range(G * C * S))
                            m.d.comb += l_idx.eq((rhdr.src - topo.chiplet(0, 0)) * S + rhdr.meta.loaded.slot)
                            m.d.sync += loaded[l_idx].eq(1)
                            with m.If(~rx.payload.last):
                                m.next = "DROP"
                        with m.Default():
                            m.d.sync += errors.eq(errors + 1)
                            with m.If(~rx.payload.last):
                                m.next = "DROP"
            with m.State("DATA"):
                m.d.comb += [acc_rd.addr.eq(r_tag * PF + r_cnt), acc_wr.addr.eq(r_tag * PF + r_cnt)]
                old = data.ArrayLayout(AW, PER)(acc_rd.data)
                # The first result of an entry's token overwrites what its previous token left.
                new = Cat(*((Mux(cur_fresh, 0, old[i].as_signed())
                             + rx.payload.data[i * PB:(i + 1) * PB].as_signed())[:AW] for i in range(PER)))
                m.d.comb += acc_wr.data.eq(new)
                with m.If(rx.valid):
                    m.d.comb += acc_wr.en.eq(1)
                    m.d.sync += r_cnt.eq(r_cnt + 1)
                    with m.If(rx.payload.last):
                        m.d.comb += received.eq(1)
                        m.d.comb += [dec[g].eq(r_group == g) for g in range(G)]
                        m.next = "HEAD"
            with m.State("DROP"):
                with m.If(rx.valid & rx.payload.last):
                    m.next = "HEAD"

        # ---- outputs, in ring (token) order ------------------------------------------------------------------------
        ret = Signal(range(R))
        o_cnt = Signal(range(PF))
        hout = self.host_out
        lo, hi = -(1 << (PB - 1)), (1 << (PB - 1)) - 1
        m.d.comb += out_rd.addr.eq(ret * PF + o_cnt)
        elems = data.ArrayLayout(AW, PER)(out_rd.data)
        sat = [Mux(elems[i].as_signed() > hi, hi, Mux(elems[i].as_signed() < lo, lo, elems[i].as_signed()))[:PB]
               for i in range(PER)]
        out_idle = Signal()
        with m.FSM(name="out"):
            with m.State("WAIT"):
                m.d.comb += out_idle.eq(1)
                ret_ready = Signal()
                ret_dispatch = dispatch_mem.read_port(domain="comb")
                ret_recv = recv_mem.read_port(domain="comb")
                ret_occupied = occupied_mem.read_port(domain="comb")
                m.d.comb += [ret_dispatch.addr.eq(ret), ret_recv.addr.eq(ret), ret_occupied.addr.eq(ret),
                             ret_ready.eq(ret_occupied.data & ret_dispatch.data.final
                                          & (ret_dispatch.data.sent == ret_recv.data))]
                with m.If(ret_ready):
                    m.d.sync += o_cnt.eq(0)
                    m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [hout.valid.eq(1), hout.payload.data.eq(Cat(*sat)), hout.payload.first.eq(o_cnt == 0),
                             hout.payload.last.eq(o_cnt == PF - 1)]
                with m.If(hout.ready):
                    m.d.sync += o_cnt.eq(o_cnt + 1)
                    with m.If(o_cnt == PF - 1):
                        m.d.comb += returned.eq(1)
                        m.d.sync += ret.eq(Mux(ret == R - 1, 0, ret + 1))
                        m.next = "WAIT"

        # Per-entry writes. A first dispatch finds its entry free (returned), and results arrive only for an
        # occupied entry, so the two writers of a flag never write one entry in the same cycle.
        first_dispatch = dispatching & t_hdr.first
        dispatch_wr = dispatch_mem.write_port()
        m.d.comb += [dispatch_wr.addr.eq(t_hdr.token), dispatch_wr.en.eq(dispatching),
                     dispatch_wr.data.sent.eq(cur_sent + count_all[:CNT]),
                     dispatch_wr.data.final.eq(Mux(t_hdr.first, t_hdr.final, cur_final | t_hdr.final))]
        recv_wr = recv_mem.write_port()
        m.d.comb += [recv_wr.addr.eq(r_tag), recv_wr.en.eq(received), recv_wr.data.eq(cur_recv + 1)]
        for mem, set_addr, clear_addr, clear in ((occupied_mem, t_hdr.token, ret, returned),
                                                 (fresh_mem, t_hdr.token, r_tag, received)):
            set_wr, clear_wr = mem.write_port(), mem.write_port()
            m.d.comb += [set_wr.addr.eq(set_addr), set_wr.en.eq(first_dispatch), set_wr.data.eq(1),
                         clear_wr.addr.eq(clear_addr), clear_wr.en.eq(clear), clear_wr.data.eq(0)]
        m.d.sync += occupied_count.eq(occupied_count + first_dispatch - returned)

        any_occupied = occupied_count != 0
        any_outstanding = Cat(*(o != 0 for o in outstanding)).any()
        m.d.comb += self.busy.eq(~cmd_idle | ~Cat(*idle).all() | any_occupied | any_outstanding | ~out_idle)
        return m

    def _emitter(self, m, g, go, load_go, load_args, idle, t_hdr, t_pay, match, chip, loc, gates, HRF):
        """Group ``g``'s packet generator on ``down[g]``: the TOKEN's DISPATCH(es) to the group, or a LOAD."""
        cfg, proto = self.cfg, self.proto
        topo = proto.topology
        C, K, FB = cfg.chiplets_per_group, cfg.moe.top_k, cfg.hardware.flit_bits
        TF, RF, EL = proto.token_flits, proto.route_flits, cfg.experts_per_chiplet
        # A queue of a few packets per group: a group whose switch is backed up does not stop the others.
        fifo = m.submodules[f"queue{g}"] = LinkFifo(cfg, self.contract.queue.depth)
        wiring.connect(m, fifo.o, wiring.flipped(self.down[g]))
        out = fifo.i
        hdr = Signal(header_layout(cfg), name=f"emit{g}_hdr")
        j = Signal(range(K + 1), name=f"emit{g}_j")
        cnt = Signal(range(max(C * RF, TF) + 1), name=f"emit{g}_cnt")

        # the entries this packet carries: all of the group's (dedup) or entry j alone (one per expert)
        sel = [_named(m, Mux(t_hdr.dedup, match[i], match[i] & (j == i)), f"emit{g}_sel{i}") for i in range(K)]
        cmask = [_named(m, Cat(*(sel[i] & (chip[i] == c) for i in range(K))).any(), f"emit{g}_chiplet{c}")
                 for c in range(C)]
        words = []
        for c in range(C):
            rw = Signal(route_layout(cfg), name=f"emit{g}_route{c}")
            exp_bits = _elements(rw.experts, EL)
            gate_fields = _elements(rw.gates, EL)
            for local in range(EL):
                hit = [_named(m, sel[i] & (chip[i] == c) & (loc[i] == local), f"emit{g}_hit{c}_{local}_{i}")
                       for i in range(K)]
                m.d.comb += exp_bits[local].eq(Cat(*hit).any())
                gate = Const(0, cfg.numerics.gate_bits)
                for i in range(K):
                    gate = Mux(hit[i], gates[i], gate)
                m.d.comb += gate_fields[local].eq(gate)
            words.append(Cat(rw.as_value(), Const(0, RF * FB - len(rw.as_value()))))
        # the p-th destination chiplet (ascending index) and the number of destinations
        nbits = index_bits(C + 1) + 1
        n_dst = Const(0, nbits)
        pos = [Const(0, index_bits(C)) for _ in range(C)]
        for c in range(C):
            for p in range(C):
                pos[p] = _named(m, Mux(cmask[c] & (n_dst == p), c, pos[p]), f"emit{g}_pos{p}_{c}", index_bits(C))
            n_dst = _named(m, n_dst + cmask[c], f"emit{g}_n{c}", nbits)
        n_sig = Signal(nbits, name=f"emit{g}_n")
        m.d.comb += n_sig.eq(n_dst)
        route_flits = Signal(range(C * RF + 1), name=f"emit{g}_route_flits")
        m.d.comb += route_flits.eq(n_sig * RF)
        p_idx = Signal(range(C), name=f"emit{g}_p")
        f_idx = Signal(range(RF), name=f"emit{g}_f")
        route_word = Array(words)[Array(pos)[p_idx]]

        m.d.comb += out.payload.data.eq(hdr.as_value()[:proto.header_bits])
        with m.FSM(name=f"emit{g}"):
            with m.State("IDLE"):
                m.d.comb += idle.eq(1)
                with m.If(go):
                    m.d.sync += j.eq(0)
                    m.next = "SCAN"
                with m.Elif(load_go):
                    m.next = "LOAD"
            with m.State("SCAN"):
                with m.If(t_hdr.dedup):
                    with m.If((j == 0) & Cat(*match).any()):
                        m.next = "HEAD"
                    with m.Else():
                        m.next = "IDLE"
                with m.Elif(j == K):
                    m.next = "IDLE"
                with m.Else():
                    with m.Switch(j):
                        for i in range(K):
                            with m.Case(i):
                                with m.If(match[i]):
                                    m.next = "HEAD"
                                with m.Else():
                                    m.d.sync += j.eq(j + 1)
            with m.State("HEAD"):
                m.d.comb += [out.valid.eq(1), out.payload.first.eq(1),
                             hdr.kind.eq(PacketKind.DISPATCH), hdr.dst.eq(topo.switch(g)), hdr.src.eq(topo.root),
                             hdr.tag.eq(t_hdr.token), hdr.length.eq(route_flits + TF),
                             hdr.meta.dispatch.chiplets.eq(Cat(*cmask)), hdr.meta.dispatch.reduce.eq(t_hdr.dedup),
                             hdr.meta.dispatch.save.eq(t_hdr.save)]
                with m.If(out.ready):
                    m.d.sync += [cnt.eq(0), p_idx.eq(0), f_idx.eq(0)]
                    with m.If(route_flits != 0):
                        m.next = "ROUTE"
                    with m.Else():
                        m.next = "TOKEN"
            with m.State("ROUTE"):
                m.d.comb += [out.valid.eq(1), out.payload.data.eq(route_word.word_select(f_idx, FB))]
                with m.If(out.ready):
                    with m.If(f_idx == RF - 1):
                        m.d.sync += [f_idx.eq(0), p_idx.eq(p_idx + 1)]
                    with m.Else():
                        m.d.sync += f_idx.eq(f_idx + 1)
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == route_flits - 1):
                        m.d.sync += cnt.eq(0)
                        m.next = "TOKEN"
            with m.State("TOKEN"):
                m.d.comb += [out.valid.eq(1), out.payload.data.eq(t_pay[HRF + cnt]), out.payload.last.eq(cnt == TF - 1)]
                with m.If(out.ready):
                    m.d.sync += cnt.eq(cnt + 1)
                    with m.If(cnt == TF - 1):
                        m.d.sync += j.eq(Mux(t_hdr.dedup, K, j + 1))
                        m.next = "SCAN"
            with m.State("LOAD"):
                a = load_args
                m.d.comb += [out.valid.eq(1), out.payload.first.eq(1), out.payload.last.eq(1),
                             hdr.kind.eq(PacketKind.LOAD), hdr.dst.eq(topo.memctrl(g)), hdr.src.eq(topo.root),
                             hdr.tag.eq(0), hdr.length.eq(0), hdr.meta.load.addr.eq(a.addr),
                             hdr.meta.load.image_words.eq(proto.image_words), hdr.meta.load.chiplet.eq(a.chiplet),
                             hdr.meta.load.slot.eq(a.slot), hdr.meta.load.expert.eq(a.local)]
                with m.If(out.ready):
                    m.next = "IDLE"
