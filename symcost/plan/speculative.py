"""Speculative decoding: a draft proposes ``k`` tokens, the target verifies them in one forward.

Leviathan et al. 2023 ("Fast Inference from Transformers via Speculative Decoding", eq. 1): with
each draft token accepted with probability ``alpha`` (independently), one round yields

    E(alpha, k) = (1 - alpha^(k+1)) / (1 - alpha) = sum_{i=0..k} alpha^i

tokens. NB: we build the polynomial ``sum alpha^i`` whenever ``k`` is a number: it equals the
quotient for every ``alpha`` (so the ``alpha -> 1`` limit ``k + 1`` is its plain value, not a
0/0 that a sweep would turn into NaN), and the break-even equation ``E(alpha) = r`` is then a
polynomial of degree ``k`` in ``alpha``, which SymPy solves exactly. For a symbolic ``k`` the sum
has no finite expansion, so ``E`` is the quotient as a ``Piecewise`` with the exact value
``k + 1`` at ``alpha = 1``. Where this departs from the counting rules: docs/conventions.md §16.

One round costs ``k`` draft decode steps plus one target forward over ``k + 1`` query tokens (the
last accepted token and the ``k`` proposals) against the context, and

    TPOT = (k T_draft + T_verify) / E(alpha, k).

The verification forward is costed like one chunk of a chunked prefill
(:func:`symcost.plan.inference.inference_step`): ``k + 1`` tokens per sequence attending to the
``seq_len - 1`` cached keys and to each other (so ``k = 0`` is a decode step attending to
``seq_len`` keys; a sliding-window layer reads only the last ``min(seq_len, window) + k`` of
them, as the decode step reads ``min(seq_len, window)``), with logits for all ``k + 1`` tokens;
its attention cores run the engine's decode kernels (verification is part of generation). Under
context or Ulysses parallelism or Megatron SP, which shard a prefill's tokens but not a decode
step's, it is costed in the decode layout instead (the cache split by keys, every rank running
every new token; the two forms agree where neither shards). The draft is a :class:`Model` (its
own decode step, its own KV cache, on the target's chips or on its own), or, by default, ``k``
multi-token-prediction heads as in DeepSeek-V3 (arXiv:2412.19437, §2.2): each head is one more
transformer block of the target, two RMSNorms, a ``2h -> h`` projection, and the target's shared
embedding, final norm and LM head.

NB: what is not counted: the draft re-reading the accepted tokens after a rejection (vLLM folds it
into the next round's first draft step), the rejection sampling itself (a few vector ops on
``k + 1`` logit rows) and the ``k + 1`` tokens' extra KV cache and activations during the
verification (``k`` more tokens than the context). Pipeline parallelism is not modelled here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal, Optional

import sympy as sp

from ..core import symbols as sym
from ..core._expr import Ceil, as_expr, dim, exact_value
from ..core.dtypes import DataType
from ..core.ops import AttentionCore, Matmul
from ..core.parallelism import ParallelismLike
from ..errors import ConfigError
from ..hardware import Hardware
from ..hardware import get as get_hardware
from ..hardware.timing import op_time
from ..models.model import ByPart, Model
from .inference import chunk_attention_time, inference_step, rows_latency
from .pipeline import check_expert_parallel, resolve_parallelism

__all__ = ["SpeculativeStep", "BreakEven", "expected_tokens", "speculative_tpot", "tpot_latex", "breakeven_alpha",
           "speculative_step"]

MTP = "mtp"
"""The default draft: multi-token-prediction heads (DeepSeek-V3's MTP modules)."""


def _alpha(alpha: Any) -> sp.Expr:
    """``alpha`` as an exact expression (a float by its decimal digits), checked to lie in [0, 1]."""
    if isinstance(alpha, float) and not isinstance(alpha, bool):
        if alpha != alpha or alpha in (float("inf"), float("-inf")):
            raise ConfigError(f"spec_alpha must be a finite number, got {alpha}")
        alpha = Fraction(repr(alpha))
    a = as_expr(alpha, "spec_alpha")
    if a.is_number and not (0 <= a <= 1):
        raise ConfigError(f"spec_alpha must lie in [0, 1] (an acceptance probability), got {a}")
    return a


def expected_tokens(k: Any = sym.spec_k, alpha: Any = sym.spec_alpha) -> sp.Expr:
    """Tokens one speculation round yields: ``E = sum_{i=0..k} alpha^i = (1 - alpha^(k+1))/(1 - alpha)``
    (Leviathan et al. 2023, eq. 1); a polynomial for a numeric ``k``, else the quotient with
    ``E = k + 1`` at ``alpha = 1``.

    >>> from fractions import Fraction
    >>> expected_tokens(3, Fraction(1, 2)), expected_tokens(3, 1), expected_tokens(3, 0)
    (15/8, 4, 1)
    >>> expected_tokens(2)
    alpha_acc**2 + alpha_acc + 1
    """
    k_, a = dim(k, "spec_k"), _alpha(alpha)
    if k_.is_Integer:
        return sp.Add(*(a**i for i in range(int(k_) + 1)))
    return sp.Piecewise((k_ + 1, sp.Eq(a, 1)), ((1 - a ** (k_ + 1)) / (1 - a), True))


def speculative_tpot(k: Any = sym.spec_k, alpha: Any = sym.spec_alpha, draft_time: Any = sym.draft_time,
                     verify_time: Any = sym.verify_time) -> sp.Expr:
    """Time per output token of speculative decoding: ``(k T_draft + T_verify) / E(alpha, k)``.

    >>> speculative_tpot(1, 0)             # nothing accepted: one token per round, the draft wasted
    T_draft + T_verify
    >>> speculative_tpot(2, 1, 1, 3)       # all accepted: k + 1 = 3 tokens per round of 2*1 + 3 s
    5/3
    """
    k_ = dim(k, "spec_k")
    return (k_ * as_expr(draft_time, "draft_time") + as_expr(verify_time, "verify_time")) / expected_tokens(k_, alpha)


def tpot_latex(k: Any = sym.spec_k) -> str:
    """The TPOT formula in LaTeX, the tokens per round as the sum ``sum_{i=0}^{k} alpha^i``.

    >>> print(tpot_latex(1))
    \\mathrm{TPOT} = \\frac{T_{\\mathrm{draft}} + T_{\\mathrm{verify}}}{\\alpha_{\\mathrm{acc}} + 1}
    """
    names = sym.latex_names()
    k_ = dim(k, "spec_k")
    if k_.is_Integer:
        body = sp.latex(speculative_tpot(k_), symbol_names=names)
    else:
        i = sp.Symbol("i", integer=True, nonnegative=True)  # NB: the sum's bound index, not a quantity
        rounds = sp.Sum(sym.spec_alpha**i, (i, 0, k_))
        numerator = sp.latex(k_ * sym.draft_time + sym.verify_time, symbol_names=names)
        body = rf"\frac{{{numerator}}}{{{sp.latex(rounds, symbol_names=names)}}}"
    return rf"\mathrm{{TPOT}} = {body}"


Status = Literal["found", "always", "never", "symbolic"]


@dataclass(frozen=True)
class BreakEven:
    """The acceptance rate above which speculation beats plain decoding.

    ``ratio`` is ``r = (k T_draft + T_verify) / TPOT_plain``; speculation pays off when
    ``E(alpha, k) > r``. ``E`` grows from 1 at ``alpha = 0`` to ``k + 1`` at ``alpha = 1``, so
    ``status`` is ``"always"`` (``r < 1``: ``alpha`` 0), ``"never"`` (``r >= k + 1``: ``alpha``
    ``None``) or ``"found"`` (``alpha`` the exact root of ``E = r`` in [0, 1); with a numeric
    ``r`` every ``k`` has one), ``"symbolic"`` when ``r`` has symbols (``alpha`` is then the
    closed form, known for ``k <= 2``). ``closed_form``: the root as radicals in ``r`` (k <= 2).

    >>> breakeven_alpha(2, 1, 2, 1).status     # r = (2 + 2)/1 = 4 >= k + 1 = 3: never
    'never'
    >>> breakeven_alpha(1, 1, 1, 4).alpha      # r = 2/4 < 1: speculation always pays off
    0
    """

    k: int
    ratio: Any
    alpha: Any
    closed_form: Optional[sp.Expr]
    status: Status


def _closed_form(k: int, r: sp.Expr) -> Optional[sp.Expr]:
    if k == 1:  # 1 + alpha = r
        return r - 1
    if k == 2:  # alpha^2 + alpha + 1 - r = 0, the root >= 0 for r >= 1
        return (-1 + sp.sqrt(4 * r - 3)) / 2
    return None


def breakeven_alpha(k: Any, draft_time: Any, verify_time: Any, plain_tpot: Any) -> BreakEven:
    """The ``alpha`` where ``TPOT_spec = TPOT_plain``: the root in [0, 1] of
    ``sum_{i=0..k} alpha^i = (k T_draft + T_verify) / TPOT_plain`` (a polynomial of degree ``k``,
    solved exactly, as radicals for ``k <= 2`` and as SymPy's exact real root otherwise).

    >>> be = breakeven_alpha(1, 1, 10, 8)        # E = 1 + alpha must exceed (1 + 10)/8
    >>> be.alpha, be.status
    (3/8, 'found')
    """
    k_ = dim(k, "spec_k")
    if not k_.is_Integer:
        raise ConfigError(f"spec_k must be a number to solve for the break-even alpha, got {k_}")
    n = int(k_)
    r = sp.cancel((n * as_expr(draft_time, "draft_time") + as_expr(verify_time, "verify_time"))
                  / as_expr(plain_tpot, "plain_tpot"))
    closed = _closed_form(n, r)
    if not r.is_number:
        return BreakEven(n, r, closed, closed, "symbolic")
    if r < 1:
        return BreakEven(n, r, sp.Integer(0), closed, "always")
    if r >= n + 1:
        return BreakEven(n, r, None, closed, "never")
    poly = sp.Poly(expected_tokens(n) - r, sym.spec_alpha)
    root = next(x for x in poly.real_roots() if 0 <= x < 1)  # E is increasing for alpha >= 0: one root
    return BreakEven(n, r, root, closed, "found")


@dataclass(frozen=True)
class SpeculativeStep:
    """One speculation round of a batch, and the TPOT it gives (:func:`speculative_step`).

    ``draft_time`` is one draft decode step, ``verify_time`` the target's forward over ``k + 1``
    tokens, ``round_time = k draft_time + verify_time``, ``tpot = round_time / expected_tokens``;
    ``plain_tpot`` the target's own decode step; ``memory_per_chip`` the target's serving memory
    plus, when the draft shares its chips, the draft's weights and KV cache (``draft_memory``).
    """

    k: Any
    alpha: Any
    expected_tokens: Any
    draft_time: Any
    verify_time: Any
    round_time: Any
    tpot: Any
    plain_tpot: Any
    tokens_per_second: Any
    speedup: Any
    draft_memory: Any
    memory_per_chip: Any
    draft: str
    hardware: Hardware

    def breakeven(self) -> BreakEven:
        """The ``alpha`` above which this round beats :attr:`plain_tpot` (:func:`breakeven_alpha`)."""
        return breakeven_alpha(self.k, self.draft_time, self.verify_time, self.plain_tpot)

    @property
    def formula(self) -> sp.Expr:
        """TPOT as ``(k T_draft + T_verify) / E(alpha, k)`` in the canonical symbols."""
        return speculative_tpot()

    def to_latex(self) -> str:
        """:attr:`formula` in LaTeX, ``E`` written as ``sum_{i=0}^{k} alpha^i``."""
        return tpot_latex()

    # NB: for people (symcost.plan.display): times, bytes and ratios with units; the fields stay exact
    def __repr__(self) -> str:
        from . import display

        return display.speculative_repr(self)

    def __str__(self) -> str:
        from . import display

        return display.speculative_text(self)

    def _repr_html_(self) -> str:
        from . import display

        return display.speculative_html(self)


def _verify_time(model: Model, chip: Hardware, b: Any, s: Any, k: Any, datatype: DataType) -> sp.Expr:
    """The target's forward over ``q = k + 1`` tokens per sequence after ``s - 1`` cached ones:
    a prefill chunk of ``q`` tokens, its attention cores also attending to the cached keys in the
    engine's decode kernels (:func:`~symcost.plan.inference.chunk_attention_time`), logits for
    all ``q`` tokens, plus one engine step (docs/conventions.md §17). Under a layout that shards a
    prefill's tokens (context or Ulysses parallelism, Megatron SP), :func:`_verify_decode_layout`."""
    par = model.parallelism
    if par.sp != 1 or par.cp != 1 or par.megatron_sp:
        return _verify_decode_layout(model, chip, b, s, k, datatype)
    q = k + 1
    rows = model.breakdown(b, q, "prefill", datatype, chip, "none", False)
    part = ByPart.of(rows)
    # the prefill LM head computes the last token's logits; verification needs all q tokens'
    _, heads, _ = part.lm_head
    logits = heads * sp.sympify(model.lm_head.compute_metrics(b * q, 1, "decode", datatype, chip).latency)
    attend = chunk_attention_time(rows, s - 1, 1, q, chip, chip.effective_peak(datatype), datatype, decode=True)
    body = [part.embedding, *part.blocks, part.final_norm]
    return rows_latency(body) + logits + attend + chip.runtime.step_overhead


def _verify_decode_layout(model: Model, chip: Hardware, b: Any, s: Any, k: Any, datatype: DataType) -> sp.Expr:
    """The verification in the decode layout: a decode-time forward over the cache a decode step
    reads, which context and Ulysses parallelism split by keys over ``n = sp * cp`` ranks while
    every rank runs the projections of every new token (docs/conventions.md §3b; Megatron SP has
    no token axis in decode). So: the layers of a decode step of ``b * q`` tokens at ``s`` keys
    (MLPs, norms, projections, the partial outputs' combine and the LM head's logits for every
    token), each attention core then scoring a sequence's ``q`` queries against this rank's keys
    once instead of ``q`` one-query decodes: ``s/n`` cached keys (``s`` divisible by ``n``, the
    decode rule) plus ``ceil(k/n)`` of the ``k`` proposals', appended round-robin (the fullest
    rank). NB: with ``n > 1`` the mask among the proposals' keys on a rank is not discounted
    (at most ``q ceil(k/n)`` pairs more than it keeps, beside ``q s/n``); with ``n = 1`` the
    core counts as the layer does (``causal``), and this equals the chunked-prefill form."""
    par = model.parallelism
    q, n = k + 1, par.sp * par.cp
    rows = model.breakdown(b * q, s, "decode", datatype, chip, "none", False)
    peak = chip.effective_peak(datatype)
    swap = []
    for _, count, metrics in rows:
        for op, mult in metrics.ops:
            if isinstance(op, AttentionCore):
                # b*q one-query decodes over kv_len = s/n keys -> b sequences of q queries over the
                # rank's kv_len + ceil(k/n) keys, read once
                mine = dataclasses.replace(op, batch=op.batch / q, q_len=q, kv_len=op.kv_len + Ceil(k / n),
                                           causal=op.causal and n == 1)
                swap.append(count * mult * (op_time(mine, chip, peak, datatype).time
                                            - op_time(op, chip, peak, datatype).time))
    return rows_latency(rows) + sp.Add(*swap) + chip.runtime.step_overhead


def _mtp_head(plain: Any, model: Model, b: Any, datatype: DataType, chip: Hardware) -> tuple[Any, Any]:
    """(time, weights + KV cache per chip) of one DeepSeek-V3 MTP module's decode step: the
    shared embedding, RMSNorms of the hidden state and of the embedding, the ``2h -> h``
    projection, one transformer block (the target's last kind), the shared final norm and LM
    head. NB: the projection is counted unsharded on every TP rank (DeepSeek-V3 gives no TP
    layout for it): ``2 * b * 2h * h`` FLOPs and ``2h^2`` weights."""
    part = ByPart.of([m for _, _, m in plain.decode_rows])
    block, norm = part.blocks[-1], part.final_norm
    h = model.hidden_size
    projection = Matmul("mtp_projection", m=b, n=h, k=2 * h, dtype_bytes=datatype.bytes)
    proj_time = op_time(projection, chip, chip.effective_peak(datatype), datatype).time
    used = (part.embedding, block, norm, part.lm_head)
    time = sp.Add(*(sp.sympify(m.latency) for m in used), 2 * sp.sympify(norm.latency), proj_time)
    norms = 2 * sp.sympify(norm.weight_memory_per_chip)
    memory = (sp.sympify(block.weight_memory_per_chip) + sp.sympify(block.kv_cache_memory_per_chip) + norms
              + 2 * h * h * datatype.bytes)
    return time, memory


def speculative_step(model: Model, hardware: Hardware | str, batch_size: Any, seq_len: Any,
                     k: Any = sym.spec_k, alpha: Any = sym.spec_alpha, draft: Optional[Model] = None,
                     dtype: Any = "bf16", parallelism: ParallelismLike = None,
                     draft_parallelism: ParallelismLike = None,
                     draft_hardware: Hardware | str | None = None) -> SpeculativeStep:
    """One round of speculative decoding for ``batch_size`` sequences at ``seq_len`` keys:
    ``TPOT = (k T_draft + T_verify) / sum_{i=0..k} alpha^i``, symbolic in ``k`` and ``alpha``
    when they are omitted (see the module's docstring for what each term counts).

    ``draft``: a :class:`Model` whose own decode step (:func:`inference_step`) is ``T_draft``,
    on ``draft_hardware`` (default: the target's chips, its memory added to theirs) under
    ``draft_parallelism`` (default: the target's); ``None``: DeepSeek-V3-style MTP heads.

    >>> from fractions import Fraction
    >>> from symcost import models
    >>> st = speculative_step(models.get("llama-3-8b"), "H100_SXM", 1, 4096, k=3, alpha=Fraction(4, 5))
    >>> st.expected_tokens == 1 + Fraction(4, 5) + Fraction(4, 5)**2 + Fraction(4, 5)**3
    True
    >>> round(float(st.speedup), 2), round(float(st.breakeven().alpha), 3)
    (2.31, 0.22)
    """
    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    check_expert_parallel(par)
    if par.pp != 1:
        raise ConfigError(f"pipeline_parallel: speculative decoding is modelled without pipeline parallelism, "
                          f"got {par.pp}")
    datatype = DataType.parse(dtype)
    b = sym.batch_size if batch_size is None else dim(batch_size, "batch_size")
    s = sym.seq_len if seq_len is None else dim(seq_len, "seq_len")
    k_, a = dim(k, "spec_k"), _alpha(alpha)
    plain = inference_step(model, chip, b, s, datatype, par)
    sharded = model.with_parallelism(par)
    verify = _verify_time(sharded, chip, b, s, k_, datatype)
    if draft is None:
        draft_time, head_memory = _mtp_head(plain, sharded, b, datatype, chip)
        draft_memory = k_ * head_memory  # k heads, each its own block, norms and projection
        shared, name = True, MTP
    else:
        draft_chip = chip if draft_hardware is None else get_hardware(draft_hardware)
        d_par = par if draft_parallelism is None else draft_parallelism
        d_step = inference_step(draft, draft_chip, b, s, datatype, d_par)
        draft_time, draft_memory = d_step.tpot, sp.sympify(d_step.weight_memory) + sp.sympify(d_step.kv_cache_memory)
        shared, name = draft_hardware is None, draft.name
    e = expected_tokens(k_, a)
    round_time = k_ * sp.sympify(draft_time) + verify
    tpot = round_time / e
    memory = sp.sympify(plain.memory_per_chip) + (draft_memory if shared else 0)
    values = dict(k=k_, alpha=a, expected_tokens=e, draft_time=draft_time, verify_time=verify, round_time=round_time,
                  tpot=tpot, plain_tpot=plain.tpot, tokens_per_second=b / tpot, speedup=sp.sympify(plain.tpot) / tpot,
                  draft_memory=draft_memory, memory_per_chip=memory)
    return SpeculativeStep(**{key: exact_value(sp.sympify(v)) for key, v in values.items()}, draft=name, hardware=chip)
