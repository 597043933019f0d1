"""The layer contract: a frozen model of shape fields that lists its ops and memory terms.

A concrete layer implements :meth:`Layer.forward_ops`, :meth:`Layer.weight_memory`,
:meth:`Layer.saved_activations` and :meth:`Layer.peak_activations` (and
:meth:`Layer.kv_cache_memory` where it keeps one); :meth:`Layer.compute_metrics` derives the
backward, recomputation and the aggregate metrics from those, once, for every layer type.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Optional

import sympy
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationInfo

from ..core import symbols as sym
from ..core._expr import check_divides, dim, extreme
from ..core.assumptions import Assumption, collecting, merge, record
from ..core.binding import Chip, on_register, time_model
from ..core.compile import compile_exact
from ..core.compile_float import tighten
from ..core.compiled import compile_scaled
from ..core.dtypes import DataType, DtypeLike, bytes_per_element, wire_format
from ..core.metrics import METRIC_FIELDS, LayerMetrics
from ..core.ops import Collective, CollectiveKind, Op
from ..core.parallelism import Parallelism
from ..core.phase import Phase
from ..errors import ConfigError

__all__ = ["Layer", "Phase", "Context", "Dim", "Recompute", "TRAINING_TENSOR_BYTES", "narrow_gemm_bytes", "shard_heads",
           "tensor_bytes"]

Recompute = Literal["none", "selective", "full"]


def _dim_field(value: Any, info: ValidationInfo) -> sympy.Expr:
    return dim(value, str(info.field_name))


Dim = Annotated[Any, BeforeValidator(_dim_field)]
"""A shape field: a positive integer or an expression not provably otherwise."""

# The backward of each forward collective is its transpose: an all-gather's gradient is
# reduce-scattered and vice versa, all-to-all and p2p transpose to themselves, and a sum
# (all-reduce, Megatron's g) has an identity backward: the gradient is already replicated.
# Megatron's f (identity forward, all-reduce backward) is a GradientCollective op.
_TRANSPOSE: dict[str, Optional[CollectiveKind]] = {"all_gather": "reduce_scatter", "reduce_scatter": "all_gather",
              "all_to_all": "all_to_all", "p2p": "p2p", "all_reduce": None}

_ZERO = sympy.Integer(0)


@dataclass(frozen=True)
class GradientCollective(Op):
    """A forward no-op whose backward issues ``collective``: Megatron's f operator, the identity
    on a replicated input whose gradient must be summed over the TP group."""

    collective: Collective = None  # type: ignore[assignment]

    def backward(self) -> list:
        return [self.collective]

    def xreplace(self, mapping: dict) -> "GradientCollective":
        return dataclasses.replace(self, collective=self.collective.xreplace(mapping))


@dataclass(frozen=True)
class Context:
    """The workload one ``compute_metrics`` call costs: sizes, phase, bytes and degrees."""

    batch_size: sympy.Expr
    seq_len: sympy.Expr
    phase: Phase
    dtype_bytes: sympy.Expr
    parallelism: Parallelism
    recompute: Recompute
    gemm_bytes: Optional[sympy.Expr] = None
    """Training in a format narrower than its tensors (Transformer Engine's FP8 recipes,
    :func:`tensor_bytes`): the GEMMs' format's bytes per element; ``None`` otherwise."""
    datatype: Optional[DataType] = None
    """The model's format where it is named (``None`` with the dtype a symbol)."""

    @property
    def wire_format(self) -> Optional[DataType]:
        """The format of the activations TP all-reduces carry (:attr:`wire_bytes`,
        :func:`~symcost.core.dtypes.wire_format`); ``None`` where the model's format is not named.

        >>> from symcost.core.parallelism import Parallelism
        >>> ctx = Context(batch_size=sympy.Integer(1), seq_len=sympy.Integer(8), phase=Phase.PREFILL,
        ...               dtype_bytes=sympy.Integer(1), parallelism=Parallelism(), recompute="none",
        ...               datatype=DataType.FP8_E4M3)
        >>> ctx.wire_format, dataclasses.replace(ctx, datatype=None).wire_format
        (<DataType.BF16: 'bf16'>, None)
        """
        return None if self.datatype is None else wire_format(self.datatype)

    @property
    def training(self) -> bool:
        return self.phase.is_training

    @property
    def saved_gemm_input_bytes(self) -> sympy.Expr:
        """Bytes per element a layer saves of a GEMM's input for the backward: ``e``; under
        Transformer Engine's FP8 training the FP8 cast the GEMM read (TE's linear layers save
        it for the weight gradient), except under full recomputation (the block's bf16 input)."""
        if self.gemm_bytes is None or self.recompute == "full":
            return self.dtype_bytes
        return self.gemm_bytes

    @property
    def wire_bytes(self) -> sympy.Expr:
        """Bytes per element of the activations TP collectives carry: ``max(e, 2)``. A model in
        an 8-bit or 4-bit format quantizes each GEMM's input and keeps its activations, and so
        its all-reduces and all-gathers, in bf16 (TensorRT-LLM, vLLM and SGLang FP8 checkpoints;
        Transformer Engine's FP8 recipes); 16- and 32-bit models send what they compute in."""
        e = self.dtype_bytes
        return e if e.is_number and e >= 2 else sympy.Integer(2) if e.is_number else sympy.Max(e, 2)

    @property
    def gemm_block_scaled(self) -> bool:
        """The narrow GEMM format (:attr:`gemm_bytes`) carries a scale per block (MXFP8, NVFP4:
        :attr:`DataType.is_block_scaled`), whose row-wise and column-wise copies are quantized and
        gathered separately (:meth:`te_gather_bytes`); ``False`` without one or with no named format."""
        return self.gemm_bytes is not None and self.datatype is not None and self.datatype.is_block_scaled

    def te_gather_bytes(self, usages: Literal[1, 2] = 1) -> sympy.Expr:
        """Bytes per element a Transformer Engine linear's TP all-gather of a GEMM input sends: under
        FP8 training TE quantizes the shard and gathers the quantized tensor (:attr:`gemm_bytes`,
        block scales included), each of the ``usages`` (1: row-wise only; 2: row-wise and column-wise)
        a block-scaled format needs; a per-tensor FP8 tensor gathers its row-wise data once (the scale
        is a scalar, the transpose is made locally). Else :attr:`wire_bytes`.
        transformer_engine/pytorch/distributed.py ``_all_gather_fp8`` / ``_all_gather_mxfp8``
        (tests/layers/test_te_fp8_gather.py cites the callers): the forward gather's single row-wise
        usage holds from Transformer Engine v2.4; the output gradient's two MXFP8 gathers need TE >= 2.4
        (v2.1 sent both usages in every gather). NB: TE gathers an MXFP8 tensor in bf16 where a
        dimension is not a multiple of 32 (``MXFP8Quantizer.is_quantizable``); not modelled (the
        layers' widths and token shards of the shipped models are multiples of 32;
        docs/conventions.md §12).

        >>> from symcost.core.parallelism import Parallelism
        >>> ctx = Context(batch_size=sympy.Integer(1), seq_len=sympy.Integer(8), phase=Phase.TRAINING,
        ...               dtype_bytes=sympy.Integer(2), parallelism=Parallelism(), recompute="none",
        ...               gemm_bytes=sympy.Rational(33, 32), datatype=DataType.MXFP8)
        >>> ctx.gemm_block_scaled, ctx.te_gather_bytes(), ctx.te_gather_bytes(usages=2)
        (True, 33/32, 33/16)
        """
        if usages not in (1, 2):
            raise ConfigError(f"Context.te_gather_bytes: usages must be 1 (row-wise) or 2 (both), got {usages!r}")
        if self.gemm_bytes is None:
            return self.wire_bytes
        return self.gemm_bytes * (usages if self.gemm_block_scaled else 1)

    @property
    def decode(self) -> bool:
        return self.phase is Phase.DECODE

    @property
    def tp(self) -> sympy.Expr:
        return self.parallelism.tp

    @property
    def sp(self) -> sympy.Expr:
        """The Ulysses sequence degree (1 without one)."""
        return self.parallelism.sp

    @property
    def cp(self) -> sympy.Expr:
        """The context-parallel degree (1 without one)."""
        return self.parallelism.cp

    @property
    def seq_shards(self) -> sympy.Expr:
        """Ways a sequence's tokens are split outside attention: ``sp * cp``."""
        return self.sp * self.cp

    @property
    def megatron_sp(self) -> bool:
        """Megatron sequence parallelism is in effect (it has no token axis to split in decode)."""
        return self.parallelism.megatron_sp and not self.decode

    @property
    def q_len(self) -> sympy.Expr:
        """New tokens per sequence: ``seq_len``, or 1 in decode."""
        return sympy.Integer(1) if self.decode else self.seq_len

    @property
    def tokens(self) -> sympy.Expr:
        """Tokens a chip's projections process: ``b*s/(sp*cp)``, or ``b`` in decode.

        NB: in decode, a Ulysses or context-parallel degree splits only the keys (KV cache and
        attention core); every sequence- and context-parallel rank runs the projections of the
        one new token (docs/conventions.md §3b).
        """
        if self.decode:
            return self.batch_size
        return self.batch_size * self.seq_len / (self.sp * self.cp)

    @property
    def sharded_tokens(self) -> sympy.Expr:
        """Tokens of the sequence-sharded regions (norms, dropout): ``tokens / t`` under
        Megatron sequence parallelism."""
        return self.tokens / self.tp if self.megatron_sp else self.tokens

    @property
    def e(self) -> sympy.Expr:
        return self.dtype_bytes


