"""The report built on the training and inference steps, chunked prefill, and the command's errors
(issue 8 items 2, 9 and 11), plus what the CLI reference page (docs/reference/cli.md) shows: its
examples run in tests/test_docs.py, and the key numbers derived here stand in them."""

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from symcost import hardware, models
from symcost.cli import main
from symcost.core.ops import VECTOR_FLOPS

CLI_PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "cli.md"

# llama-3-8b (Meta's model card / config.json): h 4096, 32 heads, 8 KV heads, d 128, f 14336,
# 32 layers, vocabulary 128256; llama-3-70b: h 8192, 64 heads, 8 KV heads, f 28672, 80 layers.
N_8B = 8_030_261_248
H100_HBM = 80 * 10**9  # NVIDIA H100 SXM datasheet: 80 GB


def run(*args, check=True, cwd=None):
    """``symcost ARGS`` in this process (``symcost.cli.main``, which ``python -m symcost`` and the
    console script reach through ``symcost.cli.run``: ``run`` sets NumPy's OpenBLAS threads and
    calls ``main``; here without a fresh interpreter per call, so the suite stays fast); stdout,
    stderr and the exit code."""
    out, err, here = io.StringIO(), io.StringIO(), os.getcwd()
    try:
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(here)
    result = SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    if check:
        assert result.returncode == 0, result.stderr
    return result


def report_json(*args):
    return json.loads(run("report", "--json", *args).stdout)


# -- item 2: the report is the steps' -------------------------------------------------------------


def test_report_applies_tensor_and_pipeline_parallelism():
    """llama-3-70b TP 2, PP 4, decode: the fullest stage holds 20 blocks and the LM head.

    By hand, parameters per chip: a block has Q, O 2*8192*8192 = 134,217,728, K, V
    2*8192*1024 = 16,777,216 and the MLP 3*8192*28672 = 704,643,072, sharded 2 ways:
    427,819,008, plus two replicated RMSNorms 16,384: 427,835,392; 20 blocks 8,556,707,840.
    The last stage adds the LM head 128256*8192/2 = 525,336,576 and the final norm 8,192:
    9,082,052,608 parameters, 18,164,105,216 bytes in bf16 (the first stage, embedding instead
    of head and norm, has 8,192 fewer). Not 70.6 GB (TP 2 without PP), not 17.6 GB (an average).
    KV cache: 20 layers * 2 * 8192 keys * (8/2) heads * 128 * 2 bytes = 335,544,320.
    """
    data = report_json("--model", "llama-3-70b", "--tp", "2", "--pp", "4", "--phase", "decode")
    memory = data["inference"]["memory_per_chip"]
    assert memory["weights"] == 18_164_105_216
    assert memory["kv_cache"] == 2 * 8192 * 4 * 128 * 2 * 20 == 335_544_320
    assert data["num_chips"] == 8 and data["parallelism"]["pipeline_parallel"] == 4
    assert data["inference"]["fits"] is True
    text = run("report", "--model", "llama-3-70b", "--tp", "2", "--pp", "4", "--phase", "decode").stdout
    assert "weights 18.2 GB" in text and "70.6 GB" not in text


def test_report_longest_context_uses_the_parallelism():
    """llama-3-8b TP 8: the report's longest context is solve max-seq-len's.

    By hand: weights per chip: a block's sharded parameters (2*4096^2 + 2*4096*1024 +
    3*4096*14336)/8 = 27,262,976 plus norms 8,192, times 32 = 872,677,376; embedding and LM
    head 128256*4096/8 = 65,667,072 each; final norm 4,096: 1,004,015,616 parameters,
    2,008,031,232 bytes. Per token: KV cache 32 * 2 * 1 head * 128 * 2 = 16,384 bytes; the
    prefill activation peak is a block's residual (4096*2 = 8,192) plus its MLP's input, output,
    gate and up (2*4096*2 + 2*1792*2 = 23,552): 31,744 bytes. (80 GiB = 85,899,345,920 - 2,008,031,232)
    / 48,128 = 1,743,087.5, so 1,743,087 tokens (not 327,894, the TP 1 figure).
    """
    data = report_json("--tp", "8", "--phase", "decode")
    assert data["max_context"] == 1_743_087
    solved = json.loads(run("solve", "max-seq-len", "--tp", "8", "--json").stdout)
    assert solved["value"] == data["max_context"]
    text = run("report", "--tp", "8", "--phase", "decode").stdout
    assert "1,743,087 fit in HBM" in text and "327,894" not in text


