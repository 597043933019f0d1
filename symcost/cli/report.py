"""``symcost report``: per-layer tables, then the whole model served and trained."""

from __future__ import annotations

import argparse
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

from .. import __version__
from . import serving
from .common import (
    CHUNK_HELP,
    UsageError,
    add_common,
    check_out,
    chunk_text,
    count_text,
    emit,
    fits_text,
    guarded_write,
    hardware_arg,
    human,
    model_arg,
    non_negative,
    num,
    one_line,
    par_text,
    parallelism_arg,
    positive,
)

if TYPE_CHECKING:
    from ..core.dtypes import DataType
    from ..hardware import Hardware
    from ..models.model import Model


def _layer_rows(model: Model) -> list[tuple[str, Any, Any]]:
    """(label, layer, count) for every layer, blocks expanded into their parts."""
    from ..models.model import TransformerBlock

    rows: list[tuple[str, Any, Any]] = []
    for name, layer, count in model.parts():
        if isinstance(layer, TransformerBlock):
            for label, part in layer.labelled_parts:
                if label == "norm" and any(r[0] == f"{name}.norm" for r in rows):
                    continue  # the block's norms are identical: listed once, counted num_norms times
                rows.append((f"{name}.{label}", part, layer.num_norms * count if label == "norm" else count))
        else:
            rows.append((name, layer, count))
    return rows


MFU_DEFINITION = ("MFU = the model's training matmul FLOPs per step (forward and backward, no recomputation, "
                  "counted as torch's FlopCounterMode counts them) / (step time x chips x dense datasheet peak)")
"""The MFU the report prints (:mod:`symcost.plan.step`): not PaLM's 6N + 12*L*h*s per token estimate."""


_LABELS = {"weights": "weights", "kv_cache": "KV cache", "activations": "activations", "gradients": "gradients",
           "optimizer_states": "optimizer states"}


def _memory_line(label: str, memory: dict[str, Any], chip: Hardware, fits: Optional[bool]) -> str:
    parts = ", ".join(f"{_LABELS[k]} {human(v, 'B')}" for k, v in memory.items() if k != "total")
    return (f"{label}: {parts}, total {human(memory['total'], 'B')} of {human(chip.hbm_capacity, 'B')} HBM: "
            f"{fits_text(fits)}")


def _layer_table(model: Model, phase: str, batch: int, seq: int, dtype: DataType, chip: Hardware,
                 recompute: str, lines: list[str]) -> list[dict[str, Any]]:
    """Per-layer rows of one phase (per chip, one copy of each layer) into ``lines``; JSON rows back."""
    import sympy as sp

    from ..core import symbols as sym
    from ..hardware.timing import op_time

    peak = chip.effective_peak(dtype)
    ideal = chip.ideal()  # "bound" is the pure roofline's verdict (docs/conventions.md §17)
    ideal_peak = ideal.effective_peak(dtype)
    lines.append(f"{'layer':24s} {'x':>4s} {'FLOPs/chip':>12s} {'HBM bytes':>12s} {'latency':>10s} "
                 f"{'bound':>13s}  FLOPs formula (b, s free)")
    rows_out = []
    for label, layer, count in _layer_rows(model):
        mode = recompute if label.startswith("blocks") else "none"
        m = layer.compute_metrics(batch, seq, phase, dtype, chip, recompute=mode)
        formula = layer.compute_metrics(sym.batch_size, sym.seq_len, phase, dtype, chip, recompute=mode).flops_per_chip
        ops = []
        for op, n in m.ops:
            ot, rt = op_time(op, chip, peak, dtype), op_time(op, ideal, ideal_peak, dtype)
            c, mem = float(sp.sympify(ot.compute)), float(sp.sympify(ot.memory))
            if c == 0 and mem == 0:
                continue
            verdict = "compute" if float(sp.sympify(rt.compute)) >= float(sp.sympify(rt.memory)) else "memory"
            ops.append({"op": op.name, "count": num(n), "bound": verdict,
                        "time_s": max(c, mem) * float(sp.sympify(n))})
        rows_out.append({"layer": label, "count": num(count), "flops_per_chip": num(m.flops_per_chip),
                         "hbm_bytes_per_chip": num(m.hbm_bytes_per_chip), "latency_s": num(m.latency),
                         "bound": m.bound, "flops_formula": str(sp.expand(formula)), "ops": ops})
        lines.append(f"{label:24s} {str(count):>4s} {human(m.flops_per_chip, 'FLOP'):>12s} "
                     f"{human(m.hbm_bytes_per_chip, 'B'):>12s} {human(m.latency, 's'):>10s} {m.bound:>13s}  "
                     f"{sp.expand(formula)}")
        for o in ops:
            lines.append(f"{'':6s}{o['op']:26s} {o['bound']}-bound")
    return rows_out


