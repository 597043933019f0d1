"""Percentiles of the wait in the M/D/1 queue the serving plans use (Poisson arrivals at ``lambda``
per second, one server, a deterministic service time ``S``, load ``rho = lambda S < 1``).

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

__all__ = ["PERCENTILES", "md1_load_for_wait", "md1_wait_cdf", "md1_wait_quantile", "wait_in_services"]

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
