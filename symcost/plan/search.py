"""Parallelism search: enumerate, discard what does not divide or fit, rank by time.

For a training job the candidates are every combination of tensor (t), pipeline (p), data (d),
sequence (Megatron ``"tp"`` or a Ulysses degree u, where every layer models Ulysses), context
(cp, only the degrees asked for) and expert (e) parallelism with ``t * u * cp * p * d =
num_chips``, a micro-batch size, an interleaving degree, a recompute mode and a ZeRO stage.
Layer costs are compiled once per
(sequence mode, recompute mode, overlap, cp) with ``b``, ``t``, ``u`` and ``e`` free, the
pipeline/DP/memory assembly once per (ZeRO stage, p = 1?, v = 1?) with ``cp`` free when a degree
other than 1 is tried, and all candidates are evaluated as NumPy arrays — the same expressions as
:meth:`Model.training_step`, in float64.

>>> from symcost import models, search
>>> table = search.parallelism(models.get("llama-3-8b"), "H100_SXM", num_chips=16,
...                            global_batch=64, seq_len=4096)
>>> best = table.best
>>> best["tp"] * best["pp"] * best["dp"] * best["sp"] == 16
True
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence, cast

import numpy as np
import sympy as sp

from ..core import symbols as sym
from ..core.binding import on_register
from ..core.dtypes import DataType
from ..core.parallelism import Parallelism
from ..core.sweep import Sweeper
from ..errors import ConfigError
from ..hardware import Hardware
from ..hardware import get as get_hardware
from ..layers.base import Recompute
from ..models.model import Model
from .pipeline import chunk_blocks, chunk_groups, model_parts, pipeline_stages, stage_layout
from .training import StepComm, TrainingOptions, TrainingRun, assemble_training, tensor_format

__all__ = ["Constraints", "SearchOptions", "SearchResult", "parallelism", "ulysses_skipped"]

_COLUMNS = ("tp", "pp", "dp", "sp", "cp", "megatron_sp", "ep", "micro_batch", "interleave", "overlap", "recompute",
            "recompute_layers", "zero_stage", "step_time", "memory_per_chip", "mfu", "tokens_per_second")
_QUANTITIES = ("latency", "weight", "activation", "tp_summed")  # tp_summed: the TP gradient sum (training)
_TIED = ("shared_weight", "embedding_group")
"""A tied LM head's stage quantities under pipeline parallelism (:func:`.pipeline.stages_from_parts`)."""


@dataclass(frozen=True)
class SearchResult:
    """Ranked configurations (fastest first) that divide and fit; ``num_candidates`` counts
    every enumerated combination, ``num_valid`` those that divide, ``num_fit`` the rows ranked
    (that fit and meet the constraints), ``num_block`` how many of those are block-recompute rows,
    refined from the ``"full"`` ones (:class:`SearchOptions`; not among ``num_candidates`` and
    ``num_valid``, so ``num_fit`` may exceed ``num_valid``)."""

    columns: dict[str, np.ndarray]
    num_candidates: int
    num_valid: int
    num_fit: int
    seconds: float
    num_block: int = 0
    notes: tuple[str, ...] = ()
    """What the search left out of the enumeration and why, one line each (e.g. Ulysses sequence
    parallelism on a model with a layer that does not model it: :func:`ulysses_skipped`)."""

    def __len__(self) -> int:
        return len(next(iter(self.columns.values())))

    def row(self, i: int) -> dict[str, Any]:
        """The ``i``-th best configuration as a dict of plain Python values."""
        out = {}
        for k, col in self.columns.items():
            value = col[i].item()
            out[k] = bool(value) if k in ("megatron_sp", "overlap", "expert_grid") else value
        if out.get("recompute_layers", 0) < 0:
            out["recompute_layers"] = None  # every block under its recompute mode (_EVERY_BLOCK)
        return out

    @property
    def best(self) -> Optional[dict[str, Any]]:
        """The fastest configuration that fits, or ``None``."""
        return self.row(0) if len(self) else None

    def rows(self, n: Optional[int] = None) -> list[dict[str, Any]]:
        """The ``n`` best rows (all by default)."""
        return [self.row(i) for i in range(len(self) if n is None else min(n, len(self)))]

    def to_pandas(self) -> Any:
        """The ranked table as a pandas DataFrame, one row per configuration, fastest first (the
        index is the rank): a column per degree and option (``tp``, ``pp``, ``dp``, ``sp``, ...), the
        times (``step_time``, or ``ttft`` and ``tpot``), ``memory_per_chip``, ``mfu`` (training),
        ``tokens_per_second`` and ``fits`` (true on every row: only what fits is ranked);
        ``recompute_layers`` (training) is a nullable ``Int64`` column, missing where :meth:`row`
        gives ``None``. Needs the ``pandas`` extra."""
        try:
            import pandas as pd
        except ImportError:
            raise ImportError("to_pandas needs pandas: pip install 'symcost[pandas]'") from None
        frame = pd.DataFrame({k: np.asarray(col) for k, col in self.columns.items()})
        if "recompute_layers" in frame:  # as row(): missing (None there) where every block runs its mode
            layers = frame["recompute_layers"].astype("Int64")
            frame["recompute_layers"] = layers.mask(layers < 0)
        frame["fits"] = np.ones(len(frame), dtype=bool)
        return frame

    def parallelism(self, i: int = 0) -> Parallelism:
        """The ``i``-th configuration's :class:`Parallelism`."""
        r = self.row(i)
        seq = "tp" if r["megatron_sp"] else r["sp"]
        return Parallelism(tensor_parallel=r["tp"], pipeline_parallel=r["pp"], data_parallel=r["dp"],
                           sequence_parallel=seq, expert_parallel=r["ep"], context_parallel=r.get("cp", 1),
                           expert_tensor_parallel=r["etp"] if r.get("expert_grid") else None)

    def __str__(self) -> str:
        return self.format(10)

    def __repr__(self) -> str:
        from .display import search_repr
        return search_repr(self)

    def _repr_html_(self) -> str:
        """The ten best rows, ranked, with units; the chosen (fastest) row highlighted."""
        from .display import search_html
        return search_html(self, 10)

    def format(self, n: int = 10) -> str:
        """The counts and the ``n`` best rows as a text table (times, bytes, MFU with units)."""
        from .display import fit_count, search_cell, search_columns

        head = (f"{self.num_candidates:,} candidates, {self.num_valid:,} divide, {fit_count(self)} "
                f"({self.seconds:.2f} s)\n") + "".join(f"{note}\n" for note in self.notes)
        cols = search_columns(self)
        lines = ["  ".join(f"{c:>11}" for c in cols)]
        for r in self.rows(n):
            lines.append("  ".join(f"{search_cell(r, c):>11}" for c in cols))
        return head + "\n".join(lines)


def _divisors(n: int) -> list[int]:
    return [int(x) for x in sp.divisors(n)]


def _heads(model: Model) -> tuple[int, Optional[int]]:
    # the first block with heads (a hybrid's may start with a mixer-less MLP block)
    blk = next(b for b, _ in model.blocks if b.query_heads is not None)
    a = int(cast(Any, blk.query_heads))
    g = None if blk.kv_heads is None else int(blk.kv_heads)
    return a, g


def ulysses_skipped(model: Model) -> tuple[str, ...]:
    """One note per layer type of ``model`` for which Ulysses sequence parallelism is not modelled
    (its ``ulysses_unmodelled`` reason, :class:`~symcost.layers.base.Layer`): the training search
    enumerates no Ulysses degree for such a model (``u = 1``; Megatron SP is still tried).

    >>> from symcost import models
    >>> ulysses_skipped(models.get("deepseek-v3"))
    ('Ulysses sequence parallelism skipped: not modelled for multi-head latent attention (MLALayer)',)
    >>> ulysses_skipped(models.get("llama-3-8b"))
    ()
    """
    reasons = {type(layer).__name__: type(layer).ulysses_unmodelled
               for blk, _ in model.blocks for layer in (blk, *blk.parts)}
    return tuple(f"Ulysses sequence parallelism skipped: not modelled for {why} ({name})"
                 for name, why in sorted(reasons.items()) if why)