# NB: Transformer Engine trains in FP8 (and MXFP8, NVFP4) by running the GEMMs in the narrow format,
# each input cast to it in a pass of its own, while the tensors between kernels -- the
# activations saved for the backward, the weights, what TP, CP, EP and PP send -- stay bf16
# (``fp8_autocast`` changes the GEMMs only). TE keeps the GEMM inputs it saves in FP8; they are
# counted at 2 bytes here, an overestimate of the saved activations (docs/conventions.md §16).
TRAINING_TENSOR_BYTES = sympy.Integer(2)


def tensor_bytes(dtype: DtypeLike, phase: Phase) -> sympy.Expr:
    """Bytes per element of the tensors a layer keeps and sends: the dtype's own, except in
    training in a format narrower than 2 bytes, whose tensors are bf16 (Transformer Engine's FP8
    recipes); the GEMMs still run in ``dtype``.

    >>> tensor_bytes("fp8_e4m3", Phase.TRAINING), tensor_bytes("fp8_e4m3", Phase.PREFILL)
    (2, 1)
    """
    e = bytes_per_element(dtype)
    if phase.is_training and isinstance(dtype, (DataType, str)) and e < TRAINING_TENSOR_BYTES:
        return TRAINING_TENSOR_BYTES
    return e


def narrow_gemm_bytes(dtype: DtypeLike, phase: Phase) -> Optional[sympy.Expr]:
    """The GEMMs' bytes per element when training runs them narrower than its bf16 tensors
    (:func:`tensor_bytes`), else ``None``.

    >>> narrow_gemm_bytes("fp8_e4m3", Phase.TRAINING), narrow_gemm_bytes("bf16", Phase.TRAINING)
    (1, None)
    """
    e = bytes_per_element(dtype)
    return e if tensor_bytes(dtype, phase) != e else None