def test_report_training_memory_has_every_component():
    """llama-3-8b training on one H100 (micro-batch 1, 8192 tokens, ZeRO stage 1 on 1 rank):
    bf16 weights 2 bytes, fp32 gradients 4, Adam's fp32 master weights and moments 12 per
    parameter: 18 * 8,030,261,248 = 144.5 GB before any activation, so it does not fit
    (training_step: 183.3 GB with activations; the old report said 62.4 GB of 80 GB; 190.8 GB before
    the fused SwiGLU stopped saving its output, 2*s*f bytes x 32 layers = 2 x 8192 x 14336 x 32 =
    7.52 GB less; Transformer Engine's fused cross-entropy keeps its logit gradient in the logits'
    bf16, in place (cross_entropy.py: grad_dtype = X_block.dtype), 2 bytes per logit: an fp32
    gradient would add 2 x 8192 x 128256 = 2.10 GB, 185.4 GB)."""
    data = report_json("--phase", "training")
    train = data["training"]
    memory = train["memory_per_chip"]
    assert memory["weights"] == 2 * N_8B
    assert memory["gradients"] == 4 * N_8B
    assert memory["optimizer_states"] == 12 * N_8B
    assert memory["total"] == memory["weights"] + memory["gradients"] + memory["optimizer_states"] \
        + memory["activations"]
    assert round(memory["total"] / 1e9, 1) == 183.3 and train["fits"] is False
    step = models.get("llama-3-8b").training_step("H100_SXM", 8192, 1, 1)
    assert memory["total"] == step.memory_per_chip and train["step_time_s"] == pytest.approx(float(step.step_time))
    text = run("report", "--phase", "training").stdout
    assert "does not fit" in text and "gradients 32.1 GB" in text and "optimizer states 96.4 GB" in text
    assert "62.4 GB" not in text


def test_report_training_options_apply():
    """--dp 4 --zero-stage 3 shards weights, gradients and optimizer states 4 ways (ZeRO-3):
    (2 + 4 + 12) * N / 4 bytes of states; the global batch defaults to micro-batch 1 x DP 4 x
    one micro-batch per stage (PP 1) = 4; --recompute full keeps only each block's input."""
    data = report_json("--phase", "training", "--dp", "4", "--zero-stage", "3")
    memory = data["training"]["memory_per_chip"]
    assert (memory["weights"], memory["gradients"], memory["optimizer_states"]) == (
        2 * N_8B / 4, 4 * N_8B / 4, 12 * N_8B / 4)
    assert data["training"]["global_batch"] == 4 and data["training"]["zero_stage"] == 3
    full = report_json("--phase", "training", "--recompute", "full")["training"]["memory_per_chip"]
    none = report_json("--phase", "training")["training"]["memory_per_chip"]
    assert full["activations"] < none["activations"]


def test_report_states_its_assumptions():
    """Text and JSON state the micro-batch, recompute, ZeRO stage, prefill chunking and the MFU
    definition."""
    data = report_json()
    assumptions = data["assumptions"]
    for key in ("micro_batch", "global_batch", "recompute", "zero_stage", "prefill_chunk", "mfu_definition"):
        assert key in assumptions, key
    assert assumptions["prefill_chunk"] is None and "matmul FLOPs" in assumptions["mfu_definition"]
    assert {"ttft_s", "tpot_s", "tokens_per_second", "memory_per_chip", "fits"} <= set(data["inference"])
    assert {"step_time_s", "mfu", "tokens_per_second", "memory_per_chip", "fits"} <= set(data["training"])
    text = run().stdout
    for phrase in ("micro-batch 1", "recompute none", "ZeRO stage 1", "prefill unchunked", "MFU", "TTFT",
                   "TPOT", "tokens/s"):
        assert phrase in text, phrase


# -- item 9: chunked prefill ------------------------------------------------------------------------