@dataclass(frozen=True)
class _Run:
    """What one report is about: the model, the chip and the workload the options name."""

    args: argparse.Namespace
    model: Model
    chip: Hardware
    dtype: DataType
    par: dict[str, Any]
    phases: list[str]

    @functools.cached_property
    def sharded(self) -> Model:
        return self.model.with_parallelism(self.par)

    @property
    def global_batch(self) -> int:
        return self.args.global_batch or self.args.batch * self.par["data_parallel"] * self.par["pipeline_parallel"]


_INFERENCE_ASSUMES = (
    "batch sequences per replica; TTFT is the prefill of seq_len tokens through every pipeline stage in turn, TPOT "
    "one decode step at seq_len keys; memory is the fullest stage's weights and KV cache plus the largest layer's "
    "activation peak (of one chunk when chunked)")
_TRAINING_ASSUMES = (
    "1F1B pipeline schedule, fp32 gradients and Adam states sharded by the ZeRO stage (stage 1: Megatron's "
    "distributed optimizer), the first stage's in-flight micro-batches' activations")


def report(args: argparse.Namespace) -> int:
    """The report: per-layer tables, then the whole model served (``inference_step``) and
    trained (``training_step``) under the given parallelism, with every assumption stated."""
    model = model_arg(args.model, args)  # a bad name is answered before the library loads
    from ..core.dtypes import DataType
    from ..core.parallelism import Parallelism

    chip = hardware_arg(args.hardware, args.engine)
    dtype = DataType.parse(args.dtype)
    if args.plot:
        check_out(args.plot, "--plot", plot=True)
    if args.html:
        check_out(args.html, "--html")
    par = parallelism_arg(args)
    speculative = serving.check_speculative(args)
    model.with_parallelism(par)  # a degree that does not divide: one line, exit 2
    _check_recompute_layers(args, model, par["pipeline_parallel"])
    run = _Run(args, model, chip, dtype, par, [args.phase] if args.phase else ["prefill", "decode", "training"])
    parallelism = Parallelism.coerce(par)
    chips = num(parallelism.chips_per_replica * parallelism.pp * parallelism.dp)
    batch, seq, chunk = args.batch, args.seq, args.prefill_chunk
    assumptions = {
        "batch_size": batch, "seq_len": seq, "prefill_chunk": chunk, "num_prefill_chunks": None,
        "micro_batch": batch, "global_batch": run.global_batch, "num_microbatches": None,
        "recompute": args.recompute, "recompute_layers": args.recompute_layers, "zero_stage": args.zero_stage,
        "interleave": 1, "mfu_definition": MFU_DEFINITION, "inference": _INFERENCE_ASSUMES,
        "training": _TRAINING_ASSUMES,
    }
    engine = chip.runtime.label if chip.runtime.name != "neutral" else None
    out: dict[str, Any] = {"model": model.name, "hardware": chip.name, "efficiency_from": chip.efficiency_from,
                           "engine": chip.runtime.label,
                           "dtype": dtype.value,
                           "batch_size": batch, "seq_len": seq, "parallelism": par, "num_chips": chips,
                           "parameters": num(model.parameter_count), "assumptions": assumptions, "phases": {}}
    origin = f"; efficiency model: {chip.efficiency_from}" if chip.efficiency_from else ""
    origin += f"; engine {engine}" if engine else ""
    if model.vision_parameters:
        out["vision_parameters_not_costed"] = model.vision_parameters
    text_only = (f"; text only, the vision encoder's {model.vision_parameters:,} not costed"
                 if model.vision_parameters else "")
    lines = [f"symcost {__version__} report: {model.name} ({model.parameter_count:,} parameters{text_only}) "
             f"on {chip.name} "
             f"({human(chip.hbm_capacity, 'B')} HBM{origin}), {dtype.value}",
             f"parallelism: {par_text(par)}: {chips} chip{'s' if chips != 1 else ''}"]
    inference, training, training_error = _steps(run, assumptions, lines)
    for phase in run.phases:
        _phase_section(run, phase, inference, training, training_error, lines, out)
    if inference is not None:
        _serving_summary(run, inference, lines, out)
    if speculative:
        serving.speculative_section(run, lines, out)
    if args.plot:
        _roofline_plot(run, lines)
    if args.html:
        _html_page(run, lines)
    emit(args, out, lines)
    return 0


