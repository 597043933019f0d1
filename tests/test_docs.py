"""The documentation site (``docs/``, built by MkDocs from ``mkdocs.yml``): every example on every
page runs, each ``##`` section on its own, and the site builds with warnings as errors.

What runs, per page and per ``##`` section (a fresh namespace and a fresh scratch folder each, so
no section leans on a name or a file another one made; the tutorial's steps are sections):

- ``pycon`` blocks: doctest, with the suite's option ``NORMALIZE_WHITESPACE``;
- ``console`` blocks: each ``$ symcost ...`` line runs in this process, and every output line the
  page shows appears in the real output (``...`` stands for any text; exit code 2 where a line
  shown is ``symcost: error: ...``; ``--json`` output parses);
- a block with a ``title="NAME"`` (a chip file, a ``config.json``) is written to the scratch folder
  as ``NAME`` before the section's examples run, so they read it as a user's file.

Every other fence is output or a picture of the layout (``text``), or an install command
(``bash``, ``pip install`` only); any other language is refused, so no example goes untested.
README.md's console blocks are checked the same way (its ``pycon`` blocks are pytest's doctests,
``--doctest-glob=README.md``)."""

from __future__ import annotations

import argparse
import contextlib
import doctest
import importlib
import importlib.util
import io
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import sympy

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
FENCE = re.compile(r'^```(\w*)(?:\s+title="([^"]+)")?\s*\n(.*?)^```\s*$', flags=re.S | re.M)
LANGUAGES = {"pycon", "console", "text", "bash", "yaml", "json"}
OPTIONAL = ("dask", "pandas", "matplotlib")
"""Extras a section may import: where one is missing, that section skips (the test extra has them)."""


def _name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def sections(path: Path) -> list[tuple[str, int, str]]:
    """``(title, first line, text)`` of each ``##`` section of ``path`` (the text before the first
    ``##`` is the section named after the page's ``#`` title); headings inside fences are text."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    found, start, title, fenced = [], 0, "(top)", False
    for i, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("## "):
            found.append((title, start, "".join(lines[start:i])))
            start, title = i, line[3:].strip()
    found.append((title, start, "".join(lines[start:])))
    return [s for s in found if "```" in s[2]]


def blocks(text: str) -> list[tuple[str, str | None, str]]:
    """``(language, title, body)`` of each fenced block of ``text``."""
    return [(m.group(1), m.group(2), m.group(3)) for m in FENCE.finditer(text)]


def _cases(paths, language):
    """A case per section of ``paths`` holding a block in ``language``."""
    return [pytest.param(path, title, line, text, id=f"{_name(path)}::{title}")
            for path in paths for title, line, text in sections(path)
            if any(lang == language for lang, _, _ in blocks(text))]


def _write_files(text: str, folder: Path) -> None:
    """The section's titled blocks, written as the files they name."""
    for _, title, body in blocks(text):
        if title is not None:
            (folder / title).write_text(body, encoding="utf-8")


# -- Python: doctest per section ------------------------------------------------------------------


def pycon_only(text: str) -> str:
    """``text`` with every line outside a ``pycon`` fence blanked (fence lines too), so doctest
    sees only the examples and reports the page's own line numbers."""
    kept, language = [], None
    for line in text.split("\n"):
        if line.startswith("```"):
            language = None if language is not None else (line[3:].split() or [""])[0]
            kept.append("")
        else:
            kept.append(line if language == "pycon" else "")
    return "\n".join(kept)


@pytest.mark.parametrize("path, title, line, text", _cases(PAGES, "pycon"))
def test_pycon_examples_run(path, title, line, text, tmp_path, monkeypatch):
    """The section's ``pycon`` blocks, as one doctest in a fresh namespace (run in a scratch
    folder that holds the section's titled files)."""
    source = pycon_only(text)
    for package in OPTIONAL:
        if re.search(rf"^>>> (import|from) {package}\b", source, flags=re.M):
            pytest.importorskip(package)
    _write_files(text, tmp_path)
    monkeypatch.chdir(tmp_path)
    test = doctest.DocTestParser().get_doctest(source, {"__name__": "__docs__"}, f"{_name(path)}::{title}",
                                               str(path), line)
    report = io.StringIO()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=report.write)
    assert runner.failures == 0, report.getvalue()


