"""symcost: symbolic cost models of LLM layers.

Every quantity is a SymPy expression in batch, sequence length, model shape, parallel degrees and
bytes per element; with numbers for every input, the same expressions collapse to exact numbers.

>>> import symcost as sc
>>> m = sc.MLPLayer(hidden_size=4096, intermediate_size=16384).compute_metrics(
...     batch_size=1, seq_len=2048, phase="prefill", dtype="bf16")
>>> m.matmul_flops_per_chip
549755813888
"""

from __future__ import annotations

import importlib as _importlib
from typing import TYPE_CHECKING, Any

from .core import binding as _binding  # light: the time model's protocol, no SymPy

__version__ = "0.1.0"

# NB: nothing heavy is imported here: ``import symcost`` (and with it ``symcost --help``) loads no
# SymPy. Every name below is imported on first use (PEP 562), from the module that defines it.
# The public facade is this package's attributes: the names of ``_NAMES``, the stage packages, and
# a few modules as namespaces (``sc.symbols``, ``sc.solve``, ``sc.search``, ``sc.step``, ...). A
# namespace is an attribute, not an import path: ``from symcost import solve`` works,
# ``import symcost.solve`` does not (the module is ``symcost.analysis.solve``).
_SUBMODULES = {
    "analysis": "symcost.analysis", "core": "symcost.core", "errors": "symcost.errors",
    "hardware": "symcost.hardware", "layers": "symcost.layers", "models": "symcost.models",
    "plan": "symcost.plan", "report": "symcost.report",
    "symbols": "symcost.core.symbols", "units": "symcost.core.units", "solve": "symcost.analysis.solve",
    "search": "symcost.plan.search", "step": "symcost.plan.step", "calibration": "symcost.plan.calibration",
    "latex": "symcost.report.latex", "plots": "symcost.report.plots",
}
_NAMES = {
    "DegreeSolution": "symcost.analysis.solve", "IntegerSolution": "symcost.analysis.solve",
    "DataType": "symcost.core.dtypes", "LayerMetrics": "symcost.core.metrics", "Collective": "symcost.core.ops",
    "Parallelism": "symcost.core.parallelism", "Phase": "symcost.core.phase", "Sweeper": "symcost.core.sweep",
    "SweepResult": "symcost.core.sweep", "sweep": "symcost.core.sweep",  # the function, not the module
    "ConfigError": "symcost.errors", "DivisibilityError": "symcost.errors", "HardwareError": "symcost.errors",
    "SolveError": "symcost.errors", "SymcostError": "symcost.errors", "UnboundSymbolError": "symcost.errors",
    "Hardware": "symcost.hardware", "AttentionLayer": "symcost.layers", "EmbeddingLayer": "symcost.layers",
    "GatedMLPLayer": "symcost.layers", "GroupedQueryAttentionLayer": "symcost.layers", "Layer": "symcost.layers",
    "LMHeadLayer": "symcost.layers", "MLALayer": "symcost.layers", "MLPLayer": "symcost.layers",
    "MoELayer": "symcost.layers", "NormLayer": "symcost.layers", "Model": "symcost.models.model",
    "TransformerBlock": "symcost.models.model", "SearchResult": "symcost.plan.search",
    "InferenceStep": "symcost.plan.step", "TrainingStep": "symcost.plan.step",
    "html_report": "symcost.report.html", "write_html_report": "symcost.report.html",
    "Mamba2Layer": "symcost.layers", "MixerBlock": "symcost.models.model",
    "SpeculativeStep": "symcost.plan.speculative", "speculative_step": "symcost.plan.speculative",
    "DisaggregatedPlan": "symcost.plan.disaggregated", "pd_ratio": "symcost.plan.disaggregated",
    "ServingCurve": "symcost.plan.serving", "ServingPoint": "symcost.plan.serving", "Workload": "symcost.plan.serving",
    "continuous_batching": "symcost.plan.serving", "serving_curve": "symcost.plan.serving",
    "DeploymentPlan": "symcost.plan.serving", "plan_deployment": "symcost.plan.serving",
}


def _load_registrations() -> None:
    """The layers reach the chips through the time model ``symcost.hardware`` registers on import;
    ``Model.training_step`` and its siblings run the functions ``symcost.plan.step`` registers."""
    _importlib.import_module("symcost.hardware")
    _importlib.import_module("symcost.plan.step")


