"""How the steps and the search read for people: text, LaTeX and HTML with units.

:class:`~symcost.plan.pipeline.TrainingStep`, :class:`~symcost.plan.pipeline.InferenceStep`,
:class:`~symcost.plan.search.SearchResult`, :class:`~symcost.plan.speculative.SpeculativeStep` and
:class:`~symcost.plan.disaggregated.DisaggregatedPlan` call these from their ``__str__``, ``__repr__``,
``_repr_latex_`` and ``_repr_html_``; their fields keep the exact values. Built on
:mod:`symcost.core.display` (``plan`` may not import ``report``).
"""

from __future__ import annotations

import html as _html
from typing import Any, Optional, Sequence

from ..core import display as d
from ..core import units

__all__ = ["training_text", "training_repr", "training_latex", "training_html", "inference_text",
           "inference_repr", "inference_latex", "inference_html", "search_repr", "search_html", "speculative_repr",
           "speculative_text", "speculative_html", "disaggregated_repr", "disaggregated_text", "disaggregated_html"]

_TRAIN_TIME = (("compute", "compute"), ("bubble", "pipeline bubble"), ("pipeline_comm", "pipeline sends"),
               ("dp_comm", "gradient sync"), ("optimizer_step", "optimizer step"))
"""``TrainingStep.breakdown()`` keys of the step time, which they add up to, and their labels."""
_TRAIN_MEMORY = (("weights", "weight_memory"), ("gradients", "gradient_memory"), ("optimizer", "optimizer_memory"),
                 ("activations", "activation_memory"))
_INFER_MEMORY = (("weights", "weight_memory"), ("KV cache", "kv_cache_memory"),
                 ("activations", "activation_memory"))


def _share(part: Any, whole: Any) -> str:
    """``part / whole`` as a percentage when both are numbers, else ``-``."""
    if d.is_numeric(part) and d.is_numeric(whole) and whole:
        return units.format_percent(units.to_number(part) / units.to_number(whole))
    return "-"


def _fits_line(step: Any) -> str:
    chip = step.hardware
    return (f"{d.text(step.memory_per_chip, 'bytes')} of {d.text(chip.hbm_capacity, 'bytes')} HBM: "
            f"{d.fits_text(step.fits)}")


# -- training -------------------------------------------------------------------------------------

def training_repr(step: Any) -> str:
    return d.short_repr("TrainingStep", [
        ("step_time", d.text(step.step_time, "time")), ("mfu", d.text(step.mfu, "percent")),
        ("memory_per_chip", d.text(step.memory_per_chip, "bytes")), ("fits", str(step.fits)),
        ("chips", d.text(step.num_chips, "plain"))])


def training_text(step: Any) -> str:
    parts = step.breakdown()
    times = ", ".join(f"{label} {d.text(parts[key], 'time')}" for key, label in _TRAIN_TIME)
    memory = ", ".join(f"{label} {d.text(getattr(step, f), 'bytes')}" for label, f in _TRAIN_MEMORY)
    return "\n".join([
        f"training step on {d.text(step.num_chips, 'plain')} x {step.hardware.name}: "
        f"{d.text(step.step_time, 'time')}, MFU {d.text(step.mfu, 'percent')}, "
        f"{d.text(step.tokens_per_second, 'token_rate')}",
        f"  time: {times}",
        f"  memory per chip: {memory}; {_fits_line(step)}"])


def training_latex(step: Any) -> str:
    rows = [(r"T_{\mathrm{step}}", d.latex(step.step_time, "time")),
            (r"M_{\mathrm{chip}}", d.latex(step.memory_per_chip, "bytes")),
            (r"\mathrm{MFU}", d.latex(step.mfu, "percent"))]
    return _aligned(rows)


def training_html(step: Any) -> str:
    parts = step.breakdown()
    time_rows = [[label, d.html(parts[key], "time"), _share(parts[key], step.step_time)] for key, label in _TRAIN_TIME]
    time_rows.append(["<b>step</b>", d.html(step.step_time, "time"), _share(step.step_time, step.step_time)])
    memory_rows = [[label, d.html(getattr(step, f), "bytes"), _share(getattr(step, f), step.memory_per_chip)]
                   for label, f in _TRAIN_MEMORY]
    memory_rows += _memory_total_rows(step)
    summary = [["MFU", d.html(step.mfu, "percent")], ["throughput", d.html(step.tokens_per_second, "token_rate")],
               ["micro-batches", d.html(step.num_microbatches, "plain")],
               ["micro-batch time", d.html(step.microbatch_time, "time")],
               ["model FLOPs", d.html(step.model_flops, "flops")]]
    title = f"Training step: {d.text(step.num_chips, 'plain')} x {step.hardware.name}"
    return d.html_section(title, [d.html_table(["time", "value", "share"], time_rows),
                                  d.html_table(["memory per chip", "value", "share"], memory_rows),
                                  d.html_table(["", "value"], summary)])


