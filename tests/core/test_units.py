"""symcost.core.units: numbers with units for display; the expected strings are worked out by hand."""

from fractions import Fraction

import pytest
import sympy as sp

from symcost.core import units as u
from symcost.errors import ConfigError


def test_the_issue_example_time():
    """T = 22948/654296875 s = 3.50729...e-5 s: 35.07 µs at 4 significant digits."""
    assert u.format_time(Fraction(22948, 654296875)) == "35.07 µs"
    assert u.format_time(sp.Rational(22948, 654296875)) == "35.07 µs"


@pytest.mark.parametrize("seconds, text", [
    (3, "3 s"), (Fraction(3, 2), "1.5 s"), (sp.Rational(1, 1000), "1 ms"),
    (Fraction(1, 10**9), "1 ns"), (sp.Integer(0), "0 s"), (0.0, "0 s"),
    (Fraction(99996, 10**8), "1 ms"),           # 999.96 µs rounds to 1000 µs: shown as 1 ms
    (Fraction(9999, 10**7), "999.9 µs"),        # 999.9 µs stays in µs
    (Fraction(1, 3), "333.3 ms"), (-0.25, "-250 ms"), (12345.6, "12,346 s"),
    (Fraction(1, 10**12), "0.001 ns"),           # below the smallest unit: stays in ns
])
def test_format_time(seconds, text):
    assert u.format_time(seconds) == text


@pytest.mark.parametrize("n, binary, text", [
    (0, False, "0 B"), (999, False, "999 B"), (1000, False, "1 kB"),
    (80 * 10**9, False, "80 GB"),
    (80 * 10**9, True, "74.51 GiB"),            # 80e9 / 2^30 = 74.5058...
    (2**30, True, "1 GiB"), (2**30, False, "1.074 GB"),
    (141 * 10**9, False, "141 GB"), (sp.Integer(3 * 10**15), False, "3 PB"),
    (Fraction(1, 2), False, "0.5 B"),           # int4: half a byte per element
])
def test_format_bytes_says_which_unit(n, binary, text):
    assert u.format_bytes(n, binary=binary) == text


def test_format_flops_and_rates():
    # 2*2048*4096*16384*2 = 549,755,813,888 (conventions.md reference point): 549.8 GFLOP
    assert u.format_flops(549_755_813_888) == "549.8 GFLOP"
    assert u.format_flops(sp.Integer(6) * 10**21) == "6,000 EFLOP"
    assert u.format_rate(989_000_000_000_000, "FLOP") == "989 TFLOP/s"
    assert u.format_rate(sp.Integer(4_800_000_000_000), "B") == "4.8 TB/s"
    assert u.format_rate(Fraction(2500, 3), "token") == "833.3 token/s"
    assert u.format_rate(50_000, "token") == "50,000 token/s"


def test_digits_and_percent_and_count():
    assert u.format_time(Fraction(22948, 654296875), digits=3) == "35.1 µs"
    assert u.format_percent(Fraction(1, 3)) == "33.3 %"
    assert u.format_count(7_000_000_000) == "7 billion"


def test_exact_inputs_are_untouched():
    """Formatting reads the value; it neither rounds nor converts the caller's object."""
    x = sp.Rational(22948, 654296875)
    u.format_time(x)
    assert x == sp.Rational(22948, 654296875) and isinstance(x, sp.Rational)
    assert u.to_number(x) == Fraction(22948, 654296875)
    assert u.to_number(sp.sqrt(4)) == 2 and isinstance(u.to_number(sp.sqrt(2)), float)


@pytest.mark.parametrize("bad", [sp.Symbol("b"), "3", True, sp.I])
def test_non_numbers_are_a_config_error(bad):
    with pytest.raises(ConfigError, match="displayed quantity"):
        u.format_time(bad)


def test_no_sympy_at_import():
    """The module is pure Python: importing it (and symcost) loads no SymPy."""
    import subprocess
    import sys

    code = "import sys, symcost.core.units; print('sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
