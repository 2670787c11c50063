"""Flit stream drivers and monitors for cocotb, with seeded random idle cycles and backpressure.

Port naming (Amaranth 0.5 ``verilog.convert`` of a ``wiring.Component``)
-------------------------------------------------------------------------
Every signature member becomes Verilog ports named by its path joined with ``__``:

- ``i: In(link_signature(cfg))``            -> ``i__valid`` (in), ``i__ready`` (out), ``i__payload`` (in)
- ``o: Out(link_signature(cfg))``           -> ``o__valid`` (out), ``o__ready`` (in), ``o__payload`` (out)
- ``down: In(link_signature(cfg)).array(4)`` -> ``down__0__valid`` ... ``down__3__payload``
- ``x: Out(sig).array(2, 3)``               -> ``x__1__2__valid`` (one index per dimension)
- the clock and reset of the ``sync`` domain -> ``clk`` and ``rst`` (active high)

A struct payload (``data.StructLayout``) is *one* flat port, its fields packed LSB first in layout order: for a
flit, ``payload = data | first << flit_bits | last << (flit_bits + 1)`` (``Protocol.flit_fields``). Ports are
kept even when unused. So the prefix a driver or monitor takes is the member path: ``"i"``, ``"down__2"``.

Timing discipline
-----------------
Everything is driven right after a rising clock edge and sampled in the ``ReadOnly`` phase of the same cycle, so
a transfer is counted exactly when ``valid`` and ``ready`` are both high at the next edge, whatever order
the simulator runs processes in. A driver never drops ``valid`` or changes the payload before the transfer
(the AXI-Stream rule, so a block may rely on it); random idle cycles only go *between* flits. Create drivers
and monitors and send after reset (:func:`mozart.tb.env.clock_and_reset`): a port steps from the first edge
after it starts.

Classes
-------
:class:`ClockLoop`      the one cocotb task per clock that steps all started drivers and monitors.
:class:`StreamDriver`   drives ``valid``/``payload`` of a DUT input port from a queue of :class:`Flit` s.
:class:`StreamMonitor`  drives ``ready`` of a DUT output port (random backpressure) and collects its flits.
:class:`PacketDriver`   sends :class:`Packet` s, encoded with :class:`~mozart.model.protocol.Protocol`.
:class:`PacketMonitor`  reassembles packets, checks the ``first``/``last`` framing and the header, and hands
                        each packet to a callback (typically ``scoreboard.observe``).
"""

from __future__ import annotations

import collections
from typing import Any, Callable, Iterable

import numpy as np

import cocotb
from cocotb.triggers import Event, ReadOnly, RisingEdge

from mozart.model.errors import ProtocolError
from mozart.model.protocol import Flit, Packet, Protocol

from .env import rng as seeded_rng

__all__ = ["port_signals", "FlitCodec", "ClockLoop", "StreamDriver", "StreamMonitor", "PacketDriver", "PacketMonitor",
           "random_packet",
           "format_flit"]


def port_signals(dut, prefix: str) -> tuple[Any, Any, Any]:
    """The ``(valid, ready, payload)`` handles of stream port ``prefix`` (e.g. ``"down__1"``).

    A wrong prefix fails with the stream ports the DUT does have.
    """
    handles = []
    for suffix in ("valid", "ready", "payload"):
        name = f"{prefix}__{suffix}"
        try:
            handles.append(getattr(dut, name))
        except AttributeError:
            ports = sorted({n.rsplit("__", 1)[0] for n in _dut_names(dut) if n.endswith("__valid")})
            raise AttributeError(f"stream port prefix must name a port of {dut._name}, not {prefix!r} "
                                 f"(no signal {name}); its stream ports are: {', '.join(ports) or 'none'}") from None
    return tuple(handles)


def _dut_names(dut) -> list[str]:
    try:
        return [h._name for h in dut]
    except Exception:  # noqa: BLE001 (iteration is best effort, only for the error message)
        return []