# llama-3-70b, TP 8, H100 (80e9 bytes), batch 1, by hand:
# weights per chip: blocks (855,654,400 - 16,384)/8 + 16,384 = 106,971,136 parameters, x 80 =
# 8,557,690,880; embedding and LM head 128256*8192/8 = 131,334,144 each; final norm 8,192:
# 8,820,367,360 parameters = 17,640,734,720 bytes; 68,258,611,200 bytes left of 80 GiB (85,899,345,920).
# KV cache per token: 80 layers * 2 * 1 head * 128 * 2 bytes = 40,960.
# Activation peak per prompt token (the block's residual 8192*2 plus the MLP's input, output,
# gate and up: 2*8192*2 + 2*3584*2): 16,384 + 47,104 = 63,488 bytes.
LEFT_70B_TP8 = 80 * 2**30 - 17_640_734_720  # 80 GiB less the weights: 68,258,611,200 bytes
KV_70B_TP8, ACT_70B_TP8 = 40_960, 63_488


def test_unchunked_context_limit_is_the_prefill_activations():
    """Unchunked: 68,258,611,200 / (40,960 + 63,488) = 653,517.3 tokens."""
    model = models.get("llama-3-70b")
    r = model.max_context("H100_SXM", parallelism={"tensor_parallel": 8})
    assert r.value == LEFT_70B_TP8 // (KV_70B_TP8 + ACT_70B_TP8) == 653_517


def test_chunked_prefill_context_limit():
    """Chunks of 8192 tokens: the activations are one chunk's, 63,488 * 8192 = 520,093,696 bytes;
    (68,258,611,200 - 520,093,696) / 40,960 = 1,653,772.4, so 1,653,772 tokens, just under the
    KV-cache-only limit 68,258,611,200 / 40,960 = 1,666,470."""
    model = models.get("llama-3-70b")
    r = model.max_context("H100_SXM", parallelism={"tensor_parallel": 8}, prefill_chunk=8192)
    assert r.value == (LEFT_70B_TP8 - ACT_70B_TP8 * 8192) // KV_70B_TP8 == 1_653_772
    assert r.value < LEFT_70B_TP8 // KV_70B_TP8 == 1_666_470
    # a chunk longer than what fits unchunked: the answer is the unchunked one
    big = model.max_context("H100_SXM", parallelism={"tensor_parallel": 8}, prefill_chunk=10**6)
    assert big.value == 653_517


def test_chunked_prefill_max_batch():
    """At 32,768 tokens, per sequence: KV 40,960 * 32,768 = 1,342,177,280 bytes plus a chunk of
    2048 tokens' activations 63,488 * 2048 = 130,023,424: 68,258,611,200 / 1,472,200,704 = 46.4
    -> 46 sequences; unchunked 68,258,611,200 / (104,448 * 32,768) = 19.9 -> 19."""
    model = models.get("llama-3-70b")
    par = {"tensor_parallel": 8}
    assert model.max_batch_size("H100_SXM", 32768, parallelism=par).value == 19
    assert model.max_batch_size("H100_SXM", 32768, parallelism=par, prefill_chunk=2048).value == 46


def test_chunked_prefill_memory_and_chunks():
    """A 10,000-token prompt in chunks of 4096: 3 chunks (4096, 4096, 1808); activations of one
    chunk 63,488 * 4096; the KV cache holds all 10,000 tokens. A chunk at least as long as the
    prompt is the unchunked step."""
    model = models.get("llama-3-70b")
    par = {"tensor_parallel": 8}
    step = model.inference_step("H100_SXM", 1, 10_000, parallelism=par, prefill_chunk=4096)
    assert step.num_prefill_chunks == 3 and step.prefill_chunk == 4096
    assert step.activation_memory == ACT_70B_TP8 * 4096
    assert step.kv_cache_memory == KV_70B_TP8 * 10_000
    assert step.memory_per_chip == 17_640_734_720 + KV_70B_TP8 * 10_000 + ACT_70B_TP8 * 4096
    whole = model.inference_step("H100_SXM", 1, 10_000, parallelism=par)
    same = model.inference_step("H100_SXM", 1, 10_000, parallelism=par, prefill_chunk=10_000)
    assert (same.ttft, same.memory_per_chip, same.tpot) == (whole.ttft, whole.memory_per_chip, whole.tpot)
    assert whole.num_prefill_chunks == 1 and whole.prefill_chunk is None
    # later chunks attend to the earlier chunks' keys too: more than three separate prefills
    alone = {n: model.inference_step("H100_SXM", 1, n, parallelism=par) for n in (4096, 1808)}
    lm_head = {name: m for name, _, m in alone[4096].prefill_rows}["lm_head"].latency
    assert step.ttft > 2 * alone[4096].ttft + alone[1808].ttft - 2 * lm_head
    # NB: not more than the unchunked prefill, which (causal=False, docs/conventions.md §3) scores all
    # 10,000^2 (query, key) pairs; the chunks score 4096*4096 + 4096*8192 + 1808*10000 per head


