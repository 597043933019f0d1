"""LayerMetrics' deferred roofline and ops (built on first read): long sums, pickling, the time model.

A sum of n equal metrics has n times each roofline term and each op's multiplicity (by definition of
the sum); the roofline belongs to the time model that timed the layer.
"""

import copy
import pickle

import numpy as np
import pytest
import sympy as sp

from symcost import MLPLayer, models
from symcost import symbols as S
from symcost.core import binding
from symcost.core._expr import Ceil
from symcost.core.sweep import Sweeper

LAYER = MLPLayer(hidden_size=1024, intermediate_size=4096)


def _numeric():
    return LAYER.compute_metrics(batch_size=2, seq_len=512, phase="training", dtype="bf16", hardware="H100_SXM")


@pytest.mark.parametrize("n", [1500])
def test_long_sums_and_repeats_build_without_recursion(n):
    one = _numeric()
    total = sum([one] * n)  # nests n deferred values: built with a stack, not n nested calls
    assert total.roofline == tuple(n * t for t in one.roofline)
    assert dict(total.ops) == {op: n * k for op, k in one.ops}
    assert total.bound == one.bound
    repeated = one
    for _ in range(n):
        repeated = repeated * 1
    assert repeated.roofline == one.roofline and repeated.ops == one.ops


def test_derived_metrics_pickle():
    one, symbolic = _numeric(), LAYER.compute_metrics(phase="training", dtype="bf16", hardware="H100_SXM")
    for metrics in (one + one, one * 3, symbolic + symbolic, symbolic * 3,
                    (symbolic + symbolic).subs({S.batch_size: 2, S.seq_len: 512})):
        back = pickle.loads(pickle.dumps(metrics))
        assert back == metrics and back.roofline == metrics.roofline and back.ops == metrics.ops


def test_pickled_and_copied_formulas_keep_their_values():
    # SymPy rebuilds an unpickled node evaluated, and takes Min(8, 2b)/66 for an integer: a Min over
    # it lost its live argument. By hand at b = 1: Min(8, 2) = 2, Ceil(1 / 64) = 1, so
    # Min(1, 7 * 1 * 2 / 66) = 7/33 (the dropped form gave 1)
    m = sp.Min(8, 2 * S.batch_size, evaluate=False)
    expr = sp.Min(1, 7 * Ceil(S.batch_size / (32 * m)) * m / 66, evaluate=False)
    for back in (pickle.loads(pickle.dumps(expr)), copy.deepcopy(expr)):
        assert back == expr and back.xreplace({S.batch_size: 1}) == sp.Rational(7, 33)
    # a whole MoE layer's decode compute time, pickled, at b = 1..16 (the router's Min is in it)
    metrics = models.get("mixtral-8x7b").with_parallelism({"tensor_parallel": 8}).compute_metrics(
        phase="decode", dtype="bf16", hardware="H100_SXM")
    back = pickle.loads(pickle.dumps(metrics))
    for b in (1, 2, 3, 16):
        point = {S.batch_size: b, S.seq_len: 512}
        assert back.compute_time.xreplace(point) == metrics.compute_time.xreplace(point)
    # a compiled sweep travels to Dask workers pickled: the same numbers there
    sweeper = Sweeper({"t": metrics.compute_time})
    sizes = {"batch_size": np.array([1.0, 2.0, 3.0, 16.0]), "seq_len": 512.0}
    assert pickle.loads(pickle.dumps(sweeper))(**sizes).t.tolist() == sweeper(**sizes).t.tolist()


def test_the_roofline_is_the_time_model_that_timed_the_layer():
    base = binding.time_model()

    class Slower:  # a time model whose roofline compute times are 100 times the registered one's
        def resolve(self, hardware):
            return base.resolve(hardware)

        def layer_times(self, *args, **kwargs):
            return base.layer_times(*args, **kwargs)

        def roofline_times(self, *args, **kwargs):
            rt = base.roofline_times(*args, **kwargs)
            return None if rt is None else type(rt)(rt.compute_time * 100, rt.memory_time, rt.comm_time, rt.latency)

    metrics = LAYER.compute_metrics(batch_size=S.batch_size, seq_len=512, phase="decode", dtype="bf16",
                                    hardware="H100_SXM")
    want = LAYER.compute_metrics(batch_size=S.batch_size, seq_len=512, phase="decode", dtype="bf16",
                                 hardware="H100_SXM").roofline
    binding.register(Slower())
    try:
        assert metrics.roofline == want  # built now, under Slower, yet timed by the model of its build
    finally:
        binding.register(base)