def format_flit(flit: Flit, flit_bits: int) -> str:
    digits = (flit_bits + 3) // 4
    return f"Flit(data=0x{flit.data:0{digits}x}, first={int(flit.first)}, last={int(flit.last)})"


class FlitCodec:
    """Packs a :class:`Flit` into the flat ``payload`` port value and back, using ``Protocol.flit_fields``."""

    def __init__(self, protocol: Protocol):
        offsets, offset = {}, 0
        for f in protocol.flit_fields:
            offsets[f.name] = (offset, f.bits)
            offset += f.bits
        self.flit_bits = protocol.flit_bits
        self.width = offset
        self._data_mask = (1 << offsets["data"][1]) - 1
        self._first = offsets["first"][0]
        self._last = offsets["last"][0]

    def pack(self, flit: Flit) -> int:
        if not 0 <= flit.data <= self._data_mask:
            raise ProtocolError(f"flit data must fit {self.flit_bits} bits, not 0x{flit.data:x}")
        return flit.data | (int(flit.first) << self._first) | (int(flit.last) << self._last)

    def unpack(self, word: int) -> Flit:
        return Flit(word & self._data_mask, bool((word >> self._first) & 1), bool((word >> self._last) & 1))


class _Coin:
    """Seeded biased coin flips, drawn in blocks (one numpy call per 4096 cycles, not per cycle)."""

    def __init__(self, rng: np.random.Generator, probability: float):
        self.rng = rng
        self.probability = probability
        self._block: list[bool] = []

    @property
    def probability(self) -> float:
        return self._p

    @probability.setter
    def probability(self, p: float) -> None:
        if not 0.0 <= p < 1.0:
            raise ValueError(f"probability must be in [0, 1), not {p!r}")
        self._p = float(p)
        self._block = []

    def __call__(self) -> bool:
        if self._p == 0.0:
            return False
        if not self._block:
            self._block = (self.rng.random(4096) < self._p).tolist()
        return self._block.pop()


def _protocol(cfg_or_protocol) -> Protocol:
    return cfg_or_protocol if isinstance(cfg_or_protocol, Protocol) else Protocol(cfg_or_protocol)


class ClockLoop:
    """One cocotb task per clock that steps every started port: ``_drive()`` right after the rising edge, then
    ``_sample()`` in the ``ReadOnly`` phase.

    Two trigger waits per cycle in total, however many ports a testbench has (a task per port would cost two
    each, and task switches are most of a cocotb testbench's time). An exception from a port's step (a
    monitor's framing check, a scoreboard mismatch in a callback) ends the task and so fails the test.
    """

    _loops: dict[int, "ClockLoop"] = {}

    def __init__(self, clock):
        self.clock = clock
        self.cycle = 0  #: rising edges seen since the loop started
        self._ports: list[_Port] = []
        self._task = None

    @classmethod
    def of(cls, clock) -> "ClockLoop":
        loop = cls._loops.get(id(clock))
        if loop is None or loop.clock is not clock:
            loop = cls._loops[id(clock)] = cls(clock)
        return loop

    def add(self, port: "_Port") -> None:
        if self._task is None or self._task.done():
            # a new test (cocotb cancels a test's tasks when it ends): forget the last test's ports
            self._ports = []
            self.cycle = 0
            self._task = cocotb.start_soon(self._run())
        if port not in self._ports:
            self._ports = [*self._ports, port]  # a new list: the running loop iterates over the old one
        port._loop_start = self.cycle

    def remove(self, port: "_Port") -> None:
        self._ports = [p for p in self._ports if p is not port]

    def running(self, port: "_Port") -> bool:
        return self._task is not None and not self._task.done() and port in self._ports

    async def _run(self) -> None:
        edge, read_only = RisingEdge(self.clock), ReadOnly()
        while True:
            await edge
            self.cycle += 1
            for port in self._ports:
                port._drive()
            await read_only
            for port in self._ports:
                port._sample()


