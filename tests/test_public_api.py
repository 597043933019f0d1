"""The top-level namespace: ``__all__`` sorted and complete, the result types exported, the
documented names reachable from the facade (``symcost`` and its namespaces) and importable from
the modules that define them; the old flat import paths are gone."""

import importlib

import pytest

import symcost as sc


def test_all_is_sorted_and_unique():
    """``__all__`` is in ``sorted()`` order (classes, then modules and functions) without repeats."""
    assert sc.__all__ == sorted(set(sc.__all__))


def test_every_name_in_all_exists():
    assert [n for n in sc.__all__ if not hasattr(sc, n)] == []


@pytest.mark.parametrize("name, module", [
    ("TrainingStep", "symcost.plan.step"),
    ("InferenceStep", "symcost.plan.step"),
    ("IntegerSolution", "symcost.analysis.solve"),
    ("DegreeSolution", "symcost.analysis.solve"),
    ("SearchResult", "symcost.plan.search"),
    ("SweepResult", "symcost.core.sweep"),
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
    ("symcost.layers", "MLPLayer"), ("symcost.core.metrics", "LayerMetrics"), ("symcost.hardware", "H100_SXM"),
    ("symcost.hardware", "get"), ("symcost.analysis.solve", "max_integer"),
    ("symcost.analysis.solve", "min_degree"), ("symcost.models", "get"), ("symcost.models", "from_hf_config"),
    ("symcost.plan.search", "parallelism"), ("symcost.report.latex", "expression"),
    ("symcost.report.latex", "present"), ("symcost.report.latex", "NOTATIONS"),
    ("symcost.plan.step", "training_step"), ("symcost.plan.step", "inference_step"),
    ("symcost.models.model", "Model"), ("symcost.models.builders", "mixtral"),
    ("symcost.testing", "assert_expr_equal"), ("symcost.core.symbols", "seq_len"),
    ("symcost", "html_report"), ("symcost", "write_html_report"), ("symcost.report.html", "html_report"),
])
def test_documented_import_paths(path, name):
    """The seed API and the documented module paths work."""
    assert hasattr(importlib.import_module(path), name)


NAMESPACES = {
    "symbols": "symcost.core.symbols", "units": "symcost.core.units", "solve": "symcost.analysis.solve",
    "search": "symcost.plan.search", "step": "symcost.plan.step", "calibration": "symcost.plan.calibration",
    "latex": "symcost.report.latex", "plots": "symcost.report.plots",
}
"""The facade's namespaces: attributes of ``symcost`` (``sc.solve.max_integer``, ``from symcost
import symbols as S``) that are the defining modules themselves."""


@pytest.mark.parametrize("name, module", sorted(NAMESPACES.items()))
def test_facade_namespaces_are_the_defining_modules(name, module):
    """``sc.<namespace>`` is the module that defines its names, not a copy or a re-export."""
    assert name in sc.__all__
    assert getattr(sc, name) is importlib.import_module(module)


def test_facade_names_of_design():
    """The calls DESIGN.md fixes reach their functions through the facade."""
    from symcost import symbols as S

    assert sc.solve.max_integer is importlib.import_module("symcost.analysis.solve").max_integer
    assert sc.search.parallelism is importlib.import_module("symcost.plan.search").parallelism
    assert sc.sweep is importlib.import_module("symcost.core.sweep").sweep
    assert S.seq_len is importlib.import_module("symcost.core.symbols").seq_len


def test_model_step_methods_delegate_to_symcost_step():
    """Model.training_step and its siblings run the functions symcost.plan.step registers."""
    from symcost.models import model
    from symcost.plan import step

    assert model._STEPS == {"training_step": step.training_step, "inference_step": step.inference_step,
                            "max_batch_size": step.max_batch_size, "max_context": step.max_context}


OLD_PATHS = (
    "symcost.symbols", "symcost.dtypes", "symcost.phase", "symcost.parallel", "symcost.assumptions",
    "symcost.sweep", "symcost.ops", "symcost.metrics", "symcost.model", "symcost.model_moe", "symcost.step",
    "symcost.search", "symcost.calibration", "symcost.calibration_inference", "symcost.solve",
    "symcost.latex", "symcost.plots", "symcost.roofline", "symcost._expr", "symcost._compile",
    "symcost._notation",
)
"""The flat import paths of the first layout, removed (issue 21; CHANGELOG.md)."""


@pytest.mark.parametrize("old", OLD_PATHS)
def test_old_module_paths_are_gone(old):
    """No file and no import hook answers an old flat path: the package's own finder finds nothing
    (NB: the package's path only, so a second checkout's editable install cannot answer for it)."""
    import importlib.machinery
    import sys

    assert importlib.machinery.PathFinder.find_spec(old, sc.__path__) is None
    assert [f for f in sys.meta_path if str(getattr(f, "__module__", "")).startswith("symcost")] == []
