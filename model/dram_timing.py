"""Cycle-exact Python model of the group DRAM's timing (the same rules as ``mozart.hw.dram.DramModel``).

The RTL and this model share one specification, written down here; ``tests/test_dram.py`` checks them
against each other cycle for cycle, and the performance model uses :class:`DramTiming` to cost weight
streams and activation writes.

Address mapping (row:bank:column)
---------------------------------
A word address ``a`` splits as ``column = a % row_words``, ``bank = (a // row_words) % banks``,
``row = a // (row_words * banks)``. A sequential stream therefore walks a whole row of one bank, then the same
row of the next bank, so it hits open rows and the next bank can be activated while the current one streams.

Commands and the two-deep command pipeline
------------------------------------------
The DRAM takes burst commands ``(addr, words, write)``. A command accepted at cycle ``c`` sits in the lookahead
register ``nxt`` at ``c + 1`` and becomes the active burst ``act`` when ``act`` is empty or issues its last word.
A burst is a sequence of *segments*: runs of words inside one row. Every cycle:

1. **Refresh.** With refresh enabled, cycle ``t`` is a refresh cycle when
   ``t % refresh_interval >= refresh_interval - refresh_cycles``. A refresh cycle closes every row, cancels
   the activation in progress and issues nothing.
2. **Column issue.** The active burst issues its next word when its row is open (an activation finishing this
   cycle counts) and, for a write, a write word is offered; for a read, the read-data buffer has room. One word
   per cycle at most: that is the peak bandwidth. Read data appears on ``rdata`` ``t_cl`` cycles after the
   column command. Write words are offered in order, each from a given cycle until it is taken (``run``'s
   ``write_offered``; by default every word at once). In the memory controller a write's command reaches the
   DRAM with its header, before its payload, so its words can come late.
3. **Activation.** One activation engine. When it is free (idle, or finishing this cycle) it starts on the
   active segment if that row is not open, otherwise on the *lookahead* segment (the active burst's next row,
   or the first row of ``nxt`` when the active burst ends in this row) if that row is not open and its bank is
   not the active segment's bank. Opening a row of a closed bank takes ``D = t_rcd`` (a miss); of a bank with
   another row open ``D = t_rp + t_rcd`` (a conflict; the old row closes at once). An activation started at
   cycle ``t`` makes its row usable at ``t + max(1, D)``.

Latency of an isolated burst on an idle DRAM, from the cycle its command is accepted to the first read data on
``rdata``: ``2 + t_cl`` on a row hit, ``1 + max(1, t_rcd) + t_cl`` on a miss and ``1 + max(1, t_rp + t_rcd) +
t_cl`` on a conflict. Throughput: one word per cycle while rows hit or the next bank was activated in time.

The model assumes that read data is always taken, so the read-data buffer never fills (the RTL's buffer holds
``t_cl + max_burst_words`` words, more than can be in flight).

The reorder window (``dram.reorder_window`` W > 1)
-------------------------------------------------
With W = 1 commands reach the DRAM in order, as above. With W > 1 the memory controller
(:class:`mozart.hw.memctrl_reorder.ReorderWindow`) keeps up to W waiting commands in front of the DRAM, oldest
first, and chooses which one the DRAM takes next; :meth:`DramTiming.run` models it with the DRAM:

- **Entering.** A command offered at cycle ``t`` enters the window at the end of ``t`` if fewer than W commands
  wait or one leaves in ``t``; it can leave from ``t + 1`` (one cycle more than without the window).
- **Leaving.** In a cycle where the DRAM takes a command (``nxt`` empty or moving up), the window gives it
  the oldest waiting command that is a *row hit* and *may pass* every older waiting command, else the oldest.
  A row hit: its first word is in the bank and row where the command the window gave last ends (the DRAM
  keeps that row open, so the new burst needs no activation). ``may_pass(older, newer)``: different sources,
  disjoint address ranges, not both writes (write payloads arrive in order), not both LOADs.
- **Age limit.** Each time a command leaves while an older one waits, the oldest's pass count grows; it
  restarts at 0 when the oldest leaves. When it reaches W, the oldest leaves next. So a command waits behind at
  most W passes per older command: it leaves within ``W * (W + 1)`` commands given to the DRAM after it
  entered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = ["Command", "Access", "DramTiming", "may_pass", "split_address"]


@dataclass(frozen=True)
class Command:
    """A burst: ``words`` consecutive words from ``addr``; ``at`` is the first cycle it may be offered.

    ``source`` (the requester's node) and ``load`` (a LOAD's image read) matter only to the reorder window."""

    addr: int
    words: int
    write: bool = False
    at: int = 0
    source: int = 0
    load: bool = False


@dataclass(frozen=True)
class Access:
    """One word's column command: its address, whether it writes, and the cycle it issued."""

    addr: int
    write: bool
    cycle: int


