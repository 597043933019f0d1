"""Feed-forward layers: the plain two-projection MLP and the gated (SwiGLU-style) MLP.

Per chip, with T tokens on the chip (``b*s/sp``; ``b`` in decode), t-way TP and ``f_t = f/t``:

- 2 projections: ``fc1`` (T x h) @ (h x f_t), activation, ``fc2`` (T x f_t) @ (f_t x h);
  matmul FLOPs ``4*T*h*f/t``.
- 3 projections: ``gate`` and ``up`` (T x h) @ (h x f_t), activation on the gate, the gate
  multiply, ``down`` (T x f_t) @ (f_t x h); matmul FLOPs ``6*T*h*f/t``.

>>> from symcost import MLPLayer, GatedMLPLayer
>>> MLPLayer(hidden_size=4096, intermediate_size=16384).compute_metrics(
...     batch_size=1, seq_len=2048, phase="prefill", dtype="bf16").matmul_flops_per_chip
549755813888
>>> GatedMLPLayer(hidden_size=4096, intermediate_size=11008).compute_metrics(
...     batch_size=1, seq_len=2048, phase="prefill", dtype="bf16").matmul_flops_per_chip
554050781184
"""

from __future__ import annotations

from typing import Annotated, Literal

import sympy as sp
from pydantic import BeforeValidator, model_validator

from ..core import symbols as sym
from ..core._expr import check_divides
from ..core.ops import DROPOUT_MASK_BYTES, VECTOR_FLOPS, Matmul, Vector, dropout
from .base import Context, Dim, Layer

__all__ = ["MLPLayer", "GatedMLPLayer"]

# NB: transformers' names for the tanh GELU ("gelu_new", GPT-2's and GPT-J's; "gelu_pytorch_tanh",
# Gemma's) are the GELU the vector table prices (8 FLOPs per element): a layer takes them and
# stores "gelu"
_ACTIVATION_ALIASES = {"gelu_new": "gelu", "gelu_pytorch_tanh": "gelu"}


def _canonical_activation(value: object) -> object:
    return _ACTIVATION_ALIASES.get(value, value) if isinstance(value, str) else value


Activation = Annotated[Literal["gelu", "relu", "silu"], BeforeValidator(_canonical_activation)]
"""The activation: gelu (tanh form; also named gelu_new, gelu_pytorch_tanh), relu or silu."""


