"""Fixtures shared by the whole suite."""

import shutil
import subprocess

import pytest

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
