"""Compiled steps (symcost.plan.step.compile_step): the same numbers as the uncompiled step.

The reference is the uncompiled step itself (``USE_COMPILED`` off): SymPy assembles the step
from the layers' metrics and every field comes out exact. The compiled program must equal it
exactly (ints and Fractions) and its float path must agree to 1e-12, on random models, chips and
parallelism; a cache hit builds nothing; a wrong size gets the uncompiled step's error.
"""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symcost import Model
from symcost.core.compiled import BUILDS
from symcost.errors import ConfigError
from symcost.plan import compiled
from symcost.plan import step as steps

CHIPS = st.sampled_from(["H100_SXM", "A100_SXM_80GB", "MI300X", "TPU_V5P"])
INFERENCE_FIELDS = ("ttft", "tpot", "kv_cache_memory", "weight_memory", "activation_memory", "memory_per_chip",
                    "tokens_per_second", "stage_layers")
TRAINING_FIELDS = ("step_time", "compute_time", "bubble_time", "pipeline_comm_time", "dp_comm_time",
                   "memory_per_chip", "weight_memory", "gradient_memory", "optimizer_memory", "activation_memory",
                   "model_flops", "mfu", "tokens_per_second", "num_microbatches", "num_chips", "microbatch_time",
                   "stage_layers")


def uncompiled(fn, *args, **kwargs):
    old, compiled.USE_COMPILED = compiled.USE_COMPILED, False
    try:
        return fn(*args, **kwargs)
    finally:
        compiled.USE_COMPILED = old


@st.composite
def models(draw):
    """A small Llama-style model whose heads, KV heads and widths split ``t`` ways."""
    t = draw(st.sampled_from([1, 2, 4]))
    g = t * draw(st.sampled_from([1, 2]))
    a = g * draw(st.sampled_from([1, 2, 4]))
    d = draw(st.sampled_from([16, 32, 64]))
    layers = draw(st.integers(2, 7))
    model = Model.llama(hidden_size=a * d, num_heads=a, num_kv_heads=g, num_layers=layers,
                        vocab_size=t * draw(st.integers(100, 4000)), intermediate_size=t * draw(st.integers(8, 900)),
                        flash_attention=draw(st.booleans()), name=f"random-{draw(st.integers(0, 10**9))}")
    return model, t, draw(st.integers(1, layers)), draw(st.sampled_from([1, 2, 4]))


def assert_same(got, want, fields):
    for field in fields:
        x, y = getattr(got, field), getattr(want, field)
        assert x == y, (field, x, y)
        assert not isinstance(x, float), field


def assert_close(got, want, fields):
    for field in fields:
        x, y = getattr(got, field), getattr(want, field)
        if field == "stage_layers":
            assert x == y
        else:
            assert isinstance(x, float) and abs(x - y) <= 1e-12 * abs(y), (field, x, y)


@settings(max_examples=4, deadline=None)
@given(case=models(), chip=CHIPS, b=st.integers(1, 16), s=st.integers(1, 3000), overlap=st.booleans())
def test_compiled_inference_equals_uncompiled(case, chip, b, s, overlap):
    model, t, p, _ = case
    par = {"tensor_parallel": t, "pipeline_parallel": p}
    want = uncompiled(steps.inference_step, model, chip, b, s, "bf16", par, overlap)
    got = steps.inference_step(model, chip, b, s, "bf16", par, overlap)
    assert_same(got, want, INFERENCE_FIELDS)
    assert got.prefill_rows == want.prefill_rows and got.decode_rows == want.decode_rows
    assert_close(steps.inference_step(model, chip, b, s, "bf16", par, overlap, exact=False), want,
                 INFERENCE_FIELDS)


@settings(max_examples=4, deadline=None)
@given(case=models(), chip=CHIPS, b=st.integers(1, 4), m=st.integers(1, 6), s=st.integers(1, 2048),
       recompute=st.sampled_from(["none", "selective", "full"]), zero=st.sampled_from([0, 1, 2, 3]),
       overlap=st.booleans())
