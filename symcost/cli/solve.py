"""``symcost solve``: the longest context, the largest batch or the smallest TP that fits."""

from __future__ import annotations

import argparse
from typing import Any

from . import serving
from .common import (
    CHUNK_HELP,
    UsageError,
    add_common,
    check_out,
    chunk_text,
    emit,
    guarded_write,
    hardware_arg,
    model_arg,
    num,
    par_text,
    parallelism_arg,
    positive,
)


def solve(args: argparse.Namespace) -> int:
    if args.quantity == "pd-ratio":
        return serving.pd_ratio(args)
    serving.check_pd_options(args)
    model = model_arg(args.model, args)
    chip = hardware_arg(args.hardware, args.engine)
    par = parallelism_arg(args)
    chunk, refused = args.prefill_chunk, ""
    if args.plot:
        check_out(args.plot, "--plot", plot=True)
        if chunk is not None:
            raise UsageError("argument --plot: the memory chart is drawn for an unchunked prefill; "
                             "drop --prefill-chunk to draw it")
    if args.quantity == "max-seq-len":
        r = model.max_context(chip, batch_size=args.batch, dtype=args.dtype, parallelism=par, prefill_chunk=chunk)
        data = {"quantity": "max_seq_len", "value": r.value, "status": r.status,
                "closed_form": None if r.closed_form is None else str(r.closed_form),
                "max_position_embeddings": model.max_position_embeddings}
        given = f"batch {args.batch:,}"
    elif args.quantity == "max-batch":
        r = model.max_batch_size(chip, seq_len=args.seq, dtype=args.dtype, parallelism=par, prefill_chunk=chunk)
        data = {"quantity": "max_batch", "value": r.value, "status": r.status,
                "closed_form": None if r.closed_form is None else str(r.closed_form)}
        given = f"seq_len {args.seq:,}"
    else:
        data, given, refused = _min_tp(args, model, chip, par)
        if data["value"] is not None:  # the layout stated and drawn is the answer's, not the --tp default
            par = {**par, "tensor_parallel": data["value"]}
    data.update({"parallelism": par, "prefill_chunk": chunk,
                 "assumes": "weights and KV cache of the fullest pipeline stage plus the largest layer's "
                            "activation peak (one chunk's when chunked) fit the chip's HBM"})
    unit = {"max_seq_len": " tokens", "max_batch": " sequences", "min_tp": "-way TP"}[data["quantity"]]
    answer = f"{data['value']:,}{unit}" if data["value"] is not None else data["status"].replace("_", " ")
    if data["quantity"] == "max_seq_len":
        answer += _trained(data["value"], model.max_position_embeddings)
    shown = par if data["value"] is not None or data["quantity"] != "min_tp" else {**par, "tensor_parallel": "none"}
    lines = [f"{data['quantity']} for {model.name} on {chip.name}: {answer}",
             f"  ({given}, {par_text(shown)}, {args.dtype}, {chunk_text(chunk)}{refused}; {data['assumes']})"]
    if args.plot:
        from ..report.plots import memory_vs_seq_len

        guarded_write(lambda: memory_vs_seq_len(model, chip, args.plot, batch_size=args.batch, dtype=args.dtype,
                                                parallelism=par), "--plot", args.plot)
        lines.append(f"memory plot written to {args.plot}")
    emit(args, data, lines)
    return 0


def _min_tp(args: argparse.Namespace, model: Any, chip: Any, par: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
    """The smallest TP degree (1, 2, 4, ..., 128, those the model divides by) whose serving memory
    fits: the answer's data, the workload and the degrees refused, as text."""
    from ..analysis.solve import min_degree

    def memory(t: int) -> Any:
        step = model.inference_step(chip, args.batch, args.seq, args.dtype, {**par, "tensor_parallel": t},
                                    prefill_chunk=args.prefill_chunk)
        return step.memory_per_chip

    candidates = []
    for t in (1, 2, 4, 8, 16, 32, 64, 128):
        try:
            model.with_parallelism({**par, "tensor_parallel": t})
        except ValueError:
            continue
        candidates.append(t)
    r = min_degree(memory, None, chip.hbm_capacity, candidates, kind="bytes")
    data = {"quantity": "min_tp", "value": r.value, "status": r.status,
            "checked": [{"tp": n, "memory_per_chip": num(v), "fits": f} for n, v, f in r.checked]}
    return data, f"batch {args.batch:,}, seq_len {args.seq:,}", _not_fitting([n for n, _, f in r.checked if f is False])


def _trained(memory: Any, trained: Any) -> str:
    """After the tokens that fit in HBM: the model's trained length, and whether it binds."""
    from ..models.display import context_binds

    name = "the model's trained length (max_position_embeddings)"
    binds = context_binds(memory, trained)
    if memory is None:
        return ""
    if trained is None:
        return " fit in HBM; the model states no trained length"
    if binds == "trained length":
        return f" fit in HBM; {name}, {trained:,} tokens, binds"
    return f" fit in HBM, {'as many as' if binds == 'both' else 'fewer than'} {name}, {trained:,}"


def _not_fitting(degrees: list[int]) -> str:
    """``"; TP 1 and 2 do not fit"`` for the degrees tried and refused (empty when none was)."""
    if not degrees:
        return ""
    names = ", ".join(str(t) for t in degrees[:-1]) + (" and " if len(degrees) > 1 else "") + str(degrees[-1])
    return f"; TP {names} {'does' if len(degrees) == 1 else 'do'} not fit"


def register(sub: Any) -> None:
    """Add the subcommand's parser to ``sub`` (the command's subparsers)."""
    chunk_help = CHUNK_HELP
    p = sub.add_parser("solve", help="max-seq-len, max-batch or min-tp that fits in HBM; pd-ratio: the prefill "
                       "and decode instances of disaggregated serving")
    p.add_argument("quantity", choices=["max-seq-len", "max-batch", "min-tp", "pd-ratio"])
    add_common(p, phase=False)
    p.add_argument("--batch", type=positive, default=1)
    p.add_argument("--seq", type=positive, default=8192)
    p.add_argument("--prefill-chunk", type=positive, default=None, help=chunk_help)
    p.add_argument("--plot", default=None, help="also write memory vs sequence length (.png, .svg or .pdf)")
    serving.add_pd_ratio(p)
    p.set_defaults(func=solve)
