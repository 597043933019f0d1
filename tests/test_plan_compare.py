"""benchmarks/plan_compare.py: symcost's plan against AIConfigurator's search on one question.

AIConfigurator is a peer installed only in the benchmark's environment, and its search takes tens
of seconds: the tests never run it. They check the block's format and arithmetic on answers
written by hand, the reading of AIConfigurator's rows (columns as its 0.12.0 search returns them),
the one-line exit without the package, and that the docs page holds one block in that format."""

import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "plan_compare.py"


def _load():
    spec = importlib.util.spec_from_file_location("benchmarks_plan_compare", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _answers(bench):
    ours = bench.Answer("symcost (tensorrt-llm profile)",
                        bench.Best("2 x TP 4", 8, 58, 29, 236.0, 33.6, 0.52, 0.0297),
                        bench.Best("prefill 1 x TP 4 + decode 1 x TP 4", 8, 30.72, None, 205.0, 59.5, 1.0, 0.0168),
                        0.5, 0.1, "1,000 deployments evaluated")
    theirs = bench.Answer("AIConfigurator 0.12.0 (trtllm tables 1.3.0rc20)",
                          bench.Best("1 x TP 4", 4, 28, 28, 228.8, 34.3, 0.8586, 0.029128), None, 15.0,
                          note="import 1.8 s, not counted")
    return ours, theirs


def test_the_block_by_hand():
    """Times 15 s / 0.5 s = 30.0x; aggregated tokens/s/GPU 236/228.8 = 1.031 and tokens/s/user
    33.6/34.3 = 0.980; no disaggregated answer from one side is n/a; symcost's own gain
    205/236 = 0.869."""
    bench = _load()
    text = bench.block(bench.Question(), *_answers(bench))
    lines = text.splitlines()
    assert lines[0] == ("question: Llama-3.1-70B on 8 x H200 SXM, ISL 4000 / OSL 500, TTFT <= 1 s, TPOT <= 30 ms, "
                        "bf16, TensorRT-LLM")
    assert lines[1] == "symcost (tensorrt-llm profile): search 0.50 s cold, warm 0.10 s (1,000 deployments evaluated)"
    assert lines[3] == "time: AIConfigurator / symcost (cold) 30.0x"
    assert ("  symcost         2 x TP 4 (8 GPUs), concurrency 58 (29 per replica): 236.0 tokens/s/GPU, "
            "33.6 tokens/s/user, TTFT 520 ms, TPOT 29.7 ms") in lines
    assert ("  AIConfigurator  1 x TP 4 (4 GPUs), concurrency 28: 228.8 tokens/s/GPU, 34.3 tokens/s/user, "
            "TTFT 859 ms, TPOT 29.1 ms") in lines
    assert "  symcost / AIConfigurator: tokens/s/GPU 1.03, tokens/s/user 0.98" in lines
    assert "  AIConfigurator  none meets the targets" in lines
    assert "  symcost / AIConfigurator: tokens/s/GPU n/a, tokens/s/user n/a" in lines
    assert lines[-1] == "disaggregated / aggregated tokens/s/GPU: symcost 0.87, AIConfigurator n/a"


def test_aiconfigurators_rows_are_read_by_their_columns():
    """Its best rows of 0.12.0's search for the question (copied from one run): an aggregated TP 4
    replica of 4 GPUs at batch 28; a disaggregated 2 x TP 2 prefill + 1 x TP 4 decode on 8; times
    in milliseconds."""
    bench = _load()
    agg = {"concurrency": 28, "tp": 4, "pp": 1, "num_total_gpus": 4, "tokens/s/gpu": 228.764,
           "tokens/s/user": 34.332, "ttft": 858.598, "tpot": 29.128}
    disagg = {"concurrency": 128, "(p)workers": 2, "(p)tp": 2, "(p)pp": 1, "(d)workers": 1, "(d)tp": 4, "(d)pp": 1,
              "num_total_gpus": 8, "tokens/s/gpu": 231.188, "tokens/s/user": 34.135, "ttft": 875.995, "tpot": 29.295}
    a = bench.aic_best(agg, "aggregated")
    assert (a.layout, a.gpus, a.per_replica, a.ttft, a.tpot) == ("1 x TP 4", 4, 28.0, 0.858598, 0.029128)
    d = bench.aic_best(disagg, "disaggregated")
    assert (d.layout, d.gpus, d.per_replica) == ("prefill 2 x TP 2 + decode 1 x TP 4", 8, None)
    assert d.tokens_per_gpu == 231.188 and d.tokens_per_user == 34.135


def test_without_aiconfigurator_the_script_exits_with_one_line():
    blocked = ("import runpy, sys\nsys.modules['aiconfigurator'] = None  # an import of it fails\n"
               f"sys.argv = [{str(SCRIPT)!r}]\nrunpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [_load().INSTALL_HINT]


def test_the_docs_block_is_replaced_and_the_rest_kept(tmp_path):
    bench = _load()
    page = tmp_path / "serving.md"
    page.write_text(f"# T\n\nbefore\n\n{bench.BEGIN}\nold\n{bench.END}\n\nafter\n")
    bench.write_docs(str(page), "question: x\n", "python benchmarks/plan_compare.py", today="2026-12-07")
    text = page.read_text()
    assert "old" not in text and text.endswith("\n\nafter\n")
    assert "`python benchmarks/plan_compare.py` on 2026-12-07, one run:\n\n```text\nquestion: x\n```\n" in text


LINE = r"\d[\d,]*\.\d tokens/s/GPU, \d+\.\d tokens/s/user, TTFT \d+ ms, TPOT \d+\.\d ms"


def test_the_docs_page_holds_one_block_in_the_scripts_format():
    """The block on docs/how-to/serving.md is a run of the script: each of its lines in the form
    :func:`block` prints (the run itself takes AIConfigurator's tens of seconds: not repeated here)."""
    bench = _load()
    text = pathlib.Path(bench.page("plan-compare")).read_text(encoding="utf-8")
    assert text.count(bench.BEGIN) == 1 and text.count(bench.END) == 1
    body = text.split(bench.BEGIN)[1].split(bench.END)[0].split("```text\n")[1].split("```")[0]
    lines = body.strip().splitlines()
    assert lines[0] == f"question: {bench.Question().label()}"
    assert re.fullmatch(r"symcost \(tensorrt-llm \(.+\) profile\): search \d+\.\d\d s cold, warm \d+\.\d\d s "
                        r"\([\d,]+ deployments evaluated\)", lines[1])
    assert re.fullmatch(r"AIConfigurator 0\.12\.0 \(trtllm tables .+\): search \d+\.\d s \(import \d+\.\d s, "
                        r"not counted\)", lines[2])
    assert re.fullmatch(r"time: AIConfigurator / symcost \(cold\) \d+\.\dx", lines[3])
    for i, kind in ((4, "aggregated"), (8, "disaggregated")):
        assert lines[i] == f"best {kind}:"
        for j, tool in ((1, "symcost        "), (2, "AIConfigurator ")):
            assert re.fullmatch(rf"  {tool} .+ \(\d GPUs\), concurrency [\d.]+( \([\d.]+ per replica\))?: {LINE}",
                                lines[i + j]), lines[i + j]
        assert re.fullmatch(r"  symcost / AIConfigurator: tokens/s/GPU \d\.\d\d, tokens/s/user \d\.\d\d", lines[i + 3])
    assert re.fullmatch(r"disaggregated / aggregated tokens/s/GPU: symcost \d\.\d\d, AIConfigurator \d\.\d\d",
                        lines[12])
    assert len(lines) == 13


def test_the_comparison_runs_where_aiconfigurator_is_installed():
    """Where the package is, the script's pieces import (its search is not run: tens of seconds)."""
    pytest.importorskip("aiconfigurator")
    from aiconfigurator.cli.api import cli_default  # noqa: F401  the entry point the script calls