# -- the command line: console sessions per section -----------------------------------------------


def sessions(text: str) -> list[tuple[str, list[str]]]:
    """``(command, expected lines)`` of each ``$ symcost ...`` line in the ``console`` blocks."""
    found: list[tuple[str, list[str]]] = []
    for language, _, body in blocks(text):
        if language != "console":
            continue
        current = None
        for line in body.splitlines():
            if line.startswith("$ "):
                assert line.startswith("$ symcost "), f"a console line that is not symcost: {line!r}"
                current = (line[2:], [])
                found.append(current)
            elif current is not None and line.strip() and line.strip() != "...":
                current[1].append(line)
    return found


def run_symcost(argv: list[str]) -> tuple[int, str]:
    """``symcost ARGV`` in this process: the exit code and stdout + stderr."""
    from symcost.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:  # argparse's own errors
            code = exit_.code if isinstance(exit_.code, int) else 1
    return code, out.getvalue() + "\n" + err.getvalue()


def check_session(command: str, expected: list[str]) -> None:
    """One ``$ symcost ...`` line: it exits as the page implies and prints every line shown, each a
    whole output line (``...`` stands for any text within it; leading and trailing blanks aside)."""
    argv = shlex.split(command)[1:]
    code, output = run_symcost(argv)
    failing = any(line.startswith("symcost: error:") for line in expected)
    assert code == (2 if failing else 0), f"{command}: exit code {code}\n{output}"
    if "--json" in argv:
        json.loads(output.split("\n\n", 1)[0] if not failing else "{}")
    for line in expected:
        pattern = r"^\s*" + ".*".join(re.escape(part) for part in line.strip().split("...")) + r"\s*$"
        assert re.search(pattern, output, flags=re.M), f"{command}: {line!r} is no line of\n{output}"


@pytest.mark.parametrize("path, title, line, text", _cases([*PAGES, ROOT / "README.md"], "console"))
def test_console_examples_print_what_the_page_shows(path, title, line, text, tmp_path, monkeypatch):
    """Every ``$ symcost ...`` line of the section runs (in a scratch folder holding the section's
    titled files) and prints each output line the page shows."""
    found = sessions(text)
    assert found, "a console block without a $ symcost line"
    _write_files(text, tmp_path)
    monkeypatch.chdir(tmp_path)
    for command, expected in found:
        check_session(command, expected)


@pytest.mark.parametrize("path", [*PAGES, ROOT / "README.md"], ids=_name)
def test_every_block_is_run_or_is_output(path):
    """A fence is ``pycon`` or ``console`` (run above), ``text`` (output, a tree), a titled file
    (``yaml``/``json``, read by the section's examples) or a ``pip install`` (``bash``): nothing a
    reader could paste goes untested."""
    text = path.read_text(encoding="utf-8")
    assert text.count("```") % 2 == 0, "an unclosed fence"
    found = blocks(text)
    assert len(found) == text.count("```") // 2, "a fence the checker does not read (indented or with options)"
    for language, title, body in found:
        assert language in LANGUAGES, f"a {language or 'plain'!r} block: use pycon, console or text"
        if language in ("yaml", "json"):
            assert title is not None, f"a {language} block without title=\"FILE\": nothing reads it"
        if language == "bash":
            assert all(line.startswith("pip install") for line in body.splitlines() if line.strip()), body


