"""Continuous (in-flight) batching at steady state: TTFT, TPOT and tokens/s of one serving engine
at a concurrency or an arrival rate, in closed form in the concurrency.

The engine (vLLM, SGLang, TensorRT-LLM) runs one step after another; each step batches one
decode token of every running request with chunks of waiting prompts, up to a token budget ``T``
per step (``max_num_batched_tokens``), each step timed by :mod:`~symcost.plan.serving.steps`.
The load is a closed loop of ``c`` requests (a client sends its next request when the last one
ends, as benchmark clients at a fixed concurrency do) of the :class:`Workload`'s mean ``I``
prompt tokens and ``D`` decode steps, decode steps attending to ``K`` keys on average (the mean
running context). Requests that start together finish together, so prompts arrive in groups and
are packed into as few steps as the budget allows. Per cycle (every request served once) the
engine runs ``m`` steps that carry prefill and the others decode only:

- **synchronized** (``c I <= T``): all ``c`` prompts in one step, then ``D`` decode steps of
  ``c`` tokens: a static batch, ``TTFT = tau_pre(c x I)``, ``TPOT = tau_dec(c, K)``.
- **interleaved** (mixed steps): a mixed step holds ``r = (T - c)/(I - 1)`` whole prompts
  beside the ``c - r`` others' decode tokens (``c - r + r I = T``); ``m = c/r`` of the ``L = D + 1``
  steps per cycle are mixed, one is the request's own prefill, so

      TPOT = ((m - 1) tau_mix + (L - m) tau_dec) / D,    TTFT = tau_mix,    X = c / (m tau_mix + (L - m) tau_dec).

- **chunked**: a prompt longer than what the budget leaves, ``I > T - c + 1``, is prefilled one
  chunk of ``Q = T - c + 1`` tokens per step over ``I/Q`` steps (its chunks after ``(I - Q)/2``
  earlier keys on average), with ``m = c I/Q`` and ``L = D + I/Q``.
- **saturated**: past ``c* = T (D + 1)/(I + D)`` (``T >= I + D``; else ``(I + D (T + 1))/(I + D)``)
  prefill cannot keep up: every step is mixed at the flow balance of the budget, ``T I/(I + D)``
  prefill and ``T D/(I + D)`` decode tokens, the throughput stays ``X = T/((I + D) tau_mix)`` and
  the others wait.
- **alternating** (SGLang's default, no mixed steps): steps carry either prefill (``Q = min(c I, T)``
  tokens, the decoders wait) or decode (``c`` tokens), prefill first while prompts wait
  (SGLang's ``Scheduler.get_next_batch_to_run`` runs a new prefill batch before the running
  decode batch); ``m = c I/Q`` prefill steps per cycle. The decoders advance together, so the
  requests that start in one cycle end in one step and the next cycle's prompts arrive together:
  every cycle is a burst of ``m`` prefill steps, the prompts laid end to end over them: the
  ``j``-th of the ``c`` ends in step ``ceil(j I/T)``, the last step, partly filled, taking its share
  of a step, so it waits ``min(ceil(j I/T), m)``; a request waits ``w``, the mean of those, for its
  first token and the other ``m - w >= 0`` before its decode: ``TTFT = w tau_pre``, ``TPOT = (D
  tau_dec + (m - w) tau_pre)/D``; the first wave is such a burst. ``w`` is exact at a whole ``c`` (a
  floor sum); the closed form in ``c`` takes it over whole periods, ``w = Min(I/T (c + 1)/2 + (q -
  1)/(2 q), m)`` with ``I/T = p/q`` in lowest terms, within half a step (``_wave_steps``).

KV capacity bounds the running requests: ``c_kv = floor(R/kv)``, with ``R`` the KV room the
engine leaves on the fullest chip of HBM ``M`` holding weights ``W`` and the activations ``A`` of a
step of ``T`` tokens, by the engine's memory rule and fraction ``phi``
(:mod:`symcost.hardware.serving`: ``phi M - W - A`` for vLLM, ``phi (M - W - A)`` for
TensorRT-LLM, ``phi M - W`` for SGLang), and ``kv`` what a running request holds, its ``n`` tokens
in blocks of ``B``: ``ceil(n/B) B`` tokens' worth (vLLM 16, TensorRT-LLM 32, SGLang 1): the
request's whole length ``I + D`` on an engine that reserves it at admission (TensorRT-LLM's
``GUARANTEED_NO_EVICT``; SGLang), its tokens so far on one that allocates on demand (vLLM), the
mean over its decode steps of ``ceil((I + j)/B) B`` (``Workload.held_tokens``; the running
requests are at every stage of their decode); past ``c_kv`` the engine runs ``c_kv`` and the
others queue (vLLM preempts the newest and recomputes it later, so part of that wait falls after
the first token; the mean field counts all of it before). The engine's own cap on
running requests ``N`` (``max_num_seqs``: vLLM 1024 on 70 GiB and more, else 256; SGLang 2048;
TensorRT-LLM 2048) bounds them the same way: the engine runs ``min(c_kv, N)`` (regime
``kv-bound`` or ``max-seqs``). ``T``, ``phi``, the rule
and ``B`` are the engine profile's (``Runtime.serving``), or :data:`DEFAULT_TOKEN_BUDGET`,
:data:`DEFAULT_MEMORY_FRACTION`, ``"total"`` and 1 for a profile without them. In every regime
Little's law closes the loop: ``c = X (TTFT + D TPOT)``, so ``TTFT = c/X - D TPOT`` (the wait for
the budget or for KV space included). With ``p`` pipeline stages the engine runs ``p`` micro-batches of ``c/p`` requests
(vLLM's virtual engines), each stepping through every stage: ``X = min(c, p) X_1(max(1, c/p))``.

A benchmark at a fixed concurrency starts its ``c`` clients at once: their first requests queue
for the budget behind each other (``first_wave_ttft``): the prompts are served ``Q`` tokens per
step, ``Q = T - c/2`` beside the decode tokens of those served before (half of them on average;
``Q = T`` on an engine that alternates), so the ``j``-th gets its first token after
``ceil(j I/Q)`` steps, their exact mean at a whole ``c`` (the closed form in ``c``:
``(c + 1) I/(2 Q) + 1/2``, within half a step); a synchronized batch's TTFT is its one step's.
On an engine that mixes prefill and decode the requests then end in the steps they started in,
staggered, and the steady state follows; on one that alternates every cycle is such a burst
(above). A benchmark's mean TTFT counts the first wave once in ``waves`` requests
per client (:meth:`ServingCurve.benchmark_ttft`, :data:`BENCHMARK_WAVES`).

At an arrival rate ``lambda`` (Poisson; an open loop) the running requests are the fewest whose
closed-loop throughput reaches ``lambda`` (mean-value analysis), and a prompt also queues for
admission as in an M/D/1 queue served at the engine's peak throughput ``X_max``: mean wait
``rho/(2 X_max (1 - rho))``, ``rho = lambda/X_max`` (Pollaczek-Khinchine with a deterministic
service time). Arrivals one by one form no burst: on an engine that alternates the prompt is
prefilled in its own step and every decoding request sees the cycle's other prefill steps
(``TTFT = own tau_pre``, ``TPOT = (D tau_dec + (m - own) tau_pre)/D``).

NB: a mean-field steady state: every step of a regime alike, lengths at their mean (a mix's
spread enters only ``K`` and the KV bound); the prefill-emitted first token counts in TTFT, not in
TPOT (as serving benchmarks measure TPOT: ``(E2E - TTFT)/(O - 1)``).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, NamedTuple, Optional

import numpy as np
import sympy as sp

from ...core import symbols as sym
from ...core._expr import exact_value
from ...core.dtypes import DataType
from ...errors import ConfigError
from ...hardware import Hardware
from ...hardware import get as get_hardware
from ...hardware.serving import memory_bound, paged_tokens
from ...models.model import Model
from ..inference import inference_step
from .queueing import PERCENTILES, md1_wait_quantile
from .steps import EngineSteps, engine_layout, engine_steps
from .workload import Workload, exact_number

__all__ = ["BENCHMARK_WAVES", "DEFAULT_MEMORY_FRACTION", "DEFAULT_TOKEN_BUDGET", "SEPARATE_PREFILL", "EngineDefaults",
           "ServingCurve", "ServingMemory", "ServingPoint", "continuous_batching", "engine_defaults", "serving_curve"]

DEFAULT_TOKEN_BUDGET = 8192
"""Tokens per engine step (``max_num_batched_tokens``) under a profile that sets none (``neutral``):
vLLM's default for its OpenAI server on GPUs of 70 GiB or more (``vllm/engine/arg_utils.py``,
``EngineArgs`` batch defaults), TensorRT-LLM's ``max_num_tokens`` and SGLang's
``chunked_prefill_size`` on H100 and H200 (``sglang/srt/server_args.py``). The named profiles carry
their own, per chip (``symcost/hardware/engines/*.json``, ``serving.token_budget``)."""

DEFAULT_MEMORY_FRACTION = sp.Rational(9, 10)
"""Share of HBM the engine may fill (weights, activations, KV cache) under a profile that sets
none: vLLM's ``gpu_memory_utilization`` default 0.9 (``vllm/config/cache.py``). The named profiles
carry their own fraction and how it is counted (``serving.memory_fraction``, ``memory_rule``)."""

BENCHMARK_WAVES = 10
"""Requests each client of a benchmark at a fixed concurrency sends, by default (``waves`` of
:meth:`ServingCurve.benchmark_ttft`): AIConfigurator's serving benchmark runs genai-perf with
``--request-count 10 c`` and ``--warmup-request-count 2 c`` at concurrency ``c``
(``aiconfigurator/eval/benchmarks/genai_perf_runner.py``); the profiled requests start from an
idle engine, as AIPerf (genai-perf's successor, Dynamo's benchmark client) waits for every warmup
response before it profiles (``docs/tutorials/warmup.md``, "Grace Period")."""

SEPARATE_PREFILL = frozenset({"sglang"})
"""Engine backends whose steps carry prefill or decode, never both: SGLang unless
``--enable-mixed-chunk`` (``ServerArgs.enable_mixed_chunk = False``). vLLM V1 and TensorRT-LLM's
in-flight batching put prefill chunks and decode tokens in one step."""


@dataclass(frozen=True)
class _Regime:
    """One regime of the steady state for ``u`` requests per micro-batch: it holds for
    ``u <= upper``; times in seconds, ``throughput`` in requests/s of one micro-batch."""

    name: str
    upper: Any
    ttft: Any
    tpot: Any
    throughput: Any
    prefill_step: Any
    decode_step: Any
    running: Any
    first_wave: Any = None


@dataclass(frozen=True)
class _Load:
    """The workload's means and the budget: ``I``, ``D``, ``K``, ``T`` (exact numbers)."""

    prompt: sp.Expr
    decode: sp.Expr
    context: sp.Expr
    budget: sp.Expr
    exact: Any = None
    """The exact load behind a float64 one (the float path's ceilings are counted exactly)."""


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """``sum(floor((a i + b)/m) for i in range(n))`` for integers ``n, m >= 1``, ``a, b >= 0``, in
    ``O(log m)`` steps (the Euclid-like reduction of AtCoder Library's ``floor_sum``)."""
    total = 0
    while True:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        top = a * n + b
        if top < m:
            return total
        n, b = divmod(top, m)
        m, a = a, m


def _ceiling_sum(n: int, p: int, q: int) -> int:
    """``sum(ceil(j p/q) for j in 1 .. n)``, exactly: ``ceil(j p/q) = floor((j p + q - 1)/q)``."""
    return _floor_sum(n, q, p, p + q - 1) if n > 0 else 0


def _capped_wave(u: int, p: int, q: int, capped: bool = True) -> Fraction:
    """The mean over ``j = 1 .. u`` of ``ceil(j r)``, ``r = p/q``, or with ``capped`` of ``min(ceil(j
    r), u r)``: the steps the ``j``-th prompt waits, the burst's last step (``u r`` not whole)
    counted for the share of a step it fills."""
    total = Fraction(_ceiling_sum(u, p, q))
    last = -((-u * p) // q)  # ceil(u r): the step the last prompt ends in
    if capped and (u * p) % q:
        ending = u - ((last - 1) * q) // p  # the prompts that end in it: j r > last - 1
        total -= ending * (last - Fraction(u * p, q))
    return total / u


def _wave_steps(per_step: Any, u: Any, load: _Load, capped: bool = False) -> Any:
    """The mean over ``j = 1 .. u`` of ``ceil(j r)``, ``r = I/Q`` (``I`` the load's prompt, ``Q =
    per_step``): the steps the ``j``-th of ``u`` prompts laid end to end over steps of ``Q`` prefill
    tokens waits for its first token. With ``capped`` (steps of prefill alone, an engine that
    alternates) of ``min(ceil(j r), u r)``: the burst's last step, partly filled, takes the share
    ``u r - floor(u r)`` of a step (as the ``m = u r`` steps of a cycle do), so the mean never
    exceeds ``u r`` (a mixed step carries its decode tokens whatever its prefill: uncapped). Exact where
    ``u`` is a whole number (a floor sum; the float64 path counts each whole ``u`` exactly, ``I``
    from ``load.exact``). Elsewhere (``u`` a symbol or a fraction) the mean over whole periods:
    with ``r = p/q`` in lowest terms, ``r (u + 1)/2 + (q - 1)/(2 q)`` (capped: its ``Min`` with ``r
    u``; the fractional parts of ``-j r`` run through ``0, 1/q, .. (q - 1)/q``
    every ``q`` prompts), exact where ``q`` divides ``u``, within ``1/2`` step else; where ``Q`` is
    not a number (it holds ``u``) ``(q - 1)/(2 q)`` is taken as ``1/2``.

    >>> _wave_steps(sp.Integer(40), sp.Integer(4), _Load(sp.Integer(30), 7, 30, 40))  # 1, 2, 3, 3
    9/4
    >>> _wave_steps(sp.Integer(40), sp.Integer(2), _Load(sp.Integer(24), 7, 24, 40), capped=True)  # 1, 6/5
    11/10
    """
    if isinstance(u, (np.ndarray, float, np.floating)):  # the float64 path (a cap's u is a float)
        steps = _wave_steps_floats(per_step, np.atleast_1d(np.asarray(u, dtype=np.float64)), load, capped)
        return steps if isinstance(u, np.ndarray) else float(steps[0])
    ratio = load.prompt / per_step
    whole = isinstance(u, (int, sp.Integer))
    if whole and isinstance(ratio, sp.Rational):
        mean = _capped_wave(int(u), int(ratio.p), int(ratio.q), capped)
        return sp.Rational(mean.numerator, mean.denominator)
    spread = (1 - sp.Rational(1, ratio.q)) / 2 if isinstance(ratio, sp.Rational) else sp.Rational(1, 2)
    periods, burst = ratio * (u + 1) / 2 + spread, ratio * u
    if not capped:
        return periods
    return sp.Min(periods, burst, evaluate=bool(periods.is_number and burst.is_number))


def _wave_steps_floats(per_step: Any, u: np.ndarray, load: _Load, capped: bool = False) -> np.ndarray:
    """:func:`_wave_steps` over a float64 array of ``u`` (``per_step`` a float or an array of them,
    ``T`` or ``T - u/2``: halves, exact in float64), each point in exact fractions."""
    prompt = Fraction(str(sp.Rational((load.exact or load).prompt)))
    steps = np.broadcast_to(np.asarray(per_step, dtype=np.float64), u.shape)
    out = np.empty(u.shape, dtype=np.float64)
    for i, (v, q) in enumerate(zip(u.flat, steps.flat)):
        r = prompt / Fraction(float(q))
        if float(v).is_integer() and v >= 1:
            out.flat[i] = float(_capped_wave(int(v), r.numerator, r.denominator, capped))
        else:
            periods = r * Fraction(float(v) + 1) / 2 + (1 - Fraction(1, r.denominator)) / 2
            out.flat[i] = float(min(periods, r * Fraction(float(v))) if capped else periods)
    return out


def _cycle(load: _Load, u: Any, mixed: Any, decode: Any, m: Any, own: Any) -> tuple[Any, Any, Any]:
    """``(TTFT, TPOT, X)`` of a cycle of ``m`` prefill-carrying steps (``mixed`` each; the request's
    own prefill takes ``own`` of them) and decode steps (``decode`` each) for ``u`` requests."""
    D = load.decode
    rest = D + own - m  # decode-only steps per cycle
    tpot = ((m - own) * mixed + rest * decode) / D
    return own * mixed, tpot, u / (m * mixed + rest * decode)


def _mixed_bounds(load: _Load) -> list[tuple[str, Any]]:
    """``(name, largest u)`` of each regime of an engine that batches prefill chunks and decode
    tokens in one step (the module's docstring): they depend on the workload and the budget only."""
    isl, D, T = load.prompt, load.decode, load.budget
    whole = T / isl  # synchronized up to here
    fits = T - isl + 1  # a whole prompt fits beside u - 1 decode tokens up to here
    saturation = T * (D + 1) / (isl + D) if T >= isl + D else (isl + D * (T + 1)) / (isl + D)
    bounds = [("synchronized", whole)]
    if min(fits, saturation) > whole:
        bounds.append(("interleaved", min(fits, saturation)))
    if saturation > max(whole, fits):
        bounds.append(("chunked", saturation))
    return bounds + [("saturated", sp.oo)]


def _mixed_regimes(steps: EngineSteps, load: _Load, u: sp.Symbol, only: Optional[set] = None) -> list[_Regime]:
    """The regimes of an engine that batches prefill chunks and decode tokens in one step (those
    named in ``only``, default all)."""
    isl, K, T = load.prompt, load.context, load.budget
    decode = steps.decode(u, K)

    def build(name: str, upper: Any) -> _Regime:
        if name == "synchronized":
            return _regime(steps, load, name, upper, u, _Prefill(u * isl, u, isl, 0, 1), decode)
        if name == "interleaved":
            rows = (T - u) / (isl - 1)
            return _regime(steps, load, name, upper, u, _Prefill(isl * rows, rows, isl, 0, 1), decode)
        if name == "chunked":
            chunk = T - u + 1
            return _regime(steps, load, name, upper, u, _Prefill(chunk, 1, chunk, (isl - chunk) / 2, isl / chunk),
                           decode)
        return _saturated(steps, load, u)

    return [build(name, upper) for name, upper in _mixed_bounds(load) if only is None or name in only]


class _Prefill(NamedTuple):
    """The prefill a regime's prefill-carrying steps hold: ``tokens`` in all, ``rows`` prompt rows
    of ``length`` tokens after ``prefix`` earlier ones; a request's own prefill takes ``own`` steps."""

    tokens: Any
    rows: Any
    length: Any
    prefix: Any
    own: Any


def _regime(steps: EngineSteps, load: _Load, name: str, upper: Any, u: Any, chunks: _Prefill,
            decode: Any) -> _Regime:
    """A regime whose prefill-carrying steps hold ``chunks`` (:class:`_Prefill`) beside the
    ``u - rows`` others' decode tokens."""
    isl = load.prompt
    prefill, rows, length, prefix, own = chunks
    tokens = u - rows
    mixed = steps.mixed(tokens, load.context, rows, length, prefix, logits=tokens + prefill / isl)
    ttft, tpot, throughput = _cycle(load, u, mixed, decode, u * isl / prefill, own)
    return _Regime(name, upper, ttft, tpot, throughput, mixed, decode, u)


def _saturated(steps: EngineSteps, load: _Load, u: Any) -> _Regime:
    """Every step mixed at the budget's flow balance: ``T I/(I + D)`` prefill tokens and
    ``T D/(I + D)`` decode tokens; the others wait (Little's law gives their TTFT)."""
    isl, D, K, T = load.prompt, load.decode, load.context, load.budget
    prefill, tokens = T * isl / (isl + D), T * D / (isl + D)
    length = min(prefill, isl)
    mixed = steps.mixed(tokens, K, prefill / length, length, (isl - length) / 2, logits=tokens + prefill / isl)
    throughput = prefill / isl / mixed
    # running: the decoding requests and the prompts in the step, T (D + 1)/(I + D)
    return _Regime("saturated", sp.oo, u / throughput - D * mixed, mixed, throughput, mixed, mixed,
                   tokens + prefill / isl)


def _alternating_bounds(load: _Load) -> list[tuple[str, Any]]:
    """``(name, largest u)`` of each regime of an engine whose steps carry prefill or decode."""
    return [("synchronized", load.budget / load.prompt), ("alternating", sp.oo)]


def _alternating_regimes(steps: EngineSteps, load: _Load, u: sp.Symbol, only: Optional[set] = None) -> list[_Regime]:
    """The regimes of an engine whose steps carry prefill or decode (SGLang's default; those named
    in ``only``, default all)."""
    isl, D, K, T = load.prompt, load.decode, load.context, load.budget
    decode = steps.decode(u, K)
    regimes = []
    if only is None or "synchronized" in only:
        regimes.append(_regime(steps, load, "synchronized", T / isl, u, _Prefill(u * isl, u, isl, 0, 1), decode))
    if only is None or "alternating" in only:
        length = min(T, isl)
        prefill = steps.mixed(0, 0, T / length, length, (isl - length) / 2, logits=T / isl)
        # a prefill step emits no decode token: the cycle is m prefill steps and D decode steps,
        # the m in a burst (prefill first, the decoders in step): the mean of ceil(j I/T) of them
        # before the first token, the other m - wait stalls of the decode (the module's docstring)
        m = u * isl / T
        wait = _wave_steps(T, u, load, capped=True)  # at most m: a decode token never waits less than a step
        burst = wait * prefill
        tpot = (D * decode + (m - wait) * prefill) / D
        throughput = u / (m * prefill + D * decode)
        regimes.append(_Regime("alternating", sp.oo, burst, tpot, throughput, prefill, decode, u, burst))
    return regimes


def _capped(regimes: list[_Regime], limit: Any, u: Any, decode: Any, name: str = "kv-bound",
            at_limit: Optional[list[_Regime]] = None) -> list[_Regime]:
    """``regimes`` up to ``limit`` running requests per micro-batch, then a ``name`` regime (what
    bounds them: ``kv-bound``, ``max-seqs``) that runs ``limit`` and queues the others (Little's
    law: ``TTFT = u/X - D TPOT``). ``at_limit``: the same regimes built at ``u = limit`` (the
    numeric and exact-point paths); ``None``: the expressions in the symbol ``u`` at the limit."""
    kept = []
    for i, r in enumerate(regimes):
        if r.upper >= limit:
            kept.append(dataclasses.replace(r, upper=limit))
            if at_limit is None:
                at = {u: limit}
                tpot, throughput, wave, pre, dec = (sp.sympify(x).xreplace(at) for x in
                                                    (r.tpot, r.throughput, r.first_wave, r.prefill_step,
                                                     r.decode_step))
            else:
                top = at_limit[i]
                tpot, throughput, wave, pre, dec = (top.tpot, top.throughput, top.first_wave, top.prefill_step,
                                                    top.decode_step)
            # the first wave's requests past the limit wait for a slot: the k-th of them 1/X per
            # earlier one, (u - limit)(u - limit + 1)/(2 X) in all, shared by the u requests
            excess = u - limit
            wave = wave + excess * (excess + 1) / (2 * u * throughput)
            kept.append(_Regime(name, sp.oo, u / throughput - decode * tpot, tpot, throughput, pre, dec, limit, wave))
            return kept
        kept.append(r)
    return kept  # pragma: no cover (the last regime's upper is oo)


def _least(a: Any, b: Any) -> Any:
    """``min(a, b)``: ``sp.Min`` when either is SymPy's (a symbol or an exact number), else
    ``np.minimum`` (the float64 path: arrays and floats)."""
    if isinstance(a, sp.Basic) or isinstance(b, sp.Basic):
        return sp.Min(a, b)
    return np.minimum(a, b)


def _regimes(steps: Any, load: _Load, u: Any, mixed: bool, only: Optional[set] = None) -> list[_Regime]:
    """Every regime (those named in ``only``) at ``u`` (a symbol, an exact number, or a float64
    array with the steps' :attr:`~symcost.plan.serving.steps.EngineSteps.numeric` and a float
    load), first wave included."""
    regimes = (_mixed_regimes if mixed else _alternating_regimes)(steps, load, u, only)
    return _first_wave(steps, load, regimes, u, mixed)


def _first_wave(steps: EngineSteps, load: _Load, regimes: list[_Regime], u: sp.Symbol, mixed: bool) -> list[_Regime]:
    """Each regime with the mean TTFT of the first ``u`` requests, sent together to an idle engine:
    a synchronized batch's TTFT; else the prompts queue for the budget, ``Q`` prefill tokens per
    step beside the ``u/2`` decode tokens of those served so far on average (``Q = T - u/2``, at
    least half the budget; none and ``Q = T`` without mixed steps), the ``j``-th served after
    ``ceil(j I/Q)`` steps, on average :func:`_wave_steps` of them (the module's docstring)."""
    isl, T = load.prompt, load.budget
    if all(r.name == "synchronized" or r.first_wave is not None for r in regimes):
        return [r if r.first_wave is not None else dataclasses.replace(r, first_wave=r.ttft) for r in regimes]
    decoders = _least(u / 2, T / 2) if mixed else 0
    prefill = T - decoders
    length = _least(prefill, isl)
    step = steps.mixed(decoders, isl + 1, prefill / length, length, (isl - length) / 2, logits=decoders + prefill / isl)
    burst = _wave_steps(prefill, u, load) * step
    return [r if r.first_wave is not None else
            dataclasses.replace(r, first_wave=r.ttft if r.name == "synchronized" else burst) for r in regimes]


def _piecewise(regimes: list[_Regime], field: str, u: sp.Symbol) -> Any:
    """One quantity over every regime, as a ``Piecewise`` in ``u`` (one piece: the expression)."""
    pieces = [(getattr(r, field), True if r.upper == sp.oo else sp.Le(u, r.upper)) for r in regimes]
    return pieces[0][0] if len(pieces) == 1 else sp.Piecewise(*pieces)


@dataclass(frozen=True)
class ServingPoint:
    """The steady state of one engine at one load (:func:`continuous_batching`); times in seconds,
    rates per second, exact numbers (``oo`` where an arrival rate exceeds what the engine serves).

    ``concurrency``: the requests in the closed loop (``None`` at an arrival ``rate``);
    ``running``: those the engine runs (at most ``kv_limit``); ``regime``: which steady state
    (the module's docstring); ``request_rate``: requests served per second; ``tokens_per_second``:
    output tokens per second of the engine, ``tokens_per_second_per_gpu`` over its ``chips``,
    ``tokens_per_second_per_user`` ``1/TPOT``; ``prefill_step`` and ``decode_step``: the step that
    carries prefill and a decode-only step; ``queue``: how TTFT's wait is modelled;
    ``first_wave_ttft``: the mean TTFT of the first ``concurrency`` requests sent at once to an
    idle engine (a closed loop only); ``ttft_percentiles``: at an arrival rate, ``{p: TTFT}`` for
    ``p`` of :data:`~symcost.plan.serving.queueing.PERCENTILES`, the steady TTFT plus the M/D/1
    wait's percentile (:func:`~symcost.plan.serving.queueing.md1_wait_quantile`; a number, not a
    closed form); ``None`` in a closed loop, whose mean-field TTFT is the same for every request.
    """

    concurrency: Any
    rate: Any
    running: Any
    regime: str
    ttft: Any
    tpot: Any
    request_rate: Any
    tokens_per_second: Any
    tokens_per_second_per_gpu: Any
    tokens_per_second_per_user: Any
    prefill_step: Any
    decode_step: Any
    kv_limit: int
    chips: int
    queue: str
    first_wave_ttft: Any = None
    ttft_percentiles: Any = None

    def __str__(self) -> str:
        from ...core import units

        load = f"concurrency {self.concurrency}" if self.rate is None else f"rate {float(self.rate):.4g}/s"
        if self.ttft == sp.oo:
            return f"{load}: overloaded (the engine serves at most {float(self.request_rate):.4g} requests/s)"
        return (f"{load} ({self.regime}, {self.running} running, KV room for {self.kv_limit}): "
                f"TTFT {units.format_time(self.ttft, digits=3)}, TPOT {units.format_time(self.tpot, digits=3)}, "
                f"{float(self.tokens_per_second_per_gpu):,.0f} tokens/s/GPU, "
                f"{float(self.tokens_per_second_per_user):,.1f} tokens/s/user")


@dataclass(frozen=True)
class ServingMemory:
    """What bounds the running requests, per chip of the fullest pipeline stage (bytes):
    ``budget`` the bytes weights, activations and KV cache may reach together under the engine's
    ``rule`` (:func:`~symcost.hardware.serving.memory_bound`), ``kv_per_request`` what a running
    request holds in blocks of ``block_tokens``: its KV cache at its end where the engine reserves
    it (``kv_allocation`` ``"reserved"``), its mean over its decode steps where the engine
    allocates on demand (``"on_demand"``, :meth:`~symcost.plan.serving.workload.Workload.held_tokens`)."""

    budget: Any
    weights: Any
    activations: Any
    kv_per_request: Any
    kv_limit: int
    rule: str = "total"
    block_tokens: int = 1


@dataclass(frozen=True)
class EngineDefaults:
    """The token budget ``T``, memory fraction ``phi``, memory rule, KV block size and cap on
    running requests (``None``: none) an engine runs with on a chip and layout (:func:`engine_defaults`)."""

    token_budget: int
    memory_fraction: Any
    memory_rule: str
    kv_block_tokens: int
    max_num_seqs: Optional[int] = None
    kv_allocation: str = "reserved"


def engine_defaults(chip: Hardware, gpus: int, token_budget: Optional[int] = None,
                    memory_fraction: Any = None, max_num_seqs: Optional[int] = None) -> EngineDefaults:
    """What the engine of ``chip.runtime`` runs with on ``chip`` in a replica of ``gpus`` chips
    (TP x PP): the given ``token_budget``, ``memory_fraction`` and ``max_num_seqs``, else the
    profile's for this chip (``Runtime.serving``), else :data:`DEFAULT_TOKEN_BUDGET`,
    :data:`DEFAULT_MEMORY_FRACTION` and no cap on running requests.

    >>> from symcost import hardware
    >>> d = engine_defaults(hardware.get("B200").with_runtime("sglang"), 1)
    >>> d.token_budget, d.memory_fraction, d.memory_rule    # 1 - (26,112 + 128) MiB / 184,320 MiB (180 GiB): 0.858
    (16384, 429/500, 'static')
    """
    serving = chip.runtime.serving
    budget = _budget(token_budget if token_budget is not None else
                     serving.budget(chip.name, chip.hbm_capacity, gpus) or DEFAULT_TOKEN_BUDGET)
    if memory_fraction is None:
        memory_fraction = serving.fraction(chip.name, chip.hbm_capacity, gpus)
    fraction = exact_number(DEFAULT_MEMORY_FRACTION if memory_fraction is None else memory_fraction,
                            "memory_fraction")
    if fraction > 1:
        raise ConfigError(f"memory_fraction must be at most 1, got {fraction}")
    seqs = max_num_seqs if max_num_seqs is not None else serving.seqs(chip.name, chip.hbm_capacity, gpus)
    if seqs is not None and (isinstance(seqs, bool) or not isinstance(seqs, (int, sp.Integer)) or seqs < 1):
        raise ConfigError(f"max_num_seqs must be a positive whole number of requests, got {seqs!r}")
    return EngineDefaults(budget, fraction, serving.memory_rule, int(serving.kv_block_tokens),
                          None if seqs is None else int(seqs), serving.kv_allocation)


def _memory(model: Model, chip: Hardware, workload: Workload, engine: EngineDefaults, dtype: Any,
            par: Any) -> ServingMemory:
    """The KV capacity in requests: ``floor(R/kv)`` (the module's docstring)."""
    empty = inference_step(model, chip, 1, 1, dtype, par)
    step = inference_step(model, chip, 1, engine.token_budget, dtype, par)  # the activations of a full step
    block = engine.kv_block_tokens
    if engine.kv_allocation == "on_demand":
        kv = _kv_at(model, chip, workload.held_tokens(chip.runtime, block), dtype, par)
    else:
        kv = sp.Add(*(w * inference_step(model, chip, 1, int(paged_tokens(keys, block)), dtype, par).kv_cache_memory
                      for keys, w in workload.final_contexts(chip.runtime)))
    bound = memory_bound(engine.memory_rule, engine.memory_fraction, chip.hbm_capacity, empty.weight_memory,
                         step.activation_memory)
    room = bound - empty.weight_memory - step.activation_memory
    limit = int(sp.floor(room / kv)) if room > 0 else 0
    if limit < 1:
        raise ConfigError(f"memory: {model.name} on {chip.name} leaves {float(room) / 1e9:.3g} GB per chip for the "
                          f"KV cache ({engine.memory_rule} rule, fraction {engine.memory_fraction}), less than one "
                          f"request's {float(kv) / 1e9:.3g} GB ({workload.label()})")
    return ServingMemory(exact_value(bound), empty.weight_memory, step.activation_memory, exact_value(kv), limit,
                         engine.memory_rule, block)


def _kv_at(model: Model, chip: Hardware, tokens: Any, dtype: Any, par: Any) -> Any:
    """The KV cache of one request of ``tokens`` tokens, a whole number or not: between the whole
    numbers ``n <= tokens < n + 1`` on the line through their caches (exact where the cache grows
    by the same bytes every token, as every full-attention layer's does: conventions, rule 9; a
    sliding window's cache stops growing at the window, and a mean of contexts that straddle it
    is counted at the mean context)."""
    n = int(sp.floor(tokens))
    low = inference_step(model, chip, 1, n, dtype, par).kv_cache_memory
    if n == tokens:
        return low
    high = inference_step(model, chip, 1, n + 1, dtype, par).kv_cache_memory
    return low + (tokens - n) * (high - low)


_FIELDS = ("ttft", "tpot", "throughput", "prefill_step", "decode_step", "running", "first_wave")
"""A regime's quantities, as the curve carries them."""


@dataclass(frozen=True)
class _Engine:
    """What one engine's curve is built from: its steps, the workload's means ``I, D, K`` and the
    budget ``T`` (:class:`_Load`), whether steps mix prefill and decode, the cap on running requests
    (``limit``, named ``bound``) and its pipeline stages."""

    steps: EngineSteps
    load: _Load
    mixed: bool
    limit: int
    bound: str
    stages: int

    def capped(self, u: Any, steps: Any, load: _Load) -> list[_Regime]:
        """The regimes at ``u`` requests per micro-batch, up to the cap: a symbol (the closed forms),
        an exact number or a float64 array (then ``steps`` numeric, ``load`` in floats)."""
        limit = self.limit / (sp.Integer(self.stages) if isinstance(load.budget, sp.Basic) else self.stages)
        at = None if isinstance(u, sp.Symbol) else _regimes(steps, load, limit, self.mixed)
        return _capped(_regimes(steps, load, u, self.mixed), limit, u, load.decode, self.bound, at)

    def bounds(self) -> list[tuple[str, Any]]:
        """``(name, largest u)`` of each regime per micro-batch up to the cap, then the cap's."""
        limit = sp.Rational(self.limit, self.stages)
        kept: list[tuple[str, Any]] = []
        for name, upper in (_mixed_bounds if self.mixed else _alternating_bounds)(self.load):
            if upper >= limit:
                return kept + [(name, limit), (self.bound, sp.oo)]
            kept.append((name, upper))
        return kept  # pragma: no cover (the last regime's upper is oo)

    def closed(self) -> dict[str, Any]:
        """Every quantity as a ``Piecewise`` in the concurrency ``c`` (the module's docstring)."""
        u = sym.concurrency
        regimes = self.capped(u, self.steps, self.load)
        curve = {f: _piecewise(regimes, f, u) for f in _FIELDS}
        if self.stages != 1:  # p micro-batches of c/p requests (the module's docstring)
            per = {u: sp.Max(1, u / self.stages)}
            curve = {f: e.xreplace(per) for f, e in curve.items()}
            curve["throughput"] = sp.Min(u, self.stages) * curve["throughput"]
            curve["running"] = sp.Min(u, self.stages) * curve["running"]
        return curve

    def point(self, c: Any) -> dict[str, Any]:
        """Every quantity at ``c`` requests, exactly: the regime ``c`` falls in, evaluated at ``c``
        (the closed forms' value there, without building them)."""
        per = c if self.stages == 1 else max(sp.Integer(1), c / self.stages)
        bounds = self.bounds()
        i = next(i for i, (_, upper) in enumerate(bounds) if per <= upper)
        if i < len(bounds) - 1:  # only the regime c falls in is built
            regime = _regimes(self.steps, self.load, per, self.mixed, {bounds[i][0]})[0]
        else:  # the cap's: the last regime at the limit, the others queued
            limit = bounds[-2][1]
            top = _regimes(self.steps, self.load, limit, self.mixed, {bounds[-2][0]})[0]
            regime = _capped([top], limit, per, self.load.decode, self.bound, [top])[-1]
        out = {f: getattr(regime, f) for f in _FIELDS}
        if self.stages != 1:
            out["throughput"] = min(c, self.stages) * out["throughput"]
            out["running"] = min(c, self.stages) * out["running"]
        out["regime"] = regime.name
        return out

    def floats(self, c: np.ndarray) -> dict[str, np.ndarray]:
        """Every quantity over an array of concurrencies in float64: each regime with the compiled
        steps (:attr:`~symcost.plan.serving.steps.EngineSteps.numeric`), the regime of each point
        picked as :meth:`point` picks it."""
        prompt, decode, context, budget = (float(x) for x in (self.load.prompt, self.load.decode, self.load.context,
                                                              self.load.budget))
        load = _Load(prompt, decode, context, budget, exact=self.load)
        per = c if self.stages == 1 else np.maximum(1.0, c / self.stages)
        with np.errstate(divide="ignore", invalid="ignore"):  # a regime's values outside its range are unused
            regimes = self.capped(per, self.steps.numeric, load)
            picks = [per <= float(r.upper) for r in regimes[:-1]]
            out = {f: np.select(picks, [np.broadcast_to(np.asarray(getattr(r, f), dtype=np.float64), per.shape)
                                        for r in regimes[:-1]],
                                np.broadcast_to(np.asarray(getattr(regimes[-1], f), dtype=np.float64), per.shape))
                   for f in _FIELDS}
        if self.stages != 1:
            out["throughput"] = np.minimum(c, self.stages) * out["throughput"]
            out["running"] = np.minimum(c, self.stages) * out["running"]
        return out


@dataclass(frozen=True)
class ServingCurve:
    """One engine's steady state as a function of its concurrency ``c``
    (:data:`~symcost.core.symbols.concurrency`): ``ttft``, ``tpot``, ``request_rate`` (requests/s),
    ``tokens_per_second`` (output tokens/s of the engine), ``tokens_per_second_per_gpu`` and
    ``tokens_per_second_per_user`` are SymPy expressions in ``c``, piecewise over the
    :attr:`regimes` (the module's docstring), built on first use. :meth:`at` evaluates them exactly
    (the regime ``c`` falls in, at ``c``: the same value without building them), :meth:`sweep` in
    float64 over arrays (each regime on the compiled steps, NumPy over the concurrencies: no
    SymPy per point), :meth:`at_rate` at a Poisson arrival rate.
    """

    model: Model
    chip: Hardware
    steps: EngineSteps
    workload: Workload
    token_budget: int
    memory_fraction: Any
    mixed: bool
    memory: ServingMemory
    chips: int
    max_num_seqs: Optional[int] = None
    """The engine's cap on running requests (``None``: only the KV cache's)."""
    engine: Any = dataclasses.field(default=None, repr=False, compare=False)
    """How the curve is evaluated (the regimes' builder: symbolic, exact at a point, float64)."""

    @functools.cached_property
    def _closed(self) -> dict[str, Any]:
        return self.engine.closed()

    @property
    def regimes(self) -> tuple:
        """``(name, largest c)`` of each regime in turn (the last up to ``oo``)."""
        return tuple((name, upper * self.engine.stages) for name, upper in self.engine.bounds())

    @property
    def ttft(self) -> Any:
        """TTFT in seconds, a ``Piecewise`` in ``c``."""
        return self._closed["ttft"]

    @property
    def tpot(self) -> Any:
        """TPOT in seconds, a ``Piecewise`` in ``c``."""
        return self._closed["tpot"]

    @property
    def request_rate(self) -> Any:
        """Requests served per second, ``X``."""
        return self._closed["throughput"]

    @property
    def tokens_per_second(self) -> Any:
        """Output tokens per second of the engine, ``X O``."""
        return self.request_rate * self.workload.output_len

    @property
    def tokens_per_second_per_gpu(self) -> Any:
        """Output tokens per second per chip of the engine."""
        return self.tokens_per_second / self.chips

    @property
    def tokens_per_second_per_user(self) -> Any:
        """``1/TPOT``."""
        return 1 / self.tpot

    @property
    def prefill_step(self) -> Any:
        """The step that carries prefill."""
        return self._closed["prefill_step"]

    @property
    def decode_step(self) -> Any:
        """A decode-only step."""
        return self._closed["decode_step"]

    @property
    def running(self) -> Any:
        """The requests the engine runs (decoding or in prefill); the others of ``c`` wait."""
        return self._closed["running"]

    @property
    def first_wave_ttft(self) -> Any:
        """The mean TTFT of the first ``c`` requests when all are sent at once to an idle engine (a
        benchmark's start), against ``ttft``, the steady state's."""
        return self._closed["first_wave"]

    @property
    def kv_limit(self) -> int:
        """The requests the KV cache holds (all micro-batches together)."""
        return self.memory.kv_limit

    @property
    def running_limit(self) -> int:
        """The most requests the engine runs: ``min(kv_limit, max_num_seqs)``."""
        return self.kv_limit if self.max_num_seqs is None else min(self.kv_limit, self.max_num_seqs)

    def regime(self, concurrency: Any) -> str:
        """The name of the regime ``concurrency`` falls in."""
        c = exact_number(concurrency, "concurrency")
        return next(name for name, upper in self.regimes if c <= upper)

    def at(self, concurrency: Any) -> ServingPoint:
        """The steady state of a closed loop of ``concurrency`` requests, exactly."""
        c = exact_number(concurrency, "concurrency")
        p = self.engine.point(c)
        rate = p["throughput"]
        tokens = rate * self.workload.output_len
        value = {"ttft": p["ttft"], "tpot": p["tpot"], "request_rate": rate, "tokens_per_second": tokens,
                 "tokens_per_second_per_gpu": tokens / self.chips, "tokens_per_second_per_user": 1 / p["tpot"],
                 "prefill_step": p["prefill_step"], "decode_step": p["decode_step"], "running": p["running"],
                 "first_wave_ttft": p["first_wave"]}
        return ServingPoint(concurrency=c, rate=None, regime=self.regime(c), kv_limit=self.kv_limit, chips=self.chips,
                            queue="closed loop: TTFT = c/X - D TPOT (Little's law)",
                            **{k: exact_value(sp.sympify(v)) for k, v in value.items()})

    def benchmark_ttft(self, concurrency: Any, waves: Any = BENCHMARK_WAVES) -> Any:
        """The mean TTFT a benchmark measures at ``concurrency`` clients that each send ``waves``
        requests in turn to an idle engine (:data:`BENCHMARK_WAVES` by default): the first ``c``
        arrive together (``first_wave_ttft``), the others in the steady state (``ttft``), so

            TTFT_bench = (first_wave + (waves - 1) ttft)/waves,

        exactly; an engine that alternates repeats the burst every cycle (the module's docstring),
        so there both are the burst's.

        >>> from symcost import models
        >>> curve = serving_curve(models.get("llama-3-8b"), "H100_SXM", (2048, 128))
        >>> p = curve.at(64)
        >>> curve.benchmark_ttft(64) == (p.first_wave_ttft + 9 * p.ttft) / 10
        True
        """
        n = _waves(waves)
        p = self.at(concurrency)
        return exact_value((p.first_wave_ttft + (n - 1) * p.ttft) / n)

    def sweep(self, concurrency: Any) -> Any:
        """The curve's quantities in float64 over an array of concurrencies (a
        :class:`~symcost.core.sweep.SweepResult`; ``to_pandas()`` gives a table): each regime on
        the compiled steps over the array, no SymPy per point (the tests compare it with :meth:`at`)."""
        from ...core.sweep import SweepResult

        c = np.asarray(concurrency, dtype=np.float64)
        f = self.engine.floats(c)
        tokens = f["throughput"] * float(self.workload.output_len)
        arrays = {"ttft": f["ttft"], "tpot": f["tpot"], "request_rate": f["throughput"], "tokens_per_second": tokens,
                  "tokens_per_second_per_gpu": tokens / self.chips, "tokens_per_second_per_user": 1 / f["tpot"],
                  "first_wave_ttft": f["first_wave"], "running": f["running"],
                  "benchmark_ttft": (f["first_wave"] + (BENCHMARK_WAVES - 1) * f["ttft"]) / BENCHMARK_WAVES}
        return SweepResult(arrays, {"concurrency": concurrency})

    def at_rate(self, rate: Any) -> ServingPoint:
        """The steady state at ``rate`` Poisson arrivals per second: the fewest running requests
        whose closed-loop throughput reaches ``rate``, and an M/D/1 wait for admission at the
        engine's peak throughput (the module's docstring), its mean in ``ttft`` and its
        percentiles in ``ttft_percentiles``; overloaded (``oo``) at or past it."""
        lam = exact_number(rate, "rate")
        peak = self.at(self.running_limit)
        if lam >= peak.request_rate:
            return dataclasses.replace(peak, concurrency=None, rate=lam, regime="overloaded", ttft=sp.oo,
                                       first_wave_ttft=None, ttft_percentiles={p: sp.oo for p in PERCENTILES},
                                       queue="open loop: the arrivals exceed the engine's peak throughput")
        point = self._unsynchronized(self.at(self._running(lam)))
        rho = lam / peak.request_rate
        wait = rho / (2 * peak.request_rate * (1 - rho))
        tokens = lam * self.workload.output_len
        service = 1 / peak.request_rate
        percentiles = {p: point.ttft + md1_wait_quantile(lam, service, sp.Rational(p, 100)) for p in PERCENTILES}
        return dataclasses.replace(point, concurrency=None, rate=lam, ttft=exact_value(point.ttft + wait),
                                   ttft_percentiles=percentiles,
                                   first_wave_ttft=None, request_rate=lam, tokens_per_second=exact_value(tokens),
                                   tokens_per_second_per_gpu=exact_value(tokens / self.chips),
                                   queue="open loop: M/D/1 admission at the engine's peak throughput X_max, mean "
                                         "wait rho/(2 X_max (1 - rho))")

    def _unsynchronized(self, point: ServingPoint) -> ServingPoint:
        """``point`` where arrivals come one by one (an open loop): on an engine that alternates no
        burst forms, so a prompt is prefilled in its own ``own = max(1, I/T)`` steps and every
        decoding request sees the cycle's other ``m - own`` prefill steps: ``TTFT = own tau_pre``,
        ``TPOT = (D tau_dec + (m - own) tau_pre)/D``, ``m = u I/T`` (the throughput is the closed
        loop's); any other engine or regime as it is."""
        if self.mixed or point.regime != "alternating":
            return point
        load, stages = self.engine.load, self.engine.stages
        per = point.concurrency if stages == 1 else max(sp.Integer(1), point.concurrency / stages)
        own, m = max(sp.Integer(1), load.prompt / load.budget), per * load.prompt / load.budget
        tpot = exact_value((load.decode * point.decode_step + (m - own) * point.prefill_step) / load.decode)
        return dataclasses.replace(point, ttft=exact_value(own * point.prefill_step), tpot=tpot,
                                   tokens_per_second_per_user=exact_value(1 / tpot))

    def _running(self, rate: Any) -> int:
        """The fewest requests (1 .. running_limit) whose throughput reaches ``rate``: located in
        float64, settled exactly."""
        import numpy as np

        top = self.running_limit
        grid = np.arange(1, top + 1, dtype=np.float64)
        reached = np.nonzero(self.sweep(grid).request_rate >= float(rate))[0]
        n = int(reached[0]) + 1 if reached.size else top
        rates = lambda k: self.engine.point(sp.Integer(k))["throughput"]  # noqa: E731
        while n < top and rates(n) < rate:  # float64 rounding, either way
            n += 1
        while n > 1 and rates(n - 1) >= rate:
            n -= 1
        return n


def serving_curve(model: Model, hardware: Hardware | str, workload: Workload | tuple, *, dtype: Any = "bf16",
                  parallelism: Any = None, token_budget: Optional[int] = None,
                  memory_fraction: Any = None, mixed: Optional[bool] = None,
                  max_num_seqs: Optional[int] = None) -> ServingCurve:
    """The steady state of one engine of ``model`` on ``hardware`` (under its engine profile,
    e.g. ``hardware.get("H200").with_runtime("vllm")``) serving ``workload`` (a :class:`Workload`
    or ``(isl, osl)``), as closed forms in the concurrency ``c`` (see the module's docstring).
    ``token_budget``: tokens per step; ``memory_fraction``: the engine's memory fraction ``phi``
    (both by default the engine profile's for the chip and layout: :func:`engine_defaults`);
    ``mixed``: whether a step batches prefill and decode (default: by the engine's backend,
    :data:`SEPARATE_PREFILL`); ``max_num_seqs``: the most requests the engine runs (default the
    profile's, :func:`engine_defaults`).

    >>> from symcost import models, symbols as S
    >>> m = models.get("llama-3-8b")
    >>> curve = serving_curve(m, "H100_SXM", (1024, 130))     # 129 decode steps: 1025 ... 1153 keys
    >>> curve.regimes[0]                                      # all prompts in one step up to 8192/1024
    ('synchronized', 8)
    >>> curve.tpot.xreplace({S.concurrency: 1}) == m.inference_step("H100_SXM", 1, 1089).tpot
    True
    """
    chip = get_hardware(hardware)
    load = workload if isinstance(workload, Workload) else Workload.of(*workload)
    chip, par = engine_layout(model, chip, parallelism)
    DataType.parse(dtype)  # a bad dtype reported after the layout, before the engine's options (engine_steps' order)
    engine = engine_defaults(chip, int(par.tp * par.pp), token_budget, memory_fraction, max_num_seqs)
    budget, fraction = engine.token_budget, engine.memory_fraction
    stages, chips = int(par.pp), int(par.chips_per_replica * par.pp)
    memory = _memory(model, chip, load, engine, dtype, par)  # first: a layout with no KV room costs no step
    steps = engine_steps(model, chip, dtype, par)
    means = _Load(load.prompt_len, load.decode_steps(chip.runtime), load.decode_context(chip.runtime),
                  sp.Integer(budget))
    batched = chip.runtime.backend not in SEPARATE_PREFILL if mixed is None else bool(mixed)
    seqs = engine.max_num_seqs
    limit, bound = ((memory.kv_limit, "kv-bound") if seqs is None or seqs >= memory.kv_limit
                    else (seqs, "max-seqs"))
    return ServingCurve(model, chip, steps, load, budget, fraction, batched, memory, chips, seqs,
                        _Engine(steps, means, batched, limit, bound, stages))


def _waves(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, sp.Integer)) or int(value) < 1:
        raise ConfigError(f"waves must be a positive whole number of requests per client, got {value!r}")
    return int(value)


def _budget(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, sp.Integer)) or int(value) < 1:
        raise ConfigError(f"token_budget must be a positive whole number of tokens, got {value!r}")
    return int(value)


def continuous_batching(model: Model, hardware: Hardware | str, workload: Workload | tuple,
                        concurrency: Any = None, *, rate: Any = None, **options: Any) -> ServingPoint:
    """The steady state of one engine at ``concurrency`` requests (a closed loop) or at ``rate``
    Poisson arrivals per second (one of the two); ``options`` as :func:`serving_curve`.

    >>> from symcost import models
    >>> p = continuous_batching(models.get("llama-3-8b"), "H100_SXM", (1024, 129), 1)
    >>> p.regime, p.ttft == models.get("llama-3-8b").inference_step("H100_SXM", 1, 1024).ttft
    ('synchronized', True)
    """
    if (concurrency is None) == (rate is None):
        raise ConfigError("continuous_batching: give a concurrency or a rate (one of the two)")
    curve = serving_curve(model, hardware, workload, **options)
    return curve.at(concurrency) if rate is None else curve.at_rate(rate)
