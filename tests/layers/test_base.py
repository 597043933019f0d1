"""The layer contract (``symcost/layers/base.py``): what every layer type declares."""

import pytest
import sympy as sp

from symcost.layers import base, catalogue


def test_every_layer_type_declares_hidden_size():
    """Callers read ``hidden_size`` of any layer (the residual stream's width): every type in the
    catalogue has it as a shape field."""
    for name, make in catalogue.LAYER_TYPES.items():
        layer_type = getattr(make, "func", make)
        assert "hidden_size" in layer_type.model_fields, name


def test_a_layer_type_without_hidden_size_fails_when_defined():
    """A layer type that does not declare ``hidden_size`` breaks the contract: the class statement
    raises, before any object is built."""
    with pytest.raises(TypeError, match="Bare declares no hidden_size"):
        class Bare(base.Layer):
            width: int = 8

    class Declared(base.Layer):
        hidden_size: int = 8

    assert Declared().hidden_size == 8


def test_a_symbolic_layer_is_costed_once_per_workload():
    """The serving planner asks the same block for the same symbolic workload from several places
    (the engine's steps, the KV room, the disaggregated pools): the second call returns the first's
    metrics (immutable) without recosting; any changed input costs anew. By hand: an MLP of h 1024,
    f 4096 in decode at b x 1 tokens does 2 matmuls of 2 b h f FLOPs = 16,777,216 b."""
    from symcost import MLPLayer
    from symcost import symbols as S

    mlp = MLPLayer(hidden_size=1024, intermediate_size=4096)
    first = mlp.compute_metrics(phase="decode", dtype="bf16", hardware="H100_SXM")
    again = MLPLayer(hidden_size=1024, intermediate_size=4096).compute_metrics(phase="decode", dtype="bf16",
                                                                               hardware="H100_SXM")
    assert again is first
    assert first.matmul_flops_per_chip == 2 * 2 * S.batch_size * 1024 * 4096
    other = mlp.compute_metrics(phase="decode", dtype="fp8_e4m3", hardware="H100_SXM")
    assert other is not first and other.matmul_flops_per_chip == first.matmul_flops_per_chip


def test_a_remembered_layer_records_its_rules_again(monkeypatch):
    """A rule the costing records (an undecided divisibility, here one planted in the MLP's costing)
    reaches an enclosing ``collecting`` block on the first call and again on a remembered one."""
    from symcost import MLPLayer
    from symcost.core.assumptions import Assumption, collecting, record
    from symcost.core.symbols import tp

    planted = Assumption.divisible(((sp.Symbol("q", positive=True, integer=True), tp),), "q", "tensor_parallel", "")
    original = MLPLayer._metrics

    def costing(self, *args, **kwargs):
        record(planted)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MLPLayer, "_metrics", costing)
    monkeypatch.setattr(base, "_METRICS", {})  # the planted costing stays out of the shared memo
    mlp = MLPLayer(hidden_size=1536, intermediate_size=4096)  # a shape no other test costs
    for _ in range(2):
        with collecting() as seen:
            mlp.compute_metrics(phase="decode", dtype="bf16", hardware="H100_SXM")
        assert planted in seen


def test_a_layer_costed_before_register_takes_the_new_time_model():
    """``binding.register`` promises its model to every later ``compute_metrics``: a layer costed
    (symbolic memo and compiled numeric template) before the register is costed again after it.
    The planted model doubles every time of the registered one, so by construction the latency
    after is 2x the latency before, at a symbolic b and at b = 8 (the compiled path)."""
    from symcost import MLPLayer
    from symcost import symbols as S
    from symcost.core import binding

    original = binding.time_model()

    class Doubled:
        def resolve(self, hardware):
            return original.resolve(hardware)

        def layer_times(self, *args, **kwargs):
            t = original.layer_times(*args, **kwargs)
            return type(t)(t.compute_time * 2, t.memory_time * 2, t.comm_time * 2, t.latency * 2)

        def roofline_times(self, *args, **kwargs):
            return original.roofline_times(*args, **kwargs)

    mlp = MLPLayer(hidden_size=1152, intermediate_size=4096)  # a shape no other test costs
    kw = dict(seq_len=1, phase="decode", dtype="bf16", hardware="H100_SXM")
    symbolic_before = mlp.compute_metrics(batch_size=S.batch_size, **kw).latency
    numeric_before = mlp.compute_metrics(batch_size=8, **kw).latency
    binding.register(Doubled())
    try:
        symbolic_after = mlp.compute_metrics(batch_size=S.batch_size, **kw).latency
        numeric_after = mlp.compute_metrics(batch_size=8, **kw).latency
    finally:
        binding.register(original)
    assert sp.simplify(symbolic_after - 2 * symbolic_before) == 0
    assert numeric_after == 2 * numeric_before
    # and back: the original model's values once it is registered again
    assert mlp.compute_metrics(batch_size=8, **kw).latency == numeric_before
