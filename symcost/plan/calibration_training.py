"""Validating the training step on published Megatron-Core runs (H100 and B200, dense and MoE).

The data, ``symcost/data/training_calibration.csv``, holds 21 runs of NVIDIA's Megatron-Bridge
performance summaries (NeMo containers 25.09 to 26.06; each row with its source, commit and
table): Llama 3 8B, 70B and 3.1 405B and Qwen3-30B-A3B and 235B-A22B pre-training and SFT on
DGX-H100 and DGX-B200, with their tensor, pipeline (and virtual pipeline), data, context and
expert parallel degrees, global and micro-batch, tokens/s per GPU and model TFLOP/s per GPU.

Each row is predicted with :meth:`~symcost.model.Model.training_step` on the realistic chip
(``hardware.get(name)``) under the ``megatron-core`` engine profile (Transformer Engine's FP8 grouped
GEMMs run one GEMM per expert) and the row's own settings: its model (a preset, or its Hugging Face
``config.json`` fields), its degrees (Megatron sequence parallelism over the TP group where
``tensor_parallel > 1``, as every Megatron-Bridge recipe with TP sets it), its virtual pipeline
degree as ``interleave``, its batch sizes and sequence length, and the distributed optimizer
(``zero_stage=1``; ``zero_stage=3`` for the run the table marks as FSDP) with bf16 gradients and
the data-parallel sync overlapped (the recipes' settings). Activation recomputation is the
recipe's where it is known (a MoE row's release settings; a dense run's in
:data:`RECIPE_RECOMPUTE`, none at present), else chosen as
:mod:`~symcost.plan.calibration` does for Narayanan's table: the fastest of ``none``,
``selective`` and ``full`` that fits in HBM (the chosen mode is printed). Every row in the file
is FP8 (the Transformer Engine recipes: current scaling, Hopper block scaling, Blackwell MXFP8; the
token-drop rows are FP8 per their table's note), costed as ``dtype="fp8_e4m3"``.

A row's published model TFLOP/s per GPU is its tokens/s per GPU times Megatron-Bridge's own
FLOPs per token (``training/utils/flop_utils.py``: causal attention counted at half the pairs,
no recomputation, no router), so the predicted TFLOP/s is the predicted tokens/s times the row's
published ratio: its error is the tokens/s error (tests/plan/test_calibration_training.py checks
the ratio against the formula, by hand, for one dense and one MoE row).

Errors are predicted over measured tokens/s per GPU, minus one (positive: the model is too
fast). A row the library refuses (a layout it cannot cost) is listed with the library's reason.

The kernels are the per-op fit's; the ``megatron-core`` profile states how Megatron-Core runs them
(Transformer Engine's FP8 grouped GEMMs: one GEMM per expert; Hopper's FP8 dgrad and wgrad at their
split-accumulation rate), ``a2a_overlap_efficiency``, the share of the EP all-to-alls that
``moe_a2a_overlap`` hides (9/20, from a published A/B of the overlap alone, the profile's source), and
two terms fitted here, :data:`PARAMETERS`: ``moe_sync_time``, the host time an eagerly run MoE layer's
forward exposes (the dropless dispatcher's device-to-host sync; the padded token-drop rows have no
sync but the same eager launches; the row whose release replays whole layers from CUDA graphs has
none; an effective term, about five times the idle time NVIDIA's profiled A/B of one layout
gives, an estimate of 0.54-0.69 ms per layer pass in BF16 with the router captured in CUDA graphs,
where the fitted rows ran eagerly, :func:`profiled_idle`), and ``tp_overlap_efficiency``, the share
of the overlappable TP time that ``tp_comm_overlap`` hides (the dense TP rows, :func:`options`), on
an exact grid by least squares on the log of the predicted tokens/s of the rows whose release
settings are known (:func:`fit_rows`: a MoE row whose layout differs from its release preset is
predicted and shown, marked, but not fitted).
:func:`held_out` refits without a group or a model family and predicts it.

>>> rows = load_rows()
>>> len(rows), rows[0].model, rows[0].group
(21, 'LLAMA3_8B', ('dense', 'FP8', 'H100_SXM'))
"""

from __future__ import annotations

import csv
import functools
import json
import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from importlib import resources
from typing import Any, Callable, Mapping, Optional, Sequence, cast

import sympy as sp

from ..core import symbols as sym
from ..core.dtypes import DataType
from ..errors import ConfigError, SymcostError, one_line
from ..hardware import Hardware, runtime
from ..hardware import get as get_hardware
from ..hardware.cudnn import with_cudnn
from ..hardware.timing import collective_time, op_time
from ..layers.base import Recompute
from ..models import from_hf_config
from ..models import get as get_model
from ..models.model import Model
from .descent import coordinate_descent
from .pipeline import resolve_parallelism

__all__ = ["CONTAINER_CUDNN", "ENGINE", "PARAMETERS", "RECIPE_RECOMPUTE", "RECOMPUTE", "Fit", "Prediction",
           "ReleaseSettings", "TrainingRow", "block_breakdown", "build_model", "fit", "fit_rows", "group_summary",
           "held_out", "load_rows", "load_settings", "options", "parallelism", "predict", "predict_all",
           "recompute_modes", "run_chip", "shipped", "shown", "validation_table", "write_profile"]

RECOMPUTE: tuple[Recompute, ...] = ("none", "selective", "full")
"""The recomputation modes tried, fastest first (the tables do not publish theirs)."""

RECIPE_RECOMPUTE: dict[str, tuple[Recompute, int]] = {
    # NB: none. The Llama 3 8B H100 run (bridge-H100-llama3-8b-fsdp8-gbs128) is costed as the 25.11
    # table lists it (NVIDIA-NeMo/Megatron-Bridge docs/performance-summary.md, 97ad8cc6f, 2025-12-04:
    # FSDP = 1), its recomputation unpublished, so the fastest mode that fits (none). Its recipe
    # disagrees: commit cb62f8620 (2025-11-21; r0.2.0, the 25.11 release: 8aed9a229) set
    # recompute_num_layers=5 (set_recompute_overrides: granularity full, method block) in
    # LLAMA3_8B_H100_FP8_CS_BASE_CONFIG and at the same time removed use_megatron_fsdp=True; no recipe
    # ran FSDP with 5 recomputed layers. Predictions (tokens/s/GPU, published 14451): the table's
    # FSDP, none: 15347 (+6.2 %, 51.7 GB per chip); FSDP + 5 blocks: 14674 (+1.5 %, 47.1 GB); the
    # 25.11 recipe (distributed optimizer, zero_stage 1, 5 blocks): 14686 (+1.6 %), 87.5 GB per
    # chip, over the 85.9 GB HBM in symcost's accounting. The closer fit is no evidence of the run.
}
"""Dense runs whose measured recomputation is known: ``{row id: (mode, recompute_layers)}``,
Megatron-Core's block method (:func:`~symcost.plan.pipeline.block_recompute_stages`); run as
published, as a MoE row's release settings are. Empty: the dense rows take the fastest mode
that fits (the 8B H100 run's recipe/table conflict is in the comment above)."""

