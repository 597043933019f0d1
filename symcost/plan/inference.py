"""The inference step: TTFT (prefill, chunked or not) and TPOT (one decode step), and the largest
batch or context that fits (see :mod:`symcost.plan.step` for the model)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, Optional, Sequence

import sympy as sp

from ..core import symbols as sym
from ..core._expr import check_divides, dim, exact_value
from ..core.assumptions import collecting, merge
from ..core.binding import on_register
from ..core.compiled import Program
from ..core.dtypes import DataType
from ..core.ops import AttentionCore
from ..core.parallelism import Parallelism, ParallelismLike
from ..errors import ConfigError
from ..hardware import Hardware
from ..hardware import get as get_hardware
from ..hardware.kernels import PINGPONG_TILE, whole_tiles
from ..hardware.timing import OpTime, op_time
from ..models.model import ByPart, Model
from . import compiled as csteps
from .pipeline import (
    DecodeStep,
    InferenceStep,
    check_expert_parallel,
    checked_stage_layers,
    checked_switch,
    end_stages,
    max_all,
    model_parts,
    resolve_parallelism,
    span_time,
    stage_split,
    stages_from_parts,
    values_from_rows,
)


def _prefill_chunk(prefill_chunk: Any, par: Parallelism) -> Optional[sp.Expr]:
    """The chunk length in tokens per sequence, or ``None`` for an unchunked prefill."""
    if prefill_chunk is None:
        return None
    if par.cp != 1:
        raise ConfigError(f"prefill_chunk: a chunked prefill under context_parallel={par.cp} is not modelled "
                          "(each chunk would attend to keys spread over the CP ranks)")
    chunk = dim(prefill_chunk, "prefill_chunk")
    check_divides(chunk, par.sp, "prefill_chunk", by="sequence_parallel")
    return chunk


def rows_latency(rows: Sequence[tuple[str, Any, Any]]) -> Any:
    """Σ count · latency over ``(name, count, metrics)`` rows of a model's breakdown."""
    return sp.Add(*(n * sp.sympify(m.latency) for _, n, m in rows))


def _core_ops(rows: list) -> list[tuple[AttentionCore, Any]]:
    """Every attention core of a prefill breakdown with its count (layers x ops)."""
    cores = []
    for _, n, m in rows:
        for op, mult in m.ops:
            if isinstance(op, AttentionCore):
                cores.append((op, n * mult))
    return cores


def _check_flash(rows: list, model: "Model") -> None:
    for op, _ in _core_ops(rows):
        if not op.flash:
            raise ConfigError(f"prefill_chunk: chunked prefill is modelled with flash attention only (as vLLM and "
                             f"SGLang run it); {model.name} uses eager attention (flash_attention=False)")


def _sum_max_affine(c0: Any, c1: Any, m0: Any, m1: Any, count: int) -> Any:
    """``sum(max(c0 + c1*i, m0 + m1*i) for i in range(count))``, exactly, in O(1)."""
    if count <= 0:
        return sp.Integer(0)

    def total(a: Any, b: Any, lo: int, hi: int) -> Any:  # sum of a + b*i for lo <= i < hi
        k = hi - lo
        return k * a + b * sp.Rational((lo + hi - 1) * k, 2) if k > 0 else sp.Integer(0)

    slope, gap = c1 - m1, c0 - m0  # compute - memory = gap + slope * i
    if slope == 0:
        return total(c0, c1, 0, count) if gap >= 0 else total(m0, m1, 0, count)
    cross = -gap / slope  # where the two lines meet
    if slope > 0:  # compute wins from ceil(cross) on
        k = min(max(int(sp.ceiling(cross)), 0), count)
        return total(m0, m1, 0, k) + total(c0, c1, k, count)
    k = min(max(int(sp.floor(cross)) + 1, 0), count)  # compute wins while i <= cross
    return total(c0, c1, 0, k) + total(m0, m1, k, count)


