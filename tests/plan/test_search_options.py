"""SearchOptions refuses values that would cost nothing or a wrong layout (review finding: ZeRO
stage 5 was costed as some stage, a training objective 'foo' and max_micro_batch 0 passed
silently)."""

import pytest

from symcost.errors import ConfigError
from symcost.plan.search import SearchOptions


@pytest.mark.parametrize("field, value, message", [
    ("zero_stages", (5,), "zero_stages must be ZeRO stages 0 to 3, got 5"),
    ("zero_stages", (), "zero_stages must name at least one stage"),
    ("objective", "foo", "objective must be 'tpot' or 'ttft', got 'foo'"),
    ("max_micro_batch", 0, "max_micro_batch must be a whole number of at least 1, got 0"),
    ("max_interleave", -1, "max_interleave must be a whole number of at least 1, got -1"),
    ("min_mfu", 2.0, "min_mfu must be above 0 and at most 1, got 2.0"),
    ("min_mfu", 0, "min_mfu must be above 0 and at most 1, got 0"),
    ("max_tp", 0, "max_tp must be a whole number of at least 1, got 0"),
])
def test_bad_options_are_one_line(field, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        SearchOptions(**{field: value})
    with pytest.raises(ConfigError):
        SearchOptions.of(None, {field: value})


def test_the_defaults_and_edges_are_accepted():
    SearchOptions()
    SearchOptions(zero_stages=(0, 3), min_mfu=1, max_micro_batch=1, max_interleave=1, max_tp=1, objective="ttft")
