"""Op primitives: the smallest costed units, each with its FLOPs and HBM bytes.

Every formula is one small property with a shape comment. The per-element costs of vector work
are in :data:`VECTOR_FLOPS`, the single table the layers read.

>>> from symcost.core.ops import Matmul
>>> mm = Matmul("fc1", m=2048, n=16384, k=4096, dtype_bytes=2)   # (2048x4096) @ (4096x16384)
>>> mm.matmul_flops == 2 * 2048 * 16384 * 4096
True
>>> [op.name for op in mm.backward()]
['fc1.dgrad', 'fc1.wgrad']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence, TypeVar, Union

import sympy as sp

from ..errors import ConfigError
from ._expr import Value, as_expr, exact_value
from .dtypes import DataType

__all__ = [
    "ExpertMapSort",
    "GroupedInputQuantize",
    "HostSync",
    "VECTOR_FLOPS",
    "BACKWARD_VECTOR_FACTOR",
    "EAGER_ATTENTION_BACKWARD_FACTOR",
    "DROPOUT_MASK_BYTES",
    "LSE_BYTES",
    "Op",
    "Matmul",
    "Vector",
    "AttentionCore",
    "AttentionCoreBackward",
    "window_pairs",
    "chunk_pairs",
    "chunk_keys_read",
    "weight_elements",
    "Collective",
    "CollectiveKind",
    "Axis",
    "dropout",
    "merge_collectives",
    "substitute_collectives",
]

# FLOPs per element of vector (non-matmul) work, forward. FlopCounterMode counts all of these as 0;
# they enter flops_per_chip only. NB: a count of the arithmetic a straightforward kernel does:
#   relu: max(x, 0)                                            -> 1
#   gelu (tanh form): x^3 (2), 0.044715*x^3 + x (2), *sqrt(2/pi) (1), tanh (1), 1 + (1), *0.5x (1)
#                                                              -> 8
#   silu: x * 1/(1 + exp(-x)): exp (1), + (1), / (1), * (1)    -> 4
#   gate_multiply: act(gate) * up                              -> 1
#   softmax: max (1), subtract (1), exp (1), sum (1), divide (1) -> 5 (the 1/sqrt(d) scale folded in)
#   layernorm: mean (1), subtract (1), square (1), variance sum (1), normalize (1), *gamma (1),
#              +beta (1)                                       -> 7
#   rmsnorm: square (1), sum (1), normalize (1), *gamma (1)    -> 4
#   dropout: mask multiply (1), 1/(1-p) scale (1)              -> 2
#   bias: add                                                  -> 1
#   softplus: log(1 + exp(x)): exp (1), + (1), log (1)         -> 3
#   exp: one exponential                                       -> 1
VECTOR_FLOPS: dict[str, sp.Integer] = {
    "relu": sp.Integer(1),
    "gelu": sp.Integer(8),
    "silu": sp.Integer(4),
    "gate_multiply": sp.Integer(1),
    "softmax": sp.Integer(5),
    "layernorm": sp.Integer(7),
    "rmsnorm": sp.Integer(4),
    "dropout": sp.Integer(2),
    "bias": sp.Integer(1),
    "softplus": sp.Integer(3),
    "exp": sp.Integer(1),
}

# NB: the backward of an elementwise pass computes the local derivative and multiplies it into the
# incoming gradient; we price it at twice the forward's FLOPs per element.
BACKWARD_VECTOR_FACTOR = sp.Integer(2)
# docs/conventions.md §4: the attention core's backward is 2x its forward matmul FLOPs when eager
# (dQ, dK, dV, dP: two bmms per forward bmm) and 5/2x with flash attention (the kernel recomputes
# Q K^T once more: five bmms against the forward's two; with d_v != d_qk, 2x plus Q K^T).
EAGER_ATTENTION_BACKWARD_FACTOR = sp.Integer(2)
# docs/conventions.md §7: dropout masks are stored at 1 byte per element, flash attention's
# log-sum-exp in fp32.
DROPOUT_MASK_BYTES = sp.Integer(1)
LSE_BYTES = sp.Integer(4)

CollectiveKind = Literal["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p"]
Axis = Literal["tp", "sp", "cp", "pp", "ep", "dp"]

_ZERO = sp.Integer(0)

_OpT = TypeVar("_OpT", bound="Op")


@dataclass(frozen=True)
class Op:
    """Base of the computational ops: a name, FLOPs split into matmul and vector, HBM bytes."""

    name: str

    @property
    def matmul_flops(self) -> sp.Expr:
        """FLOPs on the matrix units (what FlopCounterMode counts)."""
        return _ZERO

    @property
    def vector_flops(self) -> sp.Expr:
        """FLOPs on the vector units (softmax, activations, norms, bias, dropout)."""
        return _ZERO

    @property
    def flops(self) -> sp.Expr:
        """All FLOPs of the op."""
        return self.matmul_flops + self.vector_flops

    @property
    def hbm_bytes(self) -> sp.Expr:
        """Bytes read from and written to HBM, each input and output once."""
        return _ZERO

    @property
    def kernel(self) -> str:
        """The kernel class that times this op (``symcost.hardware.kernels``): ``"elementwise"``
        here; a GEMM, an attention core and its backward say their own."""
        return "elementwise"

    def backward(self) -> list["Op"]:
        """The ops of this op's backward pass."""
        raise NotImplementedError

    def xreplace(self: _OpT, mapping: dict) -> _OpT:
        """A copy with ``mapping`` applied to every expression field."""
        return _xreplace_fields(self, mapping)

    def renamed(self: _OpT, suffix: str) -> _OpT:
        """A copy whose name ends in ``suffix`` (e.g. ``".recompute"``)."""
        return dataclasses.replace(self, name=self.name + suffix)


DGRAD = ".dgrad"
"""The suffix :meth:`Matmul.backward` gives the data-gradient GEMM of a product (``dX = dY @ B^T``)."""
WGRAD = ".wgrad"
"""The suffix :meth:`Matmul.backward` gives the weight-gradient GEMM of a product (``dB = X^T @ dY``)."""


