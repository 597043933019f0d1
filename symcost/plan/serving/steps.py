"""One engine step of continuous batching: decode tokens of the running requests and prefill
chunks in the same forward pass, costed from the model's own inference rows.

A step that batches ``n`` decode tokens (one per running request, each attending to ``k`` keys)
with ``r`` prompt rows of ``q`` tokens each (a whole prompt, or one chunk of it after ``P``
earlier tokens) runs every linear op once over all ``N = n + r q`` tokens (the GEMMs, norms,
activations, the KV-cache writes and the all-reduces: an engine flattens the batch into one
token dimension), the decode attention of the ``n`` tokens, the context attention of the ``r``
rows (each also attending to its ``P`` earlier keys from the KV cache), the LM head over the
rows that sample a token, and the engine's own time per step:

    tau(n, k; r, q, P; l) = Lin(N) + A_dec(n, k) + A_pre(r, q, P) + Head(l) + t_step (+ sends),

each term read off :func:`~symcost.plan.inference.inference_step`'s breakdown rows (a prefill
of one sequence of ``s`` tokens for ``Lin``, its attention cores for ``A_pre``, the decode rows
for ``A_dec`` and ``Head``), so a step with no prefill rows is exactly the static decode step
(``inference_step(n, k).tpot``) and a step of ``r`` whole prompts and no decode tokens is exactly
the static prefill (``inference_step(r, q).ttft``). With pipeline stages a step passes every
stage in turn with the stage-to-stage sends of :func:`inference_step` (its prefill's for ``N``
tokens).

NB: ``Lin`` of ``N`` tokens is the same whether the tokens come from one sequence or many (the
linear ops see only the token count; the tests check it against the decode rows).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import numpy as np
import sympy as sp

from ...core import symbols as sym
from ...core.binding import on_register
from ...core.dtypes import DataType
from ...core.ops import AttentionCore
from ...core.parallelism import Parallelism
from ...errors import ConfigError
from ...hardware import Hardware
from ...hardware.timing import op_time
from ...models.model import ByPart, Model
from ..inference import inference_step, rows_latency

__all__ = ["EngineSteps", "NumericSteps", "engine_layout", "engine_steps"]


def _cores(rows: tuple, chip: Hardware, datatype: DataType) -> list[tuple[AttentionCore, Any]]:
    """Every attention core of ``rows`` with its count (layers x ops), as the rows time it."""
    found = []
    for _, n, metrics in rows:
        for op, mult in metrics.ops:
            if isinstance(op, AttentionCore):
                found.append((op, n * mult))
    return found


def _bind(expr: Any, mapping: dict) -> Any:
    """``expr.xreplace(mapping)``; with symbolic values the rebuilt nodes stay unevaluated (a
    ``Max`` of expressions in the concurrency costs SymPy pairwise comparisons to simplify, and
    substituting numbers later evaluates every node it rebuilds, exactly as here)."""
    if all(sp.sympify(v).is_number for v in mapping.values()):
        return expr.xreplace(mapping)
    with sp.evaluate(False):
        return expr.xreplace(mapping)


def _core_time(cores: list[tuple[AttentionCore, Any]], chip: Hardware, datatype: DataType,
               prefix: Any = 0) -> Any:
    """The cores' time, each also attending to ``prefix`` earlier keys (read from the KV cache)."""
    peak = chip.effective_peak(datatype)
    terms = []
    for op, count in cores:
        core = op if prefix == 0 else dataclasses.replace(op, kv_len=op.kv_len + prefix)
        terms.append(count * sp.sympify(op_time(core, chip, peak, datatype).time))
    return sp.Add(*terms)