def shard_heads(heads: sympy.Expr, degree: sympy.Expr) -> sympy.Expr:
    """Heads per chip when ``heads`` are split ``degree`` ways; fewer heads than chips are
    replicated, one whole head per chip (Megatron's rule for KV heads).

    Formula: ``heads / degree`` when ``heads >= degree``, else 1; for symbols whose order SymPy
    cannot decide, ``heads / Min(heads, degree)``, right in both regimes (given the recorded rule
    that one of the two divides the other).

    NB: not the equal ``Max(1, heads/degree)``: SymPy 1.14 wrongly evaluates
    ``Max(1, 3/(t*u))`` to ``3/(t*u)`` (it takes ``3/(t*u) - 1`` for nonnegative), while ``Min``
    compares the sizes themselves.

    >>> from symcost import symbols as S
    >>> shard_heads(sympy.Integer(8), sympy.Integer(4)), shard_heads(sympy.Integer(2), sympy.Integer(8))
    (2, 1)
    >>> shard_heads(sympy.Integer(8), S.tp)
    8/Min(8, t)
    """
    if (heads - degree).is_negative:
        return sympy.Integer(1)
    if (heads - degree).is_nonnegative:
        return heads / degree
    return heads / extreme(sympy.Min, heads, degree)  # undecided above: not compared again


