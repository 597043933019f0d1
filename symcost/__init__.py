"""symcost: symbolic cost models of LLM layers.

Every quantity is a SymPy expression in batch, sequence length, model shape, parallel degrees and
bytes per element; with numbers for every input, the same expressions collapse to exact numbers.

>>> import symcost as sc
>>> m = sc.MLPLayer(hidden_size=4096, intermediate_size=16384).compute_metrics(
...     batch_size=1, seq_len=2048, phase="prefill", dtype="bf16")
>>> m.matmul_flops_per_chip
549755813888
"""

import importlib as _importlib
import sys as _sys

# NB: the module attributes with a re-export file at their old path (``symcost.step``, ...) are
# bound to that file, so that ``import symcost.step`` (which rebinds the attribute) changes nothing.
from . import analysis as analysis
from . import core as core
from . import errors as errors
from . import hardware as hardware
from . import layers as layers
from . import models as models
from . import plan as plan
from . import report as report
from . import search as search
from . import solve as solve
from . import step as step
from .analysis.solve import DegreeSolution as DegreeSolution
from .analysis.solve import IntegerSolution as IntegerSolution
from .core import symbols as symbols
from .core.dtypes import DataType as DataType
from .core.metrics import LayerMetrics as LayerMetrics
from .core.ops import Collective as Collective
from .core.parallelism import Parallelism as Parallelism
from .core.phase import Phase as Phase
from .core.sweep import Sweeper as Sweeper
from .core.sweep import SweepResult as SweepResult
from .core.sweep import sweep as sweep  # NB: the function, not the module (see CHANGELOG.md)
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
from .layers import MLALayer as MLALayer
from .layers import MLPLayer as MLPLayer
from .layers import MoELayer as MoELayer
from .layers import NormLayer as NormLayer
from .models.model import Model as Model
from .models.model import TransformerBlock as TransformerBlock
from .plan import calibration as calibration
from .plan.search import SearchResult as SearchResult
from .plan.step import InferenceStep as InferenceStep
from .plan.step import TrainingStep as TrainingStep
from .report import latex as latex
from .report import plots as plots

__version__ = "0.1.0"

# NB: the old paths of the modules that moved while other branches were editing them are the same
# module objects registered under their old names (no file there, so git's rename detection can
# carry those edits to the new files); the other old paths are re-export files. See CHANGELOG.md.
_ALIASES = {
    "symcost.symbols": "symcost.core.symbols",
    "symcost.sweep": "symcost.core.sweep",
    "symcost.metrics": "symcost.core.metrics",
    "symcost.calibration": "symcost.plan.calibration",
    "symcost.calibration_inference": "symcost.plan.calibration_inference",
    "symcost._expr": "symcost.core._expr",
    "symcost._compile": "symcost.core.compile",
    "symcost._notation": "symcost.core.notation",
    "symcost.latex": "symcost.report.latex",
    "symcost.plots": "symcost.report.plots",
    "symcost.assumptions": "symcost.core.assumptions",
}
for _old, _new in _ALIASES.items():
    _module = _sys.modules[_old] = _importlib.import_module(_new)
    if _old != "symcost.sweep":  # symcost.sweep is the function (see CHANGELOG.md)
        globals()[_old.rsplit(".", 1)[1]] = _module  # as an import of the old submodule bound it

__all__ = [
    "AttentionLayer",
    "Collective",
    "ConfigError",
    "DataType",
    "DegreeSolution",
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
    "MoELayer",
    "Model",
    "NormLayer",
    "Parallelism",
    "Phase",
    "SearchResult",
    "SolveError",
    "SweepResult",
    "Sweeper",
    "SymcostError",
    "TrainingStep",
    "TransformerBlock",
    "UnboundSymbolError",
    "calibration",
    "errors",
    "hardware",
    "latex",
    "models",
    "plots",
    "search",
    "solve",
    "step",
    "sweep",
    "symbols",
]
