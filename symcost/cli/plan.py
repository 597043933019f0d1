"""``symcost plan``: which deployment, at which concurrency, meets the TTFT and TPOT targets with the
most tokens/s per GPU, aggregated or disaggregated, and the Pareto front."""

from __future__ import annotations

import argparse
import gc
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .common import (
    DEFAULT_HARDWARE,
    DEFAULT_MODEL,
    DTYPES,
    UsageError,
    add_engine,
    add_model_options,
    check_out,
    emit,
    guarded_write,
    hardware_arg,
    int_list,
    model_arg,
    num,
    positive,
)

if TYPE_CHECKING:
    from ..hardware import Hardware
    from ..models.model import Model
    from ..plan.serving import Workload
    from ..plan.serving.deploy import DeploymentPlan

_UNITS = (("ms", Fraction(1, 1000)), ("us", Fraction(1, 10**6)), ("s", Fraction(1)))


def duration(text: str) -> Fraction:
    """Seconds, exactly as written: ``1s``, ``30ms``, ``500us`` or a bare number of seconds."""
    value = text.strip().lower()
    scale = Fraction(1)
    for suffix, factor in _UNITS:
        if value.endswith(suffix):
            value, scale = value[: -len(suffix)].strip(), factor
            break
    try:
        seconds = Fraction(value) * scale
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a time such as 1s, 30ms or 0.03, got {text!r}") from None
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"expected a positive time, got {text!r}")
    return seconds


def memory_fraction(text: str) -> Fraction:
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], got {text!r}")
    return value


def percentile(text: str) -> Fraction:
    """A percentile strictly between 0 and 100 (``90`` for p90), as the fraction 9/10."""
    rule = f"expected a percentile between 0 and 100 (90 for p90), got {text!r}"
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(rule) from None
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(rule)
    return value / 100