class _Port:
    """What drivers and monitors share: handles, clock, counters, and a name for messages."""

    kind = "port"

    def __init__(self, dut, prefix: str, protocol, *, clock=None, rng=None, name=None):
        self.dut = dut
        self.prefix = prefix
        self.name = name or prefix
        self.protocol = _protocol(protocol)
        self.codec = FlitCodec(self.protocol)
        self.valid, self.ready, self.payload = port_signals(dut, prefix)
        self.clock = clock if clock is not None else dut.clk
        self.rng = rng if rng is not None else seeded_rng(self.kind, prefix)
        self.transfers = 0            #: flits moved so far (the watchdog watches this)
        self.last_transfer_cycle = -1  #: :attr:`cycle` at the last transfer
        self._loop = ClockLoop.of(self.clock)
        self._loop_start = 0

    @property
    def cycle(self) -> int:
        """Cycles since this port started."""
        return self._loop.cycle - self._loop_start

    def start(self) -> "_Port":
        """Start driving/sampling from the next clock edge (idempotent); returns ``self``."""
        if not self._loop.running(self):
            self._loop.add(self)
        return self

    def stop(self) -> None:
        self._loop.remove(self)

    def _bit(self, handle) -> str:
        try:
            return str(handle.value)
        except Exception:  # noqa: BLE001
            return "?"

    def describe(self) -> str:
        """One line for watchdog messages: name, handshake state, counts."""
        return (f"{self.name} ({self.kind}: valid={self._bit(self.valid)} ready={self._bit(self.ready)}, "
                f"{self.transfers} flits moved, last at cycle {self.last_transfer_cycle})")

    def _drive(self) -> None:
        raise NotImplementedError

    def _sample(self) -> None:
        raise NotImplementedError


class StreamDriver(_Port):
    """Drives a DUT input stream port (``valid``/``payload``) from a queue of flits.

    Parameters
    ----------
    dut : HierarchyObject
        The cocotb top handle.
    prefix : str
        The port's member path, e.g. ``"i"`` or ``"down__0"`` (see the module doc).
    protocol : Protocol or WaferConfig
        Gives the flit layout.
    idle : float
        Probability of an idle cycle before each flit, in [0, 1).
    clock, rng, name
        Default: ``dut.clk``; a Generator seeded by the run's seed and the prefix; the prefix.
    """

    kind = "driver"

    def __init__(self, dut, prefix: str, protocol, *, idle: float = 0.0, clock=None, rng=None, name=None):
        super().__init__(dut, prefix, protocol, clock=clock, rng=rng, name=name)
        self._coin = _Coin(self.rng, idle)
        self._queue: collections.deque[Flit] = collections.deque()
        self._current: Flit | None = None
        self._driving = False
        self._empty = Event()
        self._empty.set()
        self.on_sent: list[Callable[[Flit], None]] = []  #: called with each flit as it transfers
        self.valid.value = 0

    @property
    def idle(self) -> float:
        return self._coin.probability

    @idle.setter
    def idle(self, p: float) -> None:
        self._coin.probability = p

    @property
    def pending(self) -> int:
        """Flits queued or on the port, not yet accepted by the DUT."""
        return len(self._queue) + (self._current is not None)

    def send(self, flits: Flit | Iterable[Flit]) -> None:
        """Queue flits and start the driver (returns at once; :meth:`wait_sent` waits for them)."""
        flits = [flits] if isinstance(flits, Flit) else list(flits)
        for f in flits:
            self.codec.pack(f)  # check the width now, where the caller can see the mistake
        self._queue.extend(flits)
        if flits:
            self._empty.clear()
        self.start()

    async def wait_sent(self) -> None:
        """Wait until every queued flit has transferred."""
        if self.pending:
            await self._empty.wait()

    def _drive(self) -> None:
        if self._current is not None:
            return  # hold valid and payload until the transfer
        if self._queue and not self._coin():
            self._current = self._queue.popleft()
            self.payload.value = self.codec.pack(self._current)
            if not self._driving:
                self.valid.value = 1
                self._driving = True
        elif self._driving:
            self.valid.value = 0
            self._driving = False

    def _sample(self) -> None:
        if self._current is not None and self.ready.value:
            flit, self._current = self._current, None
            self.transfers += 1
            self.last_transfer_cycle = self.cycle
            if not self._queue:
                self._empty.set()
            for callback in self.on_sent:
                callback(flit)


