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
    ("SpeculativeStep", "symcost.plan.speculative"),
    ("DisaggregatedPlan", "symcost.plan.disaggregated"),
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
    ("symcost", "html_report"), ("symcost", "write_html_report"), ("symcost.report.html", "html_report"),
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


OLD_PATHS = {
    "symcost.symbols": "symcost.core.symbols", "symcost.dtypes": "symcost.core.dtypes",
    "symcost.phase": "symcost.core.phase", "symcost.parallel": "symcost.core.parallelism",
    "symcost.assumptions": "symcost.core.assumptions", "symcost.sweep": "symcost.core.sweep",
    "symcost.ops": "symcost.core.ops", "symcost.metrics": "symcost.core.metrics",
    "symcost.model": "symcost.models.model", "symcost.model_moe": "symcost.models.builders",
    "symcost.step": "symcost.plan.step", "symcost.search": "symcost.plan.search",
    "symcost.calibration": "symcost.plan.calibration",
    "symcost.calibration_inference": "symcost.plan.calibration_inference",
    "symcost.solve": "symcost.analysis.solve", "symcost.latex": "symcost.report.latex",
    "symcost.plots": "symcost.report.plots", "symcost.roofline": "symcost.hardware.timing",
}


@pytest.mark.parametrize("old, new", sorted(OLD_PATHS.items()))
def test_old_module_paths_offer_every_name(old, new):
    """Each module moved by the restructure (issue 9) is importable at its old path with every public
    name of the moved module, the very same objects."""
    moved = importlib.import_module(new)
    names = [n for n in getattr(moved, "__all__", dir(moved)) if not n.startswith("_")]
    at_old = importlib.import_module(old)
    if old == "symcost.roofline":
        names = at_old.__all__
    assert [n for n in names if getattr(at_old, n, None) is not getattr(moved, n)] == []
