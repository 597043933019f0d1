"""The two ways the CLI tests run ``symcost``: in a fresh interpreter (what a user's shell does,
start-up included) or in this process through ``symcost.cli.main`` (fast; pytest's ``capsys``
captures the output)."""

from __future__ import annotations

import subprocess
import sys


def subprocess_run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``python -m symcost ARGS`` in a fresh interpreter; with ``check`` it must exit 0. The
    timeout is generous: a search takes minutes on a busy 2-core machine."""
    result = subprocess.run([sys.executable, "-m", "symcost", *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def main_run(capsys, *args: str) -> tuple[int, str, str]:
    """``symcost ARGS`` in this process: the exit code, stdout and stderr."""
    from symcost.cli import main

    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err
