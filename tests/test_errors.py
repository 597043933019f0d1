"""The error hierarchy (symcost/errors.py): one base, ``SymcostError(ValueError)``, and the kinds
the code raises, each carrying the one-line message that names the field and the rule."""

import pytest
import sympy as sp

import symcost as sc
from symcost import errors
from symcost.core._expr import as_expr, check_divides, dim
from symcost.core.dtypes import DataType, bytes_per_element
from symcost.core.parallelism import Parallelism


def test_hierarchy_is_rooted_in_value_error():
    """Every class is a SymcostError and a ValueError, so ``except ValueError`` still catches it."""
    for cls in (errors.ConfigError, errors.DivisibilityError, errors.HardwareError,
                errors.UnboundSymbolError, errors.SolveError):
        assert issubclass(cls, errors.SymcostError) and issubclass(cls, ValueError)
    assert issubclass(errors.DivisibilityError, errors.ConfigError)
    assert issubclass(errors.HardwareError, errors.ConfigError)


def test_exported_from_the_package():
    """``symcost.SymcostError`` and friends are the classes of symcost.errors."""
    assert sc.SymcostError is errors.SymcostError
    assert sc.ConfigError is errors.ConfigError
    assert sc.DivisibilityError is errors.DivisibilityError
    assert sc.UnboundSymbolError is errors.UnboundSymbolError
    assert sc.errors is errors


@pytest.mark.parametrize("value, rule", [(0.5, "float"), ("4", "strings are never parsed"), (True, "bool")])
def test_inexact_or_unparsed_values_are_config_errors(value, rule):
    """Floats, strings and bools are refused with a ConfigError naming the field."""
    with pytest.raises(errors.ConfigError, match=rf"hidden_size.*{rule}"):
        as_expr(value, "hidden_size")


def test_non_positive_size_is_a_config_error():
    """A size of 0 breaks "must be positive"."""
    with pytest.raises(errors.ConfigError, match="seq_len must be positive, got 0"):
        dim(0, "seq_len")


def test_divisibility_error():
    """12 heads do not split over 8 ranks (12/8 is not an integer)."""
    rule = r"num_heads must be divisible by tensor_parallel \(got 12 and 8\)"
    with pytest.raises(errors.DivisibilityError, match=rule):
        check_divides(sp.Integer(12), sp.Integer(8), "num_heads must be divisible by tensor_parallel")


def test_layer_divisibility_at_compute_time_is_a_divisibility_error():
    """5 tokens cannot be split over a sequence-parallel degree of 2 (5/2 is not an integer)."""
    layer = sc.NormLayer(hidden_size=8, parallelism={"sequence_parallel": 2})
    with pytest.raises(errors.DivisibilityError, match="seq_len must be divisible by sequence_parallel"):
        layer.compute_metrics(batch_size=1, seq_len=5, phase="prefill", dtype="bf16")


def test_layer_field_rule_keeps_our_message():
    """A rule checked while a layer is built keeps its one-line message inside pydantic's ValueError."""
    with pytest.raises(ValueError, match=r"intermediate_size must be divisible by tensor_parallel \(got 10 and 4\)"):
        sc.MLPLayer(hidden_size=8, intermediate_size=10, parallelism={"tensor_parallel": 4})


def test_unknown_dtype_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="dtype: unknown data type 'fp7'"):
        DataType.parse("fp7")


def test_negative_bytes_per_element_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="dtype: bytes per element must be positive"):
        bytes_per_element(sp.Integer(-2))


def test_parallelism_coerce_refuses_other_types():
    with pytest.raises(errors.ConfigError, match="parallelism must be a Parallelism or a dict"):
        Parallelism.coerce([2, 2])


def test_parallelism_field_rule_keeps_our_message():
    """Inside pydantic the message is ours (pydantic wraps it in its ValidationError, a ValueError)."""
    with pytest.raises(ValueError, match="tensor_parallel must be positive, got 0"):
        Parallelism(tensor_parallel=0)


def test_evaluate_with_free_symbols_is_unbound_symbol_error():
    """Evaluating symbolic metrics without values names what is left unbound."""
    m = sc.NormLayer(hidden_size=4096).compute_metrics(phase="prefill", dtype="bf16")
    with pytest.raises(errors.UnboundSymbolError, match="evaluate: unbound symbols remain"):
        m.evaluate()


def test_unknown_chip_is_a_hardware_error():
    with pytest.raises(errors.HardwareError, match="hardware: unknown chip 'Z9000'"):
        sc.hardware.get("Z9000")


def test_unknown_notation_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="unknown notation 'apa'"):
        sc.latex.expression(sc.symbols.hidden_size, notation="apa")


def test_solver_without_closed_form_is_a_solve_error():
    """2^s = h has no polynomial closed form in s, and h stays free: no value can be given."""
    S = sc.symbols
    with pytest.raises(errors.SolveError, match="no closed form for s"):
        sc.solve.max_integer(2**S.seq_len, S.seq_len, S.hidden_size)


def test_undecided_comparison_is_an_unbound_symbol_error():
    """min_degree cannot compare b*1000/t with 4000 while b is free."""
    S = sc.symbols
    with pytest.raises(errors.UnboundSymbolError, match="bind every symbol"):
        sc.solve.min_degree(S.batch_size * 1000 / S.tp, S.tp, 4000, candidates=[1, 2, 4])


def test_solver_input_rules_are_config_errors():
    S = sc.symbols
    with pytest.raises(errors.ConfigError, match="limit must be a finite number"):
        sc.solve.max_integer(S.seq_len, S.seq_len, float("inf"))
    with pytest.raises(errors.ConfigError, match="sizes must be positive integers"):
        sc.solve.common_divisors(0, 8)