def _memory_total_rows(step: Any) -> list[list[str]]:
    return [["<b>total</b>", d.html(step.memory_per_chip, "bytes"), _share(step.memory_per_chip, step.memory_per_chip)],
            ["HBM capacity", d.html(step.hardware.hbm_capacity, "bytes"),
             _html.escape(d.fits_text(step.fits))]]


def _aligned(rows: Sequence[tuple[str, str]]) -> str:
    body = " \\\\\n".join(f"{name} &= {value}" for name, value in rows)
    return "$\\begin{aligned}\n" + body + "\n\\end{aligned}$"


# -- inference ------------------------------------------------------------------------------------

def inference_repr(step: Any) -> str:
    return d.short_repr("InferenceStep", [
        ("ttft", d.text(step.ttft, "time")), ("tpot", d.text(step.tpot, "time")),
        ("memory_per_chip", d.text(step.memory_per_chip, "bytes")), ("fits", str(step.fits))])


def inference_text(step: Any) -> str:
    memory = ", ".join(f"{label} {d.text(getattr(step, f), 'bytes')}" for label, f in _INFER_MEMORY)
    return "\n".join([
        f"inference step on {step.hardware.name}: TTFT {d.text(step.ttft, 'time')}, "
        f"TPOT {d.text(step.tpot, 'time')}, {d.text(step.tokens_per_second, 'token_rate')}",
        f"  memory per chip: {memory}; {_fits_line(step)}"])


def inference_latex(step: Any) -> str:
    return _aligned([(r"T_{\mathrm{TTFT}}", d.latex(step.ttft, "time")),
                     (r"T_{\mathrm{TPOT}}", d.latex(step.tpot, "time")),
                     (r"M_{\mathrm{chip}}", d.latex(step.memory_per_chip, "bytes"))])


def _layer_rows(rows: Sequence[tuple[str, Any, Any]]) -> dict[str, tuple[Any, Any]]:
    """``name -> (count, count x latency)`` of breakdown rows."""
    out = {}
    for name, count, metrics in rows:
        latency = metrics.latency
        both = d.is_numeric(latency) and d.is_numeric(count)
        out[name] = (count, units.to_number(count) * units.to_number(latency) if both else None)
    return out


def inference_html(step: Any) -> str:
    times = [["time to first token (TTFT)", d.html(step.ttft, "time")],
             ["time per output token (TPOT)", d.html(step.tpot, "time")],
             ["throughput", d.html(step.tokens_per_second, "token_rate")]]
    if step.prefill_chunk is not None:
        times.append(["prefill chunks", f"{d.html(step.num_prefill_chunks, 'plain')} of {step.prefill_chunk} tokens"])
    memory = [[label, d.html(getattr(step, f), "bytes"), _share(getattr(step, f), step.memory_per_chip)]
              for label, f in _INFER_MEMORY] + _memory_total_rows(step)
    prefill, decode = _layer_rows(step.prefill_rows), _layer_rows(step.decode_rows)
    layers = [[_html.escape(name), d.html(count, "plain"), d.html(t, "time"),
               d.html(decode.get(name, (None, None))[1], "time")] for name, (count, t) in prefill.items()]
    return d.html_section(f"Inference step: {step.hardware.name}", [
        d.html_table(["time", "value"], times),
        d.html_table(["memory per chip", "value", "share"], memory),
        d.html_table(["layer", "count", "prefill time (all copies)", "decode time (all copies)"], layers)])


# -- search ---------------------------------------------------------------------------------------

_SEARCH_KINDS = {"step_time": "time", "ttft": "time", "tpot": "time", "memory_per_chip": "bytes",
                 "mfu": "percent", "tokens_per_second": "token_rate", "cost_per_token": "plain"}
_SEARCH_SHOWN = ("tp", "pp", "dp", "sp", "cp", "ep", "etp", "micro_batch", "interleave", "recompute", "zero_stage",
                 "step_time", "ttft", "tpot", "memory_per_chip", "mfu", "tokens_per_second", "cost_per_token")


def search_cell(row: dict[str, Any], column: str, markup: bool = False) -> str:
    """One cell of a search table: times, bytes, MFU and throughput with units."""
    value = row[column]
    if (column == "sp" and row.get("megatron_sp")) or (column == "etp" and not row.get("expert_grid")):
        return "tp"
    if column == "recompute" and row.get("recompute_layers") is not None:
        value = f"block {row['recompute_layers']}"  # full, the first N blocks of each stage
    kind = _SEARCH_KINDS.get(column)
    if kind is None:
        return _html.escape(str(value)) if markup else str(value)
    return d.html(value, kind) if markup else d.text(value, kind)


