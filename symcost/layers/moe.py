"""The mixture-of-experts feed-forward layer: a router, routed expert FFNs, shared experts.

Per chip, with T tokens on the chip (``b*s/sp``; ``b`` in decode), E experts, top-k routing,
t-way TP (expert widths split: ``f_t = f_e/t``), n_ep-way expert parallelism (E/n_ep experts per chip)
and p = 3 projections (gated) or 2:

- ``router``: (T x h) @ (h x E), replicated (neither TP nor EP shards it); softmax and top-k
  over the T x E logits;
- dispatch: the chip's P = T*k token-expert pairs (``capacity_factor * T*k`` with capacity
  padding) go out in an all-to-all over the ``ep`` axis; with uniform routing each chip receives
  P pairs for its own E/n_ep experts, so P does not depend on n_ep;
- routed experts: the gated MLP on every pair, matmul FLOPs ``2*p*P*h*f_e/t``;
- shared experts: a dense gated MLP of width ``num_shared_experts * f_s`` on all T tokens,
  matmul FLOPs ``2*p*T*h*n_s*f_s/t``;
- combine: the expert outputs come back in a second all-to-all and are summed with their
  routing weights; the TP partial sums of routed and shared experts leave together through one
  all-reduce (docs/conventions.md §12).

Prefill matmul FLOPs per chip: ``2*T*h*E + 2*p*T*k*h*f_e/t + 2*p*T*h*n_s*f_s/t``.

Megatron-Core's expert grid (``expert_tensor_parallel`` given, ``t_e`` = its degree): the routed
experts leave the TP group. Each chip routes its own ``T_in`` tokens (``T/t`` under Megatron
sequence parallelism, ``T`` with ``t = 1``); dispatch is an all-to-all over EP of the ``T_in*k``
pairs (``capacity_factor`` times with padding), then an all-gather over the expert-TP group
(``t_e`` consecutive ranks), so a chip computes ``P = t_e*T_in*k`` pairs at width ``f_e/t_e``;
the outputs are reduce-scattered over the expert-TP group and all-to-all'd back, and the combine
is on the chip's ``T_in`` tokens (NVIDIA/Megatron-LM megatron/core/transformer/moe/token_dispatcher.py,
``MoEAlltoAllTokenDispatcher``: its ``tp_group`` is the expert-TP group). Shared experts stay a
TP-parallel dense MLP on all ``T`` tokens. At ``t = 1`` and ``t_e = 1`` this is the default flow.

Memory per chip (e bytes per element): weights ``(E/n_ep * p*h*f_e/t + n_s*p*h*f_s/t + h*E)*e``
(the router is replicated); training saves the input, the fp32 router
probabilities ``4*T*E``, the dispatched tokens ``P*h*e``, ``3*P*f_e/t*e`` per the gated MLP
(fc1's output and the product, Megatron-Core's fused SwiGLU, which also applies the routing
weights; 2 without gating), and the shared experts like a gated MLP (the combine, an unweighted
sum, saves nothing);
``recompute="full"`` keeps only the input. No KV cache.

>>> from symcost.layers.moe import MoELayer
>>> moe = MoELayer(hidden_size=4096, expert_intermediate_size=14336, num_experts=8, top_k=2)
>>> m = moe.compute_metrics(batch_size=1, seq_len=4096, phase="prefill", dtype="bf16")
>>> m.matmul_flops_per_chip == 2*4096*4096*8 + 2 * 3 * (2*4096*4096*14336)   # Mixtral 8x7B
True
>>> moe.num_params                                           # 8*3*4096*14336 + 4096*8
1409318912
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, Optional

import sympy as sp
from pydantic import BeforeValidator, ValidationInfo, model_validator

from ..core import symbols as sym
from ..core._expr import as_expr, check_divides
from ..core.ops import VECTOR_FLOPS, Collective, ExpertMapSort, GroupedInputQuantize, HostSync, Matmul, Op, Vector
from ..errors import ConfigError
from .base import Context, Dim, Layer
from .mlp import Activation, ffn_ops

__all__ = ["MoELayer", "ROUTER_BYTES", "COMBINE_FLOPS", "expert_map_sort", "fused_sort_limit", "input_quantize"]

# NB: the router's probabilities are kept in fp32 whatever the model dtype (HF Mixtral:
# ``F.softmax(router_logits, dim=1, dtype=torch.float)``; Megatron-LM computes the router's
# softmax in fp32), so they are stored, saved for backward and read at 4 bytes per element.
ROUTER_BYTES = sp.Integer(4)

# NB: the weighted combine scales each of a token's k expert outputs by its routing weight (one
# multiply, priced as the gate multiply) and accumulates it into the output (one add, priced as a
# bias add): 2 FLOPs per element of the T x k x h routed outputs. The accumulation starts from
# the shared experts' output (or from zero without shared experts), so adding it costs nothing more.
COMBINE_FLOPS = VECTOR_FLOPS["gate_multiply"] + VECTOR_FLOPS["bias"]
# the shared experts' gate (Qwen2-MoE): sigmoid(x) = 1/(1 + exp(-x)): exp (1), + (1), / (1) -> 3;
# its T gate values, like the router's indices, are not counted among the saved activations
SIGMOID_FLOPS = sp.Integer(3)

_ZERO = sp.Integer(0)
_ONE = sp.Integer(1)


def _count(value: Any, info: ValidationInfo) -> sp.Expr:
    """A count that may be zero: a non-negative integer or an expression not provably otherwise."""
    expr = as_expr(value, str(info.field_name))
    if expr.is_negative or expr.is_integer is False:
        raise ConfigError(f"{info.field_name} must be a non-negative integer, got {expr}")
    return expr


def _capacity(value: Any, info: ValidationInfo) -> Optional[sp.Expr]:
    """``None`` (dropless) or an exact positive factor; floats are refused by ``as_expr``."""
    if value is None:
        return None
    expr = as_expr(value, str(info.field_name))
    if expr.is_positive is False or (expr.is_number and expr.is_zero):
        raise ConfigError(f"{info.field_name} must be positive, got {expr}")
    return expr


def _imbalance(value: Any, info: ValidationInfo) -> sp.Expr:
    """An exact load ratio of at least 1 (or an expression not provably below it)."""
    expr = as_expr(value, str(info.field_name))
    if (expr - 1).is_negative:
        raise ConfigError(f"{info.field_name} must be at least 1 (the busiest rank's pairs over the mean), got {expr}")
    return expr


Count = Annotated[Any, BeforeValidator(_count)]
CapacityFactor = Annotated[Any, BeforeValidator(_capacity)]
Imbalance = Annotated[Any, BeforeValidator(_imbalance)]


def input_quantize(elements: sp.Expr, e: sp.Expr) -> list[Op]:
    """The experts' input cast once to their narrow format (``e`` below 2 bytes), before the
    permutation, as a fused MoE engine runs it (:class:`~symcost.core.ops.GroupedInputQuantize`:
    read 2, write ``e`` bytes per element; timed only under a fused grouped-GEMM engine); none
    at 16 bits; with a symbolic ``e`` its elements are ``Piecewise`` in ``e < 2`` (0 once a
    16-bit dtype binds it, so the bound metrics equal the numeric ones).

    >>> [op.hbm_bytes for op in input_quantize(sp.Integer(4096), sp.Integer(1))], input_quantize(sp.Integer(4096), 2)
    ([12288], [])
    """
    e = sp.sympify(e)
    if e.is_number and e >= 2:
        return []
    narrow = sp.Integer(1) if e.is_number else sp.Piecewise((1, e < 2), (0, True))
    elements = elements * narrow
    return [GroupedInputQuantize("experts_quantize", elements=elements, read_bytes=2 * elements,
                                 write_bytes=e * elements, narrow=narrow)]


FUSED_SORT_TOKENS = 256
"""Most tokens TensorRT-LLM's fused MoE sorts in its one-kernel prologue (``num_tokens > 256`` "is
not supported for fused moe prologues", ``fusedBuildExpertMapsSortFirstTokenBlockSize`` in
cpp/tensorrt_llm/kernels/cutlass_kernels/moe_gemm/moe_kernels.cu); above, three kernels
(:func:`~symcost.hardware.kernels.expert_map_sort`)."""

FUSED_SORT_TOP_K = frozenset({1, 2, 4, 6, 8})
"""The top-k values the one-kernel prologue is instantiated for (the same file's
``fusedBuildExpertMapsSortFirstTokenBlockSize`` switch: "Top-K value %d does not have supported fused
moe prologues" for any other)."""

FUSED_SORT_EXPERTS = 510
"""Most experts per rank the one-kernel prologue sorts: its radix rank holds ``[0, E/ep + 1]`` in
``floor(log2(E/ep + 1)) + 1 <= 9`` bits (``fusedBuildExpertMapsSortFirstToken``), so ``E/ep + 1 < 512``."""


def fused_sort_limit(top_k: Any, experts_per_rank: Any) -> sp.Expr:
    """The token count up to which a fused MoE sorts in one kernel: :data:`FUSED_SORT_TOKENS`
    for a top-k in :data:`FUSED_SORT_TOP_K` and at most :data:`FUSED_SORT_EXPERTS` experts per rank,
    else 0 (always three kernels):
    ``L = Piecewise((256, k in {1, 2, 4, 6, 8} and floor(E/ep) <= 510), (0, True))``, with the experts
    per rank an integer division as TensorRT-LLM's (``num_experts / ep_size`` on ints). A symbolic
    top-k or expert count keeps the rule, which collapses to the numeric answer on substitution; a
    non-integer top-k is a one-line :class:`~symcost.errors.ConfigError`.

    >>> fused_sort_limit(2, 8), fused_sort_limit(10, 64), fused_sort_limit(8, 512)
    (256, 0, 0)
    >>> ep = sp.Symbol("ep", positive=True, integer=True)
    >>> [fused_sort_limit(8, 512 / ep).xreplace({ep: n}) for n in (1, 2)]
    [0, 256]
    """
    k, n = sp.sympify(top_k), sp.sympify(experts_per_rank)
    if k.is_number and not k.is_integer:
        raise ConfigError(f"top_k must be a whole number of experts per token, got {k}")
    if k.is_number and n.is_number:  # the rule at numbers, without building the Piecewise (the fits call it per row)
        whole = int(k) in FUSED_SORT_TOP_K and sp.floor(n) <= FUSED_SORT_EXPERTS
        return sp.Integer(FUSED_SORT_TOKENS) if whole else _ZERO
    fused = sp.And(sp.Or(*(sp.Eq(k, v) for v in sorted(FUSED_SORT_TOP_K))), sp.floor(n) <= FUSED_SORT_EXPERTS)
    return sp.Piecewise((sp.Integer(FUSED_SORT_TOKENS), fused), (_ZERO, True))


def expert_map_sort(tokens: sp.Expr, top_k: Any, num_experts: Any, ep: Any) -> ExpertMapSort:
    """The fused MoE's expert-map sort over ``tokens`` rows (:class:`~symcost.core.ops.ExpertMapSort`,
    its one-kernel limit from :func:`fused_sort_limit` with ``num_experts / ep`` experts per rank).

    >>> expert_map_sort(sp.Integer(320), 2, 8, 1).fused_limit
    256
    """
    return ExpertMapSort("expert_map_sort", tokens=tokens, fused_limit=fused_sort_limit(top_k, num_experts / ep),
                         top_k=sp.sympify(top_k), num_experts=sp.sympify(num_experts))


class MoELayer(Layer):
    """A mixture-of-experts FFN: a replicated router picks ``top_k`` of ``num_experts`` expert
    MLPs per token; ``num_shared_experts`` dense MLPs see every token.

    Experts are gated MLPs (3 projections, SiLU by default; ``gated=False`` gives 2) of width
    ``expert_intermediate_size``; shared experts have width ``shared_intermediate_size``
    (default: the expert width). ``capacity_factor`` (an exact number; ``None`` = dropless)
    pads each expert's buffer to ``capacity_factor * T*k/E`` tokens and the padded compute
    counts. ``expert_parallel`` must divide ``num_experts``; TP splits every expert width.

    >>> from symcost import symbols as S
    >>> b, s, h, f, t = S.batch_size, S.seq_len, S.hidden_size, S.intermediate_size, S.tp
    >>> m = MoELayer(num_experts=8, top_k=2, parallelism={"tensor_parallel": t}
    ...              ).compute_metrics(phase="prefill")
    >>> router, experts = 2*b*s*h*8, 2 * 3 * (2*b*s*h*f/t)    # k = 2 experts, 3 matmuls each
    >>> sp.cancel(m.matmul_flops_per_chip - (router + experts))
    0
    """

    hidden_size: Dim = sym.hidden_size
    expert_intermediate_size: Dim = sym.intermediate_size
    num_experts: Dim
    top_k: Dim
    num_shared_experts: Count = _ZERO
    shared_intermediate_size: Optional[Dim] = None
    capacity_factor: CapacityFactor = None
    routing_imbalance: Imbalance = _ONE
    """Routing imbalance ``iota``, dropless only: the busiest expert-parallel rank computes ``iota``
    times the balanced ``T*k/n_ep`` token-expert pairs, and sets the layer's time (1: balanced;
    capped at ``n_ep``, every pair on one rank, so 1 at EP 1; with ``capacity_factor`` every
    expert's buffer has the same size, so setting both is an error). AIConfigurator's power-law
    routing (exponent 1.01, 128 experts, EP 8, 16 k tokens) gives about 1.8
    (symcost.hardware.fit.families.power_law_share)."""
    dispatcher: Literal["alltoall", "flex"] = "alltoall"
    """How tokens cross the EP group: ``"alltoall"`` sends one row per (token, expert) pair
    (Megatron-Core's ``MoEAlltoAllTokenDispatcher`` permutes by expert, then all-to-all's the
    pairs); ``"flex"`` sends each token once to each rank holding one of its experts (Megatron-Core's
    ``MoEFlexTokenDispatcher`` over DeepEP or HybridEP: DeepEP's ``Buffer.get_dispatch_layout``
    returns ``is_token_in_rank``, "whether a token be sent to a rank", deepseek-ai/DeepEP
    ``deep_ep/buffer.py``), so the dispatch and combine move ``T_in * D`` rows with ``D``
    :meth:`ranks_per_token`. Dropless only (capacity padding is the all-to-all dispatcher's)."""
    a2a_overlap: bool = False
    """Training: the EP dispatch and combine all-to-alls run behind the other micro-batch's compute
    (Megatron-Core's ``overlap_moe_expert_parallel_comm``, Megatron-Bridge's ``moe_a2a_overlap``:
    the combined 1F1B schedule pairs one micro-batch's forward with another's backward and issues
    each one's all-to-alls while the other computes, megatron/core/pipeline_parallel/combined_1f1b.py),
    so the layer takes ``max(ops, all-to-alls) + other communication`` (the all-to-alls are
    :attr:`~symcost.core.ops.Collective.hidden`). NB: per layer and in steady state; the schedule's
    first forward and last backward have no partner, neglected beside ``m`` micro-batches."""
    cuda_graph: bool = False
    """Training: the whole layer is replayed from a CUDA graph (Megatron-Core's whole-layer capture,
    NeMo 25.09's ``enable_cuda_graph``), so the host never paces it and it exposes no host time (no
    ``host.sync`` op). Needs ``capacity_factor``: a graph replays fixed shapes, and a dropless
    layer's follow the routing."""
    activation: Activation = "silu"
    gated: bool = True
    router_bias: bool = False
    """A per-expert bias on the router's scores (DeepSeek-V3's ``e_score_correction_bias``,
    gpt-oss's router bias): ``E`` parameters, replicated; its ``T*E`` adds are folded into the
    softmax-and-top-k pass's 5 FLOPs per logit, as the top-k selection is."""
    router_bias_buffer: bool = False
    """The router bias is a buffer, not a trained parameter (DeepSeek-V3's
    ``e_score_correction_bias``: HF modeling_deepseek_v3.py ``register_buffer``; Megatron-Core
    transformer/moe/router.py ``expert_bias``, a buffer moved by its own rule, not the optimizer):
    still ``E`` weights held, but no gradient, so not in :attr:`tp_summed_params`; the training
    step leaves its ``E`` (:attr:`buffer_params`) out of the gradients, the optimizer states and
    the data-parallel sync, and all-reduces the fp32 ``tokens_per_expert`` counts that move it
    once per step (:func:`~symcost.plan.training.assemble_training`). False: trained (gpt-oss's
    ``nn.Linear`` bias, Megatron-Core's ``add_bias_linear``)."""
    expert_bias: bool = False
    """Biases on every expert's projections (gpt-oss's ``gate_up_proj_bias`` and
    ``down_proj_bias``): ``(p-1)*f_e + h`` per expert, the up biases split by TP, the down bias
    whole on each TP rank; one add per element of each projection's output, per pair (the
    down bias before the routing weight scales it)."""
    shared_gate: bool = False
    """A sigmoid gate on the shared experts' output (Qwen2-MoE's ``shared_expert_gate``): ``h``
    weights, replicated; per token a (1 x h) @ (h x 1) matmul and a sigmoid, then a scale of the
    shared output (T x h)."""

    @model_validator(mode="after")
    def _check_shapes(self) -> "MoELayer":
        E, k = self.num_experts, self.top_k
        if (k - E).is_positive:
            raise ConfigError(f"top_k must not exceed num_experts (got {k} and {E})")
        if self.capacity_factor is not None and self.routing_imbalance != 1:
            raise ConfigError("routing_imbalance: applies to dropless routing only; capacity_factor pads every "
                              f"expert's buffer to the same size (got {self.routing_imbalance} with capacity_factor "
                              f"{self.capacity_factor})")
        check_divides(E, self.parallelism.ep, "num_experts", by="expert_parallel")
        if self.parallelism.expert_grid:
            check_divides(self.expert_intermediate_size, self.parallelism.etp, "expert_intermediate_size",
                          by="expert_tensor_parallel")
        else:
            check_divides(self.expert_intermediate_size, self.parallelism.tp, "expert_intermediate_size",
                          by="tensor_parallel")
        if self.num_shared_experts != 0:
            check_divides(self.f_shared, self.parallelism.tp, "shared_intermediate_size", by="tensor_parallel")
        if self.cuda_graph and self.capacity_factor is None:
            raise ConfigError("cuda_graph: a whole-layer CUDA graph replays fixed shapes; a dropless layer's follow "
                              "the routing, so it needs capacity_factor (token drop, padded to capacity)")
        if self.dispatcher == "flex" and self.capacity_factor is not None:
            raise ConfigError("dispatcher='flex' is dropless: capacity_factor pads the all-to-all dispatcher's "
                              "buffers (Megatron-Core's moe_pad_expert_input_to_capacity); use dispatcher='alltoall'")
        return self

    def ranks_per_token(self, ep: Any) -> sp.Expr:
        """``D``: the EP ranks (of ``ep``, ``E/ep`` experts each) a token's ``k`` experts land on, on
        average under uniform routing: ``ep * (1 - C(E - E/ep, k) / C(E, k))`` (a rank misses all
        ``k`` draws without replacement with probability ``C(E - E/ep, k) / C(E, k)``).

        >>> MoELayer(num_experts=8, top_k=2).ranks_per_token(2)    # 2 (1 - C(4,2)/C(8,2)) = 2 (1 - 6/28)
        11/7
        """
        E, k = self.num_experts, self.top_k
        return ep * (1 - sp.binomial(E - E / ep, k) / sp.binomial(E, k))

    # -- derived sizes -----------------------------------------------------------------------

    @property
    def f_shared(self) -> sp.Expr:
        """Width of one shared expert: ``shared_intermediate_size``, else the expert width."""
        if self.shared_intermediate_size is None:
            return self.expert_intermediate_size
        return self.shared_intermediate_size

    @property
    def num_projections(self) -> int:
        """3 for gated experts, 2 otherwise."""
        return 3 if self.gated else 2

    def _routed_tokens(self, ctx: Context) -> sp.Expr:
        """Tokens one chip routes: ``T``; on the expert grid the chip's own shard ``T_in``."""
        return ctx.sharded_tokens if ctx.parallelism.expert_grid else ctx.tokens

    def _sent(self, ctx: Context) -> sp.Expr:
        """Token-expert pairs one chip dispatches: ``T_in*k``, times ``capacity_factor`` if given."""
        pairs = self._routed_tokens(ctx) * self.top_k
        return pairs if self.capacity_factor is None else self.capacity_factor * pairs

    def _pairs(self, ctx: Context) -> sp.Expr:
        """Token-expert pairs one chip computes: ``T*k``, times ``capacity_factor`` if given; on
        the expert grid ``t_e*T_in*k`` (the expert-TP group's pairs gathered).

        With uniform routing the n_ep chips of an EP group send n_ep*T*k pairs to E experts,
        E/n_ep of them on each chip: T*k per chip, whatever n_ep. NB: capacity is not rounded to whole tokens
        (real routers round ``capacity_factor * T*k/E`` up per expert).
        """
        sent = self._sent(ctx)
        return ctx.parallelism.etp * sent if ctx.parallelism.expert_grid else sent

    def _busiest(self) -> sp.Expr:
        """The busiest rank's pairs over the balanced ones: ``min(routing_imbalance, n_ep)`` (one
        rank takes at most every pair, so at EP 1 it is 1), dropless; 1 with capacity padding
        (refused with an imbalance)."""
        if self.capacity_factor is not None or self.routing_imbalance == 1:
            return _ONE
        return sp.Min(self.routing_imbalance, self.parallelism.ep)

    def _expert_tp(self, ctx: Context) -> sp.Expr:
        """The degree splitting each routed expert's width: ``t``, or ``t_e`` on the expert grid."""
        return ctx.parallelism.etp

    def _active_experts(self, ctx: Context) -> sp.Expr:
        """Local experts that run (and whose weights are read): all E/n_ep with capacity padding;
        dropless, ``min(E/n_ep, T*k)``: balanced routing spreads fewer pairs than local experts
        over distinct experts (decode at batch 1 reads only k experts' weights)."""
        local = self.num_experts / ctx.parallelism.ep
        if self.capacity_factor is not None:
            return local
        return sp.Min(local, ctx.tokens * self.top_k)

    # -- the layer contract ------------------------------------------------------------------

    @property
    def num_params(self) -> sp.Expr:
        """``E*p*h*f_e`` expert weights (plus ``E*((p-1)*f_e + h)`` with ``expert_bias``),
        ``n_s*p*h*f_s`` shared-expert weights and ``h*E`` router weights (plus ``E`` with
        ``router_bias``)."""
        h, p = self.hidden_size, self.num_projections
        return (self.num_experts * (p * h * self.expert_intermediate_size + self._expert_biases(1))
                + self.num_shared_experts * p * h * self.f_shared
                + (h + (1 if self.router_bias else 0)) * self.num_experts + self._gate_params)

    def _expert_biases(self, tp: sp.Expr) -> sp.Expr:
        """One expert's biases on a chip of a ``tp``-way group: ``(p-1)*f_e/tp + h``."""
        if not self.expert_bias:
            return _ZERO
        return (self.num_projections - 1) * self.expert_intermediate_size / tp + self.hidden_size

    @property
    def _gate_params(self) -> sp.Expr:
        """The shared experts' gate: ``h`` weights with ``shared_gate``."""
        return self.hidden_size if self.shared_gate else _ZERO

    def _ffn(self, prefix: str, batch: sp.Expr, rows: sp.Expr, width: sp.Expr,
             e: sp.Expr, bias: bool = False, grouped: bool = False) -> list[Op]:
        """One (grouped) MLP: ``batch`` weight sets, each applied to ``rows`` tokens, of
        per-chip width ``width`` (biases on every projection with ``bias``)."""
        return ffn_ops(prefix, rows=rows, hidden=self.hidden_size, width=width, dtype_bytes=e,
                       gated=self.gated, activation=self.activation, batch=batch, bias=bias, down_bias=bias,
                       grouped=grouped)

    def _wire(self, ctx: Context) -> sp.Expr:
        """Bytes of one chip's dispatch (and combine) buffer: its ``_sent`` pairs, or with the flex
        dispatcher each routed token once per destination rank, ``T_in * D`` rows."""
        rows = self._sent(ctx) if self.dispatcher == "alltoall" else (
            self._routed_tokens(ctx) * self.ranks_per_token(ctx.parallelism.ep))
        return rows * self.hidden_size * ctx.e

    def _all_to_all(self, ctx: Context, payload: sp.Expr) -> list[Collective]:
        # NB: EP groups are laid out outside TP, across data-parallel ranks (Megatron-LM's MoE
        # parallel folding: expert rank order tp-ep-dp), so an EP group's members are t apart
        # and span t*n_ep chips; that span picks the link tier.
        ep = ctx.parallelism.ep
        if ep == 1:
            return []
        # the flex dispatcher's internode kernels cross the network once per node (Collective.hierarchical)
        hierarchical = None if self.dispatcher == "alltoall" else (
            self._routed_tokens(ctx) * self.hidden_size * ctx.e, self.num_experts, self.top_k)
        return [Collective("all_to_all", "ep", ep, payload, span=ctx.parallelism.etp * ep,
                           hidden=self.a2a_overlap and ctx.training, hierarchical=hierarchical)]

    def check(self, ctx: Context) -> None:
        super().check(ctx)
        if ctx.parallelism.expert_grid and ctx.tp != 1 and not ctx.megatron_sp:
            raise ConfigError(
                "expert_tensor_parallel with tensor_parallel > 1 needs sequence_parallel=\"tp\" (and a phase with "
                "a token axis: training or prefill): the expert grid routes each TP rank's sequence shard "
                "(Megatron-Core: \"When using expert parallelism and tensor parallelism for training, sequence "
                "parallelism must be used\")")

    def forward_ops(self, ctx: Context):
        if ctx.parallelism.expert_grid:
            return self._grid_forward_ops(ctx)
        h, E, k, e, T = self.hidden_size, self.num_experts, self.top_k, ctx.e, ctx.tokens
        P = self._pairs(ctx)
        # NB: plain NCCL, not TE userbuffers: Megatron-Core's token dispatcher gathers the sequence
        # shards (gather_from_sequence_parallel_region) and reduce-scatters them back
        ops: list = list(self.tp_enter(ctx, T * h * e, userbuffers=False))
        # (T x h) @ (h x E): replicated on every TP and EP rank
        ops.append(Matmul("router", m=T, n=E, k=h, dtype_bytes=e))
        # NB: top-k selection (comparisons) is folded into the softmax's 5 FLOPs per logit,
        # whose max pass already scans every logit; its k weights and indices per token are
        # neglected in the bytes (k/E of the probabilities).
        ops.append(Vector("router_softmax_topk", elements=T * E,
                          flops_per_element=VECTOR_FLOPS["softmax"],
                          read_bytes=T * E * e, write_bytes=T * E * ROUTER_BYTES))
        ops.extend(self._sync(ctx))
        ops.extend(input_quantize(T * h, e))
        # NB: every EP rank's runMoe sorts the rows of all ep ranks (TensorRT-LLM's fused_moe_cutlass.py
        # all-gathers the inputs and token_selected_experts over the EP ranks under attention DP; the
        # all-to-all layout sorts the ~ep*T rows it receives): ep*T rows, not the rank's own T
        ops.append(expert_map_sort(T * ctx.parallelism.ep, k, E, ctx.parallelism.ep))
        # permute: read each token once, write the (padded) dispatch buffer of P rows
        ops.append(Vector("dispatch_permute", elements=P * h, read_bytes=T * h * e,
                          write_bytes=P * h * e))
        ops.extend(self._all_to_all(ctx, self._wire(ctx)))  # dispatch: the chip's P x h buffer
        if self.num_shared_experts != 0:
            # the shared experts as one dense MLP of width n_s*f_s (DeepSeek's implementation);
            # it overlaps the dispatch in practice
            ops.extend(self._ffn("shared", sp.Integer(1), T,
                                 self.num_shared_experts * self.f_shared / ctx.tp, e))
        if self.shared_gate:
            ops.extend(self._shared_gate_ops(T, e))
        active = self._active_experts(ctx)
        # grouped GEMMs: ``active`` local experts with P/active pairs each, on the busiest rank
        # (NB: the imbalance scales the experts' rows only; the dispatch buffers stay T*k)
        ops.extend(self._ffn("experts", active, self._busiest() * P / active,
                             self.expert_intermediate_size / ctx.tp, e, bias=self.expert_bias, grouped=True))
        ops.extend(self._all_to_all(ctx, self._wire(ctx)))  # combine: the same buffer back
        # gather each token's k outputs (padding slots are dropped), scale by the routing
        # weights (fp32) and accumulate, onto the shared experts' output when there is one
        shared_read = T * h * e if self.num_shared_experts != 0 else _ZERO
        ops.append(Vector("combine", elements=T * k * h, flops_per_element=COMBINE_FLOPS,
                          read_bytes=T * k * h * e + T * k * ROUTER_BYTES + shared_read,
                          write_bytes=T * h * e))
        # routed and shared partial sums leave through one TP collective
        ops.extend(self.tp_exit(ctx, T * h * e, userbuffers=False))
        return ops

    def _sync(self, ctx: Context) -> list[Op]:
        """Training, run eagerly: the host time the layer's forward exposes, one ``host.sync`` op
        (the engine's ``moe_sync_time``). Dropless, ``dispatch_sync``: the dispatcher's
        device-to-host sync of the routing counts (Megatron-Core's all-to-all dispatcher,
        ``_maybe_dtoh_and_synchronize``; the flex dispatcher's and TEGroupedMLP's
        ``tokens_per_expert.tolist()``). Padded to capacity, ``launch_bound``: no sync (the counts are
        known on the host, core_v0.14.0 token_dispatcher.py ``preprocess``), but the same eager
        launches of many small kernels pace the GPU (Megatron-Core's MoE README, "CPU Overhead
        Bottleneck"); the published token-drop runs lose as much as the dropless ones (issue 22).
        None with :attr:`cuda_graph` (whole layers replayed) and outside training."""
        if not ctx.training or self.cuda_graph:
            return []
        return [HostSync("dispatch_sync" if self.capacity_factor is None else "launch_bound")]

    def _grid_forward_ops(self, ctx: Context) -> list:
        """The forward on Megatron-Core's expert grid (module docstring): route the chip's own
        ``T_in`` tokens, all-to-all over EP, all-gather over the expert-TP group, experts at
        ``f_e/t_e``, and back; shared experts as a TP-parallel dense MLP on all ``T`` tokens."""
        h, E, k, e, T = self.hidden_size, self.num_experts, self.top_k, ctx.e, ctx.tokens
        t_in, sent, P, etp = self._routed_tokens(ctx), self._sent(ctx), self._pairs(ctx), ctx.parallelism.etp
        ep = ctx.parallelism.ep
        wire = ctx.wire_bytes
        ops: list = [Matmul("router", m=t_in, n=E, k=h, dtype_bytes=e),
                     Vector("router_softmax_topk", elements=t_in * E, flops_per_element=VECTOR_FLOPS["softmax"],
                            read_bytes=t_in * E * e, write_bytes=t_in * E * ROUTER_BYTES),
                     *self._sync(ctx), *input_quantize(t_in * h, e), expert_map_sort(t_in * ep, k, E, ep),
                     Vector("dispatch_permute", elements=sent * h, read_bytes=t_in * h * e, write_bytes=sent * h * e)]
        ops.extend(self._all_to_all(ctx, self._wire(ctx)))
        gathered = [Collective("all_gather", "tp", etp, P * h * wire)] if etp != 1 else []
        ops.extend(gathered)
        if self.num_shared_experts != 0:
            # Megatron-Core's SharedExpertMLP: TE column- and row-parallel linears (FP8 casts gathered,
            # the backward's collectives beside TE's GEMMs), without userbuffers
            ops.extend(self.tp_enter(ctx, T * h * e, userbuffers=False, te_linear=True))
            ops.extend(self._ffn("shared", sp.Integer(1), T, self.num_shared_experts * self.f_shared / ctx.tp, e))
            if self.shared_gate:
                ops.extend(self._shared_gate_ops(T, e))
            ops.extend(self.tp_exit(ctx, T * h * e, userbuffers=False, te_linear=True))
        active = self._active_experts(ctx)
        ops.extend(self._ffn("experts", active, self._busiest() * P / active,
                             self.expert_intermediate_size / etp, e,
                             bias=self.expert_bias, grouped=True))
        ops.extend([dataclasses.replace(c, kind="reduce_scatter") for c in gathered])
        ops.extend(self._all_to_all(ctx, self._wire(ctx)))
        shared_read = t_in * h * e if self.num_shared_experts != 0 else _ZERO
        ops.append(Vector("combine", elements=t_in * k * h, flops_per_element=COMBINE_FLOPS,
                          read_bytes=t_in * k * h * e + t_in * k * ROUTER_BYTES + shared_read,
                          write_bytes=t_in * h * e))
        return ops

    def _shared_gate_ops(self, T: sp.Expr, e: sp.Expr) -> list:
        """Qwen2-MoE's gate: (T x h) @ (h x 1), a sigmoid per token, the shared output (T x h, per
        TP rank a partial sum, which the scale commutes with) scaled in place."""
        h = self.hidden_size
        return [Matmul("shared_gate", m=T, n=sp.Integer(1), k=h, dtype_bytes=e),
                Vector("shared_gate_sigmoid", elements=T, flops_per_element=SIGMOID_FLOPS, read_bytes=T * e,
                       write_bytes=T * e),
                Vector("shared_gate_scale", elements=T * h, flops_per_element=VECTOR_FLOPS["gate_multiply"],
                       read_bytes=T * h * e + T * e, write_bytes=T * h * e)]

    @property
    def num_routed_experts(self) -> sp.Expr:
        return self.num_experts

    @property
    def expert_params_per_chip(self) -> sp.Expr:
        """Routed-expert parameters one chip holds: ``E/ep * p*h*f_e/t`` (plus ``E/ep *
        ((p-1)*f_e/t + h)`` with ``expert_bias``). They are replicated over ``dp/ep``
        data-parallel ranks only (the training step shards and syncs them there)."""
        par = self.parallelism
        return self.num_experts / par.ep * (self.num_projections * self.hidden_size
                                            * self.expert_intermediate_size / par.etp + self._expert_biases(par.etp))

    @property
    def tp_summed_params(self) -> sp.Expr:
        """Under Megatron sequence parallelism the router (``h*E``, plus ``E`` with a trained
        ``router_bias``, not a ``router_bias_buffer``) and the shared experts' gate (``h``), which
        score each rank's ``T/t`` tokens (Megatron-Core ``transformer/moe/router.py`` and
        ``shared_experts.py`` mark them ``sequence_parallel``).

        DeepSeek-V3's MoE (h 7168, E 256, score bias a buffer) under TP 8 + SP: 7168 * 256 =
        1,835,008; gpt-oss-20b's (h 2880, E 32, trained bias): 2880 * 32 + 32 = 92,192.

        >>> MoELayer(hidden_size=7168, expert_intermediate_size=2048, num_experts=256, top_k=8,
        ...          router_bias=True, router_bias_buffer=True,
        ...          parallelism={"tensor_parallel": 8, "sequence_parallel": "tp"}).tp_summed_params
        1835008
        >>> MoELayer(hidden_size=2880, expert_intermediate_size=2880, num_experts=32, top_k=4,
        ...          router_bias=True, parallelism={"tensor_parallel": 2, "sequence_parallel": "tp"}).tp_summed_params
        92192
        """
        if not self.parallelism.megatron_sp:
            return sp.Integer(0)
        trained_bias = 1 if self.router_bias and not self.router_bias_buffer else 0
        return (self.hidden_size + trained_bias) * self.num_experts + self._gate_params

    @property
    def buffer_params(self) -> sp.Expr:
        """The router's score-correction bias, ``E``, when it is a buffer (:attr:`router_bias_buffer`).

        >>> MoELayer(hidden_size=64, expert_intermediate_size=32, num_experts=8, top_k=2,
        ...          router_bias=True, router_bias_buffer=True).buffer_params
        8
        """
        return self.num_experts if self.router_bias and self.router_bias_buffer else sp.Integer(0)

    def weight_memory(self, ctx: Context) -> sp.Expr:
        h, p, t = self.hidden_size, self.num_projections, ctx.tp
        experts = self.expert_params_per_chip
        shared = self.num_shared_experts * p * h * self.f_shared / t
        router = (h + (1 if self.router_bias else 0)) * self.num_experts + self._gate_params  # replicated
        return (experts + shared + router) * ctx.e

    def _wide(self, ctx: Context) -> tuple[sp.Expr, sp.Expr]:
        """Bytes of one intermediate-width tensor: routed experts (P x f_e/t), shared (T x n_s f_s/t)."""
        e = ctx.e
        routed = self._pairs(ctx) * self.expert_intermediate_size / self._expert_tp(ctx) * e
        shared = ctx.tokens * self.num_shared_experts * self.f_shared / ctx.tp * e
        return routed, shared

    def saved_activations(self, ctx: Context) -> sp.Expr:
        # Korthikanti et al. 2022 accounting, at e bytes unless noted: the layer input (saved
        # sequence-sharded under Megatron SP); the router's fp32 probabilities (T x E, the
        # softmax's backward needs its output); the dispatched tokens (P x h, the experts' input,
        # padding included); per pair what the experts save as Megatron-Core runs them (TEGroupedMLP
        # with bias_activation_fusion: NVIDIA/Megatron-LM core_v0.17.0 megatron/core/transformer/moe/
        # experts.py ``bias_act_func`` -> ``weighted_bias_swiglu_impl``, whose WeightedSwiGLUFunction
        # saves only its input, fc1's gate and up outputs, and recomputes silu in the backward;
        # fusions/fused_bias_swiglu.py): fc1's output ((p - 1) x f_e/t) and fc2's input, the
        # product (f_e/t) -- 3 wide tensors gated, 2 plain (fc1 output and activation), not eager
        # PyTorch's 4 (which also keeps silu(gate)); the shared experts as a gated MLP on the same
        # input. Not the k expert outputs per token (T x k x h): Megatron-Core applies the routing
        # weights in the experts' activation (core_v0.13.0 onward, experts.py ``permuted_probs``
        # into ``weighted_bias_swiglu_impl`` / ``activation_func_with_probs``) and the combine
        # unpermutes without probs (token_dispatcher.py ``unpermute``), a sum whose backward only
        # permutes the gradient. Top-k indices, the fused SwiGLU's per-pair routing
        # weights (P fp32 values, 4/(3 f_e e) of the wide tensors) and norm statistics are ignored.
        # Under Transformer Engine's FP8 training the experts' GEMM inputs are saved as their FP8
        # casts (the dispatched tokens, the product) and fc1's bf16 outputs for the fused
        # activation's backward, as the MLP layer does; the router stays a bf16 GEMM.
        h, e = self.hidden_size, ctx.e
        input_bytes = ctx.sharded_tokens * h * e
        if ctx.recompute == "full":
            return input_bytes
        routed, shared = self._wide(ctx)  # at e bytes
        gemm = e if ctx.gemm_bytes is None else ctx.gemm_bytes
        per_wide = (self.num_projections - 1) + gemm / e
        t_in = self._routed_tokens(ctx)
        return (input_bytes
                + t_in * self.num_experts * ROUTER_BYTES
                + self._pairs(ctx) * h * ctx.saved_gemm_input_bytes
                + per_wide * routed
                + per_wide * shared)

    def peak_activations(self, ctx: Context) -> sp.Expr:
        # The layer's input and output (the shared experts' output is the accumulator), plus the
        # larger of two moments: the routed experts (the dispatched tokens, the gate and up outputs
        # -- the product in place, and the expert outputs that go back: 2 x P x h + 2 x P x f_e/t)
        # or the shared experts (their gate and up outputs). The router's probabilities are
        # freed after top-k. NB: a sum of tensors alive together, as in the gated MLP.
        h, e = self.hidden_size, ctx.e
        per_wide = 2 if self.gated else 1
        routed, shared = self._wide(ctx)
        experts = 2 * self._pairs(ctx) * h * e + per_wide * routed
        busiest = experts if self.num_shared_experts == 0 else sp.Max(experts, per_wide * shared)
        return 2 * self._routed_tokens(ctx) * h * e + busiest
