"""Charts of the cost model: a roofline, memory against context length, a training step's breakdown.

An optional extra: ``pip install symcost[plot]`` brings matplotlib, imported only when a chart is
drawn (importing this module needs nothing beyond symcost). Each function writes one PNG, SVG or PDF,
chosen by the path's suffix, with the Agg renderer (no display is opened and pyplot's global state
is never touched), and returns the path. A PNG is ``size`` inches × ``dpi`` pixels, e.g. the
default 6.4 × 4.8 in at 100 dpi gives 640 × 480 pixels.

Every chart needs numbers: inputs are checked (path, symbols left unbound) before matplotlib is
imported, so those errors come the same with or without it.

>>> import symcost as sc
>>> from symcost import plots
>>> m = sc.MLPLayer(hidden_size=4096, intermediate_size=16384).compute_metrics(
...     batch_size=1, seq_len=2048, dtype="bf16", hardware="h100")
>>> plots.roofline(m, "h100", "mlp.jpg")
Traceback (most recent call last):
symcost.errors.ConfigError: roofline: cannot write 'mlp.jpg': the suffix must be .png or .svg or .pdf
>>> plots.roofline(m, "h100", "mlp.png")          # doctest: +SKIP
PosixPath('mlp.png')
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Union

import numpy as np
import sympy as sp

from ..analysis.solve import IntegerSolution, max_integer
from ..core import symbols as sym
from ..core.dtypes import DataType, DtypeLike
from ..core.metrics import LayerMetrics
from ..core.parallelism import Parallelism, ParallelismLike
from ..core.phase import Phase
from ..core.sweep import Sweeper
from ..errors import ConfigError
from ..hardware import GIGA, TERA, Hardware
from ..hardware import get as get_hardware
from ..hardware.timing import op_time
from ..layers.base import Layer
from ..models.model import Model
from ..plan.step import TrainingStep

__all__ = ["roofline", "memory_vs_seq_len", "step_breakdown", "parallelism_label", "pareto_front", "FORMATS"]

PathLike = Union[str, "os.PathLike[str]"]

FORMATS = ("png", "svg", "pdf")
"""File formats the charts write, chosen by the path's suffix (matplotlib's Agg, SVG and PDF
backends; PDF and SVG are vector formats for papers)."""

DEFAULT_SIZE = (6.4, 4.8)
"""Figure size in inches (matplotlib's own default): 640 × 480 pixels at the default 100 dpi."""
DEFAULT_DPI = 100

SEQ_LEN_POINTS = 200
"""Points of the log-spaced ``seq_len`` grid (smooth curves; one compiled NumPy pass)."""
# NB: with no max_seq_len the grid runs to twice the solved max context, so the crossing of the
# capacity line sits mid-chart; when nothing fits or everything does, to 2^17 = 131072 tokens
# (a 128k context, the longest most current models are trained for).
CONTEXT_HEADROOM = 2
FALLBACK_MAX_SEQ_LEN = 2**17

# Roofline labels: each op's label takes the first place, in this order, where it overlaps no other
# label, no marker and not the legend, inside the axes: beside its marker (the side facing the middle
# of the chart first, then the other), level with it, then LABEL_STEP points lower or higher, a
# step further each time, up to LABEL_TRIES steps each way.
LABEL_STEP, LABEL_TRIES, LABEL_GAP = 9, 12, 2
LABEL_NAMES = 3  # names shown per point ("gate, up, down +5"); more would run off the chart
RIGHT_SIDE = 0.6  # points beyond this fraction of the (log) x range are labelled to their left

_INSTALL_HINT = "symcost.plots needs matplotlib: pip install symcost[plot]"


# -- shared plumbing ---------------------------------------------------------------------------


def require_matplotlib() -> Any:
    """The matplotlib module, imported on first use, or an ImportError saying what to install."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return matplotlib


def _output(path: PathLike, caller: str) -> tuple[Path, str]:
    """The path and its format, ``png``, ``svg`` or ``pdf`` by the suffix (case ignored)."""
    out = Path(path)
    kind = out.suffix.lower().lstrip(".")
    if kind not in FORMATS:
        raise ConfigError(f"{caller}: cannot write {str(out)!r}: the suffix must be "
                         f"{' or '.join('.' + f for f in FORMATS)}")
    return out, kind


def _check_size(size: Any, dpi: Any, caller: str) -> tuple[tuple[float, float], float]:
    try:
        width, height = (float(x) for x in size)
    except (TypeError, ValueError):
        raise ConfigError(f"{caller}: size must be (width, height) in inches, got {size!r}") from None
    if not (width > 0 and height > 0 and math.isfinite(width) and math.isfinite(height)):
        raise ConfigError(f"{caller}: size must be two positive numbers of inches, got {size!r}")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not (0 < dpi < math.inf):
        raise ConfigError(f"{caller}: dpi must be a positive number, got {dpi!r}")
    return (width, height), float(dpi)


def _figure(size: tuple[float, float], dpi: float) -> Any:
    """A figure drawn by Agg, never registered with pyplot (so no display, no global state)."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Any, out: Path, kind: str, dpi: float) -> Path:
    # NB: no bbox_inches="tight": it crops the canvas, and the PNG must be exactly size × dpi
    # pixels; the constrained layout keeps labels inside the requested size instead.
    fig.savefig(out, format=kind, dpi=dpi)
    return out


def _free(values: Iterable[Any]) -> set[sp.Symbol]:
    out: set[sp.Symbol] = set()
    for value in values:
        if isinstance(value, sp.Basic):
            out |= value.free_symbols
    return out


def _names(symbols: Iterable[sp.Symbol]) -> str:
    return ", ".join(sorted(sym.describe(s) for s in symbols))


def _hint(symbols: set[sp.Symbol]) -> str:
    chip = {sym.peak_flops, sym.vector_flops, sym.hbm_capacity, sym.hbm_bandwidth, sym.scale_up_bandwidth,
            sym.scale_up_domain, sym.scale_out_bandwidth, sym.collective_latency, sym.scale_out_latency}
    return " (pass hardware= and dtype= to bind the chip)" if symbols & chip else ""


def _number(value: Any) -> float:
    """An exact number as a float for drawing (the numbers stay exact up to here)."""
    return float(sp.sympify(value))


def _chip(hardware: Hardware | str, caller: str) -> Hardware:
    chip = get_hardware(hardware)
    if chip.is_symbolic:
        raise ConfigError(f"{caller}: hardware must be a numeric chip (a preset name or a Hardware "
                         "of numbers), not the symbolic chip")
    return chip


# -- roofline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Point:
    """One op on the roofline: intensity FLOPs / bytes, achieved FLOPs / time (exact)."""

    names: tuple[str, ...]
    intensity: Any
    achieved: Any
    share: Any  # the op's share of the summed op times (multiplicity included)


def _roofline_points(metrics: LayerMetrics, chip: Hardware, peak: sp.Expr,
                     datatype: Optional[DataType] = None) -> list[_Point]:
    """The ops of ``metrics`` with FLOPs and bytes, placed by ``op_time`` on ``chip`` at ``peak``;
    ops at the same point (e.g. gate and up projections) share one point."""
    timed = []
    for op, mult in metrics.ops:
        t = op_time(op, chip, peak, datatype)
        timed.append((op, sp.sympify(mult), t.time))
    whole = sp.Add(*(mult * time for _, mult, time in timed))
    points: dict[tuple[Any, Any], _Point] = {}
    for op, mult, time in timed:
        flops, nbytes = op.flops, op.hbm_bytes
        if flops == 0 or nbytes == 0:
            continue  # no place on a log-log chart (e.g. an embedding lookup has no FLOPs)
        key = (flops / nbytes, flops / time)  # achieved FLOP/s: multiplicity cancels
        share = mult * time / whole
        if key in points:
            p = points[key]
            names = p.names if op.name in p.names else p.names + (op.name,)
            points[key] = _Point(names, p.intensity, p.achieved, p.share + share)
        else:
            points[key] = _Point((op.name,), key[0], key[1], share)
    return list(points.values())


def roofline(metrics: LayerMetrics, hardware: Hardware | str, path: PathLike, *,
             dtype: DtypeLike = "bf16", size: tuple[float, float] = DEFAULT_SIZE,
             dpi: float = DEFAULT_DPI, title: Optional[str] = None) -> Path:
    """Draw a log-log roofline of ``metrics``' ops on ``hardware`` and write it to ``path``.

    The roof is ``min(P, I × B)`` over arithmetic intensity ``I`` (FLOP/byte), with ``P`` the
    matmul FLOP/s the time model uses (``hardware.effective_peak(dtype)``) and ``B`` the HBM
    bandwidth (``hardware.effective_hbm_bandwidth``); the ridge point ``I* = P / B`` is marked,
    and the vector units' roof ``min(F_vec, I × B)`` is dashed beneath. Each op of ``metrics.ops``
    sits at ``I = FLOPs / HBM bytes`` and achieved ``FLOPs / max(compute, memory)`` — its own
    roofline time, as :func:`symcost.hardware.timing.op_time` prices it — labelled by name; its marker
    area grows with its share of the summed op time. Ops with zero FLOPs or zero bytes have no
    place on log axes and are left out.

    ``metrics`` must be numbers: computed with every input numeric and ``hardware=`` (or bound
    with :meth:`~symcost.core.metrics.LayerMetrics.evaluate`), on the same chip and ``dtype``.
    Raises ``ValueError`` naming the symbols to bind, a peak that does not match, or a suffix
    other than ``.png``/``.svg``.

    >>> import symcost as sc
    >>> m = sc.NormLayer(hidden_size=4096).compute_metrics(batch_size=1, seq_len=2048,
    ...                                                  dtype="bf16")        # symbolic chip
    >>> roofline(m, "h100", "norm.png")
    Traceback (most recent call last):
    symcost.errors.ConfigError: roofline: the metrics are symbolic in hbm_bandwidth (B_HBM), peak_flops (F),
    vector_flops (F_vec); bind them first, e.g. compute_metrics(..., hardware=...) or
    metrics.evaluate(...) (pass hardware= and dtype= to bind the chip)
    """
    out, kind = _output(path, "roofline")
    (width, height), dpi = _check_size(size, dpi, "roofline")
    chip, datatype, peak, points = _roofline_inputs(metrics, hardware, dtype)
    bandwidth = chip.effective_hbm_bandwidth
    ridge = _number(peak / bandwidth)  # FLOP/byte where the memory roof meets the compute roof
    p, bw, vec = _number(peak), _number(bandwidth), _number(chip.vector_flops)
    xs = [_number(pt.intensity) for pt in points]
    lo, hi = min(min(xs), vec / bw, ridge) / 4, max(max(xs), ridge) * 4
    fig = _figure((width, height), dpi)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    _draw_roofs(ax, np.geomspace(lo, hi, 256), p, bw, vec, ridge)
    labels = _draw_ops(ax, points, lo, hi)
    ax.set_xlabel("arithmetic intensity (FLOP / HBM byte)")
    ax.set_ylabel("achieved (TFLOP/s)")
    ax.set_title(title if title is not None else
                 f"roofline: {metrics.phase.value} on {chip.name} ({datatype.value})")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(True, which="major", lw=0.3)
    _place_labels(fig, ax, labels)
    return _save(fig, out, kind, dpi)


def _roofline_inputs(metrics: LayerMetrics, hardware: Hardware | str,
                     dtype: DtypeLike) -> tuple[Hardware, DataType, Any, list]:
    """The chip, dtype, peak and op points of a roofline, once the metrics are checked usable."""
    if not isinstance(metrics, LayerMetrics):
        raise TypeError(f"roofline: metrics must be a LayerMetrics, got {type(metrics).__name__}")
    chip = _chip(hardware, "roofline")
    datatype = DataType.parse(dtype)
    ops = metrics.ops
    unbound = metrics.free_symbols | _free([metrics.peak_flops]) | _free(
        v for op, mult in ops for v in (op.flops, op.hbm_bytes, mult))
    if unbound:
        raise ConfigError(f"roofline: the metrics are symbolic in {_names(unbound)}; bind them first, "
                         f"e.g. compute_metrics(..., hardware=...) or metrics.evaluate(...)"
                         f"{_hint(unbound)}")
    peak = chip.effective_peak(datatype)
    if sp.sympify(metrics.peak_flops) != peak:
        raise ConfigError(f"roofline: the metrics were timed at {metrics.peak_flops} FLOP/s but "
                         f"{chip.name} at {datatype.value} gives {peak}; pass the hardware and dtype "
                         "the metrics were computed with")
    if not ops:
        raise ConfigError("roofline: the metrics carry no ops (a derivative carries none)")
    points = _roofline_points(metrics, chip, peak, datatype)
    if not points:
        raise ConfigError("roofline: no op has both FLOPs and HBM bytes to place")
    return chip, datatype, peak, points


def _draw_roofs(ax: Any, grid: Any, p: float, bw: float, vec: float, ridge: float) -> None:
    ax.plot(grid, np.minimum(p, grid * bw) / TERA, color="black", lw=2,
            label=f"roof: {p / TERA:.4g} TFLOP/s, {bw / TERA:.4g} TB/s")
    ax.plot(grid, np.minimum(vec, grid * bw) / TERA, color="gray", lw=1, ls="--",
            label=f"vector roof: {vec / TERA:.4g} TFLOP/s")
    ax.axvline(ridge, color="gray", lw=0.8, ls=":")
    ax.text(ridge, 0.02, f" ridge {ridge:.4g} FLOP/B", rotation=90, fontsize=7,
            color="gray", va="bottom", transform=ax.get_xaxis_transform())


def _draw_ops(ax: Any, points: list, lo: float, hi: float) -> list[tuple[Any, float, float, float, bool]]:
    """A marker and a label per point; returns ``(label, x, y, marker radius in points, right
    side)`` for :func:`_place_labels`."""
    labels = []
    for pt in sorted(points, key=lambda q: (-_number(q.achieved), _number(q.intensity))):
        x, y = _number(pt.intensity), _number(pt.achieved) / TERA
        size = 16 + 240 * _number(pt.share)  # points squared: the marker is sqrt(size) points across
        ax.scatter([x], [y], s=size, alpha=0.8, zorder=3)
        names = ", ".join(pt.names[:LABEL_NAMES])
        if len(pt.names) > LABEL_NAMES:
            names += f" +{len(pt.names) - LABEL_NAMES}"
        right = math.log(x / lo) > RIGHT_SIDE * math.log(hi / lo)  # label leftwards at the edge
        label = ax.annotate(names, (x, y), xytext=(0, 0), textcoords="offset points", fontsize=7)
        label.set_in_layout(False)  # long labels must not shrink the axes
        labels.append((label, x, y, math.sqrt(size) / 2, right))
    return labels


def _place_labels(fig: Any, ax: Any, labels: list[tuple[Any, float, float, float, bool]]) -> None:
    """Put each label where it overlaps no earlier label, no marker and not the legend, inside the
    axes (candidates in the order of the constants above); the first candidate when none is free."""
    fig.draw_without_rendering()  # the constrained layout fixes the axes first
    renderer = fig.canvas.get_renderer()
    markers = [(*ax.transData.transform((x, y)), radius * fig.dpi / 72) for _, x, y, radius, _ in labels]
    legend = ax.get_legend()
    taken = [legend.get_window_extent(renderer)] if legend is not None else []
    inside = ax.patch.get_window_extent(renderer)
    steps = [0] + [k * sign for k in range(1, LABEL_TRIES + 1) for sign in (-1, 1)]
    for label, _, _, radius, right in labels:
        candidates = [(side, step) for step in steps for side in ((-1, 1) if right else (1, -1))]
        for side, step in candidates:
            _offset(label, side, step, radius)
            box = label.get_window_extent(renderer)
            if (inside.x0 <= box.x0 and box.x1 <= inside.x1 and inside.y0 <= box.y0 and box.y1 <= inside.y1
                    and not any(box.overlaps(other) for other in taken)
                    and not any(_reaches(box, m) for m in markers)):
                break
        else:  # nowhere free: beside the marker, where it would have been
            _offset(label, *candidates[0], radius=radius)
        taken.append(label.get_window_extent(renderer))


def _offset(label: Any, side: int, step: int, radius: float) -> None:
    """Place ``label`` beside its marker, on the right (``side`` 1) or the left (-1), ``step``
    label heights up (positive) or down, vertically centred on the point at step 0."""
    label.set_horizontalalignment("left" if side > 0 else "right")
    label.set_verticalalignment("center")
    label.xyann = (side * (radius + LABEL_GAP), step * LABEL_STEP)


def _reaches(box: Any, marker: tuple[float, float, float]) -> bool:
    """Whether the circular ``marker`` (x, y, radius in pixels) reaches into ``box``."""
    x, y, radius = marker
    dx, dy = max(box.x0 - x, 0, x - box.x1), max(box.y0 - y, 0, y - box.y1)
    return dx * dx + dy * dy < radius * radius


# -- memory against context length -------------------------------------------------------------


def parallelism_label(parallelism: ParallelismLike) -> str:
    """The degrees of a parallelism, as the memory chart's title names them.

    >>> parallelism_label({"tensor_parallel": 2, "sequence_parallel": "tp"})
    'TP 2, SP Megatron (over TP), PP 1, EP 1, DP 1'
    """
    par = Parallelism.coerce(parallelism)
    seq = "Megatron (over TP)" if par.megatron_sp else f"{par.sp}"
    return f"TP {par.tp}, SP {seq}, PP {par.pp}, EP {par.ep}, DP {par.dp}"


@dataclass(frozen=True)
class _MemoryTerms:
    """Memory per chip as expressions in ``seq_len``: the three parts, their total, the solution."""

    name: str
    weights: Any
    kv_cache: Any
    activations: Any
    total: Any
    solution: IntegerSolution
    multiple_of: int
    parallelism: Parallelism


def _memory_terms(subject: Model | Layer, chip: Hardware, phase: Phase, batch_size: Any,
                  datatype: DataType, parallelism: ParallelismLike) -> _MemoryTerms:
    if isinstance(subject, Model):
        if phase.is_training:
            raise ConfigError("memory_vs_seq_len: a Model is charted for serving (phase 'decode' or "
                             "'prefill'); see step_breakdown for a training step's memory")
        par = Parallelism.coerce(parallelism)
        step = subject.inference_step(chip, batch_size, None, datatype, par)
        # NB: the serving memory of a model is the same for both inference phases: weights, the
        # KV cache of seq_len tokens and the prefill's activation peak (the larger transient),
        # exactly what Model.max_context solves.
        terms = (step.weight_memory, step.kv_cache_memory, step.activation_memory,
                 step.memory_per_chip)
        _check_only_seq_len(terms)
        solution = subject.max_context(chip, batch_size, datatype, par)
        multiple = int(par.seq_multiple)
    elif isinstance(subject, Layer):
        if parallelism is not None:
            raise ConfigError("memory_vs_seq_len: a layer carries its own parallelism; build it with "
                             "parallelism=... instead of passing one here")
        m = subject.compute_metrics(batch_size, None, phase, datatype, chip)
        terms = (m.weight_memory_per_chip, m.kv_cache_memory_per_chip,
                 m.activation_memory_per_chip, m.memory_per_chip)
        _check_only_seq_len(terms)
        multiple = int(subject.parallelism.seq_multiple)
        solution = max_integer(terms[3], sym.seq_len, chip.hbm_capacity, multiple_of=multiple)
        par = subject.parallelism
    else:
        raise TypeError(f"memory_vs_seq_len: expected a Model or a Layer, got {type(subject).__name__}")
    name = subject.name or type(subject).__name__  # layers may be unnamed
    return _MemoryTerms(name, *terms, solution=solution, multiple_of=multiple, parallelism=par)


def _check_only_seq_len(terms: Sequence[Any]) -> None:
    unbound = _free(terms) - {sym.seq_len}
    if unbound:
        raise ConfigError(f"memory_vs_seq_len: memory still depends on {_names(unbound)}; give the "
                         "model or layer numeric shapes (only seq_len may stay a symbol)")


def memory_vs_seq_len(model_or_layer: Model | Layer, hardware: Hardware | str, path: PathLike, *,
                      phase: Phase | str = "decode", batch_size: int = 1, dtype: DtypeLike = "bf16",
                      parallelism: ParallelismLike = None, max_seq_len: Optional[int] = None,
                      size: tuple[float, float] = DEFAULT_SIZE, dpi: float = DEFAULT_DPI) -> Path:
    """Chart memory per chip against ``seq_len`` and mark the longest context that fits.

    Stacked over a log-spaced ``seq_len`` grid: weights, KV cache and activations, whose sum
    (drawn as a line) is the memory per chip ``M(s)``; the chip's HBM capacity ``C`` is a
    horizontal line, and the largest ``s`` with ``M(s) <= C`` a vertical one. For a
    :class:`~symcost.models.model.Model` ``M(s)`` is the serving memory of
    :func:`~symcost.plan.step.inference_step` under ``parallelism`` and the line is
    :meth:`Model.max_context <symcost.models.model.Model.max_context>` (only the inference phases, which
    give the same memory); for a :class:`~symcost.layers.base.Layer` (its own parallelism) it is
    ``memory_per_chip`` of ``compute_metrics`` in ``phase`` and the line is
    :func:`symcost.analysis.solve.max_integer` on it. Both are exact and verified at ``n`` and ``n + 1``.

    The title names the model or layer, the phase, batch, dtype and chip, and on a second line
    the parallelism (:func:`parallelism_label`); the axes are in tokens and GB (10^9 bytes).
    The grid runs from 1 to ``max_seq_len``, or to twice the solved context when not given.
    Raises ``ValueError`` when anything but ``seq_len`` stays symbolic, or for a suffix other
    than ``.png``/``.svg``.

    >>> import symcost as sc
    >>> from symcost import symbols as S
    >>> attn = sc.GroupedQueryAttentionLayer(hidden_size=S.hidden_size, num_heads=32, num_kv_heads=8)
    >>> memory_vs_seq_len(attn, "h100", "kv.png")
    Traceback (most recent call last):
    symcost.errors.ConfigError: memory_vs_seq_len: memory still depends on hidden_size (h); give the model or
    layer numeric shapes (only seq_len may stay a symbol)
    """
    out, kind = _output(path, "memory_vs_seq_len")
    (width, height), dpi = _check_size(size, dpi, "memory_vs_seq_len")
    chip = _chip(hardware, "memory_vs_seq_len")
    stage = Phase.parse(phase)
    datatype = DataType.parse(dtype)
    if max_seq_len is not None and (isinstance(max_seq_len, bool) or not isinstance(max_seq_len, int)
                                    or max_seq_len < 2):
        raise ConfigError(f"memory_vs_seq_len: max_seq_len must be an integer >= 2, got {max_seq_len!r}")
    terms = _memory_terms(model_or_layer, chip, stage, batch_size, datatype, parallelism)
    best = terms.solution
    if max_seq_len is not None:
        top = max_seq_len
    elif best.status == "found" and best.value is not None:
        top = max(CONTEXT_HEADROOM * best.value, 2)
    else:
        top = FALLBACK_MAX_SEQ_LEN
    # NB: the curves are drawn through real s between integers (each term is a polynomial or a
    # max of polynomials in s); the marked context is the exact integer answer.
    grid = np.geomspace(terms.multiple_of, max(top, 2 * terms.multiple_of), SEQ_LEN_POINTS)
    fig = _figure((width, height), dpi)
    ax = fig.add_subplot()
    _draw_memory(ax, grid, terms, _number(chip.hbm_capacity))
    ax.set_title(f"{terms.name}: {'serving' if isinstance(model_or_layer, Model) else stage.value}, "
                 f"batch {batch_size}, {datatype.value} on {chip.name}\n{parallelism_label(terms.parallelism)}",
                 fontsize=10)
    # NB: below the axes, not in them: a legend inside covered the HBM line whenever the weights
    # alone came near the capacity (the line then runs high, under an upper-left legend)
    fig.legend(fontsize=7, loc="outside lower center", ncols=3)
    ax.grid(True, which="major", lw=0.3)
    return _save(fig, out, kind, dpi)


def _draw_memory(ax: Any, grid: Any, terms: _MemoryTerms, capacity: float) -> None:
    """The stacked memory terms over ``grid``, the HBM capacity and the longest context that fits."""
    values = Sweeper({"weights": terms.weights, "kv": terms.kv_cache,
                      "act": terms.activations, "total": terms.total})(seq_len=grid)
    best = terms.solution
    ax.set_xscale("log")
    ax.stackplot(grid, values.weights / GIGA, values.kv / GIGA, values.act / GIGA,
                 labels=["weights", "KV cache", "activations"], alpha=0.75)
    ax.plot(grid, values.total / GIGA, color="black", lw=1, label="memory per chip")
    ax.axhline(capacity / GIGA, color="red", ls="--", lw=1, zorder=3,  # over the stacked areas
               label=f"HBM capacity {capacity / GIGA:.4g} GB")
    if best.status == "found" and best.value is not None:
        ax.axvline(best.value, color="red", ls=":", lw=1)
        ax.annotate(f"max context {best.value:,}", (best.value, capacity / GIGA), xytext=(-4, 6),
                    textcoords="offset points", ha="right", fontsize=8, color="red")
    else:
        note = "nothing fits at seq_len = 1" if best.status == "nothing_fits" else "every seq_len fits"
        ax.text(0.02, 0.95, note, transform=ax.transAxes, fontsize=8, color="red", va="top")
    top_y = max(float(np.max(values.total)), capacity) / GIGA
    ax.set_ylim(0, top_y * 1.08)
    ax.set_xlim(grid[0], grid[-1])
    ax.set_xlabel("seq_len (tokens)")
    ax.set_ylabel("memory per chip (GB)")


# -- training step breakdown -------------------------------------------------------------------

STEP_HEADROOM = 1.15
"""The bar charts' value axes run to this multiple of the tallest bar: room for its label."""
_TIME_PARTS = (("compute", "compute"), ("bubble", "pipeline bubble"),
               ("pipeline_comm", "pipeline comm"), ("dp_comm", "gradient sync"), ("optimizer_step", "optimizer step"))
_MEMORY_PARTS = (("weights", "weights"), ("gradients", "gradients"),
                 ("optimizer", "optimizer"), ("activations", "activations"))


def step_breakdown(step_or_steps: TrainingStep | Sequence[TrainingStep], path: PathLike, *,
                   labels: Optional[Sequence[str]] = None, size: tuple[float, float] = DEFAULT_SIZE,
                   dpi: float = DEFAULT_DPI) -> Path:
    """Stacked bars of training steps' time and memory, one bar per step, side by side.

    Left panel, seconds per step (:meth:`~symcost.plan.step.TrainingStep.breakdown`): compute
    ``m × T_mb``, the pipeline bubble ``(p - 1)/v × T_mb``, stage-to-stage sends and data-parallel
    communication, summing to ``step_time`` (printed above each bar). Right panel, bytes on the
    fullest chip: weights, fp32 gradients, optimizer states and activations, summing to
    ``memory_per_chip``, with each step's HBM capacity as a dashed tick.

    ``labels`` name the bars (default ``"1: 64× H100_SXM"`` and so on). Raises ``ValueError``
    for a symbolic step (naming what to bind), labels of the wrong length, or a suffix other than
    ``.png``/``.svg``.

    >>> from symcost import models, symbols as S
    >>> step = models.get("llama-3-8b").training_step("h100", seq_len=S.seq_len, global_batch=8)
    >>> step_breakdown(step, "step.svg")
    Traceback (most recent call last):
    symcost.errors.ConfigError: step_breakdown: step 1 is symbolic in seq_len (s); build it with numbers
    """
    out, kind = _output(path, "step_breakdown")
    (width, height), dpi = _check_size(size, dpi, "step_breakdown")
    steps = [step_or_steps] if isinstance(step_or_steps, TrainingStep) else list(step_or_steps)
    rows = _step_rows(steps)
    if labels is None:
        names = [f"{i}: {s.num_chips}× {s.hardware.name}" for i, s in enumerate(steps, 1)]
    else:
        names = [str(x) for x in labels]
        if len(names) != len(steps):
            raise ConfigError(f"step_breakdown: {len(names)} labels for {len(steps)} steps")
    fig = _figure((width, height), dpi)
    ax_time, ax_mem = fig.subplots(1, 2)
    x = np.arange(len(steps))
    bottom = _stacked_bars(ax_time, x, rows, _TIME_PARTS, 1)
    for xi, t in zip(x, bottom):
        ax_time.annotate(f"{t:.3g} s", (xi, t), xytext=(0, 2), textcoords="offset points",
                         ha="center", fontsize=7)
    # NB: the limits are set, not left to the margins: the empty parts of a bar (no bubble, no
    # communication) stack at its top, and their sticky edges would pin the axis to it, under the title
    ax_time.set_ylim(0, max(bottom) * STEP_HEADROOM)
    ax_time.set_ylabel("time per step (s)")
    ax_time.set_title("step time", fontsize=10)
    memory = _stacked_bars(ax_mem, x, rows, _MEMORY_PARTS, GIGA)
    capacity = np.array([_number(s.hardware.hbm_capacity) for s in steps]) / GIGA
    ax_mem.set_ylim(0, max(max(memory), max(capacity)) * STEP_HEADROOM)
    ax_mem.hlines(capacity, x - 0.4, x + 0.4, colors="red", linestyles="--", lw=1,
                  label="HBM capacity")
    ax_mem.set_ylabel("memory per chip (GB)")
    ax_mem.set_title("memory", fontsize=10)
    for ax in (ax_time, ax_mem):
        ax.set_xticks(x, names, fontsize=7, rotation=20 if len(steps) > 2 else 0)
        ax.legend(fontsize=6)
    return _save(fig, out, kind, dpi)


def _step_rows(steps: list) -> list[dict[str, float]]:
    """Each step's :meth:`~symcost.plan.step.TrainingStep.breakdown` as numbers, or a one-line error."""
    if not steps:
        raise ConfigError("step_breakdown: no steps given")
    rows = []
    for i, step in enumerate(steps, 1):
        if not isinstance(step, TrainingStep):
            raise TypeError(f"step_breakdown: step {i} is a {type(step).__name__}, not a TrainingStep")
        parts = step.breakdown()
        unbound = _free(parts.values())
        if unbound:
            raise ConfigError(f"step_breakdown: step {i} is symbolic in {_names(unbound)}; "
                             "build it with numbers")
        rows.append({k: _number(v) for k, v in parts.items()})
    return rows


def _stacked_bars(ax: Any, x: Any, rows: list[dict[str, float]], parts: Sequence[tuple[str, str]],
                  scale: float) -> Any:
    """One stacked bar per row of ``parts`` (divided by ``scale``); returns the bars' tops."""
    bottom = np.zeros(len(rows))
    for key, label in parts:
        heights = np.array([r[key] for r in rows]) / scale
        ax.bar(x, heights, bottom=bottom, label=label, width=0.6)
        bottom = bottom + heights
    return bottom


def pareto_front(plan: Any, path: PathLike, *, size: tuple[float, float] = DEFAULT_SIZE,
                 dpi: float = DEFAULT_DPI) -> Path:
    """Chart a :class:`~symcost.plan.serving.deploy.DeploymentPlan`: tokens/s/GPU against
    tokens/s/user of every deployment evaluated (faint, by kind), those meeting the targets
    (solid) and the Pareto front (a line), with the best of each kind marked and the TPOT target
    as a vertical line (``1/TPOT`` tokens/s/user).

    >>> pareto_front(None, "front.txt")
    Traceback (most recent call last):
    symcost.errors.ConfigError: pareto_front: cannot write 'front.txt': the suffix must be .png or .svg or .pdf
    """
    out, kind = _output(path, "pareto_front")
    (width, height), dpi = _check_size(size, dpi, "pareto_front")
    cols = plan.columns
    fig = _figure((width, height), dpi)
    ax = fig.add_subplot()
    colors = {"aggregated": "tab:blue", "disaggregated": "tab:orange"}
    for name, color in colors.items():
        mine = cols["kind"] == name
        for meets, alpha in ((False, 0.15), (True, 0.6)):
            pick = mine & (cols["meets_sla"] == meets)
            ax.scatter(cols["tokens_per_second_per_user"][pick], cols["tokens_per_second_per_gpu"][pick], s=8,
                       color=color, alpha=alpha, label=f"{name}" if meets else None)
    front = plan.front
    ax.plot([float(d.tokens_per_second_per_user) for d in front], [float(d.tokens_per_second_per_gpu) for d in front],
            color="black", linewidth=1.2, label="Pareto front")
    for best, marker in ((plan.best_aggregated, "o"), (plan.best_disaggregated, "s")):
        if best is not None:
            ax.scatter([float(best.tokens_per_second_per_user)], [float(best.tokens_per_second_per_gpu)], s=70,
                       marker=marker, facecolors="none", edgecolors="black", label=f"best {best.kind}")
    ax.axvline(1 / float(plan.tpot_target), color="gray", linestyle="--", linewidth=1, label="TPOT target")
    ax.set_xlabel("tokens/s/user (1/TPOT)")
    ax.set_ylabel("tokens/s/GPU")
    ax.set_title(f"{plan.model} on {plan.gpus} x {plan.hardware} ({plan.engine}), {plan.workload.label()}",
                 fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return _save(fig, out, kind, dpi)