CONTAINER_CUDNN: dict[str, str] = {
    "NeMo 25.09 container": "9.11.0", "NeMo 25.11 container": "9.13.1", "NeMo 26.02 container": "9.18.0",
    "NeMo 26.02.01 container": "9.18.0", "NeMo 26.04.01 container": "9.20.0", "NeMo 26.06 container": "9.21.1",
}
"""The cuDNN release each NeMo container ships: Megatron-Bridge docs/releases/software-versions.md
(NVIDIA-NeMo/Megatron-Bridge e49e451ba, "Software Component Versions": 25.09 cuDNN 9.11.0.98, 25.11
9.13.1.26, 26.02 9.18.0.50, 26.04 9.20.0.48, 26.06 9.21.1.3); the patch containers 26.02.01 and
26.04.01 are not listed and are taken as their release's (their Megatron-Bridge patch releases r0.3.1
and v0.4.1 change no container component that the notes name). A 10.x row's flash backward is timed
with the newest cuDNN release measured at or below its container's (:func:`run_chip`,
:func:`symcost.hardware.cudnn.with_cudnn`); the presets keep the newest measured (9.22)."""

_CHIPS = {"H100_SXM": "H100_SXM", "B200": "B200"}
ENGINE = "megatron-core"
"""The engine profile the rows run under (``symcost/hardware/engines/megatron-core.json``)."""


@dataclass(frozen=True)
class TrainingRow:
    """One published run of ``training_calibration.csv``."""

    id: str
    model: str
    architecture: str
    chip: str
    gpus: int
    precision: str
    tp: int
    pp: int
    dp: int
    cp: int
    ep: int
    vp: int
    global_batch: int
    micro_batch: int
    seq_len: int
    tokens_per_gpu: Fraction
    """Published tokens/s per GPU."""
    tflops_per_gpu: Fraction
    """Published model TFLOP/s per GPU (Megatron-Bridge's count)."""
    container: str
    notes: str
    run_settings: Optional["ReleaseSettings"] = field(default=None, compare=False, repr=False)
    """What the run ran where the settings file does not list it (a run outside the file:
    :func:`profiled_runs`, never fitted); ``None``: the file's row of the same id."""

    @property
    def moe(self) -> bool:
        """A mixture-of-experts model (the HF configs of the Qwen3 MoE rows)."""
        return "num_experts" in json.loads(self.architecture)

    @property
    def kind(self) -> str:
        return "MoE" if self.moe else "dense"

    @property
    def precision_class(self) -> str:
        """``"BF16"`` or ``"FP8"`` (FP8-CS, Hopper block-scaled FP8, MXFP8; the token-drop rows'
        tables state none, their FP8 recipes are in the same tables)."""
        return "BF16" if self.precision.upper().startswith("BF16") else "FP8"

    @property
    def group(self) -> tuple[str, str, str]:
        """``(kind, precision class, chip)``: what the summary averages over."""
        return (self.kind, self.precision_class, self.chip)

    @property
    def family(self) -> str:
        """``"Llama"`` or ``"Qwen3"``: what leave-one-family-out holds out."""
        return "Qwen3" if self.model.lower().startswith("qwen") else "Llama"

    @property
    def token_drop(self) -> bool:
        """A capacity-factor run (``notes`` say "token drop"); the others are dropless."""
        return "token drop" in self.notes

    @property
    def settings(self) -> Optional["ReleaseSettings"]:
        """What its release's recipe ran (:attr:`run_settings`, else :func:`load_settings`); ``None``
        for a dense row."""
        return self.run_settings if self.run_settings is not None else load_settings().get(self.id)

    @property
    def fitted(self) -> bool:
        """The fit sees the row: a dense row, or a MoE row whose layout is its release preset's
        (:attr:`ReleaseSettings.layout` ``"matches"``). Where the table's degrees or batch sizes
        differ from the preset, the run's recipe (recompute, overlap, dispatcher) is not known: the
        row is predicted and shown, marked "not fitted", and no fitted term leans on it. A run outside
        the file (:attr:`run_settings`, the profiled A/B of :func:`profiled_runs`) is never fitted."""
        if self.run_settings is not None:
            return False
        return self.settings is None or self.settings.layout == "matches"

    @property
    def dispatcher(self) -> str:
        """The MoE token dispatcher its recipe ran: ``"flex"`` (DeepEP / HybridEP), else Megatron-Core's
        ``"alltoall"`` (:attr:`settings`)."""
        return "alltoall" if self.settings is None or self.settings.dispatcher == "alltoall" else "flex"

    @property
    def fsdp(self) -> bool:
        """The run shards parameters, gradients and optimizer state (Megatron FSDP)."""
        return "fsdp" in self.id

    @property
    def cudnn(self) -> Optional[str]:
        """The cuDNN release its container ships (:data:`CONTAINER_CUDNN`); ``None`` for a
        container the table does not list (the presets' release is used).

        >>> load_rows()[5].container, load_rows()[5].cudnn
        ('NeMo 25.11 container', '9.13.1')
        """
        return CONTAINER_CUDNN.get(self.container)

    @property
    def flops_per_token(self) -> Fraction:
        """The source's model FLOPs per token: published TFLOP/s over tokens/s (per GPU)."""
        return self.tflops_per_gpu * 10**12 / self.tokens_per_gpu