def test_chunked_ttft_is_the_sum_of_the_chunks():
    """llama-3-8b, batch 1, 32,768 tokens in 4 chunks of 8192: each chunk costs what an 8192-token
    prefill costs, except that chunk i (0-based) attends to i*8192 earlier keys too, and only the
    last chunk computes logits. The extra (query, key) pairs per head and layer are
    8192 * 8192 * (0 + 1 + 2 + 3) = 6 * 8192^2: matmul FLOPs 4 * 32 heads * 128 * 6 * 8192^2
    and softmax vector FLOPs 5 * 32 * 6 * 8192^2 per layer, 32 layers; the attention core stays
    compute-bound (it reads at most 2 * 8 * 32768 * 128 * 2 bytes of K and V per layer).
    A roofline derivation, so on the ideal chip (docs/conventions.md §17): no kernel time, no
    attention efficiency, no engine step overhead."""
    model = models.get("llama-3-8b")
    chip = hardware.get("H100_SXM").ideal()
    C = 8192
    chunked = model.inference_step(chip, 1, 4 * C, prefill_chunk=C)
    one = model.inference_step(chip, 1, C)
    lm_head = {name: m for name, _, m in one.prefill_rows}["lm_head"].latency
    pairs = 6 * C * C
    extra = 32 * (4 * 32 * 128 * pairs / chip.effective_peak("bf16") + VECTOR_FLOPS["softmax"] * 32 * pairs
                  / chip.vector_flops)
    assert chunked.ttft == 4 * one.ttft - 3 * lm_head + extra
    assert chunked.num_prefill_chunks == 4


def test_chunked_prefill_with_a_symbolic_batch():
    """A symbolic batch size: the chunked TTFT is an expression in b that equals the numeric step at
    b = 2; the activations are b times one sequence's chunk (llama-3-8b, TP 1: a block's residual 2h
    plus its MLP's input and output 4h and gate and up 4f bytes per token, 81,920 * 8192)."""
    import sympy as sp

    from symcost import symbols as S

    model = models.get("llama-3-8b")
    sym = model.inference_step("H100_SXM", None, 20_000, prefill_chunk=8192)
    num = model.inference_step("H100_SXM", 2, 20_000, prefill_chunk=8192)
    assert sp.sympify(sym.ttft).xreplace({S.batch_size: 2}) == sp.sympify(num.ttft)
    assert sp.expand(sym.activation_memory - (2 * 4096 + 4 * 4096 + 4 * 14336) * 8192 * S.batch_size) == 0
    assert sym.num_prefill_chunks == num.num_prefill_chunks == 3


def test_chunked_prefill_bad_input():
    """A non-positive chunk, eager attention (vLLM and SGLang chunk with flash kernels only) and a
    symbolic prompt length with a chunk are one-line errors naming the rule."""
    model = models.get("llama-3-8b")
    with pytest.raises(ValueError, match="prefill_chunk must be positive"):
        model.inference_step("H100_SXM", 1, 8192, prefill_chunk=0)
    with pytest.raises(ValueError, match="prefill_chunk.*flash"):
        models.get("gpt3-175b").inference_step("H100_SXM", 1, 4096, parallelism={"tensor_parallel": 8},
                                               prefill_chunk=1024)
    bad = run("report", "--prefill-chunk", "0", check=False)
    assert bad.returncode == 2 and "argument --prefill-chunk" in bad.stderr and bad.stderr.count("\n") == 1


def test_cli_prefill_chunk_is_applied_and_stated():
    """--prefill-chunk reaches the report's context limit and the solver, and every output says it."""
    args = ("--model", "llama-3-70b", "--tp", "8", "--prefill-chunk", "8192")
    data = report_json(*args, "--phase", "decode")
    assert data["max_context"] == 1_653_772 and data["assumptions"]["prefill_chunk"] == 8192
    text = run("report", *args, "--phase", "decode").stdout
    assert "1,653,772 fit in HBM" in text and "prefill in chunks of 8,192 tokens" in text
    solved = run("solve", "max-seq-len", *args)
    assert "1,653,772 tokens" in solved.stdout and "chunks of 8,192" in solved.stdout
    data = json.loads(run("solve", "max-batch", "--seq", "32768", "--model", "llama-3-70b", "--tp", "8",
                          "--prefill-chunk", "2048", "--json").stdout)
    assert data["value"] == 46 and data["prefill_chunk"] == 2048
    plain = json.loads(run("solve", "max-seq-len", "--model", "llama-3-70b", "--tp", "8", "--json").stdout)
    assert plain["value"] == 653_517 and plain["prefill_chunk"] is None


