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