def _check_recompute_layers(args: argparse.Namespace, model: Model, pp: int) -> None:
    """``--recompute-layers N``: only with ``--recompute full``, at most the blocks of the largest
    pipeline stage (the library's rule, :func:`~symcost.plan.pipeline.block_recompute_stages`)."""
    n = args.recompute_layers
    if n is None:
        return
    if args.recompute != "full":
        raise UsageError(f"argument --recompute-layers: needs --recompute full (Megatron-Core's block method "
                         f"recomputes whole blocks), got --recompute {args.recompute}")
    import sympy as sp

    if not sp.sympify(model.num_layers).is_Integer or int(model.num_layers) < pp:
        return  # the training step says what is wrong with the stages
    from ..plan.pipeline import pipeline_stages

    largest = max(pipeline_stages(int(model.num_layers), pp))
    if n > largest:
        raise UsageError(f"argument --recompute-layers: at most {largest}, the blocks of the largest pipeline stage "
                         f"(--pp {pp}), got {n}")


def _recompute_text(args: argparse.Namespace) -> str:
    """The recomputation as the report states it."""
    from ..plan.display import recompute_words

    return recompute_words(args.recompute, args.recompute_layers)


def _steps(run: _Run, assumptions: dict[str, Any], lines: list[str]) -> tuple[Any, Any, Optional[str]]:
    """The inference step and the training step the phases need (a training step that cannot be
    built is reported, not raised, unless training alone was asked for)."""
    args, batch, seq, chunk = run.args, run.args.batch, run.args.seq, run.args.prefill_chunk
    inference = training = None
    if "prefill" in run.phases or "decode" in run.phases:
        inference = run.model.inference_step(run.chip, batch, seq, run.dtype, run.par, prefill_chunk=chunk)
        assumptions["num_prefill_chunks"] = num(inference.num_prefill_chunks)
        lines.append(f"inference: batch {batch:,} per replica, prompt {seq:,} tokens{_beyond(run)}, decode at "
                     f"{seq:,} keys, {chunk_text(chunk, inference.num_prefill_chunks if chunk else None)}")
    training_error = None
    if "training" in run.phases:
        try:
            training = run.model.training_step(run.chip, seq, run.global_batch, batch, run.dtype, run.par,
                                               args.recompute, 1, args.zero_stage,
                                               recompute_layers=args.recompute_layers)
        except ValueError as err:
            if args.phase == "training":
                raise
            training_error = one_line(err)
        if training is not None:
            assumptions["num_microbatches"] = num(training.num_microbatches)
            m = training.num_microbatches
            lines.append(f"training: micro-batch {batch:,}, global batch {run.global_batch:,} ({count_text(m)} "
                         f"micro-batch{'es' if m != 1 else ''} per replica per step), seq {seq:,}{_beyond(run)}, "
                         f"recompute {_recompute_text(args)}, ZeRO stage {args.zero_stage}, no interleaving, "
                         "communication not overlapped")
    return inference, training, training_error


def _beyond(run: _Run) -> str:
    """A note when the sequence is longer than the model was trained for (it is costed all the same)."""
    trained = run.model.max_position_embeddings
    if trained is None or run.args.seq <= trained:
        return ""
    return f" (longer than the model's trained length, {trained:,} tokens)"


