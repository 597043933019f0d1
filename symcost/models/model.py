"""Blocks and whole models, built from layers; metrics compose by ``+`` and repeat by ``×``.

A :class:`TransformerBlock` is itself a :class:`~symcost.layers.base.Layer` (pre-norm: norm,
attention, residual add, norm, MLP or MoE, residual add), so it has the same contract, backward,
recomputation, time model and compiled numeric path as any layer. A :class:`Model` is an
embedding, groups of identical blocks (``(block, count)``: cost stays O(1) in depth), a final norm
and the LM head.

>>> from symcost import Model
>>> llama = Model.llama(hidden_size=4096, num_heads=32, num_kv_heads=8, num_layers=32,
...                     vocab_size=128256, intermediate_size=14336)
>>> llama.parameter_count                        # Llama-3-8B, as published
8030261248
"""

from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from typing import Any, Callable, Generic, Literal, Optional, Sequence, TypeVar, Union

import sympy as sp
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ..core import binding, display
from ..core import symbols as sym
from ..core._expr import dim, exact_value
from ..core.dtypes import DataType, DtypeLike
from ..core.metrics import LayerMetrics
from ..core.notation import expression
from ..core.notation import text as _text
from ..core.ops import VECTOR_FLOPS, Vector
from ..core.parallelism import Parallelism, ParallelismLike
from ..core.phase import Phase
from ..errors import ConfigError
from ..hardware import Hardware
from ..layers.attention import AttentionLayer, GroupedQueryAttentionLayer
from ..layers.base import Context, Layer, Recompute
from ..layers.embedding import EmbeddingLayer, LMHeadLayer
from ..layers.mlp import Activation, GatedMLPLayer, MLPLayer
from ..layers.norm import NormLayer

__all__ = ["ByPart", "MixerBlock", "Model", "TransformerBlock", "register_steps", "resolve_causal", "window_pattern"]

# NB: the training and inference steps (symcost.plan.step) are built on Model, so this module must not
# import them (no import cycle, no upward import). symcost.plan.step registers its functions here when
# it loads, and ``import symcost`` loads it; Model.training_step and its siblings delegate to them.
_STEPS: dict[str, Callable[..., Any]] = {}


def register_steps(*functions: Callable[..., Any]) -> None:
    """Make ``functions`` (keyed by ``__name__``) the implementations behind :meth:`Model.training_step`,
    :meth:`Model.inference_step`, :meth:`Model.max_batch_size` and :meth:`Model.max_context`.

    >>> import symcost.plan.step
    >>> _STEPS["training_step"] is symcost.plan.step.training_step
    True
    """
    for fn in functions:
        _STEPS[fn.__name__] = fn


def _step(name: str) -> Callable[..., Any]:
    if name not in _STEPS:  # symcost.plan.step not imported yet: ``import symcost`` registered its loader
        binding.load_registrations()
    if name not in _STEPS:  # only when symcost itself has not been imported
        raise RuntimeError(f"Model.{name} needs symcost.plan.step: import symcost first")
    return _STEPS[name]