def _chunk_runs(prefix: int, count: int, chunk: int, kinks: tuple[int, ...]) -> list[tuple[int, int]]:
    """The chunks ``i < count`` (the i-th after ``prefix + i*chunk`` earlier keys) cut into runs
    ``[lo, hi)``, a run ending after the last chunk whose earlier keys are ``<= kink`` for each
    kink (:attr:`~symcost.core.ops.AttentionCore.key_kinks`): within a run the core's counts are
    affine in the earlier keys, or the run holds one chunk.

    >>> _chunk_runs(0, 13, 8, (16, 23))   # window 24, chunks of 8: keys 0, 8, 16 | 24, 32, ...
    [(0, 3), (3, 13)]
    """
    cuts = {0, count}
    for kink in kinks:
        after = int(sp.floor((kink - prefix) / sp.Integer(chunk))) + 1  # chunks with prefix + i*chunk <= kink
        if 0 < after < count:
            cuts.add(after)
    bounds = sorted(cuts)
    return list(zip(bounds, bounds[1:]))


def chunk_attention_time(rows: list, prefix: Any, count: int, chunk: int, chip: Hardware, peak: Any,
                          datatype: Optional[DataType] = None, decode: bool = False) -> Any:
    """Extra time of ``count`` chunks (the i-th after ``prefix + i*chunk`` earlier tokens) over the
    same chunks alone: each attention core also attends to the earlier tokens' keys (read from
    the KV cache). A core's compute and memory terms are affine in the earlier keys between its
    :attr:`~symcost.core.ops.AttentionCore.key_kinks` (a sliding window's; none without one), so
    the sum of their ``max`` over each run of chunks between kinks is exact in O(1)
    (docs/conventions.md §16, item 17). ``decode``: the chunks' cores run the engine's decode
    kernels (speculative verification's few queries over the cache), not context attention."""
    extra = sp.Integer(0)
    for op, n in _core_ops(rows):
        base = op_time(op, chip, peak, datatype)

        def at(k: Any, op: AttentionCore = op) -> OpTime:  # the core after k more earlier keys
            return op_time(dataclasses.replace(op, kv_len=op.kv_len + k, decode=decode or op.decode), chip, peak,
                           datatype)

        first = at(prefix)
        # NB: whole tiles (B200's prefill) step with the cached keys every 128 and at a window's
        # tile edges, not at key_kinks: one term per chunk unless the chunks step whole tiles
        tiled = whole_tiles(op, chip) and (chunk % PINGPONG_TILE != 0 or op.window is not None)
        if count <= 2 or op.attention_chunk is not None or tiled or not _affine_form(first):
            # few chunks, a symbolic batch or context, a chunked-attention core (its counts kink at
            # every attention chunk, key_kinks), or a core paced by its host launches (no
            # CUDA graphs; its time grows with the keys, so the first chunk's says): one term per chunk
            times = [at(prefix + i * chunk).time for i in range(count)]
            extra += n * (sp.Add(*times) - count * base.time)
            continue
        runs = _chunk_runs(int(prefix), count, chunk, tuple(int(k) for k in op.key_kinks))
        busy = sp.Add(*(_run_busy(at, prefix + lo * chunk, hi - lo, chunk) for lo, hi in runs))
        # each chunk's core: max(compute, memory) + its separate passes + its kernels' fixed
        # time, as OpTime.time adds them
        extra += n * (busy + count * sp.sympify(base.overhead) - count * base.time)
    return extra


def _affine_form(t: OpTime) -> bool:
    """Whether ``t`` is numeric and its time is ``max(compute, memory) + serial + overhead``
    (no launch floor binding), the form :func:`_run_busy` sums in closed form."""
    terms = [sp.sympify(x) for x in (t.compute, t.memory, t.serial, t.overhead)]
    if not all(x.is_number for x in terms):
        return False
    return bool(sp.sympify(t.time) == sp.Max(terms[0], terms[1]) + terms[2] + terms[3])


