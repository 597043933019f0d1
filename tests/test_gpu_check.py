"""benchmarks/gpu_check.py --micro: every microbenchmark path runs, tiny, on the CPU (needs torch)."""

import csv
import importlib.util
import pathlib
import subprocess
import sys

import pytest

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
BENCHMARKS = {"gemm", "copy", "gemv", "kernel_eager", "flash_prefill", "flash_decode"}
COLUMNS = ["date", "gpu", "benchmark", "dtype", "params", "seconds", "rate", "rate_unit"]


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_runs_without_symcost_or_a_gpu():
    """--help parses the arguments before importing torch or symcost."""
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True,
                          timeout=60, cwd=SCRIPT.parent)
    assert done.returncode == 0, done.stderr
    assert "--micro" in done.stdout and "--dry-run" in done.stdout


def test_micro_dry_run_writes_every_benchmark(tmp_path, capsys):
    """The dry run times each benchmark at tiny sizes and writes one CSV row per case, with a
    positive time and rate; CUDA graphs, which need a GPU, are skipped with one line."""
    pytest.importorskip("torch")
    out = tmp_path / "micro.csv"
    _load().main(["--micro", "--dry-run", "--out", str(out)])
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == COLUMNS
    assert {r["benchmark"] for r in rows} >= BENCHMARKS
    assert {r["dtype"] for r in rows if r["benchmark"] == "gemm"} >= {"bf16"}
    assert all(float(r["seconds"]) > 0 and float(r["rate"]) > 0 for r in rows)
    assert "skipped kernel_graph: CUDA graphs need a GPU" in capsys.readouterr().out


def test_micro_degrades_when_flash_refuses_grouped_heads(tmp_path, capsys, monkeypatch):
    """A flash kernel that refuses grouped K/V heads: one line says so, and the heads are expanded."""
    torch = pytest.importorskip("torch")
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def refuse_gqa(q, k, v, **kw):
        if k.shape[1] != q.shape[1]:
            raise RuntimeError("No available kernel. Aborting execution.")
        return sdpa(q, k, v, **kw)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", refuse_gqa)
    out = tmp_path / "micro.csv"
    _load().main(["--micro", "--dry-run", "--out", str(out)])
    flash = [r for r in csv.DictReader(out.open()) if r["benchmark"].startswith("flash")]
    assert flash and all(r["params"].endswith("kv_expanded") for r in flash)
    printed = capsys.readouterr().out
    assert "skipped flash decode b=1 kv_len=128 h=4 g=2 d=16 with grouped KV heads (enable_gqa): " \
           "RuntimeError: No available kernel. Aborting execution." in printed
