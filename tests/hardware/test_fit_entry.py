"""The per-op fit's data-file entries (symcost.hardware.fit._entry): exact decimals in the unit the
parameter table gives, and one line for a name or a unit the table does not list. Needs no
calibration extra."""

from fractions import Fraction

import pytest
import sympy as sp

from symcost.errors import ConfigError, SymcostError
from symcost.hardware import fit
from symcost.hardware.fit import families


def test_an_entry_is_written_in_its_parameters_unit():
    """gemm_time is kept in seconds, written in microseconds: 27/10^7 s = 2.7 us; an efficiency
    (unit 1) has no unit: 827/1000 = 0.827."""
    assert fit._entry("gemm_time", Fraction(27, 10**7), "src") == {"value": "2.7", "unit": "us", "source": "src"}
    assert fit._entry("matmul_efficiency", Fraction(827, 1000), "src") == {"value": "0.827", "source": "src"}


@pytest.mark.parametrize("unit", [Fraction(10**3), Fraction(1, 10**3)])
def test_a_unit_the_table_does_not_list_is_one_line(monkeypatch, unit):
    """Review finding: a parameter in a unit the entry table does not list raised a bare KeyError
    (10^3), or was labelled microseconds whatever it was (any unit below 1: 10^-3 s written as us)."""
    table = dict(families.PARAMETERS, odd_time=(sp.Symbol("t_odd", nonnegative=True), unit, 0.0, 1.0))
    monkeypatch.setattr(families, "PARAMETERS", table)
    with pytest.raises(ConfigError, match=r"^odd_time: .*unit") as err:
        fit._entry("odd_time", Fraction(1, 10**3), "src")
    assert "\n" not in str(err.value)


def test_a_name_the_table_does_not_list_is_one_line():
    with pytest.raises(SymcostError, match=r"^no_such_term: .*fitted parameter"):
        fit._entry("no_such_term", Fraction(1), "src")


def test_a_value_the_fit_pushed_to_its_bound_is_written_as_zero():
    """Merge finding: GB200's vLLM per-peer latency was fitted to its bound 0 and shipped as
    "0.000000000000000225" us. Below a thousandth of its unit (1 ns) a value is 0; above it three
    significant digits, exactly: 0.0123456 us -> 0.0123 us = 123/10^10 s."""
    from fractions import Fraction

    from symcost.hardware.fit.families import _round

    us = Fraction(1, 10**6)
    assert _round(2.25e-16, us) == 0
    assert _round(0.0123456, us) == Fraction(123, 10**10)
    assert _round(16.24, us) == Fraction(162, 10**7)
