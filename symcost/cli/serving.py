"""Serving options of the ``symcost`` command: speculative decoding on ``symcost report``
(``--spec-k``, ``--spec-alpha``, ``--draft-model``) and ``symcost solve pd-ratio``, the prefill
and decode pools of disaggregated serving."""

from __future__ import annotations

import argparse
from fractions import Fraction
from typing import Any

from ..errors import ConfigError
from .common import (
    UsageError,
    emit,
    hardware_arg,
    human,
    model_arg,
    num,
    positive,
)


def exact_number(text: str) -> Fraction:
    """A finite number, exactly as written (``0.8`` is 4/5)."""
    try:
        value = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    return value


def probability(text: str) -> Fraction:
    value = exact_number(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a probability in [0, 1], got {text!r}")
    return value


def positive_exact(text: str) -> Fraction:
    value = exact_number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


# -- speculative decoding on ``symcost report`` ---------------------------------------------------


def add_speculative(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec-k", type=positive, default=None,
                   help="speculative decoding: draft tokens proposed per round (with --spec-alpha)")
    p.add_argument("--spec-alpha", type=probability, default=None,
                   help="speculative decoding: probability the target accepts a draft token, in [0, 1]")
    p.add_argument("--draft-model", default=None,
                   help="draft model preset or config.json (default: DeepSeek-V3-style multi-token-prediction "
                        "heads, one transformer block of the target each)")


def check_speculative(args: argparse.Namespace) -> bool:
    """Whether the report has a speculative section; a half-given set of options is one line."""
    k, alpha = args.spec_k, args.spec_alpha
    if k is None and alpha is None:
        if args.draft_model is not None:
            raise UsageError("argument --draft-model: needs --spec-k and --spec-alpha")
        return False
    if k is None or alpha is None:
        missing = "--spec-alpha" if alpha is None else "--spec-k"
        raise UsageError(f"argument {missing}: --spec-k and --spec-alpha go together")
    if args.phase not in (None, "decode"):
        raise UsageError(f"argument --spec-k: speculative decoding speeds up the decode phase; use --phase decode "
                         f"or no --phase (got --phase {args.phase})")
    return True


def speculative_section(run: Any, lines: list[str], out: dict[str, Any]) -> None:
    """The decode phase under speculative decoding: tokens per round, the round, TPOT, the
    break-even acceptance rate and the TPOT formula in LaTeX."""
    from ..plan.speculative import speculative_step, tpot_latex

    args = run.args
    draft = None if args.draft_model is None else model_arg(args.draft_model, args, "--draft-model")
    st = speculative_step(run.model, run.chip, args.batch, args.seq, k=args.spec_k, alpha=args.spec_alpha,
                          draft=draft, dtype=run.dtype, parallelism=run.par)
    be = st.breakeven()
    name = "multi-token-prediction heads (DeepSeek-V3 MTP modules)" if draft is None else draft.name
    lines.append("\n== speculative decoding ==")
    lines.append(f"draft: {name}, on the target's chips; k {args.spec_k}, alpha {float(args.spec_alpha):g}: "
                 f"{float(st.expected_tokens):.4g} tokens per round (sum of alpha^i, i = 0..k; Leviathan et al. 2023)")
    lines.append(f"round: {args.spec_k} draft step{'s' if args.spec_k != 1 else ''} x {human(st.draft_time, 's')} + "
                 f"verification of {args.spec_k + 1} tokens {human(st.verify_time, 's')} = {human(st.round_time, 's')}")
    lines.append(f"TPOT {human(st.tpot, 's')} (plain decoding {human(st.plain_tpot, 's')}): speedup "
                 f"{float(st.speedup):.3g}x, {float(st.tokens_per_second):,.0f} tokens/s per replica")
    verdict = {"always": "pays off at any alpha", "never": "never pays off (even alpha = 1)",
               "symbolic": "break-even symbolic"}.get(be.status) or f"pays off above alpha = {float(be.alpha):.4g}"
    lines.append(f"break-even: {verdict}; memory per chip with the draft {human(st.memory_per_chip, 'B')}")
    lines.append(f"LaTeX: {tpot_latex()}")
    out["speculative"] = {
        "k": args.spec_k, "alpha": float(args.spec_alpha), "draft": st.draft,
        "expected_tokens": num(st.expected_tokens), "draft_time_s": num(st.draft_time),
        "verify_time_s": num(st.verify_time), "round_time_s": num(st.round_time), "tpot_s": num(st.tpot),
        "plain_tpot_s": num(st.plain_tpot), "speedup": num(st.speedup),
        "tokens_per_second": num(st.tokens_per_second), "memory_per_chip": num(st.memory_per_chip),
        "breakeven_alpha": None if be.alpha is None else float(be.alpha), "breakeven_status": be.status,
        "latex": tpot_latex()}


# -- ``symcost solve pd-ratio`` ------------------------------------------------------------------

_PD_OPTIONS = ("rate", "prompt", "output", "ttft", "tpot")


def add_pd_ratio(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", type=positive_exact, default=None, help="pd-ratio: requests per second (Poisson)")
    p.add_argument("--prompt", type=positive, default=None, help="pd-ratio: prompt tokens per request")
    p.add_argument("--output", type=positive, default=None,
                   help="pd-ratio: output tokens per request (the first from the prefill)")
    p.add_argument("--ttft", type=positive_exact, default=None, help="pd-ratio: mean TTFT target (s)")
    p.add_argument("--tpot", type=positive_exact, default=None, help="pd-ratio: TPOT target (s)")
    p.add_argument("--prefill-hardware", default=None, help="pd-ratio: prefill chip (default --hardware)")
    p.add_argument("--decode-hardware", default=None, help="pd-ratio: decode chip (default --hardware)")
    p.add_argument("--prefill-tp", type=positive, default=None, help="pd-ratio: prefill TP degree (default --tp)")
    p.add_argument("--decode-tp", type=positive, default=None, help="pd-ratio: decode TP degree (default --tp)")
    p.add_argument("--max-num-seqs", type=positive, default=None,
                   help="pd-ratio: the most requests a decode instance runs, max_num_seqs (default: the decode "
                   "chip's engine profile's, e.g. vLLM 1024 on 70 GiB and more; else none)")


def check_pd_options(args: argparse.Namespace) -> None:
    """pd-ratio's options are refused with another quantity (nothing is ignored silently)."""
    given = [o for o in (*_PD_OPTIONS, "prefill_hardware", "decode_hardware", "prefill_tp", "decode_tp",
                         "max_num_seqs")
             if getattr(args, o) is not None]
    if given:
        raise UsageError(f"argument --{given[0].replace('_', '-')}: only for solve pd-ratio")


def _pd_par(args: argparse.Namespace, tp: Any) -> dict[str, Any]:
    from .common import parallelism_arg

    return {**parallelism_arg(args), "tensor_parallel": args.tp if tp is None else tp}


def _chip(args: argparse.Namespace, option: str) -> Any:
    """The chip of ``--prefill-hardware`` or ``--decode-hardware`` (default ``--hardware``); a bad
    name is one line naming the option given."""
    name = getattr(args, option)
    if name is None:
        return hardware_arg(args.hardware, args.engine)
    return hardware_arg(name, args.engine, f"--{option.replace('_', '-')}")


def _layout(par: dict[str, Any]) -> str:
    """A pool's degrees for the header: ``TP 4``, ``TP 4 x PP 2``, ``TP 2 x SP tp`` (the ones not 1)."""
    names = (("tensor_parallel", "TP"), ("pipeline_parallel", "PP"), ("context_parallel", "CP"),
             ("sequence_parallel", "SP"))
    return " x ".join(f"{label} {par[key]}" for key, label in names if key == "tensor_parallel" or par[key] != 1)


def pd_ratio(args: argparse.Namespace) -> int:
    """``symcost solve pd-ratio``: the fewest prefill and decode instances meeting the targets."""
    missing = [o for o in _PD_OPTIONS if getattr(args, o) is None]
    if missing:
        raise UsageError(f"argument --{missing[0]}: required for solve pd-ratio "
                         "(--rate, --prompt, --output, --ttft, --tpot)")
    if args.plot or args.prefill_chunk is not None:
        raise UsageError(f"argument {'--plot' if args.plot else '--prefill-chunk'}: not used by solve pd-ratio")
    model = model_arg(args.model, args)  # with --window, --global-every, --kv-dtype
    pchip, dchip = (_chip(args, option) for option in ("prefill_hardware", "decode_hardware"))
    ppar, dpar = _pd_par(args, args.prefill_tp), _pd_par(args, args.decode_tp)
    from ..plan.disaggregated import pd_ratio as solve_pd

    try:
        plan = solve_pd(model, args.rate, args.prompt, args.output, args.ttft, args.tpot, pchip, dchip, ppar, dpar,
                        args.dtype, args.max_num_seqs)
    except ConfigError as error:  # a pool's parallelism: the option that set it
        pool = error.context[0].removesuffix("_parallelism") if len(error.context) == 1 else None
        if pool not in ("prefill", "decode") or not any("tensor_parallel" in name for name in error.names):
            raise
        given = args.prefill_tp if pool == "prefill" else args.decode_tp
        option = f"--{pool}-tp" if given is not None else "--tp"
        raise UsageError(f"argument {option}: {error.line(context=False)}") from None
    data = {"quantity": "pd_ratio", "num_prefill": plan.num_prefill, "num_decode": plan.num_decode,
            "ratio": num(plan.ratio), "num_chips": plan.num_chips, "prefill_chips": plan.prefill_chips,
            "decode_chips": plan.decode_chips, "prefill_time_s": num(plan.prefill_time),
            "prefill_stage_time_s": num(plan.prefill_stage_time),
            "kv_transfer_bytes": num(plan.kv_transfer_bytes), "kv_transfer_time_s": num(plan.kv_transfer_time),
            "ttft_s": num(plan.ttft), "prefill_utilization": num(plan.prefill_utilization),
            "decode_batch": plan.decode_batch, "decode_limit": plan.decode_limit, "tpot_s": num(plan.decode_tpot),
            "assumes": "Poisson arrivals split evenly; each prefill instance an M/D/1 queue of batch-1 prompts "
                       "served at its slowest pipeline stage's pace (DistServe, Zhong et al. 2024, eq. 2), KV "
                       "transfer counted in TTFT; decode at the longest context, Little's law at the largest batch "
                       "meeting TPOT and memory"}
    stage = ("" if plan.prefill_stage_time == plan.prefill_time
             else f" (slowest stage {human(plan.prefill_stage_time, 's')})")
    lines = [f"pd_ratio for {model.name}: {plan.num_prefill} prefill ({pchip.name}, {_layout(ppar)}) : "
             f"{plan.num_decode} decode ({dchip.name}, {_layout(dpar)}) instances, {plan.num_chips} chips",
             f"  prefill: {human(plan.prefill_time, 's')} per prompt{stage}, "
             f"utilization {float(plan.prefill_utilization):.3g}, "
             f"KV transfer {human(plan.kv_transfer_bytes, 'B')} per chip in {human(plan.kv_transfer_time, 's')}, "
             f"mean TTFT {human(plan.ttft, 's')} (target {human(args.ttft, 's')})",
             f"  decode: batch {plan.decode_batch} ({plan.decode_limit}-bound) at TPOT {human(plan.decode_tpot, 's')} "
             f"(target {human(args.tpot, 's')})",
             f"  ({data['assumes']})",
             "LaTeX: " + " ".join(plan.to_latex().splitlines())]
    data["latex"] = plan.to_latex()
    emit(args, data, lines)
    return 0