class TransformerBlock(Layer):
    """A pre-norm transformer block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``.

    ``attention`` and ``mlp`` are layers with the block's parallelism; the norms are of
    ``norm_kind`` over the attention's hidden size. Under ``recompute="full"`` the block keeps
    only its input (Korthikanti et al.'s ``2sbh`` per layer at e = 2); otherwise it keeps what
    its layers keep. Its inference peak is the residual stream plus the largest layer's peak.

    Variants: ``parallel`` (GPT-J, GPT-NeoX, Falcon): ``x + attn(norm(x)) + mlp(norm(x))``, the
    same ops (two norms, two residual adds) with the attention's output held while the MLP runs
    (one more ``T*h*e`` in the peak); ``shared_norm`` (Falcon-7B, needs ``parallel``): one norm
    feeds both; ``post_norms`` (Gemma 2): a norm on the attention's and the MLP's outputs before
    each residual add. Norms per block: ``(1 if shared_norm else 2) + (2 if post_norms else 0)``.
    """

    attention: Layer
    mlp: Layer
    norm_kind: Literal["layernorm", "rmsnorm"] = "rmsnorm"
    parallel: bool = False
    shared_norm: bool = False
    post_norms: bool = False

    @model_validator(mode="after")
    def _check_parts(self) -> "TransformerBlock":
        for part in (self.attention, self.mlp):
            if part.parallelism != self.parallelism:
                raise ConfigError(f"{type(part).__name__}.parallelism must equal the block's "
                                 f"({part.parallelism} vs {self.parallelism})")
        if self.attention.hidden_size != self.mlp.hidden_size:
            raise ConfigError("attention and mlp must share hidden_size")
        if self.shared_norm and not self.parallel:
            raise ConfigError("shared_norm needs parallel=True (one norm feeding attention and mlp side by side)")
        return self

    @property
    def hidden_size(self) -> sp.Expr:
        return self.attention.hidden_size

    @property
    def norm(self) -> NormLayer:
        """The block's (identical) norms."""
        return NormLayer(hidden_size=self.hidden_size, kind=self.norm_kind, parallelism=self.parallelism)

    @property
    def num_norms(self) -> int:
        """Norms per block: 2 (pre-norm), 1 (``shared_norm``), plus 2 with ``post_norms``."""
        return (1 if self.shared_norm else 2) + (2 if self.post_norms else 0)

    @property
    def labelled_parts(self) -> tuple[tuple[str, Layer], ...]:
        """``(label, layer)`` for every layer of the block in execution order (``"norm"``,
        ``"attention"``, ``"mlp"``)."""
        norm = ("norm", self.norm)
        post = (norm,) if self.post_norms else ()
        second = () if self.shared_norm else (norm,)
        return (norm, ("attention", self.attention), *post, *second, ("mlp", self.mlp), *post)

    @property
    def parts(self) -> tuple[Layer, ...]:
        return tuple(layer for _, layer in self.labelled_parts)

    @property
    def num_params(self) -> sp.Expr:
        return self.num_norms * self.norm.num_params + self.attention.num_params + self.mlp.num_params

    def check(self, ctx: Context) -> None:
        for part in (self.attention, self.mlp):
            part.check(ctx)

    def _residual(self, ctx: Context) -> Vector:
        n, e = ctx.sharded_tokens * self.hidden_size, ctx.e
        return Vector("residual", elements=n, flops_per_element=VECTOR_FLOPS["bias"],
                      read_bytes=2 * n * e, write_bytes=n * e)

    def forward_ops(self, ctx: Context):
        def norm() -> list:
            return self.norm.forward_ops(ctx)

        def post() -> list:
            return norm() if self.post_norms else []

        attention, mlp = [*self.attention.forward_ops(ctx), *post()], [*self.mlp.forward_ops(ctx), *post()]
        if self.parallel:  # x + attn(norm(x)) + mlp(norm(x)): two residual adds after both branches
            second = [] if self.shared_norm else norm()
            return [*norm(), *attention, *second, *mlp, self._residual(ctx), self._residual(ctx)]
        return [*norm(), *attention, self._residual(ctx), *norm(), *mlp, self._residual(ctx)]

    def selective_recompute_ops(self, ctx: Context):
        return self.attention.selective_recompute_ops(ctx) + self.mlp.selective_recompute_ops(ctx)

    def weight_memory(self, ctx: Context) -> sp.Expr:
        return sp.Add(*(part.weight_memory(ctx) for part in self.parts))

    def saved_activations(self, ctx: Context) -> sp.Expr:
        if ctx.recompute == "full":
            return ctx.sharded_tokens * self.hidden_size * ctx.e  # the block's input
        return sp.Add(*(part.saved_activations(ctx) for part in self.parts))

    def peak_activations(self, ctx: Context) -> sp.Expr:
        residual = ctx.sharded_tokens * self.hidden_size * ctx.e
        if self.parallel:
            residual *= 2  # the attention's output (reduced, sequence-sharded like x), kept for the sum
        # the norms are alike: Max over three layers (STYLE rule 5)
        return residual + sp.Max(*(part.peak_activations(ctx) for part in (self.norm, self.attention, self.mlp)))

    def kv_cache_memory(self, ctx: Context) -> sp.Expr:
        return self.attention.kv_cache_memory(ctx) + self.mlp.kv_cache_memory(ctx)

    # the layer contract, answered by the block's parts (the steps and the search ask blocks)
    @property
    def query_heads(self) -> Optional[sp.Expr]:
        return self.attention.query_heads

    @property
    def kv_heads(self) -> Optional[sp.Expr]:
        return self.attention.kv_heads

    @property
    def num_routed_experts(self) -> Optional[sp.Expr]:
        return self.mlp.num_routed_experts

    @property
    def expert_params_per_chip(self) -> sp.Expr:
        return self.mlp.expert_params_per_chip

    @property
    def tp_summed_params(self) -> sp.Expr:
        return sp.Add(*(part.tp_summed_params for part in self.parts))

    @property
    def buffer_params(self) -> sp.Expr:
        return sp.Add(*(part.buffer_params for part in self.parts))


