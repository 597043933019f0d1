"""The ``symcost`` command: reports, solving, sweeps, search and LaTeX from the shell.

``symcost`` alone prints the default report (llama-3-8b on H100_SXM). Every subcommand has
``--help``; ``--json`` gives machine-readable output; errors are one line naming the bad option
(and the valid choices), with exit code 2.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import re
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional, Sequence

import sympy as sp

from . import __version__, hardware, models
from . import symbols as S
from .dtypes import DataType
from .hardware import Hardware
from .hardware.timing import op_time
from .model import Model, TransformerBlock
from .parallel import Parallelism

DEFAULT_MODEL = "llama-3-8b"
DEFAULT_HARDWARE = "H100_SXM"
DTYPES = [d.value for d in DataType]


class UsageError(Exception):
    """A bad option: printed as one line, exit code 2."""


def _one_line(err: Exception) -> str:
    """An error as one line; a pydantic ValidationError as its first error's field and message."""
    errors = getattr(err, "errors", None)
    if callable(errors):
        first = errors()[0]
        msg = str(first.get("msg", "")).removeprefix("Value error, ")
        loc = ".".join(str(x) for x in first.get("loc", ()))
        return f"{loc}: {msg}" if loc and loc not in msg else msg
    return str(err).splitlines()[0] if str(err) else type(err).__name__


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, exit 2
        raise UsageError(message)


# -- resolving options --------------------------------------------------------------------------


# NB: the library's field names in a config's own words, so an error names the key to fix
_HF_KEYS = {"num_heads": "num_attention_heads", "num_kv_heads": "num_key_value_heads",
            "num_layers": "num_hidden_layers"}


def _model(name: str) -> Model:
    path = Path(name)
    if path.suffix == ".json" or path.exists():
        if not path.exists():
            raise UsageError(f"argument --model: no such file {name!r}")
        try:
            return models.from_hf_config(path)
        except ValueError as err:
            message = _one_line(err)
            for field, key in _HF_KEYS.items():
                message = re.sub(rf"\b{field}\b", key, message)
            prefix = "" if message.startswith(str(path)) else f"{path}: "
            raise UsageError(f"argument --model: {prefix}{message}") from None
    try:
        return models.get(name)
    except ValueError:
        raise UsageError(f"argument --model: unknown model {name!r} (choose from {', '.join(models.names())}, "
                         "or a config.json path)") from None


def _hardware(name: str) -> Hardware:
    path = Path(name)
    if path.suffix.lower() in (".json", ".yaml", ".yml"):
        try:
            return Hardware.from_file(path)
        except ValueError as err:  # ValidationError included
            raise UsageError(f"argument --hardware: {_one_line(err)}") from None
    try:
        return hardware.get(name)
    except ValueError:
        raise UsageError(f"argument --hardware: unknown chip {name!r} (choose from {', '.join(hardware.names())}, "
                         "or a .json/.yaml file)") from None


def _parallelism(args: argparse.Namespace) -> dict[str, Any]:
    seq: Any = args.sp
    if isinstance(seq, str):
        seq = "tp" if seq == "tp" else int(seq)
    return {"tensor_parallel": args.tp, "pipeline_parallel": args.pp, "data_parallel": args.dp,
            "sequence_parallel": seq, "expert_parallel": args.ep}


def _check_out(path: str, option: str, plot: bool = False) -> Path:
    """An output path that can be written: its folder exists (and for a chart, a known suffix)."""
    out = Path(path)
    if plot:
        from .plots import FORMATS

        if out.suffix.lower().lstrip(".") not in FORMATS:
            raise UsageError(f"argument {option}: cannot write {path!r}: the suffix must be "
                             f"{' or '.join('.' + f for f in FORMATS)}")
    folder = out.parent
    if not folder.is_dir():
        raise UsageError(f"argument {option}: cannot write {path!r}: no such folder {str(folder)!r}")
    return out


def _write(action: Callable[[], Any], option: str, path: str) -> Any:
    """Run a write; an OS error (permissions, a full disk) becomes one line naming the option."""
    try:
        return action()
    except OSError as err:
        raise UsageError(f"argument {option}: cannot write {path!r}: {err.strerror or err}") from None
    except ImportError as err:
        raise UsageError(f"argument {option}: {err}") from None


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _seq_degree(text: str) -> Any:
    return "tp" if text == "tp" else _positive(text)


