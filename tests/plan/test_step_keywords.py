"""The steps' keywords are checked (issue: ``training_step(stage_layers=5)`` raised a raw
TypeError): a bare number for ``stage_layers``, or a string for a switch (``"no"`` is truthy, so
``dp_overlap="no"`` would have turned the overlap on) is one line naming the field and the rule."""

import numpy as np
import pytest

from symcost import models
from symcost.errors import ConfigError

LLAMA = models.get("llama-3-8b")


def _training(**kw):
    return LLAMA.training_step("H100_SXM", 4096, 8, **kw)


def _inference(**kw):
    return LLAMA.inference_step("H100_SXM", 1, 4096, **kw)


@pytest.mark.parametrize("step", [_training, _inference])
@pytest.mark.parametrize("value, pp", [(5, 1), (5, 2), (32, 1), ("ab", 2), (16.0, 2)])
def test_stage_layers_must_be_a_sequence_of_ints(step, value, pp):
    with pytest.raises(ConfigError, match=r"stage_layers must be a sequence of ints, one per pipeline stage "
                                          rf"\(e\.g\. \[16, 16\]\), got {value!r}") as err:
        step(stage_layers=value, parallelism={"pipeline_parallel": pp})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("field", ["overlap", "dp_overlap", "grad_reduce_in_fp32", "pp_overlap", "exact"])
def test_a_training_switch_must_be_a_bool(field):
    with pytest.raises(ConfigError, match=f"{field} must be True or False, got 'no'") as err:
        _training(**{field: "no"})
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("field", ["overlap", "exact"])
def test_an_inference_switch_must_be_a_bool(field):
    with pytest.raises(ConfigError, match=f"{field} must be True or False, got 'no'"):
        _inference(**{field: "no"})


def test_numpy_bools_and_sequences_still_work():
    """A NumPy bool (a search table's column) is a bool; a list or tuple of stage sizes is a split."""
    a = _training(dp_overlap=np.False_, parallelism={"pipeline_parallel": 2}, stage_layers=[16, 16])
    b = _training(dp_overlap=False, parallelism={"pipeline_parallel": 2}, stage_layers=(16, 16))
    assert a.step_time == b.step_time and a.stage_layers == (16, 16)