def _run_busy(at: Any, start: Any, count: int, chunk: int) -> Any:
    """``sum(max(compute, memory) + serial)`` of ``at(start + i*chunk)`` for ``i < count``, the
    terms affine in ``i`` (a run of :func:`_chunk_runs`); O(1) through :func:`_sum_max_affine`."""
    first = at(start)
    c0, m0, s0 = (sp.sympify(x) for x in (first.compute, first.memory, first.serial))
    if count == 1:
        return sp.Max(c0, m0) + s0
    second = at(start + chunk)
    c1, m1, s1 = (sp.sympify(x) - y for x, y in zip((second.compute, second.memory, second.serial), (c0, m0, s0)))
    last = at(start + (count - 1) * chunk)
    ends = (sp.sympify(x) - y - (count - 1) * z for x, y, z in
            zip((last.compute, last.memory, last.serial), (c0, m0, s0), (c1, m1, s1)))
    if any(e != 0 for e in ends):
        # key_kinks bound the pieces where a core's counts are affine in its keys: a core whose
        # time is not affine between them is a bug in its key_kinks, not a user error
        raise ConfigError("prefill_chunk: an attention core's time is not affine between its kinks")  # pragma: no cover
    return _sum_max_affine(c0, c1, m0, m1, count) + count * s0 + s1 * sp.Rational(count * (count - 1), 2)


def _activation_peak(rows: list) -> Any:
    # inference activations are a transient peak: the largest layer's, whatever the depth
    peaks = tuple(m.activation_memory_per_chip for _, _, m in rows)
    return max(peaks) if not any(isinstance(x, sp.Basic) for x in peaks) else _symbolic_peak(peaks)


@functools.lru_cache(maxsize=256)
def _symbolic_peak(peaks: tuple) -> Any:
    """``Max`` of symbolic peaks, evaluated (SymPy drops the ones it shows dominated, comparing
    every pair: milliseconds), once per distinct tuple: the serving planner builds a layout's
    symbolic step twice, for its compiled program and for its engine steps."""
    return exact_value(sp.Max(*peaks))


def _stage_memory(sharded: "Model", decode_rows: list, datatype: DataType, p: Any, split: Any,
                  act: Any) -> tuple[Any, Any, Any]:
    """(weights, KV cache, total) of the fullest pipeline stage (``split``: blocks per stage),
    activations ``act`` on top."""
    stages = stages_from_parts(model_parts(sharded, decode_rows, datatype), p, split)
    held = [st["weight"] + st["kv"] for st in stages]
    if all(x.is_number for x in held):
        fullest = stages[max(range(len(held)), key=lambda i: held[i])]
        return fullest["weight"], fullest["kv"], max(held) + act
    # symbolic: the largest of each term; memory the largest stage
    return (max_all([st["weight"] for st in stages]), max_all([st["kv"] for st in stages]),
            max_all(held) + act)


