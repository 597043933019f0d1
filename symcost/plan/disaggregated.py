"""Disaggregated serving: prefill and decode pools on their own chips, and how many of each.

Prefill instances run each prompt (batch 1) and send its KV cache to a decode instance over the
scale-out network; decode instances run a continuous batch. Given a request rate ``lam``
(requests/s, Poisson arrivals), a prompt of ``P`` tokens, ``O`` output tokens (the first from
the prefill, the other ``O - 1`` from the decode pool) and TTFT and TPOT targets,
:func:`pd_ratio` finds the fewest instances of each kind that meet them.

Prefill (a queue): requests split evenly over ``n_p`` instances, each one M/D/1 queue (Poisson
arrivals at ``lam / n_p``, a deterministic service time, the Pollaczek-Khinchine mean wait with
zero service variance), as DistServe models a prefill instance (Zhong et al., OSDI 2024,
"DistServe: Disaggregating Prefill and Decoding for Goodput-optimized Large Language Model
Serving", §3.1). A prompt's prefill takes ``D_s`` (every pipeline stage in turn and the sends
between them); a pipelined instance admits the next prompt once a stage is free, so its queue's
service time is the slowest stage's ``D_m`` (:func:`~symcost.plan.inference.prefill_stage_time`;
``D_m = D_s`` with one stage). DistServe's eq. 2 (eq. 1 at ``D_m = D_s``):

    TTFT(n_p) = D_s + T_kv + rho D_m / (2 (1 - rho)),    rho = lam D_m / n_p < 1,

the mean TTFT, with the KV transfer ``T_kv`` counted in it (NB: conservative: an engine may
stream the first token before the transfer ends). Solving ``TTFT <= target``:
``rho D_m <= 2 T' (1 - rho)``, i.e. ``n_p >= lam D_m (D_m + 2 T') / (2 T')`` with
``T' = target - D_s - T_kv``.

KV transfer: each prefill chip sends its shard of the prompt's KV cache (the fullest pipeline
stage's, per chip) to a decode instance in another scale-up domain, one point-to-point send over
its own scale-out link, timed by the chip's link model (:func:`symcost.hardware.timing.collective_time`,
NCCL's cost model): ``alpha_0 + t_coll + alpha_net + bytes / (B_out eta_net)``; each decode chip
receives its own shard at the decode parallelism over its link the same way, and ``T_kv`` is the
slower of the two (a decode instance with fewer chips receives several prefill chips' shards each).

Decode (a batch): the largest batch ``B`` whose TPOT at ``P + O - 1`` keys (the last step, the
longest context: NB conservative for every earlier step) meets the TPOT target and whose memory
fits: weights, the KV cache and one decode step's activations (:func:`~symcost.plan.inference.decode_step`:
the decode instance never prefills, so no prefill rule applies to it), and at most the engine's
``max_num_seqs`` (the same cap on running requests as the aggregated engine's). Under context or Ulysses
parallelism the cache is split ``n = sp * cp`` ways by keys, so the fullest rank's
``ceil((P + O - 1) / n)`` keys are costed (and ``ceil(P / n)`` received). By Little's law the decode pool holds
``lam (O - 1) TPOT(B)`` requests on average; ``n_d`` instances hold ``n_d B``, so
``n_d = ceil(lam (O - 1) TPOT(B) / B)`` (NB: a steady-state mean, with every running request
stepping at the full batch's TPOT).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Optional

import sympy as sp

from ..core import symbols as sym
from ..core._expr import as_expr, dim, exact_value
from ..core.ops import Collective
from ..core.parallelism import Parallelism, ParallelismLike
from ..errors import AssumptionError, ConfigError, one_line, symcost_error
from ..hardware import Hardware
from ..hardware import get as get_hardware
from ..hardware.timing import collective_time
from ..models.model import Model
from .inference import decode_step, inference_step, prefill_stage_time
from .pipeline import resolve_parallelism

__all__ = ["DisaggregatedPlan", "kv_transfer", "mean_ttft", "pd_ratio"]


def _positive(value: Any, field: str) -> sp.Expr:
    """A positive exact number (a float by its decimal digits)."""
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ConfigError(f"{field} must be a finite number, got {value}")
        value = Fraction(repr(value))
    x = as_expr(value, field)
    if not x.is_number or not x > 0:
        raise ConfigError(f"{field} must be a positive number, got {x}")
    return x


def _non_negative(value: Any, field: str) -> sp.Expr:
    """A number at least 0 (``_positive``'s rules otherwise)."""
    if isinstance(value, (int, Fraction)) and value == 0 or isinstance(value, sp.Expr) and value == 0:
        return sp.Integer(0)
    return _positive(value, field)


def kv_transfer(model: Model, hardware: Hardware | str, prompt_len: Any, dtype: Any = "bf16",
                parallelism: ParallelismLike = None) -> tuple[Any, Any]:
    """``(bytes, seconds)`` of handing one prompt's KV cache from a prefill instance to a decode
    instance: each prefill chip's shard (the fullest stage's, per chip) in one point-to-point
    send over its scale-out link to another scale-up domain (the chip's link model).

    >>> from symcost import models, hardware
    >>> chip = hardware.get("H100_SXM")
    >>> nbytes, seconds = kv_transfer(models.get("llama-3-8b"), chip, 4096)
    >>> nbytes == 2 * 32 * 8 * 128 * 2 * 4096     # K and V, 32 layers, 8 KV heads of 128, bf16
    True
    """
    chip = get_hardware(hardware)
    nbytes = inference_step(model, chip, 1, prompt_len, dtype, parallelism).kv_cache_memory
    return nbytes, _send_time(nbytes, chip)


def mean_ttft(prefill_time: Any, transfer_time: Any, rate: Any, num_prefill: int, stage_time: Any = None) -> Any:
    """Mean TTFT of ``num_prefill`` M/D/1 prefill instances sharing Poisson arrivals at ``rate``:
    ``D_s + T_kv + rho D_m / (2 (1 - rho))``, ``rho = rate D_m / num_prefill`` (DistServe, eq. 2),
    with ``D_s`` the whole prefill (``prefill_time``) and ``D_m`` its slowest pipeline stage
    (``stage_time``; ``None``: ``D_s``, one stage, eq. 1); ``oo`` when ``rho >= 1`` (the queue grows
    without bound).

    >>> mean_ttft(1, 0, 1, 2)     # rho = 1/2: wait 1/2 * 1 / (2 * 1/2) = 1/2
    3/2
    >>> mean_ttft(1, 0, 1, 2, stage_time=sp.Rational(1, 2))     # rho = 1/4: wait 1/4 * 1/2 / (3/2) = 1/12
    13/12
    """
    if num_prefill < 1:
        raise ConfigError(f"num_prefill must be at least 1, got {num_prefill}")
    d, t = _positive(prefill_time, "prefill_time"), _non_negative(transfer_time, "transfer_time")
    d_m = d if stage_time is None else _positive(stage_time, "stage_time")
    if d_m > d:
        raise ConfigError(f"stage_time ({d_m}) must not exceed prefill_time ({d}): a pipeline stage is part of the "
                          "prefill")
    rho = _positive(rate, "rate") * d_m / num_prefill
    if rho >= 1:
        return sp.oo
    return d + t + rho * d_m / (2 * (1 - rho))


@dataclass(frozen=True)
class DisaggregatedPlan:
    """The fewest prefill and decode instances that meet the targets (:func:`pd_ratio`).

    ``prefill_time`` D_s (a prompt's whole prefill), ``prefill_stage_time`` D_m (its slowest
    pipeline stage, the prefill queue's service time; D_s with one stage) and ``kv_transfer_time``
    per prompt; ``ttft`` the mean TTFT at ``num_prefill``; ``decode_batch`` the largest batch
    meeting the TPOT target and memory, at most the engine's ``max_num_seqs`` (``decode_limit``
    names which bound it: ``tpot``, ``memory``, ``max-seqs``), ``decode_tpot``
    its TPOT; ``ratio`` is
    ``num_prefill / num_decode``; ``num_chips`` both pools' chips.
    """

    num_prefill: int
    num_decode: int
    ratio: Any
    prefill_time: Any
    prefill_stage_time: Any
    kv_transfer_bytes: Any
    kv_transfer_time: Any
    ttft: Any
    prefill_utilization: Any
    decode_batch: int
    decode_limit: Literal["tpot", "memory", "max-seqs"]
    decode_tpot: Any
    decode_load: Any
    prefill_chips: int
    decode_chips: int
    num_chips: int
    rate: Any
    prompt_len: int
    output_len: int
    ttft_target: Any
    tpot_target: Any

    def to_latex(self) -> str:
        r"""The plan's three relations in LaTeX (an ``aligned`` block), each with its value:
        the M/D/1 mean TTFT at ``n_p`` prefill instances (DistServe eq. 2: :math:`D_s` the whole
        prefill, :math:`D_m` its slowest stage), the closed form for ``n_p`` and Little's law for
        ``n_d``, with :math:`T' = \mathrm{TTFT}^{*} - D_s - T_{\mathrm{kv}}`.

        >>> from symcost import models
        >>> plan = pd_ratio(models.get("llama-3-8b"), rate=50, prompt_len=2048, output_len=256,
        ...                 ttft=0.2, tpot=0.05)
        >>> print(plan.to_latex().splitlines()[3])
        n_p &= \left\lceil \frac{\lambda D_m (D_m + 2 T')}{2 T'} \right\rceil = 3 \\
        """
        def value(x: Any) -> str:
            return sp.latex(sp.Float(sp.sympify(x), 4))

        return "\n".join([
            r"\begin{aligned}",
            r"\mathrm{TTFT}(n_p) &= D_s + T_{\mathrm{kv}} + \frac{\rho D_m}{2 (1 - \rho)}, \quad"
            rf" \rho = \frac{{\lambda D_m}}{{n_p}} = {value(self.prefill_utilization)}, \quad"
            rf" \mathrm{{TTFT}} = {value(self.ttft)}\,\mathrm{{s}} \\",
            rf"D_s &= {value(self.prefill_time)}\,\mathrm{{s}}, \quad D_m = {value(self.prefill_stage_time)}"
            rf"\,\mathrm{{s}}, \quad T_{{\mathrm{{kv}}}} = {value(self.kv_transfer_time)}\,\mathrm{{s}}, \quad"
            rf" \lambda = {value(self.rate)}\,\mathrm{{s}}^{{-1}} \\",
            r"n_p &= \left\lceil \frac{\lambda D_m (D_m + 2 T')}{2 T'} \right\rceil"
            rf" = {self.num_prefill} \\",
            r"n_d &= \left\lceil \frac{\lambda (O - 1)\, \mathrm{TPOT}(B)}{B} \right\rceil"
            rf" = {self.num_decode}, \quad B = {self.decode_batch}, \quad O = {self.output_len}",
            r"\end{aligned}",
        ])

    def _repr_latex_(self) -> str:
        return f"$\\displaystyle {self.to_latex()}$"

    # NB: for people (symcost.plan.display): times, bytes and ratios with units; the fields stay exact
    def __repr__(self) -> str:
        from . import display

        return display.disaggregated_repr(self)

    def __str__(self) -> str:
        from . import display

        return display.disaggregated_text(self)

    def _repr_html_(self) -> str:
        from . import display

        return display.disaggregated_html(self)

    def meets_ttft(self, num_prefill: int) -> bool:
        """Whether ``num_prefill`` instances keep the mean TTFT within the target."""
        if num_prefill < 1:
            return False
        ttft = mean_ttft(self.prefill_time, self.kv_transfer_time, self.rate, num_prefill, self.prefill_stage_time)
        return bool(ttft <= as_expr(self.ttft_target, "ttft"))

    def meets_decode(self, num_decode: int) -> bool:
        """Whether ``num_decode`` instances hold the decode pool's mean load at ``decode_batch``
        each: ``rate (O - 1) TPOT(B) <= num_decode B`` (Little's law)."""
        need = as_expr(self.rate, "rate") * (self.output_len - 1) * as_expr(self.decode_tpot, "tpot")
        return bool(need <= num_decode * self.decode_batch)


def _num_prefill(rate: sp.Expr, d: sp.Expr, d_m: sp.Expr, t_kv: sp.Expr, target: sp.Expr) -> int:
    """The fewest instances whose mean TTFT (eq. 2: ``d`` the whole prefill, ``d_m`` its slowest
    stage) meets ``target``: ``ceil(rate d_m (d_m + 2 T') / (2 T'))``, ``T' = target - d - t_kv``."""
    slack = target - d - t_kv
    if not slack > 0:
        raise ConfigError(f"ttft: the target {float(target):.4g} s does not exceed one prompt's prefill "
                          f"({float(d):.4g} s) plus its KV transfer ({float(t_kv):.4g} s); no number of "
                          "prefill instances meets it")
    n = max(1, int(sp.ceiling(rate * d_m * (d_m + 2 * slack) / (2 * slack))))
    # the closed form, verified exactly at n (meets) and n - 1 (does not)
    while mean_ttft(d, t_kv, rate, n, d_m) > target:  # pragma: no cover (the ceiling is exact)
        n += 1
    while n > 1 and mean_ttft(d, t_kv, rate, n - 1, d_m) <= target:  # pragma: no cover
        n -= 1
    return n


def _decode_keys(keys: int, par: Parallelism) -> int:
    """``keys`` as the decode pool costs them: under context or Ulysses parallelism the cache is
    split ``n = sp * cp`` ways by keys, new tokens appended round-robin (docs/conventions.md §3b),
    so the fullest rank holds ``ceil(keys / n)`` and every rank waits for it; a step at
    ``n * ceil(keys / n)`` keys is exactly that rank's (its cache, its attention core)."""
    n = sp.sympify(par.sp * par.cp)
    if not n.is_Integer:
        raise ConfigError(f"decode_parallelism: sequence_parallel and context_parallel must be numbers, got "
                          f"{par.sp} and {par.cp}")
    return -(-keys // int(n)) * int(n)


def _decode_batch(model: Model, chip: Hardware, keys: int, dtype: Any, par: Parallelism,
                  target: sp.Expr) -> tuple[int, str, Any]:
    """The largest decode batch meeting the TPOT target and fitting memory, which bound binds,
    and its TPOT."""
    from ..analysis.solve import max_integer

    # NB: a decode instance never prefills (the KV cache arrives over the network): its memory
    # holds one decode step's activations, and no prefill rule applies (decode_step)
    step = decode_step(model, chip, None, _decode_keys(keys, par), dtype, par)
    memory = max_integer(step.memory_per_chip, sym.batch_size, chip.hbm_capacity, kind="bytes")
    if memory.value is None:
        raise ConfigError(f"decode: {model.name} with {keys:,} keys of context does not fit {chip.name} even at "
                          "batch 1 under the decode parallelism")
    fast = max_integer(step.tpot, sym.batch_size, target)
    if fast.value is None:
        one = sp.sympify(step.tpot).xreplace({sym.batch_size: 1})
        raise ConfigError(f"tpot: the target {float(target):.4g} s is below one decode step at batch 1 "
                          f"({float(one):.4g} s) on {chip.name}")
    batch, limit = (fast.value, "tpot") if fast.value <= memory.value else (memory.value, "memory")
    return batch, limit, exact_value(sp.sympify(step.tpot).xreplace({sym.batch_size: batch}))


def _max_num_seqs(chip: Hardware, par: Parallelism, given: Optional[int]) -> Optional[int]:
    """The most requests a decode instance runs: ``given``, else the engine profile's for the chip
    and the instance's chips (``Runtime.serving``, as :func:`~symcost.plan.serving.batching.engine_defaults`
    reads it), else ``None``."""
    if given is None:
        return chip.runtime.serving.seqs(chip.name, chip.hbm_capacity, int(par.chips_per_replica * par.pp))
    if isinstance(given, bool) or not isinstance(given, (int, sp.Integer)) or given < 1:
        raise ConfigError(f"max_num_seqs must be a positive whole number of requests, got {given!r}")
    return int(given)


def _send_time(nbytes: Any, chip: Hardware) -> Any:
    """One point-to-point send of ``nbytes`` over the chip's scale-out link to another scale-up
    domain (the chip's link model)."""
    # NB: span one chip past the scale-up domain: the other instance is in another domain
    send = Collective("p2p", "dp", 2, nbytes, 1, span=chip.scale_up_domain + 1)
    return exact_value(sp.sympify(collective_time(send, chip)))


def _prefill_pool(model: Model, chip: Hardware, prompt_len: Any, dtype: Any, par: Parallelism) -> tuple[Any, ...]:
    """``(D_s, D_m, KV bytes sent per chip, send time)`` of one prompt on a prefill instance; a
    rule the prompt breaks under the pool's parallelism (a CP or Ulysses split) names both."""
    try:
        # the queue's service time: the slowest stage's (DistServe eq. 2), the whole prefill with one
        # stage; first, so that a prompt the pool cannot split breaks the prefill's own rule
        d_m = sp.sympify(prefill_stage_time(model, chip, 1, prompt_len, dtype, par))
        d = sp.sympify(inference_step(model, chip, 1, prompt_len, dtype, par).ttft)
        nbytes, t_send = kv_transfer(model, chip, prompt_len, dtype, par)
    except AssumptionError as error:
        raise ConfigError(f"prefill: a prompt of {prompt_len} tokens under prefill_parallelism: "
                          f"{one_line(error)}") from None
    return d, d_m, nbytes, t_send


def _pool_parallelism(model: Model, parallelism: ParallelismLike, name: str) -> Any:
    """One pool's parallelism, resolved and checked against the model's shape; an error names the
    pool (``prefill_parallelism: num_heads must be divisible ...``)."""
    try:
        par = resolve_parallelism(model, parallelism)
        model.with_parallelism(par)
    except ValueError as error:  # pydantic's ValidationError for a layer's rule, or a ConfigError
        cause = symcost_error(error)
        raise (ConfigError(f"{name}: {one_line(error)}") if cause is None else cause.inside(name)) from None
    return par


def pd_ratio(model: Model, rate: Any, prompt_len: Any, output_len: Any, ttft: Any, tpot: Any,
             prefill_hardware: Hardware | str = "H100_SXM", decode_hardware: Hardware | str | None = None,
             prefill_parallelism: ParallelismLike = None, decode_parallelism: ParallelismLike = None,
             dtype: Any = "bf16", max_num_seqs: Optional[int] = None) -> DisaggregatedPlan:
    """The fewest prefill instances (M/D/1 mean TTFT within ``ttft``) and decode instances
    (Little's law at the largest batch meeting ``tpot`` and memory) serving ``rate`` requests/s
    of ``prompt_len`` prompt and ``output_len`` output tokens; see the module's docstring. A decode
    instance runs at most ``max_num_seqs`` requests (default: the decode chip's engine profile's
    cap, as the aggregated engine's; ``None`` there: none).

    >>> from symcost import models
    >>> plan = pd_ratio(models.get("llama-3-8b"), rate=50, prompt_len=2048, output_len=256,
    ...                 ttft=0.2, tpot=0.05)
    >>> plan.num_prefill, plan.num_decode, plan.decode_batch, plan.decode_limit
    (3, 2, 231, 'memory')
    >>> plan.meets_ttft(2), plan.meets_decode(1)
    (False, False)
    """
    lam, target_ttft, target_tpot = _positive(rate, "rate"), _positive(ttft, "ttft"), _positive(tpot, "tpot")
    p, o = dim(prompt_len, "prompt_len"), dim(output_len, "output_len")
    if not (p.is_Integer and o.is_Integer):
        raise ConfigError(f"prompt_len and output_len must be numbers, got {p} and {o}")
    if o < 2:
        raise ConfigError(f"output_len must be at least 2 (the prefill emits the first token), got {o}")
    pchip = get_hardware(prefill_hardware)
    dchip = pchip if decode_hardware is None else get_hardware(decode_hardware)
    ppar, dpar = (_pool_parallelism(model, par, name) for par, name in ((prefill_parallelism, "prefill_parallelism"),
                                                                        (decode_parallelism, "decode_parallelism")))
    d, d_m, nbytes, t_send = _prefill_pool(model, pchip, p, dtype, ppar)
    # each decode chip receives its own shard at the decode parallelism over its link (the fullest
    # rank's under CP or Ulysses: _decode_keys): with fewer decode chips than prefill chips it takes
    # several prefill chips' shards, so the slower side binds
    received = decode_step(model, dchip, 1, _decode_keys(int(p), dpar), dtype, dpar).kv_cache_memory
    t_kv = sp.Max(sp.sympify(t_send), sp.sympify(_send_time(received, dchip)))
    n_p = _num_prefill(lam, d, d_m, t_kv, target_ttft)
    keys = int(p + o - 1)
    batch, limit, step_tpot = _decode_batch(model, dchip, keys, dtype, dpar, target_tpot)
    cap = _max_num_seqs(dchip, dpar, max_num_seqs)
    if cap is not None and cap < batch:  # the engine's own cap on running requests binds
        batch, limit = cap, "max-seqs"
        step_tpot = exact_value(sp.sympify(decode_step(model, dchip, batch, _decode_keys(keys, dpar), dtype,
                                                       dpar).tpot))
    load = lam * (o - 1) * sp.sympify(step_tpot) / batch  # decode instances' worth of mean load
    n_d = max(1, int(sp.ceiling(load)))
    chips_p, chips_d = (int(par.chips_per_replica * par.pp) for par in (ppar, dpar))
    values = dict(ratio=sp.Rational(n_p, n_d), prefill_time=d, prefill_stage_time=d_m, kv_transfer_bytes=nbytes,
                  kv_transfer_time=t_kv, ttft=mean_ttft(d, t_kv, lam, n_p, d_m), prefill_utilization=lam * d_m / n_p,
                  decode_tpot=step_tpot,
                  decode_load=load, rate=lam, ttft_target=target_ttft, tpot_target=target_tpot)
    return DisaggregatedPlan(num_prefill=n_p, num_decode=n_d, decode_batch=batch, decode_limit=limit,  # type: ignore[arg-type]
                             prefill_chips=chips_p, decode_chips=chips_d, num_chips=n_p * chips_p + n_d * chips_d,
                             prompt_len=int(p), output_len=int(o),
                             **{k: exact_value(sp.sympify(v)) for k, v in values.items()})
