"""The random idle and backpressure of the hardware test harness, as plain Python: a xorshift32 generator and the
coin it flips once per cycle (``mozart.hw.xorshift`` is the same generator in hardware).

A coin with probability ``p`` says "idle" (or "not ready") in a cycle when the low 16 bits of the generator's state
are below ``threshold(p) = round(p * 2**16)``. The state starts at the seed (0 is replaced by 1: xorshift has no
way out of 0) and steps once per cycle: ``x ^= x << 13; x ^= x >> 17; x ^= x << 5`` (32 bits, Marsaglia 2003).
"""

from __future__ import annotations

import zlib

from .errors import ConfigError

__all__ = ["STATE_BITS", "COIN_BITS", "xorshift32", "threshold", "seed_for", "coin_flips"]

STATE_BITS = 32
COIN_BITS = 16
_MASK = (1 << STATE_BITS) - 1


def xorshift32(x: int) -> int:
    """One step of the generator."""
    x ^= (x << 13) & _MASK
    x ^= x >> 17
    x ^= (x << 5) & _MASK
    return x


def threshold(probability: float) -> int:
    """The coin's threshold for ``probability`` in [0, 1)."""
    if isinstance(probability, bool) or not 0.0 <= probability < 1.0:
        raise ConfigError(f"probability must be in [0, 1), not {probability!r}")
    return round(probability * (1 << COIN_BITS))


def seed_for(seed: int, stream: str) -> int:
    """A non-zero 32-bit state for one named coin of a run: independent streams per name, reproducible per seed."""
    state = zlib.crc32(f"{seed}:{stream}".encode()) & _MASK
    return state or 1


def coin_flips(seed_state: int, probability: float, cycles: int) -> list[bool]:
    """The coin's first ``cycles`` outcomes (True = idle / not ready), as the hardware flips them."""
    limit, x, out = threshold(probability), seed_state or 1, []
    for _ in range(cycles):
        out.append((x & ((1 << COIN_BITS) - 1)) < limit)
        x = xorshift32(x)
    return out