def _valid_tp(model: Model, t: int) -> bool:
    return _accepts(model, {"tensor_parallel": t})


def _accepts(model: Model, par: dict[str, int]) -> bool:
    """Whether every layer of ``model`` accepts the degrees ``par`` (a Mamba-2 layer refuses
    context parallelism, say)."""
    try:
        model.with_parallelism(par)
    except ValueError:
        return False
    return True


_P, _D, _V = sp.Symbol("_p", positive=True, integer=True), sp.Symbol("_d", positive=True, integer=True), \
    sp.Symbol("_v", positive=True, integer=True)


def _expert_tp_degrees(values: Sequence[Optional[int]]) -> tuple[int, ...]:
    """The expert-TP degrees to try, checked, as codes: 0 for ``None`` (experts split ``tp`` ways)."""
    degrees = tuple(values)
    if not degrees or any(c is not None and (isinstance(c, bool) or int(c) != c or c < 1) for c in degrees):
        raise ConfigError(f"expert_tensor_parallel must be None or positive int degrees to try, got {values!r}")
    return tuple(sorted(set(0 if c is None else int(c) for c in degrees)))


def _context_degrees(values: Sequence[int]) -> tuple[int, ...]:
    """The context-parallel degrees to try, checked: positive ints, at least one."""
    degrees = tuple(values)
    if not degrees or any(isinstance(c, bool) or int(c) != c or c < 1 for c in degrees):
        raise ConfigError(f"context_parallel must be positive int degrees to try, got {values!r}")
    return tuple(sorted(set(int(c) for c in degrees)))


def parallelism(model: Model, hardware: Hardware | str, num_chips: int, global_batch: int, seq_len: int,
                phase: str = "training", dtype: str = "bf16", *, options: Optional["SearchOptions"] = None,
                **overrides: Any) -> SearchResult:
    """Rank every training configuration of ``model`` on ``num_chips`` chips by step time.

    Discards configurations that do not divide (heads, KV heads, FFN width, vocabulary, batch,
    sequence, experts), that have more pipeline stages than layers or an interleaving degree that
    does not divide every stage, or that do not fit the chip's HBM. Pipeline stages are split as
    :func:`~symcost.plan.step.pipeline_stages` does (uneven when ``p`` does not divide the layers: the
    slowest stage sets the pace, the fullest the memory). The model's own parallelism is ignored:
    the search chooses every degree. ZeRO-2/3 with pipeline stages is FSDP as torchtitan and Meta
    run it (docs/explanation/modelling.md, data parallelism). ``overlap=(False, True)`` also tries
    hiding TP/SP communication behind compute. Returns a :class:`SearchResult`.

    With ``phase="inference"``: every (t, p, d) serving ``global_batch`` sequences of ``seq_len``
    tokens (``global_batch / d`` per replica), ranked by ``objective`` (``"tpot"`` or ``"ttft"``).
    ``progress(fraction, stage)`` is called as the search advances (the CLI draws its bar with it).

    Constraints (:class:`Constraints`): ``max_tp`` drops the candidates with a larger tensor-parallel
    degree; ``min_mfu`` (training) those whose MFU is lower; ``memory_headroom`` h keeps that
    fraction of HBM free (a candidate fits when its memory per chip is at most ``(1 - h)`` x HBM).
    ``price_per_hour`` (the price of one chip for one hour, in any currency) adds the column
    ``cost_per_token``: ``price_per_hour * num_chips / 3600 / tokens_per_second``, that currency per
    token. ``num_fit`` counts the rows that fit and meet the constraints, ``num_block`` the
    block-recompute rows among them (added to the enumeration's: ``num_fit`` may exceed ``num_valid``).

    ``dp_overlap``, ``pp_overlap`` and ``grad_reduce_in_fp32`` rank under the training step's
    switches of those names (:func:`~symcost.plan.training.training_step`; all on by default).
    ``expert_tensor_parallel`` (MoE models): the expert-TP degrees tried, ``None`` (the default,
    experts split ``tp`` ways) or ints, Megatron-Core's expert grid, where EP need only divide
    ``tp * cp * dp`` and Megatron SP is used with ``tp > 1``; the columns ``etp`` and
    ``expert_grid`` say which each row runs.
    Every option is a field of :class:`SearchOptions`: give them as keywords or as
    ``options=SearchOptions(...)`` (keywords replace its fields). ``context_parallel``: the
    context-parallel degrees tried (default only 1); each degree c joins the product
    ``t * u * c * p * d = num_chips`` where it divides and ``seq_len`` splits into ``2 * c * u``
    chunks (docs/conventions.md §3b), and fills the column ``cp``.
    A model with a layer that does not model Ulysses (``MLALayer``, ``Mamba2Layer``) is searched
    with ``u = 1`` (Megatron SP still tried); the result's ``notes`` say so (:func:`ulysses_skipped`).
    """
    import time

    start = time.perf_counter()
    opts = SearchOptions.of(options, overrides)
    model = model.with_parallelism(None)  # the search sets every degree itself
    limits = Constraints.of(opts.max_tp, opts.min_mfu, opts.memory_headroom, opts.price_per_hour, phase)
    cps = _context_degrees(opts.context_parallel)
    job = _Job(int(num_chips), int(global_batch), int(seq_len))
    if phase == "inference":
        return _inference(model, get_hardware(hardware), DataType.parse(dtype), job,
                          (opts.objective, limits, cps), start)
    if phase != "training":
        raise ConfigError(f"phase: 'training' or 'inference', got {phase!r}")
    chip = get_hardware(hardware)
    datatype = DataType.parse(dtype)
    modes = tuple(m for m in opts.recompute if m != "block")
    space = _Space(model, job.N, job.B, job.s, opts.max_micro_batch, opts.max_interleave, modes,
                   tuple(opts.zero_stages), tuple(opts.overlap), cps, opts.sync,
                   _expert_tp_degrees(opts.expert_tensor_parallel), "block" in opts.recompute)
    return _training(space, chip, datatype, limits, opts.progress or (lambda fraction, stage: None), start)


class _Job(NamedTuple):
    """The job searched for: chips, global batch (sequences per step), sequence length."""

    N: int
    B: int
    s: int