class MixerBlock(Layer):
    """A pre-norm residual block around one layer: ``x + mixer(norm(x))``.

    The blocks of state-space and hybrid stacks that are not attention + MLP pairs: a Mamba-2
    layer (mamba_ssm's ``Block`` with ``d_intermediate=0``: pure Mamba-2 models), or, in
    Nemotron-H-like hybrids, an attention-only or MLP-only layer. Its contract is its mixer's
    plus the norm and the residual add; under ``recompute="full"`` it keeps only its input.

    >>> from symcost import MixerBlock, Mamba2Layer
    >>> block = MixerBlock(mixer=Mamba2Layer(hidden_size=64, num_heads=4, head_dim=32,
    ...                                      state_size=16, num_groups=1, conv_kernel=4,
    ...                                      chunk_size=8))
    >>> block.num_params - block.mixer.num_params       # the RMSNorm's weight
    64
    """

    mixer: Layer
    norm_kind: Literal["layernorm", "rmsnorm"] = "rmsnorm"

    @model_validator(mode="after")
    def _check_parts(self) -> "MixerBlock":
        if self.mixer.parallelism != self.parallelism:
            raise ConfigError(f"{type(self.mixer).__name__}.parallelism must equal the block's "
                              f"({self.mixer.parallelism} vs {self.parallelism})")
        return self

    @property
    def hidden_size(self) -> sp.Expr:
        return self.mixer.hidden_size

    @property
    def norm(self) -> NormLayer:
        """The block's norm."""
        return NormLayer(hidden_size=self.hidden_size, kind=self.norm_kind, parallelism=self.parallelism)

    @property
    def parts(self) -> tuple[Layer, ...]:
        return (self.norm, self.mixer)

    @property
    def num_params(self) -> sp.Expr:
        return self.norm.num_params + self.mixer.num_params

    def check(self, ctx: Context) -> None:
        self.mixer.check(ctx)

    def forward_ops(self, ctx: Context):
        n, e = ctx.sharded_tokens * self.hidden_size, ctx.e
        residual = Vector("residual", elements=n, flops_per_element=VECTOR_FLOPS["bias"],
                          read_bytes=2 * n * e, write_bytes=n * e)
        return [*self.norm.forward_ops(ctx), *self.mixer.forward_ops(ctx), residual]

    def selective_recompute_ops(self, ctx: Context):
        return self.mixer.selective_recompute_ops(ctx)

    def weight_memory(self, ctx: Context) -> sp.Expr:
        return self.norm.weight_memory(ctx) + self.mixer.weight_memory(ctx)

    def saved_activations(self, ctx: Context) -> sp.Expr:
        if ctx.recompute == "full":
            return ctx.sharded_tokens * self.hidden_size * ctx.e  # the block's input
        return self.norm.saved_activations(ctx) + self.mixer.saved_activations(ctx)

    def peak_activations(self, ctx: Context) -> sp.Expr:
        residual = ctx.sharded_tokens * self.hidden_size * ctx.e
        return residual + sp.Max(self.norm.peak_activations(ctx), self.mixer.peak_activations(ctx))

    def kv_cache_memory(self, ctx: Context) -> sp.Expr:
        return self.mixer.kv_cache_memory(ctx)

    @property
    def query_heads(self) -> Optional[sp.Expr]:
        return self.mixer.query_heads

    @property
    def kv_heads(self) -> Optional[sp.Expr]:
        return self.mixer.kv_heads

    @property
    def num_routed_experts(self) -> Optional[sp.Expr]:
        return self.mixer.num_routed_experts

    @property
    def expert_params_per_chip(self) -> sp.Expr:
        return self.mixer.expert_params_per_chip

    @property
    def tp_summed_params(self) -> sp.Expr:
        return self.norm.tp_summed_params + self.mixer.tp_summed_params

    @property
    def buffer_params(self) -> sp.Expr:
        return self.norm.buffer_params + self.mixer.buffer_params


Count = Any
Block = Union[TransformerBlock, MixerBlock]
T = TypeVar("T")


@dataclass(frozen=True)
class ByPart(Generic[T]):
    """One value per part of a model, by what the part is: the embedding, each block group (in
    order), the final norm and the LM head. The order of :meth:`Model.parts` and
    :meth:`Model.breakdown` is :meth:`labelled`'s, so a step reads rows by part, never by label.

    >>> from symcost import Model
    >>> parts = ByPart.of(Model.gpt().parts())
    >>> parts.lm_head[0], len(parts.blocks), [name for name, _ in parts.labelled()]
    ('lm_head', 1, ['embedding', 'blocks[0]', 'final_norm', 'lm_head'])
    """

    embedding: T
    blocks: tuple[T, ...]
    final_norm: T
    lm_head: T

    @classmethod
    def of(cls, values: Sequence[T]) -> "ByPart[T]":
        """``values``, one per part in :meth:`Model.parts` order, by part."""
        if len(values) < 4:
            raise ValueError(f"one per part (embedding, blocks, final norm, LM head) needs at least 4 values, "
                             f"got {len(values)}")
        return cls(values[0], tuple(values[1:-2]), values[-2], values[-1])

    def labelled(self) -> list[tuple[str, T]]:
        """``(label, value)`` in order; the labels are those of :meth:`Model.parts` (``embedding``,
        ``blocks[i]``, ``final_norm``, ``lm_head``)."""
        return [("embedding", self.embedding), *((f"blocks[{i}]", v) for i, v in enumerate(self.blocks)),
                ("final_norm", self.final_norm), ("lm_head", self.lm_head)]

def resolve_causal(causal: Optional[bool], flash_attention: bool) -> bool:
    """The attention layers' ``causal`` for a builder's ``causal`` argument.

    ``None`` (every builder's default) follows the attention kernel: flash kernels skip the
    fully masked tiles of a causal mask, so a flash model counts only the unmasked (query, key)
    pairs, about half of the s^2 work, as FlashAttention-2 and the engines built on it (vLLM,
    SGLang, Megatron-core) do; eager attention (Megatron-LM 2021, HF ``eager``) computes every
    score and then masks, so an eager model counts the full s^2, as Narayanan et al. 2021's
    formulas and FlopCounterMode do. ``True``/``False`` force either count.

    >>> resolve_causal(None, True), resolve_causal(None, False), resolve_causal(False, True)
    (True, False, False)
    """
    if causal is None:
        return bool(flash_attention)
    if not isinstance(causal, bool):
        raise ConfigError(f"causal must be True, False or None, got {causal!r}")
    return causal