class MLPLayer(Layer):
    """A Megatron-style feed-forward layer: column-parallel up projection(s), row-parallel down.

    ``num_projections=2`` is the plain MLP, ``3`` the gated one (activation on the gate times
    the up projection). ``bias`` adds biases to every projection; ``dropout`` applies dropout to
    the output in training.
    """

    hidden_size: Dim = sym.hidden_size
    intermediate_size: Dim = sym.intermediate_size
    num_projections: Literal[2, 3] = 2
    activation: Activation = "gelu"
    bias: bool = False
    dropout: bool = False

    @model_validator(mode="after")
    def _check_sharding(self) -> "MLPLayer":
        check_divides(self.intermediate_size, self.parallelism.tp, "intermediate_size", by="tensor_parallel")
        return self

    @property
    def gated(self) -> bool:
        return self.num_projections == 3

    @property
    def num_params(self) -> sp.Expr:
        """``p*h*f`` weights (p projections), plus ``(p-1)*f + h`` biases with ``bias``."""
        h, f, p = self.hidden_size, self.intermediate_size, self.num_projections
        return p * h * f + ((p - 1) * f + h if self.bias else 0)

    @property
    def tp_summed_params(self) -> sp.Expr:
        """Under Megatron sequence parallelism the down projection's ``h`` bias, added on each
        rank's ``T/t`` tokens (``RowParallelLinear`` marks its bias ``sequence_parallel``).

        GPT-3 175B's MLP (h 12288, f 49152, biases) under TP 8 + SP: 12,288; without SP, nothing.

        >>> MLPLayer(hidden_size=12288, intermediate_size=49152, bias=True,
        ...          parallelism={"tensor_parallel": 8, "sequence_parallel": "tp"}).tp_summed_params
        12288
        >>> MLPLayer(hidden_size=12288, intermediate_size=49152, bias=True,
        ...          parallelism={"tensor_parallel": 8}).tp_summed_params
        0
        """
        return self.hidden_size if self.bias and self.parallelism.megatron_sp else sp.Integer(0)

    def forward_ops(self, ctx: Context):
        h, e, T = self.hidden_size, ctx.e, ctx.tokens
        f_t = self.intermediate_size / ctx.tp
        ops = list(self.tp_enter(ctx, T * h * e, userbuffers=True))
        ops += ffn_ops("", rows=T, hidden=h, width=f_t, dtype_bytes=e, gated=self.gated,
                       activation=self.activation, bias=self.bias)
        # partial sums leave through the TP collective
        ops.extend(self.tp_exit(ctx, T * h * e, userbuffers=True))
        T_out = ctx.sharded_tokens
        if self.bias:
            # NB: the row-parallel bias is added once, after the reduction, on every TP rank
            ops.append(Vector("down_bias", elements=T_out * h, flops_per_element=VECTOR_FLOPS["bias"],
                              read_bytes=(T_out + 1) * h * e, write_bytes=T_out * h * e))
        if self.dropout and ctx.training:
            ops.append(dropout("dropout", T_out * h, e))
        return ops

    def weight_memory(self, ctx: Context) -> sp.Expr:
        h, f_t, p = self.hidden_size, self.intermediate_size / ctx.tp, self.num_projections
        params = p * h * f_t
        if self.bias:
            # column biases are sharded (f/t each); the row bias h is replicated
            params += (p - 1) * f_t + h
        return params * ctx.e

    def saved_activations(self, ctx: Context) -> sp.Expr:
        # Korthikanti et al. 2022, section 4.2: the MLP saves its input (2sbh), the activation's
        # input and output (8sbh each at f = 4h) and a dropout mask (sbh): 19sbh at e = 2.
        # NB: the gated MLP as Megatron-Core runs it: fc1's output (gate and up, 2 x 2sbf), the
        # fused SwiGLU's only saved tensor (megatron/core/fusions/fused_bias_swiglu.py,
        # SwiGLUFunction.forward: ctx.save_for_backward(input); the backward recomputes silu),
        # and the product, fc2's input (2sbf): 2sbh + 6sbf at e = 2, not eager PyTorch's 8sbf
        # (which also keeps silu(gate)). Both: (p - 1) wide tensors of fc1's output and fc2's input.
        # Under Transformer Engine's FP8 training (ctx.gemm_bytes) the GEMMs' inputs are saved as
        # their FP8 casts (fc1's input; fc2's input, the product or the activation output): the
        # (p - 1) wide tensors at e and one at the GEMM's bytes.
        h, e = self.hidden_size, ctx.e
        g = ctx.saved_gemm_input_bytes
        input_bytes = ctx.sharded_tokens * h * g  # saved sequence-sharded under Megatron SP
        if ctx.recompute == "full":
            return input_bytes
        wide = ctx.tokens * self.intermediate_size / ctx.tp
        saved = input_bytes + wide * ((self.num_projections - 1) * e + g)
        if self.dropout:
            saved += DROPOUT_MASK_BYTES * ctx.sharded_tokens * h
        return saved

    def peak_activations(self, ctx: Context) -> sp.Expr:
        # input, output and the widest intermediates: fc1's output (the activation in place), or
        # the gate and up outputs (the product written in place)
        T, e = ctx.tokens, ctx.e
        wide = T * self.intermediate_size / ctx.tp * e
        return 2 * T * self.hidden_size * e + (2 if self.gated else 1) * wide


class GatedMLPLayer(MLPLayer):
    """The gated (SwiGLU) MLP of Llama-style models: :class:`MLPLayer` with 3 projections and
    SiLU by default."""

    num_projections: Literal[2, 3] = 3
    activation: Activation = "silu"


def ffn_ops(prefix: str, *, rows: sp.Expr, hidden: sp.Expr, width: sp.Expr, dtype_bytes: sp.Expr,
            gated: bool, activation: str, batch: sp.Expr = 1, bias: bool = False,
            down_bias: bool = False, grouped: bool = False) -> list:
    """One feed-forward pass on a chip: ``batch`` weight sets (experts), each applied to ``rows``
    tokens, of per-chip width ``width`` — up projection(s) ``(rows x h) @ (h x width)``
    (column-parallel; with ``bias``), the activation, the gate multiply when ``gated``, and the
    row-parallel down projection ``(rows x width) @ (width x h)`` (its partial sums unreduced;
    with ``down_bias`` its bias added per row, as each expert's is before the routing weight).
    ``grouped``: the projections run as grouped GEMMs (MoE experts, one kernel over all of them,
    however many are local). Op names are ``prefix.name`` (just ``name`` without a prefix)."""
    e, h = dtype_bytes, hidden

    def name(op: str) -> str:
        return f"{prefix}.{op}" if prefix else op

    ops: list = [Matmul(name(up), m=rows, n=width, k=h, dtype_bytes=e, batch=batch, bias=bias, grouped=grouped)
                 for up in (("gate", "up") if gated else ("fc1",))]
    wide = batch * rows * width
    ops.append(Vector(name(activation), elements=wide, flops_per_element=VECTOR_FLOPS[activation],
                      read_bytes=wide * e, write_bytes=wide * e))
    if gated:
        # act(gate) * up: read two, write one
        ops.append(Vector(name("gate_multiply"), elements=wide, flops_per_element=VECTOR_FLOPS["gate_multiply"],
                          read_bytes=2 * wide * e, write_bytes=wide * e))
    ops.append(Matmul(name("down" if gated else "fc2"), m=rows, n=h, k=width, dtype_bytes=e, batch=batch,
                      bias=down_bias, grouped=grouped))
    return ops
