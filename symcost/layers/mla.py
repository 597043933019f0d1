"""Multi-head latent attention (MLA, DeepSeek-V2/V3): keys and values from a small shared latent.

Notation: h hidden, a heads, r_q ``q_lora_rank`` (None: no query compression), r_kv
``kv_lora_rank``, d_n ``qk_nope_head_dim``, d_R ``qk_rope_head_dim``, d_v ``v_head_dim``,
d_qk = d_n + d_R, t TP degree, a_t = a/t, T tokens on the chip (``b*s``; ``b`` in decode).

Parameters (HF ``DeepseekV3Attention``, no biases): ``q_a_proj`` h*r_q, ``q_a_layernorm`` r_q,
``q_b_proj`` r_q*a*d_qk (without r_q: ``q_proj`` h*a*d_qk); ``kv_a_proj_with_mqa`` h*(r_kv + d_R),
``kv_a_layernorm`` r_kv, ``kv_b_proj`` r_kv*a*(d_n + d_v); ``o_proj`` a*d_v*h.

Prefill and training run the naive (unabsorbed) form, per chip:

- ``q_down`` (T x h) @ (h x r_q), ``q_norm`` (RMSNorm over T*r_q), ``q_up`` (T x r_q) @ (r_q x a_t d_qk)
  -- or without r_q one ``q`` (T x h) @ (h x a_t d_qk);
- ``kv_down`` (T x h) @ (h x (r_kv + d_R)), ``kv_norm`` (RMSNorm over T*r_kv),
  ``kv_up`` (T x r_kv) @ (r_kv x a_t (d_n + d_v)): per-head K (d_n, plus the shared rope part) and V;
- the core over a_t heads: ``2*b*a_t*pairs*d_qk`` (Q Kᵀ) + ``2*b*a_t*pairs*d_v`` (P V);
- ``out`` (T x a_t d_v) @ (a_t d_v x h), row-parallel, then the TP all-reduce.

Decode runs the weight-absorbed form (DeepSeek-V2 section 2.1.3; what FlashMLA, vLLM and SGLang
run): attention works directly on the cached latent, one shared "KV head" of width r_kv + d_R:

- the q path as above for the b new tokens, and ``kv_down`` + ``kv_norm`` for the new latent;
- ``k_absorb``: per head (b x d_n) @ (d_n x r_kv), the K half of ``kv_b_proj`` folded into the query;
- the core over s cached latents: ``2*b*a_t*s*(r_kv + d_R)`` (Q Kᵀ) + ``2*b*a_t*s*r_kv`` (P V),
  reading the latent cache once (V is the first r_kv columns of the cached K);
- ``v_absorb``: per head (b x r_kv) @ (r_kv x d_v), the V half of ``kv_b_proj``; then ``out``.

NB: under TP the down-projections (``q_down``, ``kv_down``) and the two latent RMSNorms are
replicated on every rank (full weights, full FLOPs; under Megatron sequence parallelism on the
rank's ``T/t`` tokens), as in Megatron-core and DeepSeek's inference code; only the up-projections,
the core and ``out`` are split by heads. Hence the KV
cache, ``b*s*(r_kv + d_R)*e`` per layer, is *not* divided by t: every rank keeps the whole
latent. RoPE, like in :mod:`symcost.layers.attention`, is not counted.

NB: the training backward follows the base contract: each matmul 2x, the flash core 2x its
forward plus the recomputed Q Kᵀ (:class:`symcost.core.ops.AttentionCoreBackward`; 5/2x only when
d_v = d_qk), and the exit all-reduce transposed into one of ``b*s*h*e`` (docs/conventions.md §12).
The TP entries are the column-parallel up-projections' (Megatron-Core core_v0.14.0
megatron/core/transformer/multi_latent_attention.py:525-570 with the Transformer Engine layer spec,
models/gpt/gpt_layer_specs.py:125-149: ``linear_q_down_proj`` and ``linear_kv_down_proj`` are
``TELinear(parallel_mode="duplicated")``, the up-projections ``TELayerNormColumnParallelLinear``):
without sequence parallelism the backward all-reduces the latents' gradients (``b*s*(r_q + r_kv)*e``,
0.29x of ``b*s*h*e`` for DeepSeek-V3; ``b*s*h*e`` for the query projection without query
compression); under ``sequence_parallel="tp"`` the down-projections and the latent norms run on
each rank's s/t tokens, the up-projections all-gather the normalized latents (and re-gather the
shards they saved in the backward, :meth:`~symcost.layers.base.Layer.tp_enter`), and the rope key
(``d_R`` per token) is all-gathered by Megatron-Core's ``gather_from_sequence_parallel_region``.
NB: Megatron-Core turns Transformer Engine's userbuffers off for linears other than qkv, proj,
fc1 and fc2 (extensions/transformer_engine.py:260-270; building ``linear_q_down_proj`` sets
``tp_comm_overlap=False``): the up-projections' collectives are
:attr:`~symcost.core.ops.Collective.te_linear` (FP8 casts gathered, the backward's beside TE's GEMMs)
but not :attr:`~symcost.core.ops.Collective.userbuffers`: ``overlap=True`` does not pipeline
their forward gathers. NB: under SP the replicated down-projections' and latent norms' weight
gradients are partial per rank; Megatron-Core all-reduces them over TP once per step
(``h (r_q + r_kv + d_R) + r_q + r_kv`` elements, :attr:`tp_summed_params`), which the training
step counts (docs/conventions.md §16 item 5). A Ulysses ``sequence_parallel``
degree is refused.

>>> layer = MLALayer(hidden_size=64, num_heads=4, q_lora_rank=32, kv_lora_rank=16,
...                  qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8)
>>> layer.num_params == 64*32 + 32 + 32*4*12 + 64*20 + 16 + 16*4*16 + 4*8*64
True
>>> m = layer.compute_metrics(batch_size=1, seq_len=16, phase="decode", dtype="bf16")
>>> m.kv_cache_memory_per_chip                    # b * s * (r_kv + d_R) * e = 16 * 20 * 2
640
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Optional

import sympy as sp
from pydantic import model_validator

from ..core import symbols as sym
from ..core._expr import check_divides
from ..core.ops import VECTOR_FLOPS, AttentionCore, Collective, Matmul, Op, Vector, dropout
from ..errors import ConfigError
from .attention import combine_partials, core_saved_activations, kv_exchange, kv_exchange_buffers, recomputed_exchange
from .base import Context, Dim, Layer

__all__ = ["MLALayer"]

# NB: Korthikanti et al. 2022 count a norm's input apart from the next matmul's input, so each
# latent is saved twice in training: as its RMSNorm's input and (normalized) as the up-projection's.
LATENT_COPIES_SAVED = 2


@dataclass(frozen=True)
class _LatentCore(Op):
    """The absorbed decode core: an :class:`AttentionCore` whose V is the first ``kv_lora_rank``
    columns of K (the cached latent), so the cache is read once, not as K and again as V.

    FLOPs are the wrapped core's; bytes are its bytes less V's.
    """

    core: AttentionCore = None  # type: ignore[assignment]

    @property
    def kernel(self) -> str:
        return self.core.kernel

    @property
    def io_bytes(self) -> sp.Expr:
        """The wrapped core's Q, K and O bytes (V is K's first columns)."""
        return self.core.io_bytes - self.core.v_bytes

    @property
    def matmul_flops(self) -> sp.Expr:
        return self.core.matmul_flops

    @property
    def vector_flops(self) -> sp.Expr:
        return self.core.vector_flops

    @property
    def hbm_bytes(self) -> sp.Expr:
        return self.core.hbm_bytes - self.core.v_bytes

    def backward(self) -> list[Op]:
        raise NotImplementedError("the absorbed latent core runs in decode only")

    def xreplace(self, mapping: dict) -> "_LatentCore":
        return dataclasses.replace(self, core=self.core.xreplace(mapping))


class MLALayer(Layer):
    """Multi-head latent attention: low-rank joint K/V compression (and optionally Q
    compression) with a decoupled RoPE key shared by all heads.

    The ranks and head widths have no canonical symbols yet and must be given (numbers or
    expressions); ``q_lora_rank=None`` projects queries straight from the hidden state
    (DeepSeek-V2-Lite). ``sequence_parallel`` may be 1 or ``"tp"``; Ulysses is not modelled.

    One absorbed decode step, b = 2 sequences over s = 16 cached latents: the projections of the
    new tokens plus the core ``2*b*a*s*(r_kv + d_R) + 2*b*a*s*r_kv``.

    >>> m = MLALayer(hidden_size=64, num_heads=4, q_lora_rank=32, kv_lora_rank=16,
    ...              qk_nope_head_dim=8, qk_rope_head_dim=4, v_head_dim=8).compute_metrics(
    ...     batch_size=2, seq_len=16, phase="decode", dtype="bf16")
    >>> core = 2 * 2 * 4 * 16 * (16 + 4) + 2 * 2 * 4 * 16 * 16
    >>> projections = 2 * 2 * (64 * 32 + 32 * 48 + 64 * 20 + 4 * 8 * 16 + 4 * 16 * 8 + 32 * 64)
    >>> m.matmul_flops_per_chip == core + projections == 40960
    True
    """

    hidden_size: Dim = sym.hidden_size
    num_heads: Dim = sym.num_heads
    q_lora_rank: Optional[Dim] = None
    kv_lora_rank: Dim
    qk_nope_head_dim: Dim
    qk_rope_head_dim: Dim
    v_head_dim: Dim
    flash_attention: bool = True
    causal: bool = False
    dropout: bool = False

    ulysses_unmodelled: ClassVar[Optional[str]] = "multi-head latent attention"

    @model_validator(mode="after")
    def _check_shapes(self) -> "MLALayer":
        par = self.parallelism
        if not par.megatron_sp and par.sp != 1:
            raise ConfigError(
                f'sequence_parallel must be 1 or "tp" for MLALayer, got {par.sp}: Ulysses '
                f"sequence parallelism with {self.ulysses_unmodelled} is not modelled")
        check_divides(self.num_heads, par.tp, "num_heads", by="tensor_parallel")
        return self

    # -- shapes ------------------------------------------------------------------------------

    @property
    def query_heads(self) -> sp.Expr:
        return self.num_heads

    @property
    def qk_head_dim(self) -> sp.Expr:
        """d_qk = d_n + d_R: the width of one query/key head."""
        return self.qk_nope_head_dim + self.qk_rope_head_dim

    @property
    def latent_dim(self) -> sp.Expr:
        """r_kv + d_R: what one token keeps in the KV cache (the latent and the rope key)."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    def _params(self, heads: sp.Expr) -> sp.Expr:
        """Parameters with ``heads`` heads in the up- and out-projections, the down-projections
        and norms whole."""
        h, d_qk, d_v = self.hidden_size, self.qk_head_dim, self.v_head_dim
        r_q, r_kv = self.q_lora_rank, self.kv_lora_rank
        if r_q is None:
            q = h * heads * d_qk
        else:
            q = h * r_q + r_q + r_q * heads * d_qk  # q_a_proj, q_a_layernorm, q_b_proj
        kv = h * self.latent_dim + r_kv + r_kv * heads * (self.qk_nope_head_dim + d_v)
        return q + kv + heads * d_v * h

    # -- ops ---------------------------------------------------------------------------------

    def _norm(self, name: str, T: sp.Expr, width: sp.Expr, e: sp.Expr) -> Vector:
        """An RMSNorm over ``T`` latents of ``width``: read them and the weight, write them."""
        return Vector(name, elements=T * width, flops_per_element=VECTOR_FLOPS["rmsnorm"],
                      read_bytes=(T * width + width) * e, write_bytes=T * width * e)

    def _q_ops(self, ctx: Context) -> list[Op | Collective]:
        h, e, T, r_q = self.hidden_size, ctx.e, ctx.tokens, self.q_lora_rank
        n_q = self.num_heads / ctx.tp * self.qk_head_dim
        if r_q is None:
            # (T x h) @ (h x a_t d_qk): column-parallel (a TE linear on the block input: its TP entry)
            return [*self.tp_enter(ctx, T * h * e, userbuffers=False, te_linear=True),
                    Matmul("q", m=T, n=n_q, k=h, dtype_bytes=e)]
        shard = ctx.sharded_tokens
        return [
            # (T' x h) @ (h x r_q): replicated on every TP rank, on its T' = T/t tokens under SP
            Matmul("q_down", m=shard, n=r_q, k=h, dtype_bytes=e),
            self._norm("q_norm", shard, r_q, e),
            # the up-projection's TP entry: the normalized latent gathered (SP) or its gradient summed
            *self.tp_enter(ctx, T * r_q * e, userbuffers=False, te_linear=True),
            # (T x r_q) @ (r_q x a_t d_qk): column-parallel
            Matmul("q_up", m=T, n=n_q, k=r_q, dtype_bytes=e),
        ]

    def _kv_enter(self, ctx: Context) -> list[Op | Collective]:
        """The K/V up-projection's TP entry (:meth:`Layer.tp_enter` on the ``r_kv`` latent) and, under
        Megatron SP, the rope key's all-gather (Megatron-Core's ``gather_from_sequence_parallel_region``:
        plain NCCL in bf16, reduce-scattered back in the backward)."""
        T = ctx.tokens
        ops: list[Op | Collective] = []
        if ctx.megatron_sp and ctx.tp != 1:
            ops.append(Collective("all_gather", "tp", ctx.tp, T * self.qk_rope_head_dim * ctx.wire_bytes))
        return ops + self.tp_enter(ctx, T * self.kv_lora_rank * ctx.e, userbuffers=False, te_linear=True)

    def _core(self, ctx: Context) -> AttentionCore:
        """The naive core of prefill and training: a_t heads, K and V expanded per head."""
        a_t = self.num_heads / ctx.tp
        return AttentionCore(
            "attention_core", batch=ctx.batch_size, heads=a_t, kv_heads=a_t, q_len=ctx.seq_len,
            kv_len=ctx.seq_len, head_dim=self.qk_head_dim, v_head_dim=self.v_head_dim,
            dtype_bytes=ctx.e, flash=self.flash_attention, causal=self.causal,
            dropout=self.dropout and ctx.training, save_lse=self.flash_attention and ctx.training,
            context_parallel=ctx.cp,  # this chip's 1/cp share (docs/conventions.md §3b)
            decode=False,
        )

    def _latent_core(self, ctx: Context) -> _LatentCore:
        """The absorbed decode core: one new query per sequence and head over s cached latents,
        Q Kᵀ at width r_kv + d_R, P V at r_kv (one shared latent "KV head")."""
        core = AttentionCore(
            "latent_attention_core", batch=ctx.batch_size, heads=self.num_heads / ctx.tp,
            kv_heads=sp.Integer(1), q_len=sp.Integer(1), kv_len=ctx.seq_len / ctx.cp,
            head_dim=self.latent_dim, v_head_dim=self.kv_lora_rank, dtype_bytes=ctx.e,
            flash=self.flash_attention, causal=self.causal, decode=True)
        return _LatentCore(core.name, core=core)

    def forward_ops(self, ctx: Context):
        h, e, T = self.hidden_size, ctx.e, ctx.tokens
        a_t, r_kv = self.num_heads / ctx.tp, self.kv_lora_rank
        d_n, d_v = self.qk_nope_head_dim, self.v_head_dim
        # NB: the TP entries are the up-projections' (module docstring): under Megatron SP the
        # down-projections run on the rank's T/t tokens and the latents are gathered
        ops: list = list(self._q_ops(ctx))
        # (T' x h) @ (h x (r_kv + d_R)): the latent and the shared rope key, replicated
        ops.append(Matmul("kv_down", m=ctx.sharded_tokens, n=self.latent_dim, k=h, dtype_bytes=e))
        ops.append(self._norm("kv_norm", ctx.sharded_tokens, r_kv, e))
        if ctx.decode:
            # a_t x [(b x d_n) @ (d_n x r_kv)]: each head's nope query into the latent space
            ops.append(Matmul("k_absorb", m=T, n=r_kv, k=d_n, dtype_bytes=e, batch=a_t))
            ops.append(self._latent_core(ctx))
            # each CP rank attended to s/cp latents: combine the partial latent outputs
            ops.extend(combine_partials(ctx, T * a_t * r_kv * e))
            # a_t x [(b x r_kv) @ (r_kv x d_v)]: each head's latent output to its value width
            ops.append(Matmul("v_absorb", m=T, n=d_v, k=r_kv, dtype_bytes=e, batch=a_t))
        else:
            ops.extend(self._kv_enter(ctx))
            # (T x r_kv) @ (r_kv x a_t (d_n + d_v)): column-parallel K (nope part) and V
            ops.append(Matmul("kv_up", m=T, n=a_t * (d_n + d_v), k=r_kv, dtype_bytes=e))
            # under CP the ring carries the expanded per-head K and V (Megatron-core's MLA hands
            # them to Transformer Engine's CP attention)
            core = self._core(ctx)
            ops.extend(kv_exchange(ctx, core))
            ops.append(core)
        # (T x a_t d_v) @ (a_t d_v x h): row-parallel
        ops.append(Matmul("out", m=T, n=h, k=a_t * d_v, dtype_bytes=e))
        ops.extend(self.tp_exit(ctx, T * h * e, userbuffers=True))
        if self.dropout and ctx.training:
            ops.append(dropout("dropout", ctx.sharded_tokens * h, e))
        return ops

    def selective_recompute_ops(self, ctx: Context):
        core = self._core(ctx)
        return [*recomputed_exchange(ctx, core), core]

    # -- the layer contract ------------------------------------------------------------------

    @property
    def num_params(self) -> sp.Expr:
        """``h*r_q + r_q + r_q*a*d_qk`` (or ``h*a*d_qk``) + ``h*(r_kv + d_R) + r_kv +
        r_kv*a*(d_n + d_v)`` + ``a*d_v*h``."""
        return self._params(self.num_heads)

    @property
    def tp_summed_params(self) -> sp.Expr:
        """Under Megatron sequence parallelism the replicated down-projections and latent norms,
        which run on each rank's ``T/t`` tokens: ``h*(r_q + r_kv + d_R) + r_q + r_kv`` (``h*(r_kv +
        d_R) + r_kv`` without query compression; ``TELinear(parallel_mode="duplicated")`` and the
        norms mark them ``sequence_parallel``). Without it every rank runs them on all tokens: the
        same gradients, nothing to sum (the latents' gradients are all-reduced in the backward).
        With a spec naming an explicit MLA ``q_layernorm`` and ``qk_layernorm=True`` Megatron-Core
        sums the r_q norm even without SP; symcost follows the default Transformer Engine spec,
        where that norm is fused into ``linear_q_up_proj`` (``QKNormConfigResolver``), so not.

        >>> MLALayer(hidden_size=64, num_heads=4, q_lora_rank=32, kv_lora_rank=16, qk_nope_head_dim=8,
        ...          qk_rope_head_dim=4, v_head_dim=8,
        ...          parallelism={"tensor_parallel": 2, "sequence_parallel": "tp"}).tp_summed_params  # 64*52 + 48
        3376
        """
        if not self.parallelism.megatron_sp:
            return sp.Integer(0)
        width = self._latent_width()
        return self.hidden_size * (width + self.qk_rope_head_dim) + width

    def weight_memory(self, ctx: Context) -> sp.Expr:
        # up- and out-projections sharded by heads; down-projections and norms replicated
        return self._params(self.num_heads / ctx.tp) * ctx.e

    def _latent_width(self) -> sp.Expr:
        """r_q + r_kv: the normalized latents per token (r_kv without query compression)."""
        return self.kv_lora_rank if self.q_lora_rank is None else self.q_lora_rank + self.kv_lora_rank

    def saved_activations(self, ctx: Context) -> sp.Expr:
        # the input; c_q and c_kv (each as the norm's input and the up-projection's input);
        # Q, K, V expanded per head, the core's output (the out projection's input); then the
        # core's own state as in AttentionLayer (flash: the fp32 log-sum-exp)
        h, e, T = self.hidden_size, ctx.e, ctx.tokens
        a_t = self.num_heads / ctx.tp
        saved = ctx.sharded_tokens * h * e  # the input, sequence-sharded under Megatron SP
        if ctx.recompute == "full":
            return saved
        # the latents, as their fused norm's input and output, on the rank's tokens (T/t under SP:
        # the up-projections save the shard they re-gather)
        saved += LATENT_COPIES_SAVED * ctx.sharded_tokens * self._latent_width() * e
        saved += T * a_t * (2 * self.qk_head_dim + 2 * self.v_head_dim) * e  # Q, K, V, O
        return saved + core_saved_activations(self._core(ctx), ctx, self.dropout, h)

    def peak_activations(self, ctx: Context) -> sp.Expr:
        # input and output, the latents (with the rope key), Q, K, V, the core's output; in
        # decode Q, the absorbed query (r_kv + d_R per head), the latent output (r_kv per head)
        # and O (the cached K and V are the KV cache, not activations)
        h, e, T = self.hidden_size, ctx.e, ctx.tokens
        a_t, d_qk, d_v = self.num_heads / ctx.tp, self.qk_head_dim, self.v_head_dim
        latents = T * (self._latent_width() + self.qk_rope_head_dim)
        if ctx.decode:
            heads = T * a_t * (d_qk + self.latent_dim + self.kv_lora_rank + d_v)
            core = self._latent_core(ctx).core
        else:
            heads = T * a_t * (2 * d_qk + 2 * d_v)
            core = self._core(ctx)
        elements = 2 * T * h + latents + heads
        if not self.flash_attention:
            elements += core.score_elements
        return elements * e + kv_exchange_buffers(ctx, core)

    def kv_cache_memory(self, ctx: Context) -> sp.Expr:
        # b * s * (r_kv + d_R) * e: one latent per token, shared by all heads, whole on every
        # TP rank (the latent is not split by heads)
        if ctx.training:
            return sp.Integer(0)
        return ctx.batch_size * ctx.seq_len / ctx.cp * self.latent_dim * ctx.e  # s/cp per CP rank
