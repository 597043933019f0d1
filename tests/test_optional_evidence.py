"""The suite runs with what the test extra installs (issue 21, item 7): the cross-checks against
PyTorch and transformers are collected only where their package imports, and a run says which
evidence it skipped. Checked in a fresh interpreter where ``import torch`` and ``import
transformers`` fail (a sitecustomize puts ``None`` in their ``sys.modules`` slots)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _pytest_without(tmp_path, *args):
    (tmp_path / "sitecustomize.py").write_text(
        "import sys\nsys.modules['torch'] = None\nsys.modules['transformers'] = None\n")
    env = {"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)


def test_collection_needs_neither_torch_nor_transformers(tmp_path):
    """--doctest-modules imports every module under tests/: none may need torch to import."""
    result = _pytest_without(tmp_path, "--collect-only", "-q", "tests/layers", "tests/models")
    assert result.returncode == 0, result.stdout[-2000:]
    assert "error" not in result.stdout.lower().split("collected")[-1]


def test_a_run_says_which_evidence_it_skipped(tmp_path):
    """One summary line per missing package, with the count of tests it skipped."""
    result = _pytest_without(tmp_path, "-q", "tests/layers/test_torch_flops.py", "tests/models/test_hf_defaults.py")
    assert result.returncode == 0, result.stdout[-2000:]
    lines = [line for line in result.stdout.splitlines() if line.startswith("skipped evidence:")]
    assert any("torch" in line and "FlopCounterMode" in line for line in lines), result.stdout[-2000:]
