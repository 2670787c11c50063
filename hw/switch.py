"""The NoP-Tree switch: wormhole routing by destination, dispatch multicast and in-network reduction."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mozart.model.blocks import SwitchContract
from mozart.model.protocol import Protocol

from .link_fifo import LinkFifo
from .packet_mux import PacketMux
from .protocol import flit_layout, link_signature
from .reducer import Reducer
from .switch_input import SwitchInput

__all__ = ["Switch", "input_queued_switch"]


class Switch(wiring.Component):
    """The switch of one group: its root port, ``C`` chiplet ports and its memory controller port.

    Microarchitecture (``docs/switch.md``): per input port a route decoder and fork
    (:class:`~mozart.hw.switch_input.SwitchInput`) that writes each packet into one of that input's *virtual
    output queues* (:class:`~mozart.hw.link_fifo.LinkFifo`, ``buffer_depth`` flits each; one per output, plus
    one for the reduction unit on chiplet ports), one packet multiplexer per output
    (:class:`~mozart.hw.packet_mux.PacketMux`: round-robin, wormhole lock) over the queues for it, and a
    reduction unit (:class:`~mozart.hw.reducer.Reducer`) behind its own multiplexer over the chiplet ports,
    whose results join the up port's multiplexer. The queues' output registers are the only pipeline stage of
    a hop. With ``voq=False`` each input has a single FIFO in front of its decoder instead (less area,
    head-of-line blocking).

    Behaviour (``docs/protocol.md``; the reference is :class:`mozart.model.switch_model.SwitchModel`):

    - DISPATCH for this switch arriving on the up port: one replica per destination chiplet;
      with ``reduce=1`` a reduction-table entry is opened first (the dispatch waits while the table is full).
    - COMBINE with ``reduce=1`` from a chiplet port: reduced; one COMBINE goes up per token.
    - Everything else: routed by ``dst`` (``Topology.switch_port_of``), unchanged.

    Parameters
    ----------
    cfg : WaferConfig
        Sizes everything: ``tree.chiplets_per_group`` (ports), ``hardware.flit_bits``,
        ``hardware.buffer_depth``, ``hardware.reduction_entries``, the header layout.
    group : int
        Which group's switch (its node id is ``1 + group``).
    buffer_depth : int, optional
        Depth of each input queue in flits (default ``cfg.hardware.buffer_depth``).
    reduction_entries : int, optional
        Reduction table size (default ``cfg.hardware.reduction_entries``).
    voq : bool
        Virtual output queues (default) or one FIFO per input.

    Members
    -------
    port_in : In(link_signature(cfg)).array(P)
        Flits into the switch; index = the topology's port number (0 up, 1..C chiplets, C+1 memory controller).
        With ``voq`` the decoder sits before the queues, so ``ready`` depends combinationally on ``valid`` and
        the head flit's header (a ready/valid-legal dependency); without, ``ready`` is registered.
    port_out : Out(link_signature(cfg)).array(P)
        Flits out of the switch, same numbering; ``valid`` and ``payload`` come combinationally from the
        queues' output registers through the round-robin multiplexer.

    Attributes
    ----------
    contract : SwitchContract
        Its sizes and numbers (:class:`mozart.model.blocks.SwitchContract`):

        - ``head_latency``: cycles per hop for a head flit at zero load, from the clock edge that accepts it on
          ``port_in`` to the edge at which it can leave on ``port_out``: 2 (the queue's RAM write and registered
          read); 1 with ``buffer_depth == 1``. A reduced result leaves this long after the *last* partial's head
          came in.
        - ``flits_per_cycle``: sustained flits per cycle on every output with non-conflicting traffic: 1.0 when
          ``buffer_depth >= 3``, 0.5 below (the queue's own limit).
        - ``reduction_tokens_per_cycle``: tokens the reduction unit completes per cycle when every token has all
          ``C`` chiplets' partials: ``1 / (C * (partial_flits + 1))`` (it takes one partial flit per cycle);
          ``reduction_rate(n)`` gives it for other counts.

    Uniform random traffic (bound 1 flit/cycle/port) saturates at 0.87-0.92 with virtual output queues when a
    queue holds about three packets (1-flit packets at depth 4, 5-flit packets at depth 16), at 0.68 with
    5-flit packets at depth 4, and at 0.65 with ``voq=False`` (Karol's head-of-line bound for 4 ports:
    0.655); ``bench/bench_switch.py`` measures it.
    """

    def __new__(cls, cfg, group: int = 0, *, buffer_depth: int | None = None,
                reduction_entries: int | None = None, voq: bool = True):
        SwitchContract(cfg, group, buffer_depth, reduction_entries, voq)   # rejects before a component exists
        return super().__new__(cls, src_loc_at=1)

    def __init__(self, cfg, group: int = 0, *, buffer_depth: int | None = None,
                 reduction_entries: int | None = None, voq: bool = True):
        self.contract = SwitchContract(cfg, group, buffer_depth, reduction_entries, voq)
        self._cfg, self._proto = cfg, Protocol(cfg)
        ports = self.contract.ports
        super().__init__({"port_in": In(link_signature(cfg)).array(ports),
                          "port_out": Out(link_signature(cfg)).array(ports)})

    @property
    def _chiplet_ports(self) -> range:
        """The switch ports of this group's chiplets (``Topology.switch_port_of`` numbers them)."""
        topo = self._proto.topology
        first = topo.switch_port_of(self.contract.group, topo.chiplet(self.contract.group, 0))
        return range(first, first + topo.chiplets_per_group)

    @property
    def _reducer_target(self) -> int:
        """The input units' output towards the reduction unit: the one after the switch's ports."""
        return self.contract.ports

    def _voq_targets(self, port: int) -> list[int]:
        """Outputs (and the reducer) that input ``port`` can send to: one queue each."""
        reducer = [self._reducer_target] if port in self._chiplet_ports else []
        return list(range(self.contract.ports)) + reducer

    # -- structure ------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        inputs, sources = self._inputs(m)
        reducer = self._reducer(m, inputs[self._proto.topology.UP_PORT], sources)
        self._outputs(m, sources, reducer)
        return m

    def _inputs(self, m):
        """Each port's input unit and its queues. Returns the units and, per input port, the stream it offers
        to each output (and to the reducer)."""
        # Each input's route decoder feeds one buffer per output (virtual output queues), so a packet waiting
        # for a busy output does not block the packets behind it that go elsewhere (no head-of-line blocking,
        # except when that one queue is full). With voq=False: one buffer per input, decoder after it.
        cfg, depth = self._cfg, self.contract.buffer_depth
        inputs, sources = [], []  # sources[port][target]: the stream input `port` offers to `target`
        for port in range(self.contract.ports):
            unit = m.submodules[f"input{port}"] = SwitchInput(cfg, self.contract.group, port)
            inputs.append(unit)
            if self.contract.voq:
                wiring.connect(m, wiring.flipped(self.port_in[port]), unit.i)
                queues = {}
                for target in self._voq_targets(port):
                    fifo = m.submodules[f"voq{port}_{target}"] = LinkFifo(cfg, depth)
                    wiring.connect(m, unit.o[target], fifo.i)
                    queues[target] = fifo.o
                sources.append(queues)
            else:
                fifo = m.submodules[f"buffer{port}"] = LinkFifo(cfg, depth)
                wiring.connect(m, wiring.flipped(self.port_in[port]), fifo.i)
                wiring.connect(m, fifo.o, unit.i)
                sources.append({target: unit.o[target] for target in range(self._reducer_target + 1)})
        return inputs, sources

    def _reducer(self, m, up_input, sources):
        """The reduction unit, its table allocated by the up port's input unit, behind its own multiplexer over
        the chiplet ports' partials."""
        m.submodules.reducer = reducer = Reducer(self._cfg, self.contract.group, self.contract.reduction_entries)
        m.d.comb += [
            up_input.alloc_free.eq(reducer.alloc_free),
            reducer.alloc.eq(up_input.alloc),
            reducer.alloc_tag.eq(up_input.alloc_tag),
            reducer.alloc_count.eq(up_input.alloc_count),
        ]
        chiplet_sources = [sources[port][self._reducer_target] for port in self._chiplet_ports]
        m.submodules.reduce_mux = reduce_mux = PacketMux(flit_layout(self._cfg), len(chiplet_sources))
        for index, source in enumerate(chiplet_sources):
            wiring.connect(m, source, reduce_mux.i[index])
        wiring.connect(m, reduce_mux.o, reducer.i)
        return reducer

    def _outputs(self, m, sources, reducer) -> None:
        """One packet multiplexer per output over the streams offered to it; the up port's also takes the
        reducer's results."""
        for output in range(self.contract.ports):
            offered = [sources[port][output] for port in range(self.contract.ports)]
            if output == self._proto.topology.UP_PORT:
                offered.append(reducer.o)
            mux = m.submodules[f"output{output}"] = PacketMux(flit_layout(self._cfg), len(offered))
            for index, source in enumerate(offered):
                wiring.connect(m, source, mux.i[index])
            wiring.connect(m, mux.o, wiring.flipped(self.port_out[output]))


def input_queued_switch(cfg, group: int = 0) -> Switch:
    """The switch with one FIFO per input instead of virtual output queues (``voq=False``): the benchmarks
    build it to show what head-of-line blocking costs."""
    return Switch(cfg, group, voq=False)
