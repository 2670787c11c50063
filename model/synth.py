"""A seeded synthetic routing-trace generator whose statistics resemble real MoE routers.

The model
---------
Each layer is a router whose logits for a token are a per-layer expert *popularity*, plus a *topic* bias,
plus noise; routing is then exactly docs/paper.md's ``R(x) = topk(softmax(g(x)), k)``:

    g_i(x) = log p_i + log(beta) * [group(i) == topic(x)] + G_i,    G_i ~ Gumbel(0, 1) i.i.d.

- **Skewed popularity** (``skew``): ``p_i ~ 1 / (rank_i + 1) ** skew``, a Zipf law over a random ranking of
  the experts (fresh per layer). ``skew = 0`` makes every expert equally popular.
- **Co-activation groups** (``groups_of``, ``coactivation``): the experts of a layer are split at random into
  groups of ``groups_of`` (the last one smaller if it does not divide). Every token has one topic, a group
  drawn uniformly, whose experts get the logit bonus ``log(beta)``. ``coactivation`` in ``[0, 1]`` sets
  ``beta`` so that, with equal popularity, the share of a token's softmax mass inside its topic group is
  ``f = s/E + coactivation * (1 - s/E)`` (``s = groups_of``): 0 is independent routing, 1 puts all the mass
  in the group (a token then leaves its group only when the group has fewer than k experts).
- **Drift between steps** (``step``, ``drift``): log-popularities and the experts' positions in the group
  ordering carry a smooth random perturbation of standard deviation ``drift`` (positions: ``drift *
  groups_of`` places), which turns over every :data:`DRIFT_PERIOD` steps (a cosine blend of independent
  seeded knots, so consecutive steps differ little and variance stays constant). Tokens are fresh per step.
- **Uniform random routing** is the setting ``skew = 0, coactivation = 0, drift = 0``: every token then routes
  to a uniformly random set of k distinct experts (:func:`synthesize_uniform`).

Gate weights are the softmax of the same logits over the chosen k, i.e. **renormalised over the top-k**
(they sum to 1 per token), in router order (highest first).

Sampling, exactly and vectorised
--------------------------------
Top-k of Gumbel-perturbed logits is a draw of k experts *without replacement* with probabilities
proportional to ``w_i = exp(logit_i)`` (Plackett-Luce), which also equals drawing *with* replacement and
keeping first occurrences. So each token draws ``2k`` experts with replacement from its topic's
distribution (Walker alias tables: O(1) per draw) and keeps the first k distinct; the rare tokens with fewer
finish with an exact Gumbel top-k over the remaining experts (memorylessness of Plackett-Luce makes the
continuation exact). The perturbed logits of the chosen experts, needed for the gates, follow from the
Gumbel-max property: the top one is ``Gumbel(log W)`` and each next one is a Gumbel of the remaining mass
truncated below the previous. No ``[tokens, experts]`` noise array is ever made; 64k tokens x 48 layers of
top-8 over 128 experts take two to three seconds of one core (``bench/bench_stats.py``).

Randomness comes from separate seeded streams: ``(seed, 0, layer)`` for the structure, ``(seed, 1, step,
layer)`` for the tokens and ``(seed, 2 or 3, layer, knot)`` for the drift, so a layer does not depend on how
many other layers are generated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .errors import TraceError
from .stats import first_occurrences
from .trace import Trace

__all__ = ["SynthSpec", "SYNTH_PRESETS", "DRIFT_PERIOD", "synthesize", "synthesize_uniform", "synthesize_for",
           "check_size", "MAX_TRACE_BYTES",
           "synthesize_preset", "expert_groups"]

#: Steps over which the drift perturbation turns over (one knot of the smooth random process per period).
DRIFT_PERIOD = 100
_CHUNK_TOKENS = 1 << 16
_MAX_DRAW_K = 16  # above this top-k, sampling with replacement is slower than a full Gumbel top-k
_MAX_BETA = 1e12  # coactivation = 1: a finite bonus keeps the alias tables well defined


@dataclass(frozen=True)
class SynthSpec:
    """A generator setting: a model shape and the knots of :func:`synthesize`.

    Members
    -------
    num_experts, top_k, layers : int
    skew : float
        Zipf exponent of expert popularity (0 = uniform).
    coactivation : float
        Grouping strength in ``[0, 1]`` (0 = independent).
    groups_of : int
        Experts per co-activation group.
    drift : float
        Standard deviation of the between-step drift.
    """

    num_experts: int
    top_k: int
    layers: int
    skew: float = 0.3
    coactivation: float = 0.4
    groups_of: int = 8
    drift: float = 0.1

    def synthesize(self, tokens: int, seed: int, *, step: int = 0, uniform: bool = False,
                   progress: Callable[[int, int], None] | None = None) -> Trace:
        """Generate ``tokens`` tokens with this setting (``uniform=True``: skew, coactivation and drift 0)."""
        return synthesize(self.num_experts, self.top_k, self.layers, tokens, seed=seed, step=step,
                          skew=0.0 if uniform else self.skew,
                          coactivation=0.0 if uniform else self.coactivation,
                          groups_of=self.groups_of, drift=0.0 if uniform else self.drift, progress=progress)


#: The paper's three model shapes (docs/paper.md, "Evaluation"), grouped by the experts per chiplet of the
#: paper's 16-chiplet tree.
SYNTH_PRESETS: dict[str, SynthSpec] = {
    "qwen3-30b-a3b": SynthSpec(num_experts=128, top_k=8, layers=48, groups_of=8),
    "olmoe-1b-7b": SynthSpec(num_experts=64, top_k=8, layers=16, groups_of=4),
    "deepseek-moe-16b": SynthSpec(num_experts=64, top_k=6, layers=28, groups_of=4),
}


def _check(name: str, value, rule: str, ok: bool) -> None:
    if not ok:
        raise TraceError(f"synthetic trace: {name} must be {rule}, not {value!r}")


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _drift_noise(seed: int, layer: int, step: int, size: int, tag: int) -> np.ndarray:
    """A smooth, unit-variance random process over steps: cosine blend of seeded knots."""
    knot, offset = divmod(step, DRIFT_PERIOD)
    angle = 0.5 * math.pi * offset / DRIFT_PERIOD
    a = np.random.default_rng([seed, tag, layer, knot]).standard_normal(size)
    b = np.random.default_rng([seed, tag, layer, knot + 1]).standard_normal(size)
    return math.cos(angle) * a + math.sin(angle) * b  # cos^2 + sin^2 = 1: variance stays 1


def _alias_tables(weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias tables for each row of ``weights`` ``[rows, n]``: (accept probability, alias)."""
    rows, n = weights.shape
    prob = np.ones((rows, n))
    alias = np.tile(np.arange(n, dtype=np.int32), (rows, 1))
    scaled = weights / weights.sum(axis=1, keepdims=True) * n
    for r in range(rows):
        p = scaled[r].tolist()
        small = [i for i in range(n) if p[i] < 1.0]
        large = [i for i in range(n) if p[i] >= 1.0]
        while small and large:
            s, g = small.pop(), large[-1]
            prob[r, s], alias[r, s] = p[s], g
            p[g] -= 1.0 - p[s]
            if p[g] < 1.0:
                small.append(large.pop())
        # Leftovers are 1 up to rounding: accept them outright.
    return prob, alias