@dataclasses.dataclass(frozen=True)
class EngineSteps:
    """The parts of one engine step's time for ``model`` on ``chip`` (see the module's docstring):
    SymPy expressions in the canonical ``b`` (:data:`~symcost.core.symbols.batch_size`) and ``s``
    (:data:`~symcost.core.symbols.seq_len`), each bound by :meth:`decode` and :meth:`mixed`.

    ``linear``: ``Lin(s)``, every op of a prefill of ``s`` tokens but the attention cores and the
    LM head (built on first use; ``batch_linear``: the same ops of ``b`` sequences of ``s`` tokens,
    ``Lin(s)`` at ``b = 1``, which numbers bind directly); ``decode_attention``: ``A_dec(b, s)``;
    ``head``: the LM head over ``b`` rows; ``prefill_cores``: the context attention cores of a
    prefill of ``b`` sequences of ``s`` tokens, with their counts; ``prefill_sends`` and
    ``decode_sends``: the stage-to-stage sends of a step of ``s`` prefill tokens and of ``b``
    decode tokens (0 without pipeline stages; ``batch_prefill_sends`` as ``batch_linear``);
    ``overhead``: the engine's time per step. :attr:`numeric` is the same step in float64.
    """

    model: Model
    chip: Hardware
    parallelism: Parallelism
    datatype: DataType
    batch_linear: Any
    decode_attention: Any
    head: Any
    batch_prefill_sends: Any
    decode_sends: Any
    prefill_cores: tuple
    overhead: Any

    @functools.cached_property
    def _single(self) -> tuple[Any, Any]:
        """``Lin(s)`` and the prefill sends of one sequence, built at ``b = 1`` (not ``batch_linear``
        with ``b`` replaced afterwards: the same values, without SymPy comparing every rebuilt
        ``Max``'s arguments again)."""
        return _single_sequence(self.model, self.chip, self.parallelism, self.datatype)

    @property
    def linear(self) -> Any:
        """``Lin(s)``: every op of a one-sequence prefill of ``s`` tokens but its cores and LM head."""
        return self._single[0]

    @property
    def prefill_sends(self) -> Any:
        """The stage-to-stage sends of a step of ``s`` prefill tokens (0 without pipeline stages)."""
        return self._single[1]

    def _linear(self, tokens: Any, sends: bool = False) -> Any:
        """``Lin(tokens)`` (plus the prefill sends): numbers bind ``batch_linear`` at ``b = 1``,
        expressions the one-sequence form."""
        if sp.sympify(tokens).is_number:
            return _bind(self.batch_linear + (self.batch_prefill_sends if sends else 0),
                         {sym.batch_size: 1, sym.seq_len: tokens})
        return _bind(self.linear + (self.prefill_sends if sends else 0), {sym.seq_len: tokens})

    def decode(self, tokens: Any, keys: Any) -> Any:
        """A step of ``tokens`` decode tokens attending to ``keys`` keys each and no prefill: the
        static decode step (``inference_step(tokens, keys).tpot``).

        >>> from symcost import models
        >>> m = models.get("llama-3-8b")
        >>> engine_steps(m, "H100_SXM").decode(8, 4096) == m.inference_step("H100_SXM", 8, 4096).tpot
        True
        """
        at = {sym.batch_size: tokens, sym.seq_len: keys}
        return (self._linear(tokens) + _bind(self.decode_attention, at)
                + _bind(self.head + self.decode_sends, {sym.batch_size: tokens}) + self.overhead)

    def mixed(self, tokens: Any, keys: Any, rows: Any, length: Any, prefix: Any = 0, logits: Any = None) -> Any:
        """A step of ``tokens`` decode tokens at ``keys`` keys (0: none) and ``rows`` prompt rows of
        ``length`` tokens each after ``prefix`` earlier tokens; the LM head computes ``logits`` rows
        (default ``tokens + rows``). With no decode tokens and whole prompts it is the static
        prefill (``inference_step(rows, length).ttft``).

        >>> from symcost import models
        >>> m = models.get("llama-3-8b")
        >>> engine_steps(m, "H100_SXM").mixed(0, 0, 4, 1024) == m.inference_step("H100_SXM", 4, 1024).ttft
        True
        """
        tokens, rows, length = (sp.sympify(x) for x in (tokens, rows, length))
        logits = tokens + rows if logits is None else sp.sympify(logits)
        pre = _core_time(list(self.prefill_cores), self.chip, self.datatype, sp.sympify(prefix))
        total = (self._linear(tokens + rows * length, sends=True)
                 + _bind(self.head, {sym.batch_size: logits})
                 + _bind(pre, {sym.batch_size: rows, sym.seq_len: length}) + self.overhead)
        if tokens == 0:
            return total
        decode = _bind(self.decode_attention, {sym.batch_size: tokens, sym.seq_len: keys})
        if tokens.is_number:
            return total + decode
        # a symbolic count of decode tokens may be 0 (one chunked prompt and nothing else running)
        return total + sp.Piecewise((0, sp.Le(tokens, 0)), (decode, True))


    @functools.cached_property
    def numeric(self) -> "NumericSteps":
        """The same step in float64 over NumPy arrays (:class:`NumericSteps`), compiled once."""
        return NumericSteps(self)


