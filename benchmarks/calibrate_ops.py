"""Fit the time model's kernel terms on NVIDIA's per-op tables and print the per-op error tables.

    pip install -e '.[calibration]'
    python benchmarks/calibrate_ops.py              fit, compare with the shipped values, print the tables
    python benchmarks/calibrate_ops.py --write      also write the values into hardware/presets and engines
    python benchmarks/calibrate_ops.py --docs       also put the tables into docs/explanation/fidelity.md

The fit is symcost.hardware.fit (aiconfigurator-core's per-op tables: GEMM, attention, NCCL and each
engine's own all-reduce, per GPU and backend version). The tables: the shipped model against every
fitted row and each table's full grid, per family and chip; the model fitted on H100 only against
H200's and B200's rows; collectives and kernel families fitted on one backend version against the
next. A test
(tests/hardware/test_fit.py) checks that the shipped values are what this fit gives and that the
docs page's block is what this script prints.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from symcost.hardware import fit as F
from symcost.hardware.fit import report

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling module readme_blocks
from readme_blocks import page, replace_between

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- per-op-errors:begin (written by python benchmarks/calibrate_ops.py --docs) -->"
END = "<!-- per-op-errors:end -->"


def tables(fits: list[F.ChipFit]) -> str:
    """The docs block: the tables with their headings."""
    return "\n".join([
        f"Per-op tables of {F.tables.PACKAGE} {F.package_version()} (the fitted rows: LLM-shaped subsets, "
        "symcost.hardware.fit.families; ratio = predicted / measured):", "",
        report.error_table(fits), "",
        report.left_out_line(fits), "",
        "Fitted on H100 SXM only, predicting H200 SXM, B200, B300 and GB200 (their datasheet figures and "
        "compute capability, the H100's fitted terms):", "",
        report.generalization_table(fits=fits), "",
        "Collectives fitted on one backend version, predicting the next version's table (H100 SXM):", "",
        report.version_table(), "",
        "Kernel families fitted on one backend version's table, predicting the next version's (every family "
        "with two versions of one backend's tables on H100, attention on B200):", "",
        report.kernel_version_table()])


def write_readme(path: str, block: str) -> None:
    """Replace the text between :data:`BEGIN` and :data:`END` in ``path`` with ``block``."""
    replace_between(path, BEGIN, END, block)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--write", action="store_true", help="write the fitted values into the data files")
    parser.add_argument("--docs", "--readme", dest="readme", action="store_true",
                        help="write the tables into docs/explanation/fidelity.md")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    fits = [F.fit_chip(gpu) for gpu in F.CHIPS]
    print(f"fitted {len(fits)} chips in {time.perf_counter() - start:.0f} s")
    from symcost import hardware

    differ = 0
    for chip_fit in fits:
        chip = hardware.get(chip_fit.preset)
        for name, value in chip_fit.chip_values.items():
            mark = "" if getattr(chip, name) == value else f"   (shipped: {getattr(chip, name)})"
            differ += bool(mark)
            print(f"{chip_fit.preset:14} {name:28} {value}{mark}")
        for engine, values in chip_fit.engine_values().items():
            profiled = chip.with_runtime(engine)
            for name, value in values.items():
                mark = "" if getattr(profiled, name) == value else f"   (shipped: {getattr(profiled, name)})"
                differ += bool(mark)
                print(f"{chip_fit.preset:14} {engine + ':' + name:28} {value}{mark}")
    if args.write:
        for path in F.write(fits):
            print("wrote", os.path.relpath(path, ROOT))
        # NB: the presets are read once per process; the tables need the values just written
        rest = [a for a in argv if a != "--write"]
        return subprocess.call([sys.executable, os.path.abspath(__file__), *rest])
    elif differ:
        print(f"{differ} values differ from the shipped ones (run with --write to ship them)")
    block = tables(fits)
    print()
    print(block)
    if args.readme:
        write_readme(page("per-op-errors"), block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