def _xreplace_fields(obj, mapping):
    changes = {}
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if isinstance(value, sp.Basic):
            new = value.xreplace(mapping)
            if new is not value:
                changes[field.name] = new
    return dataclasses.replace(obj, **changes) if changes else obj


@dataclass(frozen=True)
class Matmul(Op):
    """``batch`` products (m x k) @ (k x n); ``weight`` marks B as a parameter read from HBM.

    FLOPs ``2 * batch * m * n * k`` (docs/conventions.md §1); an optional bias adds ``batch * m * n``
    vector FLOPs and reads ``n`` bias elements; bytes ``e * batch * (m*k + k*n + m*n)``.
    """

    m: sp.Expr = _ZERO
    n: sp.Expr = _ZERO
    k: sp.Expr = _ZERO
    dtype_bytes: sp.Expr = sp.Integer(2)
    batch: sp.Expr = sp.Integer(1)
    weight: bool = True
    bias: bool = False
    grouped: bool = False
    """A grouped GEMM (MoE experts: ``batch`` experts, each its own weight and ``m`` tokens)."""

    @property
    def kernel(self) -> str:
        """``"gemm.grouped"`` for a grouped GEMM, else ``"gemm"``."""
        return "gemm.grouped" if self.grouped else "gemm"

    @property
    def matmul_flops(self) -> sp.Expr:
        # (m x k) @ (k x n): m*n outputs, each k multiply-adds
        return 2 * self.batch * self.m * self.n * self.k

    @property
    def vector_flops(self) -> sp.Expr:
        return self.batch * self.m * self.n * VECTOR_FLOPS["bias"] if self.bias else _ZERO

    @property
    def hbm_bytes(self) -> sp.Expr:
        # read A (m x k) and B (k x n), write C (m x n); NB: a weight shared across the batch
        # dimension would be read once, but our batched products (attention) have no weights.
        elements = self.batch * (self.m * self.k + self.k * self.n + self.m * self.n)
        bias = self.batch * self.n if self.bias else _ZERO  # one bias vector per weight set (experts)
        return self.dtype_bytes * (elements + bias)

    def backward(self) -> list[Op]:
        ops: list[Op] = [
            # dX = dY @ B^T: (m x n) @ (n x k)
            Matmul(self.name + DGRAD, m=self.m, n=self.k, k=self.n, dtype_bytes=self.dtype_bytes,
                   batch=self.batch, weight=self.weight, grouped=self.grouped),
            # dB = A^T @ dY: (k x m) @ (m x n)
            Matmul(self.name + WGRAD, m=self.k, n=self.n, k=self.m, dtype_bytes=self.dtype_bytes,
                   batch=self.batch, weight=False, grouped=self.grouped),
        ]
        if self.bias:
            # d(bias) = column sums of dY: m*n adds, read dY, write n
            ops.append(Vector(self.name + ".bias_grad", elements=self.batch * self.m * self.n,
                              flops_per_element=VECTOR_FLOPS["bias"],
                              read_bytes=self.dtype_bytes * self.batch * self.m * self.n,
                              write_bytes=self.dtype_bytes * self.n))
        return ops


@dataclass(frozen=True)
class Vector(Op):
    """An elementwise or reduction pass over ``elements`` with its bytes read and written.

    FLOPs ``elements * flops_per_element``; bytes ``read_bytes + write_bytes``.
    """

    elements: sp.Expr = _ZERO
    flops_per_element: sp.Expr = _ZERO
    read_bytes: sp.Expr = _ZERO
    write_bytes: sp.Expr = _ZERO

    @property
    def vector_flops(self) -> sp.Expr:
        return self.elements * self.flops_per_element

    @property
    def hbm_bytes(self) -> sp.Expr:
        return self.read_bytes + self.write_bytes

    def backward(self) -> list[Op]:
        # read the output gradient and the saved inputs, write the input gradients
        return [Vector(self.name + ".bwd", elements=self.elements,
                       flops_per_element=BACKWARD_VECTOR_FACTOR * self.flops_per_element,
                       read_bytes=self.write_bytes + self.read_bytes, write_bytes=self.read_bytes)]


@dataclass(frozen=True)
class GroupedInputQuantize(Vector):
    """A fused MoE's input quantization: the layer's ``T x h`` 16-bit tokens cast once to the
    experts' narrow format before the permutation (read 2, write ``e`` bytes per element), where
    each grouped GEMM would otherwise quantize its own permuted rows; timed by the kernel class
    ``gemm.grouped.quantize`` (an elementwise pass for a narrow format under a fused grouped-GEMM
    engine, else nothing). ``narrow``: 1, or for a symbolic dtype size the ``Piecewise`` that binds
    to 1 below 16 bits and 0 at 16 (its kernels then count only in a narrow format). The backward
    has none.

    >>> GroupedInputQuantize("experts_quantize", elements=8, read_bytes=16, write_bytes=8).kernel
    'gemm.grouped.quantize'
    """

    narrow: sp.Expr = sp.Integer(1)

    @property
    def kernel(self) -> str:
        """``"gemm.grouped.quantize"``."""
        return "gemm.grouped.quantize"

    def backward(self) -> list[Op]:
        return []


@dataclass(frozen=True)
class ExpertMapSort(Op):
    """A fused MoE's prologue: sorting the token-expert choices of its ``tokens`` rows (a MoE layer's:
    the ``ep * T`` rows of its EP group) by expert into the maps
    the permutation and the grouped GEMMs read, timed by the kernel class ``gemm.grouped.prologue``
    (TensorRT-LLM's: one kernel up to ``fused_limit`` tokens, three above; no FLOPs or bytes worth
    counting: ``T k`` integers). ``fused_limit`` 0: never the one-kernel path. ``top_k`` and
    ``num_experts`` (the model's, all ranks) set vLLM's rule (``Runtime.moe_sort == "moe-align"``: one
    kernel while ``tokens * top_k < 1024`` and ``num_experts <= 64``, else two). The backward has none.

    >>> ExpertMapSort("expert_map_sort", tokens=sp.Integer(8)).kernel
    'gemm.grouped.prologue'
    """

    tokens: sp.Expr = _ZERO
    fused_limit: sp.Expr = sp.Integer(256)
    top_k: sp.Expr = sp.Integer(1)
    num_experts: sp.Expr = sp.Integer(1)

    @property
    def kernel(self) -> str:
        """``"gemm.grouped.prologue"``."""
        return "gemm.grouped.prologue"

    def backward(self) -> list[Op]:
        return []


