"""``symcost report --spec-k/--spec-alpha/--draft-model`` and ``symcost solve pd-ratio``, run
in-process through the command's ``main``: the numbers are the library's, bad input one line."""

import json
import re
from fractions import Fraction
from pathlib import Path

import pytest
from cli_run import main_run as run

from symcost import models
from symcost.plan.disaggregated import pd_ratio
from symcost.plan.speculative import speculative_step


def test_report_speculative_json(capsys):
    """k 3, alpha 0.8 (exactly 4/5): E = 1 + 0.8 + 0.64 + 0.512 = 2.952 tokens per round."""
    code, out, _ = run(capsys, "report", "--phase", "decode", "--spec-k", "3", "--spec-alpha", "0.8", "--json")
    assert code == 0
    spec = json.loads(out)["speculative"]
    assert spec["expected_tokens"] == pytest.approx(2.952, abs=1e-15)
    st = speculative_step(models.get("llama-3-8b"), "H100_SXM", 1, 8192, k=3, alpha=Fraction(4, 5))
    assert spec["tpot_s"] == float(st.tpot) and spec["draft"] == "mtp"
    assert spec["breakeven_status"] == "found" and 0 < spec["breakeven_alpha"] < 0.8
    assert spec["latex"].startswith(r"\mathrm{TPOT} = \frac{")


def test_report_speculative_text_with_a_draft_model(capsys):
    code, out, _ = run(capsys, "report", "--phase", "decode", "--spec-k", "2", "--spec-alpha", "0.5",
                       "--draft-model", "llama-2-7b", "--seq", "2048")
    assert code == 0
    assert "== speculative decoding ==" in out and "draft: llama-2-7b" in out
    assert "verification of 3 tokens" in out and "LaTeX: \\mathrm{TPOT}" in out


def test_report_speculative_that_never_pays_off(capsys):
    """A llama-2-7b draft for llama-3-8b at TP 8: the draft step costs about as much as the
    target's, so even alpha = 1 (k + 1 = 4 tokens for 3 draft steps and a verification) does not
    pay off; the report says so in a line instead of failing on a missing alpha."""
    code, out, err = run(capsys, "report", "--spec-k", "3", "--spec-alpha", "0.8", "--draft-model", "llama-2-7b",
                         "--tp", "8", "--phase", "decode")
    assert code == 0, err
    assert "break-even: never pays off (even alpha = 1)" in out


@pytest.mark.parametrize("argv, message", [
    (["--spec-k", "3"], "argument --spec-alpha: --spec-k and --spec-alpha go together"),
    (["--spec-alpha", "0.5"], "argument --spec-k: --spec-k and --spec-alpha go together"),
    (["--spec-k", "3", "--spec-alpha", "1.5"], "argument --spec-alpha: expected a probability in [0, 1], got '1.5'"),
    (["--spec-k", "0", "--spec-alpha", "0.5"], "argument --spec-k: expected a positive integer, got 0"),
    (["--draft-model", "llama-2-7b"], "argument --draft-model: needs --spec-k and --spec-alpha"),
    (["--spec-k", "2", "--spec-alpha", "0.5", "--phase", "prefill"], "argument --spec-k: speculative decoding"),
    (["--spec-k", "2", "--spec-alpha", "0.5", "--draft-model", "nope"], "argument --model: unknown model 'nope'"),
])
def test_report_speculative_bad_input(capsys, argv, message):
    code, _, err = run(capsys, "report", *argv)
    assert code == 2 and err.count("\n") == 1
    assert message in err