class StreamMonitor(_Port):
    """Drives ``ready`` of a DUT output stream port with random backpressure and collects its flits.

    Parameters
    ----------
    backpressure : float
        Probability that ``ready`` is low in a cycle, in [0, 1).
    callback : callable, optional
        Called with each :class:`Flit` as it transfers.
    drive_ready : bool
        ``False`` to only watch a port whose ``ready`` something else drives.
    keep : bool
        Keep every flit in :attr:`flits` (turn off for long soaks).

    Other parameters as for :class:`StreamDriver`.
    """

    kind = "monitor"

    def __init__(self, dut, prefix: str, protocol, *, backpressure: float = 0.0, callback=None,
                 drive_ready: bool = True, keep: bool = True, clock=None, rng=None, name=None):
        super().__init__(dut, prefix, protocol, clock=clock, rng=rng, name=name)
        self._coin = _Coin(self.rng, backpressure)
        self.callbacks: list[Callable[[Flit], None]] = [callback] if callback else []
        self.drive_ready = drive_ready
        self.keep = keep
        self.flits: list[Flit] = []
        self._ready_now = False
        if drive_ready:
            self.ready.value = 0

    @property
    def backpressure(self) -> float:
        return self._coin.probability

    @backpressure.setter
    def backpressure(self, p: float) -> None:
        self._coin.probability = p

    def stop(self) -> None:
        super().stop()
        if self.drive_ready:
            self.ready.value = 0  # a stopped monitor takes nothing
            self._ready_now = False

    def _drive(self) -> None:
        if self.drive_ready:
            ready = not self._coin()
            if ready is not self._ready_now:
                self.ready.value = int(ready)
                self._ready_now = ready

    def _sample(self) -> None:
        if self.valid.value and (self._ready_now if self.drive_ready else self.ready.value):
            flit = self.codec.unpack(self.payload.value.to_unsigned())
            self.transfers += 1
            self.last_transfer_cycle = self.cycle
            if self.keep:
                self.flits.append(flit)
            for callback in self.callbacks:
                callback(flit)


class PacketDriver:
    """Sends packets on a DUT input port: :meth:`Protocol.encode` then a :class:`StreamDriver`.

    Takes the :class:`StreamDriver` parameters; ``driver`` is the underlying flit driver.
    """

    def __init__(self, dut, prefix: str, protocol, **kwargs):
        self.driver = StreamDriver(dut, prefix, protocol, **kwargs)
        self.protocol = self.driver.protocol
        self.name = self.driver.name
        self.packets_sent = 0
        self.driver.on_sent.append(self._count)

    def _count(self, flit: Flit) -> None:
        if flit.last:
            self.packets_sent += 1

    @property
    def pending(self) -> int:
        """Flits not yet accepted."""
        return self.driver.pending

    @property
    def transfers(self) -> int:
        return self.driver.transfers

    def describe(self) -> str:
        return self.driver.describe()

    def send(self, packet: Packet) -> None:
        self.driver.send(self.protocol.encode(packet))

    async def wait_sent(self) -> None:
        await self.driver.wait_sent()

    def start(self):
        return self.driver.start()

    def stop(self) -> None:
        self.driver.stop()


