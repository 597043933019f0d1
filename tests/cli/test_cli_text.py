"""What the command's text output says, line by line: each number where it belongs, in one format
(issue 20 items 16-19)."""

import json
import re
from pathlib import Path

from cli_run import main_run

import symcost as sc

CLI_PAGE = Path(__file__).resolve().parents[2] / "docs" / "reference" / "cli.md"


def _columns(line):
    """A table line's cells: text separated by two or more spaces."""
    return re.split(r"\s{2,}", line.strip())


def test_min_tp_context_line_names_the_degree_it_found(capsys):
    """``solve min-tp`` answers 4-way TP (llama-3-70b, batch 8, 32,768 tokens: TP 1 needs 270 GB,
    TP 2 141 GB, TP 4 77.2 GB of 80 GiB = 85.9 GB); the line under it states the layout it costed, TP 4, and
    the degrees that did not fit -- not the TP 1 the options left at its default."""
    code, out, _ = main_run(capsys, "solve", "min-tp", "--model", "llama-3-70b", "--seq", "32768", "--batch", "8")
    answer, context = out.splitlines()[:2]
    assert code == 0 and answer.endswith(": 4-way TP")
    assert "TP 4, PP 1" in context and "TP 1, PP 1" not in context
    assert "TP 1 and 2 do not fit" in context


def test_hardware_list_has_one_header_per_column(capsys):
    """Every header name stands over one column: as many names as cells in each row."""
    _, out, _ = main_run(capsys, "hardware", "list")
    header, *rows = out.splitlines()
    assert rows and all(len(_columns(row)) == len(_columns(header)) for row in rows), header


def test_sweep_scope_is_the_same_in_the_command_and_the_readme(capsys, tmp_path):
    """The sweep's output states what it covers; the CLI page's description of it says the same."""
    from symcost.cli.sweep import SCOPE

    _, out, _ = main_run(capsys, "sweep", "--batch", "1", "--seq", "1024", "--tp", "1,2", "--cp", "1,2",
                         "--out", str(tmp_path / "g.csv"))
    assert SCOPE in out
    page = CLI_PAGE.read_text()
    line = next(x for x in page.splitlines() if x.startswith("- **sweep**"))
    assert SCOPE in line, line


def test_counts_are_written_with_thousands_separators(capsys):
    """Token counts of 1,000 and more read "8,192", as the prompt length beside them does."""
    _, out, _ = main_run(capsys, "report", "--model", "llama-3-8b", "--seq", "32768", "--prefill-chunk", "8192",
                         "--phase", "prefill")
    assert "prefill in chunks of 8,192 tokens (4 chunks)" in out
    assert "prompt 32,768 tokens" in out
    assert not re.search(r"\b8192 tokens", out)


# -- item 18: the longest context and the trained length ---------------------------------------------


def test_report_states_both_limits_and_which_binds(capsys):
    """llama-3-8b on one H100, batch 1: memory holds 327,894 tokens (Model.max_context: 80 GiB less
    16,060,522,496 bytes of weights = 69,838,823,424, over 131,072 bytes of KV cache plus 81,920 of prefill
    activations per token, 212,992: 327,894.1), the model was trained to 8,192: the trained length binds,
    and the line says so, with both numbers."""
    from symcost import models

    assert models.get("llama-3-8b").max_context("H100_SXM").value == 327894
    _, out, _ = main_run(capsys, "report", "--phase", "decode")
    line = next(x for x in out.splitlines() if x.startswith("longest context"))
    assert line.endswith("): 8,192 tokens, the model's trained length (max_position_embeddings) binds; "
                         "327,894 fit in HBM"), line
    _, out, _ = main_run(capsys, "report", "--phase", "decode", "--json")
    data = json.loads(out)
    assert (data["max_context"], data["max_position_embeddings"], data["longest_context"],
            data["longest_context_binds"]) == (327894, 8192, 8192, "trained length")


def test_report_says_when_memory_binds(capsys):
    """qwen3-8b (trained to 40,960) at batch 64: the KV cache of 64 sequences, 2 x 36 layers x 8 KV
    heads x 128 x 2 bytes = 147,456 bytes per token each, fills HBM long before 40,960 tokens."""
    from symcost import models

    memory = models.get("qwen3-8b").max_context("H100_SXM", batch_size=64).value
    assert memory < 40960
    _, out, _ = main_run(capsys, "report", "--model", "qwen3-8b", "--batch", "64", "--phase", "decode")
    line = next(x for x in out.splitlines() if x.startswith("longest context"))
    assert line.endswith(f"): {memory:,} tokens, HBM binds (the model's trained length is 40,960)"), line


def test_solve_max_seq_len_states_the_trained_length(capsys):
    """llama-3-70b at TP 8: 653,517 tokens fit (test_cli_report's derivation; the figure the README and the CLI
    page show); trained to 8,192."""
    _, out, _ = main_run(capsys, "solve", "max-seq-len", "--model", "llama-3-70b", "--tp", "8")
    assert out.splitlines()[0] == ("max_seq_len for llama-3-70b on H100_SXM: 653,517 tokens fit in HBM; "
                                   "the model's trained length (max_position_embeddings), 8,192 tokens, binds")
    _, out, _ = main_run(capsys, "solve", "max-seq-len", "--model", "llama-3-70b", "--tp", "8", "--json")
    data = json.loads(out)
    assert (data["value"], data["max_position_embeddings"]) == (653517, 8192)