@dataclass(frozen=True)
class ReleaseSettings:
    """What one MoE run of the file ran, as Megatron-Bridge's performance recipe at the run's release
    sets it (``symcost/data/training_calibration_settings.csv``, each row with the file and tag it
    was read from). Modelled: ``dispatcher`` (``alltoall``, or the flex dispatcher over ``deepep``
    / ``hybridep``: :attr:`~symcost.layers.moe.MoELayer.dispatcher`), ``a2a_overlap``
    (:attr:`~symcost.layers.moe.MoELayer.a2a_overlap`), ``capacity_factor`` (padded token drop),
    ``expert_tensor_parallel``, ``recompute`` (tried first) and ``cuda_graph_scope`` ``layer``
    (whole layers replayed, :attr:`~symcost.layers.moe.MoELayer.cuda_graph`: no host time). The
    same on every row and the model's own assumptions: ``permute_fusion`` (one HBM pass each way,
    the ``dispatch_permute`` and ``combine`` ops), ``grouped_gemm`` (Transformer Engine's
    GroupedLinear, the ``megatron-core`` profile) and ``router_fusion`` (one softmax-and-top-k pass).
    Recorded, not a term: the partial ``cuda_graph_scope`` values (the experts stay eager, and the
    dropless dispatcher's device-to-host sync stays under every scope: capturing ``moe_preprocess``
    only moves its copy to ``before_ep_alltoall``, NVIDIA/Megatron-LM core_v0.16.0
    megatron/core/transformer/moe/token_dispatcher.py ``MoEAlltoAllTokenDispatcher.__init__``) and
    ``shared_expert_overlap`` (Qwen3 has no shared expert). Not a column: routing is balanced
    (``routing_imbalance`` 1), as every dropless Qwen3 recipe sets ``moe_router_force_load_balancing
    = True`` ("required for token dropless", scripts/performance/configs/qwen*/qwen3_llm_pretrain.py
    at v0.2.0 to v0.5.0; v0.1.0rc3's run_script.py) and a token-drop run caps every expert."""

    id: str
    release: str
    preset: str
    source: str
    dispatcher: str
    a2a_overlap: bool
    cuda_graph_scope: str
    permute_fusion: bool
    grouped_gemm: bool
    router_fusion: bool
    recompute: str
    expert_tensor_parallel: int
    shared_expert_overlap: bool
    capacity_factor: Optional[Fraction]
    layout: str


_SETTINGS_FILE = "training_calibration_settings.csv"


def _setting_error(row: Mapping[str, str], name: str, rule: str) -> ConfigError:
    """The one-line error for column ``name`` of ``row`` in the settings file (its ``rule``)."""
    return ConfigError(field=name, rule=rule, values=(row.get(name),), context=(_SETTINGS_FILE, row.get("id") or "?"))


def _flag(row: Mapping[str, str], name: str) -> bool:
    """Column ``name`` of ``row``: ``true`` or ``false``."""
    if row.get(name) not in ("true", "false"):
        raise _setting_error(row, name, "must be true or false")
    return row[name] == "true"


def _choice(row: Mapping[str, str], name: str, allowed: tuple[str, ...], prefix: bool = False) -> str:
    """Column ``name`` of ``row``: one of ``allowed`` (with ``prefix``, starting with one)."""
    text = row.get(name) or ""
    if not any(text.startswith(a) if prefix else text == a for a in allowed):
        raise _setting_error(row, name, "must be " + " or ".join(allowed) + ("..." if prefix else ""))
    return text


def _whole(row: Mapping[str, str], name: str) -> int:
    """Column ``name`` of ``row``: a whole number of at least 1."""
    text = row.get(name) or ""
    if not text.isdigit() or int(text) < 1:
        raise _setting_error(row, name, "must be a whole number of at least 1")
    return int(text)


_GRAPH_PARTS = ("attn", "mlp", "moe", "moe_router", "moe_preprocess", "mamba")
"""Megatron-Core's partial CUDA-graph scopes (core_v0.16.0 megatron/core/transformer/enums.py
``CudaGraphScope``, less ``full_iteration``)."""


def _graph_scope(row: Mapping[str, str]) -> str:
    """Column ``cuda_graph_scope`` of ``row``: ``none``, ``layer`` (whole layers, 25.09's
    ``enable_cuda_graph``) or ``;``-separated partial scopes of :data:`_GRAPH_PARTS`."""
    text = row.get("cuda_graph_scope") or ""
    if text not in ("none", "layer") and not all(part in _GRAPH_PARTS for part in text.split(";")):
        raise _setting_error(row, "cuda_graph_scope", "must be none, layer, or ;-separated " + ", ".join(_GRAPH_PARTS))
    return text


def _capacity(row: Mapping[str, str]) -> Optional[Fraction]:
    """Column ``capacity_factor`` of ``row``: ``none`` (dropless) or a positive exact number."""
    text = row.get("capacity_factor") or ""
    if text == "none":
        return None
    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        value = Fraction(0)
    if value <= 0:
        raise _setting_error(row, "capacity_factor", "must be none or a positive number such as 1 or 1.25")
    return value


_SETTINGS_COLUMNS = ("id", "release", "preset", "source", "dispatcher", "a2a_overlap", "cuda_graph_scope",
                     "permute_fusion", "grouped_gemm", "router_fusion", "recompute", "expert_tensor_parallel",
                     "shared_expert_overlap", "capacity_factor", "layout")
"""The settings file's columns (:func:`parse_settings`)."""


def parse_settings(text: str) -> dict[str, ReleaseSettings]:
    r"""The release settings of every row of a settings file's ``text`` (``#`` lines are comments),
    by row id; a bad value raises :class:`~symcost.errors.ConfigError` naming the file, the row and
    the column.

    >>> header = ("id,release,preset,source,dispatcher,a2a_overlap,cuda_graph_scope,permute_fusion,"
    ...           "grouped_gemm,router_fusion,recompute,expert_tensor_parallel,shared_expert_overlap,"
    ...           "capacity_factor,layout\n")
    >>> try:
    ...     parse_settings(header + "r,v,p,s,alltoall,false,none,true,true,true,none,one,false,none,matches")
    ... except ConfigError as err:
    ...     print(err.field, "|", err.rule)
    expert_tensor_parallel | must be a whole number of at least 1
    """
    out = {}
    reader = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    missing = [c for c in _SETTINGS_COLUMNS if c not in (reader.fieldnames or ())]
    if missing:
        raise ConfigError(f"{_SETTINGS_FILE}: columns: missing {', '.join(missing)}")
    for r in reader:
        flags = {k: _flag(r, k) for k in ("a2a_overlap", "permute_fusion", "grouped_gemm", "router_fusion",
                                          "shared_expert_overlap")}
        out[r["id"]] = ReleaseSettings(r["id"], r["release"], r["preset"], r["source"],
                                       _choice(r, "dispatcher", ("alltoall", "hybridep", "deepep", "flex")),
                                       flags["a2a_overlap"], _graph_scope(r), flags["permute_fusion"],
                                       flags["grouped_gemm"], flags["router_fusion"],
                                       _choice(r, "recompute", ("none", "selective", "full")),
                                       _whole(r, "expert_tensor_parallel"), flags["shared_expert_overlap"],
                                       _capacity(r), _choice(r, "layout", ("matches", "differs"), prefix=True))
    return out


@functools.lru_cache(maxsize=1)
def load_settings() -> dict[str, ReleaseSettings]:
    """The release settings of every MoE run, by row id (``training_calibration_settings.csv``,
    :func:`parse_settings`).

    >>> load_settings()["bridge-H100-qwen3-30b-ep16-gbs1024"].dispatcher
    'hybridep'
    """
    return parse_settings(resources.files("symcost.data").joinpath(_SETTINGS_FILE).read_text(encoding="utf-8"))


