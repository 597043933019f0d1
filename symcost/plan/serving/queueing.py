"""The queues of the serving plans: the wait in an M/D/1 queue (Poisson arrivals at ``lambda`` per
second, one server, a deterministic service time ``S``, load ``rho = lambda S < 1``), its mean
and its percentiles, and the mean wait in an M/G/1 queue (a service time spread over a request
mix).

Which queue is used where:

- a disaggregated **prefill instance** (:mod:`~symcost.plan.serving.deploy`) serves batch-1
  prompts one at a time: M/G/1 with the prompts' prefill times (the slowest pipeline stage's,
  ``D_m``) as the service time, a mix's weighted points its distribution; the mean wait is
  Pollaczek-Khinchine's ``lambda E[S^2]/(2 (1 - rho))``, ``rho = lambda E[S]``
  (:func:`mg1_mean_wait`), M/D/1's ``rho S/(2 (1 - rho))`` when every prompt has one length
  (DistServe's eq. 2, :func:`~symcost.plan.disaggregated.mean_ttft`). A mean TTFT target
  ``T'`` of slack bounds the load: ``rho <= 2 E[S] T'/(E[S^2] + 2 E[S] T')``
  (:func:`mg1_load_for_mean_wait`). A percentile target uses M/D/1's distribution below, so
  it needs one prompt length (a mix is refused: M/G/1's distribution is not computed here).
- an **aggregated engine at an arrival rate** (:meth:`~symcost.plan.serving.batching.ServingCurve.at_rate`):
  M/D/1 admission at the engine's peak throughput ``X_max`` (service ``1/X_max`` per request:
  the mean-field steady state serves every request alike, whatever its length).
- a closed loop (a fixed concurrency) has no arrival queue: Little's law gives its TTFT.

The M/D/1 wait's distribution:

The mean wait is Pollaczek-Khinchine's ``rho S/(2 (1 - rho))``. Its distribution is Erlang's
(1909; Franx, "A simple solution for the M/D/c waiting time distribution", Oper. Res. Lett. 29,
2001, eq. 5 with c = 1): in a FIFO queue a request waits at most ``t`` exactly when the work found
at its arrival is at most ``t``, and that work is below ``t`` with probability

    W(t) = (1 - rho) sum_{k=0}^{floor(t/S)} (lambda (k S - t))^k / k! * exp(-lambda (k S - t)).

Derivation (from the transform): Pollaczek-Khinchine gives the wait's Laplace transform
``(1 - rho) x/(x - lambda + lambda e^(-x S))``, so ``W``'s own transform (divided by ``x``) is

    (1 - rho)/(x - lambda + lambda e^(-x S)) = (1 - rho)/(x - lambda) * 1/(1 + lambda e^(-x S)/(x - lambda))
                                             = (1 - rho) sum_k (-lambda)^k e^(-k x S)/(x - lambda)^(k + 1)

(a geometric series, convergent for ``Re x`` large), and ``e^(-k x S)/(x - lambda)^(k + 1)`` is the
transform of ``(t - k S)^k/k! e^(lambda (t - k S))`` for ``t >= k S`` (0 before): term by term,
``W(t) = (1 - rho) sum_{k <= t/S} (-lambda)^k (t - k S)^k/k! e^(lambda (t - k S))``, the sum
above. Two checks the tests make: ``W(0) = 1 - rho`` (the chance to find the server idle), and
``integral_0^oo (1 - W(t)) dt`` is Pollaczek-Khinchine's mean.

The ``q``-quantile is the least ``t`` with ``W(t) >= q``: 0 when ``q <= 1 - rho``; on
``[0, S)`` the closed form ``ln(q/(1 - rho))/lambda``; beyond, a root of ``W`` found by bisection
(``W`` increases), in ``mpmath`` at a working precision that absorbs the alternating sum's
cancellation. NB: the quantile is a number, not a SymPy expression (``W`` has no closed inverse).

In units of the service time (``S = 1``, ``lambda = rho``) ``W`` depends on the load alone, so a
target on the ``q``-quantile of the wait, ``y`` service times, is a bound on the load: the largest
``rho`` with ``W(y) >= q`` (:func:`md1_load_for_wait`; ``W(y)`` falls as ``rho`` grows, ``1 - q``
at ``y = 0``), found by bisection on exact rationals and returned as the lower end, which meets
the target exactly.

>>> import sympy as sp
>>> md1_wait_quantile(sp.Rational(1, 2), 1, sp.Rational(1, 2))      # rho 1/2: half find it idle
0
>>> float(md1_wait_quantile(sp.Rational(1, 2), 1, sp.Rational(4, 5)))   # ln(0.8/0.5)/0.5, within [0, S)
0.9400072584914712
"""

