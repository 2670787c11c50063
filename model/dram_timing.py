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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

__all__ = ["Command", "Access", "DramTiming", "split_address"]


@dataclass(frozen=True)
class Command:
    """A burst: ``words`` consecutive words from ``addr``; ``at`` is the first cycle it may be offered."""

    addr: int
    words: int
    write: bool = False
    at: int = 0


@dataclass(frozen=True)
class Access:
    """One word's column command: its address, whether it writes, and the cycle it issued."""

    addr: int
    write: bool
    cycle: int


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
    """

    def __init__(self, cfg):
        self.dram = cfg.dram
        self.misses = 0
        self.conflicts = 0
        self.refresh_stall_cycles = 0

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
            write_offered: Sequence[int] | None = None) -> list[Access]:
        """Simulate ``commands`` offered in order (each from its ``at`` cycle, cycle 0 = the first after reset);
        returns every word's access in issue order. Reads' data is on ``rdata`` at ``cycle + t_cl``.

        ``write_offered``: for each write word, in order, the cycle from which it is offered (held until taken);
        ``None``: every write word is offered at once."""
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
        written = 0          # write words taken so far
        open_row: list[int | None] = [None] * d.banks
        prep = None          # [bank, row, count]: usable when count == 0
        nxt = None           # (addr, words, write)
        act = None           # [addr, left, write]
        self.misses = self.conflicts = self.refresh_stall_cycles = 0
        out: list[Access] = []
        head = 0
        cycle = 0
        while head < len(cmds) or nxt is not None or act is not None:
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
            if refresh:
                self.refresh_stall_cycles += 1
                open_row = [None] * d.banks
                prep = None
            else:
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
            done = False
            if issue:
                out.append(Access(act[0], act[2], cycle))
                written += act[2]
                act[0] += 1
                act[1] -= 1
                done = act[1] == 0
            load = nxt is not None and (act is None or done)
            accept = head < len(cmds) and cmds[head].at <= cycle and (nxt is None or load)
            if load:
                act = [nxt[0], nxt[1], nxt[2]]
            elif done:
                act = None
            if accept:
                c = cmds[head]
                nxt = (c.addr, c.words, c.write)
                head += 1
            elif load:
                nxt = None
            cycle += 1
        return out

    def cycles(self, commands: Sequence[Command | tuple]) -> int:
        """Cycles until the last access issues (plus one), for back-to-back commands from cycle 0."""
        acc = self.run(commands)
        return acc[-1].cycle + 1 if acc else 0