def _phase_section(run: _Run, phase: str, inference: Any, training: Any, training_error: Optional[str],
                   lines: list[str], out: dict[str, Any]) -> None:
    """One phase: its per-layer table, then the whole model's numbers for it."""
    batch, seq, chunk = run.args.batch, run.args.seq, run.args.prefill_chunk
    length = seq
    title = f"per layer, per chip, batch {batch:,}, seq_len {seq:,}"
    if run.par["pipeline_parallel"] != 1:
        pp = run.par["pipeline_parallel"]
        title += f"; x counts the whole model, each of the {pp} stages holds 1/{pp} of the blocks"
    if phase == "prefill" and chunk is not None and chunk < seq:
        length, title = chunk, f"per layer, per chip, one chunk: batch {batch:,}, {chunk:,} tokens"
    elif phase == "training":
        title = f"per layer, per chip, one micro-batch of {batch:,}, seq_len {seq:,}"
        if run.args.recompute_layers is not None:
            title += f"; blocks shown recomputed, the step recomputes {run.args.recompute_layers:,} per stage"
    lines.append(f"\n== {phase} ==")
    lines.append(f"({title})")
    rows = _layer_table(run.sharded, phase, batch, length, run.dtype, run.chip,
                        run.args.recompute if phase == "training" else "none", lines)
    if phase != "training":
        out["phases"][phase] = {"layers": rows, "total": _inference_total(run, phase, inference, lines)}
    elif training is None:
        lines.append(f"training step: not computed: {training_error}")
        out["training"] = {"not_computed": training_error}
        out["phases"][phase] = {"layers": rows, "total": None}
    else:
        out["phases"][phase] = {"layers": rows, "total": _training_total(run, training, lines, out)}


def _training_memory(training: Any) -> dict[str, Any]:
    return {"weights": training.weight_memory, "gradients": training.gradient_memory,
            "optimizer_states": training.optimizer_memory, "activations": training.activation_memory,
            "total": training.memory_per_chip}


def _step_line(training: Any, chip: Hardware) -> str:
    """The step time, throughput and MFU; led by the verdict when the layout does not fit (the
    numbers are what the step would take with the memory it lacks)."""
    numbers = (f"step time {human(training.step_time, 's')} (bubble {human(training.bubble_time, 's')}, "
               f"gradient sync {human(training.dp_comm_time, 's')}), "
               f"{float(training.tokens_per_second):,.0f} tokens/s, MFU {float(training.mfu):.3f}")
    if training.fits is False:
        return (f"does not fit ({human(training.memory_per_chip, 'B')} per chip of {human(chip.hbm_capacity, 'B')} "
                f"HBM); if it did: {numbers}")
    return numbers


def _training_total(run: _Run, training: Any, lines: list[str], out: dict[str, Any]) -> dict[str, Any]:
    memory = _training_memory(training)
    lines.append(_step_line(training, run.chip))
    lines.append(f"  ({MFU_DEFINITION})")
    lines.append(_memory_line("training memory per chip (fullest stage)", memory, run.chip, training.fits))
    total = {"step_time_s": num(training.step_time), "memory_per_chip": {k: num(v) for k, v in memory.items()}}
    out["training"] = {
        "step_time_s": float(training.step_time), "compute_time_s": float(training.compute_time),
        "bubble_time_s": float(training.bubble_time), "dp_comm_time_s": float(training.dp_comm_time),
        "pipeline_comm_time_s": float(training.pipeline_comm_time),
        "tokens_per_second": float(training.tokens_per_second), "mfu": float(training.mfu),
        "mfu_definition": MFU_DEFINITION, "memory_per_chip": total["memory_per_chip"],
        "hbm_capacity": num(run.chip.hbm_capacity), "fits": training.fits, "global_batch": run.global_batch,
        "micro_batch": run.args.batch, "num_microbatches": num(training.num_microbatches),
        "recompute": run.args.recompute, "recompute_layers": run.args.recompute_layers,
        "zero_stage": run.args.zero_stage, "interleave": 1}
    out["training_that_fits"] = None if training.fits is not False else _smallest_fitting(run, lines)
    return total


SEARCH_CHIPS = tuple(2**k for k in range(13))
"""The chip counts the report searches, in turn, for a training layout that fits when the one asked
for does not: 1, 2, 4, ..., 4,096."""