class Layer(BaseModel):
    """Base of every layer: ``name``, ``layer_idx`` and ``parallelism``, plus the shape fields
    of the subclass. Layers are immutable; shape fields default to the canonical symbols."""

    # NB: defer_build: pydantic builds a class's validator on its first instance, so a command
    # that costs no MLA, MoE or Mamba layer builds none of theirs (issue 23: start-up)
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, defer_build=True)

    name: Optional[str] = None
    layer_idx: Optional[int] = Field(default=None, ge=0)
    parallelism: Annotated[Parallelism, BeforeValidator(Parallelism.coerce)] = Parallelism()

    ulysses_unmodelled: ClassVar[Optional[str]] = None
    """Why Ulysses sequence parallelism (a numeric ``sequence_parallel``) is not modelled for this
    layer type, or ``None`` where it is: the parallelism search enumerates no Ulysses degree for a
    model with such a layer and says so (:func:`symcost.plan.search.parallelism`).

    >>> from symcost.layers.mla import MLALayer
    >>> Layer.ulysses_unmodelled is None, MLALayer.ulysses_unmodelled
    (True, 'multi-head latent attention')
    """

    _async_backward: ClassVar[bool] = False
    """The layer's linear is Megatron-Core's own ``ColumnParallelLinear``, whose backward issues its TP
    collectives asynchronously beside its GEMMs (:meth:`tp_enter`); Transformer Engine's linears
    (:attr:`~symcost.core.ops.Collective.userbuffers`) and the other layers: ``False``."""

    # -- what a layer type implements -------------------------------------------------------

    @property
    def num_params(self) -> sympy.Expr:
        """Parameters of the whole layer (all chips together, before any sharding)."""
        raise NotImplementedError

    def forward_ops(self, ctx: Context) -> list[Op | Collective]:
        """The forward ops on one chip, collectives included, in execution order."""
        raise NotImplementedError

    def weight_memory(self, ctx: Context) -> sympy.Expr:
        """Bytes of parameters resident on one chip."""
        raise NotImplementedError

    def saved_activations(self, ctx: Context) -> sympy.Expr:
        """Training: bytes one chip saves for the backward (honouring ``ctx.recompute``)."""
        raise NotImplementedError

    def peak_activations(self, ctx: Context) -> sympy.Expr:
        """Inference: bytes of the input, intermediates and output alive while the layer runs."""
        raise NotImplementedError

    def kv_cache_memory(self, ctx: Context) -> sympy.Expr:
        """Bytes of KV cache one chip keeps (zero for layers without one)."""
        return _ZERO

    def selective_recompute_ops(self, ctx: Context) -> list[Op | Collective]:
        """Ops re-run in the backward under ``recompute="selective"`` (the attention core, and
        under context parallelism the KV exchange it needs)."""
        return []

    # -- what the steps and the search ask of a layer (declared here: nothing above layers/
    #    inspects a layer's type) ------------------------------------------------------------

    if TYPE_CHECKING:
        # NB: declared for the type checker only: a layer type declares it as a shape field (a
        # base property of that name would be shadowed by the field); __pydantic_init_subclass__
        # checks every layer type does, when its class statement runs
        @property
        def hidden_size(self) -> Any:
            """The width of the residual stream the layer reads and writes."""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """A layer type declares ``hidden_size``: a shape field, or a property (a block's, read
        from its parts); the class statement of one that does not raises ``TypeError``."""
        super().__pydantic_init_subclass__(**kwargs)
        if "hidden_size" not in cls.model_fields and not isinstance(getattr(cls, "hidden_size", None), property):
            raise TypeError(f"{cls.__name__} declares no hidden_size: the Layer contract needs one "
                            "(a shape field, or a property)")

    @property
    def query_heads(self) -> Optional[sympy.Expr]:
        """Query heads of an attention layer (tensor parallelism splits them); ``None`` for others."""
        return None

    @property
    def kv_heads(self) -> Optional[sympy.Expr]:
        """K/V heads of a (grouped-query) attention layer, which bound useful tensor parallelism;
        ``None`` when the layer has none to respect (not attention, or a latent KV cache)."""
        return None

    @property
    def num_routed_experts(self) -> Optional[sympy.Expr]:
        """Routed experts of a mixture-of-experts layer (expert parallelism splits them); ``None``
        for a dense layer."""
        return None

    @property
    def expert_params_per_chip(self) -> sympy.Expr:
        """Routed-expert parameters one chip holds, sharded and synchronised over the
        expert-parallel ranks only (zero for a dense layer)."""
        return _ZERO

    @property
    def tp_summed_params(self) -> sympy.Expr:
        """Parameters held whole on every TP rank whose gradient each rank computes from its own
        part of the work, so that Megatron-Core sums them over the TP group once per step, after
        the backward (``finalize_model_grads`` -> ``_allreduce_layernorm_grads``, renamed
        ``_allreduce_non_tensor_model_parallel_grads``: the parameters marked ``sequence_parallel``
        under sequence parallelism, and the Q/K norms under ``qk_layernorm``); zero for a layer
        with none. The training step all-reduces them (:func:`~symcost.plan.training.assemble_training`).

        A block sums its layers': GPT-3 175B's (h 12288, LayerNorms and linears with biases) under
        TP 8 + SP: two LayerNorms 2 * 24576 (weight and bias each), the attention's and the MLP's
        output biases 12288 each: 2 * 24576 + 12288 + 12288 = 73,728.

        >>> from symcost import models
        >>> gpt3 = models.get("gpt3-175b").with_parallelism({"tensor_parallel": 8, "sequence_parallel": "tp"})
        >>> gpt3.blocks[0][0].tp_summed_params
        73728
        """
        return _ZERO

    @property
    def buffer_params(self) -> sympy.Expr:
        """Parameters held (in the checkpoint and the weights) that training moves without a
        gradient: registered buffers updated by their own rule, not the optimizer, so without
        gradient, optimizer state or data-parallel gradient sync; zero for a layer with none
        (DeepSeek-V3's router score-correction bias, :attr:`~symcost.layers.moe.MoELayer.router_bias_buffer`).
        A block sums its layers'.

        >>> from symcost import models
        >>> models.get("deepseek-v3").blocks[1][0].buffer_params   # n_routed_experts
        256
        """
        return _ZERO

    def check(self, ctx: Context) -> None:
        """Raise ``ValueError`` when the workload provably breaks a divisibility rule."""
        if not ctx.decode:
            check_divides(ctx.seq_len, ctx.sp, "seq_len", by="sequence_parallel")
            if ctx.megatron_sp:
                check_divides(ctx.seq_len, ctx.tp, "seq_len", by="tensor_parallel",
                              note=' under sequence_parallel="tp"')
            if ctx.cp != 1:
                # Megatron's load-balanced chunking: 2*cp chunks, each split further sp ways
                check_divides(ctx.seq_len, 2 * ctx.cp * ctx.sp, "seq_len",
                              by="2 * context_parallel * sequence_parallel", note=" (load-balanced CP chunks)")
            if ctx.cp != 1 and ctx.megatron_sp:
                # and under Megatron SP each chunk is split over the t TP ranks: s a multiple of
                # 2*cp*t (NVIDIA NeMo-RL pads packed sequences to cp_size * 2 * tp_size when both
                # are on, nemo_rl/models/megatron); tp 8, cp 4: 64, so s = 40 is refused
                check_divides(ctx.seq_len, 2 * ctx.cp * ctx.tp, "seq_len", by="2 * context_parallel * tensor_parallel",
                              note=' under sequence_parallel="tp" (load-balanced CP chunks, each split over '
                              'the TP ranks)')
        else:
            check_divides(ctx.seq_len, ctx.sp, "seq_len", by="sequence_parallel", note=" (keys attended)")
            if ctx.cp != 1:
                check_divides(ctx.seq_len, ctx.sp * ctx.cp, "seq_len", by="sequence_parallel * context_parallel",
                              note=" (keys attended)")

    # -- derived, the same for every layer ---------------------------------------------------

    def ops(self, ctx: Context) -> list[Op | Collective]:
        """Every op one chip runs for ``ctx``: forward, then in training the backward (each op's
        backward in reverse order, each collective transposed) and any recomputation."""
        declared = self.forward_ops(ctx)
        forward = [op for op in declared if not isinstance(op, GradientCollective)]
        if not ctx.training:
            return forward
        recompute: list[Op | Collective] = []
        if ctx.recompute == "full":
            recompute = [op.renamed(".recompute") if isinstance(op, Op) else op for op in forward]
        elif ctx.recompute == "selective":
            recompute = [op.renamed(".recompute") if isinstance(op, Op) else op
                         for op in self.selective_recompute_ops(ctx)]
        backward: list[Op | Collective] = []
        for op in reversed(declared):
            if isinstance(op, Collective):
                kind = _TRANSPOSE[op.kind]
                if kind is not None:
                    backward.append(_transpose(op, kind, ctx, self._async_backward))
            else:
                backward.extend(op.backward())
        return forward + recompute + backward

    def compute_metrics(
        self,
        batch_size: Any = None,
        seq_len: Any = None,
        phase: Phase | str = Phase.PREFILL,
        dtype: DtypeLike = None,
        hardware: Chip | str | None = None,
        recompute: Recompute = "none",
        overlap: bool = False,
    ) -> LayerMetrics:
        """Per-chip metrics of this layer for one workload, timed on ``hardware``.

        ``batch_size``, ``seq_len`` and ``dtype`` may be numbers, expressions, or omitted (then
        the canonical symbols ``b``, ``s`` and ``e``). ``hardware`` is a :class:`~symcost.hardware.Hardware`, a
        preset name, or ``None`` for the symbolic chip (times then are formulas in peak FLOP/s
        and bandwidths). ``recompute`` ("none", "selective", "full") matters only in training;
        ``overlap=True`` hides the TP chunks and the CP ring's sends behind the GEMMs and the
        attention as Megatron-Core and Transformer Engine do (:func:`~symcost.hardware.timing.exposed_comm`).
        With every input numeric, every field is an exact Python number.

        >>> from symcost import MLPLayer
        >>> m = MLPLayer(hidden_size=1024, intermediate_size=4096).compute_metrics(
        ...     batch_size=2, seq_len=512, phase="training", dtype="bf16", hardware="H100_SXM")
        >>> m.matmul_flops_per_chip == 3 * 2 * (2 * 2 * 512 * 1024 * 4096)   # fwd + 2x bwd
        True
        >>> m.bound
        'compute'
        """
        if recompute not in ("none", "selective", "full"):
            raise ConfigError(f"recompute: unknown mode {recompute!r}; valid: none, selective, full")
        chip = time_model().resolve(hardware)
        datatype = DataType.parse(dtype) if isinstance(dtype, (DataType, str)) else None
        ctx = Context(
            batch_size=sym.batch_size if batch_size is None else dim(batch_size, "batch_size"),
            seq_len=sym.seq_len if seq_len is None else dim(seq_len, "seq_len"),
            phase=Phase.parse(phase),
            dtype_bytes=tensor_bytes(dtype, Phase.parse(phase)),
            parallelism=self.parallelism,
            recompute=recompute,
            gemm_bytes=narrow_gemm_bytes(dtype, Phase.parse(phase)),
            datatype=datatype,
        )
        with collecting() as rules:
            self.check(ctx)
        if (datatype is not None and ctx.batch_size.is_Integer and ctx.seq_len.is_Integer
                and not chip.is_symbolic and is_numeric(self)):
            # every input is a number: evaluate this layer's compiled formulas (the same
            # expressions as the symbolic path, with b and s left free) exactly
            template = _template(self, ctx.phase, datatype, recompute, chip, overlap)
            return template.at(int(ctx.batch_size), int(ctx.seq_len))
        return _symbolic_metrics(self, ctx, chip, datatype, overlap, merge(_shape_assumptions(self), rules))

    def _metrics(self, ctx: Context, chip: Chip, datatype: DataType | None,
                 overlap: bool, assumptions: tuple[Assumption, ...] = ()) -> LayerMetrics:
        activations = self.saved_activations(ctx) if ctx.training else self.peak_activations(ctx)
        return LayerMetrics.from_ops(
            ctx.phase,
            self.ops(ctx),
            weight_memory=self.weight_memory(ctx),
            activation_memory=activations,
            kv_cache_memory=self.kv_cache_memory(ctx),
            hardware=chip,
            peak_flops=chip.effective_peak(datatype),
            overlap=overlap,
            datatype=datatype,
            assumptions=assumptions,
        )

    # -- helpers for layer types -------------------------------------------------------------

    @staticmethod
    def tp_enter(ctx: Context, payload: sympy.Expr, userbuffers: bool, regather_bytes: Optional[sympy.Expr] = None,
                 asynchronous: bool = False, te_linear: bool = False) -> list[Op | Collective]:
        """Communication entering a Megatron TP block: under sequence parallelism the all-gather
        of the sequence-sharded input (``payload`` bytes gathered at ``e`` bytes per element, sent
        at :attr:`Context.wire_bytes`); else Megatron's f, nothing forward and an all-reduce of the
        input gradient in the backward. ``userbuffers``: the block's first GEMM is a Transformer
        Engine linear (qkv, fc1) that overlaps it (:attr:`Collective.userbuffers`).

        In training under sequence parallelism the column-parallel linear saves the *shard* (the
        layers' activation memory counts ``T/t`` tokens) and all-gathers it again in the backward
        for its weight gradient, whole beside the dgrad GEMM under userbuffers (:attr:`Collective.bulk`;
        exposed where the linear is not Transformer Engine's): one more
        all-gather of ``payload`` at ``regather_bytes`` per element, by default the bytes of the
        GEMM input it saved (Transformer Engine gathers its FP8 cast under FP8 training, else
        :attr:`Context.wire_bytes`). Megatron-Core megatron/core/tensor_parallel/layers.py (commit
        d98e8a6) ``LinearWithGradAccumulationAndAsyncCommunication.backward``; Transformer Engine
        transformer_engine/pytorch/module/layernorm_linear.py (commit d0067d0) ``ln_out_needs_gather``
        (``ub_bulk_dgrad``); Korthikanti et al. 2022, section 4.2.2 (docs/conventions.md §12).
        ``asynchronous``: the linear is Megatron-Core's own, whose backward issues the re-gather
        beside dgrad and the input gradient's collective beside wgrad (both bulk; pass the layer's
        :attr:`_async_backward`, which also marks the reduce-scatter, the forward gather's transpose).
        ``te_linear``: the linear is Transformer Engine's (implied by ``userbuffers``;
        :attr:`Collective.te_linear`): under FP8 training its gathers carry the FP8 cast, and its
        backward re-gather and input-gradient reduce-scatter run beside its GEMMs (bulk).

        >>> from symcost.core.parallelism import Parallelism
        >>> ctx = Context(batch_size=sympy.Integer(1), seq_len=sympy.Integer(8), phase=Phase.TRAINING,
        ...               dtype_bytes=sympy.Integer(2), parallelism=Parallelism(tensor_parallel=2,
        ...               sequence_parallel="tp"), recompute="none")
        >>> [c.collective.payload_bytes if isinstance(c, GradientCollective) else c.payload_bytes
        ...  for c in Layer.tp_enter(ctx, sympy.Integer(256), True)]   # the gather, then the re-gather
        [256, 256]
        """
        if ctx.tp == 1:
            return []
        elements = payload / ctx.dtype_bytes
        payload = elements * ctx.wire_bytes
        te_linear = te_linear or userbuffers
        if not ctx.megatron_sp:
            # the input gradient's ctx.tokens rows, as the exit's all-reduce carries them
            summed = Collective("all_reduce", "tp", ctx.tp, payload, bulk=asynchronous, userbuffers=userbuffers,
                                te_linear=te_linear, tokens=ctx.tokens, element_format=ctx.wire_format,
                                model_format=True)
            return [GradientCollective("f", collective=summed)]
        # a Transformer Engine linear gathers its input's FP8 cast under FP8 training
        gathered = elements * ctx.te_gather_bytes() if te_linear and ctx.training else payload
        gather = Collective("all_gather", "tp", ctx.tp, gathered, userbuffers=userbuffers, te_linear=te_linear)
        if not ctx.training:
            return [gather]
        if regather_bytes is None:
            regather_bytes = ctx.wire_bytes if ctx.gemm_bytes is None else ctx.gemm_bytes
        regather = Collective("all_gather", "tp", ctx.tp, elements * regather_bytes, userbuffers=userbuffers,
                              te_linear=te_linear, bulk=te_linear or asynchronous)
        return [gather, GradientCollective("sp_regather", collective=regather)]

    @staticmethod
    def tp_exit(ctx: Context, payload: sympy.Expr, userbuffers: bool, te_linear: bool = False) -> list[Collective]:
        """Communication leaving a Megatron TP block (docs/conventions.md §12): one all-reduce of
        the partial sums (``payload`` bytes at ``e`` per element, sent at :attr:`Context.wire_bytes`),
        or a reduce-scatter under sequence parallelism. ``userbuffers``: the block's last GEMM is a
        Transformer Engine linear (proj, fc2) that overlaps it (:attr:`Collective.userbuffers`);
        ``te_linear``: a Transformer Engine linear without userbuffers (:attr:`Collective.te_linear`:
        its output gradient gathered in FP8 under FP8 training)."""
        if ctx.tp == 1:
            return []
        payload = payload * ctx.wire_bytes / ctx.dtype_bytes
        kind: CollectiveKind = "reduce_scatter" if ctx.megatron_sp else "all_reduce"
        # an all-reduce carries the partial sums of the block's ctx.tokens rows (an engine may switch by their count)
        tokens = None if ctx.megatron_sp else ctx.tokens
        # and in the format it carries (vLLM's symmetric memory takes bf16 only)
        return [Collective(kind, "tp", ctx.tp, payload, userbuffers=userbuffers, te_linear=te_linear or userbuffers,
                           tokens=tokens,
                           element_format=ctx.wire_format if kind == "all_reduce" else None,
                           model_format=kind == "all_reduce")]