class Model(BaseModel):
    """A decoder-only language model: embedding, ``(block, count)`` groups, final norm, LM head.

    ``compute_metrics`` has the layer contract, summed over the model (every layer on the chip:
    pipeline parallelism is applied by the training and inference steps).

    ``max_position_embeddings`` is the longest sequence the model was trained for (its config's key
    of that name, GPT-2's ``n_positions``; ``None`` when the model states none): a limit beside
    the memory's, which :meth:`max_context` does not apply (it solves memory alone).
    """

    # NB: defer_build: pydantic builds a class's validator on its first instance, so a command
    # that costs no MLA, MoE or Mamba layer builds none of theirs (issue 23: start-up)
    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True, defer_build=True)

    name: str = "model"
    embedding: EmbeddingLayer
    blocks: tuple[tuple[Block, Count], ...]
    final_norm: NormLayer
    lm_head: LMHeadLayer
    max_position_embeddings: Optional[int] = None
    vision_parameters: Optional[int] = None
    """Parameters of the checkpoint's vision encoder and multimodal projector (Llama 4's
    ``Llama4ForConditionalGeneration``) that a text-only request never runs: the model costs the
    text path only, so they are in no cost and not in :attr:`parameter_count`;
    :attr:`checkpoint_parameter_count` adds them. ``None``: the checkpoint has no vision part."""

    @field_validator("vision_parameters", mode="before")
    @classmethod
    def _vision(cls, value: Any) -> Optional[int]:
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, sp.Integer)) or value < 0):
            raise ConfigError(f"vision_parameters must be a non-negative integer, got {value!r}")
        return None if value is None else int(value)

    @field_validator("max_position_embeddings", mode="before")
    @classmethod
    def _trained_length(cls, value: Any) -> Optional[int]:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"max_position_embeddings must be a positive integer, got {value!r}")
        return value

    @field_validator("blocks", mode="before")
    @classmethod
    def _counts(cls, blocks: Any) -> tuple:
        if not blocks:
            raise ConfigError("a model needs at least one block")
        return tuple((blk, dim(n, "count")) for blk, n in blocks)

    # -- structure ---------------------------------------------------------------------------

    @property
    def parallelism(self) -> Parallelism:
        return self.embedding.parallelism

    @property
    def hidden_size(self) -> Any:
        """The width of the residual stream (its first block's ``hidden_size``, which every part
        reads and writes)."""
        return self.blocks[0][0].hidden_size

    @property
    def num_layers(self) -> sp.Expr:
        """Transformer blocks in all."""
        return exact_value(sp.Add(*(n for _, n in self.blocks)))

    @property
    def parameter_count(self) -> Any:
        """Every parameter, counted once (a tied LM head adds none)."""
        blocks = sp.Add(*(n * blk.num_params for blk, n in self.blocks))
        return exact_value(self.embedding.num_params + blocks + self.final_norm.num_params
                     + self.lm_head.num_params)

    @property
    def checkpoint_parameter_count(self) -> Any:
        """Every parameter of the checkpoint: :attr:`parameter_count` plus the
        :attr:`vision_parameters` the text-only costs leave out (transformers' count of the whole
        ``Llama4ForConditionalGeneration``).

        >>> from symcost import models
        >>> m = models.get("llama-3-8b")
        >>> m.checkpoint_parameter_count == m.parameter_count   # no vision part
        True
        """
        return self.parameter_count + (self.vision_parameters or 0)

    def _repr_latex_(self) -> str:
        r"""The name, parameter count and depth, for notebooks (see :mod:`symcost.report.latex`).

        >>> from symcost import Model
        >>> print(Model.gpt(seq_len=2048)._repr_latex_())    # 12 L h^2 + 13 L h + (V + s) h + 2h
        $\displaystyle \text{gpt}:\quad N_{\mathrm{params}} = h \left(12 L h + 13 L + V + 2050\right),\quad
        N_{\mathrm{layers}} = L$
        """
        count = self.parameter_count
        readable = "" if not isinstance(count, int) else \
            f" \\approx {display.latex(count, 'count')}"
        return (f"$\\displaystyle \\text{{{_text(self.name)}}}:\\quad N_{{\\mathrm{{params}}}} = "
                f"{expression(count)}{readable},\\quad N_{{\\mathrm{{layers}}}} = {expression(self.num_layers)}$")

    def layer_rows(self) -> list[tuple[str, Layer, Any]]:
        """:meth:`parts` with each block split into its layer types (for the shape table)."""
        rows: list[tuple[str, Layer, Any]] = []
        for name, layer, count in self.parts():
            if not isinstance(layer, TransformerBlock):
                rows.append((name, layer, count))
                continue
            seen: dict[str, list[Any]] = {}
            for sub in layer.parts:
                seen.setdefault(type(sub).__name__, [sub, 0])[1] += 1
            rows += [(f"{name} {kind}", sub, count * times) for kind, (sub, times) in seen.items()]
        return rows

    # NB: for people (symcost.models.display): a shape table and the parameter count
    def _repr_html_(self) -> str:
        from .display import model_html
        return model_html(self)

    def __repr__(self) -> str:
        from .display import model_repr
        return model_repr(self)

    def __str__(self) -> str:
        from .display import model_text
        return model_text(self)

    def parts(self) -> list[tuple[str, Layer, Any]]:
        """``(name, layer, count)`` for every distinct layer of the model, in :class:`ByPart` order
        (``ByPart.of(model.parts())`` reads them by part)."""
        layers: ByPart[tuple[Layer, Any]] = ByPart((self.embedding, 1), tuple(self.blocks), (self.final_norm, 1),
                                                   (self.lm_head, 1))
        return [(name, layer, n) for name, (layer, n) in layers.labelled()]

    # -- metrics -----------------------------------------------------------------------------

    def breakdown(self, batch_size: Any = None, seq_len: Any = None, phase: Phase | str = Phase.PREFILL,
                  dtype: DtypeLike = None, hardware: Hardware | str | None = None,
                  recompute: Recompute = "none", overlap: bool = False) -> list[tuple[str, Any, LayerMetrics]]:
        """``(name, count, metrics of one)`` per distinct layer; ``recompute`` applies to blocks."""
        rows = []
        # NB: equal layers in several groups (a hybrid local/global model alternates two blocks in
        # L groups) are costed once: metrics are immutable, the rows share them
        seen: dict[Layer, LayerMetrics] = {}
        for name, layer, count in self.parts():
            if layer not in seen:
                mode = recompute if isinstance(layer, (TransformerBlock, MixerBlock)) else "none"
                seen[layer] = layer.compute_metrics(batch_size, seq_len, phase, dtype, hardware,
                                                    recompute=mode, overlap=overlap)
            rows.append((name, count, seen[layer]))
        return rows

    def compute_metrics(self, batch_size: Any = None, seq_len: Any = None,
                        phase: Phase | str = Phase.PREFILL, dtype: DtypeLike = None,
                        hardware: Hardware | str | None = None, recompute: Recompute = "none",
                        overlap: bool = False) -> LayerMetrics:
        """The model's per-chip metrics: the sum over its layers, blocks repeated by count.

        >>> from symcost import Model
        >>> gpt = Model.gpt(hidden_size=1024, num_heads=16, num_layers=4, vocab_size=51200)
        >>> m = gpt.compute_metrics(batch_size=1, seq_len=1024, phase="training", dtype="bf16")
        >>> from fractions import Fraction as Q        # 72 B s l h^2 (1 + s/(6h) + V/(12 l h))
        >>> m.matmul_flops_per_chip == 72 * 1024 * 4 * 1024**2 * (1 + Q(1024, 6 * 1024) + Q(51200, 12 * 4 * 1024))
        True
        """
        rows = self.breakdown(batch_size, seq_len, phase, dtype, hardware, recompute, overlap)
        parts = [metrics if count == 1 else metrics * count for _, count, metrics in rows]
        return functools.reduce(operator.add, parts)

    # -- builders ----------------------------------------------------------------------------

    @classmethod
    def gpt(cls, hidden_size: Any = sym.hidden_size, num_heads: Any = sym.num_heads,
            num_layers: Any = sym.num_layers, vocab_size: Any = sym.vocab_size,
            intermediate_size: Any = None, seq_len: Any = 2048, parallelism: ParallelismLike = None,
            flash_attention: bool = False, dropout: bool = True, tied: bool = True,
            causal: Optional[bool] = None, name: str = "gpt") -> "Model":
        """Megatron-LM GPT: learned positions (``seq_len`` of them), LayerNorm, MHA and a GELU MLP
        (``intermediate_size`` defaults to ``4h``) with biases, dropout, tied embeddings.

        Parameters ``12 L h^2 + 13 L h + (V + s) h + 2h`` (Narayanan et al. 2021's count plus the
        final LayerNorm). Attention is eager by default, as in Megatron-LM 2021, and so is
        counted over the full s^2 (``causal`` resolves to ``False``), which keeps Narayanan's
        72 B s l h^2 (1 + s/(6h) + V/(12 l h)) training FLOPs; ``causal`` as in
        :func:`resolve_causal`.
        """
        par = Parallelism.coerce(parallelism)
        f = 4 * hidden_size if intermediate_size is None else intermediate_size
        block = TransformerBlock(
            attention=AttentionLayer(hidden_size=hidden_size, num_heads=num_heads, bias=True,
                                     dropout=dropout, flash_attention=flash_attention,
                                     causal=resolve_causal(causal, flash_attention), parallelism=par),
            mlp=MLPLayer(hidden_size=hidden_size, intermediate_size=f, bias=True, dropout=dropout,
                         activation="gelu", parallelism=par),
            norm_kind="layernorm", parallelism=par)
        return cls(
            name=name,
            embedding=EmbeddingLayer(vocab_size=vocab_size, hidden_size=hidden_size, max_positions=seq_len,
                                     dropout=dropout, parallelism=par),
            blocks=((block, num_layers),),
            final_norm=NormLayer(hidden_size=hidden_size, kind="layernorm", parallelism=par),
            lm_head=LMHeadLayer(vocab_size=vocab_size, hidden_size=hidden_size, tied=tied, parallelism=par),
        )

    @classmethod
    def llama(cls, hidden_size: Any = sym.hidden_size, num_heads: Any = sym.num_heads,
              num_kv_heads: Any = sym.num_kv_heads, num_layers: Any = sym.num_layers,
              vocab_size: Any = sym.vocab_size, intermediate_size: Any = sym.intermediate_size,
              head_dim: Any = None, parallelism: ParallelismLike = None, tied: bool = False,
              attention_bias: Union[bool, Literal["qkv"]] = False, flash_attention: bool = True,
              kv_cache_dtype: Optional[str] = None, causal: Optional[bool] = None,
              window: Any = None, activation: Activation = "silu", mlp_bias: bool = False,
              qk_norm: bool = False, post_norms: bool = False, name: str = "llama") -> "Model":
        """Llama-style: RoPE (no position parameters), RMSNorm, GQA and a gated MLP without
        biases (``attention_bias="qkv"`` for Qwen2, ``True`` on every projection; ``mlp_bias``
        on the MLP's), untied LM head unless ``tied``; ``activation`` on the gate (SwiGLU's
        ``"silu"``; ``"gelu"`` makes GeGLU); ``window`` a sliding window (Mistral-7B-v0.1);
        ``kv_cache_dtype`` stores the KV cache in another format (e.g. ``"fp8_e4m3"``);
        ``qk_norm`` an RMSNorm on each Q and K head (Qwen3), ``post_norms`` a norm after the
        attention and after the MLP (Gemma 2).

        Attention is flash by default, so ``causal`` resolves to ``True``: only the unmasked
        pairs are counted (see :func:`resolve_causal`)."""
        par = Parallelism.coerce(parallelism)
        block = TransformerBlock(
            attention=GroupedQueryAttentionLayer(hidden_size=hidden_size, num_heads=num_heads,
                                                 num_kv_heads=num_kv_heads, head_dim=head_dim,
                                                 bias=attention_bias, flash_attention=flash_attention,
                                                 causal=resolve_causal(causal, flash_attention), window=window,
                                                 kv_cache_dtype=kv_cache_dtype, qk_norm=qk_norm,
                                                 parallelism=par),
            mlp=GatedMLPLayer(hidden_size=hidden_size, intermediate_size=intermediate_size,
                              activation=activation, bias=mlp_bias, parallelism=par),
            norm_kind="rmsnorm", post_norms=post_norms, parallelism=par)
        return cls(
            name=name,
            embedding=EmbeddingLayer(vocab_size=vocab_size, hidden_size=hidden_size, parallelism=par),
            blocks=((block, num_layers),),
            final_norm=NormLayer(hidden_size=hidden_size, kind="rmsnorm", parallelism=par),
            lm_head=LMHeadLayer(vocab_size=vocab_size, hidden_size=hidden_size, tied=tied, parallelism=par),
        )

    def training_step(self, hardware: Hardware | str, seq_len: Any, global_batch: Any, micro_batch: Any = 1,
                      dtype: DtypeLike = "bf16", parallelism: ParallelismLike = None,
                      recompute: Recompute = "none", interleave: Any = 1, zero_stage: int = 1,
                      overlap: bool = False, *, stage_layers: Optional[Sequence[int]] = None,
                      dp_overlap: bool = True, grad_reduce_in_fp32: bool = True, pp_overlap: bool = True,
                      recompute_layers: Optional[int] = None, exact: bool = True):
        """One training step on ``hardware``: see :func:`symcost.plan.step.training_step`
        (``parallelism`` adds to the model's own; ``stage_layers``: blocks per pipeline stage;
        ``dp_overlap``: the data-parallel sync hidden bucket by bucket, as Megatron-Core's
        ``overlap_grad_reduce`` / ``overlap_param_gather``; ``grad_reduce_in_fp32=False``: bf16
        gradients; ``pp_overlap``: an interleaved pipeline's sends hidden, Megatron's
        ``overlap_p2p_comm``; ``recompute_layers=N`` with ``recompute="full"``: only the first ``N``
        blocks of each pipeline stage recomputed, Megatron-Core's ``--recompute-method block``;
        ``exact=False``: float64 values, the compiled fast path).

        >>> from symcost import models
        >>> step = models.get("llama-3-8b").training_step("H100_SXM", seq_len=8192, global_batch=64,
        ...     micro_batch=1, parallelism={"tensor_parallel": 8, "data_parallel": 8},
        ...     recompute="selective")
        >>> step.num_chips, step.num_microbatches, step.fits
        (64, 8, True)
        """
        return _step("training_step")(self, hardware, seq_len, global_batch, micro_batch, dtype, parallelism,
                                      recompute, interleave, zero_stage, overlap, stage_layers=stage_layers,
                                      dp_overlap=dp_overlap, grad_reduce_in_fp32=grad_reduce_in_fp32,
                                      pp_overlap=pp_overlap, recompute_layers=recompute_layers, exact=exact)

    def inference_step(self, hardware: Hardware | str, batch_size: Any, seq_len: Any,
                       dtype: DtypeLike = "bf16", parallelism: ParallelismLike = None,
                       overlap: bool = False, prefill_chunk: Any = None, *,
                       stage_layers: Optional[Sequence[int]] = None, exact: bool = True):
        """Serving ``batch_size`` sequences of ``seq_len`` tokens: see
        :func:`symcost.plan.step.inference_step` (``ttft``, ``tpot``, memory, throughput; ``parallelism``
        adds to the model's own; chunked prefill with ``prefill_chunk``; ``stage_layers``: blocks
        per pipeline stage; ``exact=False``: float64 values, the compiled fast path)."""
        return _step("inference_step")(self, hardware, batch_size, seq_len, dtype, parallelism, overlap,
                                       prefill_chunk, stage_layers=stage_layers, exact=exact)

    def max_batch_size(self, hardware: Hardware | str, seq_len: Any, dtype: DtypeLike = "bf16",
                       parallelism: ParallelismLike = None, prefill_chunk: Any = None):
        """The largest serving batch that fits at ``seq_len`` (see :func:`symcost.plan.step.max_batch_size`)."""
        return _step("max_batch_size")(self, hardware, seq_len, dtype, parallelism, prefill_chunk)

    def max_context(self, hardware: Hardware | str, batch_size: Any = 1, dtype: DtypeLike = "bf16",
                    parallelism: ParallelismLike = None, prefill_chunk: Any = None):
        """The longest context that fits for ``batch_size`` sequences (see
        :func:`symcost.plan.step.max_context`).

        >>> from symcost import models
        >>> r = models.get("llama-3-8b").max_context("H100_SXM")     # prefill activations bind first
        >>> r.status, 250_000 < r.value < 500_000
        ('found', True)
        """
        return _step("max_context")(self, hardware, batch_size, dtype, parallelism, prefill_chunk)

    def with_window(self, window: Any, global_every: Optional[int] = None) -> "Model":
        """The same model with a sliding ``window`` on its attention layers: on every one, or,
        with ``global_every=k``, hybrid local/global as Gemma 2 (k = 2) and Gemma 3 (k = 6) are:
        layer ``i`` (0-based) is global (full attention) when ``k`` divides ``i + 1``, local
        otherwise (:func:`window_pattern`). Windows the model had are replaced; ``window=None``
        removes them. Consecutive equal layers stay one ``(block, count)`` group.

        A local layer's KV cache holds ``min(s, w)`` tokens, a global one's ``s``: below, 2 local
        and 2 global layers at 2 (K, V) x 2 KV heads x 16 x 2 bytes = 128 bytes per token each.

        >>> from symcost import Model, symbols as S
        >>> m = Model.llama(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=4, vocab_size=128,
        ...                 intermediate_size=128).with_window(S.window, global_every=2)
        >>> [(blk.attention.window, n) for blk, n in m.blocks]
        [(w, 1), (None, 1), (w, 1), (None, 1)]
        >>> m.compute_metrics(batch_size=1, phase="decode", dtype="bf16").kv_cache_memory_per_chip
        256*s + 256*Min(s, w)
        """
        if global_every is None:
            if window is not None:
                dim(window, "window")  # one ConfigError here, not a ValidationError per block
            return _with_windows(self, [(blk, n, window) for blk, n in self.blocks])
        if window is None:
            raise ConfigError("global_every: needs a window (the local layers' sliding window)")
        return self.with_layer_windows(window_pattern(self.num_layers, window, global_every))

    def with_layer_windows(self, windows: Sequence[Any]) -> "Model":
        """The same model with ``windows[i]`` the sliding window of layer ``i`` (``None``: full
        attention), one entry per layer; consecutive layers of the same block and window are
        grouped into one ``(block, count)``. What a config's per-layer ``layer_types`` builds.

        >>> from symcost import Model
        >>> m = Model.llama(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=3, vocab_size=128,
        ...                 intermediate_size=128).with_layer_windows([512, 512, None])
        >>> [(blk.attention.window, n) for blk, n in m.blocks]
        [(512, 2), (None, 1)]
        """
        layers = []
        for i, (blk, n) in enumerate(self.blocks):
            if not isinstance(exact_value(n), int):
                raise ConfigError(f"windows: per-layer windows need a whole number of layers; "
                                  f"blocks[{i}] repeats {n} times")
            layers += [blk] * int(n)
        if len(windows) != len(layers):
            raise ConfigError(f"windows: one window per layer, {len(layers)} in all; got {len(windows)}")
        return _with_windows(self, [(blk, 1, w) for blk, w in zip(layers, windows)])

    def with_kv_cache_dtype(self, dtype: Optional[str]) -> "Model":
        """The same model with every attention layer's KV cache stored in ``dtype`` (a
        :class:`~symcost.core.dtypes.DataType` or its name, e.g. ``"fp8_e4m3"`` or ``"nvfp4"``;
        ``None``: the activations' format), whatever the compute ``dtype`` of a call.

        >>> from symcost import Model
        >>> m = Model.llama(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=4, vocab_size=128,
        ...                 intermediate_size=128).with_kv_cache_dtype("nvfp4")
        >>> m.compute_metrics(batch_size=1, seq_len=64, phase="decode", dtype="bf16").kv_cache_memory_per_chip
        9216

        (4 layers x 64 tokens x 64 K and V elements x 9/16 byte.)
        """
        value = None if dtype is None else DataType.parse(dtype)
        blocks = tuple((_with_attention(blk, "kv_cache_dtype", value), n) for blk, n in self.blocks)
        return self.model_copy(update={"blocks": blocks})

    def with_capacity_factor(self, factor: Any) -> "Model":
        """The same model with every mixture-of-experts layer's ``capacity_factor`` set to
        ``factor`` (each expert's buffer padded to ``factor * T*k/E`` tokens, those beyond
        dropped: Megatron-Core's ``moe_expert_capacity_factor`` with
        ``moe_pad_expert_input_to_capacity``); ``None``: dropless. A model without one is an error.

        >>> from symcost.models.builders import mixtral
        >>> m = mixtral(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=2, vocab_size=128,
        ...             intermediate_size=128, num_experts=4, top_k=2).with_capacity_factor(1)
        >>> m.blocks[0][0].mlp.capacity_factor
        1
        """
        return self._with_moe_field("capacity_factor", factor)

    def with_dispatcher(self, dispatcher: str) -> "Model":
        """The same model with every mixture-of-experts layer's token ``dispatcher`` set
        (``"alltoall"``: one row per token-expert pair on the wire; ``"flex"``: each token once per
        destination rank, DeepEP / HybridEP; see :class:`~symcost.layers.moe.MoELayer`). A model
        without one is an error.

        >>> from symcost.models.builders import mixtral
        >>> m = mixtral(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=2, vocab_size=128,
        ...             intermediate_size=128, num_experts=4, top_k=2).with_dispatcher("flex")
        >>> m.blocks[0][0].mlp.dispatcher
        'flex'
        """
        return self._with_moe_field("dispatcher", dispatcher)

    def with_a2a_overlap(self, on: bool = True) -> "Model":
        """The same model with every mixture-of-experts layer's EP all-to-alls overlapped with the
        other micro-batch's compute in training (Megatron-Core's ``overlap_moe_expert_parallel_comm``;
        see :attr:`~symcost.layers.moe.MoELayer.a2a_overlap`). A model without one is an error.

        >>> from symcost.models.builders import mixtral
        >>> m = mixtral(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=2, vocab_size=128,
        ...             intermediate_size=128, num_experts=4, top_k=2).with_a2a_overlap()
        >>> m.blocks[0][0].mlp.a2a_overlap
        True
        """
        return self._with_moe_field("a2a_overlap", bool(on))

    def with_moe_cuda_graph(self, on: bool = True) -> "Model":
        """The same model with every mixture-of-experts layer replayed whole from a CUDA graph in
        training (no host time exposed; needs a capacity factor, see
        :attr:`~symcost.layers.moe.MoELayer.cuda_graph`). A model without one is an error.

        >>> from symcost.models.builders import mixtral
        >>> m = mixtral(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=2, vocab_size=128,
        ...             intermediate_size=128, num_experts=4, top_k=2).with_capacity_factor(1)
        >>> m.with_moe_cuda_graph().blocks[0][0].mlp.cuda_graph
        True
        """
        return self._with_moe_field("cuda_graph", bool(on))

    def _with_moe_field(self, name: str, value: Any) -> "Model":
        """Every mixture-of-experts layer (an MLP with field ``name``) rebuilt with ``name = value``."""
        blocks, found = [], False
        for blk, n in self.blocks:
            if isinstance(blk, TransformerBlock) and name in type(blk.mlp).model_fields:
                found = True
                mlp = type(blk.mlp)(**{**dict(blk.mlp), name: value})
                blk = type(blk)(**{**dict(blk), "mlp": mlp})
            blocks.append((blk, n))
        if not found:
            raise ConfigError(f"{name}: the model has no mixture-of-experts layer")
        return self.model_copy(update={"blocks": tuple(blocks)})

    def with_parallelism(self, parallelism: ParallelismLike) -> "Model":
        """The same model with every layer under ``parallelism`` (memoized: the same model and
        parallelism give the same object)."""
        return _with_parallelism(self, Parallelism.coerce(parallelism))


