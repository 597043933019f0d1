"""benchmarks/run.py --docs: the benchmark block of docs/explanation/performance.md is one run's
output, replaced whole.

Only the writer runs here (the benchmark itself takes minutes and is never a timed test)."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load():
    spec = importlib.util.spec_from_file_location("benchmarks_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_block_is_replaced_and_the_rest_kept(tmp_path):
    run = _load()
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{run.README_BEGIN}\nold figures\n{run.README_END}\n\nafter\n")
    run.write_readme(str(readme), "machine: X\nratio 0.03 [target <= 0.05: met]\n", "python benchmarks/run.py",
                     today="2026-11-29")
    text = readme.read_text()
    assert "old figures" not in text and text.startswith("# Title\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert text.count("`python benchmarks/run.py` on 2026-11-29, one run (") == 1
    assert "\n\n```text\nmachine: X\nratio 0.03 [target <= 0.05: met]\n```\n" in text
    run.write_readme(str(readme), "machine: Y\n", "python benchmarks/run.py --quick", today="2026-11-30")
    again = readme.read_text()
    assert "machine: X" not in again and "machine: Y" in again and again.count(run.README_BEGIN) == 1


def test_a_readme_without_the_markers_is_refused(tmp_path):
    run = _load()
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    with pytest.raises(SystemExit, match="benchmarks:begin"):
        run.write_readme(str(readme), "x", "python benchmarks/run.py")
    assert readme.read_text() == "# no markers\n"


def test_the_docs_page_holds_one_block_with_the_machine_named():
    run = _load()
    assert run.page("benchmarks") == str(ROOT / "docs" / "explanation" / "performance.md")
    text = pathlib.Path(run.page("benchmarks")).read_text(encoding="utf-8")
    assert text.count(run.README_BEGIN) == 1 and text.count(run.README_END) == 1
    block = text.split(run.README_BEGIN)[1].split(run.README_END)[0]
    # written by a run: it names the machine and the commit, and prints every verdict
    assert "\nmachine: " in block and " cores, load average " in block and "symcost at " in block
    assert "[target" in block


def test_the_run_without_bytecode_reads_no_pyc(tmp_path):
    """benchmarks/run.py (8)'s run "with no bytecode": a process under its environment compiles
    from source every Python module it imports that is not frozen into the interpreter. ``python
    -v`` names each ``.pyc`` it reads ("matches"); none may show, while a plain run reads the ones
    it wrote under ``tmp_path/warm`` (its ``PYTHONPYCACHEPREFIX``, warmed first as an installed
    package has its bytecode)."""
    import os
    import subprocess
    import sys

    run = _load()
    code = "import json, decimal, fractions"
    warm = {**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path / "warm")}
    warm.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-c", code], env=warm, check=True)  # the .pyc files exist now

    def read(env):
        out = subprocess.run([sys.executable, "-v", "-c", code], env=env, check=True, capture_output=True, text=True)
        return [line for line in out.stderr.splitlines() if " matches " in line]

    assert any("decimal" in line for line in read(warm))  # the check sees a read
    empty = tmp_path / "empty"
    empty.mkdir()
    assert read(run.no_bytecode(warm, str(empty))) == []
    assert not any(empty.iterdir())  # nothing written either