def inference_step(model: "Model", hardware: Hardware | str, batch_size: Any, seq_len: Any,
                   dtype: Any = "bf16", parallelism: ParallelismLike = None,
                   overlap: bool = False, prefill_chunk: Any = None, *,
                   stage_layers: Optional[Sequence[int]] = None, exact: bool = True) -> InferenceStep:
    """Prefill of ``seq_len`` tokens (TTFT) and one decode step attending to ``seq_len`` keys
    (TPOT) for ``batch_size`` sequences. With ``p`` pipeline stages a token passes every stage in
    turn (plus one send between stages); memory is the fullest stage's weights and KV cache (stage
    ``k`` holds ``stage_layers[k]`` blocks, default :func:`pipeline_stages`, stated in
    ``result.stage_layers``) plus the largest layer's activation peak. ``parallelism`` adds to the
    model's own (:func:`resolve_parallelism`). Each step also carries the engine's own time per
    step, ``hardware.runtime.step_overhead`` (docs/conventions.md §17).

    ``prefill_chunk`` C (tokens per sequence) runs the prefill as vLLM and SGLang's chunked
    prefill does: ``n = ceil(s/C)`` chunks in turn, each attending to every earlier token's keys
    (from the KV cache; a window layer's: those its windows reach, docs/conventions.md §16 item 17)
    and its own. TTFT sums the chunk times (and their stage-to-stage sends); only the last chunk
    computes logits; the activation peak is one chunk's (``b*C`` tokens) while the KV cache holds
    the whole prompt. Flash attention only (the kernels those engines chunk with); ``seq_len`` and
    C must be numbers. NB: the earlier keys are read at the activations' bytes per element, and
    multi-head latent attention's re-expansion of the cached prefix latents is not counted. ``None``: one chunk.

    >>> from symcost import models
    >>> step = models.get("llama-3-8b").inference_step("H100_SXM", 1, 32768, prefill_chunk=8192)
    >>> # one chunk's peak: a block's residual 2h plus its MLP's input and output 4h, gate and up 4f
    >>> step.num_prefill_chunks, step.activation_memory == (2 * 4096 + 4 * 4096 + 4 * 14336) * 8192
    (4, True)

    Positive int sizes without ``prefill_chunk`` run a program compiled once (:func:`compile_step`);
    ``exact=False``: its float64 values."""
    overlap, exact = checked_switch(overlap, "overlap"), checked_switch(exact, "exact")  # stage_layers: stage_split
    sizes = csteps.sizes(batch_size, seq_len) if prefill_chunk is None and csteps.USE_COMPILED else None
    compiled = None if sizes is None else inference_front(model, hardware, dtype, parallelism, overlap, stage_layers)
    if (fast := csteps.run(compiled, sizes, exact)) is not None:
        return fast
    chip, par = get_hardware(hardware), resolve_parallelism(model, parallelism)
    check_expert_parallel(par)
    split = stage_split(model, par.pp, 1, stage_layers)
    datatype = DataType.parse(dtype)
    b, s = (sym.batch_size if batch_size is None else dim(batch_size, "batch_size"),
            sym.seq_len if seq_len is None else dim(seq_len, "seq_len"))
    chunk = _check_chunked(s, _prefill_chunk(prefill_chunk, par), overlap)
    p = par.pp
    sharded = model.with_parallelism(par)
    decode_rows = sharded.breakdown(b, s, "decode", datatype, chip, "none", overlap)
    hops = (p - 1) if p != 1 else 0
    one = _boundary_send(par, chip, b, sharded.hidden_size, datatype)

    def send(tokens: Any, ranks: Any = par.chips_per_replica) -> Any:  # every stage boundary's send
        return hops * one(tokens, ranks) if p != 1 else 0

    ttft, act, prefill_rows, n_chunks = _prefill(sharded, b, s, chunk, datatype, chip, overlap, send)
    tpot = _decode_time(decode_rows, send, chip, par.tp)
    # the engine's own time per step (docs/conventions.md §17), once per chunk (vLLM's, SGLang's schedulers)
    ttft += n_chunks * chip.runtime.step_overhead
    weights, kv, memory = _stage_memory(sharded, decode_rows, datatype, p, split, act)
    values = dict(ttft=ttft, tpot=tpot, kv_cache_memory=kv, weight_memory=weights, activation_memory=act,
                  memory_per_chip=memory, tokens_per_second=b / tpot)
    return InferenceStep(**{k: exact_value(x) for k, x in values.items()}, prefill_rows=tuple(prefill_rows),
                         decode_rows=tuple(decode_rows), hardware=chip, stage_layers=split,
                         prefill_chunk=None if chunk is None else int(chunk), num_prefill_chunks=n_chunks)


