"""``symcost search``: rank parallelism configurations."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import (
    DEFAULT_HARDWARE,
    DEFAULT_MODEL,
    DTYPES,
    UsageError,
    add_engine,
    add_model_options,
    check_out,
    emit,
    fraction,
    guarded_write,
    hardware_arg,
    int_list,
    model_arg,
    positive,
    positive_number,
    unit_fraction,
)

_SWITCH = {"on": True, "off": False}
_TRAINING_SWITCHES = {"dp_overlap": True, "pp_overlap": True, "grad_reduce_in_fp32": True,
                      "expert_tensor_parallel": [None]}


def switch(text: str) -> bool:
    """``on`` or ``off`` (a search switch such as ``--dp-overlap``)."""
    value = _SWITCH.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected on or off, got {text!r}")
    return value


def expert_tp_list(text: str) -> list[Any]:
    """Comma-separated expert-TP degrees: positive integers, or ``tp`` for the MoE layer's default
    flow (each expert split ``tp`` ways; ``None`` in :class:`~symcost.plan.search.SearchOptions`)."""
    out: list[Any] = []
    for item in (x.strip() for x in text.split(",")):
        if item == "tp":
            out.append(None)
        elif item.isdigit() and int(item) >= 1:
            out.append(int(item))
        else:
            raise argparse.ArgumentTypeError(
                f"expected positive integer degrees or tp (the experts split tp ways), got {text!r}")
    return out


def search_cmd(args: argparse.Namespace) -> int:
    from ..plan import search

    if args.min_mfu is not None and args.phase == "inference":
        raise UsageError("argument --min-mfu: constrains training searches only (an inference step has no MFU)")
    if args.phase == "inference":
        given = [f"--{k.replace('_', '-')}" for k, default in _TRAINING_SWITCHES.items() if getattr(args, k) != default]
        if given:
            raise UsageError(f"argument {given[0]}: a training switch (the inference search has no gradients or "
                             "expert grid)")
    model = model_arg(args.model, args)
    chip = hardware_arg(args.hardware, args.engine)
    if args.plot:
        check_out(args.plot, "--plot", plot=True)

    def bar(fraction: float, stage: str) -> None:
        if not args.json:
            filled = int(40 * fraction)
            print(f"\r[{'#' * filled}{'.' * (40 - filled)}] {fraction:4.0%} {stage:32s}", end="",
                  file=sys.stderr, flush=True)

    if not args.json:
        print(f"searching {model.name} on {args.chips} x {chip.name}", file=sys.stderr, flush=True)
    table = search.parallelism(model, chip, args.chips, args.global_batch, args.seq, phase=args.phase,
                               dtype=args.dtype, progress=bar, max_tp=args.max_tp, min_mfu=args.min_mfu,
                               memory_headroom=args.memory_headroom, price_per_hour=args.price_per_hour,
                               context_parallel=args.cp, dp_overlap=args.dp_overlap, pp_overlap=args.pp_overlap,
                               grad_reduce_in_fp32=args.grad_reduce_in_fp32,
                               expert_tensor_parallel=args.expert_tensor_parallel)
    if not args.json:
        bar(1.0, "done")
        print(f"\n{table.num_candidates:,} candidates in {table.seconds:.2f} s", file=sys.stderr)
    rows = table.rows(args.top)
    lines = [table.format(args.top)]
    if args.plot and not rows:
        lines.append(f"no configuration fits: no plot written to {args.plot}")
    elif args.plot and args.phase == "training":
        from ..report.plots import step_breakdown

        steps = [model.training_step(chip, args.seq, args.global_batch, r["micro_batch"], args.dtype,
                                     table.parallelism(i), r["recompute"], r["interleave"], r["zero_stage"],
                                     r["overlap"], recompute_layers=r["recompute_layers"])
                 for i, r in enumerate(rows[:3])]
        labels = [f"#{i + 1}" for i in range(len(steps))]
        guarded_write(lambda: step_breakdown(steps, args.plot, labels=labels), "--plot", args.plot)
        lines.append(f"step breakdown of the {len(steps)} best written to {args.plot}")
    elif args.plot:
        from ..report.plots import memory_vs_seq_len

        best = rows[0]
        par = {"tensor_parallel": best["tp"], "pipeline_parallel": best["pp"], "data_parallel": best["dp"]}
        guarded_write(lambda: memory_vs_seq_len(model, chip, args.plot, batch_size=best["micro_batch"],
                                                dtype=args.dtype, parallelism=par), "--plot", args.plot)
        lines.append(f"memory against context of the best (TP {best['tp']}, PP {best['pp']}, DP {best['dp']}, "
                     f"batch {best['micro_batch']} per replica) written to {args.plot}")
    emit(args, {"num_candidates": table.num_candidates, "num_valid": table.num_valid, "num_fit": table.num_fit,
                "num_block": table.num_block,
                "notes": list(table.notes), "rows": rows}, lines)
    return 0


def register(sub: Any) -> None:
    """Add the subcommand's parser to ``sub`` (the command's subparsers)."""
    p = sub.add_parser("search", help="rank parallelism configurations")
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--hardware", default=DEFAULT_HARDWARE)
    add_engine(p)
    p.add_argument("--chips", type=positive, required=True)
    p.add_argument("--global-batch", type=positive, required=True)
    p.add_argument("--seq", type=positive, default=4096)
    p.add_argument("--phase", choices=["training", "inference"], default="training")
    p.add_argument("--dtype", choices=DTYPES, default="bf16")
    add_model_options(p)
    p.add_argument("--top", type=positive, default=10)
    p.add_argument("--max-tp", type=positive, default=None, help="the largest tensor-parallel degree")
    p.add_argument("--cp", type=int_list, default=[1],
                   help="comma-separated context-parallel degrees to try (training; default 1)")
    p.add_argument("--dp-overlap", type=switch, default=True, metavar="on|off",
                   help="training: the data-parallel gradient sync hidden behind the backward (default on)")
    p.add_argument("--pp-overlap", type=switch, default=True, metavar="on|off",
                   help="training: an interleaved pipeline's sends hidden but the fill's and drain's (default on)")
    p.add_argument("--grad-reduce-in-fp32", type=switch, default=True, metavar="on|off",
                   help="training: fp32 gradients and reduction, off for bf16 (default on)")
    p.add_argument("--expert-tensor-parallel", type=expert_tp_list, default=[None], metavar="DEGREES",
                   help="training, MoE models: expert-TP degrees to try, e.g. tp,1,2; tp splits each expert tp "
                   "ways (the default), an integer runs Megatron-Core's expert grid")
    p.add_argument("--min-mfu", type=unit_fraction, default=None, help="the lowest MFU (training), e.g. 0.4")
    p.add_argument("--memory-headroom", type=fraction, default=0.0,
                   help="the fraction of HBM kept free, e.g. 0.1 (default 0)")
    p.add_argument("--price-per-hour", type=positive_number, default=None,
                   help="the price of one chip for one hour: adds cost_per_token (that currency per token)")
    p.add_argument("--plot", default=None, help="also write a chart (.png, .svg or .pdf): training, the 3 best "
                   "steps' breakdown; inference, memory against context of the best")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=search_cmd)