def _transpose(op: Collective, kind: CollectiveKind, ctx: Context, asynchronous: bool = False) -> Collective:
    """The backward's transpose of a forward collective. A Transformer Engine linear's all-gather's
    transpose (:attr:`Collective.te_linear`), the reduce-scatter of the input gradient, runs in bulk
    beside the wgrad GEMM (:attr:`Collective.bulk`: ``ub_bulk_wgrad`` under userbuffers, else TE's
    asynchronous reduce-scatter), as does a TP all-gather's of a layer whose linear issues it
    ``asynchronous``-ly (Megatron-Core's own, :attr:`Layer._async_backward`).
    A Transformer Engine linear's TP collectives (:attr:`Collective.te_linear`) under FP8 training:
    the forward all-gather carried the FP8 cast, the input gradient's reduce-scatter carries bf16
    (:attr:`Context.wire_bytes`); the forward reduce-scatter carried bf16, the output gradient's
    all-gather carries its FP8 cast, both usages for a block-scaled format (``grad_output_preprocess``,
    :meth:`Context.te_gather_bytes`)."""
    te_linear = op.te_linear or op.userbuffers
    bulk = op.kind == "all_gather" and (te_linear or (asynchronous and op.axis == "tp"))
    payload = op.payload_bytes
    if te_linear and ctx.gemm_bytes is not None and kind in ("all_gather", "reduce_scatter"):
        forward, backward = ((ctx.te_gather_bytes(), ctx.wire_bytes) if kind == "reduce_scatter"
                             else (ctx.wire_bytes, ctx.te_gather_bytes(usages=2)))
        payload = payload / forward * backward
    return dataclasses.replace(op, kind=kind, bulk=bulk, payload_bytes=payload)