def test_solve_pd_ratio_json(capsys):
    code, out, _ = run(capsys, "solve", "pd-ratio", "--rate", "50", "--prompt", "2048", "--output", "256",
                       "--ttft", "0.2", "--tpot", "0.05", "--decode-hardware", "H200", "--prefill-tp", "2", "--json")
    assert code == 0
    data = json.loads(out)
    plan = pd_ratio(models.get("llama-3-8b"), 50, 2048, 256, Fraction(1, 5), Fraction(1, 20), "H100_SXM", "H200",
                    {"tensor_parallel": 2}, {"tensor_parallel": 1})
    assert (data["num_prefill"], data["num_decode"], data["decode_batch"]) == (
        plan.num_prefill, plan.num_decode, plan.decode_batch)
    assert data["num_chips"] == 2 * plan.num_prefill + plan.num_decode
    assert data["kv_transfer_bytes"] == 2 * 32 * 8 * 128 * 2 * 2048 // 2  # K, V; layers; KV heads; d; bf16; TP 2
    assert data["latex"].startswith(r"\begin{aligned}") and rf"= {plan.num_prefill} \\" in data["latex"]


def test_solve_pd_ratio_caps_the_decode_batch_at_max_num_seqs(capsys):
    """``--max-num-seqs 100`` (issue 23 review): the decode batch is the cap, not the memory bound
    of 231 (tests/plan/test_disaggregated.py derives both), and the text says which bound binds."""
    argv = ["solve", "pd-ratio", "--rate", "50", "--prompt", "2048", "--output", "256", "--ttft", "0.2",
            "--tpot", "0.05", "--max-num-seqs", "100"]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "decode: batch 100 (max-seqs-bound)" in out
    code, out, _ = run(capsys, *argv, "--json")
    assert json.loads(out)["decode_batch"] == 100 and json.loads(out)["decode_limit"] == "max-seqs"
    code, _, err = run(capsys, "solve", "max-batch", "--max-num-seqs", "4")
    assert code == 2 and "argument --max-num-seqs: only for solve pd-ratio" in err


def test_solve_pd_ratio_with_pipelined_pools(capsys):
    """``--pp 2`` pipelines both pools (issue 20, item 3): the header names each pool's layout,
    the prefill line the slowest stage D_m (the queue's service time, DistServe eq. 2), and the
    JSON carries it; the counts are the library's."""
    argv = ["solve", "pd-ratio", "--model", "llama-3-70b", "--tp", "4", "--pp", "2", "--decode-tp", "8", "--rate", "12",
            "--prompt", "4096", "--output", "512", "--ttft", "0.5", "--tpot", "0.04"]
    from symcost.core.units import format_time

    plan = pd_ratio(models.get("llama-3-70b"), 12, 4096, 512, Fraction(1, 2), Fraction(1, 25),
                    prefill_parallelism={"tensor_parallel": 4, "pipeline_parallel": 2},
                    decode_parallelism={"tensor_parallel": 8, "pipeline_parallel": 2})
    code, out, _ = run(capsys, *argv)
    assert code == 0
    assert "3 prefill (H100_SXM, TP 4 x PP 2) : 1 decode (H100_SXM, TP 8 x PP 2) instances, 40 chips" in out
    # the library's prompt time and its slowest stage, as the CLI prints times (278 and 139 ms)
    assert (f"prefill: {format_time(plan.prefill_time, 3)} per prompt (slowest stage "
            f"{format_time(plan.prefill_stage_time, 3)})") in out
    code, out, _ = run(capsys, *argv, "--json")
    data = json.loads(out)
    assert data["prefill_stage_time_s"] == float(plan.prefill_stage_time) < data["prefill_time_s"]
    assert (data["num_prefill"], data["num_chips"]) == (plan.num_prefill, plan.num_chips) == (3, 40)


@pytest.mark.parametrize("layout, name", [(["--cp", "2"], "TP 8 x CP 2"), (["--sp", "2"], "TP 8 x SP 2"),
                                          (["--sp", "tp"], "TP 8 x SP tp")])
