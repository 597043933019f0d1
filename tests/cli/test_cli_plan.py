"""``symcost plan``: the deployment search from the shell (symcost/cli/plan.py): the JSON is the
library's plan, times parse with their units, bad options are one line; the how-to page's session
(run and checked by tests/test_docs.py) is a plan session."""

import json
import re
from fractions import Fraction
from pathlib import Path

import pytest
from cli_run import main_run as run

from symcost import hardware, models
from symcost.cli.plan import duration
from symcost.plan.serving.deploy import plan_deployment

ARGS = ["plan", "--model", "llama-3-8b", "--hardware", "H100", "--engine", "vllm", "--gpus", "2", "--isl", "1000",
        "--osl", "100", "--ttft", "500ms", "--tpot", "0.02", "--tp", "1,2", "--max-concurrency", "64"]


def test_json_is_the_librarys_plan(capsys):
    code, out, _ = run(capsys, *ARGS, "--json")
    assert code == 0
    data = json.loads(out)
    plan = plan_deployment(models.get("llama-3-8b"), hardware.get("H100").with_runtime("vllm"), (1000, 100), 2,
                           Fraction(1, 2), Fraction(1, 50), tp=[1, 2], max_concurrency=64)
    for kind in ("aggregated", "disaggregated"):
        best = getattr(plan, f"best_{kind}")
        got = data[f"best_{kind}"]
        assert got["layout"] == best.layout and got["gpus"] == best.gpus
        assert got["tokens_per_second_per_gpu"] == pytest.approx(float(best.tokens_per_second_per_gpu), rel=1e-12)
        assert got["ttft_s"] <= 0.5 and got["tpot_s"] <= 0.02
    assert len(data["front"]) == len(plan.front) and data["evaluated"] == len(plan.columns["ttft"])
    assert data["engine"] == "vllm (0.24.0)" and data["ttft_target_s"] == 0.5 and "M/D/1" in data["assumes"]


def test_text_names_the_best_of_each_kind_and_the_front(capsys, tmp_path):
    png = tmp_path / "front.png"
    code, out, _ = run(capsys, *ARGS, "--no-disaggregated", "--plot", str(png))
    assert code == 0
    assert "best aggregated: " in out and "best disaggregated: none meets the targets" in out
    assert "Pareto front (" in out and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("text, seconds", [("1s", 1), ("30ms", Fraction(3, 100)), ("500us", Fraction(1, 2000)),
                                           ("0.25", Fraction(1, 4)), (" 2 S ", 2)])
def test_times_parse_exactly_with_their_units(text, seconds):
    assert duration(text) == seconds


@pytest.mark.parametrize("argv, message", [
    (["--ttft", "1x"], "argument --ttft: expected a time such as 1s, 30ms or 0.03, got '1x'"),
    (["--tpot", "0ms"], "argument --tpot: expected a positive time, got '0ms'"),
    (["--isl", "1"], "argument --isl: must be at least 2, got 1"),
    (["--tp", "3"], "argument --tp/--pp: no TP x PP layout of llama-3-8b fits 2 GPUs (tp [3], pp [1])"),
    (["--memory-fraction", "1.5"], "argument --memory-fraction: expected a fraction in (0, 1]"),
    (["--gpus", "0"], "argument --gpus: expected a positive integer, got 0"),
    (["--ttft-percentile", "100"], "argument --ttft-percentile: expected a percentile between 0 and 100 (90 for "
     "p90), got '100'"),
    (["--ttft-percentile", "p90"], "argument --ttft-percentile: expected a percentile between 0 and 100"),
    (["--max-num-seqs", "0"], "argument --max-num-seqs: expected a positive integer, got 0"),
    # review finding: --ep on a dense model was ignored without a word
    (["--ep", "2,4"], "argument --ep: attention-DP x EP degrees need a mixture-of-experts model; llama-3-8b has no "
     "routed experts (got [2, 4])"),
])
def test_bad_options_are_one_line(capsys, argv, message):
    base = {a: b for a, b in zip(ARGS[1::2], ARGS[2::2])}
    for option, value in zip(argv[::2], argv[1::2]):
        base[option] = value
    code, _, err = run(capsys, "plan", *[x for kv in base.items() for x in kv])
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_a_percentile_ttft_target_is_the_librarys(capsys):
    """--ttft-percentile 90 is ttft_percentile=9/10: the same best deployments, the JSON says the
    percentile, the text says how each kind's TTFT is read."""
    code, out, _ = run(capsys, *ARGS, "--ttft-percentile", "90", "--json")
    assert code == 0
    data = json.loads(out)
    plan = plan_deployment(models.get("llama-3-8b"), hardware.get("H100").with_runtime("vllm"), (1000, 100), 2,
                           Fraction(1, 2), Fraction(1, 50), tp=[1, 2], max_concurrency=64,
                           ttft_percentile=Fraction(9, 10))
    assert data["ttft_percentile"] == 90
    best = plan.best_disaggregated
    assert data["best_disaggregated"]["layout"] == best.layout
    assert data["best_disaggregated"]["ttft_s"] == pytest.approx(float(best.ttft), rel=1e-12)
    code, out, _ = run(capsys, *ARGS, "--ttft-percentile", "90")
    assert code == 0 and "TTFT p90 <= 500 ms" in out and "its percentile is its mean" in out


