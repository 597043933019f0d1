"""What the command's text output says, line by line: each number where it belongs, in one format
(issue 20 items 16-19)."""

import re
from pathlib import Path

from cli_run import main_run

README = Path(__file__).resolve().parents[2] / "README.md"


def _columns(line):
    """A table line's cells: text separated by two or more spaces."""
    return re.split(r"\s{2,}", line.strip())


def test_min_tp_context_line_names_the_degree_it_found(capsys):
    """``solve min-tp`` answers 4-way TP (llama-3-70b, batch 8, 32,768 tokens: TP 1 needs 270 GB,
    TP 2 141 GB, TP 4 77.2 GB of 80 GB); the line under it states the layout it costed, TP 4, and
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
    """The sweep's output states what it covers; the README's description of it says the same."""
    from symcost.cli.sweep import SCOPE

    _, out, _ = main_run(capsys, "sweep", "--batch", "1", "--seq", "1024", "--tp", "1,2", "--cp", "1,2",
                         "--out", str(tmp_path / "g.csv"))
    assert SCOPE in out
    readme = README.read_text()
    line = next(x for x in readme.splitlines() if x.startswith("- **sweep**"))
    assert SCOPE in line, line


def test_counts_are_written_with_thousands_separators(capsys):
    """Token counts of 1,000 and more read "8,192", as the prompt length beside them does."""
    _, out, _ = main_run(capsys, "report", "--model", "llama-3-8b", "--seq", "32768", "--prefill-chunk", "8192",
                         "--phase", "prefill")
    assert "prefill in chunks of 8,192 tokens (4 chunks)" in out
    assert "prompt 32,768 tokens" in out
    assert not re.search(r"\b8192 tokens", out)