def test_a_sequence_beyond_the_trained_length_is_flagged(capsys):
    """llama-3-70b was trained to 8,192 tokens: a 32,768-token prompt is costed, and the workload
    line says it runs past the trained length; 8,192 itself is not flagged."""
    _, out, _ = main_run(capsys, "report", "--model", "llama-3-70b", "--tp", "8", "--seq", "32768")
    note = "(longer than the model's trained length, 8,192 tokens)"
    lines = [x for x in out.splitlines() if x.startswith(("inference:", "training:"))]
    assert len(lines) == 2 and all(note in x for x in lines), lines
    _, out, _ = main_run(capsys, "report", "--model", "llama-3-70b", "--tp", "8", "--phase", "decode")
    assert "longer than the model's trained length" not in out


# -- item 16: a training layout that does not fit, and one that does ---------------------------------


def test_numbers_of_a_layout_that_does_not_fit_say_so_on_their_line(capsys):
    """llama-3-8b on one H100 (the default report): 8,030,261,248 parameters x (2 bf16 weights + 4 fp32
    gradients + 12 Adam bytes) = 144.5 GB before activations, over 80 GiB (85.9 GB); 183 GB with them
    (tests/cli/test_cli_report.py). The step time and MFU line itself starts by saying the layout does not fit."""
    _, out, _ = main_run(capsys, "report", "--phase", "training")
    line = next(x for x in out.splitlines() if "MFU" in x and "step time" in x)
    assert re.match(r"does not fit \(183 GB per chip of 85\.9 GB HBM\); if it did: step time \d+ ms", line), line
    # dp_comm holds more than the DP sync (the TP sum, the tied embedding's PP all-reduce)
    assert "gradient sync" in line and "DP communication" not in line, line
    data = json.loads(main_run(capsys, "report", "--phase", "training", "--json")[1])
    assert data["training"]["fits"] is False


def test_the_report_adds_the_smallest_training_layout_that_fits(capsys):
    """One chip cannot hold llama-3-8b's training state (144.5 GB, above); two can, at TP 2 (72.3 GB
    of weights, gradients and Adam states per chip) with some activations recomputed. The report
    states the search it ran and the layout it found, with its step time and memory, which fits.
    With block recompute (issue 22: the fewest blocks per stage that fit) the layout keeps most
    blocks' activations, and Megatron SP, which shards them over the TP ranks, leaves room for more
    of them: some of the 32 blocks recomputed, the fewest that fit (N fits, N - 1 does not: the
    library's training step with the layout, checked below). (Under full recomputation alone, SP was not chosen: the
    activations fit either way, and at TP 2 SP sends more per TP block, 3.5 M against the three
    all-reduces' 3 M, docs/conventions.md §12.)"""
    _, out, _ = main_run(capsys, "report", "--phase", "training")
    lines = out.splitlines()
    i = next(i for i, x in enumerate(lines) if x.startswith("smallest training layout that fits"))
    head, step, memory = lines[i:i + 3]
    assert "on H100_SXM" in head and "global batch 1, seq 8,192" in head and "1, 2, 4" in head
    found = re.search(r": 2 chips, TP 2, PP 1, DP 1, SP tp, EP 1, micro-batch 1, recompute full, "
                      r"the first (\d+) blocks of each stage \(block method\), ZeRO stage 0$", head)
    assert found, head
    n = int(found.group(1))
    assert step.strip().startswith("step time ") and "MFU" in step and "does not fit" not in step
    assert memory.strip().startswith("training memory per chip") and memory.endswith("of 85.9 GB HBM: fits")
    data = json.loads(main_run(capsys, "report", "--phase", "training", "--json")[1])
    fit = data["training_that_fits"]
    assert fit["num_chips"] == 2 and fit["parallelism"]["tensor_parallel"] == 2 and fit["fits"] is True
    assert fit["recompute"] == "full" and fit["recompute_layers"] == n and 1 <= n < 32
    model = sc.models.get("llama-3-8b")

    def fits(blocks):
        return model.training_step("H100_SXM", 8192, 1, 1, "bf16", fit["parallelism"], "full", 1, 0,
                                   recompute_layers=blocks).fits
    assert fits(n) and not fits(n - 1)  # the fewest blocks per stage that fit
    assert fit["memory_per_chip"]["total"] <= 80 * 2**30 < data["training"]["memory_per_chip"]["total"]


def test_a_layout_that_fits_gets_no_alternative(capsys):
    """At TP 8 the training state is 144.5 / 8 = 18.1 GB per chip: it fits; nothing is added."""
    _, out, _ = main_run(capsys, "report", "--phase", "training", "--tp", "8")
    assert "smallest training layout" not in out and "does not fit" not in out
    data = json.loads(main_run(capsys, "report", "--phase", "training", "--tp", "8", "--json")[1])
    assert data["training"]["fits"] is True and data["training_that_fits"] is None
