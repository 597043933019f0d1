"""Refit the time model's efficiency parameters on the shipped measurements and print the tables.

    python benchmarks/calibrate.py              inference fit (~1 min) + training table at the shipped value
    python benchmarks/calibrate.py --refit-training   also refit Megatron's GEMM efficiency (~8 min on 2 cores)

Inference: symcost.plan.calibration_inference.fit() on symcost/data/inference_calibration.csv, the
validation tables of docs/explanation/fidelity.md (per row, per regime, leave-one-source-out).
Training: Narayanan et al. 2021, Table 1 (symcost/data/narayanan2021_table1.csv) on the realistic
A100 with the Megatron GEMM efficiency. The fitted values must equal the shipped defaults
(tests/plan/test_calibration_inference.py checks the inference fit on every run).
"""

import sys
import time

from symcost.plan import calibration, calibration_inference


def inference() -> None:
    start = time.perf_counter()
    fit = calibration_inference.fit()
    print(f"inference fit ({time.perf_counter() - start:.0f} s): "
          + ", ".join(f"{k} = {v}" for k, v in fit.values.items()))
    print(calibration_inference.validation_table(fit))


def training(refit: bool) -> None:
    start = time.perf_counter()
    rows = calibration.load_table()
    if refit:
        chip, predictions = calibration.calibrate(rows)
    else:
        chip = calibration.megatron_a100()
        predictions = [calibration.predict(r, chip) for r in rows]
    print(f"\ntraining on {chip.name}: matmul_efficiency = {chip.matmul_efficiency}, "
          f"network_efficiency = {chip.network_efficiency} ({time.perf_counter() - start:.0f} s)")
    print("| params (B) | t | p | GPUs | batch | published TFLOP/s | predicted | error | micro-batch | v |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    errors = []
    for p in predictions:
        r = p.row
        errors.append(p.relative_error)
        print(f"| {r.params_billion} | {r.tp} | {r.pp} | {r.gpus} | {r.global_batch} | {r.tflops_per_gpu:.0f} | "
              f"{p.tflops_per_gpu:.1f} | {p.relative_error:+.1%} | {p.micro_batch} | {p.interleave} |")
    print(f"mean |error| {sum(map(abs, errors)) / len(errors):.1%}, mean signed {sum(errors) / len(errors):+.1%}, "
          f"max {max(map(abs, errors)):.1%}")


if __name__ == "__main__":
    inference()
    training("--refit-training" in sys.argv)