def search_columns(result: Any) -> list[str]:
    # the context-parallel degree only when some row uses one (searches try cp = 1 alone by default)
    context = "cp" in result.columns and any(c != 1 for c in result.columns["cp"])
    return [c for c in _SEARCH_SHOWN if c in result.columns and (c != "cp" or context)]


def search_repr(result: Any) -> str:
    best: Optional[dict[str, Any]] = result.best
    items = [("candidates", f"{result.num_candidates:,}"), ("fit", f"{result.num_fit:,}")]
    if best is not None:
        time = "step_time" if "step_time" in best else "tpot"
        items.append(("best", f"tp={best['tp']} pp={best['pp']} dp={best['dp']} "
                              f"{time} {search_cell(best, time)}"))
    return d.short_repr("SearchResult", items)


def recompute_words(recompute: str, layers: Optional[int], stage: str = "pipeline stage") -> str:
    """The recomputation in words, as the training step reads ``recompute`` and
    ``recompute_layers`` (:func:`~symcost.plan.training.training_step`): ``N = 0`` recomputes no
    block (the step is ``"none"``'s), ``N`` the first ``N`` of each stage; with a mode other
    than ``"full"`` the step refuses ``recompute_layers``, and the words say so.

    >>> recompute_words("full", None), recompute_words("full", 11, "stage")
    ('full', 'full, the first 11 blocks of each stage (block method)')
    >>> recompute_words("full", 0)
    'full with no block recomputed (block method, 0 blocks: as none)'
    >>> recompute_words("selective", 2)
    'selective with recompute_layers 2 (block recompute needs full)'
    """
    if layers is None:
        return str(recompute)
    if recompute != "full":
        return f"{recompute} with recompute_layers {layers:,} (block recompute needs full)"
    if layers == 0:
        return "full with no block recomputed (block method, 0 blocks: as none)"
    return f"full, the first {layers:,} block{'s' if layers != 1 else ''} of each {stage} (block method)"


def fit_count(result: Any) -> str:
    """``"Z fit"``, with how many of them block recompute added where it did (they are not among
    the candidates enumerated, so Z may exceed the count that divide).

    >>> from types import SimpleNamespace as R
    >>> fit_count(R(num_fit=1_200, num_block=0)), fit_count(R(num_fit=1_200, num_block=300))
    ('1,200 fit', '1,200 fit (300 of them with block recompute)')
    """
    extra = f" ({result.num_block:,} of them with block recompute)" if getattr(result, "num_block", 0) else ""
    return f"{result.num_fit:,} fit{extra}"


def search_html(result: Any, n: int = 10) -> str:
    """The ``n`` best rows, ranked, the chosen (first) row highlighted."""
    cols = search_columns(result)
    rows = [[str(i + 1)] + [search_cell(r, c, markup=True) for c in cols] for i, r in enumerate(result.rows(n))]
    title = (f"Parallelism search: {result.num_candidates:,} candidates, {result.num_valid:,} divide, "
             f"{fit_count(result)}; best {min(n, len(result))} shown, the chosen one highlighted")
    notes = [d.html_text(note) for note in result.notes]  # what the enumeration left out
    if not rows:
        return d.html_section(title, [*notes, d.html_text("no configuration fits")])
    return d.html_section(title, [*notes, d.html_table(["rank"] + cols, rows, highlight=0)])


# -- speculative decoding -------------------------------------------------------------------------

def _times(x: Any) -> str:
    """A speed-up factor: ``2.37x``; a formula as SymPy prints it."""
    return f"{d.text(x, 'plain')}x" if d.is_numeric(x) else d.text(x, "plain")


def speculative_repr(st: Any) -> str:
    return d.short_repr("SpeculativeStep", [
        ("k", d.text(st.k, "plain")), ("alpha", d.text(st.alpha, "plain")), ("tpot", d.text(st.tpot, "time")),
        ("plain_tpot", d.text(st.plain_tpot, "time")), ("speedup", _times(st.speedup))])


def _speculative_rows(st: Any) -> list[tuple[str, str, str]]:
    """``(label, text, html)`` of each figure of a speculation round."""
    figures = [("tokens per round E = sum of alpha^i, i = 0..k", st.expected_tokens, "plain"),
               ("one draft step", st.draft_time, "time"), ("verification of k + 1 tokens", st.verify_time, "time"),
               ("round = k draft steps + verification", st.round_time, "time"), ("TPOT = round / E", st.tpot, "time"),
               ("plain decoding TPOT", st.plain_tpot, "time"), ("throughput", st.tokens_per_second, "token_rate"),
               ("draft memory per chip", st.draft_memory, "bytes"), ("memory per chip", st.memory_per_chip, "bytes")]
    rows = [(label, d.text(x, kind), d.html(x, kind)) for label, x, kind in figures]
    rows.insert(6, ("speed-up", _times(st.speedup), _html.escape(_times(st.speedup))))
    return rows