@dataclass(frozen=True)
class HostSync(Op):
    """The device waiting for the host: a device-to-host synchronisation (a dropless MoE
    dispatcher reading its routing counts) after which the GPU idles until the host launches the
    next kernels, or an eagerly run layer whose many small launches pace the GPU (a padded MoE
    layer outside a CUDA graph). No FLOPs, no bytes; its time is the engine's (kernel class
    ``host.sync``); the backward has none."""

    @property
    def kernel(self) -> str:
        """``"host.sync"``."""
        return "host.sync"

    def backward(self) -> list[Op]:
        return []


@dataclass(frozen=True)
class AttentionCore(Op):
    """softmax(Q Kᵀ) V for ``batch`` sequences and ``heads`` query heads (``kv_heads`` K/V heads).

    Matmul FLOPs ``4 * batch * heads * pairs * head_dim`` where ``pairs`` is ``q_len * kv_len``,
    or with ``causal`` only the unmasked pairs ``q_len*(kv_len - q_len) + q_len*(q_len + 1)/2``
    (docs/conventions.md §3). With a ``v_head_dim`` d_v (multi-head latent attention: Q and K of
    ``head_dim`` d_qk, V and O of d_v) they are ``2 * batch * heads * pairs * (d_qk + d_v)``:
    Q Kᵀ at d_qk, P V at d_v. Vector FLOPs: softmax (and dropout) per pair. Eager attention writes
    and reads the score and probability matrices; flash attention reads Q, K, V and writes O only.

    >>> AttentionCore("core", batch=1, heads=2, kv_heads=2, q_len=4, kv_len=4, head_dim=24,
    ...               v_head_dim=16).matmul_flops == 2 * 2 * 16 * 24 + 2 * 2 * 16 * 16
    True
    """

    batch: sp.Expr = _ZERO
    heads: sp.Expr = _ZERO
    kv_heads: sp.Expr = _ZERO
    q_len: sp.Expr = _ZERO
    kv_len: sp.Expr = _ZERO
    head_dim: sp.Expr = _ZERO
    dtype_bytes: sp.Expr = sp.Integer(2)
    flash: bool = True
    causal: bool = False
    dropout: bool = False
    save_lse: bool = False
    v_head_dim: sp.Expr | None = None
    """Width of V and O per head; ``None`` means ``head_dim`` (Q, K, V and O all alike)."""
    kv_dtype_bytes: sp.Expr | None = None
    """Bytes per element of K and V as read (a quantized KV cache in decode); ``None``: ``dtype_bytes``."""
    window: sp.Expr | None = None
    """Sliding window: each query attends at most ``window`` keys, itself and the ``window - 1``
    before it (Mistral). The core reads only the keys some query's window reaches
    (:attr:`keys_read`); ``causal`` counting also discounts the pairs outside each query's window.
    ``None``: no window."""
    attention_chunk: sp.Expr | None = None
    """Chunked local attention (Llama 4's ``attention_chunk_size`` c): the sequence is cut into
    chunks of c positions and each query attends only to the keys of its own chunk, itself and
    those before it (:func:`chunk_pairs`, :func:`chunk_keys_read`). ``None``: no chunking; a
    core has a ``window`` or an ``attention_chunk``, not both."""
    context_parallel: sp.Expr = sp.Integer(1)
    """cp: this chip's share of a core whose sequence is split over ``cp`` context-parallel ranks
    (docs/conventions.md §3b). ``q_len`` and ``kv_len`` stay the whole lengths; the chip holds
    ``q_len/cp`` queries (two load-balanced chunks of ``q_len/(2 cp)``), scores them against all
    ``kv_len`` keys (its own and the ``cp - 1`` chunks it receives), and computes exactly
    ``pairs/cp`` of the (query, key) pairs, causal or not."""
    decode: bool | None = None
    """Whether a decode (generation) kernel runs the core: the engines' kernels over the KV cache,
    speculative verification's few queries per sequence included, as against context (prefill)
    attention. The layers set it by phase; ``None``: decode for one query per sequence."""

    @property
    def kernel(self) -> str:
        """``"attn.decode"`` for a decode core (:attr:`decode`), else ``"attn.prefill"`` (context
        attention, prefill chunks included).

        NB: by phase, not by ``q_len``: a prefill of one token is context attention, and a
        symbolic ``q_len`` bound to 1 later picks the same kernel as the number 1 would."""
        decode = self.q_len == 1 if self.decode is None else self.decode
        return "attn.decode" if decode else "attn.prefill"

    @property
    def e_kv(self) -> sp.Expr:
        """Bytes per element of K and V."""
        return self.dtype_bytes if self.kv_dtype_bytes is None else self.kv_dtype_bytes

    @property
    def d_v(self) -> sp.Expr:
        """The head width of V and O: ``v_head_dim``, or ``head_dim`` when not given."""
        return self.head_dim if self.v_head_dim is None else self.v_head_dim

    @property
    def pairs(self) -> sp.Expr:
        """(query, key) pairs scored per head and sequence.

        Without ``causal`` every pair of the score matrix (what eager kernels compute and
        FlopCounterMode counts, masked or not). With ``causal`` only the pairs the mask keeps;
        with a ``window`` w too, ``F(kv_len) - F(kv_len - q_len)`` where ``F(n) = m(m+1)/2 +
        (n - m) w`` and ``m = Min(n, w)`` (see :func:`window_pairs`).

        >>> AttentionCore("c", q_len=sp.Integer(6), kv_len=sp.Integer(6), causal=True,
        ...               window=sp.Integer(2)).pairs      # 1 + 2 + 2 + 2 + 2 + 2
        11
        """
        return self._whole_pairs / self.context_parallel

    @property
    def keys_read(self) -> sp.Expr:
        """Keys per sequence the core reads (and, without ``causal``, scores every query against):
        ``kv_len``, or with a ``window`` w only those some query's window reaches,
        ``Min(kv_len, q_len + w - 1)``; with an ``attention_chunk`` those from the first query's
        chunk start (:func:`chunk_keys_read`).

        Derivation: the queries sit at positions ``kv_len - q_len .. kv_len - 1``; the first one
        reaches back to ``kv_len - q_len - w + 1``, the last one to itself, so the keys read are the
        last ``q_len + w - 1`` (or all ``kv_len``, when fewer exist). A prefill (``q_len = kv_len``)
        reads them all; a chunk or a speculative verification after cached keys reads what a
        rolling-buffer cache of ``w - 1`` tokens plus the new ones holds, and one decode query
        ``Min(kv_len, w)``, as the decode step does (docs/conventions.md §16).

        >>> AttentionCore("c", q_len=sp.Integer(2), kv_len=sp.Integer(100), window=sp.Integer(8)).keys_read
        9
        """
        kv_len = sp.sympify(self.kv_len)
        if self.q_len == self.kv_len or (self.window is None and self.attention_chunk is None):
            return kv_len
        if self.attention_chunk is not None:
            return chunk_keys_read(sp.sympify(self.q_len), kv_len, sp.sympify(self.attention_chunk))
        return sp.Min(kv_len, self.q_len + self.window - 1)

    @property
    def key_kinks(self) -> tuple[sp.Expr, ...]:
        """Cached keys ``k = kv_len - q_len`` where :attr:`pairs` or :attr:`keys_read` change
        formula as ``k`` grows (a chunked prefill's later chunks): none without a window; with a
        window w and q queries, ``(w - q, w - 1)``.

        Derivation: ``keys_read = Min(k + q, q + w - 1)`` is affine for ``k <= w - 1`` and constant
        beyond. The causal pairs ``F(k + q) - F(k)`` (:func:`window_pairs`; F is ``n(n+1)/2`` for
        ``n <= w`` and ``w(w+1)/2 + (n - w)w`` for ``n >= w - 1``, the two agreeing on both) are
        ``q k + q(q+1)/2`` for ``k <= w - q`` and ``q w`` for ``k >= w - 1``. Between the two kinks,
        where the pairs are quadratic in k, lie fewer than q integers: at most one chunk of q.

        NB: a chunked-attention core's counts have a kink at every attention chunk's start
        (periodic in k), so :attr:`key_kinks` does not list them; the chunked prefill costs such
        a core chunk by chunk (:func:`symcost.plan.inference.chunk_attention_time`)."""
        if self.window is None:
            return ()
        return (self.window - self.q_len, self.window - 1)

    @property
    def _whole_pairs(self) -> sp.Expr:
        """The pairs of the whole core, before a context-parallel split."""
        q_len, kv_len = sp.sympify(self.q_len), sp.sympify(self.kv_len)
        if not self.causal:
            return q_len * self.keys_read
        if self.window is not None:
            return window_pairs(q_len, kv_len, sp.sympify(self.window))
        if self.attention_chunk is not None:
            return chunk_pairs(q_len, kv_len, sp.sympify(self.attention_chunk))
        # query i (0-based) sits at position kv_len - q_len + i and sees keys 0..that position
        return q_len * (kv_len - q_len) + q_len * (q_len + 1) / 2

    @property
    def local_q_len(self) -> sp.Expr:
        """Queries per sequence on this chip: ``q_len / cp``."""
        return self.q_len / self.context_parallel

    @property
    def qk_flops(self) -> sp.Expr:
        """FLOPs of Q Kᵀ alone: (q_len x d_qk) @ (d_qk x kv_len) per head and sequence."""
        return 2 * self.batch * self.heads * self.pairs * self.head_dim

    @property
    def matmul_flops(self) -> sp.Expr:
        # Q Kᵀ: (q_len x d_qk) @ (d_qk x kv_len) and P V: (q_len x kv_len) @ (kv_len x d_v), per head
        return self.qk_flops + 2 * self.batch * self.heads * self.pairs * self.d_v

    @property
    def vector_flops(self) -> sp.Expr:
        per_pair = VECTOR_FLOPS["softmax"] + (VECTOR_FLOPS["dropout"] if self.dropout else _ZERO)
        return self.batch * self.heads * self.pairs * per_pair

    @property
    def q_bytes(self) -> sp.Expr:
        """Bytes of Q (and of O, which has Q's shape unless ``v_head_dim`` differs)."""
        return self.dtype_bytes * self.batch * self.heads * self.local_q_len * self.head_dim

    @property
    def o_bytes(self) -> sp.Expr:
        """Bytes of O: Q's shape with ``d_v`` per head."""
        return self.dtype_bytes * self.batch * self.heads * self.local_q_len * self.d_v

    @property
    def v_bytes(self) -> sp.Expr:
        """Bytes of V alone (the :attr:`keys_read` keys)."""
        return self.e_kv * self.batch * self.kv_heads * self.keys_read * self.d_v

    @property
    def kv_bytes(self) -> sp.Expr:
        """Bytes of K and V together (the :attr:`keys_read` keys)."""
        return self.e_kv * self.batch * self.kv_heads * self.keys_read * self.head_dim + self.v_bytes

    @property
    def io_bytes(self) -> sp.Expr:
        """Bytes of Q, K, V and O: read Q, K, V once, write O once."""
        return self.q_bytes + self.o_bytes + self.kv_bytes

    @property
    def new_io_bytes(self) -> sp.Expr:
        """Bytes of Q, O and the K and V of this chip's own ``q_len/cp`` new tokens, not of cached
        keys: what a pass of its own over the new tokens touches (RoPE, the KV-cache write).
        Without cached keys, window or context parallelism it equals :attr:`io_bytes`.

        >>> core = AttentionCore("c", batch=1, heads=2, kv_heads=1, q_len=4, kv_len=100, head_dim=8)
        >>> core.new_io_bytes == 2 * (2 * 4 * 8 + 2 * 4 * 8 + 2 * 4 * 8)   # Q, O; K and V of 4 tokens
        True
        """
        new_kv = self.e_kv * self.batch * self.kv_heads * self.local_q_len * (self.head_dim + self.d_v)
        return self.q_bytes + self.o_bytes + new_kv

    @property
    def score_elements(self) -> sp.Expr:
        """Elements of one materialized score matrix (eager computes masked entries too); under
        context parallelism the chip's ``q_len/cp`` rows against all ``kv_len`` keys (with a window,
        the :attr:`keys_read`)."""
        return self.batch * self.heads * self.local_q_len * self.keys_read

    @property
    def lse_bytes(self) -> sp.Expr:
        """The fp32 log-sum-exp flash attention keeps for its backward."""
        return LSE_BYTES * self.batch * self.heads * self.local_q_len if self.save_lse else _ZERO

    @property
    def hbm_bytes(self) -> sp.Expr:
        io = self.io_bytes  # read Q, K, V; write O
        if self.flash:
            return io + self.lse_bytes
        # write S, read S, write P, read P (+ write and read the dropped-out P and write its mask)
        passes = 6 if self.dropout else 4
        mask = DROPOUT_MASK_BYTES * self.score_elements if self.dropout else _ZERO
        return io + passes * self.dtype_bytes * self.score_elements + mask

    def backward(self) -> list[Op]:
        return [AttentionCoreBackward(self.name + ".bwd", forward=self)]


