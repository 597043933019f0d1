"""Which data-parallel sync phases run every micro-batch (review finding 4): stated by each phase,
not read off the order of its traffic list.

By hand from the ZeRO stages (Rajbhandari et al. 2020; DeepSpeed stage_1_and_2.py reduces "if
partition_gradients or at the boundary"; Meta's Llama 3 FSDP gathers the weights once per step):
ZeRO-0 all-reduces once; ZeRO-1 reduce-scatters once and gathers once; ZeRO-2 reduce-scatters
every micro-batch and gathers once; ZeRO-3 gathers for every forward and every backward and
reduce-scatters every micro-batch."""

import importlib

import pytest

from symcost.plan import training

GROUPS = [(1000, 8, 1)]


@pytest.mark.parametrize("zero_stage, expected", [
    (0, [False]), (1, [False, False]), (2, [True, False]), (3, [True, True])])
def test_each_phase_states_whether_it_runs_every_micro_batch(zero_stage, expected):
    phases = training._sync_phases(GROUPS, e=2, m=4, zero_stage=zero_stage, grad=4)
    assert [p.per_micro_batch for p in phases] == expected
    # every per-micro-batch phase runs m = 4 times per step, the others once
    assert [p.count for p in phases] == [4 if each else 1 for each in expected]


def test_the_no_op_zero_stage_check_is_gone():
    """check_zero_stage refused nothing (a doctest that could not fail): no longer public."""
    assert not hasattr(importlib.import_module("symcost.plan.step"), "check_zero_stage")
    assert not hasattr(training, "check_zero_stage")