@functools.lru_cache(maxsize=256)
def _with_parallelism(model: "Model", par: Parallelism) -> "Model":
    """:meth:`Model.with_parallelism`, once per (model, parallelism)."""
    def re(layer: Layer) -> Layer:
        update: dict[str, Any] = {"parallelism": par}
        if isinstance(layer, TransformerBlock):
            update["attention"] = re(layer.attention)
            update["mlp"] = re(layer.mlp)
        elif isinstance(layer, MixerBlock):
            update["mixer"] = re(layer.mixer)
        return type(layer)(**{**dict(layer), **update})

    return model.model_copy(update={"embedding": re(model.embedding),
                                    "blocks": tuple((re(blk), n) for blk, n in model.blocks),
                                    "final_norm": re(model.final_norm), "lm_head": re(model.lm_head)})



def window_pattern(num_layers: Any, window: Any, global_every: int) -> list[Any]:
    """Per-layer windows of a hybrid local/global model: layer ``i`` (0-based) is global
    (``None``) when ``global_every`` divides ``i + 1``, else local with ``window``.

    NB: this is Hugging Face transformers' convention: ``Gemma2Config`` builds ``layer_types`` as
    ``"sliding_attention" if bool((i + 1) % 2) else "full_attention"`` and ``Gemma3Config`` the
    same with ``sliding_window_pattern`` (6) for 2
    (transformers/models/gemma2/configuration_gemma2.py, gemma3/configuration_gemma3.py): even
    layers slide, odd layers are global, for k = 2.

    >>> window_pattern(6, 4096, 3)
    [4096, 4096, None, 4096, 4096, None]
    """
    if isinstance(global_every, bool) or not isinstance(global_every, int) or global_every < 1:
        raise ConfigError(f"global_every must be a positive integer, got {global_every!r}")
    layers = exact_value(num_layers)
    if not isinstance(layers, int):
        raise ConfigError(f"global_every: a hybrid pattern needs a whole number of layers, got {layers}")
    dim(window, "window")  # validated once here, not per layer
    return [None if (i + 1) % global_every == 0 else window for i in range(layers)]


