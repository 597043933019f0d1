"""The symbol table's assumptions agree with what the chip fields accept (review finding: the
custom all-reduce latencies were declared positive while their fields accept 0, so a chip at 0
bound a symbol assumed never 0)."""

import pytest

from symcost import hardware
from symcost.core.symbols import TABLE
from symcost.errors import SymcostError


def test_a_symbol_assumed_positive_has_a_field_that_refuses_zero():
    chip = hardware.get("H100_SXM").with_runtime("vllm")
    checked = []
    for name in sorted(set(type(chip).model_fields) & set(TABLE)):
        try:
            chip.with_efficiency(**{name: 0})
        except (SymcostError, ValueError, TypeError):
            continue  # the field refuses 0: a positive symbol is right
        checked.append(name)
        assert not TABLE[name].symbol.is_positive, f"{name} accepts 0 but its symbol is assumed positive"
    assert {"custom_allreduce_latency", "custom_allreduce_two_shot_latency", "collective_latency", "nvls_latency",
            "scale_out_latency", "tree_latency"} <= set(checked)


@pytest.mark.parametrize("name", ["custom_allreduce_latency", "custom_allreduce_two_shot_latency",
                                  # review finding: the hop latencies were assumed positive (a chip at 0
                                  # isolates the bandwidth terms, as the timing tests' chips do)
                                  "collective_latency", "nvls_latency", "scale_out_latency", "tree_latency"])
def test_the_latencies_a_chip_may_set_to_zero_are_nonnegative(name):
    assert TABLE[name].symbol.is_nonnegative and TABLE[name].symbol.is_positive is None