_PREFIX = sp.Dummy("prefix", nonnegative=True)
"""The earlier keys of a prefill chunk, as an argument of the compiled attention cores only (the
exact parts take numbers or expressions for it: :meth:`EngineSteps.mixed`)."""


class NumericSteps:
    """:meth:`EngineSteps.decode` and :meth:`EngineSteps.mixed` in float64, over NumPy arrays of
    counts broadcast together: each part (``Lin``, ``A_dec``, the head, the sends, the prefill
    cores with their earlier keys) compiled once by :func:`~symcost.core.sweep.compile_numpy`
    (common sub-expressions in linear time), then the module's sum in NumPy. The same values as
    the exact step to float64 rounding (the tests compare them point by point).

    >>> import numpy as np
    >>> from symcost import models
    >>> m = models.get("llama-3-8b")
    >>> t = engine_steps(m, "H100_SXM").numeric.decode(np.array([8.0]), 4096.0)
    >>> bool(np.isclose(t[0], float(m.inference_step("H100_SXM", 8, 4096).tpot), rtol=1e-12, atol=0))
    True
    """

    def __init__(self, steps: EngineSteps) -> None:
        from ...core.sweep import compile_numpy

        b, s = sym.batch_size, sym.seq_len
        cores = _core_time(list(steps.prefill_cores), steps.chip, steps.datatype, _PREFIX)
        parts = {"linear": (steps.batch_linear, (b, s)), "decode_attention": (steps.decode_attention, (b, s)),
                 "head": (steps.head, (b,)), "decode_sends": (steps.decode_sends, (b,)),
                 "prefill_sends": (steps.batch_prefill_sends, (b, s)), "cores": (cores, (b, s, _PREFIX))}
        self._parts = {name: (compile_numpy((sp.sympify(e),), args, True), len(args))
                       for name, (e, args) in parts.items()}
        self.overhead = float(steps.overhead)

    def _part(self, name: str, *values: Any) -> Any:
        function, _ = self._parts[name]
        return function(*(np.asarray(v, dtype=np.float64) for v in values))[0]

    def decode(self, tokens: Any, keys: Any) -> Any:
        """:meth:`EngineSteps.decode` in float64."""
        return (self._part("linear", 1, tokens) + self._part("decode_attention", tokens, keys)
                + self._part("head", tokens) + self._part("decode_sends", tokens) + self.overhead)

    def mixed(self, tokens: Any, keys: Any, rows: Any, length: Any, prefix: Any = 0, logits: Any = None) -> Any:
        """:meth:`EngineSteps.mixed` in float64 (no decode attention where ``tokens <= 0``)."""
        logits = np.add(tokens, rows) if logits is None else logits
        total = (self._part("linear", 1, np.add(tokens, np.multiply(rows, length)))
                 + self._part("prefill_sends", 1, np.add(tokens, np.multiply(rows, length)))
                 + self._part("head", logits) + self._part("cores", rows, length, prefix) + self.overhead)
        if np.ndim(tokens) == 0 and tokens == 0:
            return total
        with np.errstate(divide="ignore", invalid="ignore"):
            return total + np.where(np.greater(tokens, 0), self._part("decode_attention", tokens, keys), 0.0)