def fit_rows() -> list[TrainingRow]:
    """The rows the fit sees (:attr:`TrainingRow.fitted`), in file order.

    >>> len(fit_rows())
    16
    """
    return [r for r in load_rows() if r.fitted]


def load_rows() -> list[TrainingRow]:
    """The 21 rows of ``training_calibration.csv``, in file order."""
    text = resources.files("symcost.data").joinpath("training_calibration.csv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    ints = ("gpus", "tensor_parallel", "pipeline_parallel", "data_parallel", "context_parallel", "expert_parallel",
            "virtual_pipeline", "global_batch", "micro_batch", "seq_len")
    rows = []
    for r in csv.DictReader(lines):
        gpus, tp, pp, dp, cp, ep, vp, batch, micro, seq = (int(r[k]) for k in ints)
        rows.append(TrainingRow(r["id"], r["model"], r["architecture"], r["chip"], gpus, r["precision"], tp, pp, dp,
                                cp, ep, vp, batch, micro, seq, Fraction(r["value"]),
                                Fraction(r["model_tflops_per_gpu"]), r["container"], r["notes"]))
    return rows


def build_model(row: TrainingRow) -> Model:
    """The row's model: its preset, or the HF ``config.json`` fields the row gives, with what its
    release ran (:attr:`~TrainingRow.settings`): the token dispatcher, the EP all-to-alls overlapped
    with the other micro-batch's compute (``moe_a2a_overlap``) and, for a token-drop row, every
    expert padded to its capacity factor (Megatron-Bridge's ``apply_moe_token_drop`` defaults:
    ``moe_expert_capacity_factor=1.0``, ``moe_pad_expert_input_to_capacity=True``), and where it
    captured whole layers in CUDA graphs (``cuda_graph_scope`` ``layer``), every MoE layer replayed
    (:attr:`~symcost.layers.moe.MoELayer.cuda_graph`: no host time exposed)."""
    arch = json.loads(row.architecture)
    if "preset" in arch:
        return get_model(arch["preset"])
    model = from_hf_config(arch, name=row.model)
    settings = row.settings
    if settings is None:
        return model
    if row.dispatcher != "alltoall":
        model = model.with_dispatcher(row.dispatcher)
    if settings.a2a_overlap:
        model = model.with_a2a_overlap()
    if settings.capacity_factor is not None:
        model = model.with_capacity_factor(settings.capacity_factor)
    return model.with_moe_cuda_graph() if settings.cuda_graph_scope == "layer" else model


def parallelism(row: TrainingRow) -> dict[str, Any]:
    """The row's degrees; Megatron sequence parallelism over the TP group where ``tp > 1``; MoE
    rows on Megatron's expert grid with their release's ``expert_tensor_parallel_size`` (1 in every
    Qwen3 performance preset, :func:`load_settings`)."""
    par: dict[str, Any] = {"tensor_parallel": row.tp, "pipeline_parallel": row.pp, "data_parallel": row.dp,
                           "context_parallel": row.cp, "expert_parallel": row.ep}
    if row.tp > 1:
        par["sequence_parallel"] = "tp"
    if row.settings is not None:
        par["expert_tensor_parallel"] = row.settings.expert_tensor_parallel
    return par


def options(row: TrainingRow) -> dict[str, Any]:
    """The step options a row sets: its dtype, interleaving and ZeRO stage, bf16 gradients
    (Megatron-Bridge's performance recipes set ``grad_reduce_in_fp32 = False``,
    src/megatron/bridge/perf_recipes/_common.py ``_benchmark_common``) and, for a dense row with
    TP or CP > 1, ``overlap``: the Llama recipes run ``tp_comm_overlap`` (Transformer Engine's
    userbuffers) where TP > 1 (Megatron-Bridge v0.2.0 src/megatron/bridge/recipes/llama/llama3.py
    ``CommOverlapConfig(tp_comm_overlap=True)``, the perf configs' ``tp_comm_overlap_cfg``, e.g.
    ``userbuffers_fp8_h100_h16384_tp8_cp2_mbs1_seqlen8192``; the SFT configs
    ``tp_comm_overlap=tp > 1``), and Transformer Engine's CP ring always overlaps its sends
    (``AttnFuncWithCPAndKVP2P``). The MoE rows' settings file records no ``tp_comm_overlap``: off."""
    return {"dtype": "bf16" if row.precision_class == "BF16" else "fp8_e4m3", "interleave": row.vp,
            "zero_stage": 3 if row.fsdp else 1, "grad_reduce_in_fp32": False,
            "overlap": not row.moe and (row.tp > 1 or row.cp > 1)}


@dataclass(frozen=True)
class Prediction:
    """The step's prediction for one row, or why the library refused the row."""

    row: TrainingRow
    tokens_per_gpu: Optional[float] = None
    recompute: Optional[Recompute] = None
    memory_per_chip: Optional[float] = None
    refused: Optional[str] = None
    breakdown: dict[str, float] = field(default_factory=dict)
    fits: bool = True
    """symcost's memory per chip fits the chip's HBM (False only at a recipe's published mode)."""
    recompute_layers: Optional[int] = None
    """Blocks recomputed per pipeline stage under ``recompute="full"`` (:data:`RECIPE_RECOMPUTE`);
    ``None``: every block under :attr:`recompute`."""

    @property
    def recompute_label(self) -> str:
        """The recomputation as the tables show it: the mode, with the block method's count.

        >>> Prediction(load_rows()[0], recompute="full", recompute_layers=5).recompute_label
        'full, 5 blocks per stage'
        """
        layers = self.recompute_layers
        return f"{self.recompute}" + ("" if layers is None else f", {layers} blocks per stage")

    @property
    def tflops_per_gpu(self) -> Optional[float]:
        """Predicted model TFLOP/s per GPU, by the source's own FLOPs per token."""
        if self.tokens_per_gpu is None:
            return None
        return self.tokens_per_gpu * float(self.row.flops_per_token) / 10**12

    @property
    def relative_error(self) -> Optional[float]:
        """Predicted over published tokens/s per GPU, minus one (positive: too fast)."""
        if self.tokens_per_gpu is None:
            return None
        return self.tokens_per_gpu / float(self.row.tokens_per_gpu) - 1