def _int_list(text: str) -> list[int]:
    return [_positive(x) for x in text.split(",") if x]


def _add_common(p: argparse.ArgumentParser, phase: bool = True) -> None:
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"preset name or config.json (default {DEFAULT_MODEL})")
    p.add_argument("--hardware", default=DEFAULT_HARDWARE,
                   help=f"preset name or .json/.yaml (default {DEFAULT_HARDWARE})")
    p.add_argument("--tp", type=_positive, default=1, help="tensor-parallel degree")
    p.add_argument("--pp", type=_positive, default=1, help="pipeline-parallel degree")
    p.add_argument("--dp", type=_positive, default=1, help="data-parallel degree")
    p.add_argument("--sp", type=_seq_degree, default=1, help='Ulysses sequence degree, or "tp" for Megatron SP')
    p.add_argument("--ep", type=_positive, default=1, help="expert-parallel degree")
    p.add_argument("--dtype", choices=DTYPES, default="bf16", help="data type (default bf16)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    if phase:
        p.add_argument("--phase", choices=["prefill", "decode", "training"], default=None,
                       help="one phase (default: all three)")


# -- output helpers -------------------------------------------------------------------------------


def _num(x: Any) -> Any:
    """A JSON-friendly number: ints stay exact, rationals become floats; lists, tuples and dicts
    (a chip's ``matmul_tile``, its ``runtime`` profile) are converted item by item."""
    if isinstance(x, bool) or x is None:
        return x
    if isinstance(x, dict):
        return {k: _num(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_num(v) for v in x]
    if isinstance(x, str):  # to_dict writes rationals as "4/5"; a name ("neutral", "E") stays a name
        try:
            value = Fraction(x)
        except ValueError:
            return x
        return int(value) if value.denominator == 1 else float(value)
    if isinstance(x, int):
        return x
    try:
        value = sp.sympify(x)
    except (sp.SympifyError, TypeError):
        return str(x)
    if value.is_Integer:
        return int(value)
    if value.is_number:
        return float(value)
    return str(value)


def _human(x: Any, unit: str) -> str:
    value = float(sp.sympify(x))
    if unit == "s":
        for scale, name in ((1, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
            if abs(value) >= scale or scale == 1e-9:
                return f"{value / scale:.3g} {name}"
    prefixes = ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1, ""))
    for scale, name in prefixes:
        if abs(value) >= scale:
            return f"{value / scale:.3g} {name}{unit}"
    return f"{value:.3g} {unit}"


def _emit(args: argparse.Namespace, data: dict, lines: Sequence[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2))
    else:
        print("\n".join(lines))


# -- report ---------------------------------------------------------------------------------------


def _layer_rows(model: Model) -> list[tuple[str, Any, Any]]:
    """(label, layer, count) for every layer, blocks expanded into their parts."""
    rows: list[tuple[str, Any, Any]] = []
    for name, layer, count in model.parts():
        if isinstance(layer, TransformerBlock):
            parts = layer.parts
            for label, part in zip(("norm", "attention", "norm", "mlp"), parts):
                if label == "norm" and any(r[0] == f"{name}.norm" for r in rows):
                    continue  # the two norms are identical: listed once, counted twice
                rows.append((f"{name}.{label}", part, 2 * count if label == "norm" else count))
        else:
            rows.append((name, layer, count))
    return rows


MFU_DEFINITION = ("MFU = the model's training matmul FLOPs per step (forward and backward, no recomputation, "
                  "counted as torch's FlopCounterMode counts them) / (step time x chips x dense datasheet peak)")
"""The MFU the report prints (:mod:`symcost.step`): not PaLM's 6N + 12*L*h*s per token estimate."""


def _par_text(par: dict[str, Any]) -> str:
    return (f"TP {par['tensor_parallel']}, PP {par['pipeline_parallel']}, DP {par['data_parallel']}, "
            f"SP {par['sequence_parallel']}, EP {par['expert_parallel']}")


def _chunk_text(chunk: Optional[int], n: Any = None) -> str:
    if chunk is None:
        return "prefill unchunked (the whole prompt at once)"
    return f"prefill in chunks of {chunk} tokens" + (f" ({n} chunks)" if n is not None else "")


def _fits_text(fits: Optional[bool]) -> str:
    return {True: "fits", False: "does not fit", None: "unknown (symbolic)"}[fits]


_LABELS = {"weights": "weights", "kv_cache": "KV cache", "activations": "activations", "gradients": "gradients",
           "optimizer_states": "optimizer states"}


def _memory_line(label: str, memory: dict[str, Any], chip: Hardware, fits: Optional[bool]) -> str:
    parts = ", ".join(f"{_LABELS[k]} {_human(v, 'B')}" for k, v in memory.items() if k != "total")
    return (f"{label}: {parts}, total {_human(memory['total'], 'B')} of {_human(chip.hbm_capacity, 'B')} HBM: "
            f"{_fits_text(fits)}")


def _layer_table(model: Model, phase: str, batch: int, seq: int, dtype: DataType, chip: Hardware,
                 recompute: str, lines: list[str]) -> list[dict[str, Any]]:
    """Per-layer rows of one phase (per chip, one copy of each layer) into ``lines``; JSON rows back."""
    peak = chip.effective_peak(dtype)
    ideal = chip.ideal()  # "bound" is the pure roofline's verdict (docs/conventions.md §17)
    ideal_peak = ideal.effective_peak(dtype)
    lines.append(f"{'layer':24s} {'x':>4s} {'FLOPs/chip':>12s} {'HBM bytes':>12s} {'latency':>10s} "
                 f"{'bound':>13s}  FLOPs formula (b, s free)")
    rows_out = []
    for label, layer, count in _layer_rows(model):
        mode = recompute if label.startswith("blocks") else "none"
        m = layer.compute_metrics(batch, seq, phase, dtype, chip, recompute=mode)
        formula = layer.compute_metrics(S.batch_size, S.seq_len, phase, dtype, chip, recompute=mode).flops_per_chip
        ops = []
        for op, n in m.ops:
            ot, rt = op_time(op, chip, peak, dtype), op_time(op, ideal, ideal_peak, dtype)
            c, mem = float(sp.sympify(ot.compute)), float(sp.sympify(ot.memory))
            if c == 0 and mem == 0:
                continue
            verdict = "compute" if float(sp.sympify(rt.compute)) >= float(sp.sympify(rt.memory)) else "memory"
            ops.append({"op": op.name, "count": _num(n), "bound": verdict,
                        "time_s": max(c, mem) * float(sp.sympify(n))})
        rows_out.append({"layer": label, "count": _num(count), "flops_per_chip": _num(m.flops_per_chip),
                         "hbm_bytes_per_chip": _num(m.hbm_bytes_per_chip), "latency_s": _num(m.latency),
                         "bound": m.bound, "flops_formula": str(sp.expand(formula)), "ops": ops})
        lines.append(f"{label:24s} {str(count):>4s} {_human(m.flops_per_chip, 'FLOP'):>12s} "
                     f"{_human(m.hbm_bytes_per_chip, 'B'):>12s} {_human(m.latency, 's'):>10s} {m.bound:>13s}  "
                     f"{sp.expand(formula)}")
        for o in ops:
            lines.append(f"{'':6s}{o['op']:26s} {o['bound']}-bound")
    return rows_out


def report(args: argparse.Namespace) -> int:
    """The report: per-layer tables, then the whole model served (``inference_step``) and
    trained (``training_step``) under the given parallelism, with every assumption stated."""
    model = _model(args.model)
    chip = _hardware(args.hardware)
    dtype = DataType.parse(args.dtype)
    if args.plot:
        _check_out(args.plot, "--plot", plot=True)
    par = _parallelism(args)
    parallelism = Parallelism.coerce(par)
    sharded = model.with_parallelism(par)  # a degree that does not divide: one line, exit 2
    phases = [args.phase] if args.phase else ["prefill", "decode", "training"]
    batch, seq, chunk = args.batch, args.seq, args.prefill_chunk
    micro = batch
    global_batch = args.global_batch or micro * par["data_parallel"] * par["pipeline_parallel"]
    chips = _num(parallelism.chips_per_replica * parallelism.pp * parallelism.dp)
    assumptions = {
        "batch_size": batch, "seq_len": seq, "prefill_chunk": chunk, "num_prefill_chunks": None,
        "micro_batch": micro, "global_batch": global_batch, "num_microbatches": None,
        "recompute": args.recompute, "zero_stage": args.zero_stage, "interleave": 1,
        "mfu_definition": MFU_DEFINITION,
        "inference": "batch sequences per replica; TTFT is the prefill of seq_len tokens through every pipeline "
                     "stage in turn, TPOT one decode step at seq_len keys; memory is the fullest stage's weights "
                     "and KV cache plus the largest layer's activation peak (of one chunk when chunked)",
        "training": "1F1B pipeline schedule, fp32 gradients and Adam states sharded by the ZeRO stage (stage 1: "
                    "Megatron's distributed optimizer), the first stage's in-flight micro-batches' activations",
    }
    out: dict[str, Any] = {"model": model.name, "hardware": chip.name, "dtype": dtype.value,
                           "batch_size": batch, "seq_len": seq, "parallelism": par, "num_chips": chips,
                           "parameters": _num(model.parameter_count), "assumptions": assumptions, "phases": {}}
    lines = [f"symcost {__version__} report: {model.name} ({model.parameter_count:,} parameters) on {chip.name} "
             f"({_human(chip.hbm_capacity, 'B')} HBM), {dtype.value}",
             f"parallelism: {_par_text(par)}: {chips} chip{'s' if chips != 1 else ''}"]
    inference = training = None
    if "prefill" in phases or "decode" in phases:
        inference = model.inference_step(chip, batch, seq, dtype, par, prefill_chunk=chunk)
        assumptions["num_prefill_chunks"] = _num(inference.num_prefill_chunks)
        lines.append(f"inference: batch {batch} per replica, prompt {seq:,} tokens, decode at {seq:,} keys, "
                     f"{_chunk_text(chunk, inference.num_prefill_chunks if chunk else None)}")
    training_error = None
    if "training" in phases:
        try:
            training = model.training_step(chip, seq, global_batch, micro, dtype, par, args.recompute, 1,
                                           args.zero_stage)
        except ValueError as err:
            if args.phase == "training":
                raise
            training_error = _one_line(err)
        if training is not None:
            assumptions["num_microbatches"] = _num(training.num_microbatches)
            m = training.num_microbatches
            lines.append(f"training: micro-batch {micro}, global batch {global_batch} ({m} "
                         f"micro-batch{'es' if m != 1 else ''} per replica per step), seq {seq:,}, "
                         f"recompute {args.recompute}, ZeRO stage {args.zero_stage}, no interleaving, "
                         "communication not overlapped")

    for phase in phases:
        length = seq
        title = f"per layer, per chip, batch {batch}, seq_len {seq:,}"
        if par["pipeline_parallel"] != 1:
            pp = par["pipeline_parallel"]
            title += f"; x counts the whole model, each of the {pp} stages holds 1/{pp} of the blocks"
        if phase == "prefill" and chunk is not None and chunk < seq:
            length, title = chunk, f"per layer, per chip, one chunk: batch {batch}, {chunk:,} tokens"
        elif phase == "training":
            title = f"per layer, per chip, one micro-batch of {micro}, seq_len {seq:,}"
        lines.append(f"\n== {phase} ==")
        lines.append(f"({title})")
        rows = _layer_table(sharded, phase, batch, length, dtype, chip,
                            args.recompute if phase == "training" else "none", lines)
        total: dict[str, Any]
        if phase == "training":
            if training is None:
                lines.append(f"training step: not computed: {training_error}")
                out["training"] = {"not_computed": training_error}
                out["phases"][phase] = {"layers": rows, "total": None}
                continue
            memory = {"weights": training.weight_memory, "gradients": training.gradient_memory,
                      "optimizer_states": training.optimizer_memory, "activations": training.activation_memory,
                      "total": training.memory_per_chip}
            lines.append(f"step time {_human(training.step_time, 's')} (bubble {_human(training.bubble_time, 's')}, "
                         f"DP communication {_human(training.dp_comm_time, 's')}), "
                         f"{float(training.tokens_per_second):,.0f} tokens/s, MFU {float(training.mfu):.3f}")
            lines.append(f"  ({MFU_DEFINITION})")
            lines.append(_memory_line("training memory per chip (fullest stage)", memory, chip, training.fits))
            total = {"step_time_s": _num(training.step_time),
                     "memory_per_chip": {k: _num(v) for k, v in memory.items()}}
            out["training"] = {
                "step_time_s": float(training.step_time), "compute_time_s": float(training.compute_time),
                "bubble_time_s": float(training.bubble_time), "dp_comm_time_s": float(training.dp_comm_time),
                "pipeline_comm_time_s": float(training.pipeline_comm_time),
                "tokens_per_second": float(training.tokens_per_second), "mfu": float(training.mfu),
                "mfu_definition": MFU_DEFINITION, "memory_per_chip": total["memory_per_chip"],
                "hbm_capacity": _num(chip.hbm_capacity), "fits": training.fits, "global_batch": global_batch,
                "micro_batch": micro, "num_microbatches": _num(training.num_microbatches),
                "recompute": args.recompute, "zero_stage": args.zero_stage, "interleave": 1}
        else:
            assert inference is not None
            memory = {"weights": inference.weight_memory, "kv_cache": inference.kv_cache_memory,
                      "activations": inference.activation_memory, "total": inference.memory_per_chip}
            if phase == "prefill":
                stages = "pipeline stages in turn, " if par["pipeline_parallel"] != 1 else ""
                lines.append(f"TTFT {_human(inference.ttft, 's')}: the whole model, {stages}"
                             f"{_chunk_text(chunk, inference.num_prefill_chunks if chunk else None)}")
                latency = inference.ttft
            else:
                lines.append(f"TPOT {_human(inference.tpot, 's')}, {float(inference.tokens_per_second):,.0f} "
                             f"tokens/s per replica (batch / TPOT)")
                latency = inference.tpot
            total = {"latency_s": _num(latency), "memory_per_chip": {k: _num(v) for k, v in memory.items()}}
        out["phases"][phase] = {"layers": rows, "total": total}

    if inference is not None:
        memory = {"weights": inference.weight_memory, "kv_cache": inference.kv_cache_memory,
                  "activations": inference.activation_memory, "total": inference.memory_per_chip}
        lines.append("\n" + _memory_line("inference memory per chip (fullest stage)", memory, chip, inference.fits))
        ctx = model.max_context(chip, batch_size=batch, dtype=dtype, parallelism=par, prefill_chunk=chunk)
        out["inference"] = {
            "ttft_s": float(inference.ttft), "tpot_s": float(inference.tpot),
            "tokens_per_second": float(inference.tokens_per_second),
            "memory_per_chip": {k: _num(v) for k, v in memory.items()}, "hbm_capacity": _num(chip.hbm_capacity),
            "fits": inference.fits, "prefill_chunk": chunk, "num_prefill_chunks": _num(inference.num_prefill_chunks)}
        out["max_context"] = ctx.value
        out["max_context_status"] = ctx.status
        answer = f"{ctx.value:,} tokens" if ctx.value is not None else ctx.status
        lines.append(f"longest context that fits (batch {batch}, {_par_text(par)}, {_chunk_text(chunk)}): {answer}")
    if args.plot:
        from .plots import roofline

        phase = phases[0]
        length = chunk if phase == "prefill" and chunk is not None and chunk < seq else seq
        block = sharded.blocks[0][0].compute_metrics(batch, length, phase, dtype, chip)
        _write(lambda: roofline(block, chip, args.plot, dtype=dtype.value), "--plot", args.plot)
        lines.append(f"roofline plot ({phase}, one block) written to {args.plot}")
    _emit(args, out, lines)
    return 0


# -- solve ----------------------------------------------------------------------------------------


def solve(args: argparse.Namespace) -> int:
    model = _model(args.model)
    chip = _hardware(args.hardware)
    par = _parallelism(args)
    chunk = args.prefill_chunk
    if args.plot:
        _check_out(args.plot, "--plot", plot=True)
        if chunk is not None:
            raise UsageError("argument --plot: the memory chart is drawn for an unchunked prefill; "
                             "drop --prefill-chunk to draw it")
    if args.quantity == "max-seq-len":
        r = model.max_context(chip, batch_size=args.batch, dtype=args.dtype, parallelism=par, prefill_chunk=chunk)
        data = {"quantity": "max_seq_len", "value": r.value, "status": r.status,
                "closed_form": None if r.closed_form is None else str(r.closed_form)}
        given = f"batch {args.batch}"
    elif args.quantity == "max-batch":
        r = model.max_batch_size(chip, seq_len=args.seq, dtype=args.dtype, parallelism=par, prefill_chunk=chunk)
        data = {"quantity": "max_batch", "value": r.value, "status": r.status,
                "closed_form": None if r.closed_form is None else str(r.closed_form)}
        given = f"seq_len {args.seq:,}"
    else:  # min-tp
        from .solve import min_degree

        def memory(t: int) -> Any:
            step = model.inference_step(chip, args.batch, args.seq, args.dtype, {**par, "tensor_parallel": t},
                                        prefill_chunk=chunk)
            return step.memory_per_chip

        candidates = []
        for t in (1, 2, 4, 8, 16, 32, 64, 128):
            try:
                model.with_parallelism({**par, "tensor_parallel": t})
            except ValueError:
                continue
            candidates.append(t)
        r = min_degree(memory, None, chip.hbm_capacity, candidates)
        data = {"quantity": "min_tp", "value": r.value, "status": r.status,
                "checked": [{"tp": n, "memory_per_chip": _num(v), "fits": f} for n, v, f in r.checked]}
        given = f"batch {args.batch}, seq_len {args.seq:,}"
    data.update({"parallelism": par, "prefill_chunk": chunk,
                 "assumes": "weights and KV cache of the fullest pipeline stage plus the largest layer's "
                            "activation peak (one chunk's when chunked) fit the chip's HBM"})
    answer = data["value"] if data["value"] is not None else data["status"]
    lines = [f"{data['quantity']} for {model.name} on {chip.name}: {answer}",
             f"  ({given}, {_par_text(par)}, {args.dtype}, {_chunk_text(chunk)}; {data['assumes']})"]
    if args.plot:
        from .plots import memory_vs_seq_len

        _write(lambda: memory_vs_seq_len(model, chip, args.plot, batch_size=args.batch, dtype=args.dtype,
                                         parallelism=par), "--plot", args.plot)
        lines.append(f"memory plot written to {args.plot}")
    _emit(args, data, lines)
    return 0


# -- sweep ----------------------------------------------------------------------------------------


def sweep_cmd(args: argparse.Namespace) -> int:
    model = _model(args.model)
    chip = _hardware(args.hardware)
    out = _check_out(args.out, "--out")
    rows = []
    for b, s, t in itertools.product(args.batch, args.seq, args.tp_list):
        try:
            m = model.with_parallelism({"tensor_parallel": t}).compute_metrics(b, s, args.phase, args.dtype, chip)
        except ValueError as err:
            raise UsageError(f"argument --tp: {_one_line(err)}") from None
        rows.append({"batch_size": b, "seq_len": s, "tp": t, "latency_s": float(sp.sympify(m.latency)),
                     "flops_per_chip": _num(m.flops_per_chip), "memory_per_chip": _num(m.memory_per_chip),
                     "bound": m.bound})

    def write() -> None:
        with out.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    _write(write, "--out", args.out)
    _emit(args, {"rows": len(rows), "path": str(out)},
          [f"wrote {len(rows)} rows to {out} (per chip, one layer stack on one chip: TP only, no PP)"])
    return 0


# -- search ---------------------------------------------------------------------------------------


def search_cmd(args: argparse.Namespace) -> int:
    from . import search

    model = _model(args.model)
    chip = _hardware(args.hardware)
    if args.plot:
        _check_out(args.plot, "--plot", plot=True)

    def bar(fraction: float, stage: str) -> None:
        if not args.json:
            filled = int(40 * fraction)
            print(f"\r[{'#' * filled}{'.' * (40 - filled)}] {fraction:4.0%} {stage:32s}", end="",
                  file=sys.stderr, flush=True)

    if not args.json:
        print(f"searching {model.name} on {args.chips} x {chip.name}", file=sys.stderr, flush=True)
    table = search.parallelism(model, chip, args.chips, args.global_batch, args.seq, phase=args.phase,
                               dtype=args.dtype, progress=bar)
    if not args.json:
        bar(1.0, "done")
        print(f"\n{table.num_candidates:,} candidates in {table.seconds:.2f} s", file=sys.stderr)
    rows = table.rows(args.top)
    lines = [table.format(args.top)]
    if args.plot and not rows:
        lines.append(f"no configuration fits: no plot written to {args.plot}")
    elif args.plot and args.phase == "training":
        from .plots import step_breakdown

        steps = [model.training_step(chip, args.seq, args.global_batch, r["micro_batch"], args.dtype,
                                     table.parallelism(i), r["recompute"], r["interleave"], r["zero_stage"],
                                     r["overlap"]) for i, r in enumerate(rows[:3])]
        _write(lambda: step_breakdown(steps, args.plot, labels=[f"#{i + 1}" for i in range(len(steps))]),
               "--plot", args.plot)
        lines.append(f"step breakdown of the {len(steps)} best written to {args.plot}")
    elif args.plot:
        from .plots import memory_vs_seq_len

        best = rows[0]
        par = {"tensor_parallel": best["tp"], "pipeline_parallel": best["pp"], "data_parallel": best["dp"]}
        _write(lambda: memory_vs_seq_len(model, chip, args.plot, batch_size=best["micro_batch"], dtype=args.dtype,
                                         parallelism=par), "--plot", args.plot)
        lines.append(f"memory against context of the best (TP {best['tp']}, PP {best['pp']}, DP {best['dp']}, "
                     f"batch {best['micro_batch']} per replica) written to {args.plot}")
    _emit(args, {"num_candidates": table.num_candidates, "num_valid": table.num_valid, "num_fit": table.num_fit,
                 "rows": rows}, lines)
    return 0


# -- latex ----------------------------------------------------------------------------------------

LAYER_CHOICES = ("mlp", "gated-mlp", "attention", "gqa", "norm", "rmsnorm")


def latex_cmd(args: argparse.Namespace) -> int:
    from . import latex

    if args.notation not in latex.NOTATIONS:
        raise UsageError(f"argument --notation: invalid choice {args.notation!r} (choose from "
                         f"{', '.join(latex.NOTATIONS)})")
    if args.layer:
        from .layers import AttentionLayer, GatedMLPLayer, GroupedQueryAttentionLayer, MLPLayer, NormLayer

        layer = {"mlp": MLPLayer(), "gated-mlp": GatedMLPLayer(), "attention": AttentionLayer(),
                 "gqa": GroupedQueryAttentionLayer(), "norm": NormLayer(), "rmsnorm": NormLayer(kind="rmsnorm")}
        target: Any = layer[args.layer]
    else:
        target = _model(args.model) if args.model else None
    text = latex.model_document(target, phase=args.phase, notation=args.notation, standalone=args.standalone)
    data = {"latex": text, "layer": args.layer, "model": None if target is None or args.layer else target.name,
            "phase": args.phase, "notation": args.notation, "standalone": args.standalone}
    _emit(args, data, [text])
    return 0


# -- lists ----------------------------------------------------------------------------------------


def hardware_list(args: argparse.Namespace) -> int:
    rows = []
    lines = [f"{'name':15s} {'bf16 peak':>12s} {'HBM':>9s} {'HBM bw':>10s} {'scale-up':>11s} {'domain':>6s}"]
    for name in hardware.names():
        hw = hardware.get(name)
        rows.append(_num(hw.to_dict()))
        lines.append(f"{name:15s} {_human(hw.peak('bf16'), 'FLOP/s'):>12s} {_human(hw.hbm_capacity, 'B'):>9s} "
                     f"{_human(hw.hbm_bandwidth, 'B/s'):>10s} {_human(hw.scale_up_bandwidth, 'B/s'):>11s} "
                     f"{int(hw.scale_up_domain):>6d}")
    _emit(args, {"hardware": rows}, lines)
    return 0


def models_list(args: argparse.Namespace) -> int:
    rows = [{"name": n, "parameters": models.get(n).parameter_count, "layers": _num(models.get(n).num_layers)}
            for n in models.names()]
    lines = [f"{r['name']:16s} {r['parameters']:>18,} parameters  {r['layers']} layers" for r in rows]
    _emit(args, {"models": rows}, lines)
    return 0


# -- the parser -----------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="symcost", description="Symbolic cost models of LLM layers and models. "
                     "With no command: the report for llama-3-8b on H100_SXM.")
    parser.add_argument("--version", action="version", version=f"symcost {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    chunk_help = ("prefill in chunks of N tokens per sequence, as vLLM and SGLang run it (default: the whole "
                  "prompt at once)")
    p = sub.add_parser("report", help="per-layer formulas and numbers; the model served and trained: TTFT, TPOT, "
                       "step time, MFU, memory per chip, max context")
    _add_common(p)
    p.add_argument("--batch", type=_positive, default=1,
                   help="sequences per replica: the serving batch and the training micro-batch (default 1)")
    p.add_argument("--seq", type=_positive, default=8192, help="sequence length (default 8192)")
    p.add_argument("--prefill-chunk", type=_positive, default=None, help=chunk_help)
    p.add_argument("--global-batch", type=_positive, default=None,
                   help="training sequences per step (default: batch x dp x pp, one micro-batch per stage)")
    p.add_argument("--recompute", choices=["none", "selective", "full"], default="none",
                   help="training activation recomputation (default none)")
    p.add_argument("--zero-stage", type=int, choices=[0, 1, 2, 3], default=1,
                   help="ZeRO stage of the data-parallel optimizer (default 1, Megatron's distributed optimizer)")
    p.add_argument("--plot", default=None, help="also write a roofline chart (.png, .svg or .pdf)")
    p.set_defaults(func=report)

    p = sub.add_parser("solve", help="max-seq-len, max-batch or min-tp that fits in HBM")
    p.add_argument("quantity", choices=["max-seq-len", "max-batch", "min-tp"])
    _add_common(p, phase=False)
    p.add_argument("--batch", type=_positive, default=1)
    p.add_argument("--seq", type=_positive, default=8192)
    p.add_argument("--prefill-chunk", type=_positive, default=None, help=chunk_help)
    p.add_argument("--plot", default=None, help="also write memory vs sequence length (.png, .svg or .pdf)")
    p.set_defaults(func=solve)

    p = sub.add_parser("sweep", help="evaluate a grid and write CSV")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--hardware", default=DEFAULT_HARDWARE)
    p.add_argument("--batch", type=_int_list, default=[1], help="comma-separated batch sizes")
    p.add_argument("--seq", type=_int_list, default=[2048], help="comma-separated sequence lengths")
    p.add_argument("--tp", dest="tp_list", type=_int_list, default=[1], help="comma-separated TP degrees")
    p.add_argument("--phase", choices=["prefill", "decode", "training"], default="decode")
    p.add_argument("--dtype", choices=DTYPES, default="bf16")
    p.add_argument("--out", required=True, help="CSV file to write")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=sweep_cmd)

    p = sub.add_parser("search", help="rank parallelism configurations")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--hardware", default=DEFAULT_HARDWARE)
    p.add_argument("--chips", type=_positive, required=True)
    p.add_argument("--global-batch", type=_positive, required=True)
    p.add_argument("--seq", type=_positive, default=4096)
    p.add_argument("--phase", choices=["training", "inference"], default="training")
    p.add_argument("--dtype", choices=DTYPES, default="bf16")
    p.add_argument("--top", type=_positive, default=10)
    p.add_argument("--plot", default=None, help="also write a chart (.png, .svg or .pdf): training, the 3 best "
                   "steps' breakdown; inference, memory against context of the best")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=search_cmd)

    p = sub.add_parser("latex", help="formulas for a model or layer as LaTeX")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--model", default=None, help="preset name or config.json")
    group.add_argument("--layer", choices=LAYER_CHOICES, default=None, help="one symbolic layer type")
    p.add_argument("--phase", choices=["prefill", "decode", "training"], default="training")
    p.add_argument("--notation", default="megatron", help="megatron or scaling-book")
    p.add_argument("--standalone", action="store_true", help="a complete, compilable document")
    p.add_argument("--json", action="store_true", help="the LaTeX and what it shows, as JSON")
    p.set_defaults(func=latex_cmd)

    p = sub.add_parser("hardware", help="hardware presets")
    hs = p.add_subparsers(dest="action", parser_class=_Parser, required=True)
    q = hs.add_parser("list", help="list the presets")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=hardware_list)

    p = sub.add_parser("models", help="model presets")
    ms = p.add_subparsers(dest="action", parser_class=_Parser, required=True)
    q = ms.add_parser("list", help="list the presets")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=models_list)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command is None:
            args = parser.parse_args(["report", *([] if argv is None else argv)])
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except UsageError as err:
        print(f"symcost: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"symcost: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # the reader went away (`symcost ... | head`): nothing more to say; silence the final flush
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a command killed by a closed pipe


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
