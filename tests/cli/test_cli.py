"""The symcost command end to end, in a subprocess: every subcommand and bad input."""

import csv
import json

import pytest
from cli_run import main_run
from cli_run import subprocess_run as run

from symcost import hardware, models


def test_default_report_is_llama_3_8b_on_h100():
    """No arguments: the report for llama-3-8b on H100_SXM with all three phases and the max context."""
    out = run().stdout
    assert "llama-3-8b (8,030,261,248 parameters) on H100_SXM" in out
    for phase in ("== prefill ==", "== decode ==", "== training =="):
        assert phase in out
    assert "memory-bound" in out and "compute-bound" in out
    assert "longest context (batch 1" in out


def test_report_json_numbers():
    """--json gives the exact numbers: decode KV cache of llama-3-8b at 8192 keys, batch 2, tp 2:
    2 * 2 * 8192 * (8/2) * 128 * 2 bytes * 32 layers."""
    data = json.loads(run("report", "--json", "--phase", "decode", "--batch", "2", "--tp", "2").stdout)
    kv = data["phases"]["decode"]["total"]["memory_per_chip"]["kv_cache"]
    assert kv == 2 * 2 * 8192 * 4 * 128 * 2 * 32
    assert data["parameters"] == 8_030_261_248
    assert data["max_context"] > 0


def test_solve_subcommands():
    """solve max-seq-len, max-batch and min-tp agree with the library."""
    model = models.get("llama-3-8b")
    data = json.loads(run("solve", "max-seq-len", "--json").stdout)
    assert data["value"] == model.max_context("H100_SXM").value
    data = json.loads(run("solve", "max-batch", "--seq", "8192", "--json").stdout)
    # (80 GiB - 16,060,522,496 bytes of weights) // 1,744,830,464 per sequence = 40 (tests/plan/test_step.py)
    assert data["value"] == model.max_batch_size("H100_SXM", seq_len=8192).value == 40
    data = json.loads(run("solve", "min-tp", "--model", "llama-3-70b", "--seq", "32768", "--batch", "8",
                          "--json").stdout)
    assert data["value"] == 4 and [c["fits"] for c in data["checked"]] == [False, False, True]


def test_sweep_writes_csv(tmp_path):
    """sweep writes one CSV row per grid point."""
    out = tmp_path / "grid.csv"
    run("sweep", "--batch", "1,4", "--seq", "1024,2048,4096", "--tp", "1,2", "--out", str(out))
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * 3 * 2
    assert {r["bound"] for r in rows} <= {"compute", "memory", "communication"}


