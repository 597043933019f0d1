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
import sys
from pathlib import Path
from typing import Any, NoReturn, Optional, Sequence

import sympy as sp

from . import __version__, hardware, models
from . import symbols as S
from .dtypes import DataType
from .hardware import Hardware
from .hardware.timing import op_time
from .model import Model, TransformerBlock

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


def _model(name: str) -> Model:
    path = Path(name)
    if path.suffix == ".json" or path.exists():
        if not path.exists():
            raise UsageError(f"argument --model: no such file {name!r}")
        try:
            return models.from_hf_config(path)
        except ValueError as err:
            raise UsageError(f"argument --model: {err}") from None
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
    """A JSON-friendly number: ints stay exact, rationals become floats."""
    if isinstance(x, bool) or x is None:
        return x
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


def report(args: argparse.Namespace) -> int:
    model = _model(args.model).with_parallelism(_parallelism(args))
    chip = _hardware(args.hardware)
    dtype = DataType.parse(args.dtype)
    phases = [args.phase] if args.phase else ["prefill", "decode", "training"]
    batch, seq = args.batch, args.seq
    out: dict[str, Any] = {"model": model.name, "hardware": chip.name, "dtype": dtype.value,
                           "batch_size": batch, "seq_len": seq, "parallelism": _parallelism(args),
                           "parameters": _num(model.parameter_count), "phases": {}}
    lines = [f"symcost {__version__} report: {model.name} ({model.parameter_count:,} parameters) on {chip.name}, "
             f"{dtype.value}, batch {batch}, seq_len {seq}, parallelism {_parallelism(args)}"]
    peak = chip.effective_peak(dtype)
    for phase in phases:
        lines.append(f"\n== {phase} ==")
        lines.append(f"{'layer':24s} {'x':>4s} {'FLOPs/chip':>12s} {'HBM bytes':>12s} {'latency':>10s} "
                     f"{'bound':>13s}  FLOPs formula (b, s free)")
        rows_out = []
        for label, layer, count in _layer_rows(model):
            m = layer.compute_metrics(batch, seq, phase, dtype, chip)
            formula = layer.compute_metrics(S.batch_size, S.seq_len, phase, dtype, chip).flops_per_chip
            ops = []
            for op, n in m.ops:
                ot = op_time(op, chip, peak)
                c, mem = float(sp.sympify(ot.compute)), float(sp.sympify(ot.memory))
                if c == 0 and mem == 0:
                    continue
                ops.append({"op": op.name, "count": _num(n), "bound": "compute" if c >= mem else "memory",
                            "time_s": max(c, mem) * float(sp.sympify(n))})
            rows_out.append({"layer": label, "count": _num(count), "flops_per_chip": _num(m.flops_per_chip),
                             "hbm_bytes_per_chip": _num(m.hbm_bytes_per_chip), "latency_s": _num(m.latency),
                             "bound": m.bound, "flops_formula": str(sp.expand(formula)), "ops": ops})
            lines.append(f"{label:24s} {str(count):>4s} {_human(m.flops_per_chip, 'FLOP'):>12s} "
                         f"{_human(m.hbm_bytes_per_chip, 'B'):>12s} {_human(m.latency, 's'):>10s} {m.bound:>13s}  "
                         f"{sp.expand(formula)}")
            for o in ops:
                lines.append(f"{'':6s}{o['op']:26s} {o['bound']}-bound")
        total = model.compute_metrics(batch, seq, phase, dtype, chip)  # residual adds included
        lines.append(f"{'total':24s} {'':>4s} {_human(total.flops_per_chip, 'FLOP'):>12s} "
                     f"{_human(total.hbm_bytes_per_chip, 'B'):>12s} {_human(total.latency, 's'):>10s} "
                     f"{total.bound:>13s}")
        memory = {"weights": total.weight_memory_per_chip, "activations": total.activation_memory_per_chip,
               "kv_cache": total.kv_cache_memory_per_chip, "total": total.memory_per_chip}
        lines.append("memory per chip: " + ", ".join(f"{k} {_human(v, 'B')}" for k, v in memory.items())
                     + f" of {_human(chip.hbm_capacity, 'B')} HBM")
        out["phases"][phase] = {"layers": rows_out, "total": {
            "flops_per_chip": _num(total.flops_per_chip), "latency_s": _num(total.latency), "bound": total.bound,
            "memory_per_chip": {k: _num(v) for k, v in memory.items()}}}
    ctx = model.max_context(chip, batch_size=batch, dtype=dtype)
    out["max_context"] = ctx.value
    lines.append(f"\nlongest context that fits (batch {batch}, inference): "
                 f"{ctx.value if ctx.value is not None else ctx.status:,} tokens" if ctx.value is not None
                 else f"\nlongest context that fits: {ctx.status}")
    if getattr(args, "plot", None):
        from .plots import roofline

        block = model.blocks[0][0].compute_metrics(batch, seq, phases[0], dtype, chip)
        roofline(block, chip, args.plot, dtype=dtype.value)
        lines.append(f"roofline plot written to {args.plot}")
    _emit(args, out, lines)
    return 0


# -- solve ----------------------------------------------------------------------------------------