def weight_elements(ops: Sequence[tuple[Op, Any]]) -> sp.Expr:
    """Elements of the GEMM weights a training pass's ``(op, count)`` pairs differentiate: each
    weight's product has one data-gradient GEMM (:meth:`Matmul.backward`, whatever the forward's
    recomputation), ``batch * k * n`` elements of it (a grouped GEMM's ``batch`` experts).

    >>> fwd = Matmul("up", m=8, n=32, k=16)
    >>> weight_elements([(fwd, 1), *((op, 1) for op in fwd.backward())])
    512
    """
    return sp.Add(*(count * op.batch * op.k * op.n for op, count in ops
                    if isinstance(op, Matmul) and op.weight and op.name.endswith(DGRAD)))


def window_pairs(q_len: sp.Expr, kv_len: sp.Expr, window: sp.Expr) -> sp.Expr:
    """(query, key) pairs a causal sliding-window mask keeps: the last ``q_len`` of ``kv_len``
    positions each see at most ``window`` keys, themselves and the ``window - 1`` before.

    Derivation: the query at position p (0-based) sees keys max(0, p - w + 1) .. p, that is
    ``min(p + 1, w)`` keys. Summed over the first n positions, ``F(n) = sum_{j=1..n} min(j, w)``:
    the first ``m = Min(n, w)`` terms are 1 .. m (``m(m+1)/2``), the remaining ``n - m`` are w
    each (``(n - m) w``). The queries occupy positions ``kv_len - q_len .. kv_len - 1``, so the
    pairs are ``F(kv_len) - F(kv_len - q_len)``; for ``q_len = kv_len = s`` that is ``F(s)``
    (``s(s+1)/2`` when s <= w). Min keeps it symbolic; the tests check it pair by pair.

    >>> window_pairs(sp.Integer(1), sp.Integer(100), sp.Integer(8))   # one decode query
    8
    """
    def seen(n: sp.Expr) -> sp.Expr:
        m = sp.Min(n, window)
        return m * (m + 1) / 2 + (n - m) * window

    if q_len == kv_len:
        return seen(kv_len)
    return seen(kv_len) - seen(kv_len - q_len)


