"""Stage 4: whole models: :class:`~symcost.models.model.Model` and
:class:`~symcost.models.model.TransformerBlock`, the builders of MoE models
(:mod:`~symcost.models.builders`), the presets as data files (:mod:`~symcost.models.registry`)
and the Hugging Face ``config.json`` loader (:mod:`~symcost.models.hf`).

>>> from symcost import models
>>> models.get("llama-3-8b").parameter_count
8030261248
"""

from .hf import COST_FREE as COST_FREE
from .hf import COST_FREE_FOR as COST_FREE_FOR
from .hf import HF_ACTIVATIONS as HF_ACTIVATIONS
from .hf import MODELLED as MODELLED
from .hf import ConfigError as ConfigError
from .hf import from_hf_config as from_hf_config
from .registry import PRESETS as PRESETS
from .registry import get as get
from .registry import names as names

__all__ = ["get", "names", "from_hf_config", "PRESETS", "ConfigError", "MODELLED", "COST_FREE",
           "COST_FREE_FOR", "HF_ACTIVATIONS"]
