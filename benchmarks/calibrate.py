"""Recompute the efficiency calibration on Narayanan et al. 2021, Table 1, and print the table.

    python benchmarks/calibrate.py        (about 2.5 minutes on 2 cores)
"""

import time

from symcost import calibration


def main() -> None:
    start = time.perf_counter()
    chip, predictions = calibration.calibrate(calibration.load_table())
    print(f"calibrated on A100_SXM_80GB: matmul_efficiency = {chip.matmul_efficiency}, "
          f"network_efficiency = {chip.network_efficiency}, memory_efficiency = {chip.memory_efficiency} "
          f"({time.perf_counter() - start:.0f} s)")
    print("| params (B) | t | p | GPUs | batch | published TFLOP/s | predicted | error | micro-batch | v |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    errors = []
    for p in predictions:
        r = p.row
        errors.append(abs(p.relative_error))
        print(f"| {r.params_billion} | {r.tp} | {r.pp} | {r.gpus} | {r.global_batch} | {r.tflops_per_gpu:.0f} | "
              f"{p.tflops_per_gpu:.1f} | {p.relative_error:+.1%} | {p.micro_batch} | {p.interleave} |")
    print(f"mean |error| {sum(errors) / len(errors):.1%}, max {max(errors):.1%}")


if __name__ == "__main__":
    main()