# -- item 11: errors are one line, nothing crashes --------------------------------------------------


def _one_line_exit_2(result, *needles):
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("symcost: error: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["sweep", "--out", "/nonexistent/dir/x.csv"], ["argument --out", "/nonexistent/dir"]),
        (["report", "--phase", "decode", "--plot", "/nonexistent/r.png"], ["argument --plot", "/nonexistent"]),
        (["report", "--phase", "decode", "--plot", "r.jpg"], ["argument --plot", ".png or .svg or .pdf"]),
        (["sweep", "--tp", "3", "--out", "x.csv"], ["argument --tp", "num_heads must be divisible by tensor_parallel"]),
        (["report", "--zero-stage", "4"], ["argument --zero-stage"]),
        (["report", "--recompute", "some"], ["argument --recompute"]),
    ],
)
def test_errors_are_one_line(args, needles, tmp_path):
    """Bad paths, bad degrees and bad choices: one line naming the option, exit code 2."""
    _one_line_exit_2(run(*args, check=False, cwd=tmp_path), *needles)


def test_config_error_names_the_key(tmp_path):
    """A config whose num_key_value_heads (5) does not divide num_attention_heads (32): one line
    naming both keys, exit code 2 (not pydantic's three-line dump)."""
    config = {"model_type": "llama", "hidden_size": 4096, "num_attention_heads": 32, "num_hidden_layers": 2,
              "vocab_size": 32000, "intermediate_size": 11008, "num_key_value_heads": 5}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    _one_line_exit_2(run("report", "--model", str(path), check=False), "argument --model", "num_key_value_heads")


def test_broken_pipe_is_quiet():
    """`symcost hardware list --json | head`: the reader goes away; no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "symcost", "hardware", "list", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before anything is written
    err = proc.stderr.read().decode()
    proc.wait(timeout=120)
    proc.stderr.close()
    assert err == "" and proc.returncode != 0


def test_latex_json():
    """latex --json, as every subcommand: the LaTeX text and what it shows."""
    data = json.loads(run("latex", "--layer", "gqa", "--standalone", "--json").stdout)
    assert data["latex"].startswith("\\documentclass") and data["standalone"] is True
    assert data["layer"] == "gqa" and data["phase"] == "training" and data["notation"] == "megatron"


def test_plots_as_pdf_svg_and_for_the_inference_search(tmp_path):
    """Plots by extension: .pdf and .svg too; search --phase inference --plot writes its chart."""
    pytest.importorskip("matplotlib")
    pdf, svg = tmp_path / "r.pdf", tmp_path / "m.svg"
    run("report", "--phase", "decode", "--plot", str(pdf))
    assert pdf.read_bytes()[:5] == b"%PDF-"
    run("solve", "max-seq-len", "--plot", str(svg))
    assert b"<svg" in svg.read_bytes()[:500]
    png = tmp_path / "s.png"
    out = run("search", "--chips", "2", "--global-batch", "2", "--phase", "inference", "--plot", str(png)).stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"written to {png}" in out


# -- the CLI reference page shows these numbers --------------------------------------------------


def _page_sessions():
    """``(command, expected lines)`` for each ``$ symcost ...`` line of the CLI page's examples
    (the part before its first ``##``); ``...`` in an expected line matches anything."""
    section = CLI_PAGE.read_text().split("\n## ", 1)[0]
    sessions, current = [], None
    for block in re.findall(r"```console\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ symcost"):
                current = (line[2:], [])
                sessions.append(current)
            elif current is not None and line.strip() and line.strip() != "...":
                current[1].append(line)
        current = None
    return sessions


def test_cli_page_examples_show_the_numbers_derived_above():
    """The CLI page's examples (run, and checked line by line, by tests/test_docs.py) show the key
    numbers the tests above derive by hand."""
    sessions = _page_sessions()
    assert len(sessions) >= 6
    shown = "\n".join(line for _, lines in sessions for line in lines)
    for number in ("18.2 GB", "1,743,087", "1,653,772", "653,517", "does not fit"):
        assert number in shown, number