def may_pass(older: Command, newer: Command) -> bool:
    """Whether the reorder window may give ``newer`` to the DRAM before the waiting ``older``: different sources
    (each requester sees its own order), disjoint address ranges (every read-after-write, write-after-read and
    write-after-write stays in order), not both writes (their payloads arrive in order) and not both LOADs."""
    disjoint = older.addr + older.words <= newer.addr or newer.addr + newer.words <= older.addr
    return (older.source != newer.source and disjoint and not (older.write and newer.write)
            and not (older.load and newer.load))


def split_address(dram, addr: int) -> tuple[int, int, int]:
    """``(bank, row, column)`` of word address ``addr`` under the row:bank:column mapping."""
    if not 0 <= addr < dram.words:
        raise ValueError(f"DRAM word address must be in 0..{dram.words - 1}, not {addr!r}")
    column = addr % dram.row_words
    bank = (addr // dram.row_words) % dram.banks
    row = addr // (dram.row_words * dram.banks)
    return bank, row, column


class DramTiming:
    """The DRAM's timing for one config (``cfg.dram``); :meth:`run` gives the cycle of every access.

    Parameters
    ----------
    cfg : WaferConfig
        Its ``dram`` section sets the geometry and the latencies.

    Attributes
    ----------
    misses, conflicts : int
        Activations of a closed bank and of a bank with another row open, in the last :meth:`run`.
    refresh_stall_cycles : int
        Refresh cycles that fell inside the last :meth:`run`.
    served : list[int]
        The commands' indices in the order the DRAM took them in the last :meth:`run` (arrival order without a
        reorder window).
    """

    def __init__(self, cfg):
        self.dram = cfg.dram
        self.misses = 0
        self.conflicts = 0
        self.refresh_stall_cycles = 0
        self.served: list[int] = []

    # -- latencies (documented in the module docstring) ---------------------------------------------------------
    @property
    def hit_latency(self) -> int:
        """Cycles from command accept to first read data, row open."""
        return 2 + self.dram.t_cl

    @property
    def miss_latency(self) -> int:
        return 1 + max(1, self.dram.t_rcd) + self.dram.t_cl

    @property
    def conflict_latency(self) -> int:
        return 1 + max(1, self.dram.t_rp + self.dram.t_rcd) + self.dram.t_cl

    @property
    def peak_words_per_cycle(self) -> int:
        return 1

    def refreshing(self, cycle: int) -> bool:
        d = self.dram
        return bool(d.refresh_interval) and cycle % d.refresh_interval >= d.refresh_interval - d.refresh_cycles

    # -- the cycle loop -----------------------------------------------------------------------------------------
    def run(self, commands: Iterable[Command | tuple], max_cycles: int = 10_000_000,
            write_offered: Sequence[int] | None = None, reorder_window: int | None = None) -> list[Access]:
        """Simulate ``commands`` offered in order (each from its ``at`` cycle, cycle 0 = the first after reset);
        returns every word's access in issue order. Reads' data is on ``rdata`` at ``cycle + t_cl``.

        ``write_offered``: for each write word, in order, the cycle from which it is offered (held until taken);
        ``None``: every write word is offered at once. ``reorder_window``: W of the reorder window in front of
        the DRAM (module docstring); ``None``: ``dram.reorder_window``. After the run, ``served`` lists the
        commands' indices in the order the DRAM took them."""
        d = self.dram
        window = _ReorderWindow(d, d.reorder_window if reorder_window is None else reorder_window)
        cmds, write_words = self._checked(commands, write_offered)
        written = 0          # write words taken so far
        open_row: list[int | None] = [None] * d.banks
        prep = None          # [bank, row, count]: usable when count == 0
        nxt = None           # (addr, words, write)
        act = None           # [addr, left, write]
        self.misses = self.conflicts = self.refresh_stall_cycles = 0
        self.served = []
        out: list[Access] = []
        head = 0
        cycle = 0
        while head < len(cmds) or window.waiting or nxt is not None or act is not None:
            if cycle >= max_cycles:
                raise RuntimeError(f"DRAM timing model must finish within {max_cycles} cycles, not more")
            refresh = self.refreshing(cycle)
            fin = prep is not None and prep[2] == 0

            def is_open(bank: int, row: int) -> bool:
                return open_row[bank] == row or (fin and prep[0] == bank and prep[1] == row)

            def any_open(bank: int) -> bool:
                return open_row[bank] is not None or (fin and prep[0] == bank)

            seg = split_address(d, act[0]) if act is not None else None
            # column issue
            data_ready = write_offered is None or (written < write_words and write_offered[written] <= cycle)
            issue = act is not None and not refresh and is_open(seg[0], seg[1]) and (not act[2] or data_ready)
            # lookahead segment
            look = None
            if act is not None and act[1] > d.row_words - seg[2]:
                look = split_address(d, act[0] + d.row_words - seg[2])
            elif nxt is not None:
                look = split_address(d, nxt[0])
            target = None
            if not refresh and (prep is None or fin):
                if seg is not None and not is_open(seg[0], seg[1]):
                    target = seg
                elif look is not None and not is_open(look[0], look[1]) and (seg is None or look[0] != seg[0]):
                    target = look
            conflict = target is not None and any_open(target[0])
            # next state (from the values above, as registers update at the clock edge)
            open_row, prep = self._next_rows(open_row, prep, fin, refresh, target, conflict)
            done = False
            if issue:
                out.append(Access(act[0], act[2], cycle))
                written += act[2]
                act[0] += 1
                act[1] -= 1
                done = act[1] == 0
            load = nxt is not None and (act is None or done)
            given, head = window.step(cmds, head, cycle, dram_takes=nxt is None or load)
            if load:
                act = [nxt[0], nxt[1], nxt[2]]
            elif done:
                act = None
            if given is not None:
                c = cmds[given]
                nxt = (c.addr, c.words, c.write)
                self.served.append(given)
            elif load:
                nxt = None
            cycle += 1
        return out

    def _checked(self, commands, write_offered) -> tuple[list[Command], int]:
        """The commands as :class:`Command` and their write words; ``ValueError`` on a burst outside the DRAM or a
        ``write_offered`` of the wrong length."""
        d = self.dram
        cmds = [c if isinstance(c, Command) else Command(*c) for c in commands]
        for c in cmds:
            split_address(d, c.addr)
            if c.words < 1 or c.addr + c.words > d.words:
                raise ValueError(f"burst words must be 1..{d.words - c.addr} at address {c.addr}, not {c.words!r}")
        write_words = sum(c.words for c in cmds if c.write)
        if write_offered is not None and len(write_offered) != write_words:
            raise ValueError(f"write_offered must give a cycle for each of the {write_words} write words, "
                             f"not {len(write_offered)}")
        return cmds, write_words

    def _next_rows(self, open_row, prep, fin, refresh, target, conflict):
        """The open rows and the activation in flight (``[bank, row, count]``) after this cycle's edge."""
        d = self.dram
        if refresh:
            self.refresh_stall_cycles += 1
            return [None] * d.banks, None
        if fin:
            open_row[prep[0]] = prep[1]
            prep = None
        elif prep is not None:
            prep[2] -= 1
        if target is not None:
            delay = d.t_rcd + (d.t_rp if conflict else 0)
            self.conflicts += conflict
            self.misses += not conflict
            open_row[target[0]] = None
            prep = [target[0], target[1], max(1, delay) - 1]
        return open_row, prep

    def cycles(self, commands: Sequence[Command | tuple]) -> int:
        """Cycles until the last access issues (plus one), for back-to-back commands from cycle 0."""
        acc = self.run(commands)
        return acc[-1].cycle + 1 if acc else 0


class _ReorderWindow:
    """The reorder window's rules (module docstring): up to ``size`` waiting commands (indices), oldest first."""

    def __init__(self, dram, size: int):
        if not 1 <= size <= 16:
            raise ValueError(f"reorder_window must be 1..16, not {size!r}")
        self.dram, self.size = dram, size
        self.waiting: list[int] = []
        self.passed = 0            # times the oldest waiting command was passed
        self.tail = None           # (bank, row) where the last given command ends

    def step(self, cmds: Sequence[Command], head: int, cycle: int, *, dram_takes: bool) -> tuple[int | None, int]:
        """One cycle: the command the DRAM takes (``None``: none) and the next command to offer. Without a window
        (size 1) the offered command goes straight to the DRAM."""
        offered = head < len(cmds) and cmds[head].at <= cycle
        if self.size == 1:
            given = head if offered and dram_takes else None
            return given, head + (given is not None)
        given = self.give(cmds) if dram_takes else None
        return given, head + (offered and self.enter(head))

    def enter(self, index: int) -> bool:
        """Take command ``index`` if there is room (after this cycle's :meth:`give`)."""
        if len(self.waiting) >= self.size:
            return False
        self.waiting.append(index)
        return True

    def give(self, cmds: Sequence[Command]) -> int | None:
        """The command the DRAM takes next (removed from the window), or ``None`` if none waits."""
        if not self.waiting:
            return None
        position = 0
        if self.passed < self.size:
            for i, index in enumerate(self.waiting):
                newer = cmds[index]
                if (split_address(self.dram, newer.addr)[:2] == self.tail
                        and all(may_pass(cmds[older], newer) for older in self.waiting[:i])):
                    position = i
                    break
        self.passed = 0 if position == 0 else self.passed + 1
        given = self.waiting.pop(position)
        last = cmds[given]
        self.tail = split_address(self.dram, last.addr + last.words - 1)[:2]
        return given
