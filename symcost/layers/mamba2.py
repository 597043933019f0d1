r"""Mamba-2 mixer (Dao & Gu 2024, "Transformers are SSMs", arXiv:2405.21060): the SSD chunked scan.

Notation: h hidden (``d_model``), H heads of P channels (``nheads``, ``headdim``), d = H*P the
inner width (``d_inner = expand * d_model``), N the state size (``d_state``), G groups sharing B
and C (``ngroups``), k the convolution width (``d_conv``), Q the chunk length (``chunk_size``),
t the TP degree, T tokens on the chip (``b*s``; ``b`` in decode). Per chip H_t = H/t, G_t = G/t,
d_t = H_t*P, and the convolved channels C_t = d_t + 2*G_t*N.

Parameters (``mamba_ssm/modules/mamba2.py``, HF ``Mamba2Mixer``; no projection biases, as every
released checkpoint): ``in_proj`` h*(2d + 2GN + H) (z, x, B, C, dt), the depthwise ``conv1d``
(d + 2GN)*k weights + (d + 2GN) biases, ``dt_bias``, ``A_log``, ``D`` H each, the gated RMSNorm's
d weights, ``out_proj`` d*h.

Prefill and training (the SSD algorithm, ``ssd_minimal.py``'s four steps; a sequence of s tokens
cut into ``c_f = floor(s/Q)`` full chunks and a last chunk of ``r = s mod Q`` tokens, so
``Σl² = c_f*Q² + r²`` summed over chunk lengths l and ``c = ceil(s/Q)`` chunks):

- ``in_proj`` (T x h) @ (h x (2d_t + 2G_tN + H_t)), column-parallel;
- ``conv1d``: causal depthwise, k taps per output over C_t channels, ``2*T*C_t*k`` FLOPs, then the
  bias and SiLU (vector work: the kernel is elementwise, not a GEMM);
- ``ssd_dt``: dt = softplus(dt + dt_bias), dA = dt*A, its cumsum inside each chunk and the decays;
- step 1, diagonal blocks: ``ssd_cb`` C Bᵀ per chunk and group, (l x N) @ (N x l):
  ``2*b*G_t*N*Σl²``; ``ssd_decay`` masks it with L = exp(segsum(dA)) and scales by dt;
  ``ssd_diag`` (CB∘L) X per chunk and head, (l x l) @ (l x P): ``2*b*H_t*P*Σl²``;
- step 2, chunk states: ``ssd_states`` Xᵀ B per chunk and head, (P x l) @ (l x N) (X scaled by dt
  and the decay to the chunk's end, ``ssd_scale_x``): ``2*T*H_t*P*N``;
- step 3, state passing: ``ssd_state_passing`` h_c = exp(ΣdA_c)*h_{c-1} + s_c, a scan over the c
  chunks, ``2*b*c*H_t*P*N`` vector FLOPs;
- step 4, state to output: ``ssd_state_out`` C h per chunk and head, (l x N) @ (N x P):
  ``2*T*H_t*P*N``; ``ssd_output`` scales it by exp(dA_cumsum), adds the diagonal part and D*x;
- ``gated_norm``: RMSNorm(y * SiLU(z)) over d_t channels (``norm_before_gate=False``);
- ``out_proj`` (T x d_t) @ (d_t x h), row-parallel, then the TP all-reduce.

So the scan's matmul FLOPs are ``2*b*Σl²*(G_t*N + H_t*P) + 4*T*H_t*P*N``: for s a multiple of Q,
``2*T*Q*(G_t*N + H_t*P) + 4*T*H_t*P*N``, linear in s (docs/conventions.md §16, item 14). Each
step's products over a sequence's chunks are one op (the short last chunk of step 1 a separate
``_last`` op); those of steps 2 and 4 sum to one product over the s tokens.

NB: step 3 is counted as the kernels run it (``_state_passing_fwd``: a sequential scan, vector
work), not as ``ssd_minimal``'s (c+1) x (c+1) matrix product over chunks, which would add
``2*b*H_t*(c+1)²*P*N`` matmul FLOPs; and C Bᵀ is counted per group (``_bmm_chunk_fwd``), not per
head as ``ssd_minimal`` and HF's torch path do after repeating B and C to every head. Like
attention (docs/conventions.md §3), the causal mask inside a chunk is not discounted.

Decode (one token per sequence, the recurrent step of ``selective_state_update``):
``conv1d_step`` (the k-wide window from the conv state), ``ssm_dt``, ``ssm_update``
h = exp(dt*A)*h + (dt*x) Bᵀ over the b*H_t*P*N state (3 FLOPs per element), ``ssm_readout``
y = C h, ``2*b*H_t*P*N`` (a batched matrix-vector product fused in the update kernel), D*x, the
gated norm and ``out_proj``: O(H*P*N) per token, independent of s.

The state cache replaces the KV cache: per sequence the conv state (k - 1)*C_t elements (the last
k - 1 inputs of the convolution) and the SSM state H_t*P*N, so ``b*((k - 1)*C_t*e + H_t*P*N*e_ssm)``
bytes per layer and chip, constant in s. ``e_ssm`` is the activations' e unless
``ssm_state_dtype`` is given: HF's ``Mamba2Cache``, mamba_ssm's ``allocate_inference_cache`` and
vLLM's default (``mamba_ssm_cache_dtype="auto"``) keep it in the model's dtype; vLLM's
``--mamba-ssm-cache-dtype float32`` (recommended for some checkpoints) is ``ssm_state_dtype="fp32"``.
NB: HF and mamba_ssm allocate k conv columns, vLLM k - 1; we count the k - 1 the recurrence needs.

Tensor parallelism as in Megatron-core's ``MambaMixer``: heads and groups split t ways (so t must
divide both H and G; replicated groups are not modelled), ``in_proj`` column-parallel, the
convolution, the scan and the gated norm local (the norm is per group, ``group_size = d/G``),
``out_proj`` row-parallel with one all-reduce. A Ulysses ``sequence_parallel`` degree and a
``context_parallel`` degree are refused (either would pass the scan's state between ranks).

>>> layer = Mamba2Layer(hidden_size=64, num_heads=4, head_dim=32, state_size=16, num_groups=1,
...                     conv_kernel=4, chunk_size=8)
>>> layer.num_params == 64*(2*128 + 2*16 + 4) + (128 + 32)*(4 + 1) + 3*4 + 128 + 128*64
True
>>> m = layer.compute_metrics(batch_size=2, seq_len=1000, phase="decode", dtype="bf16")
>>> m.kv_cache_memory_per_chip      # b*((k-1)*(d + 2GN) + H*P*N)*e = 2*(3*160 + 4*32*16)*2
10112
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import sympy as sp
from pydantic import field_validator, model_validator

from ..core import symbols as sym
from ..core._expr import check_divides
from ..core.dtypes import DataType
from ..core.ops import VECTOR_FLOPS, Matmul, Op, Vector
from ..errors import ConfigError
from .base import Context, Dim, Layer

__all__ = ["Mamba2Layer", "chunk_split"]

_ZERO = sp.Integer(0)

# Vector FLOPs per element of the scan's elementwise work (per docs/conventions.md §2 a
# straightforward kernel's arithmetic, from the per-element table :data:`VECTOR_FLOPS`):
# per (token, head): dt + dt_bias (1), softplus (3), dA = dt*A (1), cumsum (1), the decay to the
# chunk's end exp(A_end - A_cs) (2), its product with dt (1), the output decay exp(A_cs) (1)
DT_FLOPS = VECTOR_FLOPS["bias"] + VECTOR_FLOPS["softplus"] + 1 + 1 + (1 + VECTOR_FLOPS["exp"]) + 1 + VECTOR_FLOPS["exp"]
# per (pair, head) of a diagonal block: A_cs[i] - A_cs[j] (1), exp (1), times CB (1), times dt_j (1)
DECAY_FLOPS = 1 + VECTOR_FLOPS["exp"] + 1 + 1
# per (token, channel) of step 2: x times (dt * decay) (1)
SCALE_X_FLOPS = sp.Integer(1)
# per state element and chunk of step 3: exp(ΣdA)*h (1) + s_c (1)
STATE_PASSING_FLOPS = sp.Integer(2)
# per (token, channel) of step 4: Y_off*exp(A_cs) (1), + Y_diag (1), D*x (1), + (1)
OUTPUT_FLOPS = sp.Integer(4)
# per (token, channel): SiLU(z) (4), the gate multiply (1), RMSNorm (4)
GATED_NORM_FLOPS = VECTOR_FLOPS["silu"] + VECTOR_FLOPS["gate_multiply"] + VECTOR_FLOPS["rmsnorm"]
# decode, per (sequence, head): dt + dt_bias (1), softplus (3), dt*A (1), exp (1)
STEP_DT_FLOPS = VECTOR_FLOPS["bias"] + VECTOR_FLOPS["softplus"] + 1 + VECTOR_FLOPS["exp"]
# decode, per state element: exp(dt*A)*h (1), (dt*x)*B (1), + (1)
STEP_UPDATE_FLOPS = sp.Integer(3)
# decode, per channel: dt*x (1), D*x (1), + (1)
STEP_OUTPUT_FLOPS = sp.Integer(3)


def chunk_split(seq_len: Any, chunk_size: Any) -> tuple[sp.Expr, sp.Expr, sp.Expr]:
    """``(c_f, r, c)``: the full chunks ``floor(s/Q)``, the last chunk's length ``s mod Q`` and
    the chunks in all ``ceil(s/Q)`` of a sequence of ``s`` tokens cut into chunks of ``Q``.

    >>> chunk_split(1000, 256)
    (3, 232, 4)
    >>> chunk_split(sym.seq_len, 256)[0]
    floor(s/256)
    """
    s, q = sp.sympify(seq_len), sp.sympify(chunk_size)
    return sp.floor(s / q), sp.Mod(s, q), sp.ceiling(s / q)


@dataclass(frozen=True)
class _FusedMatmul(Matmul):
    """A matmul inside another op's kernel (decode's readout inside the state update): its FLOPs
    count, its operands are that kernel's traffic."""

    @property
    def hbm_bytes(self) -> sp.Expr:
        return _ZERO


