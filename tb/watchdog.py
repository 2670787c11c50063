"""A deadlock watchdog: fails the test when no flit moves on any watched port for N cycles while work is pending.

It watches the ``transfers`` counters of drivers and monitors (:mod:`mozart.tb.stream`); any object with a
``transfers`` int and a ``describe()`` method will do. "Pending" comes from callables that return a description
of outstanding work, empty or ``None`` when there is none; by default the drivers' queued flits count. A
scoreboard's ``pending_summary`` is the usual addition::

    dog = Watchdog(dut.clk, [drv, mon], timeout=1000, pending=[sb.pending_summary])
    dog.start()

The check runs once per window of ``timeout // 8`` cycles, so a stall is reported between ``timeout`` and
``timeout + timeout // 8`` cycles after the last movement. A window is a ``ClockCycles`` trigger (Python sees every
edge), or with ``period_ns`` one ``Timer`` (Python sees nothing in between: for testbenches with no per-cycle
Python, whose simulator would otherwise wait for the watchdog).
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import cocotb
from cocotb.triggers import ClockCycles, Timer

__all__ = ["Watchdog", "DeadlockError"]


class DeadlockError(AssertionError):
    """No flit moved for the watchdog's timeout while work was pending."""


class Watchdog:
    """Fails the running test with :class:`DeadlockError` on a stall.

    Parameters
    ----------
    clock : handle
        The clock to count cycles of.
    ports : sequence
        Drivers and monitors (anything with ``transfers`` and ``describe()``).
    timeout : int
        Cycles without any movement that count as a stall (positive).
    pending : callable or sequence of callables, optional
        Each returns a description of pending work (str, list, dict, int) or something empty.
        Default: the ports' own ``pending`` counts (queued driver flits).
    name : str
        Used in the message (e.g. the block under test).
    period_ns : float, optional
        The clock's period: wait each window with one timer instead of counting edges.
    """

    def __init__(self, clock, ports: Sequence[Any], *, timeout: int = 1000,
                 pending: Callable[[], Any] | Iterable[Callable[[], Any]] | None = None, name: str = "watchdog",
                 period_ns: float | None = None):
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"watchdog timeout must be a positive number of cycles, not {timeout!r}")
        if not ports:
            raise ValueError("watchdog ports must name at least one driver or monitor, not none")
        self.clock = clock
        self.ports = list(ports)
        self.timeout = timeout
        self.name = name
        if pending is None:
            self.pending = [self._queued]
        elif callable(pending):
            self.pending = [pending]
        else:
            self.pending = list(pending)
        self.period_ns = period_ns
        self.cycle = 0
        self.stalled_for = 0
        self._task = None

    def _queued(self) -> str:
        busy = [f"{p.name}: {p.pending} flits" for p in self.ports if getattr(p, "pending", 0)]
        return ", ".join(busy)

    def pending_description(self) -> str:
        parts = []
        for fn in self.pending:
            value = fn()
            if value:
                parts.append(str(value))
        return "; ".join(parts)

    def start(self):
        if self._task is None or self._task.done():
            self._task = cocotb.start_soon(self._run())
        return self._task

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self._task = None

    def _stuck_ports(self) -> list[str]:
        """Ports holding work: a valid flit not taken, or a driver with a queue."""
        stuck = []
        for p in self.ports:
            valid = None
            for owner in (p, getattr(p, "driver", None), getattr(p, "monitor", None)):
                if owner is not None and getattr(owner, "valid", None) is not None:
                    valid = owner.valid  # a cocotb handle: no truth value, so test 'is not None'
                    break
            try:
                holding = valid is not None and bool(valid.value)
            except Exception:  # noqa: BLE001 (X or Z: not holding)
                holding = False
            if holding or getattr(p, "pending", 0) or getattr(p, "in_packet", 0):
                stuck.append(p.describe())
        return stuck

    async def _run(self) -> None:
        window = max(1, self.timeout // 8)
        last = sum(p.transfers for p in self.ports)
        while True:
            await (Timer(window * self.period_ns, unit="ns") if self.period_ns else ClockCycles(self.clock, window))
            self.cycle += window
            now = sum(p.transfers for p in self.ports)
            if now != last:
                last, self.stalled_for = now, 0
                continue
            self.stalled_for += window
            if self.stalled_for < self.timeout:
                continue
            pending = self.pending_description()
            if not pending:
                self.stalled_for = 0  # quiet because there is nothing to do: fine
                continue
            stuck = self._stuck_ports()
            raise DeadlockError(
                f"{self.name}: no flit moved on any of {len(self.ports)} watched ports for {self.stalled_for} "
                f"cycles (timeout {self.timeout}, now cycle {self.cycle}) while work is pending: {pending}. "
                f"Ports holding work: {'; '.join(stuck) if stuck else 'none (a flit is lost inside the DUT?)'}. "
                f"All ports: {'; '.join(p.describe() for p in self.ports)}")