def test_compiled_training_equals_uncompiled(case, chip, b, m, s, recompute, zero, overlap):
    """Every ZeRO stage with or without pipeline stages (FSDP + PP, issue 22 item 5), TP/CP
    communication overlapped or not (the chunked TP pipeline, issue 22 item 2)."""
    model, t, p, d = case
    par = {"tensor_parallel": t, "pipeline_parallel": p, "data_parallel": d}
    args = (model, chip, s, d * b * m, b, "bf16", par, recompute, 1, zero, overlap)
    want = uncompiled(steps.training_step, *args)
    assert_same(steps.training_step(*args), want, TRAINING_FIELDS)
    assert_close(steps.training_step(*args, exact=False), want, TRAINING_FIELDS)


def small_model(name="cache-test"):
    return Model.llama(hidden_size=256, num_heads=8, num_kv_heads=2, num_layers=3, vocab_size=1000,
                       intermediate_size=512, name=name)


def test_cache_hits_do_not_rebuild():
    model = small_model("cache-hits")
    before = BUILDS["inference"]
    first = model.inference_step("H100_SXM", 2, 128, parallelism={"tensor_parallel": 2})
    assert BUILDS["inference"] == before + 1
    model.inference_step("H100_SXM", 3, 100, parallelism={"tensor_parallel": 2})
    model.inference_step("H100_SXM", 2, 128, parallelism={"tensor_parallel": 2}, exact=False)
    again = small_model("cache-hits").inference_step("H100_SXM", 2, 128, parallelism={"tensor_parallel": 2})
    assert BUILDS["inference"] == before + 1  # an equal model, a new dict: the same program
    assert again == first
    model.inference_step("H100_SXM", 2, 128, parallelism={"tensor_parallel": 4})
    assert BUILDS["inference"] == before + 2  # another parallelism: another program
    before = BUILDS["training"]
    f = steps.compile_step(model, "H100_SXM", "training", recompute="selective")
    f(128, 8, 2), f(256, 4, 1), model.training_step("H100_SXM", 64, 16, 4, recompute="selective")
    assert BUILDS["training"] == before + 1


def test_with_parallelism_is_memoized():
    model = small_model()
    assert model.with_parallelism({"tensor_parallel": 2}) is model.with_parallelism({"tensor_parallel": 2})


def test_exact_results_are_ints_and_fractions():
    step = small_model().inference_step("H100_SXM", 2, 128)
    assert type(step.kv_cache_memory) is int and step.kv_cache_memory == 2 * 3 * 2 * 2 * 32 * 128 * 2
    assert isinstance(step.ttft, Fraction)


def error_of(fn, *args, **kwargs):
    with pytest.raises(ValueError) as info:
        fn(*args, **kwargs)
    return str(info.value)


@pytest.mark.parametrize("b, s", [(0, 128), (2, -1), (2.0, 128), (2, 127)])
def test_wrong_inference_input_same_error(b, s):
    model = small_model()
    par = {"sequence_parallel": 2}  # Ulysses: s must be even
    f = steps.compile_step(model, "H100_SXM", "inference", parallelism=par)
    want = error_of(uncompiled, steps.inference_step, model, "H100_SXM", b, s, parallelism=par)
    assert error_of(f, b, s) == want
    assert error_of(model.inference_step, "H100_SXM", b, s, parallelism=par) == want
    assert "\n" not in want


@pytest.mark.parametrize("s, B, b", [(128, 6, 4), (128, 0, 1), (127, 8, 1)])
def test_wrong_training_input_same_error(s, B, b):
    model = small_model()
    par = {"data_parallel": 2, "tensor_parallel": 2, "sequence_parallel": "tp"}
    f = steps.compile_step(model, "H100_SXM", "training", parallelism=par)
    want = error_of(uncompiled, steps.training_step, model, "H100_SXM", s, B, b, parallelism=par)
    assert error_of(f, s, B, b) == want
    assert "\n" not in want


WRONG_SIZES = [
    ("inference", (2, 127), {"sequence_parallel": 2}),            # Ulysses: s must be even
    ("training", (128, 6, 4), {"data_parallel": 2, "tensor_parallel": 2, "sequence_parallel": "tp"}),  # 6 % 8
    ("training", (127, 8, 1), {"data_parallel": 2, "tensor_parallel": 2, "sequence_parallel": "tp"}),  # 127 % 2
    ("training", (130, 8, 1), {"context_parallel": 2}),            # 130 % (2 * 2)
]


