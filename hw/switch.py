"""The NoP-Tree switch: wormhole routing by destination, dispatch multicast and in-network reduction."""

from __future__ import annotations

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from mozart.model.config import WaferConfig
from mozart.model.errors import ConfigError
from mozart.model.protocol import Protocol

from .link_fifo import LinkFifo
from .packet_mux import PacketMux
from .protocol import flit_layout, link_signature
from .reducer import Reducer
from .switch_input import SwitchInput

__all__ = ["Switch"]


class Switch(wiring.Component):
    """The switch of one group: its root port, ``C`` chiplet ports and its memory controller port.

    Microarchitecture (``docs/switch.md``): an input buffer per port (:class:`~mozart.hw.link_fifo.LinkFifo`,
    ``buffer_depth`` flits), a route decoder and fork per port (:class:`~mozart.hw.switch_input.SwitchInput`),
    one packet multiplexer per output (:class:`~mozart.hw.packet_mux.PacketMux`: round-robin, wormhole lock)
    and a reduction unit (:class:`~mozart.hw.reducer.Reducer`) fed by its own multiplexer over the chiplet
    ports, whose results join the up port's multiplexer. Everything after the input buffers is combinational,
    so the buffers' output registers are the only pipeline stage of a hop.

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
        Input buffer depth in flits (default ``cfg.hardware.buffer_depth``).
    reduction_entries : int, optional
        Reduction table size (default ``cfg.hardware.reduction_entries``).

    Members
    -------
    port_in : In(link_signature(cfg)).array(P)
        Flits into the switch; index = the topology's port number (0 up, 1..C chiplets, C+1 memory controller).
    port_out : Out(link_signature(cfg)).array(P)
        Flits out of the switch, same numbering. ``port_in[k].ready`` does not depend on anything combinationally;
        ``port_out[k].valid`` and ``payload`` come combinationally from the input buffers' output registers.

    Attributes
    ----------
    head_latency : int
        Cycles per hop for a head flit at zero load: from the clock edge that accepts it on ``port_in`` to the
        edge at which it can leave on ``port_out``. 2 (the buffer's RAM write and registered read); 1 with
        ``buffer_depth == 1``. A reduced result leaves this long after the *last* partial's head came in.
    flits_per_cycle : float
        Sustained flits per cycle on every output with non-conflicting traffic: 1.0 when ``buffer_depth >= 3``,
        0.5 below (the input buffer's own limit).
    reduction_tokens_per_cycle : float
        Tokens the reduction unit completes per cycle when every token has all ``C`` chiplets' partials:
        ``1 / (C * (partial_flits + 1))`` (it takes one partial flit per cycle). See
        :meth:`reduction_rate` for other counts.
    multicast_flits : int
        Cycles the up-port input is busy with one reducing dispatch to ``n`` chiplets:
        ``1 + n * route_flits + token_flits`` when the outputs are free (replicas go out in parallel).
    """

    def __init__(self, cfg, group: int = 0, *, buffer_depth: int | None = None,
                 reduction_entries: int | None = None):
        if not isinstance(cfg, WaferConfig):
            raise ConfigError(f"Switch cfg must be a WaferConfig, not {type(cfg).__name__}")
        proto = Protocol(cfg)
        topo = proto.topology
        if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group < topo.groups:
            raise ConfigError(f"Switch group must be in 0..{topo.groups - 1} (tree.groups = {topo.groups}), "
                              f"not {group!r}")
        depth = cfg.hardware.buffer_depth if buffer_depth is None else buffer_depth
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
            raise ConfigError(f"Switch buffer_depth must be a positive number of flits, not {depth!r}")
        entries = cfg.hardware.reduction_entries if reduction_entries is None else reduction_entries
        if isinstance(entries, bool) or not isinstance(entries, int) or entries < 1:
            raise ConfigError(f"Switch reduction_entries must be a positive integer, not {entries!r}")
        if topo.switch_ports < 3:
            raise ConfigError(f"Switch ports must be at least 3 (up, a chiplet, memory), not {topo.switch_ports}")
        if proto.header_bits > cfg.hardware.flit_bits:  # the config rejects this too; the switch relies on it
            raise ConfigError(f"hardware.flit_bits must hold the {proto.header_bits}-bit header, "
                              f"not {cfg.hardware.flit_bits!r}")
        self._cfg, self._group, self._proto = cfg, group, proto
        self._depth, self._entries = depth, entries
        P = topo.switch_ports
        super().__init__({"port_in": In(link_signature(cfg)).array(P),
                          "port_out": Out(link_signature(cfg)).array(P)})

    # -- documented performance (the performance model reads these) ---------------------------------------
    @property
    def group(self) -> int:
        return self._group

    @property
    def ports(self) -> int:
        return self._proto.topology.switch_ports

    @property
    def buffer_depth(self) -> int:
        return self._depth

    @property
    def reduction_entries(self) -> int:
        return self._entries

    @property
    def head_latency(self) -> int:
        return 1 if self._depth == 1 else 2

    @property
    def flits_per_cycle(self) -> float:
        return 1.0 if self._depth >= 3 else 0.5

    def reduction_rate(self, contributions: int) -> float:
        """Tokens reduced per cycle when each token has ``contributions`` partials."""
        return 1.0 / (contributions * (self._proto.partial_flits + 1))

    @property
    def reduction_tokens_per_cycle(self) -> float:
        return self.reduction_rate(self._proto.topology.chiplets_per_group)

    def multicast_flits(self, chiplets: int) -> int:
        """Flits the up-port input passes for a dispatch to ``chiplets`` chiplets (the header counted once)."""
        return 1 + chiplets * self._proto.route_flits + self._proto.token_flits

    # -- structure ------------------------------------------------------------------------------------
    def elaborate(self, platform):
        m = Module()
        cfg, topo = self._cfg, self._proto.topology
        P, C = topo.switch_ports, topo.chiplets_per_group
        reducer_index = P

        inputs = []
        for p in range(P):
            fifo = m.submodules[f"buffer{p}"] = LinkFifo(cfg, self._depth)
            unit = m.submodules[f"input{p}"] = SwitchInput(cfg, self._group, p)
            wiring.connect(m, wiring.flipped(self.port_in[p]), fifo.i)
            wiring.connect(m, fifo.o, unit.i)
            inputs.append(unit)

        m.submodules.reducer = reducer = Reducer(cfg, self._group, self._entries)
        up = inputs[topo.UP_PORT]
        m.d.comb += [
            up.alloc_free.eq(reducer.alloc_free),
            reducer.alloc.eq(up.alloc),
            reducer.alloc_tag.eq(up.alloc_tag),
            reducer.alloc_count.eq(up.alloc_count),
        ]

        # The reduction unit takes partials from the chiplet ports only.
        chiplet_inputs = inputs[1:1 + C]
        m.submodules.reduce_mux = reduce_mux = PacketMux(flit_layout(cfg), len(chiplet_inputs))
        for k, unit in enumerate(chiplet_inputs):
            wiring.connect(m, unit.o[reducer_index], reduce_mux.i[k])
        wiring.connect(m, reduce_mux.o, reducer.i)

        for out in range(P):
            sources = [unit.o[out] for unit in inputs]
            if out == topo.UP_PORT:
                sources.append(reducer.o)
            mux = m.submodules[f"output{out}"] = PacketMux(flit_layout(cfg), len(sources))
            for k, src in enumerate(sources):
                wiring.connect(m, src, mux.i[k])
            wiring.connect(m, mux.o, wiring.flipped(self.port_out[out]))
        return m