@dataclass(frozen=True)
class SearchOptions:
    """What a search tries and what it keeps, besides the job (see :func:`parallelism`, which takes
    these as keywords too: ``parallelism(..., max_tp=8)`` is ``parallelism(...,
    options=SearchOptions(max_tp=8))``).

    >>> SearchOptions.of(SearchOptions(max_tp=8), {"min_mfu": 0.4}).max_tp
    8
    """

    max_micro_batch: int = 16
    max_interleave: int = 8
    recompute: Sequence[str] = ("none", "selective", "full", "block")
    """The recompute modes tried: ``"none"``, ``"selective"``, ``"full"`` and ``"block"``, which
    refines every ``"full"`` row that fits (and whose layout does not fit without recomputation)
    to the fewest blocks per pipeline stage that fit, Megatron-Core's ``--recompute-method block
    --recompute-num-layers N`` (:func:`parallelism`); it needs ``"full"``."""
    zero_stages: Sequence[int] = (0, 1, 2, 3)
    overlap: Sequence[bool] = (False,)
    objective: str = "tpot"
    progress: Optional[Callable[[float, str], None]] = None
    max_tp: Optional[int] = None
    min_mfu: Optional[float] = None
    memory_headroom: float = 0.0
    price_per_hour: Optional[float] = None
    context_parallel: Sequence[int] = (1,)
    dp_overlap: bool = True
    """The data-parallel sync hidden behind compute (:func:`~symcost.plan.training.training_step`'s)."""
    pp_overlap: bool = True
    """An interleaved pipeline's sends hidden but the fill's and the drain's (the step's)."""
    grad_reduce_in_fp32: bool = True
    """fp32 gradients and reduction, else bf16 (the step's)."""
    expert_tensor_parallel: Sequence[Optional[int]] = (None,)
    """The expert-TP degrees tried for MoE models: ``None`` splits each expert ``tp`` ways (the MoE
    layer's default flow), an int runs Megatron-Core's expert grid (:class:`Parallelism`'s
    ``expert_tensor_parallel``)."""

    def __post_init__(self) -> None:
        """One line naming the field for a value that would cost nothing or a wrong layout."""
        for name in ("max_micro_batch", "max_interleave", "max_tp"):
            value = getattr(self, name)
            if value is None and name == "max_tp":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number of at least 1, got {value!r}")
        if not tuple(self.zero_stages):
            raise ConfigError("zero_stages must name at least one stage (0 to 3)")
        for stage in self.zero_stages:
            if isinstance(stage, bool) or stage not in (0, 1, 2, 3):
                raise ConfigError(f"zero_stages must be ZeRO stages 0 to 3, got {stage!r}")
        if self.objective not in ("tpot", "ttft"):
            raise ConfigError(f"objective must be 'tpot' or 'ttft', got {self.objective!r}")
        if self.min_mfu is not None and not 0 < self.min_mfu <= 1:
            raise ConfigError(f"min_mfu must be above 0 and at most 1, got {self.min_mfu!r}")
        modes = tuple(self.recompute)
        if not modes or any(m not in ("none", "selective", "full", "block") for m in modes):
            raise ConfigError(f"recompute must name modes among 'none', 'selective', 'full' and 'block', got {modes!r}")
        if "block" in modes and "full" not in modes:
            raise ConfigError("recompute: 'block' refines the rows of 'full' (the fewest blocks per stage that fit); "
                              "name 'full' too")

    @property
    def sync(self) -> StepComm:
        """The step's DP and PP communication under these switches."""
        return StepComm(bool(self.dp_overlap), bool(self.grad_reduce_in_fp32), bool(self.pp_overlap))

    @classmethod
    def of(cls, options: Optional["SearchOptions"], overrides: dict[str, Any]) -> "SearchOptions":
        """``options`` (default: every default) with ``overrides`` replacing its fields; an unknown
        name is refused in one line."""
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ConfigError(f"search.parallelism: unknown option {unknown[0]!r}; the options are {', '.join(names)}")
        return dataclasses.replace(options or cls(), **overrides)


def _training(space: "_Space", chip: Hardware, datatype: DataType, limits: "Constraints",
              report: Callable[[float, str], None], start: float) -> SearchResult:
    """The training search over ``space``: enumerate, evaluate as arrays, keep what fits, rank."""
    import time

    N, B, s = space.N, space.B, space.s
    cols, candidates = space.rows()
    if cols is None:
        return SearchResult({c: np.array([]) for c in _COLUMNS}, candidates, 0, 0, time.perf_counter() - start,
                            notes=space.notes)
    report(0.1, f"{candidates:,} candidates enumerated")
    quantities = _QUANTITIES + (("expert_weight",) if space.moe else ())  # routed experts: DP over dp/ep only
    if any(sp.sympify(blk.buffer_params) != 0 for blk, _ in space.model.blocks):
        quantities += ("buffer",)  # parameters without gradient (Layer.buffer_params)
    if tensor_format(datatype)[1] != 0:
        quantities += ("gemm_weight",)  # the GEMM weights' narrow copies (TrainingRun.weight_copy)
    tied = bool(space.model.lm_head.tied)  # the last stage's copy of the table and its sync (stages_from_parts)
    full = "full" in space.recompute  # a rebuilt block at the peak (pipeline.rebuild_peak): kept activations too
    values = _layer_values(space, cols, chip, datatype, quantities + (("tied_weight",) if tied else ())
                           + (("kept_activation",) if full else ()) + (("kept_latency",) if space.block else ()),
                           report)
    slots = _Slots.of(space, cols, values, quantities, tied)
    assembled = quantities + (_TIED if tied else ()) + (("recompute_peak",) if full else ())
    step, memory, mfu = _assemble(space, cols, slots, chip, datatype, assembled)
    fit = limits.keep(cols.t, memory, mfu, chip)
    layers = np.full(len(cols), _EVERY_BLOCK)
    ev = _Eval(space, chip, datatype, assembled, limits)
    # the "full" rows to refine by their memory alone: a block row is faster (higher MFU) than its
    # "full" row, so one that misses min_mfu may have block rows that meet it (filtered below)
    in_memory = limits.keep(cols.t, memory, None, chip)
    found = _block_rows(ev, cols, values, slots, (memory, in_memory)) if space.block else None
    if found is not None:
        extra, block_step, block_memory, block_mfu, n = found
        cols = _Columns.concat([cols, extra])
        step, memory, mfu = (np.concatenate(x) for x in ((step, block_step), (memory, block_memory), (mfu, block_mfu)))
        layers = np.concatenate([layers, n])
        fit = limits.keep(cols.t, memory, mfu, chip)
    report(1.0, "ranked")
    order = np.argsort(np.where(fit, step, np.inf), kind="stable")[: int(fit.sum())]
    columns = {
        "tp": cols.t[order], "pp": cols.p[order], "dp": cols.d[order], "sp": cols.u[order], "cp": cols.c[order],
        "megatron_sp": cols.msp[order].astype(bool), "ep": cols.e[order], "micro_batch": cols.b[order],
        "interleave": cols.v[order], "overlap": cols.ov[order].astype(bool),
        "recompute": np.array(space.recompute)[cols.rc[order]], "recompute_layers": layers[order],
        "zero_stage": cols.z[order], "step_time": step[order], "memory_per_chip": memory[order], "mfu": mfu[order],
        "tokens_per_second": B * s / step[order],
    }
    if space.moe and space.etps != (0,):  # the expert grid's degree (tp where experts split tp ways)
        columns["etp"] = np.where(cols.et == 0, cols.t, cols.et)[order]
        columns["expert_grid"] = (cols.et != 0)[order]
    limits.add_cost(columns, N)
    return SearchResult(columns, candidates, len(cols) - (0 if found is None else len(found[0])), int(fit.sum()),
                        time.perf_counter() - start, int((columns["recompute_layers"] >= 0).sum()),
                        notes=space.notes)


@dataclass(frozen=True)
class Constraints:
    """What a configuration must meet besides dividing and fitting (see :func:`parallelism`)."""

    max_tp: Optional[int] = None
    min_mfu: Optional[float] = None
    memory_headroom: float = 0.0
    price_per_hour: Optional[float] = None

    @classmethod
    def of(cls, max_tp: Optional[int], min_mfu: Optional[float], memory_headroom: float,
           price_per_hour: Optional[float], phase: str) -> "Constraints":
        """The constraints, checked once."""
        if max_tp is not None and (isinstance(max_tp, bool) or int(max_tp) != max_tp or max_tp < 1):
            raise ConfigError(f"max_tp must be a positive int, got {max_tp!r}")
        if not 0 <= memory_headroom < 1:
            raise ConfigError(f"memory_headroom is the fraction of HBM kept free, in [0, 1), got {memory_headroom!r}")
        if price_per_hour is not None and not price_per_hour > 0:
            raise ConfigError(f"price_per_hour (one chip for one hour) must be positive, got {price_per_hour!r}")
        if min_mfu is not None and phase == "inference":
            raise ConfigError("min_mfu constrains training searches only (an inference step has no MFU)")
        return cls(max_tp, min_mfu, float(memory_headroom), price_per_hour)

    def keep(self, tp: np.ndarray, memory: np.ndarray, mfu: Optional[np.ndarray], chip: Hardware) -> np.ndarray:
        """Where a candidate fits within the headroom and meets the constraints."""
        ok = memory <= (1 - self.memory_headroom) * float(chip.hbm_capacity)
        if self.max_tp is not None:
            ok &= tp <= self.max_tp
        if self.min_mfu is not None and mfu is not None:
            ok &= mfu >= self.min_mfu
        return ok

    def add_cost(self, columns: dict[str, np.ndarray], num_chips: int) -> None:
        """The ``cost_per_token`` column when a price is given."""
        if self.price_per_hour is not None:
            columns["cost_per_token"] = self.price_per_hour * num_chips / 3600 / columns["tokens_per_second"]