def predict(row: TrainingRow, chip: Hardware | str | None = None, **overrides: Any) -> Prediction:
    """The row on ``chip`` (default: the realistic preset of its GPU under :data:`ENGINE`) at its
    release's recompute mode where the recipe publishes one and the preset is the run's (its layout
    is the table's, :attr:`~TrainingRow.settings`; costed even where symcost's memory exceeds the
    HBM, which ``fits`` then says), else the fastest mode that fits; or the library's reason for
    refusing the row. A dense row whose recipe recomputes (:data:`RECIPE_RECOMPUTE`) runs that.
    ``overrides`` replace the step options of :func:`options` (e.g. ``overlap``)."""
    hw = run_chip(row) if chip is None else get_hardware(chip)
    model = build_model(row)
    kwargs = {**options(row), **overrides}
    published, modes = recompute_modes(row)
    needed = float("inf")
    for mode, layers in modes:
        try:
            step = model.training_step(hw, seq_len=row.seq_len, global_batch=row.global_batch,
                                       micro_batch=row.micro_batch, parallelism=parallelism(row), recompute=mode,
                                       recompute_layers=layers, **kwargs)
        except ValueError as err:  # SymcostError, or a layer's rule in its pydantic validator
            return Prediction(row, refused=one_line(err))
        if step.fits or published:
            tokens = float(step.tokens_per_second) / row.gpus
            parts = {k: float(v) for k, v in step.breakdown().items()}
            return Prediction(row, tokens, mode, float(step.memory_per_chip), breakdown=parts, fits=bool(step.fits),
                              recompute_layers=layers)
        needed = min(needed, float(step.memory_per_chip))
    return Prediction(row, refused=f"no recompute mode fits: {needed / 1e9:.1f} GB per chip at best, "
                                   f"{float(hw.hbm_capacity) / 1e9:.0f} GB of HBM")


def recompute_modes(row: TrainingRow) -> tuple[bool, tuple[tuple[Recompute, Optional[int]], ...]]:
    """``(published, ((mode, recompute_layers), ...))``: the recomputation :func:`predict` runs
    ``row`` at, in order: its recipe's where it is known (:data:`RECIPE_RECOMPUTE`, or a MoE row's
    release settings with the preset's layout), else :data:`RECOMPUTE`, fastest first.

    >>> recompute_modes(load_rows()[0])
    (False, (('none', None), ('selective', None), ('full', None)))
    """
    if row.id in RECIPE_RECOMPUTE:
        return True, (RECIPE_RECOMPUTE[row.id],)
    if row.settings is not None and row.settings.layout == "matches":
        return True, ((cast(Recompute, row.settings.recompute), None),)
    return False, tuple((mode, None) for mode in RECOMPUTE)


def predict_all(rows: Optional[Sequence[TrainingRow]] = None, chips: Optional[Mapping[str, Hardware]] = None,
                **overrides: Any) -> list[Prediction]:
    """Every row (default: all shipped) on its chip (``chips`` by the row's chip name, default
    the realistic presets)."""
    rows = load_rows() if rows is None else rows
    return [predict(r, None if chips is None else chips.get(r.chip), **overrides) for r in rows]


def _mean(errors: Sequence[float]) -> tuple[float, float]:
    return sum(map(abs, errors)) / len(errors), sum(errors) / len(errors)


def group_summary(predictions: Sequence[Prediction]) -> dict[tuple[str, ...], tuple[int, float, float]]:
    """``{group: (rows, mean abs error, mean signed error)}`` over the predicted rows, per
    ``(kind, precision, chip)``, per kind, ``("all",)``, and the same three over the fitted rows
    only (:attr:`TrainingRow.fitted`; keys ending in ``"fitted rows"``)."""
    groups: dict[tuple[str, ...], list[float]] = {}
    for p in predictions:
        if p.relative_error is None:
            continue
        keys = [p.row.group, (p.row.kind,), ("all",)]
        if p.row.fitted:
            keys += [(*p.row.group, "fitted rows"), (p.row.kind, "fitted rows"), ("all", "fitted rows")]
        for key in keys:
            groups.setdefault(key, []).append(p.relative_error)

    def order(keys: list[tuple[str, ...]]) -> list[tuple[str, ...]]:
        last: list[tuple[str, ...]] = [("all",)]
        return sorted(k for k in keys if len(k) == 3) + sorted(k for k in keys if len(k) == 1 and k != ("all",)) + last

    every = order([k for k in groups if k[-1] != "fitted rows"])
    fitted = [(*k, "fitted rows") for k in order([k[:-1] for k in groups if k[-1] == "fitted rows"])]
    return {k: (len(groups[k]), *_mean(groups[k])) for k in [*every, *fitted] if k in groups}


# -- a profiled A/B of one layout: what the GPU leaves idle (issue 22) -------------------------------

_PROFILE_SOURCE = ("https://github.com/NVIDIA-NeMo/Megatron-Bridge/blob/7ded17dae62523b664dd3d8d2dbc632c844b1cef/"
                   "skills/nemo-mbridge-perf-moe-comm-overlap/SKILL.md")
"""Megatron-Bridge #5094 ("perf(recipe): overlap Qwen3 expert communication on H100", 2026-07-25):
the A/B and its matched Nsight Systems comparison (one steady iteration of rank 0 per arm)."""

_PROFILED = (("EP overlap off", False, "24.7138", "22.821", "244.039"),
             ("EP overlap on", True, "20.9920", "21.221", "287.305"))
"""Per arm: case, ``overlap_moe_expert_parallel_comm``, the unprofiled steady step (s: iterations 5-20
off, the independent validation's 41-50 on), the profiled iteration's GPU-active interval union (s)
and the published model TFLOP/s per GPU of the same steady window (all from :data:`_PROFILE_SOURCE`)."""


@dataclass(frozen=True)
class ProfiledRun:
    """One arm of NVIDIA's profiled A/B of the H100 Qwen3-30B-A3B EP 16 layout (:data:`_PROFILE_SOURCE`):
    ``row`` is the run (BF16, HybridEP, CUDA graphs ``moe_router`` + ``moe_preprocess``, its tokens/s per
    GPU ``GBS * seq / (GPUs * step)``, its published model TFLOP/s per GPU; never fitted), ``step``
    the published unprofiled step and ``gpu_active`` the profiled iteration's GPU-active interval
    union, both in seconds."""

    case: str
    row: TrainingRow
    step: Fraction
    gpu_active: Fraction

    @property
    def layer_passes(self) -> int:
        """MoE layer passes of one rank per step: layers per stage x micro-batches per step. Every
        layer counts as MoE: right for Qwen3-30B-A3B, whose ``mlp_only_layers`` is empty."""
        r = self.row
        layers = int(json.loads(r.architecture)["num_hidden_layers"]) // r.pp
        return layers * r.global_batch // (r.dp * r.micro_batch)

    @property
    def idle_per_layer_pass(self) -> Fraction:
        """``(step - gpu_active) / layer_passes``, signed: an estimate of the time no kernel runs per
        MoE layer pass, where everything not device work (the dispatcher's sync, eager launches, the
        optimizer's host time) lies. Not a bound: ``step`` is the unprofiled average of a window,
        ``gpu_active`` one profiled iteration, and the overlap-on arm's union exceeds its step
        (negative: how far apart the two measurements can be)."""
        return (self.step - self.gpu_active) / self.layer_passes


