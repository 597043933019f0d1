"""``import symcost`` and the command's parser load no SymPy; every documented name still loads on use.

Each check runs in a fresh interpreter (``sys.modules`` of this one already holds SymPy)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import symcost as sc
from symcost.cli.common import DTYPES
from symcost.core.dtypes import DataType


def _run(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, check=True)
    return done.stdout.strip()


def test_parser_help_and_argument_errors_import_no_sympy():
    out = _run("""
        import contextlib, io, sys
        from symcost.cli import build_parser, main
        build_parser()
        print('sympy' in sys.modules)
        with contextlib.redirect_stderr(io.StringIO()):
            print(main(['report', '--tp', 'x']), main(['sweep', '--dtype', 'fp7']), main(['--nope']))
        print('sympy' in sys.modules)
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                main(['--help'])
            except SystemExit as done:
                print(done.code, file=sys.stderr)
        print('sympy' in sys.modules)
    """)
    assert out.split("\n") == ["False", "2 2 2", "False", "False"]


def test_import_symcost_is_light_and_names_load_on_use():
    out = _run("""
        import sys
        import symcost as sc
        print('sympy' in sys.modules, 'symcost.hardware' in sys.modules)
        print(sc.MLPLayer.__module__, 'sympy' in sys.modules)
        import symcost.core.sweep
        print(callable(sc.sweep), sc.sweep is sys.modules['symcost.core.sweep'].sweep)
        print('symcost.report.latex' in sys.modules, sc.latex.__name__)
    """)
    assert out.split("\n") == ["False False", "symcost.layers.mlp True", "True True",
                                "False symcost.report.latex"]


def test_layers_find_the_chips_without_importing_symcost_hardware():
    """``symcost.hardware`` registers the time model; it is imported when a layer first needs it."""
    out = _run("""
        import sys
        from symcost.layers import MLPLayer
        print('symcost.hardware' in sys.modules)
        m = MLPLayer(hidden_size=8, intermediate_size=16).compute_metrics(
            batch_size=1, seq_len=4, phase='prefill', dtype='bf16', hardware='h100')
        print('symcost.hardware' in sys.modules, bool(m.latency > 0))
    """)
    assert out.split("\n") == ["False", "True True"]


def test_every_public_name_resolves_in_a_fresh_interpreter():
    """Each name of ``__all__`` loads on first use (PEP 562), and ``__all__`` is exactly what the
    package declares for the type checker (its ``if TYPE_CHECKING:`` block, read from the source),
    where it also declares subpackages (some public, as `hardware`)."""
    out = _run("""
        import symcost
        missing = [n for n in symcost.__all__ if getattr(symcost, n, None) is None]
        print(missing)
    """)
    assert out == "[]"
    import ast

    tree = ast.parse(open(sc.__file__, encoding="utf-8").read())
    block = next(n for n in tree.body if isinstance(n, ast.If) and getattr(n.test, "id", "") == "TYPE_CHECKING")
    declared = {alias.asname or alias.name for node in block.body for alias in node.names}
    subpackages = {n for n in declared if (Path(sc.__file__).parent / n / "__init__.py").exists()}
    assert declared - subpackages <= set(sc.__all__) <= declared


def test_cli_dtype_choices_are_the_data_types():
    assert DTYPES == [d.value for d in DataType]


def test_cli_model_names_are_the_presets_and_a_bad_one_loads_no_sympy():
    from symcost import models
    from symcost.cli.common import _preset_key, model_names

    assert model_names() == models.names()
    for spelling in ("Llama-3-8B", "llama_3_8b", " mixtral-8x7b "):
        assert _preset_key(spelling) in model_names()
        assert models.get(spelling) is models.get(_preset_key(spelling))
    out = _run("""
        import contextlib, io, sys
        from symcost.cli import main
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(['report', '--model', 'nope'])
        print(code, 'sympy' in sys.modules, 'choose from llama-2-7b' in err.getvalue())
    """)
    assert out == "2 False True"


def test_cli_chip_names_are_the_presets_and_a_bad_one_loads_no_sympy():
    """The command answers an unknown ``--hardware`` from ``hardware/presets`` (index and files)
    without SymPy, and accepts exactly the spellings :func:`symcost.hardware.get` accepts."""
    from symcost import hardware
    from symcost.cli.common import hardware_names, known_chip

    assert hardware_names()[0] == hardware.names()
    spellings = ["H100_SXM", "h100", "H100-SXM5", " tpu-v5e ", "trillium", "a100:ideal", "B200 (ideal)",
                 "mi300x-ideal", "h800", "Z9000", "h100-real", "ideal", "v5", ""]
    for name in spellings:
        try:
            hardware.get(name)
            known = True
        except ValueError:
            known = False
        assert known_chip(name) is known, name
    out = _run("""
        import contextlib, io, sys
        from symcost.cli import main
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            commands = (['report'], ['search', '--chips', '8', '--global-batch', '8'])
            codes = [main([*cmd, '--hardware', 'h800']) for cmd in commands]
        lines = err.getvalue().splitlines()
        print(codes, 'sympy' in sys.modules, len(lines), all("unknown chip 'h800' (choose from A100_SXM_80GB" in x
                                                             for x in lines))
    """)
    assert out == "[2, 2] False 2 True"


def test_the_command_runs_openblas_at_one_thread_unless_told(monkeypatch):
    """``run`` (the console script, ``python -m symcost``) sets ``OPENBLAS_NUM_THREADS`` to 1 where
    the environment does not set it (OpenBLAS reads it once, when NumPy loads), keeps a user's
    value, and ``main`` (a caller's own process) leaves the environment alone."""
    import os

    from symcost import cli

    cli_main = sys.modules["symcost.cli.main"]  # the module (``symcost.cli.main`` is the function)

    seen = []
    monkeypatch.setattr(cli_main, "main", lambda argv=None: seen.append(os.environ.get("OPENBLAS_NUM_THREADS")) or 0)
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    assert cli.run() == 0
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    assert cli.run() == 0
    assert seen == ["1", "4"]


def test_python_m_symcost_loads_numpy_with_one_openblas_thread():
    """``python -m symcost`` goes through ``run``: when ``run`` calls ``main`` the process has
    ``OPENBLAS_NUM_THREADS=1`` and NumPy is not loaded yet (OpenBLAS reads the variable when NumPy
    loads, so a value set after that would change nothing)."""
    out = _run("""
        import os, runpy, sys, contextlib, io
        os.environ.pop('OPENBLAS_NUM_THREADS', None)
        import importlib
        cli_main = importlib.import_module('symcost.cli.main')  # the module (symcost.cli.main is the function)
        seen, real = [], cli_main.main

        def spy(argv=None):
            seen.append(('numpy' in sys.modules, os.environ.get('OPENBLAS_NUM_THREADS')))
            return real(argv)
        cli_main.main = spy
        sys.argv = ['symcost', 'models']
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                runpy.run_module('symcost', run_name='__main__')
            except SystemExit:
                pass
        print(seen)
    """)
    assert out == "[(False, '1')]"