def _smallest_fitting(run: _Run, lines: list[str]) -> Optional[dict[str, Any]]:
    """The fastest training layout on the fewest chips (of :data:`SEARCH_CHIPS`) that fits, for the
    same model, chip, global batch and sequence (:func:`symcost.plan.search.parallelism`: every TP, PP,
    DP, SP degree, micro-batch, interleaving, recompute mode and ZeRO stage); its step and memory
    lines into ``lines``, its numbers back (``None`` when no count fits or the search refuses)."""
    from ..plan import search

    args = run.args
    tried = ", ".join(f"{n:,}" for n in SEARCH_CHIPS[:3]) + f", ..., {SEARCH_CHIPS[-1]:,}"
    head = (f"smallest training layout that fits on {run.chip.name} (the fewest of {tried} chips, the fastest "
            "there, searched over TP, PP, DP, SP, micro-batch, interleaving, recompute (block too) and ZeRO stage; "
            "global batch "
            f"{run.global_batch:,}, seq {args.seq:,})")
    try:
        for chips in SEARCH_CHIPS:
            table = search.parallelism(run.model, run.chip, chips, run.global_batch, args.seq, dtype=run.dtype.value)
            if len(table):
                break
        else:
            lines.append(f"{head}: none")
            return None
    except ValueError as err:
        lines.append(f"{head}: not searched: {one_line(err)}")
        return None
    best, par = table.row(0), table.parallelism(0)
    step = run.model.training_step(run.chip, args.seq, run.global_batch, best["micro_batch"], run.dtype, par,
                                   best["recompute"], best["interleave"], best["zero_stage"], best["overlap"],
                                   recompute_layers=best["recompute_layers"])
    layout = {"tensor_parallel": best["tp"], "pipeline_parallel": best["pp"], "data_parallel": best["dp"],
              "sequence_parallel": "tp" if best["megatron_sp"] else best["sp"], "expert_parallel": best["ep"],
              "context_parallel": best["cp"], "cp_comm_type": par.cp_comm_type}
    interleave = f", interleave {best['interleave']}" if best["interleave"] != 1 else ""
    memory = _training_memory(step)
    blocks = best["recompute_layers"]
    from ..plan.display import recompute_words

    recompute = recompute_words(best["recompute"], blocks, "stage")
    lines.append(f"{head}: {chips:,} chip{'s' if chips != 1 else ''}, {par_text(layout)}, micro-batch "
                 f"{best['micro_batch']:,}{interleave}, recompute {recompute}, ZeRO stage {best['zero_stage']}")
    lines.append(f"  {_step_line(step, run.chip)}")
    lines.append("  " + _memory_line("training memory per chip (fullest stage)", memory, run.chip, step.fits))
    return {"num_chips": chips, "parallelism": layout, "micro_batch": best["micro_batch"],
            "interleave": best["interleave"], "recompute": best["recompute"], "recompute_layers": blocks,
            "zero_stage": best["zero_stage"],
            "step_time_s": float(step.step_time), "tokens_per_second": float(step.tokens_per_second),
            "mfu": float(step.mfu), "memory_per_chip": {k: num(v) for k, v in memory.items()}, "fits": step.fits}


def _serving_memory(inference: Any) -> dict[str, Any]:
    return {"weights": inference.weight_memory, "kv_cache": inference.kv_cache_memory,
            "activations": inference.activation_memory, "total": inference.memory_per_chip}


def _inference_total(run: _Run, phase: str, inference: Any, lines: list[str]) -> dict[str, Any]:
    chunk = run.args.prefill_chunk
    if phase == "prefill":
        stages = "pipeline stages in turn, " if run.par["pipeline_parallel"] != 1 else ""
        lines.append(f"TTFT {human(inference.ttft, 's')}: the whole model, {stages}"
                     f"{chunk_text(chunk, inference.num_prefill_chunks if chunk else None)}")
        latency = inference.ttft
    else:
        lines.append(f"TPOT {human(inference.tpot, 's')}, {float(inference.tokens_per_second):,.0f} "
                     f"tokens/s per replica (batch / TPOT)")
        latency = inference.tpot
    return {"latency_s": num(latency), "memory_per_chip": {k: num(v) for k, v in _serving_memory(inference).items()}}