def _boundary_send(par: Parallelism, chip: Hardware, b: Any, h: Any, datatype: DataType) -> Callable[..., Any]:
    """``one(tokens, ranks)``: the time of one stage boundary's send, the ``b * tokens * h``
    activations split over ``ranks`` chips (default: a replica's), to the next stage's chips
    (``stride`` chips on); 0 with one stage. The activations travel in bf16 for 8- and 4-bit
    models, as their TP collectives do (``Context.wire_bytes``)."""
    stride = par.chips_per_replica * par.dp
    wire = max(datatype.bytes, 2)

    def one(tokens: Any, ranks: Any = par.chips_per_replica) -> Any:
        if par.pp == 1:
            return sp.Integer(0)
        return span_time("p2p", 2, b * tokens * h * wire / ranks, chip, stride)
    return one


def prefill_stage_time(model: "Model", hardware: Hardware | str, batch_size: Any, seq_len: Any, dtype: Any = "bf16",
                       parallelism: ParallelismLike = None, *, stage_layers: Optional[Sequence[int]] = None) -> Any:
    """The slowest pipeline stage's part of one (unchunked) prefill of ``batch_size`` sequences of
    ``seq_len`` tokens: the stage's layers plus its send to the next stage (none from the last),
    plus the engine's own time per step (docs/conventions.md §17); with one stage, the TTFT of
    :func:`inference_step`.

    A pipelined instance admits the next prefill once its first stage is free and keeps the
    slowest one busy for this long per prefill, so this is the service time of its queue
    (DistServe's ``D_m``, Zhong et al. 2024 §3.1 eq. 2), while a prompt's TTFT (``D_s``) passes
    every stage in turn: the stages' sum. NB: the engine's step time stays serial with the stage,
    as it is with the whole prefill without stages, so ``D_m = D_s`` at one stage.

    >>> from symcost import models
    >>> m, tp = models.get("llama-3-8b"), {"tensor_parallel": 2}
    >>> prefill_stage_time(m, "H100_SXM", 1, 4096, parallelism=tp) == m.inference_step("H100_SXM", 1, 4096,
    ...                                                                                   parallelism=tp).ttft
    True
    """
    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    check_expert_parallel(par)
    split = stage_split(model, par.pp, 1, stage_layers)
    datatype = DataType.parse(dtype)
    b, s = dim(batch_size, "batch_size"), dim(seq_len, "seq_len")
    sharded = model.with_parallelism(par)
    rows = sharded.breakdown(b, s, "prefill", datatype, chip, "none", False)
    one = _boundary_send(par, chip, b, sharded.hidden_size, datatype)
    # each distinct stage: its layers, and its send unless it is the last (index p - 1)
    times = [st["latency"] + (one(s) if st["index"] != par.pp - 1 else 0)
             for st in stages_from_parts(model_parts(sharded, rows, datatype), par.pp, split)]
    return exact_value(max_all(times) + chip.runtime.step_overhead)


def _decode_time(decode_rows: list, send: Callable[..., Any], chip: Hardware, tp: Any) -> Any:
    """One decode step: the new token passes every layer (every stage in turn), each stage
    boundary's send of its activations (split over the TP ranks: ``send(1, tp)``), and the
    engine's own time per step (docs/conventions.md §17)."""
    tpot = end_stages(values_from_rows(decode_rows), "latency", 1)[0] + send(1, tp)
    return tpot + chip.runtime.step_overhead