@dataclass(frozen=True)
class _Space:
    """The training configurations the search enumerates, and the model facts that prune them."""

    model: Model
    N: int
    B: int
    s: int
    max_micro_batch: int
    max_interleave: int
    recompute: tuple[str, ...]
    zero_stages: tuple[int, ...]
    overlap: tuple[bool, ...]
    cps: tuple[int, ...] = (1,)
    """The context-parallel degrees tried."""
    sync: StepComm = StepComm()
    """How the data-parallel and pipeline communication runs (:class:`SearchOptions`)."""
    etps: tuple[int, ...] = (0,)
    """The expert-TP degrees tried (MoE models), 0 for none (experts split ``tp`` ways)."""
    block: bool = False
    """Refine the fitting ``"full"`` rows by block recompute (:func:`_block_rows`)."""

    @property
    def notes(self) -> tuple[str, ...]:
        """The layouts left out, one line each (:func:`ulysses_skipped`)."""
        return ulysses_skipped(self.model)

    @property
    def moe(self) -> list[int]:
        return [int(n) for n in (blk.num_routed_experts for blk, _ in self.model.blocks) if n is not None]

    @property
    def splits(self) -> dict[int, Any]:
        L = int(self.model.num_layers)
        return {p: pipeline_stages(L, p) for p in _divisors(self.N) if p <= L}

    def degrees(self) -> Iterator[tuple[int, int, int, int, int]]:
        """Every ``(t, u, cp, p, d)`` with ``t * u * cp * p * d = N`` and ``cp`` one of :attr:`cps`.

        NB: a further degree is one more loop here, a field of :class:`_Columns` and an input of
        the compiled programs; the options of each degree tuple are enumerated by :meth:`group`."""
        for t in _divisors(self.N):
            for u in _divisors(self.N // t) if not self.notes else (1,):  # notes: Ulysses not modelled
                for cp in (c for c in self.cps if (self.N // (t * u)) % c == 0):
                    for p in _divisors(self.N // (t * u * cp)):
                        yield t, u, cp, p, self.N // (t * u * cp * p)

    def rows(self) -> tuple[Optional["_Columns"], int]:
        """The configurations that divide, as columns (``None`` when none does), and how many
        were enumerated (every degree tuple times its options)."""
        groups: list[_Columns] = []
        candidates = layouts = 0
        tp_ok = {t: _valid_tp(self.model, t) for t in _divisors(self.N)}
        cp_ok = {c: c == 1 or _accepts(self.model, {"context_parallel": c}) for c in self.cps}
        splits = self.splits
        for t, u, cp, p, d in self.degrees():
            axes = self._axes(t, p, d, splits, cp)
            candidates += math.prod(len(a) for a in axes)
            if (tp_ok[t] and cp_ok[cp] and p in splits and not self.B % d and self._ulysses_ok(t, u)
                    and self._context_ok(u, cp)):
                group = self.group(t, u, cp, p, d, axes)
                groups.append(dataclasses.replace(group, lay=group.lay + layouts))
                layouts += math.prod(len(a) for k, a in enumerate(axes) if k != _RC_AXIS)
        kept = [g for g in groups if len(g)]
        return (_Columns.concat(kept) if kept else None), candidates

    def _axes(self, t: int, p: int, d: int, splits: dict[int, Any], cp: int = 1) -> list[np.ndarray]:
        """The options of one degree tuple: expert degrees, micro-batches, interleaving degrees,
        Megatron SP off/on, recompute modes (indices into :attr:`recompute`), ZeRO stages,
        overlap off/on, expert-TP codes; the candidates are their product, in C order. The expert
        grid (an expert-TP degree) lets EP divide ``t * cp * d``, else EP divides ``d``
        (:func:`~symcost.plan.pipeline.check_expert_parallel`)."""
        experts = self.moe[0] if self.moe else 1
        etps = self.etps if self.moe else (0,)
        ranks = t * cp * d if any(etps) else d
        eps = [e for e in _divisors(ranks) if experts % e == 0] if self.moe else [1]
        micro = [b for b in _divisors(max(self.B // d, 1)) if b <= self.max_micro_batch]
        # interleaving splits every stage into v chunks of whole layers
        whole = math.gcd(*splits[p]) if p in splits else 1
        inter = [v for v in _divisors(whole) if v <= self.max_interleave] if p > 1 else [1]
        sp_modes = (False, True) if t > 1 else (False,)
        return [np.array(x, dtype=np.int64) for x in (eps, micro, inter, sp_modes, range(len(self.recompute)),
                                                      self.zero_stages, self.overlap, etps)]

    def group(self, t: int, u: int, cp: int, p: int, d: int, axes: list[np.ndarray]) -> "_Columns":
        """The candidates of one degree tuple that divide, as columns."""
        index = [i.ravel() for i in np.meshgrid(*(np.arange(len(a)) for a in axes), indexing="ij")]
        e, b, v, msp, rc, z, ov, et = (a[i] for a, i in zip(axes, index))
        # the layout (every option but the recompute mode), numbered within the group
        lay = np.ravel_multi_index([i for k, i in enumerate(index) if k != _RC_AXIS],
                                   [len(a) for k, a in enumerate(axes) if k != _RC_AXIS])
        keep = ~((u > 1) & (msp == 1))  # one sequence mode at a time
        if axes[-1].any():  # an expert-TP degree is tried (else EP divides d already: _axes)
            # EP divides d, or on the expert grid ETP x EP divides t x cp x d (check_expert_parallel)
            keep &= np.where(et == 0, d % e == 0, (t * cp * d) % np.maximum(et * e, 1) == 0)
            keep &= np.array([self._expert_tp_ok(int(c)) for c in axes[-1]])[index[-1]]
            # Megatron-Core's expert grid routes each TP rank's sequence shard: Megatron SP where t > 1
            keep &= (et == 0) | (msp == 1) | (t == 1)
        # Megatron SP splits the tokens t ways, each of the 2*cp load-balanced chunks under CP
        # (Layer.check; docs/conventions.md §3b)
        keep &= ~((msp == 1) & (self.s % (t if cp == 1 else 2 * cp * t) != 0)) & ((self.B // d) % b == 0)
        if d == 1:
            keep &= z == self.zero_stages[0]  # without data parallelism every ZeRO stage is the same
        n = int(keep.sum())
        full = functools.partial(np.full, n, dtype=np.int64)
        return _Columns(full(t), full(u), full(p), full(d), e[keep], b[keep], v[keep], msp[keep], ov[keep],
                        rc[keep], z[keep], full(cp), et[keep], lay[keep])

    @functools.lru_cache(maxsize=None)  # noqa: B019 (a handful of degrees per search)
    def _expert_tp_ok(self, code: int) -> bool:
        """Whether the routed experts split ``code`` ways (0: none, always)."""
        return code == 0 or _accepts(self.model, {"expert_tensor_parallel": code})

    def _ulysses_ok(self, t: int, u: int) -> bool:
        """Ulysses needs the heads (and KV heads) to split ``t * u`` ways."""
        a, g = _heads(self.model)
        return u == 1 or not (a % (t * u) or g is None or g % (t * u) or self.s % u)

    def _context_ok(self, u: int, cp: int) -> bool:
        """Context parallelism cuts the sequence into ``2 * cp`` load-balanced chunks, each split
        ``u`` ways (Layer.validate; docs/conventions.md §3b)."""
        return cp == 1 or not self.s % (2 * cp * u)


@dataclass(frozen=True)
class _Columns:
    """The enumerated configurations as one array per degree or switch."""

    t: np.ndarray
    u: np.ndarray
    p: np.ndarray
    d: np.ndarray
    e: np.ndarray
    b: np.ndarray
    v: np.ndarray
    msp: np.ndarray
    ov: np.ndarray
    rc: np.ndarray
    """The recompute mode, an index into the space's ``recompute``."""
    z: np.ndarray
    c: np.ndarray
    """The context-parallel degree."""
    et: np.ndarray
    """The expert-TP code: 0 (experts split ``t`` ways) or the expert grid's ETP degree."""
    lay: np.ndarray
    """The layout: candidates alike but for their recompute mode share it (:func:`_siblings`)."""

    @classmethod
    def concat(cls, groups: Sequence["_Columns"]) -> "_Columns":
        """The groups' candidates one after the other."""
        return cls(*(np.concatenate([getattr(g, f.name) for g in groups]) for f in dataclasses.fields(cls)))

    def __len__(self) -> int:
        return len(self.t)


def _part_names(model: Model) -> list[str]:
    return ["embedding", *(f"blocks[{i}]" for i in range(len(model.blocks))), "tail"]


def _layer_values(space: _Space, cols: _Columns, chip: Hardware, datatype: DataType, quantities: tuple[str, ...],
                  report: Callable[[float, str], None]) -> dict[tuple[str, str], np.ndarray]:
    """Per candidate, each quantity of the embedding, one block of each group and the tail (final
    norm + head), compiled per (sequence mode, recompute, context-parallel degree) with the
    latency once per overlap mode (the only quantity overlap changes)."""
    part_names = _part_names(space.model)
    values = {(part, q): np.zeros(len(cols)) for part in part_names for q in quantities}
    # NB: one variant serves t <= g and t > g alike: KV heads per chip are g/Min(g, t)
    # (symcost.layers.base.shard_heads), one whole KV head per chip past g as Megatron keeps it
    # NB: the context-parallel degree is a number in each variant, not a free symbol: cp = 1 is then
    # exactly the layers without CP, and the default search compiles nothing more
    etps = sorted(set(cols.et.tolist()))
    variants = list(itertools.product((False, True), enumerate(space.recompute), space.cps, etps))
    for i, (msp, (code, rc), cp, et) in enumerate(variants):
        report(0.1 + 0.7 * i / len(variants), "compiling layer variants")
        mask = (cols.msp == msp) & (cols.rc == code) & (cols.c == cp) & (cols.et == et)
        if not mask.any():
            continue
        sweeper = _layer_program(space.model, chip, datatype, space.s, (msp, rc, cp, et), space.overlap, quantities)
        inputs = {sym.batch_size: cols.b[mask], sym.tp: cols.t[mask], sym.sp: cols.u[mask], sym.ep: cols.e[mask]}
        out = sweeper({k: v for k, v in inputs.items() if k in sweeper.args})
        index = np.flatnonzero(mask)
        overlapped = cols.ov[index] == 1
        for name in sweeper.names:
            part, q, *mode = name.split(".")
            if not mode:
                values[(part, q)][index] = out[name]
            else:  # the latency with overlap off ("0") or on ("1"), where the candidate has that mode
                on = overlapped if mode == ["1"] else ~overlapped
                values[(part, q)][index[on]] = out[name][on]
    return values


@functools.lru_cache(maxsize=64)
def _layer_program(model: Model, chip: Hardware, datatype: DataType, s: int, variant: tuple[bool, str, int, int],
                   overlaps: tuple[bool, ...], quantities: tuple[str, ...]) -> Sweeper:
    """The quantities of every part of ``model`` with ``b``, ``t``, ``u`` and ``e`` free, compiled
    once per (model, chip, dtype, sequence length, ``variant``: (Megatron SP?, recompute, cp, expert-TP
    code)): the latency as
    ``part.latency.0`` and ``part.latency.1`` for each of ``overlaps`` (overlap off and on), the
    other quantities, which overlap does not change, once."""
    msp, rc, cp, et = variant
    # NB: the expert grid needs Megatron SP with t > 1 (its rows without it have t = 1: Space.group);
    # a model with a layer that does not model Ulysses runs u = 1 only (ulysses_skipped)
    par = {"tensor_parallel": sym.tp if msp or not et else 1, "expert_parallel": sym.ep,
           "sequence_parallel": "tp" if msp else (1 if ulysses_skipped(model) else sym.sp), "context_parallel": cp,
           "expert_tensor_parallel": et or None}
    sym_model = model.with_parallelism(par)
    exprs: dict[str, Any] = {}
    for ov in overlaps:
        rows_ = sym_model.breakdown(sym.batch_size, s, "training", datatype, chip, cast(Recompute, rc), bool(ov))
        parts = model_parts(sym_model, rows_, tensor_format(datatype)[0], "gemm_weight" in quantities)
        if "kept_activation" in quantities:
            _kept_activations(parts, sym_model, (s, datatype, chip, rc, bool(ov)), "kept_latency" in quantities)
        named = {"embedding": parts["embedding"], "tail": parts["tail"],
                 **{f"blocks[{j}]": q for j, (_, q) in enumerate(parts["blocks"])}}
        for part in _part_names(model):
            for q in (q for q in quantities if q in named[part]):
                # NB: overlap changes the latency only (hardware.timing.layer_times), so the other
                # quantities are taken from the first mode
                latency = q in ("latency", "kept_latency")
                exprs.setdefault(f"{part}.{q}" + (f".{int(ov)}" if latency else ""), named[part][q])
    return Sweeper(exprs, fast_compile=True)


def _kept_activations(parts: dict[str, Any], sym_model: Model, how: tuple[int, DataType, Hardware, str, bool],
                      latency: bool = False) -> None:
    """Each block's activations without recomputation as ``kept_activation`` (what a rebuilt block
    holds again, :func:`~symcost.plan.pipeline.rebuild_peak`), beside ``parts``' own; with
    ``latency`` its latency without recomputation too, ``kept_latency`` (block recompute)."""
    s, datatype, chip, rc, ov = how
    kept = parts
    if rc != "none":
        rows = sym_model.breakdown(sym.batch_size, s, "training", datatype, chip, "none", ov)
        kept = model_parts(sym_model, rows, tensor_format(datatype)[0])
    for (_, q), (_, k) in zip(parts["blocks"], kept["blocks"], strict=True):
        q["kept_activation"] = k["activation"]
        if latency:
            q["kept_latency"] = k["latency"]


def _peak_slot(space: _Space, cols: _Columns, values: dict[tuple[str, str], np.ndarray],
               rows: dict[int, tuple[Any, tuple, bool, bool]]) -> np.ndarray:
    """A slot's ``recompute_peak`` under ``recompute="full"`` (0 otherwise): per chunk of the
    stage ``rows[p]``, :func:`~symcost.plan.pipeline.rebuild_peak` over its blocks (every one
    recomputed), the tail the rest of the last stage's last chunk; the largest, at least 0."""
    out = np.zeros(len(cols))
    full = np.flatnonzero(cols.rc == space.recompute.index("full"))  # the rows at stake, in order
    for p, (_, held, first, last) in rows.items():
        at_p = full[cols.p[full] == p]
        vs = cols.v[at_p]
        for v in sorted(set(vs.tolist())):
            at = at_p[vs == v]  # the full-recompute rows of stage p in v chunks, ascending
            chunks = chunk_groups(held, chunk_blocks(sum(int(n) for n in held), int(v), first, last), None)
            out[at] = _chunk_peaks(values, at, chunks, last)
    return out


def _chunk_peaks(values: dict[tuple[str, str], np.ndarray], at: np.ndarray,
                 chunks: list[tuple[list[int], list[int]]], last: bool) -> np.ndarray:
    """The stage's ``recompute_peak`` over its chunks (:func:`~symcost.plan.pipeline.chunk_groups`:
    the groups of the blocks each recomputes and keeps), as :func:`~symcost.plan.pipeline.rebuild_peak`
    takes it: per recomputed block, its activations back less the inputs of the chunk's later
    recomputed blocks and what the chunk keeps after them (its kept blocks', and the tail on the
    last stage's last chunk); the largest, at least 0, for the candidates ``at`` (indices). Within a run of
    one group's blocks the last is the largest (the others have more inputs after them), and
    chunks alike are counted once."""
    groups = {g for recomputed, kept in chunks for g in (*recomputed, *kept)}
    kept_act = {g: values[(f"blocks[{g}]", "kept_activation")][at] for g in groups}
    act = {g: values[(f"blocks[{g}]", "activation")][at] for g in groups}
    best = np.zeros(len(at))
    seen = set()
    for c, (recomputed, kept) in enumerate(chunks):
        tail = last and c == len(chunks) - 1
        runs = [(g, len(list(n))) for g, n in itertools.groupby(recomputed)]
        key = (tuple(runs), tuple(sorted(kept)), tail)
        if key in seen or not runs:
            continue
        seen.add(key)
        rest = values[("tail", "activation")][at] if tail else 0.0
        for g in kept:
            rest = rest + kept_act[g]
        later: Any = 0.0  # the inputs of the chunk's recomputed blocks after the run
        for g, n in reversed(runs):
            best = np.maximum(best, kept_act[g] - act[g] - later - rest)
            later = later + n * act[g]
    return best


_EVERY_BLOCK = -1
"""The ``recompute_layers`` column of a row that recomputes every block its mode names (no block
recompute): ``None`` in :meth:`SearchResult.row`."""


class _Eval(NamedTuple):
    """What evaluating a search's candidates needs besides them: the space, the chip, the dtype, the
    stage quantities assembled and the constraints."""

    space: _Space
    chip: Hardware
    datatype: DataType
    quantities: tuple[str, ...]
    limits: "Constraints"


def _largest_chunk(space: _Space, p: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The blocks of each candidate's largest chunk (its stage when ``v = 1``) over its pipeline
    stages: the most blocks block recompute can take from one chunk (:func:`~symcost.plan.pipeline.chunk_groups`
    clamps ``N`` to each chunk)."""
    out = np.zeros(len(p), dtype=np.int64)
    keys, which = np.unique(np.stack([p, v], axis=1), axis=0, return_inverse=True)
    for i, (q, w) in enumerate(keys.tolist()):
        split = space.splits[q]
        out[which.ravel() == i] = max(max(chunk_blocks(n, w, k == 0, k == len(split) - 1)) for k, n in enumerate(split))
    return out


_AXES = ("ep", "micro_batch", "interleave", "megatron_sp", "recompute", "zero_stage", "overlap", "etp")
"""The options :meth:`_Space._axes` returns, in its order (tests/plan/test_recompute_layers.py checks it)."""
_RC_AXIS = _AXES.index("recompute")
"""The recompute mode's place among :meth:`_Space._axes`."""


def _siblings(cols: _Columns, rows: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each candidate of ``rows`` (indices), the index of the candidate of ``others`` (indices)
    alike but for its recompute mode (the same :attr:`_Columns.lay`), or -1."""
    where = np.full(int(cols.lay.max()) + 1, -1, dtype=np.int64)
    where[cols.lay[others]] = others
    return where[cols.lay[rows]]


def _take(cols: _Columns, index: np.ndarray) -> _Columns:
    return _Columns(*(getattr(cols, f.name)[index] for f in dataclasses.fields(_Columns)))


def _block_rows(ev: _Eval, cols: _Columns, values: dict[tuple[str, str], np.ndarray], slots: "_Slots",
                found: tuple[np.ndarray, np.ndarray]) -> Optional[tuple[_Columns, np.ndarray, np.ndarray, np.ndarray,
                                                                       np.ndarray]]:
    """Block recompute rows (Megatron-Core ``--recompute-granularity full --recompute-method block
    --recompute-num-layers N``): for each ``"full"`` candidate whose memory fits (``found``: every
    candidate's memory and whether it fits in memory; the other constraints, such as ``min_mfu``,
    are the caller's, on the block rows: a block row is faster than its ``"full"`` row) and whose
    layout does not fit without recomputation (where ``"none"`` is tried: else that row is faster;
    then its chunks hold 2 blocks or more), the fewest blocks per stage ``1 <= N <`` (the largest
    chunk's blocks, :func:`_largest_chunk`; more is the ``"full"`` row itself) whose step fits.
    Where ``"none"`` is not among the modes, ``N = 0`` (no block recomputed: what ``"none"``
    runs) is tried too and kept as a block row with ``recompute_layers`` 0. Recomputing one block more adds its
    forward to the time and takes its activations but its input off every in-flight micro-batch,
    so the memory falls and the time grows with ``N`` (a rebuilt block adds to the peak at most
    what it took off one micro-batch, :func:`~symcost.plan.pipeline.rebuild_peak`): the fewest
    that fit is the fastest that fits, what a Megatron user tunes ``N`` for. Found by bisection,
    started where the memory interpolated linearly between the layout's ``"none"`` and ``"full"``
    rows meets the HBM (the memory is nearly linear in ``N``: most rows are settled in two steps).
    Returns the new rows (columns, step, memory, MFU and ``N``), or ``None``; their time and memory
    are :func:`~symcost.plan.training.training_step`'s with ``recompute_layers=N``
    (tests/plan/search_rows.py)."""
    memory, fit = found
    full = np.flatnonzero(fit & (cols.rc == ev.space.recompute.index("full")))
    chunk = _largest_chunk(ev.space, cols.p[full], cols.v[full])
    full, chunk = full[chunk >= 1], chunk[chunk >= 1]
    none = np.full(len(full), -1)
    if "none" in ev.space.recompute:
        none = _siblings(cols, full, np.flatnonzero(cols.rc == ev.space.recompute.index("none")))
        keep = (chunk >= 2) & ((none < 0) | ~fit[np.maximum(none, 0)])
        full, chunk, none = full[keep], chunk[keep], none[keep]
    if not len(full):
        return None
    needed = {("embedding", "latency"), ("embedding", "activation"), ("tail", "latency"), ("tail", "activation"),
              *((f"blocks[{g}]", q) for g in range(len(ev.space.model.blocks))
                for q in ("latency", "activation", "kept_latency", "kept_activation"))}
    sub = _Block(_take(cols, full), {k: values[k][full] for k in needed},
                 {k: x[full] for k, x in slots.values.items()}, {j: x[full] for j, x in slots.index.items()})
    cap = (1 - ev.limits.memory_headroom) * float(ev.chip.hbm_capacity)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        share = (memory[np.maximum(none, 0)] - cap) / (memory[np.maximum(none, 0)] - memory[full])
    guess = np.where(none >= 0, np.ceil(np.nan_to_num(np.clip(share, 0, 1)) * chunk), chunk // 2).astype(np.int64)
    lo = np.where(none >= 0, 0, -1)  # no "none" row: N = 0 (nothing recomputed) is tried too
    hi, step, block_memory, mfu = _bisect(ev, sub, (lo, chunk), np.clip(guess, lo + 1, chunk - 1))
    keep = np.flatnonzero(hi < chunk)
    if not len(keep):
        return None
    return _take(sub.cols, keep), step[keep], block_memory[keep], mfu[keep], hi[keep]


def _bisect(ev: _Eval, sub: "_Block", bounds: tuple[np.ndarray, np.ndarray],
            guess: np.ndarray) -> tuple[np.ndarray, ...]:
    """The fewest blocks per stage whose memory fits, per candidate of ``sub``, between ``lo``
    (known not to fit; -1 where 0 is to be tried) and ``chunk`` (fits), ``bounds = (lo, chunk)``,
    tried first at ``guess``, then 1, 1, 2, 4, ... blocks further while the answer stays the same
    (the guess is most often right or one off: two tries), then by halving; with the step time,
    memory and MFU there (NaN where only ``chunk`` fits)."""
    lo, chunk = bounds
    lo, hi = lo.astype(np.int64), chunk.copy()
    found = [np.full(len(chunk), np.nan) for _ in range(3)]
    mid, active = guess, np.arange(len(chunk))
    stride, way, first = np.ones(len(chunk), dtype=np.int64), np.zeros(len(chunk), dtype=np.int64), True
    while len(active):
        step, memory, mfu = _block_step(ev, sub.take(active), mid)
        ok = ev.limits.keep(sub.cols.t[active], memory, None, ev.chip)  # the memory alone: monotone in N
        hi[active[ok]], lo[active[~ok]] = mid[ok], mid[~ok]
        for out, x in zip(found, (step, memory, mfu), strict=True):
            out[active[ok]] = x[ok]
        # galloping: away from the guess by 1, 1, 2, 4, ... blocks while the answer stays the same
        # (-1 down after a fit, +1 up after a miss), halving once it changed (way 0: bracketed)
        turn = np.where(ok, -1, 1)
        way[active] = turn if first else np.where(way[active] == turn, turn, 0)
        nxt = mid + way[active] * stride[active]
        stride[active] *= 1 if first else 2
        first = False
        half = (lo[active] + hi[active]) // 2
        nxt = np.where((way[active] != 0) & (nxt > lo[active]) & (nxt < hi[active]), nxt, half)
        still = hi[active] - lo[active] > 1
        active, mid = active[still], nxt[still]
    return hi, *found


class _Block(NamedTuple):
    """Candidates refined by block recompute: their columns, layer values and stage slots."""

    cols: _Columns
    values: dict[tuple[str, str], np.ndarray]
    slot_values: dict[tuple[int, str], np.ndarray]
    slot_index: dict[int, np.ndarray]

    def take(self, index: np.ndarray) -> "_Block":
        return _Block(_take(self.cols, index), {k: x[index] for k, x in self.values.items()},
                      {k: x[index] for k, x in self.slot_values.items()},
                      {j: x[index] for j, x in self.slot_index.items()})


def _block_step(ev: _Eval, block: _Block, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step time, memory per chip and MFU of ``block``'s candidates with the first ``n`` blocks of
    each stage's chunks recomputed (:func:`~symcost.plan.pipeline.block_recompute_stages`): each
    slot's latency and activations are the kept blocks' plus, per recomputed block, its ``"full"``
    value less its kept one; its ``recompute_peak`` as :func:`_chunk_peaks` takes it, each
    (pipeline degree, interleave, ``n``) tabled once (:func:`_block_terms`)."""
    cols = block.cols
    counts = [int(c) for _, c in ev.space.model.blocks]
    layouts = {p: stage_layout(counts, p, split) for p, split in ev.space.splits.items()}
    slot_values = dict(block.slot_values)
    keys, which = np.unique(np.stack([cols.p, cols.v, n], axis=1), axis=0, return_inverse=True)
    for j in range(len(block.slot_index)):
        table = [_block_terms(layouts[p][j] if j < len(layouts[p]) else layouts[p][0], v, blocks)
                 for p, v, blocks in keys.tolist()]
        _block_slot(slot_values, j, block.values, table, which.ravel())
    return _assemble(ev.space, cols, _Slots(len(block.slot_index), slot_values, block.slot_index), ev.chip,
                     ev.datatype, ev.quantities)


def _block_terms(stage: tuple[Any, tuple, bool, bool], v: int, n: int) -> tuple[list[int], list[tuple[int, ...]]]:
    """One stage under block recompute of ``n`` blocks per chunk (``v`` chunks), as coefficients:
    ``[first, last, held_g..., recomputed_g...]`` (the embedding, the tail, each group's blocks and
    recomputed blocks), and the rebuild-peak candidates (:func:`~symcost.plan.pipeline.rebuild_peak`)
    as ``(kept activations_g..., activations_g..., tail)`` coefficients.

    >>> _block_terms((0, (4,), True, True), 1, 1)   # 4 blocks, the first recomputed, then the tail
    ([1, 1, 4, 1], [(-2, -1, -1)])
    """
    _, held, first, last = stage
    chunks = chunk_groups(held, chunk_blocks(sum(held), v, first, last), n)
    groups = len(held)
    recomputed = [g for rec, _ in chunks for g in rec]
    terms = set()
    for c, (rec, kept) in enumerate(chunks):
        tail = -1 if last and c == len(chunks) - 1 else 0
        later = [0] * groups  # the inputs of the chunk's recomputed blocks after the run
        for g, run in reversed([(g, len(list(k))) for g, k in itertools.groupby(rec)]):
            back = [int(h == g) - kept.count(h) for h in range(groups)]
            terms.add((*back, *(-int(h == g) - later[h] for h in range(groups)), tail))
            later[g] += run
    return [int(first), int(last), *held, *(recomputed.count(g) for g in range(groups))], sorted(terms)


def _block_slot(slot_values: dict[tuple[int, str], np.ndarray], j: int, values: dict[tuple[str, str], np.ndarray],
                table: list[tuple[list[int], list[tuple[int, ...]]]], which: np.ndarray) -> None:
    """Slot ``j``'s latency, activations and rebuild peak from each candidate's :func:`_block_terms`
    (``table[which]``) and layer values."""
    groups = len(table[0][0]) // 2 - 1
    coef = np.array([row for row, _ in table], dtype=np.float64)[which]
    for q, kept in (("latency", "kept_latency"), ("activation", "kept_activation")):
        total = coef[:, 0] * values[("embedding", q)] + coef[:, 1] * values[("tail", q)]
        for g in range(groups):
            full, own = values[(f"blocks[{g}]", q)], values[(f"blocks[{g}]", kept)]
            total = total + coef[:, 2 + g] * own + coef[:, 2 + groups + g] * (full - own)
        slot_values[(j, q)] = total
    most = max(len(terms) for _, terms in table)
    padded = np.zeros((len(table), max(most, 1), 2 * groups + 1))
    for i, (_, terms) in enumerate(table):
        if terms:  # none where no block is recomputed (n = 0)
            padded[i, :len(terms)] = terms
    rows = padded[which]
    peak = np.zeros(len(which))
    for t in range(most):
        gain = rows[:, t, -1] * values[("tail", "activation")]
        for g in range(groups):
            gain = (gain + rows[:, t, g] * values[(f"blocks[{g}]", "kept_activation")]
                    + rows[:, t, groups + g] * values[(f"blocks[{g}]", "activation")])
        peak = np.maximum(peak, gain)
    slot_values[(j, "recompute_peak")] = peak


@dataclass(frozen=True)
class _Slots:
    """Pipeline stages per candidate: the distinct stages of its split as ``K`` slots (padded with
    the first stage, which changes no maximum); a slot's value is the sum of its layers' values."""

    K: int
    values: dict[tuple[int, str], np.ndarray]
    index: dict[int, np.ndarray]

    @classmethod
    def of(cls, space: _Space, cols: _Columns, values: dict[tuple[str, str], np.ndarray],
           quantities: tuple[str, ...], tied: bool = False) -> "_Slots":
        counts = [int(n) for _, n in space.model.blocks]
        part_names = _part_names(space.model)
        layouts = {p: stage_layout(counts, p, split) for p, split in space.splits.items()}
        ps = sorted(set(cols.p.tolist()))
        K = max(len(layouts[p]) for p in ps)
        which = np.searchsorted(np.array(ps), cols.p)  # each candidate's p, as an index into ps

        slot_values, slot_index = {}, {}
        for j in range(K):
            # stage j of each p's layout (the first stage past the end), one row per p, then gathered
            rows = [layouts[p][j] if j < len(layouts[p]) else layouts[p][0] for p in ps]

            def column(values_per_p: list) -> np.ndarray:
                return np.array(values_per_p, dtype=np.float64)[which]

            slot_index[j] = column([r[0] for r in rows])
            held = [column([r[1][i] for r in rows]) for i in range(len(part_names) - 2)]
            first, last = column([r[2] for r in rows]), column([r[3] for r in rows])
            for q in quantities:
                total = np.zeros(len(cols))
                for c, part in zip(held, part_names[1:-1]):
                    total += c * values[(part, q)]
                total += values[("embedding", q)] * first + values[("tail", q)] * last
                slot_values[(j, q)] = total
            if tied:
                _tied_slot(slot_values, j, values[("tail", "tied_weight")], first, last)
            if "full" in space.recompute:
                slot_values[(j, "recompute_peak")] = _peak_slot(
                    space, cols, values, {p: layouts[p][j] if j < len(layouts[p]) else layouts[p][0] for p in ps})
        return cls(K, slot_values, slot_index)


def _tied_slot(slot_values: dict[tuple[int, str], np.ndarray], j: int, table: np.ndarray, first: np.ndarray,
               last: np.ndarray) -> None:
    """A tied LM head, as :func:`~symcost.plan.pipeline.stages_from_parts` stages it: a last stage
    that is not also the first holds the table's copy; the first and the last of several stages
    (``first != last``) form the embedding group and sync the table."""
    grouped = first != last
    slot_values[(j, "weight")] = slot_values[(j, "weight")] + table * (last * (1 - first))
    slot_values[(j, "shared_weight")] = table * grouped
    slot_values[(j, "embedding_group")] = grouped.astype(np.float64)


def _assemble(space: _Space, cols: _Columns, slots: _Slots, chip: Hardware, datatype: DataType,
              quantities: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step time, memory per chip and MFU of every candidate, the step assembled symbolically and
    compiled per (ZeRO stage, p = 1?, v = 1?); the context-parallel degree is free when one other
    than 1 is tried."""
    step, memory, mfu = np.empty(len(cols)), np.empty(len(cols)), np.empty(len(cols))
    cp_free = space.cps != (1,)
    etps = sorted(set(cols.et.tolist()))
    for z, p1, v1, et in itertools.product(space.zero_stages, (True, False), (True, False), etps):
        mask = (cols.z == z) & ((cols.p == 1) == p1) & ((cols.v == 1) == v1) & (cols.et == et)
        if not mask.any() or (p1 and not v1):
            continue
        used = range(1 if p1 else slots.K)
        sweeper = _assemble_program(space.model, chip, datatype, (space.s, space.B),
                                    _Form(z, p1, v1, len(used), cp_free, space.sync, et), quantities)
        inputs = {sym.batch_size: cols.b[mask], sym.tp: cols.t[mask], sym.sp: cols.u[mask], _P: cols.p[mask],
                  _D: cols.d[mask], _V: cols.v[mask], sym.ep: cols.e[mask], sym.cp: cols.c[mask],
                  **{_slot_symbol(j, q): slots.values[(j, q)][mask] for j in used for q in quantities},
                  **{_index_symbol(j): slots.index[j][mask] for j in used}}
        out = sweeper({k: v for k, v in inputs.items() if k in sweeper.args})
        step[mask], memory[mask], mfu[mask] = out["step_time"], out["memory_per_chip"], out["mfu"]
    return step, memory, mfu


def _slot_symbol(j: int, q: str) -> sp.Symbol:
    return sp.Symbol(f"_s{j}_{q}")


def _index_symbol(j: int) -> sp.Symbol:
    return sp.Symbol(f"_k{j}", integer=True, nonnegative=True)


class _Form(NamedTuple):
    """What the assembled step's expressions depend on besides the model, chip and sizes: the ZeRO
    stage, ``p = 1``?, ``v = 1``?, the stage slots ``K``, and whether the context-parallel degree is free."""

    z: int
    p1: bool
    v1: bool
    K: int
    cp_free: bool
    sync: StepComm = StepComm()
    etp: int = 0
    """The expert-TP code (0: experts split ``t`` ways)."""


@functools.lru_cache(maxsize=64)
def _assemble_program(model: Model, chip: Hardware, datatype: DataType, sizes: tuple[int, int], form: _Form,
                      quantities: tuple[str, ...]) -> Sweeper:
    """Step time, memory per chip and MFU from ``K`` stage slots (their quantities and layer
    indices free) and the free degrees, compiled once per (model, chip, dtype, sizes ``(s, B)``,
    :class:`_Form`). The context-parallel degree counts the chips, the stage-to-stage payload and
    the data-parallel group (:func:`assemble_training`)."""
    (s, B), (z, p1, v1, K, cp_free, sync, etp) = sizes, form
    stages = [{**{q: _slot_symbol(j, q) for q in quantities}, "index": 0 if p1 else _index_symbol(j)}
              for j in range(K)]
    par = Parallelism(tensor_parallel=sym.tp, sequence_parallel=sym.sp, expert_parallel=sym.ep,
                      pipeline_parallel=1 if p1 else _P, data_parallel=_D, context_parallel=sym.cp if cp_free else 1,
                      expert_tensor_parallel=etp or None)
    run = TrainingRun(model, chip, datatype, par, TrainingOptions(interleave=1 if v1 else _V, zero_stage=z, sync=sync))
    fields = assemble_training(stages, run, s=s, B=B, b=sym.batch_size)
    return Sweeper({k: fields[k] for k in ("step_time", "memory_per_chip", "mfu")}, fast_compile=True)


def _inference(model: Model, chip: Hardware, datatype: DataType, job: _Job,
               ranking: tuple[str, Constraints, tuple[int, ...]], start: float) -> SearchResult:
    """The inference search: few candidates, each evaluated exactly; ``ranking`` is the objective,
    the constraints and the context-parallel degrees tried."""
    import time

    objective, limits, cps = ranking
    N, batch, s = job
    if objective not in ("tpot", "ttft"):
        raise ConfigError(f"objective must be 'tpot' or 'ttft', got {objective!r}")
    rows, candidates, valid = [], 0, 0
    for t, cp in itertools.product(_divisors(N), cps):
        if (N // t) % cp:
            continue
        for p in _divisors(N // (t * cp)):
            d = N // (t * cp * p)
            candidates += 1
            if batch % d or p > int(model.num_layers):
                continue  # uneven stages are fine; more stages than layers is not
            par = {"tensor_parallel": t, "pipeline_parallel": p, "data_parallel": d, "context_parallel": cp}
            try:
                step = model.inference_step(chip, batch // d, s, datatype, par)
            except ValueError:
                continue  # heads, KV heads, FFN width or vocabulary do not divide
            valid += 1
            if limits.keep(np.array([t]), np.array([float(step.memory_per_chip)]), None, chip)[0]:
                rows.append((t, p, d, batch // d, float(step.ttft), float(step.tpot),
                             float(step.memory_per_chip), batch / float(step.tpot), cp))
    rows.sort(key=lambda r: r[5] if objective == "tpot" else r[4])
    names = ("tp", "pp", "dp", "micro_batch", "ttft", "tpot", "memory_per_chip", "tokens_per_second", "cp")
    columns = {n: np.array([r[i] for r in rows]) for i, n in enumerate(names)}
    limits.add_cost(columns, N)
    return SearchResult(columns, candidates, valid, len(rows), time.perf_counter() - start)


on_register(_layer_program.cache_clear)  # their times are the registered time model's
on_register(_assemble_program.cache_clear)
