"""The root node: the attention chiplet's stand-in at the top of the NoP-Tree, driven by a host stream."""

from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mozart.model.blocks.root import RootContract
from mozart.model.protocol import COUNTER_BITS

from .protocol import link_signature
from .root_combine import RootCombineTracker
from .root_credit import RootBackwardCredit
from .root_dispatcher import RootDispatcher
from .root_emitter import RootGroupEmitter
from .root_issue_window import RootIssueWindow
from .root_output import RootOutputStreamer
from .root_receiver import RootReceiver
from .root_sequencer import RootSequencer

__all__ = ["Root"]


class Root(wiring.Component):
    """The root node: reads host commands in order, dispatches tokens, combines results, returns outputs.

    The host interface (``mozart.model.host``, ``docs/wafer.md``): ``host_in`` carries commands (TABLE, LOAD,
    WAIT_LOADED, WAIT_COMBINED, TOKEN, UPDATE), ``host_out`` the combined outputs in token order, ``grads_out``
    the chiplets' GATE_GRADs (training).

    - **TABLE** writes one entry of the expert table (``expert -> group, chiplet, local index``).
    - **LOAD** sends a header-only LOAD packet to the group's memory controller and clears that slot's LOADED
      bit and its local expert's RESIDENT bit; a LOADED packet from the chiplet sets both (RESIDENT only if the
      slot is the one of the expert's latest LOAD or UPDATE: a local index names another expert in each layer, and
      an older answer from another slot must not make the new one look resident). **WAIT_LOADED** holds
      the command stream until the slot's bit is set. **UPDATE** does the same with a header-only UPDATE packet
      (tag 0, ``slot``, ``addr``) to ``chiplet(group, chiplet)``; its UPDATED packet sets both bits.
    - **TOKEN** goes into the issue window (``hardware.issue_window`` tokens), which dispatches the oldest stored
      token whose experts are all RESIDENT (and whose entry is free if it is a first dispatch): a token whose
      weights are in goes ahead of one that waits. TABLE, LOAD and WAIT_COMBINED wait for an empty window.
      A dispatched token is looked up in the table and sent, with ``dedup``, one DISPATCH per destination group
      (``reduce=1``, per-chiplet route words with the chiplet's local expert mask and gates), without it one
      DISPATCH per selected expert (``reduce=0``, one chiplet, one mask bit: the Baseline). The packets to
      different groups are written in parallel, each group's one after the other, into a per-group queue of
      ``hardware.root_queue_packets`` maximum-length dispatches in front of ``down[g]``, so a group whose switch is
      backed up does not stop the others until its queue is full. Its tag is the token's combine entry
      (``token``); a first dispatch waits until that entry is free, so tags in flight are unique.
    - **Backward TOKEN** (``backward``): its output gradient and token are stored with it and its DISPATCHes
      (``backward=1``, ``save=0``, its ``save_index``) carry both after the route words
      (:meth:`~mozart.model.protocol.Protocol.backward_dispatch_to_group`); combine and return as a forward
      token's (the output is the input gradient). It is dispatched only while every chiplet it goes to has room:
      the :class:`~mozart.hw.root_credit.RootBackwardCredit` counts per chiplet the backward replicas without their
      GATE_GRAD, at most ``hardware.token_slots`` (``docs/protocol.md``'s promise 1).
    - **GATE_GRAD** packets are forwarded verbatim on ``grads_out`` in arrival order and give their chiplet's
      credit back.
    - **Combine**: every COMBINE arriving from a switch is added element-wise into the token's entry, in
      ``partial_bits + guard_bits`` (:attr:`HostInterface.guard_bits`) bits, so the sum is exact; the output
      is saturated once (:func:`mozart.model.golden.reduce_partials`). The root counts the results it expects
      per entry (one per group with ``dedup``, one per expert without) and per group; **WAIT_COMBINED** holds
      until the masked groups have no result outstanding.
    - **Return**: entries leave in ring order (token order) once their final dispatch was sent and every
      result arrived; each output is ``partial_flits`` flits on ``host_out``.

    Structure (``docs/wafer.md`` section 1): the :class:`~mozart.hw.root_sequencer.RootSequencer` executes the
    commands and hands each TOKEN to the :class:`~mozart.hw.root_issue_window.RootIssueWindow`, which hands the
    oldest ready one to the :class:`~mozart.hw.root_dispatcher.RootDispatcher` (expert table), which starts one
    :class:`~mozart.hw.root_emitter.RootGroupEmitter` per group and books the dispatch on the
    :class:`~mozart.hw.root_combine.RootCombineTracker`; the :class:`~mozart.hw.root_receiver.RootReceiver`
    feeds it the COMBINE flits and the :class:`~mozart.hw.root_output.RootOutputStreamer` returns its entries.

    Members
    -------
    host_in : In(link_signature(cfg))
        Host commands (always drained: a WAIT holds ``ready`` low, nothing else does for long).
    host_out : Out(link_signature(cfg))
        Outputs, one ``first``..``last`` frame of ``partial_flits`` flits per token, in token order.
    down : Out(link_signature(cfg)).array(groups)
        To switch ``g``'s up port.
    up : In(link_signature(cfg)).array(groups)
        From switch ``g``'s up port. Always ready (the root sinks everything, ``docs/protocol.md``) except while
        a GATE_GRAD waits for ``grads_out``.
    grads_out : Out(link_signature(cfg))
        Every GATE_GRAD packet (header and payload), verbatim, in arrival order.
    busy : Out(1)
        A command, dispatch, result, output or backward replica's GATE_GRAD is outstanding.
    errors : Out(COUNTER_BITS)
        Packets the root did not expect (a kind other than COMBINE, LOADED, UPDATED or GATE_GRAD) and unknown host
        ops.

    Parameters
    ----------
    cfg : WaferConfig
        Sizes everything; each group's output queue holds ``hardware.root_queue_packets`` maximum-length DISPATCH
        packets.

    Latency and throughput
    ----------------------
    A TOKEN takes ``1 + route_flits + token_flits`` host flits (backward: ``2 token_flits``) and is stored in
    the window the cycle after; once it is the oldest ready token and the dispatcher is idle it takes
    ``Protocol.dispatch_flits`` cycles to write its packets (the longest group's) into the queues, and its
    position is free the cycle after. A packet leaves on ``down[g]`` two cycles after it entered an empty queue
    (``contract.queue.latency``; ``.contract`` is a :class:`mozart.model.blocks.RootContract`). Results are
    absorbed one flit per cycle (one of the up links at a time, round-robin by packet); an output leaves
    ``partial_flits`` cycles after its last result flit at the earliest. A GATE_GRAD's flits leave on
    ``grads_out`` in the cycle they arrive (one per cycle while it is ready). The components' own figures are in
    their docstrings.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.contract = RootContract(cfg)
        super().__init__({
            "host_in": In(link_signature(cfg)),
            "host_out": Out(link_signature(cfg)),
            "down": Out(link_signature(cfg)).array(cfg.groups),
            "up": In(link_signature(cfg)).array(cfg.groups),
            "grads_out": Out(link_signature(cfg)),
            "busy": Out(1),
            "errors": Out(COUNTER_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        contract = self.contract
        m.submodules.sequencer = sequencer = RootSequencer(contract)
        m.submodules.window = window = RootIssueWindow(contract)
        m.submodules.dispatcher = dispatcher = RootDispatcher(contract)
        m.submodules.receiver = receiver = RootReceiver(contract)
        m.submodules.combine = combine = RootCombineTracker(contract)
        m.submodules.output = output = RootOutputStreamer(contract)
        m.submodules.credit = credit = RootBackwardCredit(contract)
        emitters = [RootGroupEmitter(contract, g) for g in range(self.cfg.groups)]

        wiring.connect(m, wiring.flipped(self.host_in), sequencer.host_in)
        wiring.connect(m, sequencer.table, dispatcher.table)
        wiring.connect(m, sequencer.token, window.token_in)
        wiring.connect(m, sequencer.evict, window.evict)
        wiring.connect(m, window.needs, dispatcher.needs)
        wiring.connect(m, window.token, dispatcher.token)
        for position, probe in enumerate(window.entry):
            wiring.connect(m, probe, combine.entry[position])
        wiring.connect(m, dispatcher.issued, combine.issued)
        wiring.connect(m, receiver.results, combine.results)
        wiring.connect(m, receiver.loaded, sequencer.loaded)
        wiring.connect(m, window.spend, credit.spent)
        wiring.connect(m, receiver.answered, credit.answered)
        wiring.connect(m, receiver.grads_out, wiring.flipped(self.grads_out))
        m.d.comb += window.credit.eq(credit.in_flight)
        m.d.comb += [window.loaded.valid.eq(receiver.loaded.valid),
                     window.loaded.payload.eq(receiver.loaded.payload)]
        wiring.connect(m, output.release, combine.release)
        wiring.connect(m, output.host_out, wiring.flipped(self.host_out))
        for g, emitter in enumerate(emitters):
            m.submodules[f"emitter{g}"] = emitter
            m.d.comb += [emitter.token.eq(window.token.payload), emitter.start.eq(dispatcher.start),
                         emitter.experts.eq(dispatcher.experts[g])]
            wiring.connect(m, sequencer.load[g], emitter.load)
            wiring.connect(m, emitter.down, wiring.flipped(self.down[g]))
            wiring.connect(m, wiring.flipped(self.up[g]), receiver.up[g])
        emitters_idle = Cat(*(emitter.idle for emitter in emitters))
        m.d.comb += [sequencer.groups_drained.eq(combine.groups_drained), sequencer.window_empty.eq(window.empty),
                     dispatcher.emitters_idle.eq(emitters_idle)]

        errors = Signal.like(self.errors)
        with m.If(sequencer.error | receiver.error):
            m.d.sync += errors.eq(errors + 1)
        m.d.comb += [self.errors.eq(errors),
                     self.busy.eq(~sequencer.idle | ~window.empty | ~emitters_idle.all() | ~combine.idle
                                  | ~output.idle | ~credit.idle)]
        return m