# -- the compiled numeric path -------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def is_numeric(layer: Layer) -> bool:
    """True when no field of ``layer`` (parallel degrees included), nor of a layer it holds
    (a block's attention and MLP, directly or in a tuple), holds a symbol."""
    values = list(layer.__dict__.values()) + list(layer.parallelism.__dict__.values())
    return all(_numeric_value(v) for v in values)


def _numeric_value(value: Any) -> bool:
    if isinstance(value, sympy.Basic):
        return not value.free_symbols
    if isinstance(value, Layer):
        return is_numeric(value)
    if isinstance(value, (tuple, list)):
        return all(_numeric_value(v) for v in value)
    return True


@functools.lru_cache(maxsize=1024)
def _shape_assumptions(layer: Layer) -> tuple[Assumption, ...]:
    """The divisibility rules of ``layer``'s shape that symbols leave undecided: its validators
    re-run while recording (:mod:`symcost.core.assumptions`), and those of the layers it holds."""
    with collecting() as found:
        type(layer).model_validate(dict(layer))
    nested = [_shape_assumptions(v) for v in layer.__dict__.values() if isinstance(v, Layer)]
    return merge(found, *nested)


def _at_point(c: Collective, point: dict) -> Collective:
    """``c`` with ``point`` (b and s) applied to its :attr:`~Collective.hierarchical` bytes and its
    :attr:`~Collective.tokens`."""
    return c if c.hierarchical is None and c.tokens is None else c.xreplace(point)