def profiled_runs() -> list[ProfiledRun]:
    """The two arms of the profiled A/B (:class:`ProfiledRun`), overlap off then on: the H100 EP 16
    row's layout and release settings with BF16, the graphs the A/B captured, and its overlap.

    >>> [r.idle_per_layer_pass * 1000 for r in profiled_runs()]   # ms per MoE layer pass: 1.8928 s / 3072
    [Fraction(1183, 1920), Fraction(-229, 3072)]
    """
    base = next(r for r in load_rows() if r.id == "bridge-H100-qwen3-30b-ep16-gbs1024")
    settings = load_settings()[base.id]
    out = []
    for case, overlap, step, active, tflops in _PROFILED:
        tag = "nvidia-ab-H100-qwen3-30b-bf16-overlap-" + ("on" if overlap else "off")
        ran = replace(settings, id=tag, release="main 7ded17dae", source=_PROFILE_SOURCE,
                      preset="qwen3_30b_a3b_pretrain_16gpu_h100_bf16_config", a2a_overlap=overlap,
                      cuda_graph_scope="moe_router;moe_preprocess")
        tokens = Fraction(base.global_batch * base.seq_len, base.gpus) / Fraction(step)
        row = replace(base, id=tag, precision="BF16", tokens_per_gpu=tokens, container="Megatron-Bridge #5094",
                      tflops_per_gpu=Fraction(tflops), run_settings=ran)
        out.append(ProfiledRun(case, row, Fraction(step), Fraction(active)))
    return out


def profiled_steps(run: ProfiledRun) -> tuple[float, float]:
    """The predicted step (s) of ``run``, and the same without the engine's ``moe_sync_time`` (the
    model's device time and exposed communication alone)."""
    def step(chip: Optional[Hardware]) -> float:
        prediction = predict(run.row, chip)
        if prediction.tokens_per_gpu is None:
            raise SymcostError(f"{run.row.id}: the model refuses the profiled run: {prediction.refused}")
        return run.row.global_batch * run.row.seq_len / (run.row.gpus * prediction.tokens_per_gpu)

    return step(None), step(_chip(run.row, {"moe_sync_time": sp.Integer(0)}))


def profiled_table() -> str:
    """The profiled A/B against the model (markdown; the fidelity page's training section)."""
    lines = ["| profiled run | step | GPU active | (step - GPU active) per MoE layer pass | predicted step | "
             "predicted without host time | error |", "|---|---:|---:|---:|---:|---:|---:|"]
    for run in profiled_runs():
        full, device = profiled_steps(run)
        lines.append(f"| {run.row.id} | {float(run.step):.2f} s | {float(run.gpu_active):.2f} s | "
                     f"{float(run.idle_per_layer_pass) * 1e3:+.3f} ms | {full:.2f} s | {device:.2f} s | "
                     f"{float(run.step) / full - 1:+.1%} |")
    return "\n".join(lines)


def _row_line(p: Prediction) -> str:
    r = p.row
    layout = f"{r.tp}/{r.pp}/{r.dp}/{r.cp}/{r.ep}/{r.vp}"
    head = f"| {r.id} | {r.chip.split('_')[0]} | {r.gpus} | {layout} | {r.global_batch}/{r.micro_batch} | {r.seq_len} |"
    if p.tokens_per_gpu is None:
        return f"{head} {r.tokens_per_gpu} | refused | | | | |"
    return (f"{head} {r.tokens_per_gpu} | {p.tokens_per_gpu:.0f} | {r.tflops_per_gpu} | {p.tflops_per_gpu:.0f} | "
            f"{p.relative_error:+.1%} | {p.recompute_label}{'' if p.fits else ' (over HBM)'}"
            f"{'' if r.fitted else '; not fitted (layout not its preset)'} |")


# -- where a MoE block's time goes (the residual's structure) --------------------------------------

# NB: the expert-map sort (gemm.grouped.prologue) builds the permutation's maps: "permute"
_KINDS = {"gemm": "gemm", "gemm.grouped": "grouped_gemm", "host.sync": "host_sync", "gemm.grouped.prologue": "permute"}


def _work_kind(op: Any) -> str:
    """The :func:`block_breakdown` kind of one op: by its kernel class (the expert-map sort with the
    permutation it prepares), the MoE dispatcher's permutations (``dispatch_permute``, ``combine``)
    and the router (its GEMM and top-k) by name."""
    name = op.name.split(".")[0]
    if name in ("dispatch_permute", "combine"):
        return "permute"
    if name.startswith("router"):
        return "router"
    if op.kernel.startswith("attn."):
        return "attention"
    return _KINDS.get(op.kernel, "elementwise")


def block_breakdown(row: TrainingRow, recompute: Optional[Recompute] = None) -> dict[str, float]:
    """Seconds of one micro-batch's pass (forward + backward, ``recompute``'s extra forward
    included; default the mode :func:`predict` chooses, for a row with block recomputation,
    :data:`RECIPE_RECOMPUTE`, that of one of its recomputed blocks) through one block of ``row``'s model on one
    chip, by kind of work: ``gemm``, ``grouped_gemm`` (routed experts), ``attention`` (core and its
    backward), ``permute`` (the dispatcher's permutation, its expert-map sort and the weighted combine), ``router``,
    ``elementwise`` (norms, activations, residuals), ``host_sync`` (the host time an eager MoE
    layer exposes: the dropless dispatcher's sync, a padded one's launches), ``all_to_all_inside`` /
    ``all_to_all_across`` (the EP dispatch and combine within one scale-up domain or across several),
    ``tp_comm`` (every other collective),
    ``a2a_covered`` (what the other micro-batch's compute covers of the all-to-alls where the release ran
    ``moe_a2a_overlap``: ``a2a_overlap_efficiency * min(ops, all-to-alls)``; 0 elsewhere) and ``block``,
    the kinds' sum less ``a2a_covered`` (TP communication overlapped where :func:`options` says so,
    as the calibration runs the step).

    >>> parts = block_breakdown(load_rows()[8], "none")           # Qwen3-30B-A3B, H100, EP 16
    >>> parts["all_to_all_across"] > 0, parts["all_to_all_inside"]     # 16 ranks over two nodes of 8
    (True, 0.0)
    """
    chip = _chip(row, {})
    mode = predict(row).recompute if recompute is None else recompute
    model = build_model(row)
    dtype = options(row)["dtype"]
    sharded = model.with_parallelism(resolve_parallelism(model, parallelism(row)))
    blocks = [(n, m) for name, n, m in sharded.breakdown(row.micro_batch, row.seq_len, "training", dtype, chip,
                                                       mode or "none", options(row)["overlap"])
              if name.startswith("blocks")]
    metrics = blocks[0][1]
    datatype = DataType.parse(dtype)
    out = dict.fromkeys(("gemm", "grouped_gemm", "attention", "permute", "router", "elementwise", "host_sync",
                         "all_to_all_inside", "all_to_all_across", "tp_comm"), 0.0)
    ops, hidden = [], []
    for op, count in metrics.ops:
        ops.append(op_time(op, chip, metrics.peak_flops, datatype).time * count)
        out[_work_kind(op)] += float(ops[-1])
    for c in metrics.collectives:
        inside = bool(sp.Le(c.span, chip.scale_up_domain))
        key = "tp_comm" if c.kind != "all_to_all" else ("all_to_all_inside" if inside else "all_to_all_across")
        time = collective_time(c, chip)
        hidden += [time] if c.hidden else []
        out[key] += float(time)
    # what layer_times takes off the sum: eta * min(ops, hidden collectives), none without them
    out["a2a_covered"] = (float(chip.runtime.a2a_overlap_efficiency * sp.Min(sp.Add(*ops), sp.Add(*hidden)))
                          if hidden else 0.0)
    out["block"] = float(metrics.latency)
    return out


