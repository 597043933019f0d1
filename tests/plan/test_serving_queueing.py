"""TTFT percentiles from the M/D/1 queue (symcost.plan.serving.queueing): Erlang's waiting-time
distribution checked by hand on its first two intervals, against Pollaczek-Khinchine's mean, and
at an arrival rate of a serving curve."""

import math

import pytest
import sympy as sp
from test_serving import curve

from symcost.errors import ConfigError
from symcost.plan.serving.queueing import md1_load_for_wait, md1_wait_cdf, md1_wait_quantile

HALF = sp.Rational(1, 2)


def _bisect(f, lo, hi, target):
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if f(mid) >= target else (mid, hi)
    return hi


def test_the_wait_distribution_by_hand_on_its_first_two_intervals():
    """lambda 1/2, S 1 (rho 1/2). On [0, 1): W(t) = (1 - rho) e^(lambda t); on [1, 2):
    (1 - rho) (e^(lambda t) - lambda (t - 1) e^(lambda (t - 1))) (the k = 0 and k = 1 terms)."""
    for t in (0, 0.25, 0.99):
        assert float(md1_wait_cdf(HALF, 1, sp.Rational(str(t)))) == pytest.approx(0.5 * math.exp(0.5 * t), rel=1e-14)
    for t in (1, 1.5, 1.99):
        hand = 0.5 * (math.exp(0.5 * t) - 0.5 * (t - 1) * math.exp(0.5 * (t - 1)))
        assert float(md1_wait_cdf(HALF, 1, sp.Rational(str(t)))) == pytest.approx(hand, rel=1e-14)


def test_quantiles_by_hand():
    """p50: half the arrivals find the server idle (1 - rho = 1/2): 0. p80 lies in [0, 1) (W(1^-) =
    0.5 e^0.5 = 0.824): ln(0.8/0.5)/0.5. p90 lies in [1, 2) (W(2) = 0.5 (e - 0.5 e^0.5) = 0.947):
    the root of the two-term form, by bisection here."""
    assert md1_wait_quantile(HALF, 1, HALF) == 0
    assert float(md1_wait_quantile(HALF, 1, sp.Rational(4, 5))) == pytest.approx(2 * math.log(1.6), rel=1e-13)
    two = lambda t: 0.5 * (math.exp(0.5 * t) - 0.5 * (t - 1) * math.exp(0.5 * (t - 1)))  # noqa: E731
    assert float(md1_wait_quantile(HALF, 1, sp.Rational(9, 10))) == pytest.approx(_bisect(two, 1.0, 2.0, 0.9),
                                                                                   rel=1e-12)


def test_the_mean_of_the_distribution_is_pollaczek_khinchine():
    """integral_0^oo (1 - W(t)) dt = rho S/(2 (1 - rho)): at rho 0.8, S 2 ms, 4 ms (trapezoid rule
    on a fine grid, the tail past 40 S below 1e-6)."""
    lam, s = sp.Rational(400), sp.Rational(1, 500)
    n, top = 4000, 40 * 0.002
    h = top / n
    values = [1 - float(md1_wait_cdf(lam, s, sp.Rational(k, n) * sp.Rational(2, 25))) for k in range(n + 1)]
    integral = h * (sum(values) - (values[0] + values[-1]) / 2)
    assert integral == pytest.approx(0.8 * 0.002 / (2 * 0.2), rel=2e-4)


def test_an_arrival_rate_reports_ttft_percentiles():
    """At lambda = X_max/3 (rho 1/3, S = 1/X_max): p50 adds nothing (2/3 find the queue empty),
    p90 adds the wait's p90, within [0, S): ln(0.9/(2/3))/lambda; the mean is test_serving's."""
    c = curve()
    peak = c.at(c.kv_limit).request_rate
    lam = peak / 3
    point = c.at_rate(lam)
    steady = c.at(point.running).ttft
    assert point.ttft_percentiles[50] == steady
    assert float(point.ttft_percentiles[90] - steady) == pytest.approx(math.log(0.9 * 1.5) / float(lam), rel=1e-12)
    assert point.ttft_percentiles[50] < point.ttft < point.ttft_percentiles[99]
    assert c.at(3).ttft_percentiles is None and c.at_rate(2 * peak).ttft_percentiles[99] == sp.oo