def solve(args: argparse.Namespace) -> int:
    model = _model(args.model)
    chip = _hardware(args.hardware)
    par = _parallelism(args)
    if args.quantity == "max-seq-len":
        r = model.max_context(chip, batch_size=args.batch, dtype=args.dtype, parallelism=par)
        data = {"quantity": "max_seq_len", "value": r.value, "status": r.status,
                "closed_form": None if r.closed_form is None else str(r.closed_form)}
    elif args.quantity == "max-batch":
        r = model.max_batch_size(chip, seq_len=args.seq, dtype=args.dtype, parallelism=par)
        data = {"quantity": "max_batch", "value": r.value, "status": r.status,
                "closed_form": None if r.closed_form is None else str(r.closed_form)}
    else:  # min-tp
        from .solve import min_degree

        def memory(t: int) -> Any:
            step = model.inference_step(chip, args.batch, args.seq, args.dtype, {**par, "tensor_parallel": t})
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
    answer = data["value"] if data["value"] is not None else data["status"]
    lines = [f"{data['quantity']} for {model.name} on {chip.name}: {answer}"]
    if args.plot:
        from .plots import memory_vs_seq_len

        memory_vs_seq_len(model, chip, args.plot, batch_size=args.batch, dtype=args.dtype, parallelism=par)
        lines.append(f"memory plot written to {args.plot}")
    _emit(args, data, lines)
    return 0


# -- sweep ----------------------------------------------------------------------------------------


def sweep_cmd(args: argparse.Namespace) -> int:
    model = _model(args.model)
    chip = _hardware(args.hardware)
    rows = []
    for b, s, t in itertools.product(args.batch, args.seq, args.tp_list):
        try:
            m = model.with_parallelism({"tensor_parallel": t}).compute_metrics(b, s, args.phase, args.dtype, chip)
        except ValueError as err:
            raise UsageError(f"argument --tp: {err}") from None
        rows.append({"batch_size": b, "seq_len": s, "tp": t, "latency_s": float(sp.sympify(m.latency)),
                     "flops_per_chip": _num(m.flops_per_chip), "memory_per_chip": _num(m.memory_per_chip),
                     "bound": m.bound})
    out = Path(args.out)
    with out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _emit(args, {"rows": len(rows), "path": str(out)}, [f"wrote {len(rows)} rows to {out}"])
    return 0


# -- search ---------------------------------------------------------------------------------------


def search_cmd(args: argparse.Namespace) -> int:
    from . import search

    model = _model(args.model)
    chip = _hardware(args.hardware)
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
    if args.plot and args.phase == "training" and rows:
        from .plots import step_breakdown

        steps = [model.training_step(chip, args.seq, args.global_batch, r["micro_batch"], args.dtype,
                                     table.parallelism(i), r["recompute"], r["interleave"], r["zero_stage"],
                                     r["overlap"]) for i, r in enumerate(rows[:3])]
        step_breakdown(steps, args.plot, labels=[f"#{i + 1}" for i in range(len(steps))])
        lines.append(f"step breakdown of the {len(steps)} best written to {args.plot}")
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
    print(text)
    return 0


# -- lists ----------------------------------------------------------------------------------------


def hardware_list(args: argparse.Namespace) -> int:
    rows = []
    lines = [f"{'name':15s} {'bf16 peak':>12s} {'HBM':>9s} {'HBM bw':>10s} {'scale-up':>11s} {'domain':>6s}"]
    for name in hardware.names():
        hw = hardware.get(name)
        rows.append({k: _num(v) if not isinstance(v, dict) else {kk: _num(vv) for kk, vv in v.items()}
                     for k, v in hw.to_dict().items()})
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

    p = sub.add_parser("report", help="per-layer formulas and numbers, memory, max context, bounds")
    _add_common(p)
    p.add_argument("--batch", type=_positive, default=1, help="batch size (default 1)")
    p.add_argument("--seq", type=_positive, default=8192, help="sequence length (default 8192)")
    p.add_argument("--plot", default=None, help="also write a roofline chart (.png or .svg)")
    p.set_defaults(func=report)

    p = sub.add_parser("solve", help="max-seq-len, max-batch or min-tp that fits in HBM")
    p.add_argument("quantity", choices=["max-seq-len", "max-batch", "min-tp"])
    _add_common(p, phase=False)
    p.add_argument("--batch", type=_positive, default=1)
    p.add_argument("--seq", type=_positive, default=8192)
    p.add_argument("--plot", default=None, help="also write memory vs sequence length (.png or .svg)")
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
    p.add_argument("--plot", default=None, help="also write the 3 best steps' breakdown (.png or .svg)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=search_cmd)

    p = sub.add_parser("latex", help="formulas for a model or layer as LaTeX")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--model", default=None, help="preset name or config.json")
    group.add_argument("--layer", choices=LAYER_CHOICES, default=None, help="one symbolic layer type")
    p.add_argument("--phase", choices=["prefill", "decode", "training"], default="training")
    p.add_argument("--notation", default="megatron", help="megatron or scaling-book")
    p.add_argument("--standalone", action="store_true", help="a complete, compilable document")
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
        return args.func(args)
    except UsageError as err:
        print(f"symcost: error: {err}", file=sys.stderr)
        return 2
    except ValueError as err:
        print(f"symcost: error: {_one_line(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