def test_solve_pd_ratio_with_sequence_sharded_pools(capsys, layout, name):
    """Context, Ulysses or Megatron sequence parallelism on both pools (issue 20, item 4): the
    decode pool never prefills, so it is costed (no error about a prefill chunk), as the library."""
    code, out, err = run(capsys, "solve", "pd-ratio", "--model", "llama-3-70b", "--tp", "8", *layout, "--rate", "12",
                         "--prompt", "4096", "--output", "512", "--ttft", "0.5", "--tpot", "0.04", "--json")
    assert code == 0, err
    data = json.loads(out)
    seq = {"--cp": {"context_parallel": 2}, "--sp": {"sequence_parallel": "tp" if layout[1] == "tp" else 2}}[layout[0]]
    par = {"tensor_parallel": 8, **seq}
    plan = pd_ratio(models.get("llama-3-70b"), 12, 4096, 512, Fraction(1, 2), Fraction(1, 25),
                    prefill_parallelism=par, decode_parallelism=par)
    assert (data["num_prefill"], data["num_decode"], data["decode_batch"]) == (
        plan.num_prefill, plan.num_decode, plan.decode_batch)
    code, out, _ = run(capsys, "solve", "pd-ratio", "--model", "llama-3-70b", "--tp", "8", *layout, "--rate", "12",
                       "--prompt", "4096", "--output", "512", "--ttft", "0.5", "--tpot", "0.04")
    assert f"prefill (H100_SXM, {name}) : " in out


@pytest.mark.parametrize("argv, message", [
    (["pd-ratio", "--prompt", "2048", "--output", "256", "--ttft", "1", "--tpot", "0.05"],
     "argument --rate: required for solve pd-ratio"),
    (["pd-ratio", "--rate", "-3", "--prompt", "2048", "--output", "256", "--ttft", "1", "--tpot", "0.05"],
     "argument --rate: expected a positive number, got '-3'"),
    (["pd-ratio", "--rate", "1", "--prompt", "2048", "--output", "256", "--ttft", "0.001", "--tpot", "0.05"],
     "ttft: the target 0.001 s does not exceed one prompt's prefill"),
    (["pd-ratio", "--rate", "1", "--prompt", "2048", "--output", "1", "--ttft", "1", "--tpot", "0.05"],
     "output_len must be at least 2"),
    (["max-batch", "--rate", "5"], "argument --rate: only for solve pd-ratio"),
    (["pd-ratio", "--rate", "1", "--prompt", "2048", "--output", "256", "--ttft", "1", "--tpot", "0.05",
      "--decode-hardware", "nope"], "argument --decode-hardware: unknown chip 'nope'"),
    # Llama-3-8B has 32 heads: TP 3 does not divide them; the line names the option that set it
    (["pd-ratio", "--rate", "1", "--prompt", "2048", "--output", "256", "--ttft", "1", "--tpot", "0.05",
      "--decode-tp", "3"], "argument --decode-tp: num_heads must be divisible by tensor_parallel (got 32 and 3)"),
    (["pd-ratio", "--rate", "1", "--prompt", "2048", "--output", "256", "--ttft", "1", "--tpot", "0.05",
      "--prefill-tp", "3"], "argument --prefill-tp: num_heads must be divisible by tensor_parallel (got 32 and 3)"),
    (["pd-ratio", "--rate", "1", "--prompt", "2048", "--output", "256", "--ttft", "1", "--tpot", "0.05",
      "--tp", "3", "--decode-tp", "2"], "argument --tp: num_heads must be divisible by tensor_parallel (got 32 and 3)"),
])
def test_solve_pd_ratio_bad_input(capsys, argv, message):
    code, _, err = run(capsys, "solve", *argv)
    assert code == 2 and err.count("\n") == 1
    assert message in err


PAGE = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "serving.md"


@pytest.mark.parametrize("title, command", [("Speculative decoding", "$ symcost report --phase decode --spec-k"),
                                            ("Disaggregated serving: the prefill:decode ratio",
                                             "$ symcost solve pd-ratio")])
def test_the_how_to_page_shows_the_commands(title, command):
    """The serving how-to's sections show their commands answering and refusing (tests/test_docs.py
    runs each line and checks every output line shown)."""
    section = PAGE.read_text().split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for block in re.findall(r"```console\n(.*?)```", section, flags=re.S) for line in block.splitlines()]
    assert sum(line.startswith(command) for line in lines) >= 2
    assert any(line.startswith("symcost: error:") for line in lines)
