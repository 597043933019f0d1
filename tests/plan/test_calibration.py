"""Fidelity: the calibrated time model against Narayanan et al. 2021, Table 1."""

from fractions import Fraction

import pytest

from symcost import calibration, hardware


def test_table_loads_with_the_papers_flop_count():
    """Ten rows; F for the 1.7B row equals 96 B s l h^2 (1 + s/(6h) + V/(16 l h))."""
    rows = calibration.load_table()
    assert len(rows) == 10
    r = rows[0]
    B, s, l_, h, V = 512, 2048, 24, 2304, 51200
    assert r.paper_flops == 96 * B * s * l_ * h**2 + 96 * B * s * l_ * h**2 * s // (6 * h) + 6 * B * s * h * V


@pytest.mark.parametrize("index", range(10))
def test_in_sample_predictions_within_ten_percent(index):
    """In sample (the efficiencies were fitted on these rows): each row's achieved TFLOP/s per GPU
    is predicted within 10 % (the full table, recomputed by benchmarks/calibrate.py, is on
    docs/explanation/fidelity.md)."""
    row = calibration.load_table()[index]
    prediction = calibration.predict(row, calibration.megatron_a100())
    assert abs(prediction.relative_error) < 0.10


def test_calibration_is_explicit_in_hardware_fields():
    """The calibrated chip differs from the datasheet one only in its efficiency fields."""
    chip = calibration.megatron_a100()
    base = hardware.A100_SXM_80GB
    assert chip.matmul_efficiency == calibration.MEGATRON_A100_EFFICIENCY["matmul"]
    assert {k: v for k, v in chip.to_dict().items() if not k.endswith("efficiency")} == {
        k: v for k, v in base.to_dict().items() if not k.endswith("efficiency")}


def test_in_sample_mean_error_at_most_three_percent():
    """In sample: mean absolute error of the achieved TFLOP/s per GPU at most 3 % over Table 1, the
    rows the efficiencies were fitted on."""
    chip = calibration.megatron_a100()
    errors = [abs(calibration.predict(row, chip).relative_error) for row in calibration.load_table()]
    assert sum(errors) / len(errors) <= 0.03


@pytest.mark.parametrize("half", [0, 1])
def test_held_out_half_mean_error_at_most_three_percent(half):
    """Out of sample (the fidelity page's check): refitted on alternate rows of Table 1, the GEMM efficiency
    is 68/100 (the whole table's 67/100 give or take one step; inside the grid tried, not at its edge),
    and the other half, which the fit never saw, is predicted with a mean absolute error of at most
    3 % (2.2 % and 2.2 %). The grid is the
    shipped one's middle, 63/100 to 71/100, to keep the test short."""
    rows = calibration.load_table()
    grid = tuple(Fraction(k, 100) for k in range(63, 72))
    chip, _ = calibration.calibrate(rows[half::2], matmul=grid)
    assert chip.matmul_efficiency == Fraction(68, 100) and grid[0] < chip.matmul_efficiency < grid[-1]
    held_out = [calibration.predict(row, chip) for row in rows[1 - half::2]]
    errors = [abs(p.relative_error) for p in held_out]
    assert len(errors) == 5 and sum(errors) / len(errors) <= 0.03