def _cumsum_rows(a: np.ndarray, dtype) -> np.ndarray:
    """``np.cumsum(a, axis=0)`` as one contiguous add per row: numpy's strided axis-0 scan is ~30x slower."""
    out = np.empty(a.shape, dtype=dtype)
    if len(a):
        out[0] = a[0]
    for j in range(1, len(a)):
        np.add(out[j - 1], a[j], out=out[j])
    return out


def _first_distinct(draws: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First ``k`` distinct values of each *column* of ``draws`` ``[m, tokens]``, in order of appearance.

    Returns ``chosen`` ``[tokens, k]`` (-1 where a token has fewer than k distinct draws) and that count,
    capped at k.
    """
    tokens = draws.shape[1]
    fresh = first_occurrences(draws)[0]
    slot = _cumsum_rows(fresh, np.int32)
    draw, token = np.nonzero(fresh & (slot <= k))
    chosen = np.full((tokens, k), -1, dtype=np.int32)
    chosen[token, slot[draw, token] - 1] = draws[draw, token]
    return chosen, np.minimum(slot[-1], k)


def _finish_with_gumbel(chosen: np.ndarray, have: np.ndarray, weights: np.ndarray,
                        rng: np.random.Generator) -> None:
    """Complete rows with ``have < k`` distinct experts by an exact Gumbel top-k over the remaining experts."""
    rows, k = chosen.shape
    cols = np.arange(k)
    prefix = cols[None, :] < have[:, None]
    race = weights / rng.standard_exponential(weights.shape)  # top-k of w / Exp(1) = top-k of log w + Gumbel
    race[np.nonzero(prefix)[0], chosen[prefix]] = -1.0     # already chosen: below every unchosen expert
    order = np.argsort(-race, axis=1, kind="stable")
    src = cols[None, :] - have[:, None]
    fill = np.take_along_axis(order, np.clip(src, 0, None), axis=1)
    chosen[~prefix] = fill[~prefix]


def _gates(chosen_weight: np.ndarray, total: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Gate weights (softmax over the top-k of the perturbed logits) of tokens whose experts are known.

    ``chosen_weight[t, j] = w`` of the j-th pick, ``total[t] = W`` of the token's topic. By the Gumbel-max
    property the j-th largest perturbed logit ``z_j`` is a ``Gumbel(log R_j)`` truncated below ``z_{j-1}``,
    with ``R_j`` the mass not yet picked: ``z_j = -log(exp(-z_{j-1}) + exp(-g_j))``. With ``g_j = log R_j -
    log X_j``, ``X_j ~ Exp(1)``, that is ``exp(-z_j) = sum_{i<=j} X_i / R_i``: a cumulative sum, no logs.
    """
    w = chosen_weight.T  # [k, tokens]
    remaining = np.empty(w.shape)
    remaining[0] = total
    np.subtract(total, _cumsum_rows(w[:-1], np.float64), out=remaining[1:])
    np.maximum(remaining, w, out=remaining)  # rounding can leave less than the pick itself
    with np.errstate(divide="ignore"):  # an expert of zero weight (extreme skew) gets gate 0
        inv_exp_z = _cumsum_rows(rng.standard_exponential(w.shape) / remaining, np.float64)
        e = 1.0 / inv_exp_z
    return (e / e.sum(axis=0)).T


def _structure(seed: int, layer: int, step: int, e: int, skew: float, groups_of: int,
               drift: float) -> tuple[np.ndarray, np.ndarray]:
    """Log-popularity ``[e]`` and co-activation group ``[e]`` of one layer at one step."""
    base = np.random.default_rng([seed, 0, layer])
    rank = base.permutation(e)
    position = base.permutation(e).astype(np.float64)
    log_pop = -skew * np.log1p(rank)
    if drift:
        log_pop = log_pop + drift * _drift_noise(seed, layer, step, e, 2)
        position = position + drift * groups_of * _drift_noise(seed, layer, step, e, 3)
    group = np.empty(e, dtype=np.int64)
    group[np.argsort(position, kind="stable")] = np.arange(e) // groups_of
    return log_pop, group


def expert_groups(num_experts: int, *, seed: int, layer: int = 0, groups_of: int, drift: float = 0.1,
                  step: int = 0) -> np.ndarray:
    """The hidden co-activation group of every expert that :func:`synthesize` used (for tests and reports).

    Returns
    -------
    int64 array ``[num_experts]``: group ``g`` holds the experts with value ``g`` (``groups_of`` each).
    """
    return _structure(seed, layer, step, num_experts, 0.0, groups_of, drift)[1]


def _layer(seed: int, layer: int, step: int, e: int, k: int, tokens: int, skew: float, coactivation: float,
           groups_of: int, drift: float) -> tuple[np.ndarray, np.ndarray]:
    log_pop, group = _structure(seed, layer, step, e, skew, groups_of, drift)
    topics = int(group.max()) + 1
    if topics == 1 or coactivation == 0:
        beta = 1.0
    else:
        share = groups_of / e + coactivation * (1 - groups_of / e)
        beta = _MAX_BETA if share >= 1 else min(_MAX_BETA, share * (e - groups_of) / (groups_of * (1 - share)))
    pop = np.exp(log_pop - log_pop.max())
    weights = np.where(group[None, :] == np.arange(topics)[:, None], beta, 1.0) * pop[None, :]  # [topics, e]
    prob, alias = _alias_tables(weights)
    prob, alias, total = prob.ravel(), alias.ravel(), weights.sum(axis=1)

    rng = np.random.default_rng([seed, 1, step, layer])
    experts = np.empty((tokens, k), dtype=np.int32)
    gates = np.empty((tokens, k), dtype=np.float32)
    for start in range(0, tokens, _CHUNK_TOKENS):
        n = min(_CHUNK_TOKENS, tokens - start)
        topic = rng.integers(topics, size=n, dtype=np.int32)
        if k <= _MAX_DRAW_K:
            x = rng.random((2 * k, n))
            x *= e
            j = np.minimum(x.astype(np.int32), e - 1)
            flat = topic * e + j
            draws = np.where(x - j < prob[flat], j, alias[flat])  # alias method: O(1) per draw
            chosen, have = _first_distinct(draws, k)
        else:  # 2k draws would cost O(k^2) comparisons: go straight to the exact top-k
            chosen, have = np.full((n, k), -1, dtype=np.int32), np.zeros(n, dtype=np.int32)
        short = np.flatnonzero(have < k)
        if short.size:
            part = chosen[short]
            _finish_with_gumbel(part, have[short], weights[topic[short]], rng)
            chosen[short] = part
        experts[start:start + n] = chosen
        gates[start:start + n] = _gates(weights[topic[:, None], chosen], total[topic], rng)
    return experts, gates


#: The most memory a synthetic trace may take: expert ids (int32) and gates (float32), 8 bytes per entry.
MAX_TRACE_BYTES = 8 * 2**30
_BYTES_PER_ENTRY = 8


def check_size(layers: int, tokens: int, top_k: int) -> None:
    """Raise :class:`TraceError` before allocating a trace larger than :data:`MAX_TRACE_BYTES`."""
    size = layers * tokens * top_k * _BYTES_PER_ENTRY
    if size > MAX_TRACE_BYTES:
        most = MAX_TRACE_BYTES // (layers * top_k * _BYTES_PER_ENTRY)
        raise TraceError(f"synthetic trace: tokens must be at most {most} for {layers} layers of top-{top_k} "
                         f"(a trace of at most {MAX_TRACE_BYTES / 2**30:g} GiB), not {tokens} "
                         f"({size / 2**30:.3g} GiB)")


def synthesize(num_experts: int, top_k: int, layers: int, tokens: int, *, seed: int, skew: float = 0.3,
               coactivation: float = 0.4, groups_of: int | None = None, drift: float = 0.1, step: int = 0,
               progress: Callable[[int, int], None] | None = None) -> Trace:
    """Generate a synthetic routing trace (see the module docstring for the model).

    Parameters
    ----------
    num_experts, top_k, layers, tokens : int
        The shape: ``top_k <= num_experts``; ``tokens`` may be 0.
    seed : int
        Non-negative; the same arguments always give the same trace.
    skew : float
        Zipf exponent of expert popularity, ``>= 0`` (0: equally popular).
    coactivation : float
        Strength of the co-activation groups in ``[0, 1]`` (0: independent).
    groups_of : int, optional
        Experts per group, ``1..num_experts``; default ``max(1, num_experts // 16)`` (the experts per chiplet
        of the paper's 16-chiplet tree).
    drift : float
        Between-step drift, ``>= 0`` (0: the structure is the same at every step).
    step : int
        Training step, ``>= 0``: structure drifts slowly with it and tokens are fresh.
    progress : callable, optional
        Called as ``progress(layers_done, layers)`` after each layer.

    Returns
    -------
    Trace
    """
    groups_of = max(1, num_experts // 16) if groups_of is None else groups_of
    _check("num_experts", num_experts, "a positive integer", _is_int(num_experts) and num_experts >= 1)
    _check("top_k", top_k, f"an integer in 1..num_experts ({num_experts})",
           _is_int(top_k) and 1 <= top_k <= num_experts)
    _check("layers", layers, "a positive integer", _is_int(layers) and layers >= 1)
    _check("tokens", tokens, "a non-negative integer", _is_int(tokens) and tokens >= 0)
    _check("seed", seed, "a non-negative integer", _is_int(seed) and seed >= 0)
    _check("step", step, "a non-negative integer", _is_int(step) and step >= 0)
    _check("skew", skew, "a finite number >= 0", _is_number(skew) and skew >= 0)
    _check("coactivation", coactivation, "between 0 and 1", _is_number(coactivation) and 0 <= coactivation <= 1)
    _check("groups_of", groups_of, f"an integer in 1..num_experts ({num_experts})",
           _is_int(groups_of) and 1 <= groups_of <= num_experts)
    _check("drift", drift, "a finite number >= 0", _is_number(drift) and drift >= 0)
    check_size(layers, tokens, top_k)
    experts = np.empty((layers, tokens, top_k), dtype=np.int32)
    weights = np.empty((layers, tokens, top_k), dtype=np.float32)
    for layer in range(layers):
        experts[layer], weights[layer] = _layer(int(seed), layer, int(step), int(num_experts), int(top_k), int(tokens),
                                                float(skew), float(coactivation), int(groups_of), float(drift))
        if progress:
            progress(layer + 1, layers)
    source = (f"synthetic(experts={num_experts}, top_k={top_k}, seed={seed}, step={step}, skew={skew:g}, "
              f"coactivation={coactivation:g}, groups_of={groups_of}, drift={drift:g})")
    return Trace(experts, weights, int(num_experts), source)


def synthesize_uniform(num_experts: int, top_k: int, layers: int, tokens: int, *, seed: int, step: int = 0) -> Trace:
    """Uniform random routing: every token picks a uniformly random set of ``top_k`` distinct experts."""
    return synthesize(num_experts, top_k, layers, tokens, seed=seed, skew=0.0, coactivation=0.0, drift=0.0, step=step)


def synthesize_for(cfg, tokens: int, seed: int, structured: bool = True, *, step: int = 0,
                   progress: Callable[[int, int], None] | None = None, **knobs) -> Trace:
    """A trace shaped for a :class:`~mozart.model.config.WaferConfig` (experts, top-k, layers).

    ``structured=True`` uses the default knobs with groups of ``cfg.experts_per_chiplet`` experts (so a
    perfect clustering exists but is hidden by a random numbering); ``structured=False`` is uniform random
    routing. ``knobs`` (``skew``, ``coactivation``, ``groups_of``, ``drift``) override the defaults.
    """
    spec = SynthSpec(cfg.moe.experts, cfg.moe.top_k, cfg.moe.layers, groups_of=cfg.experts_per_chiplet)
    unknown = set(knobs) - {"skew", "coactivation", "groups_of", "drift"}
    if unknown:
        raise TraceError(f"synthetic trace: knobs must be skew, coactivation, groups_of or drift, not "
                         f"{sorted(unknown)!r}")
    return replace(spec, **knobs).synthesize(tokens, seed, step=step, uniform=not structured, progress=progress)


def synthesize_preset(name: str, tokens: int, seed: int, *, step: int = 0, uniform: bool = False) -> Trace:
    """A trace of one of :data:`SYNTH_PRESETS` by name."""
    if name not in SYNTH_PRESETS:
        raise TraceError(f"synthetic preset must be one of {', '.join(SYNTH_PRESETS)}, not {name!r}")
    return SYNTH_PRESETS[name].synthesize(tokens, seed, step=step, uniform=uniform)