def engine_steps(model: Model, hardware: Hardware | str, dtype: Any = "bf16", parallelism: Any = None) -> EngineSteps:
    """The parts of one engine step of ``model`` on ``hardware`` (:class:`EngineSteps`), read off
    the symbolic :func:`~symcost.plan.inference.inference_step` rows; memoized per model, chip,
    parallelism and dtype.

    >>> from symcost import models
    >>> steps = engine_steps(models.get("llama-3-8b"), "H100_SXM")
    >>> sorted(str(x) for x in steps.linear.free_symbols)
    ['s']
    """
    chip, par = engine_layout(model, hardware, parallelism)
    return _engine_steps(model, chip, par, DataType.parse(dtype))


def engine_layout(model: Model, hardware: Hardware | str, parallelism: Any = None) -> tuple[Hardware, Parallelism]:
    """The chip and the resolved parallelism of an engine of ``model`` (what :func:`engine_steps`
    checks before it builds anything: no context or sequence parallelism), so that a caller can
    rule a layout out (its KV room) before paying for its symbolic step.

    >>> from symcost import models
    >>> chip, par = engine_layout(models.get("llama-3-8b"), "H100_SXM", {"tensor_parallel": 2})
    >>> chip.name, par.tp
    ('H100_SXM', 2)
    """
    from ...hardware import get as get_hardware
    from ..pipeline import resolve_parallelism

    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    if par.cp != 1 or par.sp != 1:
        raise ConfigError(f"parallelism: continuous batching is modelled without context or sequence parallelism "
                          f"(got context_parallel={par.cp}, sequence_parallel={par.sp})")
    return chip, par


@functools.lru_cache(maxsize=64)
def _engine_steps(model: Model, chip: Hardware, par: Parallelism, datatype: DataType) -> EngineSteps:
    b, s = sym.batch_size, sym.seq_len
    step = inference_step(model, chip, b, s, datatype, par, exact=True)
    overhead = sp.sympify(chip.runtime.step_overhead)
    prefill_cores = _cores(step.prefill_rows, chip, datatype)
    decode_cores = _cores(step.decode_rows, chip, datatype)
    # every op of a prefill of b sequences but its cores and its LM head (Lin(s) at b = 1); the
    # sends are what the step's TTFT and TPOT add to their rows (and to the engine's time)
    linear = _latency(step.prefill_rows, skip_head=True) - _core_time(prefill_cores, chip, datatype)
    prefill_sends = sp.sympify(step.ttft) - _latency(step.prefill_rows) - overhead
    decode_sends = sp.sympify(step.tpot) - _latency(step.decode_rows) - overhead
    _, heads, lm_head = ByPart.of(step.decode_rows).lm_head
    head = heads * sp.sympify(lm_head.latency)
    return EngineSteps(model, chip, par, datatype, linear, _core_time(decode_cores, chip, datatype), head,
                       prefill_sends, decode_sends, tuple(prefill_cores), overhead)


def _latency(rows: tuple, skip_head: bool = False) -> Any:
    """The rows' latency: embedding, blocks, final norm and (unless ``skip_head``) the LM head."""
    part = ByPart.of(rows)
    return rows_latency([part.embedding, *part.blocks, part.final_norm, *(() if skip_head else (part.lm_head,))])


def _single_sequence(model: Model, chip: Hardware, par: Parallelism, datatype: DataType) -> tuple[Any, Any]:
    """``Lin(s)`` and the prefill sends of one sequence of ``s`` tokens (:attr:`EngineSteps.linear`)."""
    single = inference_step(model, chip, 1, sym.seq_len, datatype, par, exact=True)
    overhead = sp.sympify(chip.runtime.step_overhead)
    linear = _latency(single.prefill_rows, skip_head=True) - _core_time(_cores(single.prefill_rows, chip, datatype),
                                                                         chip, datatype)
    return linear, sp.sympify(single.ttft) - _latency(single.prefill_rows) - overhead


on_register(_engine_steps.cache_clear)  # its times are the registered time model's
