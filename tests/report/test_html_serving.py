"""The HTML report's serving section (symcost.report.html, ``serving_plan=``; ``symcost plan --html``):
the plan's question, its best deployment of each kind, its front, its costs when priced."""

import sys
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plan"))
from test_serving import ROUND, TINY

from symcost.plan.serving.deploy import plan_deployment
from symcost.report.html import html_report, quantity

OPTIONS = dict(token_budget=40, memory_fraction=Fraction(1, 2), max_concurrency=64)


def _plan(**extra):
    return plan_deployment(TINY, ROUND, (5, 8), 3, Fraction(1, 2000), Fraction(4, 10**5), **OPTIONS, **extra)


def test_the_serving_section_shows_the_best_of_each_kind_and_the_front():
    plan = _plan()
    page = html_report(TINY, ROUND, seq_len=5, phases=["decode"], plots=False, serving_plan=plan)
    section = page.split("<section id='serving'>", 1)[1].split("</section>", 1)[0]
    assert "ISL 5 / OSL 8 on 3 x round" in section and "best = most tokens/s per GPU" in section
    for best in (plan.best_aggregated, plan.best_disaggregated):
        assert f"<td>{best.layout}</td>" in section
        assert f"<td class='n'>{quantity(best.tpot, 's')}</td>" in section
        assert f"<td class='n'>{float(best.tokens_per_second_per_gpu):,.0f}</td>" in section
    gain = float(plan.best_disaggregated.tokens_per_second_per_gpu / plan.best_aggregated.tokens_per_second_per_gpu)
    assert f"disaggregated / aggregated tokens/s/GPU: {gain:.3g}" in section
    assert f"Pareto front ({len(plan.front)} deployments meeting the targets)" in section
    assert "cost per 1M tokens" not in section
    assert "<section id='serving'>" not in html_report(TINY, ROUND, seq_len=5, phases=["decode"], plots=False)


def test_a_priced_plan_shows_its_costs():
    """At 3 per GPU-hour on 3 GPUs: 2500/X per million tokens (test_serving_deploy's hand form)."""
    plan = _plan(gpu_price=3, objective="cost")
    page = html_report(TINY, ROUND, seq_len=5, phases=["decode"], plots=False, serving_plan=plan)
    best = plan.best_aggregated
    assert "best = least cost per million tokens at 3 per GPU-hour" in page
    assert f"<td class='n'>{float(2500 / best.tokens_per_second):,.4g}</td>" in page