def test_search_and_lists():
    """search prints a ranked table; hardware and models list the presets."""
    out = run("search", "--chips", "8", "--global-batch", "16", "--seq", "2048", "--top", "3")
    assert "candidates" in out.stdout and "candidates in" in out.stderr
    data = json.loads(run("search", "--chips", "8", "--global-batch", "16", "--seq", "2048", "--json").stdout)
    assert data["num_fit"] > 0 and len(data["rows"]) == 10
    assert "H100_SXM" in run("hardware", "list").stdout
    # the JSON holds every field of the realistic preset, tuples and the engine profile included
    h100 = {r["name"]: r for r in json.loads(run("hardware", "list", "--json").stdout)["hardware"]}["H100_SXM"]
    assert h100["matmul_tile"] == list(hardware.get("H100_SXM").matmul_tile)
    assert h100["runtime"]["step_overhead"] == float(hardware.get("H100_SXM").runtime.step_overhead)
    assert h100["memory_efficiency"] == float(hardware.get("H100_SXM").memory_efficiency)
    names = [m["name"] for m in json.loads(run("models", "list", "--json").stdout)["models"]]
    assert names == models.names()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--dtype", "fp64"], "argument --dtype: invalid choice: 'fp64' (choose from 'fp32'"),
        (["report", "--model", "llama-9"], "argument --model: unknown model 'llama-9' (choose from llama-2-7b"),
        (["report", "--hardware", "h800"], "argument --hardware: unknown chip 'h800' (choose from A100_SXM_80GB"),
        (["report", "--tp", "0"], "argument --tp: expected a positive integer, got 0"),
        (["report", "--tp", "3"], "num_heads must be divisible by tensor_parallel"),
        (["solve", "max-width"], "argument quantity: invalid choice: 'max-width'"),
        (["search", "--chips", "8", "--global-batch", "16", "--min-mfu", "1.5"],
         "argument --min-mfu: expected a fraction in (0, 1], got '1.5'"),
        (["search", "--chips", "8", "--global-batch", "16", "--memory-headroom", "1"],
         "argument --memory-headroom: expected a fraction in [0, 1), got '1'"),
        (["search", "--chips", "8", "--global-batch", "16", "--price-per-hour", "-2"],
         "argument --price-per-hour: expected a positive number, got '-2'"),
        (["search", "--chips", "8", "--global-batch", "16", "--phase", "inference", "--min-mfu", "0.4"],
         "argument --min-mfu: constrains training searches only"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message):
    """Bad options: one line on stderr naming the option and the choices; exit code 2."""
    result = run(*args, check=False)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("symcost: error: ")
    assert message in result.stderr


def test_search_constraints_from_the_command_line():
    """--max-tp, --memory-headroom and --price-per-hour reach the search: every ranked row keeps
    TP <= 2 and memory <= 0.9 x 80 GiB (H100's HBM, 85.9 GB), and cost per token is the price of the 8 chips
    for one second over the tokens of that second: 2.5 * 8 / 3600 / tokens_per_second."""
    data = json.loads(run("search", "--chips", "8", "--global-batch", "16", "--seq", "2048", "--json",
                          "--max-tp", "2", "--memory-headroom", "0.1", "--price-per-hour", "2.5").stdout)
    assert data["rows"]
    for row in data["rows"]:
        assert row["tp"] <= 2 and row["memory_per_chip"] <= 0.9 * 80 * 2**30
        assert row["cost_per_token"] == pytest.approx(2.5 * 8 / 3600 / row["tokens_per_second"], rel=1e-12)


def test_help_everywhere():
    """--help works for the command and every subcommand."""
    for sub in ([], ["report"], ["solve"], ["sweep"], ["search"], ["latex"], ["hardware", "list"], ["models", "list"]):
        assert "usage:" in run(*sub, "--help").stdout


def test_plot_options_write_images(tmp_path):
    """--plot writes the roofline (report) and memory-vs-context (solve) charts."""
    pytest.importorskip("matplotlib")
    roof, mem = tmp_path / "roof.png", tmp_path / "mem.svg"
    run("report", "--phase", "decode", "--plot", str(roof))
    run("solve", "max-seq-len", "--plot", str(mem))
    assert roof.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and roof.stat().st_size > 1000
    assert b"<svg" in mem.read_bytes()[:500]


def test_latex_subcommand_standalone():
    """latex --standalone prints a complete document with the layer's formulas; bad notation is
    one line, exit 2."""
    out = run("latex", "--layer", "gqa", "--notation", "scaling-book", "--standalone").stdout
    assert out.startswith("\\documentclass") and "\\end{document}" in out and "\\begin{align*}" in out
    body = run("latex", "--model", "llama-3-8b").stdout
    assert "\\documentclass" not in body and "8030261248" in body.replace(",", "").replace("{,}", "")
    bad = run("latex", "--layer", "gqa", "--notation", "greek", check=False)
    assert bad.returncode == 2 and "notation" in bad.stderr


def test_a_known_chip_whose_preset_is_broken_says_so(capsys, tmp_path, monkeypatch):
    """Presets are read on first use, so a broken preset file's error comes from ``hardware.get``:
    the command says what is wrong with the file in one line, not "unknown chip" for a chip it lists
    (review of serve-cli, item 1). H200's file with a memory efficiency of 3/2 (a fraction at most 1)."""
    import json

    from symcost.hardware import presets

    source = json.loads(presets._FOLDER.joinpath("h200-sxm.json").read_text(encoding="utf-8"))
    source["fields"]["memory_efficiency"]["value"] = "3/2"
    broken = tmp_path / "h200-sxm.json"
    broken.write_text(json.dumps(source), encoding="utf-8")
    chips = presets.PRESETS
    assert isinstance(chips, presets.Presets)
    monkeypatch.setattr(presets, "_FOLDER", tmp_path)
    monkeypatch.setattr(chips, "_chips", {})   # nothing read yet: H200's file is read now, from tmp_path
    code, out, err = main_run(capsys, "report", "--hardware", "h200")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1, err
    assert "unknown chip" not in err and "h200-sxm.json" in err and "memory_efficiency" in err, err
