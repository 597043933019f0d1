"""The examples run and print the numbers they promise."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run(name: str) -> str:
    """The example's output, run against this checkout's symcost (a script's own folder comes first
    on its path, so without PYTHONPATH it would import whichever symcost is installed)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (str(ROOT), os.environ.get("PYTHONPATH")))))
    result = subprocess.run([sys.executable, str(EXAMPLES / name)], capture_output=True, text=True,
                            timeout=120, check=True, env=env)
    return result.stdout


def test_quickstart_prints_the_seed_numbers():
    """The quick start prints the per-chip matmul FLOPs 2 * 2 * 512 * 4096 * 8192."""
    out = run("quickstart.py")
    assert f"{2 * 2 * 512 * 4096 * 8192:,}" in out
    # training, t = 4: 12 b s h f / t = 12 * 8 * 4096 * 4096 * 14336 / 4
    assert f"{12 * 8 * 4096 * 4096 * 14336 // 4:,}" in out


def test_max_context_h100_vs_h200():
    """H200's larger HBM serves a longer context than H100's, for both batch sizes."""
    lines = [line for line in run("max_context.py").splitlines() if "max context" in line]
    assert len(lines) == 4
    context = {(line.split()[0], line.split()[2]): int(line.split("max context")[1].split()[0].replace(",", ""))
               for line in lines}
    assert context[("H200_SXM", "1:")] > context[("H100_SXM", "1:")]
    assert context[("H200_SXM", "8:")] > context[("H100_SXM", "8:")]


def test_decode_roofline_example():
    """At batch 1 every projection of a decode step is memory-bound; the ridge point is
    989.4e12 / 3.35e12 = 295 FLOP/byte."""
    out = run("decode_roofline.py")
    assert "ridge point: 295 FLOP/byte" in out
    batch1 = out.split("batch 1:")[1].split("batch 16:")[0]
    assert "compute-bound" not in batch1 and "memory-bound" in batch1


def test_search_example_prints_a_best_configuration():
    """The Llama-3-70B search names a best configuration whose degrees multiply to 64."""
    out = run("search_llama70b.py")
    best = out.split("best: ")[1]
    degrees = {k: int(best.split(f"{k}=")[1].split()[0]) for k in ("TP", "PP", "DP")}
    sp = best.split("SP=")[1].split()[0]
    assert degrees["TP"] * degrees["PP"] * degrees["DP"] * (1 if sp == "megatron" else int(sp)) == 64


def test_notebook_executes_and_prints_its_numbers():
    """The tour notebook runs top to bottom and prints the numbers it promises: the training
    matmul FLOPs of a gated MLP, 3 * 6 * b * s * h * f / t = 3 * 6 * 8 * 4096 * 4096 * 14336 / 4,
    and the KV-cache-limited context 80 GiB / 4096 bytes per token (the H100 preset's 80 * 2**30 bytes)."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(EXAMPLES / "tour.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(EXAMPLES)}}).execute()
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []))
    assert f"{3 * 6 * 8 * 4096 * 4096 * 14336 // 4} compute" in text
    assert str(80 * 2**30 // 4096) in text
    latex_outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
                     if "text/latex" in out.get("data", {})]
    assert len(latex_outputs) >= 3  # metrics, model and solver result render as LaTeX
    html_outputs = [out["data"]["text/html"] for cell in nb.cells if cell.cell_type == "code"
                    for out in cell.get("outputs", []) if "text/html" in out.get("data", {})]
    assert any("TPOT (one decode step)" in "".join(h) for h in html_outputs)  # the HTML report's summary
    # the rich displays: a step's repr is one short line with units, its HTML a breakdown table,
    # the search's HTML its ranked table; the solver result shows the value, not a floor of it
    reprs = [line for line in text.splitlines() if line.startswith("InferenceStep(")]
    assert reprs and len(reprs[0]) <= 200 and " µs" in reprs[0]
    assert any("<strong>Inference step" in "".join(h) and "time per output token (TPOT)" in "".join(h)
               for h in html_outputs)
    assert any("Parallelism search" in "".join(h) and 'class="chosen"' in "".join(h) for h in html_outputs)
    assert not any("lfloor" in "".join(out["data"]["text/latex"]) for out in latex_outputs)


def test_paper_table_example_compiles(latex_pdf):
    """The paper-table example prints a complete document with one row per seed layer; it
    compiles when pdflatex is installed."""
    out = run("paper_table.py")
    assert out.startswith("\\documentclass") and "\\toprule" in out and "\\bottomrule" in out
    for name in ("MLP", "Gated MLP", "Attention (MHA)", "Attention (GQA)", "LayerNorm"):
        assert name in out
    assert latex_pdf(out).stat().st_size > 1000