def chunk_pairs(q_len: sp.Expr, kv_len: sp.Expr, chunk: sp.Expr) -> sp.Expr:
    """(query, key) pairs a causal chunked-local mask keeps (Llama 4's ``attention_chunk_size``
    c; transformers' ``chunked_causal_mask``: key j is visible to query p when ``j <= p`` and
    ``j // c == p // c``): the last ``q_len`` of ``kv_len`` positions each see the keys of their
    own chunk up to themselves.

    Derivation: the query at position p (0-based) sees keys ``c*floor(p/c) .. p``, that is
    ``(p mod c) + 1`` keys. Over the first n positions, ``G(n) = sum_{p<n} ((p mod c) + 1)``:
    each of the ``floor(n/c)`` whole chunks gives ``1 + 2 + ... + c = c(c+1)/2``, the last
    partial one of ``r = n - c*floor(n/c)`` positions ``r(r+1)/2``. The queries occupy positions
    ``kv_len - q_len .. kv_len - 1``, so the pairs are ``G(kv_len) - G(kv_len - q_len)``; for a
    prefill ``q_len = kv_len = s`` that is ``G(s)`` (``s(s+1)/2`` when s <= c). Unlike a sliding
    window (:func:`window_pairs`) the count restarts at every chunk: at s = 2c a window of c
    keeps ``c(c+1)/2 + c*c`` pairs, the chunks ``c(c+1)``. The tests check it pair by pair.

    >>> chunk_pairs(sp.Integer(6), sp.Integer(6), sp.Integer(4))   # 1 + 2 + 3 + 4 | 1 + 2
    13
    >>> chunk_pairs(sp.Integer(1), sp.Integer(9), sp.Integer(4))   # one decode query at position 8
    1
    """
    def seen(n: sp.Expr) -> sp.Expr:
        whole = sp.floor(n / chunk)
        rest = n - chunk * whole
        return whole * chunk * (chunk + 1) / 2 + rest * (rest + 1) / 2

    if q_len == kv_len:
        return seen(kv_len)
    return seen(kv_len) - seen(kv_len - q_len)