def _serving_summary(run: _Run, inference: Any, lines: list[str], out: dict[str, Any]) -> None:
    """The serving memory and the longest context: what fits in HBM and the model's trained
    length, the smaller and which binds."""
    from ..models.display import context_binds, context_text

    batch, chunk, chip = run.args.batch, run.args.prefill_chunk, run.chip
    memory = _serving_memory(inference)
    lines.append("\n" + _memory_line("inference memory per chip (fullest stage)", memory, chip, inference.fits))
    ctx = run.model.max_context(chip, batch_size=batch, dtype=run.dtype, parallelism=run.par, prefill_chunk=chunk)
    out["inference"] = {
        "ttft_s": float(inference.ttft), "tpot_s": float(inference.tpot),
        "tokens_per_second": float(inference.tokens_per_second),
        "memory_per_chip": {k: num(v) for k, v in memory.items()}, "hbm_capacity": num(chip.hbm_capacity),
        "fits": inference.fits, "prefill_chunk": chunk, "num_prefill_chunks": num(inference.num_prefill_chunks)}
    trained = run.model.max_position_embeddings
    binds = context_binds(ctx.value, trained)
    out["max_context"] = ctx.value  # what fits in HBM (Model.max_context)
    out["max_context_status"] = ctx.status
    out["max_position_embeddings"] = trained
    out["longest_context"] = None if ctx.value is None else min(ctx.value, trained or ctx.value)
    out["longest_context_binds"] = binds
    lines.append(f"longest context (batch {batch:,}, {par_text(run.par)}, {chunk_text(chunk)}): "
                 f"{context_text(ctx.value, ctx.status, trained)}")


def _roofline_plot(run: _Run, lines: list[str]) -> None:
    from ..report.plots import roofline

    args, phase = run.args, run.phases[0]
    chunk, seq = args.prefill_chunk, args.seq
    length = chunk if phase == "prefill" and chunk is not None and chunk < seq else seq
    block = run.sharded.blocks[0][0].compute_metrics(args.batch, length, phase, run.dtype, run.chip)
    guarded_write(lambda: roofline(block, run.chip, args.plot, dtype=run.dtype.value), "--plot", args.plot)
    lines.append(f"roofline plot ({phase}, one block) written to {args.plot}")


def _html_page(run: _Run, lines: list[str]) -> None:
    from ..report.html import write_html_report

    args = run.args
    guarded_write(lambda: write_html_report(
        args.html, run.model, run.chip, batch_size=args.batch, seq_len=args.seq, dtype=run.dtype,
        parallelism=run.par, prefill_chunk=args.prefill_chunk, global_batch=run.global_batch,
        recompute=args.recompute, zero_stage=args.zero_stage, phases=run.phases,
        recompute_layers=args.recompute_layers), "--html", args.html)
    lines.append(f"HTML report written to {args.html}")


def register(sub: Any) -> None:
    """Add the subcommand's parser to ``sub`` (the command's subparsers)."""
    chunk_help = CHUNK_HELP
    p = sub.add_parser("report", help="per-layer formulas and numbers; the model served and trained: TTFT, TPOT, "
                       "step time, MFU, memory per chip, max context")
    add_common(p)
    p.add_argument("--batch", type=positive, default=1,
                   help="sequences per replica: the serving batch and the training micro-batch (default 1)")
    p.add_argument("--seq", type=positive, default=8192, help="sequence length (default 8192)")
    p.add_argument("--prefill-chunk", type=positive, default=None, help=chunk_help)
    p.add_argument("--global-batch", type=positive, default=None,
                   help="training sequences per step (default: batch x dp x pp, one micro-batch per stage)")
    p.add_argument("--recompute", choices=["none", "selective", "full"], default="none",
                   help="training activation recomputation (default none)")
    p.add_argument("--recompute-layers", type=non_negative, default=None, metavar="N",
                   help="with --recompute full: recompute only the first N blocks of each pipeline stage and keep the "
                   "others' activations (Megatron-Core's --recompute-method block --recompute-num-layers N); N is an "
                   "integer from 0 to the blocks of the largest pipeline stage (default: every block)")
    p.add_argument("--zero-stage", type=int, choices=[0, 1, 2, 3], default=1,
                   help="ZeRO stage of the data-parallel optimizer (default 1, Megatron's distributed optimizer)")
    p.add_argument("--plot", default=None, help="also write a roofline chart (.png, .svg or .pdf)")
    p.add_argument("--html", default=None, metavar="FILE",
                   help="also write one self-contained HTML page: tables, formulas, charts (charts need matplotlib)")
    serving.add_speculative(p)
    p.set_defaults(func=report)