def _with_windows(model: Model, layers: Sequence[tuple[Block, Any, Any]]) -> Model:
    """``model`` with ``(block, count, window)`` in order: each block's attention takes the window,
    consecutive equal results merge into one ``(block, count)`` group."""
    runs: list[tuple[Block, Any]] = []
    built: dict[tuple[int, Any], Block] = {}
    for blk, n, window in layers:
        key = (id(blk), window)
        if key not in built:
            built[key] = _with_attention(blk, "window", window)
        new = built[key]
        if runs and runs[-1][0] == new:
            runs[-1] = (new, runs[-1][1] + n)
        else:
            runs.append((new, n))
    return model.model_copy(update={"blocks": tuple(runs)})


_ATTENTION_OPTIONS = {"window": "sliding window", "kv_cache_dtype": "KV-cache format of its own"}


def _with_attention(blk: Block, field: str, value: Any) -> Block:
    """``blk`` with its attention's ``field`` set to ``value`` (the same block when unchanged).
    A :class:`MixerBlock` takes it on its mixer when that is an attention layer (one with the
    field) and is returned unchanged otherwise (a Mamba-2 or MLP mixer: no KV cache to window)."""
    if isinstance(blk, MixerBlock):
        mixer = blk.mixer
        if field not in type(mixer).model_fields or getattr(mixer, field) == value:
            return blk
        return type(blk)(**{**dict(blk), "mixer": type(mixer)(**{**dict(mixer), field: value})})
    attention = blk.attention
    if field not in type(attention).model_fields:
        raise ConfigError(field=field,
                          rule=f"the model's {type(attention).__name__} has no {_ATTENTION_OPTIONS[field]}")
    if getattr(attention, field) == value:
        return blk
    new = type(attention)(**{**dict(attention), field: value})
    return type(blk)(**{**dict(blk), "attention": new})