def chunk_keys_read(q_len: sp.Expr, kv_len: sp.Expr, chunk: sp.Expr) -> sp.Expr:
    """Keys per sequence the last ``q_len`` of ``kv_len`` positions reach under chunked-local
    attention of chunk c: from the start of the first query's chunk to the last query,
    ``kv_len - c*floor((kv_len - q_len)/c)``.

    Derivation: the first query sits at ``p0 = kv_len - q_len`` and reaches back to
    ``c*floor(p0/c)``; the last query is at ``kv_len - 1``, so the keys read are
    ``kv_len - c*floor(p0/c)``. A prefill (``q_len = kv_len``) reads all of them; one decode
    query at position ``s - 1`` reads ``((s - 1) mod c) + 1``, the keys of its own chunk.

    >>> chunk_keys_read(sp.Integer(1), sp.Integer(8193), sp.Integer(8192))   # first token of chunk 2
    1
    >>> chunk_keys_read(sp.Integer(3), sp.Integer(8196), sp.Integer(8192))   # queries 8193..8195
    4
    >>> chunk_keys_read(sp.Integer(3), sp.Integer(8194), sp.Integer(8192))   # 8191 in chunk 1: keys 0..8193
    8194
    """
    return kv_len - chunk * sp.floor((kv_len - q_len) / chunk)


@dataclass(frozen=True)
class AttentionCoreBackward(Op):
    """The attention core's backward: 2x (eager) or 5/2x (flash) the forward's matmul FLOPs.

    With a ``v_head_dim`` d_v != d_qk the flash backward is 2x the forward plus the recomputed
    Q Kᵀ, ``2 * batch * heads * pairs * (3 d_qk + 2 d_v)`` (torch's ``sdpa_backward_flop_count``),
    which is 5/2x the forward only when d_v = d_qk; eager stays 2x (dQ, dK at d_qk; dP, dV at d_v).

    Bytes: read Q, K, V, O and dO, write dQ, dK, dV; eager also streams the probability matrix
    and its gradients (7 score-sized passes, 9 with dropout), flash reads its log-sum-exp.
    """

    forward: AttentionCore = None  # type: ignore[assignment]

    @property
    def kernel(self) -> str:
        """``"attn.backward"``."""
        return "attn.backward"

    @property
    def matmul_flops(self) -> sp.Expr:
        fwd = self.forward
        # dQ, dK, dP, dV: two bmms per forward bmm (2x forward); a flash kernel also recomputes
        # Q Kᵀ (at d_qk), which makes 5/2x the forward when d_v = d_qk (docs/conventions.md §4)
        backward = EAGER_ATTENTION_BACKWARD_FACTOR * fwd.matmul_flops
        return backward + fwd.qk_flops if fwd.flash else backward

    @property
    def vector_flops(self) -> sp.Expr:
        return BACKWARD_VECTOR_FACTOR * self.forward.vector_flops

    @property
    def hbm_bytes(self) -> sp.Expr:
        fwd = self.forward
        io = 2 * fwd.io_bytes  # read Q, K, V, O, dO; write dQ, dK, dV
        if fwd.flash:
            return io + fwd.lse_bytes
        passes = 9 if fwd.dropout else 7
        mask = DROPOUT_MASK_BYTES * fwd.score_elements if fwd.dropout else _ZERO
        return io + passes * fwd.dtype_bytes * fwd.score_elements + mask

    def xreplace(self, mapping: dict) -> "AttentionCoreBackward":
        return dataclasses.replace(self, forward=self.forward.xreplace(mapping))


def dropout(name: str, elements: sp.Expr, dtype_bytes: sp.Expr) -> Vector:
    """Dropout in training: read x, write the output and a 1-byte mask."""
    return Vector(name, elements=elements, flops_per_element=VECTOR_FLOPS["dropout"],
                  read_bytes=elements * dtype_bytes,
                  write_bytes=elements * (dtype_bytes + DROPOUT_MASK_BYTES))


# Bytes each chip sends, as a fraction of the payload M, for ring algorithms (docs/conventions.md §11).
def _ring_fraction(kind: str, n: sp.Expr) -> sp.Expr:
    if kind == "all_reduce":
        return 2 * (n - 1) / n
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    # p2p: the whole payload, nothing in a group of one (a context-parallel ring of one rank)
    return sp.Integer(1) if n.is_number and n > 1 else sp.Min(1, n - 1)