class PacketMonitor:
    """Receives packets on a DUT output port, checking framing and header, and passes each to ``callback``.

    A flit with ``first=1`` inside a packet, a flit with ``first=0`` outside one, or a header whose ``length``
    or ``kind`` is wrong fails the test with an ``AssertionError`` that names the port, the flit's index on the
    port and the flit itself. Takes the :class:`StreamMonitor` parameters; ``monitor`` is the flit monitor.
    """

    def __init__(self, dut, prefix: str, protocol, *, callback: Callable[[Packet], None] | None = None,
                 keep: bool = True, **kwargs):
        self.monitor = StreamMonitor(dut, prefix, protocol, keep=False, **kwargs)
        self.monitor.callbacks.append(self._flit)
        self.protocol = self.monitor.protocol
        self.name = self.monitor.name
        self.callbacks: list[Callable[[Packet], None]] = [callback] if callback else []
        self.keep = keep
        self.packets: list[Packet] = []
        self._open: list[Flit] = []
        self._index = 0

    def _fail(self, rule: str, flit: Flit) -> None:
        raise AssertionError(f"port {self.name}: flit {self._index} {format_flit(flit, self.protocol.flit_bits)} "
                             f"{rule} (cycle {self.monitor.cycle})")

    def _flit(self, flit: Flit) -> None:
        if flit.first and self._open:
            self._fail(f"must not be a head (first=1) inside an open packet of {len(self._open)} flits "
                       f"whose tail (last=1) never came", flit)
        if not flit.first and not self._open:
            self._fail("must be a head (first=1): no packet is open", flit)
        self._open.append(flit)
        self._index += 1
        if not flit.last:
            if len(self._open) > self.protocol.max_payload_flits + 1:
                self._fail(f"must end its packet within {self.protocol.max_payload_flits + 1} flits", flit)
            return
        flits, self._open = self._open, []
        try:
            packet = self.protocol.decode(flits)
        except ProtocolError as exc:
            raise AssertionError(f"port {self.name}: packet ending at flit {self._index - 1} is malformed: {exc}; "
                                 f"head {format_flit(flits[0], self.protocol.flit_bits)}") from None
        if self.keep:
            self.packets.append(packet)
        for callback in self.callbacks:
            callback(packet)

    @property
    def in_packet(self) -> int:
        """Flits of a packet that has started but not ended (0 between packets)."""
        return len(self._open)

    @property
    def transfers(self) -> int:
        return self.monitor.transfers

    def start(self):
        return self.monitor.start()

    def stop(self) -> None:
        self.monitor.stop()

    def describe(self) -> str:
        extra = f", {len(self._open)} flits of an unfinished packet" if self._open else ""
        return self.monitor.describe() + extra


def random_packet(protocol: Protocol, rng: np.random.Generator, *, kind=None, max_payload: int | None = None,
                  dst: int | None = None, src: int | None = None) -> Packet:
    """A well-formed packet with random header fields, meta and payload (for plumbing and soak tests).

    ``kind`` defaults to a random :class:`~mozart.model.protocol.PacketKind`; the payload has
    0..``max_payload`` flits (default ``protocol.max_payload_flits``). Node ids are drawn from the topology.
    """
    from mozart.model.protocol import PacketKind  # noqa: PLC0415

    kinds = list(PacketKind)
    kind = kinds[int(rng.integers(len(kinds)))] if kind is None else PacketKind(kind)
    nodes = protocol.topology.num_nodes
    meta = {}
    for f in protocol.meta_fields[kind]:
        values = rng.integers(0, 1 << f.width, size=f.count, dtype=np.uint64).tolist()
        meta[f.name] = tuple(values) if f.count > 1 else values[0]
    limit = protocol.max_payload_flits if max_payload is None else min(max_payload, protocol.max_payload_flits)
    length = int(rng.integers(0, limit + 1))
    payload = tuple(int.from_bytes(rng.bytes((protocol.flit_bits + 7) // 8), "little") & ((1 << protocol.flit_bits) - 1)
                    for _ in range(length))
    return Packet(kind, int(rng.integers(nodes)) if dst is None else dst,
                  int(rng.integers(nodes)) if src is None else src,
                  int(rng.integers(1 << protocol.tag_bits)), meta, payload)
