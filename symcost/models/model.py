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
from typing import Any, Callable, Literal, Optional, Sequence, Union

import sympy as sp
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ..core import binding
from ..core import symbols as sym
from ..core._expr import dim, exact
from ..core.dtypes import DtypeLike
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

__all__ = ["Model", "TransformerBlock", "register_steps", "resolve_causal"]

# NB: the training and inference steps (symcost.step) are built on Model, so this module must not
# import them (no import cycle, no upward import). symcost.step registers its functions here when
# it loads, and ``import symcost`` loads it; Model.training_step and its siblings delegate to them.
_STEPS: dict[str, Callable[..., Any]] = {}


def register_steps(*functions: Callable[..., Any]) -> None:
    """Make ``functions`` (keyed by ``__name__``) the implementations behind :meth:`Model.training_step`,
    :meth:`Model.inference_step`, :meth:`Model.max_batch_size` and :meth:`Model.max_context`.

    >>> import symcost.step
    >>> _STEPS["training_step"] is symcost.step.training_step
    True
    """
    for fn in functions:
        _STEPS[fn.__name__] = fn


def _step(name: str) -> Callable[..., Any]:
    if name not in _STEPS:  # symcost.step not imported yet: ``import symcost`` registered its loader
        binding.load_registrations()
    if name not in _STEPS:  # only when symcost itself has not been imported
        raise RuntimeError(f"Model.{name} needs symcost.step: import symcost first")
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
        # NB: hidden_size is not declared by the Layer contract yet (issue 9); every layer has it
        if self.attention.hidden_size != self.mlp.hidden_size:  # type: ignore[attr-defined]
            raise ConfigError("attention and mlp must share hidden_size")
        if self.shared_norm and not self.parallel:
            raise ConfigError("shared_norm needs parallel=True (one norm feeding attention and mlp side by side)")
        return self

    @property
    def hidden_size(self) -> sp.Expr:
        return self.attention.hidden_size  # type: ignore[attr-defined]

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


Count = Any

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
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str = "model"
    embedding: EmbeddingLayer
    blocks: tuple[tuple[TransformerBlock, Count], ...]
    final_norm: NormLayer
    lm_head: LMHeadLayer

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
    def num_layers(self) -> sp.Expr:
        """Transformer blocks in all."""
        return exact(sp.Add(*(n for _, n in self.blocks)))

    @property
    def parameter_count(self) -> Any:
        """Every parameter, counted once (a tied LM head adds none)."""
        blocks = sp.Add(*(n * blk.num_params for blk, n in self.blocks))
        return exact(self.embedding.num_params + blocks + self.final_norm.num_params
                     + self.lm_head.num_params)

    def _repr_latex_(self) -> str:
        r"""The name, parameter count and depth, for notebooks (see :mod:`symcost.latex`).

        >>> from symcost import Model
        >>> print(Model.gpt(seq_len=2048)._repr_latex_())    # 12 L h^2 + 13 L h + (V + s) h + 2h
        $\displaystyle \text{gpt}:\quad N_{\mathrm{params}} = h \left(12 L h + 13 L + V + 2050\right),\quad
        N_{\mathrm{layers}} = L$
        """
        return (f"$\\displaystyle \\text{{{_text(self.name)}}}:\\quad N_{{\\mathrm{{params}}}} = "
                f"{expression(self.parameter_count)},\\quad N_{{\\mathrm{{layers}}}} = {expression(self.num_layers)}$")

    def parts(self) -> list[tuple[str, Layer, Any]]:
        """``(name, layer, count)`` for every distinct layer of the model."""
        out: list[tuple[str, Layer, Any]] = [("embedding", self.embedding, 1)]
        for i, (blk, n) in enumerate(self.blocks):
            out.append((f"blocks[{i}]", blk, n))
        out += [("final_norm", self.final_norm, 1), ("lm_head", self.lm_head, 1)]
        return out

    # -- metrics -----------------------------------------------------------------------------

    def breakdown(self, batch_size: Any = None, seq_len: Any = None, phase: Phase | str = Phase.PREFILL,
                  dtype: DtypeLike = None, hardware: Hardware | str | None = None,
                  recompute: Recompute = "none", overlap: bool = False) -> list[tuple[str, Any, LayerMetrics]]:
        """``(name, count, metrics of one)`` per distinct layer; ``recompute`` applies to blocks."""
        rows = []
        for name, layer, count in self.parts():
            mode = recompute if isinstance(layer, TransformerBlock) else "none"
            rows.append((name, count, layer.compute_metrics(batch_size, seq_len, phase, dtype, hardware,
                                                            recompute=mode, overlap=overlap)))
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
                      overlap: bool = False, *, stage_layers: Optional[Sequence[int]] = None, exact: bool = True):
        """One training step on ``hardware``: see :func:`symcost.step.training_step`
        (``parallelism`` adds to the model's own; ``stage_layers``: blocks per pipeline stage;
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
                                      exact=exact)

    def inference_step(self, hardware: Hardware | str, batch_size: Any, seq_len: Any,
                       dtype: DtypeLike = "bf16", parallelism: ParallelismLike = None,
                       overlap: bool = False, prefill_chunk: Any = None, *,
                       stage_layers: Optional[Sequence[int]] = None, exact: bool = True):
        """Serving ``batch_size`` sequences of ``seq_len`` tokens: see
        :func:`symcost.step.inference_step` (``ttft``, ``tpot``, memory, throughput; ``parallelism``
        adds to the model's own; chunked prefill with ``prefill_chunk``; ``stage_layers``: blocks
        per pipeline stage; ``exact=False``: float64 values, the compiled fast path)."""
        return _step("inference_step")(self, hardware, batch_size, seq_len, dtype, parallelism, overlap,
                                       prefill_chunk, stage_layers=stage_layers, exact=exact)

    def max_batch_size(self, hardware: Hardware | str, seq_len: Any, dtype: DtypeLike = "bf16",
                       parallelism: ParallelismLike = None, prefill_chunk: Any = None):
        """The largest serving batch that fits at ``seq_len`` (see :func:`symcost.step.max_batch_size`)."""
        return _step("max_batch_size")(self, hardware, seq_len, dtype, parallelism, prefill_chunk)

    def max_context(self, hardware: Hardware | str, batch_size: Any = 1, dtype: DtypeLike = "bf16",
                    parallelism: ParallelismLike = None, prefill_chunk: Any = None):
        """The longest context that fits for ``batch_size`` sequences (see
        :func:`symcost.step.max_context`).

        >>> from symcost import models
        >>> r = models.get("llama-3-8b").max_context("H100_SXM")     # prefill activations bind first
        >>> r.status, 250_000 < r.value < 500_000
        ('found', True)
        """
        return _step("max_context")(self, hardware, batch_size, dtype, parallelism, prefill_chunk)

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
        return type(layer)(**{**dict(layer), **update})

    return Model(name=model.name, embedding=re(model.embedding),
                 blocks=tuple((re(blk), n) for blk, n in model.blocks),
                 final_norm=re(model.final_norm), lm_head=re(model.lm_head))