def decode_step(model: "Model", hardware: Hardware | str, batch_size: Any, seq_len: Any, dtype: Any = "bf16",
                parallelism: ParallelismLike = None) -> DecodeStep:
    """One decode step of ``batch_size`` sequences attending to ``seq_len`` keys on an instance that
    only decodes (a disaggregated decode pool: the KV cache arrives over the network and nothing is
    prefilled there, so no prefill rule applies): the TPOT as :func:`inference_step` times it, and
    memory per chip as the fullest stage's weights and KV cache plus the decode step's activation
    peak (one new token per sequence), not a prefill's.

    Under context or Ulysses parallelism the keys are split ``n = sp * cp`` ways
    (docs/conventions.md §3b), so ``seq_len`` must be a multiple of n: a caller costing a context of
    ``k`` keys on the fullest rank passes ``n * ceil(k / n)``.

    >>> from symcost import models
    >>> m = models.get("llama-3-8b")
    >>> decode_step(m, "H100_SXM", 8, 4096).tpot == m.inference_step("H100_SXM", 8, 4096).tpot
    True
    """
    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    check_expert_parallel(par)
    split = stage_split(model, par.pp, 1, None)
    datatype = DataType.parse(dtype)
    b, s = (sym.batch_size if batch_size is None else dim(batch_size, "batch_size"),
            sym.seq_len if seq_len is None else dim(seq_len, "seq_len"))
    sharded = model.with_parallelism(par)
    rows = sharded.breakdown(b, s, "decode", datatype, chip, "none", False)
    one = _boundary_send(par, chip, b, sharded.hidden_size, datatype)
    hops = (par.pp - 1) if par.pp != 1 else 0

    def send(tokens: Any, ranks: Any) -> Any:  # as inference_step sends
        return hops * one(tokens, ranks) if par.pp != 1 else 0

    act = _activation_peak(rows)
    weights, kv, memory = _stage_memory(sharded, rows, datatype, par.pp, split, act)
    values = dict(tpot=_decode_time(rows, send, chip, par.tp), weight_memory=weights, kv_cache_memory=kv,
                  activation_memory=act, memory_per_chip=memory)
    return DecodeStep(**{k: exact_value(x) for k, x in values.items()}, hardware=chip)


def _check_chunked(s: Any, chunk: Any, overlap: bool) -> Any:
    """``chunk``, once checked against ``s`` and ``overlap``."""
    if chunk is not None and not (s.is_Integer and chunk.is_Integer):
        raise ConfigError(f"prefill_chunk: a chunked prefill needs a numeric seq_len and prefill_chunk "
                         f"(got {s} and {chunk}); its TTFT is a sum over ceil(seq_len/prefill_chunk) chunks")
    if chunk is not None and overlap:
        raise ConfigError("prefill_chunk: a chunked prefill with overlap=True is not modelled")
    return chunk


def _prefill(sharded: "Model", b: Any, s: Any, chunk: Any, datatype: DataType, chip: Hardware,
             overlap: bool, send: Any) -> tuple[Any, Any, list, int]:
    """TTFT (before the engine's overhead), the activation peak, the rows and the chunk count of
    the prefill: one pass, or ``ceil(s/C)`` chunks each attending to the earlier keys."""
    if chunk is None or chunk >= s:
        prefill_rows = sharded.breakdown(b, s, "prefill", datatype, chip, "none", overlap)
        return rows_latency(prefill_rows) + send(s), _activation_peak(prefill_rows), prefill_rows, 1
    C, total_len = int(chunk), int(s)
    full, rest = divmod(total_len, C)
    n_chunks = full + (1 if rest else 0)
    rows_c = sharded.breakdown(b, C, "prefill", datatype, chip, "none", overlap)
    _check_flash(rows_c, sharded)
    peak = chip.effective_peak(datatype)
    # every chunk but the last skips the LM head (no token is sampled from it)
    _, heads, head = ByPart.of(rows_c).lm_head
    lm_head = heads * sp.sympify(head.latency)
    ttft = (full * (rows_latency(rows_c) + send(C)) - (n_chunks - 1) * lm_head
            + chunk_attention_time(rows_c, 0, full, C, chip, peak, datatype))
    if rest:
        rows_r = sharded.breakdown(b, rest, "prefill", datatype, chip, "none", overlap)
        ttft += (rows_latency(rows_r) + send(rest)
                 + chunk_attention_time(rows_r, full * C, 1, C, chip, peak, datatype))
    return ttft, _activation_peak(rows_c), rows_c, n_chunks