def test_bad_zero_stage_is_a_config_error():
    model = sc.models.get("llama-3-8b")
    with pytest.raises(errors.ConfigError, match="zero_stage must be 0, 1, 2 or 3, got 4"):
        model.training_step("H100_SXM", seq_len=2048, global_batch=8, zero_stage=4)


def test_latex_unknown_field_is_a_config_error():
    m = sc.NormLayer().compute_metrics(phase="prefill")
    with pytest.raises(errors.ConfigError, match=r"align: unknown fields \['flops'\]"):
        sc.latex.align(m, ["flops"])
    with pytest.raises(errors.ConfigError, match=r"to_latex: unknown fields \['flops'\]"):
        m.to_latex(["flops"])


def test_search_unknown_phase_is_a_config_error():
    with pytest.raises(errors.ConfigError, match="phase: 'training' or 'inference', got 'decode'"):
        sc.search.parallelism(sc.models.get("llama-3-8b"), "H100_SXM", 8, 8, 2048, phase="decode")


# -- structured errors (issue 21, item 6): the field, the rule and the values, the line formatted from them


def test_a_layer_rule_carries_its_field_rule_and_values():
    """10 FFN columns do not split over 4 TP ranks: the error says which field, which rule and
    which values, inside pydantic's ValidationError too (symcost_error unwraps it)."""
    with pytest.raises(ValueError) as info:
        sc.MLPLayer(hidden_size=8, intermediate_size=10, parallelism={"tensor_parallel": 4})
    err = errors.symcost_error(info.value)
    assert isinstance(err, errors.DivisibilityError)
    assert (err.field, err.divisor, err.rule, err.values) == (
        "intermediate_size", "tensor_parallel", "must be divisible by tensor_parallel", (10, 4))
    assert err.names == ("intermediate_size", "tensor_parallel")
    assert str(err) == "intermediate_size must be divisible by tensor_parallel (got 10 and 4)"


def test_the_line_is_formatted_from_the_fields():
    """A field's rule reads ``field: rule``; a divisibility rule ``field must be divisible by
    divisor (got m and d)``; renaming a field and adding a context change the line, nothing else."""
    err = errors.ConfigError(field="window", rule="the model's MLALayer has no sliding window")
    assert str(err) == "window: the model's MLALayer has no sliding window"
    assert err.line(field=False) == "the model's MLALayer has no sliding window"
    div = errors.DivisibilityError(field="num_heads", divisor="num_kv_heads", values=(32, 5))
    hf = div.renamed({"num_heads": "num_attention_heads", "num_kv_heads": "num_key_value_heads"})
    assert (hf.field, hf.divisor) == ("num_attention_heads", "num_key_value_heads") and div.field == "num_heads"
    pool = hf.inside("prefill_parallelism")
    assert pool.context == ("prefill_parallelism",) and isinstance(pool, errors.DivisibilityError)
    line = "num_attention_heads must be divisible by num_key_value_heads (got 32 and 5)"
    assert str(pool) == f"prefill_parallelism: {line}" and pool.line(context=False) == line
    kv = errors.DivisibilityError(field="num_kv_heads", divisor="tensor_parallel", mutual=True, values=(3, 2))
    assert str(kv) == "num_kv_heads and tensor_parallel must divide one another (got 3 and 2)"


def test_a_sentence_alone_keeps_its_line_and_names_nothing():
    err = errors.ConfigError("zero_stage must be 0, 1, 2 or 3, got 4")
    assert str(err) == "zero_stage must be 0, 1, 2 or 3, got 4" and err.field is None and err.names == ()
    assert str(err.renamed({"zero_stage": "x"})) == str(err)


def test_errors_keep_their_fields_through_pickle():
    """What a process pool sends back is the same error, fields and line."""
    import pickle

    err = errors.AssumptionError(field="seq_len", divisor="sequence_parallel", values=(5, 2)).inside("prefill")
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is errors.AssumptionError and back.__dict__ == err.__dict__ and str(back) == str(err)


def test_a_sweep_reports_the_numbers_that_break_the_rule():
    """num_heads 32 over tensor_parallel 3 found in a float64 sweep: the values are the ints 32 and 3."""
    m = sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8,
                                      parallelism={"tensor_parallel": sc.symbols.tp}).compute_metrics(
        batch_size=1, seq_len=8, phase="decode", dtype="bf16")
    with pytest.raises(errors.AssumptionError) as info:
        m.lambdify(["flops_per_chip"])(tp=[1.0, 3.0])
    assert info.value.field == "num_heads" and info.value.values == (32, 3)
    assert all(type(v) is int for v in info.value.values)


def test_unknown_chip_and_data_type_name_their_field():
    with pytest.raises(errors.HardwareError) as chip:
        sc.hardware.get("Z9000")
    with pytest.raises(errors.ConfigError) as dtype:
        DataType.parse("fp7")
    assert (chip.value.field, dtype.value.field) == ("hardware", "dtype")
    assert chip.value.rule.startswith("unknown chip 'Z9000'; known: A100")


def test_the_command_renames_fields_in_a_configs_words():
    """The command names a config's keys (``num_attention_heads``) where the library names its
    fields (``num_heads``), from the error's fields."""
    from symcost.cli.common import _HF_KEYS, one_line

    with pytest.raises(ValueError) as info:
        sc.GroupedQueryAttentionLayer(hidden_size=64, num_heads=8, num_kv_heads=3)
    hf = one_line(info.value, _HF_KEYS)
    assert hf == "num_attention_heads must be divisible by num_key_value_heads (got 8 and 3)"
    assert one_line(info.value) == "num_heads must be divisible by num_kv_heads (got 8 and 3)"
