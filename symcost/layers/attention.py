"""Attention layers: multi-head (MHA) and grouped-query (GQA; MQA at ``num_kv_heads=1``).

Per chip, with T tokens on the chip, t-way TP, ``a_t = a/t`` query heads and ``g_t`` KV heads
(``g/t``, or one replicated head when g < t; ``g/Min(g, t)`` while t is a symbol):

- ``qkv``: (T x h) @ (h x (a_t + 2 g_t) d), one fused column-parallel projection;
- the attention core: ``4 * b * H * s_q * s_kv * d`` matmul FLOPs over the core's H heads
  (``a/(t*sp)`` in prefill and training, where Ulysses all-to-alls switch to head sharding;
  ``a_t`` in decode, where a sequence degree splits the keys instead);
- ``out``: (T x a_t d) @ (a_t d x h), row-parallel, then the TP all-reduce
  (all-gather + reduce-scatter under Megatron sequence parallelism).

>>> from symcost import AttentionLayer, GroupedQueryAttentionLayer
>>> AttentionLayer(hidden_size=4096, num_heads=32).compute_metrics(
...     batch_size=1, seq_len=2048, phase="prefill", dtype="bf16").matmul_flops_per_chip
343597383680
>>> GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8).compute_metrics(
...     batch_size=1, seq_len=2048, phase="prefill", dtype="bf16").matmul_flops_per_chip
240518168576
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

import sympy as sp
from pydantic import field_validator, model_validator

from ..core import symbols as sym
from ..core._expr import check_divides
from ..core.assumptions import Assumption, record
from ..core.dtypes import DataType
from ..core.ops import (
    DROPOUT_MASK_BYTES,
    VECTOR_FLOPS,
    AttentionCore,
    Axis,
    Collective,
    Matmul,
    Vector,
    chunk_keys_read,
    dropout,
)
from ..errors import ConfigError
from .base import Context, Dim, GradientCollective, Layer, shard_heads

__all__ = ["AttentionLayer", "GroupedQueryAttentionLayer", "kv_exchange", "kv_exchange_buffers", "recomputed_exchange",
           "combine_partials"]


class _Attention(Layer):
    """What MHA and GQA share; ``kv_heads`` is the only difference."""

    hidden_size: Dim = sym.hidden_size
    num_heads: Dim = sym.num_heads
    head_dim: Optional[Dim] = None
    flash_attention: bool = True
    causal: bool = False
    """Count only the (query, key) pairs the mask keeps (docs/conventions.md §3); ``False`` counts the
    whole score matrix, as eager kernels compute it and FlopCounterMode counts it."""
    window: Optional[Dim] = None
    """Sliding window (Mistral's ``sliding_window``): each query attends at most ``window`` keys,
    itself and the ``window - 1`` before it. The KV cache keeps ``min(s, window)`` tokens (a
    rolling buffer) and a decode step reads and scores that many; in prefill and training
    ``causal=True`` counts only the pairs inside the causal window (``causal=False`` still counts
    the whole score matrix). Queries after cached keys (a prefill chunk, a speculative
    verification) read only the keys their windows reach (docs/conventions.md §16, item 17).
    ``None``: no window."""
    attention_chunk: Optional[Dim] = None
    """Chunked local attention (Llama 4's ``attention_chunk_size`` c on its RoPE layers): the
    sequence is cut into chunks of c positions and each query attends only to the keys of its
    own chunk up to itself, so ``causal=True`` counts ``sum over chunks of L(L+1)/2`` pairs
    (:func:`~symcost.core.ops.chunk_pairs`). A decode step at length s reads and scores the
    ``((s - 1) mod c) + 1`` keys of the current chunk; the KV cache keeps ``min(s, c)`` tokens
    per sequence, the most a chunk holds (transformers' chunked cache layer and vLLM's
    chunked-local KV manager keep one chunk per chunked layer; docs/conventions.md §16, item 21).
    ``None``: no chunking. Not together with ``window``."""
    kv_cache_dtype: Optional[DataType] = None
    """The KV cache's format when it differs from the activations' (e.g. ``"fp8_e4m3"``): its
    bytes per element ``e_kv`` size the cache and the decode step's reads of it."""
    bias: Union[bool, Literal["qkv"]] = False
    """Biases on every projection (``True``, GPT), on Q, K and V only (``"qkv"``, Qwen2), or none."""
    dropout: bool = False
    qk_norm: Union[bool, Literal["weightless"]] = False
    """RMSNorm over each query and key head's ``head_dim`` (Qwen3's ``q_norm`` and ``k_norm``):
    ``2d`` weights (one ``d``-vector for Q, one for K, shared by the heads) and 4 FLOPs per element
    of Q and K (``T*(a_t + g_t)*d`` elements per chip). ``"weightless"``: the same pass without
    weights (Llama 4's ``Llama4TextWeightlessRMSNorm`` on its RoPE layers): no parameters, the
    same FLOPs (the table's multiply by the weight stays in, an upper bound of 1 FLOP per element)."""
    sinks: bool = False
    """A learned logit per query head in each softmax's denominator (gpt-oss's ``sinks``):
    ``a`` parameters, ``a_t`` per chip. Its softmax term, one more logit per query row, is not
    counted (docs/conventions.md §16, item 15)."""

    @field_validator("kv_cache_dtype", mode="before")
    @classmethod
    def _kv_dtype(cls, value: Any) -> Optional[DataType]:
        return None if value is None else DataType.parse(value)

    @property
    def query_heads(self) -> sp.Expr:
        return self.num_heads

    @property
    def kv_heads(self) -> sp.Expr:
        raise NotImplementedError

    def _e_kv(self, ctx: Context) -> sp.Expr:
        """Bytes per KV-cache element: ``kv_cache_dtype``'s, else the activations' ``e``."""
        return ctx.e if self.kv_cache_dtype is None else self.kv_cache_dtype.bytes

    @property
    def d(self) -> sp.Expr:
        """The head dimension: ``head_dim``, or ``hidden_size / num_heads`` when not given."""
        return self.hidden_size / self.num_heads if self.head_dim is None else self.head_dim

    @model_validator(mode="after")
    def _check_shapes(self) -> "_Attention":
        a, g = self.num_heads, self.kv_heads
        t, u = self.parallelism.tp, self.parallelism.sp
        if self.head_dim is None:
            check_divides(self.hidden_size, a, "hidden_size", by="num_heads", note=" when head_dim is not given")
        check_divides(a, g, "num_heads", by="num_kv_heads")
        check_divides(a, t, "num_heads", by="tensor_parallel")
        check_divides(a, t * u, "num_heads", by="tensor_parallel * sequence_parallel")
        if self.window is not None and self.attention_chunk is not None:
            raise ConfigError("attention_chunk: a layer has a sliding window or chunked attention, not both "
                              f"(window {self.window}, attention_chunk {self.attention_chunk})")
        for degree, what in ((t, "tensor_parallel"), (t * u, "tensor_parallel * sequence_parallel")):
            _check_kv_split(g, degree, what)
        return self

    # -- per-chip head counts ----------------------------------------------------------------

    def _heads(self, ctx: Context) -> tuple[sp.Expr, sp.Expr]:
        """Query and KV heads per chip in the projections."""
        return self.num_heads / ctx.tp, self._kv_heads_over(ctx.tp)

    def _kv_heads_over(self, degree: sp.Expr) -> sp.Expr:
        """KV heads per chip when split ``degree`` ways (:func:`.base.shard_heads`); with as
        many KV heads as query heads, ``a/degree`` (the query heads' rule already needs it whole)."""
        if self.kv_heads == self.num_heads:
            return self.num_heads / degree
        return shard_heads(self.kv_heads, degree)

    def _cached_tokens(self, ctx: Context) -> sp.Expr:
        """Tokens per sequence the KV cache keeps: ``s``, or ``Min(s, window)`` with a window,
        ``Min(s, attention_chunk)`` with chunked attention (one chunk's worth)."""
        limit = self.window if self.attention_chunk is None else self.attention_chunk
        return ctx.seq_len if limit is None else sp.Min(ctx.seq_len, limit)

    def _decode_keys(self, ctx: Context) -> sp.Expr:
        """Keys one decode query reads per sequence: the cached tokens, or with chunked attention
        those of the current chunk, ``s - c*floor((s - 1)/c)`` (``((s - 1) mod c) + 1``)."""
        if self.attention_chunk is None:
            return self._cached_tokens(ctx)
        return chunk_keys_read(sp.Integer(1), ctx.seq_len, sp.sympify(self.attention_chunk))

    def _core(self, ctx: Context) -> AttentionCore:
        window = chunk = None
        cp = sp.Integer(1)
        if ctx.decode:
            # one new token per sequence over this chip's share of the cached keys (with a
            # window, the last min(s, w): the one query sees all of them, so no mask remains)
            heads, kv_heads = self._heads(ctx)
            q_len, kv_len = sp.Integer(1), self._decode_keys(ctx) / ctx.seq_shards
        else:
            # after the Ulysses all-to-all: the whole sequence, heads split t * sp ways; under
            # context parallelism this chip's 1/cp share of it (docs/conventions.md §3b)
            heads = self.num_heads / (ctx.tp * ctx.sp)
            kv_heads = self._kv_heads_over(ctx.tp * ctx.sp)
            q_len = kv_len = ctx.seq_len
            window, cp = self.window, ctx.cp
            chunk = self.attention_chunk
        return AttentionCore(
            "attention_core", batch=ctx.batch_size, heads=heads, kv_heads=kv_heads,
            q_len=q_len, kv_len=kv_len, head_dim=self.d, dtype_bytes=ctx.e,
            flash=self.flash_attention, causal=self.causal, window=window, attention_chunk=chunk,
            dropout=self.dropout and ctx.training, save_lse=self.flash_attention and ctx.training,
            # decode reads K and V from the cache, in the cache's format
            kv_dtype_bytes=self._e_kv(ctx) if ctx.decode and self.kv_cache_dtype is not None else None,
            context_parallel=cp, decode=bool(ctx.decode),
        )

    # -- the layer contract ------------------------------------------------------------------

    @property
    def num_params(self) -> sp.Expr:
        """Q and O ``2*h*a*d``, K and V ``2*h*g*d``, plus ``(a + 2g)*d`` Q/K/V biases and an
        ``h`` output bias, ``2d`` Q/K norm weights and ``a`` sink logits where present."""
        h, a, g, d = self.hidden_size, self.num_heads, self.kv_heads, self.d
        qkv_bias = (a + 2 * g) * d if self.bias else 0
        qk_norm = 2 * d if self.qk_norm is True else 0
        sinks = a if self.sinks else 0
        return 2 * h * a * d + 2 * h * g * d + qkv_bias + (h if self.bias is True else 0) + qk_norm + sinks

    @property
    def tp_summed_params(self) -> sp.Expr:
        """The Q and K norms' ``2d`` weights, shared by the heads each rank holds a part of (summed
        under ``qk_layernorm`` with or without sequence parallelism, ``finalize_model_grads``
        ``_allreduce_layernorm_grads``), plus, under Megatron sequence parallelism, the output
        projection's ``h`` bias (``RowParallelLinear`` marks its bias ``sequence_parallel``).

        GPT-3 175B's attention (h 12288, biases) under TP 8 + SP: its output bias, 12,288; Qwen3-8B's
        (head_dim 128, Q/K norms) at TP 4 without SP: 2 * 128 = 256.

        >>> sp_tp8 = {"tensor_parallel": 8, "sequence_parallel": "tp"}
        >>> AttentionLayer(hidden_size=12288, num_heads=96, bias=True, parallelism=sp_tp8).tp_summed_params
        12288
        >>> GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8, head_dim=128, qk_norm=True,
        ...                            parallelism={"tensor_parallel": 4}).tp_summed_params
        256
        """
        qk_norm = 2 * self.d if self.qk_norm is True else 0
        out_bias = self.hidden_size if self.bias is True and self.parallelism.megatron_sp else 0
        return sp.sympify(qk_norm + out_bias)

    def forward_ops(self, ctx: Context):
        h, d, e, T = self.hidden_size, self.d, ctx.e, ctx.tokens
        a_t, g_t = self._heads(ctx)
        ulysses = ctx.sp != 1
        ops: list = list(self.tp_enter(ctx, T * h * e, userbuffers=True))
        # (T x h) @ (h x (a_t + 2 g_t) d): Q, K and V in one column-parallel matmul
        ops.append(Matmul("qkv", m=T, n=(a_t + 2 * g_t) * d, k=h, dtype_bytes=e, bias=bool(self.bias)))
        if self.qk_norm:
            # RMSNorm over each Q and K head: read Q, K and the 2d weights, write them back
            qk = T * (a_t + g_t) * d
            weights = 2 * d if self.qk_norm is True else 0
            ops.append(Vector("qk_norm", elements=qk, flops_per_element=VECTOR_FLOPS["rmsnorm"],
                              read_bytes=(qk + weights) * e, write_bytes=qk * e))
        if ulysses and not ctx.decode:
            # sequence-sharded -> head-sharded: each chip's Q, K, V buffer, its T tokens of Q for
            # the a_t heads and of K and V for the KV heads each of the sp ranks needs (the core's
            # kv_heads): g_t/sp each, or with more ranks t*sp than KV heads g one head each, so
            # sp heads in all, a KV head replicated to every rank that reads it (DeepSpeed-Ulysses,
            # UlyssesSPAttentionHF: kv_replication_factor = sp // g, repeat_interleave first)
            kv_sent = ctx.sp * self._kv_heads_over(ctx.tp * ctx.sp)
            ops.append(Collective("all_to_all", "sp", ctx.sp, T * (a_t + 2 * kv_sent) * d * e,
                                  span=ctx.tp * ctx.sp))
        core = self._core(ctx)
        ops.extend(kv_exchange(ctx, core))
        ops.append(core)
        if ulysses and not ctx.decode:
            # head-sharded -> sequence-sharded: the core's output
            ops.append(Collective("all_to_all", "sp", ctx.sp, T * a_t * d * e, span=ctx.tp * ctx.sp))
        ops.extend(combine_partials(ctx, T * a_t * d * e))
        # (T x a_t d) @ (a_t d x h): row-parallel
        ops.append(Matmul("out", m=T, n=h, k=a_t * d, dtype_bytes=e))
        ops.extend(self.tp_exit(ctx, T * h * e, userbuffers=True))
        T_out = ctx.sharded_tokens
        if self.bias is True:
            ops.append(Vector("out_bias", elements=T_out * h, flops_per_element=VECTOR_FLOPS["bias"],
                              read_bytes=(T_out + 1) * h * e, write_bytes=T_out * h * e))
        if self.dropout and ctx.training:
            ops.append(dropout("dropout", T_out * h, e))
        return ops

    def selective_recompute_ops(self, ctx: Context):
        core = self._core(ctx)
        return [*recomputed_exchange(ctx, core), core]

    def weight_memory(self, ctx: Context) -> sp.Expr:
        h, d = self.hidden_size, self.d
        a_t, g_t = self._heads(ctx)
        params = 2 * h * a_t * d + 2 * h * g_t * d  # Q and O; K and V
        if self.bias:
            params += (a_t + 2 * g_t) * d  # column biases sharded
        if self.bias is True:
            params += h  # the output bias, replicated
        if self.qk_norm is True:
            params += 2 * d  # the Q and K norm weights, replicated
        if self.sinks:
            params += a_t  # one sink logit per local query head
        return params * ctx.e

    def saved_activations(self, ctx: Context) -> sp.Expr:
        # Korthikanti et al. 2022, section 4.2: the input (2sbh), Q and K (4sbh), V (2sbh), the
        # softmax output (2as^2b), its dropout mask (as^2b) and output (2as^2b), the output
        # projection's input (2sbh) and its dropout mask (sbh): 11sbh + 5as^2b at e = 2.
        # Under Transformer Engine's FP8 training the QKV GEMM's input is saved as its FP8 cast, and
        # the output projection's input, the core's output, once more as its FP8 cast (the core's
        # backward keeps the bf16 one).
        h, d, e, T = self.hidden_size, self.d, ctx.e, ctx.tokens
        a_t, g_t = self._heads(ctx)
        saved = ctx.sharded_tokens * h * ctx.saved_gemm_input_bytes  # the input, sequence-sharded under SP
        if ctx.recompute == "full":
            return saved
        saved += T * (2 * a_t + 2 * g_t) * d * e  # Q, K, V and the core's output
        if ctx.gemm_bytes is not None:
            saved += T * a_t * d * ctx.gemm_bytes
        if self.qk_norm:
            saved += T * (a_t + g_t) * d * e  # Q and K before their norms (a norm keeps its input)
        return saved + core_saved_activations(self._core(ctx), ctx, self.dropout, h)

    def peak_activations(self, ctx: Context) -> sp.Expr:
        # input, Q/K/V, the score matrix (eager only), the core's output and the layer's output
        h, d, e, T = self.hidden_size, self.d, ctx.e, ctx.tokens
        a_t, g_t = self._heads(ctx)
        elements = 2 * T * h + T * (2 * a_t + 2 * g_t) * d
        if self.qk_norm:
            elements += T * (a_t + g_t) * d  # the normed copies of Q and K
        core = self._core(ctx)
        if not self.flash_attention:
            elements += core.score_elements
        return elements * e + kv_exchange_buffers(ctx, core)

    def kv_cache_memory(self, ctx: Context) -> sp.Expr:
        # docs/conventions.md §9: 2 * b * s * (KV heads per chip) * d * e_kv, split by the sequence
        # and context degrees; with a sliding window only the last min(s, window) tokens are kept
        if ctx.training:
            return sp.Integer(0)
        _, g_t = self._heads(ctx)
        tokens = self._cached_tokens(ctx) / ctx.seq_shards
        return 2 * ctx.batch_size * tokens * g_t * self.d * self._e_kv(ctx)


def _check_kv_split(g: sp.Expr, degree: sp.Expr, what: str) -> None:
    """Megatron's KV-head rule: ``degree`` divides ``g`` (heads split), or when it exceeds them
    ``g`` divides ``degree`` (one whole KV head per chip). When SymPy cannot order ``g`` and
    ``degree``, either one is recorded as an assumption (see :func:`.base.shard_heads`)."""
    if (g - degree).is_negative:
        check_divides(degree, g, what, by="num_kv_heads", note=" when it exceeds them")
    elif (g - degree).is_nonnegative or degree == 1:
        check_divides(g, degree, "num_kv_heads", by=what)
    else:
        record(Assumption.divisible(((g, degree), (degree, g)), "num_kv_heads", what,
                                    note=" (KV heads split, or one replicated per chip)", mutual=True))


class AttentionLayer(_Attention):
    """Multi-head attention: every query head has its own K and V head."""

    @property
    def kv_heads(self) -> sp.Expr:
        return self.num_heads


class GroupedQueryAttentionLayer(_Attention):
    """Grouped-query attention: ``num_kv_heads`` K/V heads shared by groups of query heads
    (multi-query attention at ``num_kv_heads=1``)."""

    num_kv_heads: Dim = sym.num_kv_heads

    @property
    def kv_heads(self) -> sp.Expr:
        return self.num_kv_heads


def core_saved_activations(core: AttentionCore, ctx: Context, dropout: bool, hidden: sp.Expr) -> sp.Expr:
    """What an attention layer saves beyond its input, Q, K, V and O (Korthikanti et al. 2022):
    the output dropout mask (1 byte per element), and unless the core is recomputed
    (``selective``) flash attention's fp32 log-sum-exp or eager attention's softmax output
    (plus its dropout mask and output)."""
    saved = DROPOUT_MASK_BYTES * ctx.sharded_tokens * hidden if dropout else sp.Integer(0)
    if ctx.recompute == "selective":
        return saved  # the core is recomputed: nothing of it is kept
    if core.flash:
        return saved + core.lse_bytes
    score, e = core.score_elements, ctx.e
    return saved + score * (2 * e + DROPOUT_MASK_BYTES if dropout else e)


# -- context parallelism (docs/conventions.md §3b) ------------------------------------------------


def kv_exchange(ctx: Context, core: AttentionCore) -> list:
    """The forward's context-parallel KV exchange for ``core`` (empty without CP, or in decode).

    With ``cp_comm_type="p2p"`` (Megatron-LM / Transformer Engine ``AttnFuncWithCPAndKVP2P``,
    PyTorch's ring attention): each chip's K and V chunk, ``M = kv_bytes/cp`` (``core.kv_bytes``
    is the whole sequence's K and V of the chip's heads), travels ``cp - 1`` hops around the ring
    in the forward; the backward sends K and V around again (``cp - 1``, the transpose) and the
    accumulating dK, dV ``cp`` times (each chunk's gradient visits every rank and returns home;
    PyTorch 2.13 ``_templated_ring_attention_backward``). With ``"all_gather"``
    (``AttnFuncWithCPAndKVAllGather``): one all-gather of the whole K and V forward; the backward
    re-gathers them and reduce-scatters dK, dV (the transpose).

    >>> from symcost.core.parallelism import Parallelism
    >>> from symcost.core.phase import Phase
    >>> ctx = Context(batch_size=sp.Integer(1), seq_len=sp.Integer(8), phase=Phase.PREFILL,
    ...               dtype_bytes=sp.Integer(2), parallelism=Parallelism(context_parallel=2),
    ...               recompute="none")
    >>> core = AttentionCore("c", batch=1, heads=1, kv_heads=1, q_len=8, kv_len=8, head_dim=4,
    ...                      context_parallel=2)
    >>> [(c.kind, c.count, c.payload_bytes) for c in kv_exchange(ctx, core)[:1]]   # 4 tokens * (4 + 4) * 2
    [('p2p', 1, 64)]
    """
    c = ctx.cp
    if c == 1 or ctx.decode:
        return []
    span = ctx.tp * ctx.sp * c  # CP ranks sit next to the TP and Ulysses ranks (Megatron's order)
    if ctx.parallelism.cp_comm_type == "all_gather":
        whole = Collective("all_gather", "cp", c, core.kv_bytes, span=span)
        return [whole, GradientCollective("kv_regather", collective=whole)]
    chunk = core.kv_bytes / c
    return [Collective("p2p", "cp", c, chunk, count=c - 1, span=span),
            GradientCollective("dkv_ring", collective=Collective("p2p", "cp", c, chunk, count=c, span=span))]


def recomputed_exchange(ctx: Context, core: AttentionCore) -> list:
    """Selective recomputation re-runs the core, and with it the forward's KV exchange."""
    return [op for op in kv_exchange(ctx, core) if not isinstance(op, GradientCollective)]


def kv_exchange_buffers(ctx: Context, core: AttentionCore) -> sp.Expr:
    """Inference peak: bytes of other ranks' K and V a chip holds while its core runs, in chunks of
    ``kv_bytes/cp``: with ``"p2p"`` ``Min(2, cp - 1)`` (the one in use and the one arriving; at
    cp = 2 there is only one other), with ``"all_gather"`` the other ``cp - 1``; zero without CP."""
    c = ctx.cp
    if c == 1 or ctx.decode:
        return sp.Integer(0)
    chunks = c - 1 if ctx.parallelism.cp_comm_type == "all_gather" else sp.Min(2, c - 1)
    return chunks * core.kv_bytes / c


def combine_partials(ctx: Context, payload: sp.Expr) -> list:
    """Decode with the keys split ``sp * cp`` ways: each rank attended to its share of the cache,
    and combining the partial outputs (rescaled by their log-sum-exp, whose few bytes we neglect)
    is one all-reduce of ``payload`` (the core's output, the chip's ``ctx.tokens`` rows: every rank
    holds all the queries) over those ranks, in the model's activations' format
    (:attr:`Context.wire_format`, tagged ``model_format``)."""
    n = ctx.seq_shards
    if not ctx.decode or n == 1:
        return []
    axis: Axis = "sp" if ctx.cp == 1 else "cp"
    return [Collective("all_reduce", axis, n, payload, span=ctx.tp * n, tokens=ctx.tokens,
                       element_format=ctx.wire_format, model_format=True)]
