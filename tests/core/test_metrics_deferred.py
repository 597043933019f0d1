"""LayerMetrics' deferred roofline and ops (built on first read): long sums, pickling, the time model.

A sum of n equal metrics has n times each roofline term and each op's multiplicity (by definition of
the sum); the roofline belongs to the time model that timed the layer.
"""

import pickle

import pytest

from symcost import MLPLayer
from symcost import symbols as S
from symcost.core import binding

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
    # NB: numbers, not formulas: SymPy rebuilds an unpickled unevaluated Max evaluated (the same
    # value in another form), which equality of expressions tells apart
    one, symbolic = _numeric(), LAYER.compute_metrics(phase="training", dtype="bf16", hardware="H100_SXM")
    for metrics in (one + one, one * 3, (symbolic + symbolic).subs({S.batch_size: 2, S.seq_len: 512})):
        back = pickle.loads(pickle.dumps(metrics))
        assert back == metrics and back.roofline == metrics.roofline and back.ops == metrics.ops


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