def _memory_expr(model: "Model", chip: Hardware, b: Any, s: Any, q: Any, datatype: DataType,
                 par: Parallelism) -> Any:
    """Memory per chip serving ``b`` sequences of ``s`` tokens whose prefill runs ``q`` tokens per
    sequence at a time (``q = s`` unchunked)."""
    sharded = model.with_parallelism(par)
    rows = sharded.breakdown(b, q, "prefill", datatype, chip, "none", False)
    if q is not s:
        _check_flash(rows, model)
    decode_rows = sharded.breakdown(b, s, "decode", datatype, chip, "none", False)
    split = stage_split(model, par.pp, 1, None)
    return _stage_memory(sharded, decode_rows, datatype, par.pp, split, _activation_peak(rows))[2]


def max_batch_size(model: "Model", hardware: Hardware | str, seq_len: Any, dtype: Any = "bf16",
                   parallelism: ParallelismLike = None, prefill_chunk: Any = None):
    """The largest batch whose weights, KV cache at ``seq_len`` and activations fit one chip's
    HBM (a :class:`~symcost.analysis.solve.IntegerSolution`, verified at n and n + 1). With
    ``prefill_chunk`` C the activations are one chunk's (``min(C, seq_len)`` tokens per sequence).

    >>> from symcost import models
    >>> models.get("llama-3-70b").max_batch_size("H100_SXM", 32768, parallelism={"tensor_parallel": 8},
    ...                                          prefill_chunk=2048).value
    46
    """
    from ..analysis.solve import max_integer

    chip = get_hardware(hardware)
    if prefill_chunk is None:
        step = inference_step(model, chip, None, seq_len, dtype, parallelism)
        return max_integer(step.memory_per_chip, sym.batch_size, chip.hbm_capacity, kind="bytes")
    par = resolve_parallelism(model, parallelism)
    s = dim(seq_len, "seq_len")
    chunk = _prefill_chunk(prefill_chunk, par)
    q = chunk if (s - chunk).is_nonnegative else s
    if q is not chunk and (s - chunk).is_negative is not True:
        raise ConfigError(f"prefill_chunk: cannot tell whether seq_len {s} exceeds prefill_chunk {chunk}")
    memory = _memory_expr(model, chip, sym.batch_size, s, q, DataType.parse(dtype), par)
    return max_integer(memory, sym.batch_size, chip.hbm_capacity, kind="bytes")


def max_context(model: "Model", hardware: Hardware | str, batch_size: Any = 1, dtype: Any = "bf16",
                parallelism: ParallelismLike = None, prefill_chunk: Any = None):
    """The longest context (``seq_len``) whose weights, KV cache and activations fit one chip's
    HBM for ``batch_size`` sequences, verified at n and n + 1 (a multiple of the Ulysses degree).

    With ``prefill_chunk`` C (see :func:`inference_step`) the activations are those of one chunk
    of ``min(C, s)`` tokens, so past C only the KV cache grows: the limit is solved for
    ``s <= C`` (the unchunked memory) and, when C itself fits, for ``s >= C`` (weights + KV cache
    at s + one chunk's activations); memory grows with s, so the two regimes meet at C.

    >>> from symcost import models
    >>> m = models.get("llama-3-70b")
    >>> m.max_context("H100_SXM", parallelism={"tensor_parallel": 8}).value      # prefill activations bind
    653517
    >>> m.max_context("H100_SXM", parallelism={"tensor_parallel": 8}, prefill_chunk=8192).value
    1653772
    """
    from ..analysis.solve import max_integer

    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    if not (par.sp.is_Integer and par.cp.is_Integer):
        raise ConfigError(f"max_context: sequence_parallel and context_parallel must be numbers, got {par.sp} "
                          f"and {par.cp}")
    if not par.seq_multiple.is_Integer:  # Megatron SP splits the prompt t ways
        raise ConfigError(f'max_context: tensor_parallel must be a number under sequence_parallel="tp" (it splits '
                          f"the prompt), got {par.tp}")
    if prefill_chunk is None:
        step = inference_step(model, chip, batch_size, None, dtype, par)
        return max_integer(step.memory_per_chip, sym.seq_len, chip.hbm_capacity, multiple_of=int(par.seq_multiple),
                           kind="bytes")
    chunk = _prefill_chunk(prefill_chunk, par)
    if chunk is None or not chunk.is_Integer:
        raise ConfigError(f"prefill_chunk must be a number for max_context, got {chunk}")
    b = dim(batch_size, "batch_size")
    datatype = DataType.parse(dtype)
    s, multiple = sym.seq_len, int(par.sp)
    whole = _memory_expr(model, chip, b, s, s, datatype, par)
    short = max_integer(whole, s, chip.hbm_capacity, upper=int(chunk), multiple_of=multiple, kind="bytes")
    if short.value is None or short.value < chunk:
        return short  # nothing fits, or the limit lies within one chunk
    chunked = _memory_expr(model, chip, b, s, chunk, datatype, par)
    return max_integer(chunked, s, chip.hbm_capacity, lower=int(chunk), multiple_of=multiple, kind="bytes")