from __future__ import annotations

import functools
from typing import Any

import sympy as sp

from ...errors import ConfigError
from .workload import exact_number

__all__ = ["PERCENTILES", "md1_load_for_wait", "md1_wait_cdf", "md1_wait_quantile", "mg1_load_for_mean_wait",
           "mg1_mean_wait", "wait_in_services"]

PERCENTILES = (50, 90, 99)
"""The TTFT percentiles a serving point reports at an arrival rate."""


def _checked(rate: Any, service: Any) -> tuple[sp.Expr, sp.Expr]:
    lam, s = exact_number(rate, "rate"), exact_number(service, "service")
    if not lam * s < 1:
        raise ConfigError(f"M/D/1: the load rho = rate x service time must be below 1, got {lam * s}")
    return lam, s


def md1_wait_cdf(rate: Any, service: Any, t: Any, digits: int = 30) -> Any:
    """``W(t)``: the probability that a request waits at most ``t`` seconds (the module's docstring),
    an ``mpmath`` number to ``digits`` significant digits.

    >>> import sympy as sp
    >>> float(md1_wait_cdf(sp.Rational(1, 2), 1, 0))                    # 1 - rho
    0.5
    """
    import mpmath  # type: ignore[import-untyped]

    lam, s = _checked(rate, service)
    if t < 0:
        return mpmath.mpf(0)
    n = int(sp.floor(sp.sympify(t) / s))
    with mpmath.workdps(digits + n + int(float(lam * t) / 2.3) + 10):  # cancellation: e^(lambda t) against 1
        lam_m, s_m, t_m = (mpmath.mpf(sp.Rational(x).p) / sp.Rational(x).q for x in (lam, s, t))
        total = mpmath.fsum((lam_m * (k * s_m - t_m)) ** k / mpmath.factorial(k) * mpmath.exp(-lam_m * (k * s_m - t_m))
                            for k in range(n + 1))
        rho = lam_m * s_m
        return +((1 - rho) * total)


def md1_wait_quantile(rate: Any, service: Any, q: Any, digits: int = 15) -> Any:
    """The least wait ``t`` with ``W(t) >= q`` (the module's docstring): exactly 0 when ``q <= 1 - rho``,
    else a SymPy ``Float`` of ``digits`` significant digits."""
    import mpmath

    lam, s = _checked(rate, service)
    q = sp.sympify(q)
    if not 0 < q < 1:
        raise ConfigError(f"M/D/1: a quantile must be between 0 and 1, got {q}")
    rho = lam * s
    if q <= 1 - rho:
        return sp.Integer(0)
    first = sp.log(q / (1 - rho)) / lam
    if first < s:
        return sp.Float(sp.N(first, digits + 5), digits)
    lo, hi = s, 2 * s
    while md1_wait_cdf(lam, s, hi) < q:
        lo, hi = hi, 2 * hi
    lo_m, hi_m = mpmath.mpf(sp.Rational(lo).p) / sp.Rational(lo).q, mpmath.mpf(sp.Rational(hi).p) / sp.Rational(hi).q
    for _ in range(4 * digits + 20):  # bisection: 3.3 halvings per digit
        mid = (lo_m + hi_m) / 2
        if md1_wait_cdf(lam, s, sp.Rational(str(mid))) >= q:
            hi_m = mid
        else:
            lo_m = mid
    return sp.Float(str(hi_m), digits)