def test_the_largest_load_whose_quantile_meets_a_wait_by_hand():
    """S = 1. A wait of 0 at quantile q: the server idle with probability 1 - rho >= q, rho = 1 - q.
    Within [0, S) the quantile is ln(q/(1 - rho))/rho: at rho 1/2, q 0.6 it is 2 ln 1.2 = 0.3646,
    so the largest load whose p60 wait is at most 2 ln 1.2 service times is 1/2. At q 0.9 (p90 in
    [1, 2), test_quantiles_by_hand) the root of the two-term form at rho 1/2 likewise gives back 1/2.
    The load returned meets the wait exactly (W at it >= q)."""
    assert md1_load_for_wait(sp.Rational(9, 10), 0) == sp.Rational(1, 10)
    y = 2 * math.log(1.2)
    rho = md1_load_for_wait(sp.Rational(3, 5), sp.Rational(y))
    assert float(rho) == pytest.approx(0.5, rel=1e-12)
    assert md1_wait_cdf(rho, 1, sp.Rational(y)) >= sp.Rational(3, 5)
    two = lambda t: 0.5 * (math.exp(0.5 * t) - 0.5 * (t - 1) * math.exp(0.5 * (t - 1)))  # noqa: E731
    p90 = _bisect(two, 1.0, 2.0, 0.9)
    assert float(md1_load_for_wait(sp.Rational(9, 10), sp.Rational(p90))) == pytest.approx(0.5, rel=1e-10)


@pytest.mark.parametrize("args, message", [
    ((1, 1, HALF), "the load rho = rate x service time must be below 1"),
    ((HALF, 1, 1), "a quantile must be between 0 and 1"),
    ((0, 1, HALF), "rate must be a positive number, got 0"),
])
def test_bad_input_is_one_line(args, message):
    with pytest.raises(ConfigError, match=message):
        md1_wait_quantile(*args)


@pytest.mark.parametrize("rate, service",
                         [(sp.Symbol("lam", positive=True), 1), (1, sp.Symbol("s")), (float("nan"), 1)])
def test_a_rate_that_is_no_number_is_one_line(rate, service):
    """The public functions take numbers: a symbol or NaN is a one-line ConfigError naming the
    argument, not sympy's TypeError from comparing a symbol (review finding)."""
    with pytest.raises(ConfigError, match="rate|service"):
        md1_wait_cdf(rate, service, 0)
    with pytest.raises(ConfigError, match="rate|service"):
        md1_wait_quantile(rate, service, sp.Rational(9, 10))


def test_the_mg1_mean_wait_by_hand():
    """Pollaczek-Khinchine with a spread service time (issue 23 item 5): lambda 1/4, services of 1
    and 3 s equally likely: E[S] = 2, rho = 1/2, E[S^2] = (1 + 9)/2 = 5, so
    W = lambda E[S^2]/(2 (1 - rho)) = (5/4)/1 = 5/4, a quarter more than M/D/1 at the mean service,
    rho S/(2 (1 - rho)) = 1. A mean wait target of 1 s allows rho = 2 S T'/(E[S^2] + 2 S T') =
    4/(5 + 4) = 4/9 (there lambda = 2/9 and W = (2/9) 5/(2 x 5/9) = 1), against M/D/1's
    2 T'/(S + 2 T') = 1/2."""
    from symcost.plan.serving.queueing import mg1_load_for_mean_wait, mg1_mean_wait

    assert mg1_mean_wait(sp.Rational(1, 4), 2, 5) == sp.Rational(5, 4)
    assert mg1_mean_wait(sp.Rational(1, 4), 2, 4) == 1  # E[S^2] = E[S]^2: M/D/1
    assert mg1_load_for_mean_wait(1, 2, 5) == sp.Rational(4, 9)
    assert mg1_mean_wait(sp.Rational(2, 9), 2, 5) == 1
    assert mg1_load_for_mean_wait(1, 2, 4) == HALF
    with pytest.raises(ConfigError, match=r"^M/G/1: the load rho = rate x mean service time must be below 1, got 1$"):
        mg1_mean_wait(sp.Rational(1, 2), 2, 5)
    with pytest.raises(ConfigError, match=r"^M/G/1: second_moment must be at least mean_service squared \(4\), got 3$"):
        mg1_mean_wait(sp.Rational(1, 4), 2, 3)