@dataclass(frozen=True)
class _Template:
    """A layer's metrics for one phase, dtype, chip and recompute mode with ``b`` and ``s``
    free, compiled to an exact Python function of ``(b, s)``."""

    symbolic: LayerMetrics
    function: Any

    def at(self, b: int, s: int) -> LayerMetrics:
        values = self.function(b, s)
        n = len(METRIC_FIELDS)
        fields = dict(zip(METRIC_FIELDS, values[:n]))
        k = len(self.symbolic.collectives)
        point = {sym.batch_size: sympy.Integer(b), sym.seq_len: sympy.Integer(s)}
        # the payload compiled; a hierarchical all-to-all's token bytes (b*s*...) and the tokens substituted
        collectives = tuple(
            _at_point(dataclasses.replace(c, payload_bytes=payload), point)
            for c, payload in zip(self.symbolic.collectives, values[n:n + k]))
        roofline = None if self.symbolic.roofline is None else tuple(values[n + k:])
        symbolic = self.symbolic
        return LayerMetrics(
            phase=symbolic.phase, collectives=collectives, peak_flops=symbolic.peak_flops,
            op_source=lambda: tuple((op.xreplace(point), mult) for op, mult in symbolic.ops),
            roofline=roofline, chip_structure=symbolic.chip_structure, **fields)


