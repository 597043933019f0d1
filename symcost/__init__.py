"""symcost: symbolic cost models of LLM layers.

Every quantity is a SymPy expression in batch, sequence length, model shape, parallel degrees and
bytes per element; with numbers for every input, the same expressions collapse to exact numbers.

>>> import symcost as sc
>>> m = sc.MLPLayer(hidden_size=4096, intermediate_size=16384).compute_metrics(
...     batch_size=1, seq_len=2048, phase="prefill", dtype="bf16")
>>> m.matmul_flops_per_chip
549755813888
"""

from . import calibration as calibration
from . import errors as errors
from . import hardware as hardware
from . import latex as latex
from . import models as models
from . import plots as plots
from . import search as search
from . import solve as solve
from . import step as step
from . import symbols as symbols
from .dtypes import DataType as DataType
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
from .metrics import LayerMetrics as LayerMetrics
from .model import Model as Model
from .model import TransformerBlock as TransformerBlock
from .ops import Collective as Collective
from .parallel import Parallelism as Parallelism
from .phase import Phase as Phase
from .search import SearchResult as SearchResult
from .solve import DegreeSolution as DegreeSolution
from .solve import IntegerSolution as IntegerSolution
from .step import InferenceStep as InferenceStep
from .step import TrainingStep as TrainingStep
from .sweep import Sweeper as Sweeper
from .sweep import SweepResult as SweepResult
from .sweep import sweep as sweep

__version__ = "0.1.0"

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