def price(text: str) -> Fraction:
    """A positive amount of money, exactly as written (``2.5``, ``10``)."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a positive amount such as 2.5, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive amount such as 2.5, got {text!r}")
    return value


def _deployment(d: Any) -> dict[str, Any]:
    if d is None:
        return None  # type: ignore[return-value]
    return {"kind": d.kind, "layout": d.layout, "gpus": d.gpus, "concurrency": num(d.concurrency),
            "ttft_s": num(d.ttft), "tpot_s": num(d.tpot), "tokens_per_second": num(d.tokens_per_second),
            "tokens_per_second_per_gpu": num(d.tokens_per_second_per_gpu),
            "tokens_per_second_per_user": num(d.tokens_per_second_per_user), "memory_per_chip": num(d.memory_per_chip),
            "cost_per_million_tokens": num(d.cost_per_million_tokens)}  # None without a price


ASSUMES = ("aggregated: replicas of one engine at a fixed concurrency, continuous batching at steady state "
           "(closed loop, Little's law TTFT); disaggregated: M/D/1 prefill instances of batch-1 prompts "
           "(DistServe eq. 2), KV cache sent over the scale-out link, decode instances batching B requests at "
           "the mean context")


def _search(args: argparse.Namespace, model: Model, chip: Hardware, workload: Workload, gpus: int) -> DeploymentPlan:
    """:func:`~symcost.plan.serving.deploy.plan_deployment` with the command's options; a
    ``ConfigError`` of the options that chose the layouts as theirs."""
    from ..errors import ConfigError
    from ..plan.serving.deploy import plan_deployment

    # the objects loaded so far (SymPy, the model, the chip) outlive the search: frozen, the cycle
    # collector's passes during it skip them (about a twentieth of the command's CPU time otherwise);
    # only where nothing is frozen yet (a caller that froze its own objects keeps them frozen)
    ours = gc.get_freeze_count() == 0
    if ours:
        gc.freeze()
    try:
        return plan_deployment(model, chip, workload, gpus, args.ttft, args.tpot,
                               dtype=args.dtype, tp=args.tp, pp=args.pp, max_concurrency=args.max_concurrency,
                               disaggregated=not args.no_disaggregated, token_budget=args.token_budget,
                               memory_fraction=args.memory_fraction, gpu_price=args.gpu_price,
                               objective=args.objective, ep=args.ep, ttft_percentile=args.ttft_percentile,
                               max_num_seqs=args.max_num_seqs)
    except ConfigError as err:  # no layout, or EP degrees for a dense model: the options that chose them
        for prefix, option in (("layouts: ", "--tp/--pp"), ("ep: ", "--ep")):
            if str(err).startswith(prefix):
                raise UsageError(f"argument {option}: {str(err).removeprefix(prefix)}") from None
        raise
    finally:
        if ours:
            gc.unfreeze()  # what this froze collected as usual again (a caller running more than this command)


def plan_cmd(args: argparse.Namespace) -> int:
    """Print the best deployment of each kind and the Pareto front (``--json``: the same as data)."""
    model = model_arg(args.model, args)
    chip = hardware_arg(args.hardware, args.engine)
    if args.plot:
        check_out(args.plot, "--plot", plot=True)
    if args.html:
        check_out(args.html, "--html")
    from ..errors import ConfigError
    from ..plan.serving import Workload
    from ..plan.serving.deploy import gpus_for_budget

    if (args.gpus is None) == (args.budget is None):
        raise UsageError("argument --gpus/--budget: give one of the two")
    if args.gpu_price is None and (args.budget is not None or args.objective == "cost"):
        raise UsageError(f"argument --gpu-price: needed with {'--budget' if args.budget else '--objective cost'}")
    try:
        gpus = args.gpus if args.budget is None else gpus_for_budget(args.budget, args.gpu_price)
    except ConfigError as err:
        raise UsageError(f"argument --budget: {str(err).removeprefix('budget: ')}") from None
    try:
        workload = Workload.of(args.isl, args.osl)
    except ConfigError as err:  # isl or osl: the option that set it
        raise UsageError(f"argument --{str(err).split()[0]}: {str(err).split(' ', 1)[1]}") from None
    plan = _search(args, model, chip, workload, gpus)
    gain = plan.disaggregation_gain
    data = {"model": model.name, "hardware": chip.name, "engine": plan.engine, "gpus": gpus, "isl": args.isl,
            "osl": args.osl, "ttft_target_s": num(plan.ttft_target), "tpot_target_s": num(plan.tpot_target),
            "ttft_percentile": None if plan.ttft_percentile is None else num(plan.ttft_percentile * 100),
            "best_aggregated": _deployment(plan.best_aggregated),
            "best_disaggregated": _deployment(plan.best_disaggregated),
            "disaggregation_gain": None if gain is None else num(gain),
            "front": [_deployment(d) for d in plan.front], "evaluated": len(plan.columns["ttft"]),
            "gpu_price_per_hour": None if plan.gpu_price is None else num(plan.gpu_price), "objective": plan.objective,
            "assumes": ASSUMES}
    lines = [str(plan), f"  ({ASSUMES})"]
    if args.plot:
        from ..report.plots import pareto_front as draw

        guarded_write(lambda: draw(plan, args.plot), "--plot", args.plot)
        lines.append(f"Pareto front plot written to {args.plot}")
    if args.html:
        from ..report.html import write_html_report

        guarded_write(lambda: write_html_report(args.html, model, chip, seq_len=args.isl, dtype=args.dtype,
                                                phases=("prefill", "decode"), serving_plan=plan), "--html", args.html)
        lines.append(f"HTML report written to {args.html}")
    emit(args, data, lines)
    return 0


def register(sub: Any) -> None:
    """Add the subcommand's parser to ``sub`` (the command's subparsers)."""
    p = sub.add_parser("plan", help="the deployment (layout, concurrency, aggregated or disaggregated) that meets "
                       "TTFT and TPOT targets with the most tokens/s per GPU, and the Pareto front")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"preset name or config.json (default {DEFAULT_MODEL})")
    p.add_argument("--hardware", default=DEFAULT_HARDWARE,
                   help=f"preset name or .json/.yaml (default {DEFAULT_HARDWARE})")
    add_engine(p)
    p.add_argument("--dtype", choices=DTYPES, default="bf16", help="data type (default bf16)")
    add_model_options(p)
    p.add_argument("--gpus", type=positive, default=None, help="GPUs to deploy on (or --budget)")
    p.add_argument("--gpu-price", type=price, default=None,
                   help="price per GPU-hour: adds each deployment's cost per million output tokens")
    p.add_argument("--budget", type=price, default=None,
                   help="money per hour instead of --gpus: buys floor(budget / gpu price) GPUs (needs --gpu-price)")
    p.add_argument("--objective", choices=("throughput", "cost"), default="throughput",
                   help="best = most tokens/s per GPU used (default), or cost = least per million tokens on "
                   "the GPUs paid for (needs --gpu-price)")
    p.add_argument("--isl", type=positive, required=True, help="prompt tokens per request")
    p.add_argument("--osl", type=positive, required=True, help="output tokens per request (the first from the prefill)")
    p.add_argument("--ttft", type=duration, required=True, help="TTFT target (mean, or --ttft-percentile): 1s, 0.5")
    p.add_argument("--tpot", type=duration, required=True, help="TPOT target: 30ms, 0.03")
    p.add_argument("--ttft-percentile", type=percentile, default=None, metavar="P",
                   help="hold the TTFT target at this percentile, e.g. 90 (default: the mean); disaggregated "
                   "prefill by the M/D/1 wait's distribution, aggregated steady state has one TTFT")
    p.add_argument("--tp", type=int_list, default=None, help="TP degrees to try, e.g. 1,2,4,8 (default: powers of 2 "
                   "up to the scale-up domain)")
    p.add_argument("--pp", type=int_list, default=[1], help="PP degrees to try (default 1)")
    p.add_argument("--ep", type=int_list, default=None, help="for a MoE model, attention-DP x EP degrees to try, "
                   "e.g. 4,8 (default: 2, 4, ... up to the scale-up domain; 1: none)")
    p.add_argument("--max-concurrency", type=positive, default=512,
                   help="largest concurrency per engine (and decode batch) tried (default 512)")
    p.add_argument("--token-budget", type=positive, default=None,
                   help="tokens per engine step, max_num_batched_tokens (default: the engine profile's for the "
                   "chip, else 8192)")
    p.add_argument("--max-num-seqs", type=positive, default=None,
                   help="the most requests an engine runs at once, max_num_seqs (default: the engine profile's, "
                   "e.g. vLLM 1024 on 70 GiB and more; else the KV cache's bound)")
    p.add_argument("--memory-fraction", type=memory_fraction, default=None,
                   help="the engine's memory fraction, counted by its rule (default: the engine profile's, e.g. "
                   "vLLM 0.9 of HBM, else 0.9)")
    p.add_argument("--no-disaggregated", action="store_true", help="aggregated deployments only")
    p.add_argument("--plot", default=None, help="also draw the Pareto front (.png, .svg or .pdf)")
    p.add_argument("--html", default=None, metavar="FILE", help="also write an HTML report with a serving section "
                   "(the best deployments, the front and its chart)")
    p.add_argument("--json", action="store_true", help="machine-readable JSON output")
    p.set_defaults(func=plan_cmd)