_METRICS: dict[tuple, tuple[LayerMetrics, tuple[Assumption, ...]]] = {}


def _symbolic_metrics(layer: Layer, ctx: Context, chip: Chip, datatype: DataType | None, overlap: bool,
                      assumptions: tuple[Assumption, ...]) -> LayerMetrics:
    """``layer._metrics(...)``, memoized on every input (the layer and the workload by value, all
    immutable, as the metrics are): the serving planner asks for one layout's blocks from its
    engine steps, its KV room and its disaggregated pools. The rules the costing records (an
    undecided divisibility) are kept and recorded again on every hit, so an enclosing
    :func:`~symcost.core.assumptions.collecting` block sees them each time. Emptied once it holds
    512; inputs that cannot be hashed are costed every time."""
    key = (layer, ctx, chip, datatype, overlap, assumptions)
    try:
        hit = _METRICS.get(key)
    except TypeError:
        return layer._metrics(ctx, chip, datatype, overlap, assumptions)
    if hit is None:
        with collecting() as seen:
            metrics = layer._metrics(ctx, chip, datatype, overlap, assumptions)
        if len(_METRICS) >= 512:
            _METRICS.clear()
        hit = _METRICS[key] = (metrics, tuple(seen))
    for rule in hit[1]:
        record(rule)
    return hit[0]


@functools.lru_cache(maxsize=256)
def _template(layer: Layer, phase: Phase, datatype: DataType, recompute: Recompute, chip: Chip,
              overlap: bool) -> _Template:
    ctx = Context(batch_size=sym.batch_size, seq_len=sym.seq_len, phase=phase,
                  dtype_bytes=tensor_bytes(datatype, phase), parallelism=layer.parallelism, recompute=recompute,
                  gemm_bytes=narrow_gemm_bytes(datatype, phase), datatype=datatype)
    symbolic = layer._metrics(ctx, chip, datatype, overlap)
    exprs = [sympy.sympify(getattr(symbolic, f)) for f in METRIC_FIELDS]
    exprs += [sympy.sympify(c.payload_bytes) for c in symbolic.collectives]
    exprs += [sympy.sympify(v) for v in symbolic.roofline or ()]
    args = [sym.batch_size, sym.seq_len]
    try:  # scaled integers (one Fraction per output), else Fractions throughout: the same values
        function = compile_scaled(args, tighten(exprs))
    except NotImplementedError:
        function = compile_exact(args, exprs)
    return _Template(symbolic, function)


@on_register
def _forget_costings() -> None:
    """Empty the memo and the compiled templates: both hold times of the time model registered
    when they were costed (:func:`symcost.core.binding.register` calls this)."""
    _METRICS.clear()
    _template.cache_clear()