@pytest.mark.parametrize("kind, sizes, par", WRONG_SIZES)
def test_float_path_raises_the_broken_rule(kind, sizes, par):
    """``exact=False`` with sizes that break a divisibility rule raises that rule's own one-line
    message, the one the exact path raises, not "exact=False needs a compiled step" (issue 20,
    item 10): the configuration compiles, only these sizes break it."""
    model = small_model()
    fn = model.inference_step if kind == "inference" else model.training_step
    want = error_of(fn, "H100_SXM", *sizes, parallelism=par)
    assert "divisible" in want and "\n" not in want
    assert error_of(fn, "H100_SXM", *sizes, parallelism=par, exact=False) == want
    phase = "inference" if kind == "inference" else "training"
    f = steps.compile_step(model, "H100_SXM", phase, parallelism=par)
    assert error_of(f, *sizes, exact=False) == want


def test_float_path_needs_numbers():
    from symcost import symbols as S

    with pytest.raises(ConfigError, match="exact=False"):
        small_model().inference_step("H100_SXM", S.batch_size, 128, exact=False)


def test_compile_step_validates_once():
    with pytest.raises(ValueError, match="zero_stage"):
        steps.compile_step(small_model(), "H100_SXM", "training", zero_stage=5)
    with pytest.raises(ConfigError, match="unknown training options"):
        steps.compile_step(small_model(), "H100_SXM", "training", micro=2)


def test_scaled_integers_give_the_exact_values():
    import sympy as sp

    from symcost.core._expr import Ceil
    from symcost.core.compiled import compile_scaled

    x, y = sp.symbols("x y", positive=True, integer=True)
    exprs = [x / 3 + y / 6, Ceil(sp.Rational(7, 4) * x), sp.Max(x / 3, y / 5), x / (y + 1),
             sp.floor(sp.Rational(5, 2) * y)]
    f = compile_scaled([x, y], exprs)
    # x = 4, y = 2: 4/3 + 1/3; ceil(7); max(4/3, 2/5); 4/3; floor(5)
    assert f(4, 2) == (Fraction(5, 3), 7, Fraction(4, 3), Fraction(4, 3), 5)
    # x = 3, y = 6: 1 + 1 (an int); ceil(21/4); max(1, 6/5); 3/7; floor(15)
    got = f(3, 6)
    assert got == (2, 6, Fraction(6, 5), Fraction(3, 7), 15) and type(got[0]) is int


def test_a_repeated_call_sees_a_changed_dict_and_a_changed_type():
    """The compiled steps' last-call shortcut compares the arguments' values and types: a
    parallelism dict changed in place gives the new configuration (4 chips, not the 8 of the
    call before), and ``zero_stage=True`` (a bool, refused) is not taken for the ``1`` before."""
    from symcost import models

    model = models.get("llama-3-8b")
    par = {"tensor_parallel": 8}
    first = model.training_step("H100_SXM", 4096, 8, 1, parallelism=par, exact=False)
    par["tensor_parallel"] = 4
    second = model.training_step("H100_SXM", 4096, 8, 1, parallelism=par, exact=False)
    assert (first.num_chips, second.num_chips) == (8, 4)
    model.training_step("H100_SXM", 4096, 8, 1, zero_stage=1)
    with pytest.raises(ConfigError, match="zero_stage"):
        model.training_step("H100_SXM", 4096, 8, 1, zero_stage=True)


def test_a_symbolic_depth_takes_the_uncompiled_path():
    """A model whose block count is a symbol (num_layers = L) is not compiled: the program's sizes
    are seq_len and the batches only, and L left in it raised NameError: 'L' at the call (main before
    this fix). Both steps give the uncompiled step's own (symbolic) result."""
    from symcost.core.symbols import num_layers
    model = Model.gpt(hidden_size=64, num_heads=4, num_layers=num_layers, vocab_size=128, seq_len=32)
    train = model.training_step("H100_SXM", seq_len=32, global_batch=4, recompute="full")
    assert train.step_time == uncompiled(model.training_step, "H100_SXM", seq_len=32, global_batch=4,
                                         recompute="full").step_time
    assert num_layers in train.step_time.free_symbols
    infer = model.inference_step("H100_SXM", batch_size=1, seq_len=32)
    assert infer.ttft == uncompiled(model.inference_step, "H100_SXM", batch_size=1, seq_len=32).ttft