def test_the_checker_reads_sections_and_sessions():
    """The splitter on a made-up page: sections by ``##`` (not inside fences), sessions by ``$``."""
    page = ("# T\n\nintro\n\n## One\n\n```console\n$ symcost hardware list\nH100_SXM ...\n...\n```\n\n"
            "## Two\n\n```text\n## not a heading\n```\n\n```pycon\n>>> 1 + 1\n2\n\n```\n")
    path = ROOT / "tests" / "_made_up_page.md"
    try:
        path.write_text(page, encoding="utf-8")
        found = sections(path)
    finally:
        path.unlink()
    assert [(t, n) for t, n, _ in found] == [("One", 4), ("Two", 12)]          # 0-based lines
    assert pycon_only(found[1][2]).split("\n")[7:9] == [">>> 1 + 1", "2"]
    assert sessions(found[0][2]) == [("symcost hardware list", ["H100_SXM ..."])]
    assert [b[0] for b in blocks(found[1][2])] == ["text", "pycon"]


# -- the build -------------------------------------------------------------------------------------


def test_site_builds_with_warnings_as_errors(tmp_path):
    """``mkdocs build --strict``: every page, link, anchor and API entry resolves (the ``docs``
    extra installs MkDocs, Material and mkdocstrings; the ``test`` extra includes it)."""
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None:
        pytest.skip("mkdocs and mkdocstrings not installed (pip install -e '.[docs]')")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                            cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "cli" / "index.html").is_file()


# -- the reference covers the public API -----------------------------------------------------------

PUBLIC = ["symcost", "symcost.hardware", "symcost.layers", "symcost.models", "symcost.errors",
          "symcost.core.symbols", "symcost.core.units", "symcost.analysis.solve", "symcost.plan.search",
          "symcost.plan.step", "symcost.plan.calibration", "symcost.report.latex", "symcost.report.plots",
          "symcost.testing", "symcost.plan.serving"]
"""The public surfaces: ``symcost`` and every package or namespace with an ``__all__`` people import
from (``sc.hardware``, ``sc.symbols``, ``symcost.plan.serving``, ...)."""


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _resolve(dotted: str):
    """The object at ``dotted`` (``symcost.layers.mlp.MLPLayer``): the longest importable module,
    then attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for part in parts[cut:]:
            obj = getattr(obj, part)
        return obj
    raise ImportError(dotted)


def _entries() -> list[str]:
    return [m.group(1) for page in sorted((DOCS / "reference").glob("*.md"))
            for m in re.finditer(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), flags=re.M)]


def test_every_public_name_has_a_reference_entry():
    """Each name of ``symcost.__all__`` and of every public package's ``__all__`` is documented in
    ``docs/reference/``: an mkdocstrings entry (``::: dotted.path``) for that very object, or, for
    the canonical symbols and the preset chips, a row of the tables the site generates from them."""
    hooks = _hooks()
    documented = {id(_resolve(entry)) for entry in _entries()}
    generated = {id(getattr(importlib.import_module("symcost.core.symbols"), n)) for n in hooks.symbol_names()}
    generated |= {id(chip) for chip in importlib.import_module("symcost.hardware").PRESETS.values()}
    missing = []
    for module_name in PUBLIC:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if id(obj) not in documented | generated:
                missing.append(f"{module_name}.{name}")
    assert missing == []


def test_reference_entries_name_real_objects():
    """Every ``:::`` entry resolves (mkdocstrings would fail the build too; this says which)."""
    entries = _entries()
    assert len(entries) >= 100
    for entry in entries:
        _resolve(entry)


def test_generated_cli_and_symbol_pages_are_complete():
    """The CLI page is generated from the argparse parser (every subcommand and its options), the
    symbol table from ``symcost.core.symbols`` (every name of ``__all__``)."""
    from symcost.cli.main import build_parser

    hooks = _hooks()
    cli = hooks.cli_reference()
    parser = build_parser()
    commands = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)][0]
    for name, sub in commands.choices.items():
        assert f"## symcost {name}" in cli, name
        for action in sub._actions:
            for option in action.option_strings:
                assert option in cli, (name, option)
    table = hooks.symbol_table()
    symbols = importlib.import_module("symcost.core.symbols")
    names = [name for name in symbols.__all__ if isinstance(getattr(symbols, name), sympy.Symbol)]
    assert len(names) >= 60
    for name in names:
        assert f"`{name}`" in table, name
