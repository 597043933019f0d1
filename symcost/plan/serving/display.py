"""Text of the serving plans for people: times and rates with units (the fields stay exact)."""

from __future__ import annotations

from typing import Any

from ...core import units

__all__ = ["deployment_line", "plan_text"]


def deployment_line(d: Any) -> str:
    """One deployment: layout, GPUs, concurrency, tokens/s/GPU and /user, TTFT, TPOT."""
    cost = d.cost_per_million_tokens
    priced = "" if cost is None else f", {float(cost):,.3g} per 1M tokens"  # None: no price
    return (f"{d.layout} ({d.gpus} GPUs), concurrency {float(d.concurrency):.4g}: "
            f"{float(d.tokens_per_second_per_gpu):,.0f} tokens/s/GPU, {float(d.tokens_per_second_per_user):,.1f} "
            f"tokens/s/user, TTFT {units.format_time(d.ttft, digits=3)}, TPOT {units.format_time(d.tpot, digits=3)}"
            + priced)


def plan_text(plan: Any, front: int = 12) -> str:
    """The plan's best deployment of each kind side by side with their gain, then the front."""
    q = getattr(plan, "ttft_percentile", None)
    ttft = "TTFT" if q is None else f"TTFT p{float(q) * 100:g}"
    lines = [f"plan for {plan.model} on {plan.gpus} x {plan.hardware} ({plan.engine}), {plan.workload.label()}, "
             f"{ttft} <= {units.format_time(plan.ttft_target, digits=3)}, TPOT <= "
             f"{units.format_time(plan.tpot_target, digits=3)}"]
    if q is not None:
        lines.append(f"  ({ttft}: disaggregated rows by the M/D/1 prefill wait's distribution; aggregated rows: a "
                     "closed loop's steady state has one TTFT, its percentile is its mean)")
    for kind, best in (("aggregated", plan.best_aggregated), ("disaggregated", plan.best_disaggregated)):
        lines.append(f"  {'cheapest' if plan.objective == 'cost' else 'best'} {kind}: "
                     + (deployment_line(best) if best is not None else "none meets the targets"))
    gain = plan.disaggregation_gain
    if gain is not None:
        lines.append(f"  disaggregated / aggregated tokens/s/GPU: {float(gain):.3g}")
    lines.append(f"Pareto front ({len(plan.front)} deployments meeting the targets, by tokens/s/user):")
    shown = plan.front if len(plan.front) <= front else plan.front[:: -(-len(plan.front) // front)]
    lines += [f"  {d.kind[:5]}  {deployment_line(d)}" for d in shown]
    return "\n".join(lines)