@dataclass(frozen=True)
class Collective:
    """One kind of collective on one axis: ``count`` calls with payload ``payload_bytes`` each.

    The payload M is the full tensor: the all-reduce buffer, the all-gather output, the
    reduce-scatter input, the chip's buffer for all-to-all. Bytes sent per chip (all calls):
    all-reduce ``2(n-1)/n * M``, all-gather / reduce-scatter / all-to-all ``(n-1)/n * M``,
    p2p ``M``, times ``count``.

    >>> Collective("all_reduce", "tp", 4, 1000).bytes_sent_per_chip
    1500
    """

    kind: CollectiveKind
    axis: Axis
    group_size: Value
    payload_bytes: Value
    count: Value = 1
    span: Value = dataclasses.field(default=None, repr=False)
    """Chips the group's members are spread over (the group size for a contiguous group; a
    Ulysses group strided by t spans ``t * sp``): it picks the link tier."""
    hidden: bool = dataclasses.field(default=False, repr=False)
    """Runs behind the compute of the layer that issues it, as an expert-parallel all-to-all does
    under Megatron-Core's ``overlap_moe_expert_parallel_comm`` (the combined 1F1B schedule runs one
    micro-batch's dispatch and combine while another micro-batch's forward or backward computes,
    megatron/core/pipeline_parallel/combined_1f1b.py): the layer pays only what exceeds its op time
    (:func:`~symcost.hardware.timing.layer_times`)."""

    userbuffers: bool = dataclasses.field(default=False, repr=False)
    """A TP collective of a Transformer Engine linear (qkv, proj, fc1, fc2: an attention or MLP
    block's entry and exit, :meth:`~symcost.layers.base.Layer.tp_enter`), which ``overlap=True``
    pipelines with its GEMM (TE userbuffers, ``--tp-comm-overlap``;
    :func:`~symcost.hardware.timing.exposed_comm`). Unmarked TP collectives (the embedding's
    reduce-scatter, the LM head's forward and the fused loss's all-gathers, a MoE layer's token
    gathers) are plain NCCL calls Megatron-Core does not overlap: they add in full (the LM head's
    backward ones are :attr:`bulk`)."""

    te_linear: bool = dataclasses.field(default=False, repr=False)
    """A TP collective of a Transformer Engine linear (:attr:`userbuffers` implies it; without
    userbuffers: MLA's up-projections, a MoE layer's shared experts): under FP8 training its all-gathers
    carry the FP8 cast TE quantized before gathering (:meth:`~symcost.layers.base.Context.te_gather_bytes`),
    and its backward re-gather and input-gradient reduce-scatter run beside the dgrad and wgrad GEMMs
    (:attr:`bulk`; transformer_engine/pytorch/module/linear.py ``_Linear.backward``, "Overlap input AG
    with dgrad" and "Overlap dgrad RS/AR with wgrad", ``async_op=True``). Not in :attr:`key`: it changes
    no time, and the bytes it changes are the payload's."""

    bulk: bool = dataclasses.field(default=False, repr=False)
    """Overlapped whole beside one GEMM, not cut into chunks (with ``overlap=True``; a TP
    collective only). Without :attr:`userbuffers`: Megatron-Core's own linear issuing it
    asynchronously beside a GEMM (``LinearWithGradAccumulationAndAsyncCommunication.backward``,
    megatron/core/tensor_parallel/layers.py core_v0.14.0: the re-gather beside dgrad, the input
    gradient's reduce-scatter or all-reduce beside wgrad; the LM head,
    :class:`~symcost.layers.embedding.LMHeadLayer`). With it: Transformer Engine's bulk userbuffers overlap
    (``ub_bulk_wgrad``: under Megatron SP the reduce-scatter of a TP block's input gradient runs
    beside its wgrad GEMM; Megatron-Bridge's userbuffers configs,
    src/megatron/bridge/training/comm_overlap.py, set ``BulkOverlapCfg`` for qkv_wgrad and
    fc1_wgrad), and ``ub_bulk_dgrad``: the backward's re-gather of a column-parallel linear's saved
    input shard beside its dgrad GEMM (``BulkOverlapCfg`` for qkv_dgrad and fc1_dgrad;
    :meth:`~symcost.layers.base.Layer.tp_enter`). Other userbuffers all-gathers and reduce-scatters
    are cut into chunks, one GEMM per chunk (:func:`~symcost.hardware.timing.exposed_comm`).
    NB: hidden only with ``overlap=True`` and at the engine's ``tp_overlap_efficiency`` (fitted on
    userbuffers runs), also where it is not :attr:`userbuffers`, though Megatron-Core and Transformer
    Engine issue these asynchronously whether ``--tp-comm-overlap`` is on or not: with ``overlap=False``
    they add in full (docs/explanation/fidelity.md)."""

    hierarchical: Optional[tuple[Value, Value, Value]] = dataclasses.field(default=None, repr=False)
    """``(R, E, k)`` for an expert-parallel dispatch or combine that crosses the scale-out network
    once per node, as DeepEP's and HybridEP's internode kernels do (DeepSeek-V3 technical report,
    arXiv 2412.19437, section 3.2.2: a token goes over IB to the GPU of the same in-node index on
    each target node, then over NVLink to its experts' GPUs): ``R`` the bytes of the chip's tokens
    once per call, ``E`` experts, ``E/n`` on each of the group's ranks (placed contiguously over
    the nodes, the last node possibly partly filled), top-``k`` routing. Over ``N`` evenly filled
    nodes a token reaches ``(N - 1)(1 - C(E - E/N, k)/C(E, k))`` other nodes
    (:func:`~symcost.hardware.timing.node_crossings`, which also counts uneven nodes); ``None``:
    one send per peer (NCCL)."""

    tokens: Optional[Value] = dataclasses.field(default=None, repr=False)
    """Rows of the reduced tensor (its tokens, ``M / (h e)``) where the issuing layer knows them: an
    engine that switches its all-reduce by token count reads them (TensorRT-LLM 1.0,
    :func:`~symcost.hardware.timing.trtllm_allreduce_window`), and so does TensorRT-LLM 1.0's
    one-shot below SM 90, one thread block per token up to the SM count (``custom_allreduce_block_rate``:
    ``n (M / T') ceil(T' / min(S, T')) / R_cb``, ``T' = max(1, T)``); ``None``: unknown, the fastest
    form stands for the engine's choice and that one-shot is taken as one block carrying the whole
    message (``T' = 1``, its slowest: an unknown count never makes it faster)."""

    element_format: Union[DataType, str, None] = dataclasses.field(default=None, repr=False)
    """The format of the elements the collective carries (a :class:`~symcost.core.dtypes.DataType`
    or its name) where the issuing layer knows it: vLLM's torch symmetric-memory all-reduce takes
    bf16 only (vllm/distributed/device_communicators/symm_mem.py, ``should_use_symm_mem``: ``if
    inp.dtype != self.dtype: return False``, ``self.dtype = torch.bfloat16``), so an fp16 or fp32
    all-reduce in its size window runs NCCL (:func:`~symcost.hardware.timing.vllm_allreduce_window`);
    ``None``: unknown, read as bf16 (the engines' usual format)."""

    model_format: bool = dataclasses.field(default=False, repr=False)
    """The elements are the model's activations (a TP block's all-reduce): :attr:`element_format`
    is the model's wire format (:func:`~symcost.core.dtypes.wire_format`), which
    :meth:`~symcost.core.metrics.LayerMetrics.subs` sets when it binds the dtype of metrics
    computed with the dtype a symbol."""

    def __repr__(self) -> str:
        """The dataclass's repr, with :attr:`element_format` and :attr:`model_format` where set (so
        that records of other formats tell apart in an assertion's diff).

        >>> Collective("all_reduce", "tp", 2, 64, element_format="fp16", model_format=True)  # doctest: +ELLIPSIS
        Collective(kind='all_reduce', ..., count=1, element_format='fp16', model_format=True)
        """
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr]
        if self.element_format is not None:
            shown.append(f"element_format={DataType.parse(self.element_format).value!r}")
        if self.model_format:
            shown.append("model_format=True")
        return f"Collective({', '.join(shown)})"

    def __post_init__(self) -> None:
        self._check_format()
        if self.kind not in ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "p2p"):
            raise ConfigError(f"Collective.kind: unknown collective {self.kind!r}")
        if self.axis not in ("tp", "sp", "cp", "pp", "ep", "dp"):
            raise ConfigError(f"Collective.axis: unknown axis {self.axis!r}")
        self._check_overlap_marks()
        if self.span is None:
            object.__setattr__(self, "span", self.group_size)
        for name in ("group_size", "payload_bytes", "count", "span"):
            object.__setattr__(self, name, exact_value(as_expr(getattr(self, name), f"Collective.{name}")))
        for name in ("group_size", "count", "span"):
            value = sp.sympify(getattr(self, name))
            if value.is_positive is False or value.is_integer is False:
                raise ConfigError(f"Collective.{name} must be a positive integer, got {value}")
        if sp.sympify(self.payload_bytes).is_negative:
            raise ConfigError(f"Collective.payload_bytes must be non-negative, got {self.payload_bytes}")
        self._check_tokens()
        if self.hierarchical is not None:
            if self.kind != "all_to_all" or len(self.hierarchical) != 3:
                raise ConfigError("Collective.hierarchical: (token bytes, experts, top_k) of an all_to_all, got "
                                  f"{self.hierarchical!r} on {self.kind}")
            values = tuple(exact_value(as_expr(v, "Collective.hierarchical")) for v in self.hierarchical)
            size, experts, top_k = (sp.sympify(v) for v in values)
            bad = ((size.is_number and size < 0) or (experts.is_number and not (experts.is_integer and experts >= 1))
                   or (top_k.is_number and not (top_k.is_integer and top_k >= 1))
                   or (top_k.is_number and experts.is_number and top_k > experts))
            if bad:
                raise ConfigError("Collective.hierarchical: token bytes must be >= 0, experts a whole number >= 1 "
                                  f"and top_k a whole number in 1 .. experts, got {self.hierarchical!r}")
            object.__setattr__(self, "hierarchical", values)

    def _check_format(self) -> None:
        if self.element_format is not None:
            try:
                object.__setattr__(self, "element_format", DataType.parse(self.element_format))
            except ConfigError as err:
                raise ConfigError(f"Collective.element_format: {err}") from None

    def _check_tokens(self) -> None:
        if self.tokens is not None:
            object.__setattr__(self, "tokens", exact_value(as_expr(self.tokens, "Collective.tokens")))
            if sp.sympify(self.tokens).is_negative:
                raise ConfigError(f"Collective.tokens must be non-negative, got {self.tokens}")

    def _check_overlap_marks(self) -> None:
        """:attr:`userbuffers` and :attr:`bulk` on a TP collective only."""
        if self.userbuffers and self.axis != "tp":
            raise ConfigError("Collective.userbuffers: TE's userbuffers overlap TP collectives only, "
                              f"got axis {self.axis!r}")
        if self.bulk and self.axis != "tp":
            raise ConfigError("Collective.bulk: a bulk overlap is a TP collective's (beside its linear's GEMM), "
                              f"got axis {self.axis!r}")

    @property
    def bytes_sent_per_chip(self) -> Value:
        """Bytes one chip sends over all ``count`` calls, ring algorithms."""
        n = as_expr(self.group_size, "group_size")
        return exact_value(as_expr(self.count, "count") * _ring_fraction(self.kind, n)
                     * as_expr(self.payload_bytes, "payload_bytes"))

    @property
    def key(self) -> tuple:
        """What identifies calls that may be merged into one record with a larger count."""
        return (self.kind, self.axis, self.group_size, self.payload_bytes, self.span, self.hidden, self.userbuffers,
                self.bulk, self.hierarchical, self.tokens, self.element_format, self.model_format)

    def xreplace(self, mapping: dict) -> "Collective":
        """A copy with ``mapping`` applied to the group size, payload, count and tokens (and
        :attr:`hierarchical`)."""
        out = _xreplace_fields(self, mapping)
        if self.hierarchical is None:
            return out
        mapped = tuple(sp.sympify(v).xreplace(mapping) for v in self.hierarchical)
        return out if mapped == self.hierarchical else dataclasses.replace(out, hierarchical=mapped)

    def scaled(self, factor: sp.Expr) -> "Collective":
        """The same record with ``count`` multiplied by ``factor``."""
        return dataclasses.replace(self, count=as_expr(self.count, "count") * factor)