def _matmuls(name: str, batches: tuple[sp.Expr, sp.Expr], shapes: tuple[tuple, tuple],
             e: sp.Expr) -> list[Op]:
    """A chunked product over the full chunks and the last chunk (each dropped when provably
    empty); ``shapes`` are their ``(m, n, k)``."""
    ops: list[Op] = []
    for suffix, batch, (m, n, k) in zip(("", "_last"), batches, shapes):
        if sp.sympify(batch * m * n * k).is_zero:
            continue
        ops.append(Matmul(name + suffix, m=m, n=n, k=k, dtype_bytes=e, batch=batch, weight=False))
    return ops


class Mamba2Layer(Layer):
    """The Mamba-2 mixer: in_proj, causal depthwise conv, the SSD scan, gated RMSNorm, out_proj.

    Shapes default to the canonical symbols (H, P, N, G, ``k_conv``, Q); mamba_ssm's defaults are
    ``head_dim=64, state_size=128, num_groups=1, conv_kernel=4, chunk_size=256`` with
    ``num_heads = 2*hidden_size/64``. ``ssm_state_dtype`` stores the SSM state in another format
    (e.g. ``"fp32"``); ``None`` keeps it in the activations' dtype.

    One prefill of s = 2Q tokens: in_proj and out_proj plus the scan's four products.

    >>> layer = Mamba2Layer(hidden_size=64, num_heads=4, head_dim=32, state_size=16, num_groups=1,
    ...                     conv_kernel=4, chunk_size=8)
    >>> m = layer.compute_metrics(batch_size=1, seq_len=16, phase="prefill", dtype="bf16")
    >>> T, d, G, N, H, P, Q = 16, 128, 1, 16, 4, 32, 8
    >>> projections = 2 * T * 64 * (2 * d + 2 * G * N + H) + 2 * T * d * 64
    >>> scan = 2 * T * Q * (G * N + H * P) + 4 * T * H * P * N
    >>> m.matmul_flops_per_chip == projections + scan
    True
    """

    hidden_size: Dim = sym.hidden_size
    num_heads: Dim = sym.ssm_heads
    head_dim: Dim = sym.ssm_head_dim
    state_size: Dim = sym.ssm_state_size
    num_groups: Dim = sym.ssm_groups
    conv_kernel: Dim = sym.conv_kernel
    chunk_size: Dim = sym.chunk_size
    conv_bias: bool = True
    ssm_state_dtype: Optional[DataType] = None
    """The SSM state's format in the state cache; ``None``: the activations' dtype."""

    @field_validator("ssm_state_dtype", mode="before")
    @classmethod
    def _state_dtype(cls, value: Any) -> Optional[DataType]:
        return None if value is None else DataType.parse(value)

    ulysses_unmodelled: ClassVar[Optional[str]] = "a state-space scan"

    @model_validator(mode="after")
    def _check_shapes(self) -> "Mamba2Layer":
        par = self.parallelism
        # NB: a symbolic degree passes; the search runs no Ulysses degree on a model with this
        # layer (ulysses_unmodelled; symcost.plan.search.ulysses_skipped)
        if not par.megatron_sp and sp.sympify(par.sp).is_number and par.sp != 1:
            raise ConfigError(
                f'sequence_parallel must be 1 or "tp" for Mamba2Layer, got {par.sp}: Ulysses '
                f"sequence parallelism of {self.ulysses_unmodelled} is not modelled")
        if sp.sympify(par.cp).is_number and par.cp != 1:
            raise ConfigError(
                f"context_parallel must be 1 for Mamba2Layer, got {par.cp}: context parallelism of a "
                "state-space scan (passing the state between ranks) is not modelled")
        check_divides(self.num_heads, self.num_groups, "num_heads", by="num_groups")
        check_divides(self.num_heads, par.tp, "num_heads", by="tensor_parallel")
        check_divides(self.num_groups, par.tp, "num_groups", by="tensor_parallel",
                      note=" (Megatron's Mamba mixer splits the B/C groups across TP ranks)")
        return self

    # -- shapes ------------------------------------------------------------------------------

    @property
    def query_heads(self) -> sp.Expr:
        """The SSM heads: what tensor parallelism splits (the search bounds t by them)."""
        return self.num_heads

    @property
    def inner_size(self) -> sp.Expr:
        """d = H*P: the inner width (``expand * hidden_size``)."""
        return self.num_heads * self.head_dim

    def _widths(self, t: Any) -> tuple[sp.Expr, sp.Expr, sp.Expr, sp.Expr, sp.Expr]:
        """``(H_t, G_t, d_t, C_t, n_in)`` on one of ``t`` ranks: heads, groups, inner width,
        convolved channels d_t + 2G_tN and in_proj outputs 2d_t + 2G_tN + H_t."""
        heads, groups = self.num_heads / t, self.num_groups / t
        inner = heads * self.head_dim
        channels = inner + 2 * groups * self.state_size
        return heads, groups, inner, channels, channels + inner + heads

    def _params(self, t: Any) -> sp.Expr:
        """Parameters on one of ``t`` ranks (every parameter is split by heads or groups)."""
        heads, _, inner, channels, n_in = self._widths(t)
        conv = channels * self.conv_kernel + (channels if self.conv_bias else 0)
        # in_proj, conv1d, dt_bias + A_log + D, the gated norm's weight, out_proj
        return self.hidden_size * n_in + conv + 3 * heads + inner + inner * self.hidden_size

    # -- ops ---------------------------------------------------------------------------------

    def _scan_ops(self, ctx: Context) -> list[Op]:
        """The SSD chunked scan of prefill and training (the module docstring's steps 1-4)."""
        b, e, T, P, N, Q = ctx.batch_size, ctx.e, ctx.tokens, self.head_dim, self.state_size, self.chunk_size
        s = ctx.seq_len
        H_t, G_t, d_t, _, _ = self._widths(ctx.tp)
        full, r, chunks = chunk_split(s, Q)
        sq = full * Q**2 + r**2  # Σl² over the chunk lengths
        state = b * chunks * H_t * P * N  # the chunk states
        ops: list[Op] = [Vector("ssd_dt", elements=T * H_t, flops_per_element=DT_FLOPS,
                                read_bytes=T * H_t * e, write_bytes=2 * T * H_t * e)]
        # step 1: b*c_f*G_t x [(Q x N) @ (N x Q)] and the last chunk's (r x N) @ (N x r)
        ops += _matmuls("ssd_cb", (b * full * G_t, b * G_t), ((Q, Q, N), (r, r, N)), e)
        ops.append(Vector("ssd_decay", elements=b * H_t * sq, flops_per_element=DECAY_FLOPS))
        # b*c_f*H_t x [(Q x Q) @ (Q x P)] and the last chunk's (r x r) @ (r x P)
        ops += _matmuls("ssd_diag", (b * full * H_t, b * H_t), ((Q, P, Q), (r, P, r)), e)
        # step 2: per chunk and head (P x l) @ (l x N); over a sequence's chunks b*H_t x
        # [(P x s) @ (s x N)] FLOPs (NB: written as one product, its output is counted once per
        # sequence, not once per chunk: step 3 reads and writes the c chunk states)
        ops.append(Vector("ssd_scale_x", elements=T * d_t, flops_per_element=SCALE_X_FLOPS))
        ops.append(Matmul("ssd_states", m=P, n=N, k=s, dtype_bytes=e, batch=b * H_t, weight=False))
        # step 3: the scan over chunks reads the chunk states and writes the states entering them
        ops.append(Vector("ssd_state_passing", elements=state, flops_per_element=STATE_PASSING_FLOPS,
                          read_bytes=state * e, write_bytes=state * e))
        # step 4: per chunk and head (l x N) @ (N x P); over a sequence's chunks b*H_t x
        # [(s x N) @ (N x P)] FLOPs (NB: the entering state, read once per chunk, counted once)
        ops.append(Matmul("ssd_state_out", m=s, n=P, k=N, dtype_bytes=e, batch=b * H_t, weight=False))
        ops.append(Vector("ssd_output", elements=T * d_t, flops_per_element=OUTPUT_FLOPS))
        return ops

    def _step_ops(self, ctx: Context) -> list[Op]:
        """The recurrent step of decode (one token per sequence)."""
        b, e, P, N = ctx.batch_size, ctx.e, self.head_dim, self.state_size
        H_t, G_t, d_t, _, _ = self._widths(ctx.tp)
        state = b * H_t * P * N
        e_s = self._e_state(ctx)
        return [
            Vector("ssm_dt", elements=b * H_t, flops_per_element=STEP_DT_FLOPS,
                   read_bytes=b * H_t * e, write_bytes=b * H_t * e),
            # read the state, x, B and C; write the state back
            Vector("ssm_update", elements=state, flops_per_element=STEP_UPDATE_FLOPS,
                   read_bytes=state * e_s + b * (d_t + 2 * G_t * N) * e, write_bytes=state * e_s),
            # b*H_t x [(P x N) @ (N x 1)]: y = C h, inside the update kernel
            _FusedMatmul("ssm_readout", m=P, n=sp.Integer(1), k=N, dtype_bytes=e, batch=b * H_t,
                         weight=False),
            Vector("ssm_output", elements=b * d_t, flops_per_element=STEP_OUTPUT_FLOPS,
                   read_bytes=2 * b * d_t * e, write_bytes=b * d_t * e),
        ]

    def _conv(self, ctx: Context) -> Vector:
        """The causal depthwise convolution with its bias and SiLU; in decode one step that
        reads the k - 1 cached inputs and writes them back shifted."""
        T, e, k = ctx.tokens, ctx.e, self.conv_kernel
        _, _, _, C_t, _ = self._widths(ctx.tp)
        per = 2 * k + (VECTOR_FLOPS["bias"] if self.conv_bias else 0) + VECTOR_FLOPS["silu"]
        weights = C_t * (k + (1 if self.conv_bias else 0)) * e
        cache = ctx.batch_size * (k - 1) * C_t * e if ctx.decode else _ZERO
        name = "conv1d_step" if ctx.decode else "conv1d"
        return Vector(name, elements=T * C_t, flops_per_element=per,
                      read_bytes=T * C_t * e + weights + cache, write_bytes=T * C_t * e + cache)

    def forward_ops(self, ctx: Context):
        h, e, T = self.hidden_size, ctx.e, ctx.tokens
        _, _, d_t, _, n_in = self._widths(ctx.tp)
        ops: list = list(self.tp_enter(ctx, T * h * e, userbuffers=True))
        # (T x h) @ (h x (2d_t + 2G_tN + H_t)): z, x, B, C, dt; column-parallel
        ops.append(Matmul("in_proj", m=T, n=n_in, k=h, dtype_bytes=e))
        ops.append(self._conv(ctx))
        ops += self._step_ops(ctx) if ctx.decode else self._scan_ops(ctx)
        ops.append(Vector("gated_norm", elements=T * d_t, flops_per_element=GATED_NORM_FLOPS,
                          read_bytes=(2 * T * d_t + d_t) * e, write_bytes=T * d_t * e))
        # (T x d_t) @ (d_t x h): row-parallel
        ops.append(Matmul("out_proj", m=T, n=h, k=d_t, dtype_bytes=e))
        ops.extend(self.tp_exit(ctx, T * h * e, userbuffers=True))
        return ops

    # -- the layer contract ------------------------------------------------------------------

    @property
    def num_params(self) -> sp.Expr:
        """``h*(2d + 2GN + H) + (d + 2GN)*(k + 1) + 3H + d + d*h`` (``k`` instead of ``k + 1``
        without the conv bias)."""
        return self._params(1)

    def weight_memory(self, ctx: Context) -> sp.Expr:
        # every parameter is split by heads or groups: 1/t of the layer on each rank
        return self._params(ctx.tp) * ctx.e

    def saved_activations(self, ctx: Context) -> sp.Expr:
        # mamba_ssm's fused mamba_split_conv1d_scan_combined saves the in_proj output (z, x, B,
        # C, dt) and the scan's output y and recomputes the rest (conv, states, norm); in_proj
        # saves its input. The norm's fp32 rstd is a statistic, ignored (docs/conventions.md §7).
        h, e = self.hidden_size, ctx.e
        saved = ctx.sharded_tokens * h * e
        if ctx.recompute == "full":
            return saved
        _, _, d_t, _, n_in = self._widths(ctx.tp)
        return saved + ctx.tokens * (n_in + d_t) * e

    def peak_activations(self, ctx: Context) -> sp.Expr:
        # input and output, the in_proj output, the conv output, dt and dA_cumsum, y and the
        # norm's output; in prefill also the scan's C Bᵀ blocks and chunk states (the state
        # cache itself is not an activation)
        T, e, h = ctx.tokens, ctx.e, self.hidden_size
        H_t, G_t, d_t, C_t, n_in = self._widths(ctx.tp)
        elements = 2 * T * h + T * (n_in + C_t + 2 * H_t + 2 * d_t)
        if not ctx.decode:
            full, r, chunks = chunk_split(ctx.seq_len, self.chunk_size)
            elements += ctx.batch_size * (G_t * (full * self.chunk_size**2 + r**2)
                                          + chunks * H_t * self.head_dim * self.state_size)
        return elements * e

    def _e_state(self, ctx: Context) -> sp.Expr:
        """Bytes per SSM-state element: ``ssm_state_dtype``'s, else the activations' ``e``."""
        return ctx.e if self.ssm_state_dtype is None else self.ssm_state_dtype.bytes

    def kv_cache_memory(self, ctx: Context) -> sp.Expr:
        """The state cache: ``b*((k - 1)*C_t*e + H_t*P*N*e_ssm)``, constant in s."""
        if ctx.training:
            return _ZERO
        H_t, _, _, C_t, _ = self._widths(ctx.tp)
        conv = (self.conv_kernel - 1) * C_t * ctx.e
        return ctx.batch_size * (conv + H_t * self.head_dim * self.state_size * self._e_state(ctx))