def md1_load_for_wait(q: Any, wait: Any, iterations: int = 50) -> sp.Rational:
    """The largest load ``rho`` (to ``2^-iterations``, from below) whose ``q``-quantile of the wait
    is at most ``wait`` service times (the module's docstring): an exact rational ``rho`` with
    ``W(wait) >= q`` at it; ``1 - q`` when ``wait`` is 0.

    >>> md1_load_for_wait(sp.Rational(9, 10), 0)                       # the server idle 1 - rho >= 0.9
    1/10
    """
    q, y = sp.Rational(q), sp.Rational(wait)
    if not 0 < q < 1:
        raise ConfigError(f"M/D/1: a quantile must be between 0 and 1, got {q}")
    if y < 0:
        raise ConfigError(f"M/D/1: a wait must not be negative, got {y}")
    lo, hi = 1 - q, sp.Integer(1)  # W(y) >= W(0) = 1 - rho = q at rho = 1 - q; rho < 1
    if y == 0:
        return lo
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if md1_wait_cdf(mid, 1, y) >= q else (lo, mid)
    return lo


@functools.lru_cache(maxsize=4096)
def wait_in_services(load: float, q: sp.Rational) -> float:
    """The ``q``-quantile of the wait in service times at a load ``rho`` given as a float64 (the
    sweep's), to 8 digits; cached per load, as the deployment search asks for the same ones."""
    if load <= 1 - q:
        return 0.0
    return float(md1_wait_quantile(sp.Rational(load), 1, q, digits=8))


def _moments(mean_service: Any, second_moment: Any) -> tuple[sp.Expr, sp.Expr]:
    s, m2 = exact_number(mean_service, "mean_service"), exact_number(second_moment, "second_moment")
    if m2 < s**2:  # E[S^2] >= E[S]^2: a variance is not negative
        raise ConfigError(f"M/G/1: second_moment must be at least mean_service squared ({s**2}), got {m2}")
    return s, m2


def mg1_mean_wait(rate: Any, mean_service: Any, second_moment: Any) -> sp.Expr:
    """Pollaczek-Khinchine's mean wait in an M/G/1 queue, exactly: ``lambda E[S^2]/(2 (1 - rho))``,
    ``rho = lambda E[S]`` (M/D/1's ``rho S/(2 (1 - rho))`` at ``E[S^2] = E[S]^2``); the module's
    docstring says where the plans use it.

    >>> mg1_mean_wait(sp.Rational(1, 4), 2, 5)        # services 1 and 3, half each: rho 1/2
    5/4
    """
    lam = exact_number(rate, "rate")
    s, m2 = _moments(mean_service, second_moment)
    if not lam * s < 1:
        raise ConfigError(f"M/G/1: the load rho = rate x mean service time must be below 1, got {lam * s}")
    return lam * m2 / (2 * (1 - lam * s))


def mg1_load_for_mean_wait(wait: Any, mean_service: Any, second_moment: Any) -> sp.Expr:
    """The largest load ``rho`` whose M/G/1 mean wait is at most ``wait``: solving
    ``rho E[S^2]/(2 E[S] (1 - rho)) <= T'`` gives ``rho = 2 E[S] T'/(E[S^2] + 2 E[S] T')``
    (``2 T'/(S + 2 T')`` for M/D/1), exactly.

    >>> mg1_load_for_mean_wait(1, 2, 5)               # M/D/1 at S = 2 would allow 1/2
    4/9
    """
    t = exact_number(wait, "wait", zero=True)
    s, m2 = _moments(mean_service, second_moment)
    return 2 * s * t / (m2 + 2 * s * t)