@functools.lru_cache(maxsize=64)
def _inference_program(model: "Model", chip: Hardware, par: Parallelism, datatype: DataType, overlap: bool,
                       stage_layers: Optional[tuple[int, ...]]) -> Optional[csteps.CompiledStep]:
    if not csteps.compilable(model, par, chip):
        return None
    b, s = sym.batch_size, sym.seq_len
    with collecting() as rules:
        step = inference_step(model, chip, b, s, datatype, par, overlap, stage_layers=stage_layers)
    sharded = model.with_parallelism(par)
    stages = stages_from_parts(model_parts(sharded, list(step.decode_rows), datatype), par.pp, step.stage_layers)
    exprs = {"ttft": step.ttft, "tpot": step.tpot, "activation": step.activation_memory,
             "tokens_per_second": step.tokens_per_second,
             **{f"weight{i}": st["weight"] for i, st in enumerate(stages)},
             **{f"kv{i}": st["kv"] for i, st in enumerate(stages)}}
    # NB: the decode rows' rules first, as the uncompiled step checks them (a float call that breaks
    # one raises the same message: csteps.run)
    found = merge(rules, *(m.assumptions for _, _, m in (*step.decode_rows, *step.prefill_rows)))

    def rows(b: int, s: int) -> list:
        return [sharded.breakdown(b, s, phase, datatype, chip, "none", overlap) for phase in ("prefill", "decode")]

    return csteps.CompiledStep("inference", Program.build("inference", (b, s), exprs, found), len(stages), chip,
                        step.stage_layers, rows)


def _inference_compiled(model: "Model", hardware: Hardware | str, dtype: Any, parallelism: ParallelismLike,
                        overlap: bool, stage_layers: Optional[Sequence[int]]) -> Optional[csteps.CompiledStep]:
    chip = get_hardware(hardware)
    par = resolve_parallelism(model, parallelism)
    check_expert_parallel(par)
    return _inference_program(model, chip, par, DataType.parse(dtype), bool(overlap),
                              checked_stage_layers(stage_layers))


def inference_front(model: "Model", hardware: Hardware | str, dtype: Any, parallelism: ParallelismLike,
                     overlap: bool, stage_layers: Optional[Sequence[int]]) -> Optional[csteps.CompiledStep]:
    """The inference step compiled once for this configuration (``None`` where it cannot be)."""
    return csteps.front("inference",
                        lambda: _inference_compiled(model, hardware, dtype, parallelism, overlap, stage_layers),
                  model, hardware, dtype, parallelism, overlap, stage_layers)


on_register(_inference_program.cache_clear)  # its times are the registered time model's
