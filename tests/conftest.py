"""Fixtures shared by the whole suite, and what it does where an optional package is missing."""

import importlib.util
import re
import shutil
import subprocess
from collections import Counter

import pytest

# The evidence each optional package gives. The test extra installs transformers; torch is
# installed by the command CI and the README run (pip install -e '.[test]' torch==2.13.0).
OPTIONAL_EVIDENCE = {
    "torch": "PyTorch's own counters: FlopCounterMode FLOPs, CommDebugMode collectives, meta-device parameter "
             "counts (pip install torch==2.13.0)",
    "transformers": "transformers' models and config classes: parameter counts and defaults of the HF configs "
                    "(pip install -e '.[test]')",
}


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a None in sys.modules: the package is blocked
        return False


# modules that import torch at the top and hold no test of their own (helpers the torch tests
# import after pytest.importorskip): not collected by --doctest-modules without torch
collect_ignore = [] if _importable("torch") else ["layers/torch_comm.py"]


def pytest_terminal_summary(terminalreporter):
    """One line per optional package a run lacked: how many tests skipped, and what they check."""
    missing: Counter = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        reason = str(report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr)
        found = re.search(r"could not import '([\w.]+)'", reason)
        if found and found.group(1).split(".")[0] in OPTIONAL_EVIDENCE:
            missing[found.group(1).split(".")[0]] += 1
    for package, count in sorted(missing.items()):
        terminalreporter.write_line(f"skipped evidence: {count} tests need {package}: {OPTIONAL_EVIDENCE[package]}")

ARTICLE = "\\documentclass{article}\\usepackage{amsmath}\\begin{document}\n{}\n\\end{document}\n"


@pytest.fixture
def latex_pdf(tmp_path):
    """``compile(tex, wrap=False)``: pdflatex on ``tex`` (a whole document, or with ``wrap`` a body
    put in an amsmath article); asserts it compiles and returns the PDF's path. Skips the test
    when pdflatex is not installed (``.ci/run`` installs it)."""

    def compile_tex(tex: str, wrap: bool = False):
        pdflatex = shutil.which("pdflatex")
        if pdflatex is None:
            pytest.skip("pdflatex not installed (apt: texlive-latex-base texlive-latex-recommended)")
        (tmp_path / "doc.tex").write_text(ARTICLE.replace("{}", tex, 1) if wrap else tex)
        result = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout[-3000:]
        return tmp_path / "doc.pdf"

    return compile_tex