# -- the fit: the engine's terms no per-op table shows -------------------------------------------

PARAMETERS: dict[str, tuple[sp.Symbol, tuple[Fraction, ...]]] = {
    "moe_sync_time": (sym.moe_sync_time, tuple(Fraction(k, 10**4) for k in range(0, 101))),  # 0 .. 10 ms
    "tp_overlap_efficiency": (sym.tp_overlap_efficiency, tuple(Fraction(k, 20) for k in range(0, 21))),  # 0 .. 1
}
"""Name -> (symbol, grid) of every term of the ``megatron-core`` profile fitted on these runs. Not
``a2a_overlap_efficiency``: the profile derives it from a published A/B of the overlap alone
(Megatron-Bridge's expert-parallel-overlap benchmark, the profile's source), 9/20."""


def run_chip(row: TrainingRow) -> Hardware:
    """The row's realistic chip under :data:`ENGINE`, its flash backward on a 10.x chip fitted on
    the cuDNN release of the row's container (:attr:`TrainingRow.cudnn`,
    :func:`~symcost.hardware.cudnn.with_cudnn`; the preset's where the container is not listed).

    >>> run_chip(load_rows()[5]).attention_backward_peak_efficiency    # B200, NeMo 25.11: cuDNN 9.13
    303/625
    """
    chip = get_hardware(_CHIPS[row.chip]).with_runtime(ENGINE)
    return chip if row.cudnn is None else with_cudnn(chip, row.cudnn)


def _chip(row: TrainingRow, values: Mapping[str, Any]) -> Hardware:
    """:func:`run_chip` with the profile's fitted terms replaced by ``values`` (numbers or symbols)."""
    chip = run_chip(row)
    return chip.with_efficiency(runtime=chip.runtime.model_copy(update=dict(values)))


@functools.lru_cache(maxsize=1)
def _compiled() -> dict[str, Callable[..., float]]:
    """Every costed row's predicted tokens/s per GPU as a compiled function of :data:`PARAMETERS`
    (the recomputation mode is the shipped prediction's: memory does not depend on them)."""
    names = tuple(PARAMETERS)
    symbols = [PARAMETERS[n][0] for n in names]
    out = {}
    for row in load_rows():
        chosen = predict(row)
        if chosen.recompute is None:
            continue
        step = build_model(row).training_step(
            _chip(row, dict(zip(names, symbols))), seq_len=row.seq_len, global_batch=row.global_batch,
            micro_batch=row.micro_batch, parallelism=parallelism(row), recompute=chosen.recompute,
            recompute_layers=chosen.recompute_layers, **options(row))
        out[row.id] = sp.lambdify(symbols, sp.sympify(step.tokens_per_second) / row.gpus, modules="math")
    return out


@dataclass(frozen=True)
class Fit:
    """Fitted values of :data:`PARAMETERS` with every costed row's predicted tokens/s per GPU."""

    values: dict[str, Fraction]
    predicted: dict[str, float]

    def relative_error(self, row: TrainingRow) -> float:
        """Predicted over published tokens/s per GPU, minus one."""
        return self.predicted[row.id] / float(row.tokens_per_gpu) - 1


def _loss(functions: Mapping[str, Callable[..., float]], rows: Sequence[TrainingRow], x: Sequence[float]) -> float:
    return sum(math.log(functions[r.id](*x) / float(r.tokens_per_gpu)) ** 2 for r in rows if r.id in functions)


def fit(rows: Optional[Sequence[TrainingRow]] = None) -> Fit:
    """Coordinate descent over the exact grids of :data:`PARAMETERS` (from 0) until no single
    change lowers the sum of squared log errors of the tokens/s of ``rows`` (default:
    :func:`fit_rows`); deterministic. Every costed row is predicted with the result."""
    rows = list(fit_rows() if rows is None else rows)
    functions = _compiled()
    current, x = coordinate_descent({n: PARAMETERS[n][1] for n in PARAMETERS}, {n: Fraction(0) for n in PARAMETERS},
                                    lambda trial: _loss(functions, rows, trial))
    return Fit(current, {key: f(*x) for key, f in functions.items()})


def held_out(key: Callable[[TrainingRow], Any]) -> dict[Any, Fit]:
    """For each value of ``key`` (``lambda r: r.group``, ``lambda r: r.family``): the fit on the
    fitted rows (:func:`fit_rows`) without it (which then predicts every row)."""
    rows = fit_rows()
    return {k: fit([r for r in rows if key(r) != k]) for k in dict.fromkeys(key(r) for r in rows)}


def shipped() -> dict[str, Fraction]:
    """The fitted terms as the ``megatron-core`` profile ships them (what :func:`fit` must give)."""
    profile = runtime(ENGINE)
    return {name: Fraction(str(sp.Rational(getattr(profile, name)))) for name in PARAMETERS}


def constraining_rows(rows: Optional[Sequence[TrainingRow]] = None) -> dict[str, tuple[str, ...]]:
    """For each term of :data:`PARAMETERS`: the ids of ``rows`` (default :func:`fit_rows`) whose
    predicted tokens/s moves with it (from 0 to its grid's top, the other terms at 0), the rows
    that constrain its fit; in file order."""
    rows = list(fit_rows() if rows is None else rows)
    functions, names = _compiled(), tuple(PARAMETERS)
    out = {}
    for i, name in enumerate(names):
        low = [0.0] * len(names)
        high = [float(PARAMETERS[name][1][-1]) if j == i else 0.0 for j in range(len(names))]
        out[name] = tuple(r.id for r in rows if r.id in functions and functions[r.id](*low) != functions[r.id](*high))
    return out


