"""One self-contained HTML page of a model on a chip: what ``symcost report --html FILE`` writes.

The page needs no network: its charts are inline SVG drawn by matplotlib's SVG backend (the
optional ``plot`` extra; without it the page says so where the charts would be), its formulas
presentation MathML (SymPy's presentation printer, which browsers render natively), its
style one inline ``<style>``; a ``Content-Security-Policy`` of ``default-src 'none'`` (inline
styles and ``data:`` images allowed) proves it. Every string that reaches the page is escaped
(:func:`html.escape`). Sections: the model (shape table, parameter count), the chip (its key
figures with units and sources), per-layer formulas and numbers for prefill, decode and training
(the text report's), the roofline, memory against context with the longest context that fits,
the steps' breakdowns, and the assumptions (efficiency model, conventions).

Numbers are shown with units: times in s, ms, µs or ns; bytes with decimal prefixes
(GB = 10^9 bytes, docs/conventions.md §14); FLOPs and rates likewise; three significant digits.

>>> from symcost import Model
>>> tiny = Model.llama(hidden_size=256, num_heads=4, num_kv_heads=2, num_layers=2,
...                    vocab_size=1000, intermediate_size=512)
>>> page = html_report(tiny, "h100", seq_len=128, plots=False)
>>> page.startswith("<!DOCTYPE html>") and "1.693 million" in page     # 1,692,928 parameters
True
"""

from __future__ import annotations

import html
import math
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import sympy as sp
from sympy.printing.mathml import MathMLPresentationPrinter

from ..core import symbols as sym
from ..core.dtypes import DataType, DtypeLike
from ..core.parallelism import Parallelism, ParallelismLike
from ..errors import ConfigError
from ..hardware import Hardware
from ..hardware import get as get_hardware
from ..hardware.presets import PRESETS, REFERENCES, field_sources
from ..layers.base import Layer, Recompute
from ..models.display import context_text
from ..models.model import Model

__all__ = ["html_report", "write_html_report", "PHASES"]

PHASES = ("prefill", "decode", "training")
"""The phases a page reports, in this order (the text report's)."""

