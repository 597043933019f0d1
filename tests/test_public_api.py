"""The top-level namespace: ``__all__`` sorted and complete, the result types exported, the
documented names importable from the paths the README and DESIGN use."""

import importlib

import pytest

import symcost as sc


def test_all_is_sorted_and_unique():
    """``__all__`` is in ``sorted()`` order (classes, then modules and functions) without repeats."""
    assert sc.__all__ == sorted(set(sc.__all__))


def test_every_name_in_all_exists():
    assert [n for n in sc.__all__ if not hasattr(sc, n)] == []


@pytest.mark.parametrize("name, module", [
    ("TrainingStep", "symcost.step"),
    ("InferenceStep", "symcost.step"),
    ("IntegerSolution", "symcost.solve"),
    ("DegreeSolution", "symcost.solve"),
    ("SearchResult", "symcost.search"),
    ("SweepResult", "symcost.sweep"),
])
def test_result_types_are_exported(name, module):
    """What the steps, the solvers, the search and the sweeps return is importable from symcost."""
    assert name in sc.__all__
    assert getattr(sc, name) is getattr(importlib.import_module(module), name)


@pytest.mark.parametrize("path, name", [
    ("symcost", "MLPLayer"), ("symcost", "GatedMLPLayer"), ("symcost", "AttentionLayer"),
    ("symcost", "GroupedQueryAttentionLayer"), ("symcost", "NormLayer"), ("symcost", "Layer"),
    ("symcost", "Phase"), ("symcost", "DataType"), ("symcost", "LayerMetrics"),
    ("symcost.layers", "MLPLayer"), ("symcost.metrics", "LayerMetrics"), ("symcost.hardware", "H100_SXM"),
    ("symcost.hardware", "get"), ("symcost.solve", "max_integer"), ("symcost.solve", "min_degree"),
    ("symcost.models", "get"), ("symcost.models", "from_hf_config"), ("symcost.search", "parallelism"),
    ("symcost.latex", "expression"), ("symcost.latex", "present"), ("symcost.latex", "NOTATIONS"),
    ("symcost.step", "training_step"), ("symcost.step", "inference_step"), ("symcost.model", "Model"),
    ("symcost.model_moe", "mixtral"), ("symcost.testing", "assert_expr_equal"),
])
def test_documented_import_paths(path, name):
    """The seed API and the documented module paths keep working."""
    assert hasattr(importlib.import_module(path), name)


def test_model_step_methods_delegate_to_symcost_step():
    """Model.training_step and its siblings run the functions symcost.step registers."""
    from symcost.models import model
    from symcost.plan import step

    assert model._STEPS == {"training_step": step.training_step, "inference_step": step.inference_step,
                            "max_batch_size": step.max_batch_size, "max_context": step.max_context}
