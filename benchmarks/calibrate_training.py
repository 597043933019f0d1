"""Predict the published Megatron-Core training runs and print the validation tables of docs/explanation/fidelity.md.

    python benchmarks/calibrate_training.py             fit, compare with the shipped value, print the tables
    python benchmarks/calibrate_training.py --write     also write the fitted value into the megatron-core profile
    python benchmarks/calibrate_training.py --docs      also put the tables into docs/explanation/fidelity.md

The runs are symcost/data/training_calibration.csv (Megatron-Bridge performance summaries: Llama 3
and Qwen3 MoE on DGX-H100 and DGX-B200); each is predicted by symcost.plan.calibration_training with
Model.training_step on the realistic chip under the megatron-core engine profile and the run's own
settings (its MoE release settings from symcost/data/training_calibration_settings.csv); the profile's
fitted terms (moe_sync_time, tp_overlap_efficiency) are fitted here (a2a_overlap_efficiency is the
profile's, from a published A/B). A test
(tests/plan/test_calibration_training.py) checks that the shipped value is the fit's and that the
docs page's block is what this script prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from symcost.plan import calibration_training

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # the sibling module readme_blocks
from readme_blocks import page, replace_between

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- training-validation:begin (written by python benchmarks/calibrate_training.py --docs) -->"
END = "<!-- training-validation:end -->"


def write_readme(path: str, block: str) -> None:
    """Replace the text between :data:`BEGIN` and :data:`END` in ``path`` with ``block``."""
    replace_between(path, BEGIN, END, block)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--docs", "--readme", dest="readme", action="store_true",
                        help="write the tables into docs/explanation/fidelity.md")
    parser.add_argument("--write", action="store_true", help="write the fitted value into the engine profile")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = calibration_training.fit()
    shipped = calibration_training.shipped()
    for name, value in result.values.items():
        mark = "" if shipped[name] == value else f"   (shipped: {shipped[name]})"
        print(f"{calibration_training.shown(name, value)}{mark}")
    if args.write:
        print("wrote", calibration_training.write_profile(result))
        # NB: the profiles are read once per process; the tables need the value just written
        import subprocess
        rest = [a for a in argv if a != "--write"]
        return subprocess.call([sys.executable, os.path.abspath(__file__), *rest])
    block = calibration_training.validation_table()
    print(f"predicted {len(calibration_training.load_rows())} runs in {time.perf_counter() - start:.0f} s\n")
    print(block)
    if args.readme:
        write_readme(page("training-validation"), block)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