def test_max_num_seqs_caps_each_engine(capsys):
    """--max-num-seqs 4: no engine runs more than 4 requests, so no decode batch exceeds 4 and the
    same plan as the library's with max_num_seqs=4."""
    code, out, _ = run(capsys, *ARGS, "--max-num-seqs", "4", "--json")
    assert code == 0
    data = json.loads(out)
    plan = plan_deployment(models.get("llama-3-8b"), hardware.get("H100").with_runtime("vllm"), (1000, 100), 2,
                           Fraction(1, 2), Fraction(1, 50), tp=[1, 2], max_concurrency=64, max_num_seqs=4)
    assert data["best_aggregated"]["layout"] == plan.best_aggregated.layout
    assert data["best_aggregated"]["tokens_per_second_per_gpu"] == pytest.approx(
        float(plan.best_aggregated.tokens_per_second_per_gpu), rel=1e-12)
    # 2 x TP 1 at concurrency 2c (c per replica): the tokens/s stop growing at c = 4, the cap
    cols = plan.columns
    rows = cols["layout"] == "2 x TP 1"
    tokens = cols["tokens_per_second"][rows]
    assert cols["concurrency"][rows][3] == 8 and tokens[2] < tokens[3]
    assert all(t == pytest.approx(tokens[3], rel=1e-12) for t in tokens[3:])


PAGE = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "serving.md"


def test_the_how_to_page_shows_a_plan_and_a_refused_layout():
    """"Plan a deployment" on docs/how-to/serving.md shows ``symcost plan`` answering and refusing
    (tests/test_docs.py runs each line and checks every output line shown)."""
    section = PAGE.read_text().split("## Plan a deployment\n", 1)[1].split("\n## ", 1)[0]
    commands = [line for block in re.findall(r"```console\n(.*?)```", section, flags=re.S)
                for line in block.splitlines() if line.startswith("$ symcost plan")]
    assert len(commands) >= 2
    assert "best aggregated:" in section and "symcost: error: argument --tp/--pp" in section


def test_a_budget_and_a_price_give_the_gpus_and_the_costs(capsys):
    """--budget 5 at --gpu-price 2.5 buys 2 GPUs (the ARGS' --gpus 2): the same plan, each deployment
    with 2.5 x 2 x 10^6/(3600 X) per million tokens."""
    argv = [a for a in ARGS if a not in ("--gpus", "2")]
    code, out, _ = run(capsys, *argv, "--budget", "5", "--gpu-price", "2.5", "--objective", "cost", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["gpus"] == 2 and data["gpu_price_per_hour"] == 2.5 and data["objective"] == "cost"
    best = data["best_aggregated"]
    assert best["cost_per_million_tokens"] == pytest.approx(5e6 / 3600 / best["tokens_per_second"], rel=1e-12)
    code, out, _ = run(capsys, *ARGS, "--gpu-price", "2.5", "--objective", "cost")
    assert code == 0 and "cheapest aggregated: " in out and " per 1M tokens" in out


@pytest.mark.parametrize("extra, message", [
    (["--objective", "cost"], "argument --gpu-price: needed with --objective cost"),
    (["--budget", "5"], "argument --gpus/--budget: give one of the two"),
    (["--gpu-price", "-1"], "argument --gpu-price: expected a positive amount such as 2.5, got '-1'"),
])
def test_bad_cost_options_are_one_line(capsys, extra, message):
    code, _, err = run(capsys, *ARGS, *extra)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_html_writes_the_report_with_its_serving_section(capsys, tmp_path):
    page = tmp_path / "plan.html"
    code, out, _ = run(capsys, *ARGS, "--html", str(page))
    assert code == 0 and f"HTML report written to {page}" in out
    text = page.read_text(encoding="utf-8")
    assert "<section id='serving'><h2>Serving plan</h2>" in text and "ISL 1000 / OSL 100 on 2 x H100_SXM" in text
    code, _, err = run(capsys, *ARGS, "--html", str(tmp_path / "missing" / "plan.html"))
    assert code == 2 and "argument --html: cannot write" in err


def test_without_a_price_the_json_cost_is_null_everywhere(capsys):
    """Review finding (one convention for a missing price): null in the best rows and the front."""
    code, out, _ = run(capsys, *ARGS, "--json")
    assert code == 0
    data = json.loads(out)
    rows = [data["best_aggregated"], data["best_disaggregated"], *data["front"]]
    assert all(row["cost_per_million_tokens"] is None for row in rows)


def test_the_search_freezes_and_unfreezes_only_what_it_froze(monkeypatch):
    """``_search`` freezes the loaded objects for the cycle collector during the search and
    unfreezes them after, only where nothing was frozen at entry: a caller's own frozen objects
    stay frozen (the same count after as before)."""
    import argparse
    import gc

    from symcost.cli.plan import _search
    from symcost.plan.serving import deploy

    seen = []
    monkeypatch.setattr(deploy, "plan_deployment", lambda *a, **k: seen.append(gc.get_freeze_count()) or "plan")
    names = ("ttft", "tpot", "dtype", "tp", "pp", "max_concurrency", "no_disaggregated", "token_budget",
             "memory_fraction", "gpu_price", "objective", "ep", "ttft_percentile", "max_num_seqs")
    args = argparse.Namespace(**dict.fromkeys(names))
    assert gc.get_freeze_count() == 0
    assert _search(args, None, None, None, 8) == "plan"
    assert seen[-1] > 0 and gc.get_freeze_count() == 0  # frozen during the search, all unfrozen after
    gc.freeze()  # a caller's own
    try:
        before = gc.get_freeze_count()
        assert _search(args, None, None, None, 8) == "plan"
        assert seen[-1] == before and gc.get_freeze_count() == before
    finally:
        gc.unfreeze()