MFU_DEFINITION = ("MFU = the model's training matmul FLOPs per step (forward and backward, no recomputation) / "
                  "(step time × chips × dense datasheet peak)")
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
"""The page's Content-Security-Policy: nothing is fetched and no script runs; inline style and
``data:`` images only."""

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f5f8}td.n{text-align:right;white-space:nowrap}
.fits{color:#17692f;font-weight:bold}.nofit{color:#b00020;font-weight:bold}
.note{color:#555;font-size:.9em}figure{margin:1em 0}svg{max-width:100%;height:auto}
math{font-size:1.05em}
"""


# -- numbers with units ------------------------------------------------------------------------

# NB: a private formatter until symcost.core.units lands (same rules: 4 significant digits,
# trailing zeros dropped, the unit chosen on the rounded value, decimal prefixes, 0 in the base unit).
DIGITS = 4
_PREFIXES = tuple((sp.Integer(10) ** (3 * i), p) for i, p in enumerate(("", "k", "M", "G", "T", "P", "E")))
_TIME_UNITS = ((sp.Rational(1, 10**9), "ns"), (sp.Rational(1, 10**6), "µs"), (sp.Rational(1, 10**3), "ms"),
               (sp.Integer(1), "s"))
_WORDS = ((1, ""), (10**6, " million"), (10**9, " billion"), (10**12, " trillion"))


def _value(x: Any) -> float:
    return float(sp.sympify(x))


def _digits(x: float) -> str:
    """``x`` with :data:`DIGITS` significant digits, no exponent, no trailing zeros."""
    if x == 0:
        return "0"
    r = round(x, DIGITS - 1 - math.floor(math.log10(abs(x))))
    if abs(r) >= 10**DIGITS:
        return f"{round(x):,}"  # whole, with separators: 123,456 s
    decimals = max(0, DIGITS - 1 - math.floor(math.log10(abs(r))))
    text = f"{r:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _scaled(x: Any, units: Sequence[tuple[Any, str]]) -> str:
    """``x`` in the largest of ``units`` (smallest first) it reaches once rounded; 0 in the unit 1."""
    value = _value(x)
    chosen = units[0] if value else next(u for u in units if u[0] == 1)
    for factor, name in units:
        if value and abs(float(_digits(value / float(factor)).replace(",", ""))) >= 1:
            chosen = (factor, name)
    return f"{_digits(value / float(chosen[0]))}{chosen[1]}"


def quantity(x: Any, unit: str) -> str:
    """``x`` with a decimal prefix and ``unit`` (seconds as ns, µs, ms, s), 4 significant digits.

    >>> quantity(80 * 10**9, "B"), quantity(sp.Rational(22948, 654296875), "s"), quantity(0, "s")
    ('80 GB', '35.07 µs', '0 s')
    >>> quantity(989_400 * 10**9, "FLOP/s"), quantity(sp.Rational(9999, 10**7), "s")   # 999.9 µs
    ('989.4 TFLOP/s', '999.9 µs')
    """
    if unit == "s":
        return _scaled(x, [(f, f" {n}") for f, n in _TIME_UNITS])
    return _scaled(x, [(f, f" {p}{unit}") for f, p in _PREFIXES])


def _count(x: Any) -> str:
    """An integer with thousands separators, or three significant digits."""
    value = sp.sympify(x)
    return f"{int(value):,}" if value.is_Integer else f"{float(value):.3g}"


def _words(x: Any) -> str:
    """A count in words, as model cards write parameters: ``8.03 billion``."""
    return _scaled(x, _WORDS)


# -- HTML pieces ----------------------------------------------------------------------------------


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table; cells are HTML already (escape text with ``_e``), header text is escaped here."""
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class='n'>{c}</td>" if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);")


def _text(data: str) -> str:
    """Escape MathML text, keeping the entities SymPy writes (``&InvisibleTimes;``)."""
    parts = _ENTITY.split(data)  # text, entity name, text, ...
    return "".join(html.escape(part, quote=False) if i % 2 == 0 else f"&{part};" for i, part in enumerate(parts))


def _serialize(node: Any) -> str:
    """A DOM node as XML, its text escaped (SymPy's own writer leaves ``<`` and ``&`` raw)."""
    if node.nodeType == node.TEXT_NODE:
        return _text(node.data)
    attrs = "".join(f' {k}="{html.escape(v)}"' for k, v in sorted(node.attributes.items())) if node.attributes else ""
    inner = "".join(_serialize(child) for child in node.childNodes)
    return f"<{node.tagName}{attrs}>{inner}</{node.tagName}>"


def formula(expr: Any) -> str:
    """``expr`` as inline presentation MathML (SymPy's presentation printer), its text escaped.

    >>> formula(2 * sym.batch_size)
    '<math><mrow><mn>2</mn><mo>&InvisibleTimes;</mo><mi>b</mi></mrow></math>'
    >>> formula(sp.Symbol("a<b&c"))
    '<math><mi>a&lt;b&amp;c</mi></math>'
    """
    return f"<math>{_serialize(MathMLPresentationPrinter()._print(sp.sympify(expr)))}</math>"


def _fits(fits: Optional[bool]) -> str:
    return {True: "<span class='fits'>fits</span>", False: "<span class='nofit'>does not fit</span>",
            None: "unknown (symbolic)"}[fits]


# -- what the page is about ---------------------------------------------------------------------


@dataclass
class _Page:
    """The model, chip and workload of one page, and the steps computed once for all sections."""

    model: Model
    chip: Hardware
    dtype: DataType
    par: Parallelism
    batch: int
    seq: int
    chunk: Optional[int]
    global_batch: int
    recompute: Recompute
    zero_stage: int
    phases: tuple[str, ...]
    recompute_layers: Optional[int] = None
    inference: Any = None
    training: Any = None
    training_error: Optional[str] = None
    context: Any = None  # the longest context that fits (Model.max_context), with the inference step

    @property
    def sharded(self) -> Model:
        return self.model.with_parallelism(self.par)

    @property
    def recompute_text(self) -> str:
        """The recomputation in words (block recompute: the blocks of each stage recomputed)."""
        from ..plan.display import recompute_words

        return recompute_words(str(self.recompute), self.recompute_layers)


def _steps(page: _Page) -> None:
    """The inference and training steps the phases need (a training step that cannot be built is
    reported on the page, as the text report does)."""
    if "prefill" in page.phases or "decode" in page.phases:
        page.inference = page.model.inference_step(page.chip, page.batch, page.seq, page.dtype, page.par,
                                                   prefill_chunk=page.chunk)
        page.context = page.model.max_context(page.chip, page.batch, page.dtype, page.par, prefill_chunk=page.chunk)
    if "training" in page.phases:
        try:
            page.training = page.model.training_step(page.chip, page.seq, page.global_batch, page.batch,
                                                     page.dtype, page.par, page.recompute, 1, page.zero_stage,
                                                     recompute_layers=page.recompute_layers)
        except ValueError as err:
            page.training_error = " ".join(str(err).split())


# -- sections ------------------------------------------------------------------------------------


def _summary_section(page: _Page) -> str:
    """The headline numbers: the model served and trained, the longest context."""
    rows = []
    if page.inference is not None:
        s, ctx = page.inference, page.context
        rows += [["TTFT (prefill of the prompt)", _e(quantity(s.ttft, "s"))],
                 ["TPOT (one decode step)", _e(quantity(s.tpot, "s"))],
                 ["serving memory per chip", f"{_e(quantity(s.memory_per_chip, 'B'))}: {_fits(s.fits)}"],
                 ["longest context (HBM and the trained length)",
                  _e(context_text(ctx.value, ctx.status, page.model.max_position_embeddings))]]
    if page.training is not None:
        t, unfit = page.training, _e(_unfit(page.training, page.chip))
        rows += [["training step time", _e(quantity(t.step_time, "s")) + unfit],
                 ["MFU", _e(f"{_value(t.mfu):.3f}") + unfit],
                 ["training memory per chip", f"{_e(quantity(t.memory_per_chip, 'B'))}: {_fits(t.fits)}"]]
    return ("<section id='summary'><h2>Summary</h2>" + _table(["", "value"], rows, (1,)) + "</section>")


_DERIVED = {"head_dim": ("d", "hidden_size / num_heads")}
"""Fields whose unset value stands for a derived one: the layer's property and the rule, shown instead."""


def _layer_fields(layer: Layer) -> str:
    """A layer's own fields (its shape), ``name = value`` joined; parallelism and names left out,
    options left unset (``None``) too, except those standing for a derived value, shown with
    their rule (``head_dim = 128 (hidden_size / num_heads)``)."""
    skip = {"name", "layer_idx", "parallelism", "attention", "mlp"}
    items = []
    for key in type(layer).model_fields:
        value = getattr(layer, key)
        if key in skip:
            continue
        if value is None and key in _DERIVED:
            prop, rule = _DERIVED[key]
            items.append(f"{_e(key)} = {_e(getattr(layer, prop))} ({_e(rule)})")
        elif value is not None:
            items.append(f"{_e(key)} = {_e(value)}")
    return ", ".join(items)


def _model_section(page: _Page) -> str:
    model = page.model
    rows = [[_e(name), _e(type(layer).__name__), _e(_count(count)), _layer_fields(layer),
             _e(_count(layer.num_params))] for name, layer, count in _expanded(model)]
    summary = (f"<p><b>{_e(model.name)}</b>: {_e(_count(model.parameter_count))} parameters "
               f"({_e(_words(model.parameter_count))}), {_e(_count(model.num_layers))} blocks.</p>")
    return ("<section id='model'><h2>Model</h2>" + summary
            + _table(["layer", "type", "count", "shape", "parameters (one copy)"], rows, (2, 4)) + "</section>")


def _expanded(model: Model) -> list[tuple[str, Layer, Any]]:
    """``(label, layer, count)``: the embedding, each block's norm, attention and MLP (its two
    identical norms listed once, counted twice), the final norm and the LM head."""
    rows: list[tuple[str, Layer, Any]] = [("embedding", model.embedding, 1)]
    for i, (block, n) in enumerate(model.blocks):
        norm, attention, _, mlp = block.parts  # NB: (norm, attention, norm, mlp), TransformerBlock.parts
        rows += [(f"blocks[{i}].norm", norm, 2 * n), (f"blocks[{i}].attention", attention, n),
                 (f"blocks[{i}].mlp", mlp, n)]
    return rows + [("final_norm", model.final_norm, 1), ("lm_head", model.lm_head, 1)]


_CHIP_FIGURES = (("peak_flops", "matrix peak", "FLOP/s"), ("vector_flops", "vector units", "FLOP/s"),
                 ("hbm_capacity", "HBM capacity", "B"), ("hbm_bandwidth", "HBM bandwidth", "B/s"),
                 ("scale_up_bandwidth", "scale-up link, per direction", "B/s"),
                 ("scale_up_domain", "scale-up domain", "chips"),
                 ("scale_out_bandwidth", "scale-out link", "B/s"),
                 ("collective_latency", "collective hop latency", "s"))
_EFFICIENCY = ("matmul_efficiency", "memory_efficiency", "attention_efficiency", "network_efficiency",
               "kernel_time", "launch_time", "collective_base_latency")


def _sources(chip: Hardware) -> Callable[[str, Any], str]:
    """``source(field, value)``: the preset's source when ``value`` is the preset's own; for a chip
    read from a file with a ``base``, the base preset's source (so marked) for a field the file left
    out and the base supplied; else a note."""
    base = chip.name.removesuffix(" (ideal)")
    preset = PRESETS.get(base)
    found = field_sources(base) if preset is not None else {}
    taken = (chip.efficiency_from or "").removeprefix("base ")
    supplier = PRESETS.get(taken) if (chip.efficiency_from or "").startswith("base ") else None
    supplied = field_sources(taken) if supplier is not None else {}

    def source(name: str, value: Any) -> str:
        key = name.split("[")[0]
        theirs = preset.peak(name[len(key) + 1:-1]) if preset is not None and "[" in name else (
            getattr(preset, key, None) if preset is not None else None)
        if preset is not None and theirs == value and name in found:
            return found[name]
        if (supplier is not None and not Hardware.model_fields[key].is_required()
                and getattr(supplier, key) == value and name in supplied):
            return f"{taken}'s (the file's base): {supplied[name]}"
        if key in _EFFICIENCY and value == Hardware.model_fields[key].default:
            return "not set: the ideal default (no derating, no overhead)"
        return "as given (not a preset's figure)"

    return source


def _chip_section(page: _Page) -> str:
    chip, source = page.chip, _sources(page.chip)
    rows = []
    for key, label, unit in _CHIP_FIGURES:
        name = f"peak_flops[{page.dtype.value}]" if key == "peak_flops" else key
        value = chip.peak(page.dtype) if key == "peak_flops" else getattr(chip, key)
        shown = _count(value) + " chips" if unit == "chips" else quantity(value, unit)
        label = f"{label} ({page.dtype.value}, dense)" if key == "peak_flops" else label
        rows.append([_e(label), _e(shown), _e(source(name, value))])
    cited = sorted({k for r in rows for k in re.findall(r"\[([A-Z0-9-]+)\]", html.unescape(r[2]))})
    refs = "".join(f"<li>[{_e(k)}] {_e(REFERENCES[k])}</li>" for k in cited if k in REFERENCES)
    return ("<section id='chip'><h2>Chip</h2>" + f"<p><b>{_e(chip.name)}</b>{_e(_origin(chip))}</p>"
            + _table(["figure", "value", "source"], rows, (1,))
            + (f"<p class='note'>References:</p><ul class='note'>{refs}</ul>" if refs else "") + "</section>")


def _layer_rows(page: _Page, phase: str) -> list[list[str]]:
    """Per chip, one copy of each layer: the FLOPs formula (b, s free) and the numbers."""
    from ..hardware.timing import op_time

    length = page.chunk if phase == "prefill" and page.chunk is not None and page.chunk < page.seq else page.seq
    rows = []
    for label, layer, count in _expanded(page.sharded):
        mode: Recompute = page.recompute if phase == "training" and label.startswith("blocks") else "none"
        m = layer.compute_metrics(page.batch, length, phase, page.dtype, page.chip, recompute=mode)
        symbolic = layer.compute_metrics(sym.batch_size, sym.seq_len, phase, page.dtype, page.chip,
                                         recompute=mode).flops_per_chip
        peak = page.chip.effective_peak(page.dtype)
        slow = sorted(((_value(op_time(op, page.chip, peak, page.dtype).time) * _value(n), op.name)
                       for op, n in m.ops), reverse=True)[:1]
        rows.append([_e(label), _e(_count(count)), formula(sp.expand(symbolic)), _e(quantity(m.flops_per_chip, "FLOP")),
                     _e(quantity(m.hbm_bytes_per_chip, "B")), _e(quantity(m.latency, "s")), _e(m.bound),
                     _e(slow[0][1] if slow else "")])
    return rows


def _phase_section(page: _Page, phase: str) -> str:
    header = ["layer", "×", "FLOPs per chip (b, s free)", "FLOPs per chip", "HBM bytes", "latency", "bound",
              "slowest op"]
    title = f"per layer, per chip, batch {page.batch}, seq_len {page.seq:,}"
    if phase == "prefill" and page.chunk is not None and page.chunk < page.seq:
        title = f"per layer, per chip, one chunk: batch {page.batch}, {page.chunk:,} tokens"
    elif phase == "training":
        title = (f"per layer, per chip, one micro-batch of {page.batch}, seq_len {page.seq:,}, "
                 f"recompute {page.recompute_text}")
    body = _table(header, _layer_rows(page, phase), (1, 3, 4, 5))
    return f"<section id='{phase}'><h2>{_e(phase.capitalize())}</h2><p class='note'>{_e(title)}</p>{body}" + (
        _phase_total(page, phase) + "</section>")


def _phase_total(page: _Page, phase: str) -> str:
    if phase == "prefill":
        return f"<p>TTFT (the whole model): <b>{_e(quantity(page.inference.ttft, 's'))}</b></p>"
    if phase == "decode":
        tps = _value(page.inference.tokens_per_second)
        return (f"<p>TPOT: <b>{_e(quantity(page.inference.tpot, 's'))}</b>, "
                f"{_e(f'{tps:,.0f}')} tokens/s per replica (batch / TPOT)</p>")
    if page.training is None:
        return f"<p>Training step: not computed: {_e(page.training_error)}</p>"
    t = page.training
    return (f"<p>Step time <b>{_e(quantity(t.step_time, 's'))}</b>, {_e(f'{_value(t.tokens_per_second):,.0f}')} "
            f"tokens/s, MFU {_e(f'{_value(t.mfu):.3f}')}{_e(_unfit(t, page.chip))}</p>")


def _unfit(step: Any, chip: Hardware) -> str:
    """Beside a training step's numbers: that its layout does not fit, and by how much (empty when it fits)."""
    if step.fits is not False:
        return ""
    return (f" (does not fit: {quantity(step.memory_per_chip, 'B')} per chip of {quantity(chip.hbm_capacity, 'B')} "
            "HBM)")


def _breakdown_section(page: _Page) -> str:
    """The serving and training steps' time and memory, part by part, and the longest context."""
    parts = [] if page.inference is None else [_serving_breakdown(page)]
    parts += [] if page.training is None else [_training_breakdown(page)]
    return "<section id='breakdown'><h2>Step breakdowns</h2>" + "".join(parts) + "</section>"


def _serving_breakdown(page: _Page) -> str:
    s, chip = page.inference, page.chip
    memory = [("weights", s.weight_memory), ("KV cache", s.kv_cache_memory),
              ("activations", s.activation_memory), ("total", s.memory_per_chip)]
    rows = [[_e(k), _e(quantity(v, "B"))] for k, v in memory]
    ctx = page.context
    answer = context_text(ctx.value, ctx.status, page.model.max_position_embeddings)
    return ("<h3>Serving: memory per chip (fullest stage)</h3>" + _table(["part", "bytes"], rows, (1,))
            + f"<p>{_fits(s.fits)} in {_e(quantity(chip.hbm_capacity, 'B'))} of HBM; longest context "
            f"(batch {page.batch:,}): <b>{_e(answer)}</b></p>")


def _training_breakdown(page: _Page) -> str:
    t = page.training
    b = t.breakdown()
    time = [[_e(k.replace("_", " ")), _e(quantity(b[k], "s"))] for k in ("compute", "bubble", "pipeline_comm",
                                                                           "dp_comm", "optimizer_step")]
    memory = [[_e(k), _e(quantity(b[k], "B"))] for k in ("weights", "gradients", "optimizer", "activations")]
    return ("<h3>Training step: time</h3>" + _table(["part", "time per step"], time, (1,))
            + f"<p>step time {_e(quantity(t.step_time, 's'))}{_e(_unfit(t, page.chip))}</p>"
            + "<h3>Training: memory per chip (fullest stage)</h3>" + _table(["part", "bytes"], memory, (1,))
            + f"<p>total {_e(quantity(t.memory_per_chip, 'B'))}: {_fits(t.fits)}</p>")


def _assumptions_section(page: _Page) -> str:
    chip = page.chip
    eff = [[_e(k.replace("_", " ")), _e(quantity(getattr(chip, k), "s") if k.endswith(("time", "latency"))
                                        else f"{getattr(chip, k)} ({_value(getattr(chip, k)):.3g})"),
            _e(_sources(chip)(k, getattr(chip, k)))] for k in _EFFICIENCY]
    items = [
        f"workload: batch {page.batch} per replica, seq_len {page.seq:,}, {page.dtype.value}, "
        f"parallelism {_par_text(page.par)}",
        "inference: TTFT is the prefill of seq_len tokens through every pipeline stage in turn, TPOT one decode "
        "step at seq_len keys; memory is the fullest stage's weights and KV cache plus the largest layer's "
        "activation peak" + (f"; prefill in chunks of {page.chunk:,} tokens" if page.chunk else ""),
        f"training: global batch {page.global_batch}, micro-batch {page.batch}, 1F1B pipeline schedule, fp32 "
        f"gradients and Adam states sharded by ZeRO stage {page.zero_stage}, recompute {page.recompute_text}, "
        "no interleaving, communication not overlapped",
        MFU_DEFINITION,
        "counting conventions: docs/conventions.md (a matmul of m×k by k×n is 2mkn FLOPs; decimal prefixes, "
        "GB = 10^9 bytes; the 'bound' column is the pure roofline's verdict)",
    ]
    return ("<section id='assumptions'><h2>Assumptions</h2><h3>Efficiency model (docs/conventions.md §17)</h3>"
            + _table(["field", "value", "source"], eff, (1,))
            + "<ul>" + "".join(f"<li>{_e(t)}</li>" for t in items) + "</ul></section>")


def _deployment_cells(d: Any, priced: bool) -> list[str]:
    cells = [_e(d.kind), _e(d.layout), str(d.gpus), _e(f"{float(d.concurrency):.4g}"),
             _e(f"{float(d.tokens_per_second_per_gpu):,.0f}"), _e(f"{float(d.tokens_per_second_per_user):,.1f}"),
             _e(quantity(d.ttft, "s")), _e(quantity(d.tpot, "s")), _e(quantity(d.memory_per_chip, "B"))]
    return cells + ([_e(f"{float(d.cost_per_million_tokens):,.4g}")] if priced else [])


def _serving_section(plan: Any, plots: bool, front: int = 12) -> str:
    """A :class:`~symcost.plan.serving.deploy.DeploymentPlan`: its question, the best deployment of
    each kind, the disaggregation gain, the Pareto front (at most ``front`` rows, evenly spaced)
    and its chart."""
    priced = plan.gpu_price is not None
    header = ["kind", "layout", "GPUs", "concurrency", "tokens/s/GPU", "tokens/s/user", "TTFT", "TPOT",
              "memory per chip"] + (["cost per 1M tokens"] if priced else [])
    numeric = tuple(range(2, len(header)))
    best = [b for b in (plan.best_aggregated, plan.best_disaggregated) if b is not None]
    question = (f"{plan.workload.label()} on {plan.gpus} x {plan.hardware} ({plan.engine}); mean TTFT <= "
                f"{quantity(plan.ttft_target, 's')}, TPOT <= {quantity(plan.tpot_target, 's')}; best = "
                + ("least cost per million tokens at " + f"{float(plan.gpu_price):g} per GPU-hour"
                   if plan.objective == "cost" else "most tokens/s per GPU"))
    gain = plan.disaggregation_gain
    ratio = "" if gain is None else f"<p>disaggregated / aggregated tokens/s/GPU: {_e(f'{float(gain):.3g}')}</p>"
    shown = plan.front if len(plan.front) <= front else plan.front[:: -(-len(plan.front) // front)]
    body = (f"<p class='note'>{_e(question)}</p><h3>Best of each kind</h3>"
            + (_table(header, [_deployment_cells(d, priced) for d in best], numeric) if best
               else "<p>No deployment meets the targets.</p>")
            + ratio
            + f"<h3>Pareto front ({len(plan.front)} deployments meeting the targets)</h3>"
            + _table(header, [_deployment_cells(d, priced) for d in shown], numeric))
    if plots:
        from . import plots as charts

        try:
            charts.require_matplotlib()
            body += (f"<figure>{_inline_svg(lambda p: charts.pareto_front(plan, p), 'front')}"
                     "<figcaption>tokens/s/GPU against tokens/s/user: every deployment evaluated, the front, "
                     "the best of each kind</figcaption></figure>")
        except ImportError:
            body += "<p class='note'>The chart needs matplotlib: <code>pip install symcost[plot]</code>.</p>"
    return f"<section id='serving'><h2>Serving plan</h2>{body}</section>"


def _origin(chip: Hardware) -> str:
    """The header's note on a chip read from a file: where its efficiency model comes from."""
    return f"; efficiency model: {chip.efficiency_from}" if chip.efficiency_from else ""


def _par_text(par: Parallelism) -> str:
    from .plots import parallelism_label

    return parallelism_label(par)


# -- charts -----------------------------------------------------------------------------------------


def _inline_svg(draw: Callable[[Path], Any], prefix: str) -> str:
    """What ``draw(path)`` writes to an SVG file, as an inline ``<svg>`` element: the XML prolog
    dropped and every ``id`` prefixed, so several charts on one page cannot share an id."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "chart.svg"
        draw(path)
        text = path.read_text(encoding="utf-8")
    text = text[text.index("<svg"):]
    ids = set(re.findall(r'\bid="([^"]+)"', text))
    text = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
    return re.sub(r"#([A-Za-z_][\w.-]*)", lambda m: f"#{prefix}-{m.group(1)}" if m.group(1) in ids else m.group(0),
                  text)


def _charts_section(page: _Page) -> str:
    from . import plots

    try:
        plots.require_matplotlib()
    except ImportError:
        return ("<section id='charts'><h2>Charts</h2><p class='note'>The charts need matplotlib: "
                "<code>pip install symcost[plot]</code>.</p></section>")
    figures = []
    phase = "decode" if "decode" in page.phases else page.phases[0]
    block = page.sharded.blocks[0][0].compute_metrics(page.batch, page.seq, phase, page.dtype, page.chip)
    figures.append((f"roofline: one block, {phase}", _inline_svg(
        lambda p: plots.roofline(block, page.chip, p, dtype=page.dtype.value), "roof")))
    if page.inference is not None:
        figures.append(("memory per chip against context length, the longest context that fits marked",
                        _inline_svg(lambda p: plots.memory_vs_seq_len(
                            page.model, page.chip, p, batch_size=page.batch, dtype=page.dtype.value,
                            parallelism=page.par), "mem")))
    if page.training is not None:
        figures.append(("training step: time and memory per chip", _inline_svg(
            lambda p: plots.step_breakdown(page.training, p, size=(8, 4)), "step")))
    body = "".join(f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>" for caption, svg in figures)
    return f"<section id='charts'><h2>Charts</h2>{body}</section>"


def _version() -> str:
    """The installed distribution's version (``symcost.__version__`` would be an import of the
    package root from below it: a cycle)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("symcost")
    except PackageNotFoundError:
        return "(not installed)"


# -- the page ---------------------------------------------------------------------------------------


def html_report(model: Model, hardware: Union[Hardware, str], *, batch_size: int = 1, seq_len: int = 8192,
                dtype: DtypeLike = "bf16", parallelism: ParallelismLike = None,
                prefill_chunk: Optional[int] = None, global_batch: Optional[int] = None,
                recompute: Recompute = "none", zero_stage: int = 1, phases: Sequence[str] = PHASES,
                plots: bool = True, serving_plan: Any = None, recompute_layers: Optional[int] = None) -> str:
    """The HTML page of ``model`` on ``hardware`` (the text report's numbers, with charts).

    ``global_batch`` defaults to ``batch_size × dp × pp`` (one micro-batch per stage); ``phases``
    picks among prefill, decode and training; ``plots=False`` leaves the charts out;
    ``serving_plan`` (a :class:`~symcost.plan.serving.deploy.DeploymentPlan`) adds a serving section:
    the best deployment of each kind, the Pareto front and its chart. ``recompute_layers`` with
    ``recompute="full"``: the training step's block recompute (:func:`~symcost.plan.training.training_step`).
    Raises :class:`~symcost.errors.ConfigError` for an unknown phase or a symbolic workload.

    The serving memory it tables is ``weights + KV cache + activations`` per chip; the KV cache
    is ``2 (K, V) × L × g × d × s × b × bytes``:

    >>> tiny = Model.llama(hidden_size=256, num_heads=4, num_kv_heads=2, num_layers=2,
    ...                    vocab_size=1000, intermediate_size=512)
    >>> page = html_report(tiny, "h100", seq_len=128, phases=["decode"], plots=False)
    >>> "<td>KV cache</td><td class='n'>131.1 kB</td>" in page      # 2*2*2*64*128*1*2 = 131,072 B
    True
    """
    if not isinstance(model, Model):
        raise TypeError(f"html_report: expected a Model, got {type(model).__name__}")
    chosen = tuple(p for p in PHASES if p in phases)
    unknown = set(phases) - set(PHASES)
    if unknown or not chosen:
        raise ConfigError(f"html_report: phases must be among {', '.join(PHASES)}, got {list(phases)!r}")
    for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"html_report: {name} must be a positive integer, got {value!r}")
    free = sp.sympify(model.parameter_count).free_symbols
    if free:
        raise ConfigError(f"html_report: the model's shapes must be numbers; free: "
                          f"{', '.join(sorted(sym.describe(x) for x in free))}")
    chip = get_hardware(hardware)
    if chip.is_symbolic:
        raise ConfigError("html_report: hardware must be a numeric chip (a preset name or a Hardware of numbers)")
    par = Parallelism.coerce(parallelism)
    gb = global_batch if global_batch is not None else batch_size * int(par.dp) * int(par.pp)
    page = _Page(model, chip, DataType.parse(dtype), par, batch_size, seq_len, prefill_chunk,
                 gb, recompute, zero_stage, chosen, recompute_layers)
    _steps(page)
    sections = [_summary_section(page), _model_section(page), _chip_section(page)]
    sections += [_phase_section(page, p) for p in page.phases]
    sections += [_breakdown_section(page), _charts_section(page) if plots else ""]
    sections += [_serving_section(serving_plan, plots) if serving_plan is not None else "", _assumptions_section(page)]
    title = f"{model.name} on {page.chip.name}: symcost report"
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{_e(title)}</h1><p class='note'>symcost {_e(_version())}; {_e(page.dtype.value)}, "
            f"{_e(_par_text(par))}{_e(_origin(page.chip))}</p>" + "\n".join(sections) + "</body></html>\n")


def write_html_report(path: Union[str, Path], model: Model, hardware: Union[Hardware, str], **options: Any) -> Path:
    """Write :func:`html_report` (``options`` are its keywords) to ``path`` as UTF-8; the path back.

    >>> import tempfile, pathlib
    >>> from symcost import Model
    >>> tiny = Model.llama(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=1, vocab_size=128,
    ...                    intermediate_size=128, name="tiny")
    >>> out = write_html_report(pathlib.Path(tempfile.mkdtemp()) / "tiny.html", tiny, "h100",
    ...                         seq_len=64, phases=["decode"], plots=False)
    >>> out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    True
    """
    out = Path(path)
    out.write_text(html_report(model, hardware, **options), encoding="utf-8")
    return out
