"""The serving curve's three evaluations agree (issue 23, speed): the float64 sweep (each regime on
the compiled steps, NumPy over the concurrencies), the exact point (the regime a concurrency falls
in, evaluated at it) and the closed forms (the Piecewise in ``c``, substituted). Points in every
regime, on their boundaries, past the KV bound, with pipeline stages and an engine that alternates."""

from fractions import Fraction

import numpy as np
import pytest
import sympy as sp
from test_serving import LLAMA, ROUND, SMALL, TINY

from symcost import hardware
from symcost import symbols as S
from symcost.plan.serving import engine_steps, serving_curve

H100_VLLM = hardware.get("H100_SXM").with_runtime("vllm")

# T = 40 and I = 5, O = 8 (D = 7): synchronized up to 40/5 = 8, interleaved up to the saturation
# 40 (7 + 1)/(5 + 7) = 80/3, then saturated; prompts of 100 > T: chunked from 40/100 up to
# (100 + 7 x 41)/107 = 387/107 (T < I + D); the KV cache bounds them past 119 (13 for the long
# prompts), a max_num_seqs of 12 past 12; two stages double every bound (c/2 per micro-batch)
CASES = {
    "tiny": (TINY, ROUND, (5, 8), SMALL, [1, 2, 7, 8, 9, 20, 26, 27, 30, 64, 500]),
    "tiny chunked": (TINY, ROUND, (100, 8), SMALL, [1, 2, 3, 4, 5, 40]),
    "tiny PP 2": (TINY, ROUND, (5, 8), {**SMALL, "parallelism": {"pipeline_parallel": 2}}, [1, 2, 3, 16, 17, 60]),
    "tiny alternating": (TINY, ROUND, (5, 8), {**SMALL, "mixed": False}, [1, 8, 9, 30, 100]),
    "tiny max-seqs": (TINY, ROUND, (5, 8), {**SMALL, "max_num_seqs": 12}, [1, 11, 12, 13, 40]),
    "llama vllm TP 2": (LLAMA, H100_VLLM, (1024, 130), {"parallelism": {"tensor_parallel": 2}},
                        [1, 8, 9, 64, 200, 512]),
}
QUANTITIES = ("ttft", "tpot", "request_rate", "tokens_per_second_per_gpu", "tokens_per_second_per_user",
              "first_wave_ttft")


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    model, chip, workload, options, points = CASES[request.param]
    return serving_curve(model, chip, workload, **options), points


def test_the_float64_sweep_is_the_exact_point(case):
    """Every quantity of the sweep within 1e-9 of the exact point (float64 rounding of a few dozen
    operations: 1e-12 would do; the regime picked the same at its boundaries)."""
    curve, points = case
    swept = curve.sweep(np.asarray(points, dtype=float))
    for i, c in enumerate(points):
        exact = curve.at(c)
        for q in QUANTITIES:
            assert swept[q][i] == pytest.approx(float(getattr(exact, q)), rel=1e-9, abs=0), (c, q)


def test_the_exact_point_is_the_closed_form_at_it(case):
    """The point evaluation (the regime ``c`` falls in, at ``c``) equals the closed forms
    substituted at ``c``, exactly."""
    curve, points = case
    for c in points[:4]:
        exact = curve.at(c)
        at = {S.concurrency: c}
        if exact.regime == "alternating" and c % 8:
            # the burst's mean of ceil(j/8) (I/T = 5/40) is exact at whole c, its closed form over
            # whole periods of q = 8: within s (8 - s)/(16 c) steps, s = c mod 8 (c = 9: 7/144)
            s = c % 8
            bound = sp.Rational(s * (8 - s), 16 * c) * exact.prefill_step
            assert 0 < abs(exact.ttft - curve.ttft.xreplace(at)) <= bound
        else:
            assert exact.ttft == curve.ttft.xreplace(at) and exact.tpot == curve.tpot.xreplace(at)
        assert exact.request_rate == curve.request_rate.xreplace(at)
        assert exact.regime == next(name for name, upper in curve.regimes if c <= upper)


def test_the_compiled_step_is_the_exact_step():
    """The compiled parts of a step (EngineSteps.numeric) against the exact step: decode steps of n
    tokens at k keys, and mixed steps with chunks after earlier keys, within 1e-12."""
    for model, chip, par in ((TINY, ROUND, None), (LLAMA, H100_VLLM, {"tensor_parallel": 2, "pipeline_parallel": 2})):
        steps = engine_steps(model, chip, parallelism=par)
        fast = steps.numeric
        for n, k in ((1, 37), (24, 1000), (300, 5)):
            assert fast.decode(np.array([n]), k)[0] == pytest.approx(float(steps.decode(n, k)), rel=1e-12)
        for args in ((0, 0, 4, 1024, 0), (7, 300, 1, 33, 100), (5, 64, Fraction(3, 2), 20, Fraction(7, 2))):
            got = fast.mixed(np.array([float(args[0])]), float(args[1]), float(args[2]), float(args[3]),
                             float(args[4]))[0]
            assert got == pytest.approx(float(steps.mixed(*args)), rel=1e-12), args


def test_a_symbolic_count_still_builds_the_closed_form():
    """The closed forms are built on first use and stay expressions in c (the sweep never needs them)."""
    curve = serving_curve(TINY, ROUND, (5, 8), **SMALL)
    assert curve.tpot.free_symbols == {S.concurrency} and isinstance(curve.tpot, sp.Piecewise)