_binding.register_loader(_load_registrations)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        value = getattr(_importlib.import_module(_NAMES[name]), name)
    elif name in _SUBMODULES:
        value = _importlib.import_module(_SUBMODULES[name])
    else:
        raise AttributeError(f"module 'symcost' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from . import analysis as analysis
    from . import core as core
    from . import errors as errors
    from . import hardware as hardware
    from . import layers as layers
    from . import models as models
    from . import plan as plan
    from . import report as report
    from .analysis import solve as solve
    from .analysis.solve import DegreeSolution as DegreeSolution
    from .analysis.solve import IntegerSolution as IntegerSolution
    from .core import symbols as symbols
    from .core import units as units
    from .core.dtypes import DataType as DataType
    from .core.metrics import LayerMetrics as LayerMetrics
    from .core.ops import Collective as Collective
    from .core.parallelism import Parallelism as Parallelism
    from .core.phase import Phase as Phase
    from .core.sweep import Sweeper as Sweeper
    from .core.sweep import SweepResult as SweepResult
    from .core.sweep import sweep as sweep
    from .errors import ConfigError as ConfigError
    from .errors import DivisibilityError as DivisibilityError
    from .errors import HardwareError as HardwareError
    from .errors import SolveError as SolveError
    from .errors import SymcostError as SymcostError
    from .errors import UnboundSymbolError as UnboundSymbolError
    from .hardware import Hardware as Hardware
    from .layers import AttentionLayer as AttentionLayer
    from .layers import EmbeddingLayer as EmbeddingLayer
    from .layers import GatedMLPLayer as GatedMLPLayer
    from .layers import GroupedQueryAttentionLayer as GroupedQueryAttentionLayer
    from .layers import Layer as Layer
    from .layers import LMHeadLayer as LMHeadLayer
    from .layers import Mamba2Layer as Mamba2Layer
    from .layers import MLALayer as MLALayer
    from .layers import MLPLayer as MLPLayer
    from .layers import MoELayer as MoELayer
    from .layers import NormLayer as NormLayer
    from .models.model import MixerBlock as MixerBlock
    from .models.model import Model as Model
    from .models.model import TransformerBlock as TransformerBlock
    from .plan import calibration as calibration
    from .plan import search as search
    from .plan import step as step
    from .plan.disaggregated import DisaggregatedPlan as DisaggregatedPlan
    from .plan.disaggregated import pd_ratio as pd_ratio
    from .plan.search import SearchResult as SearchResult
    from .plan.serving import DeploymentPlan as DeploymentPlan
    from .plan.serving import ServingCurve as ServingCurve
    from .plan.serving import ServingPoint as ServingPoint
    from .plan.serving import Workload as Workload
    from .plan.serving import continuous_batching as continuous_batching
    from .plan.serving import plan_deployment as plan_deployment
    from .plan.serving import serving_curve as serving_curve
    from .plan.speculative import SpeculativeStep as SpeculativeStep
    from .plan.speculative import speculative_step as speculative_step
    from .plan.step import InferenceStep as InferenceStep
    from .plan.step import TrainingStep as TrainingStep
    from .report import latex as latex
    from .report import plots as plots
    from .report.html import html_report as html_report
    from .report.html import write_html_report as write_html_report

__all__ = [
    "AttentionLayer",
    "Collective",
    "ConfigError",
    "DataType",
    "DegreeSolution",
    "DeploymentPlan",
    "DisaggregatedPlan",
    "DivisibilityError",
    "EmbeddingLayer",
    "GatedMLPLayer",
    "GroupedQueryAttentionLayer",
    "Hardware",
    "HardwareError",
    "InferenceStep",
    "IntegerSolution",
    "LMHeadLayer",
    "Layer",
    "LayerMetrics",
    "MLALayer",
    "MLPLayer",
    "Mamba2Layer",
    "MixerBlock",
    "MoELayer",
    "Model",
    "NormLayer",
    "Parallelism",
    "Phase",
    "SearchResult",
    "ServingCurve",
    "ServingPoint",
    "SolveError",
    "SpeculativeStep",
    "SweepResult",
    "Sweeper",
    "SymcostError",
    "TrainingStep",
    "TransformerBlock",
    "UnboundSymbolError",
    "Workload",
    "calibration",
    "continuous_batching",
    "errors",
    "hardware",
    "html_report",
    "latex",
    "models",
    "pd_ratio",
    "plan_deployment",
    "plots",
    "search",
    "serving_curve",
    "solve",
    "speculative_step",
    "step",
    "sweep",
    "symbols",
    "units",
    "write_html_report",
]