def speculative_text(st: Any) -> str:
    rows = {label: shown for label, shown, _ in _speculative_rows(st)}
    steps = d.text(st.k, "plain")
    return "\n".join([
        f"speculative decoding on {st.hardware.name} (draft: {st.draft}): k {steps}, alpha "
        f"{d.text(st.alpha, 'plain')}, {rows['tokens per round E = sum of alpha^i, i = 0..k']} tokens per round",
        f"  round: {steps} draft steps x {rows['one draft step']} + verification "
        f"{rows['verification of k + 1 tokens']} = {rows['round = k draft steps + verification']}",
        f"  TPOT {rows['TPOT = round / E']} (plain decoding {rows['plain decoding TPOT']}): speed-up "
        f"{rows['speed-up']}, {rows['throughput']}; memory per chip {rows['memory per chip']} "
        f"(draft {rows['draft memory per chip']})"])


def speculative_html(st: Any) -> str:
    rows = [[_html.escape(label), shown] for label, _, shown in _speculative_rows(st)]
    title = (f"Speculative decoding: k = {d.text(st.k, 'plain')}, alpha = {d.text(st.alpha, 'plain')}, "
             f"draft {st.draft}, {st.hardware.name}")
    return d.html_section(title, [d.html_table(["", "value"], rows)])


# -- disaggregated serving ------------------------------------------------------------------------

def disaggregated_repr(plan: Any) -> str:
    return d.short_repr("DisaggregatedPlan", [
        ("prefill", str(plan.num_prefill)), ("decode", str(plan.num_decode)), ("chips", str(plan.num_chips)),
        ("ttft", d.text(plan.ttft, "time")), ("tpot", d.text(plan.decode_tpot, "time")),
        ("decode_batch", str(plan.decode_batch))])


def _disaggregated_rows(plan: Any) -> list[tuple[str, Any, str]]:
    return [("prefill time per prompt D", plan.prefill_time, "time"),
            ("slowest prefill stage D_m", plan.prefill_stage_time, "time"),
            ("KV transfer per chip", plan.kv_transfer_bytes, "bytes"),
            ("KV transfer time", plan.kv_transfer_time, "time"),
            ("prefill utilization rho", plan.prefill_utilization, "percent"),
            ("mean TTFT (M/D/1)", plan.ttft, "time"), ("TTFT target", plan.ttft_target, "time"),
            ("decode batch", plan.decode_batch, "plain"), ("decode TPOT", plan.decode_tpot, "time"),
            ("TPOT target", plan.tpot_target, "time"), ("decode load (instances)", plan.decode_load, "plain")]


def _pools(plan: Any) -> str:
    return (f"{plan.num_prefill} prefill : {plan.num_decode} decode instances, {plan.num_chips} chips "
            f"({plan.prefill_chips} per prefill, {plan.decode_chips} per decode instance)")


def _stage(plan: Any, rows: dict[str, str]) -> str:
    """``" (slowest stage ...)"`` for a pipelined prefill, the queue's service time; else empty."""
    if plan.prefill_stage_time == plan.prefill_time:
        return ""
    return f" (slowest stage {rows['slowest prefill stage D_m']})"


def disaggregated_text(plan: Any) -> str:
    rows = {label: d.text(x, kind) for label, x, kind in _disaggregated_rows(plan)}
    return "\n".join([
        f"disaggregated serving at {d.text(plan.rate, 'plain')} requests/s of {plan.prompt_len} + "
        f"{plan.output_len} tokens: {_pools(plan)}",
        f"  prefill: {rows['prefill time per prompt D']} per prompt{_stage(plan, rows)}, utilization "
        f"{rows['prefill utilization rho']}, KV transfer {rows['KV transfer per chip']} per chip in "
        f"{rows['KV transfer time']}, mean TTFT {rows['mean TTFT (M/D/1)']} (target {rows['TTFT target']})",
        f"  decode: batch {plan.decode_batch} ({plan.decode_limit}-bound) at TPOT {rows['decode TPOT']} "
        f"(target {rows['TPOT target']})"])


def disaggregated_html(plan: Any) -> str:
    rows = [[_html.escape(label), d.html(x, kind)] for label, x, kind in _disaggregated_rows(plan)]
    rows.insert(8, ["decode batch bound", _html.escape(plan.decode_limit)])
    return d.html_section(f"Disaggregated serving: {_pools(plan)}", [d.html_table(["", "value"], rows)])