def substitute_collectives(collectives, mapping: dict) -> tuple[Collective, ...]:
    """``collectives`` with ``mapping`` applied (``Collective.xreplace``), merged as
    :func:`merge_collectives` merges them. A record whose group becomes one chip is dropped before it
    is rebuilt: a group of one sends nothing (docs/conventions.md §11), and its count may reach 0
    there (a context-parallel ring's ``cp - 1`` sends at cp = 1), which a record refuses.

    >>> from symcost import symbols as S
    >>> ring = Collective("p2p", "cp", S.cp, 64, count=S.cp - 1)
    >>> substitute_collectives([ring], {S.cp: sp.Integer(1)})
    ()
    >>> substitute_collectives([ring], {S.cp: sp.Integer(4)})[0].count
    3
    """
    kept = (c for c in collectives if sp.sympify(c.group_size).xreplace(mapping) != 1)
    return merge_collectives(c.xreplace(mapping) for c in kept)


def merge_collectives(collectives) -> tuple[Collective, ...]:
    """Records with the same kind, axis, group and payload merged (counts add), order kept;
    records over a group of one dropped (they cost nothing)."""
    merged: dict[tuple, Collective] = {}
    for c in collectives:
        if c.group_size == 1:
            continue
        if c.key in merged:
            merged[c.key] = dataclasses.replace(merged[c.key], count=merged[c.key].count + c.count)
        else:
            merged[c.key] = c
    return tuple(merged.values())