def profiled_idle() -> tuple[Fraction, Fraction, Fraction]:
    """The estimate the profiled A/B gives of the time the GPU idles per MoE layer pass with EP
    overlap off (:attr:`ProfiledRun.idle_per_layer_pass`), and its range: that value minus and plus
    the overlap-on arm's (negative) difference, how far an unprofiled window's average step and one
    profiled iteration's GPU-active union can be apart (s).

    >>> [round(float(x) * 1000, 2) for x in profiled_idle()]   # ms: 0.616 -+ 0.229 s / 3072
    [0.62, 0.54, 0.69]
    """
    off, on = profiled_runs()
    spread = abs(on.idle_per_layer_pass)
    return off.idle_per_layer_pass, off.idle_per_layer_pass - spread, off.idle_per_layer_pass + spread


def _ms(seconds: Fraction) -> str:
    return f"{float(seconds) * 1000:.2f} ms"


def _sync_note() -> str:
    """What the profiled A/B says of ``moe_sync_time`` (its source's words, from :func:`profiled_runs`)."""
    off, on = profiled_runs()
    mid, low, high = profiled_idle()
    return ("; an effective term, not host time alone: NVIDIA's matched Nsight A/B of the H100 EP 16 row's layout "
            "(Megatron-Bridge #5094, commit 7ded17dae, skills/nemo-mbridge-perf-moe-comm-overlap/SKILL.md; BF16 with "
            "the router and preprocessing captured in CUDA graphs, where the fitted row ran FP8 eagerly, so the "
            f"comparison is across configurations) gives ({float(off.step)} s unprofiled step - "
            f"{float(off.gpu_active)} s profiled GPU-active) / {off.layer_passes} MoE layer passes = {_ms(mid)} "
            "per pass with EP overlap off, "
            f"an estimate, not a bound: with the overlap on the GPU-active union exceeds the step by "
            f"{float(on.gpu_active - on.step):.3f} s, so {_ms(low)} to {_ms(high)}; the fitted value also carries "
            "device time the per-op model lacks there (profiled_table, docs/explanation/fidelity.md)")


_NOTES: dict[str, Callable[[], str]] = {"moe_sync_time": _sync_note}
"""What a fitted term's source adds to the fit's own words (:func:`_source`)."""


def _source(rows: Sequence[str], name: str = "") -> str:
    """The fitted term's source: the fit, what is known of the term ``name`` beside it
    (:data:`_NOTES`), and the ``rows`` (ids) that constrain it."""
    return ("fitted on symcost/data/training_calibration.csv by symcost.plan.calibration_training.fit() "
            "(benchmarks/calibrate_training.py), with each MoE run's release settings "
            "(symcost/data/training_calibration_settings.csv): the term per-op tables cannot show, least squares on "
            f"the log of the predicted tokens/s of the {len(fit_rows())} runs whose release settings are known "
            f"(fit_rows){_NOTES[name]() if name in _NOTES else ''}; constrained by the {len(rows)} of them whose "
            f"prediction moves with it: {', '.join(rows)}")


_IN_US = ("moe_sync_time",)
"""The fitted terms in seconds (written in microseconds); the others are dimensionless shares."""


def shown(name: str, value: Fraction) -> str:
    """``name = value`` as the tables print it: milliseconds for a time, the share otherwise."""
    return f"{name} = {float(value) * 1e3:g} ms" if name in _IN_US else f"{name} = {float(value):g}"


def write_profile(result: Fit, folder: Any = None) -> str:
    """Write ``result``'s values into the ``megatron-core`` profile
    (``symcost/hardware/engines/megatron-core.json``, in microseconds) and return its path."""
    from decimal import Decimal
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "hardware" / "engines" if folder is None else Path(folder)
    path = folder / f"{ENGINE}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    constraining = constraining_rows()
    for name, value in result.values.items():
        seconds = name in _IN_US
        scaled = value * 10**6 if seconds else value
        text = format((Decimal(scaled.numerator) / Decimal(scaled.denominator)).normalize(), "f")
        data["fields"][name] = {"value": text, **({"unit": "us"} if seconds else {}),
                                "source": _source(constraining[name], name)}
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return str(path)


def _held_lines(title: str, fits: Mapping[Any, Fit], key: Callable[[TrainingRow], Any]) -> list[str]:
    lines = ["", f"| held-out {title} | rows | fitted | mean abs error | mean signed error |",
             "|---|---:|---|---:|---:|"]
    for k, result in fits.items():
        errs = [result.relative_error(r) for r in fit_rows() if key(r) == k and r.id in result.predicted]
        if not errs:
            continue
        values = ", ".join(shown(n, v) for n, v in result.values.items())
        mae, signed = _mean(errs)
        lines.append(f"| {', '.join(k) if isinstance(k, tuple) else k} | {len(errs)} | {values} | {mae:.1%} | "
                     f"{signed:+.1%} |")
    return lines


def validation_table(predictions: Optional[Sequence[Prediction]] = None, held: bool = True) -> str:
    """The tables of docs/explanation/fidelity.md (markdown): each row published vs predicted, the mean absolute and
    signed error per group, the rows the library refuses with its reason, (``held``) each
    group and each model family predicted by the fit on the others, and the profiled A/B
    (:func:`profiled_table`, not fitted)."""
    preds = predict_all() if predictions is None else list(predictions)
    lines = ["| run | GPU | GPUs | TP/PP/DP/CP/EP/VP | batch/micro | seq | tokens/s/GPU | predicted | "
             "TFLOP/s/GPU | predicted | error | recompute |",
             "|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---|"]
    lines += [_row_line(p) for p in preds]
    lines += ["", "| group | rows | mean abs error | mean signed error |", "|---|---:|---:|---:|"]
    for key, (n, mae, signed) in group_summary(preds).items():
        lines.append(f"| {', '.join(key)} | {n} | {mae:.1%} | {signed:+.1%} |")
    refused = [p for p in preds if p.refused is not None]
    if refused:
        lines += ["", "Refused by the library:", ""]
        lines += [f"- {p.row.id}: {p.refused}" for p in refused]
    if held:
        lines += _held_lines("group", held_out(lambda r: r.group), lambda r: r.group)
        lines += _held_lines("family", held_out(lambda r: r.family), lambda r: r.family)
    return "\n".join([*lines, "", profiled_table()])
