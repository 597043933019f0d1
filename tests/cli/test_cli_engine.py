"""``--engine NAME``: the report, solve, search, sweep and serving commands cost the chip under an
engine profile (symcost.hardware.engines), named in the report's header; a bad name is one line."""

import json

import pytest
from cli_run import main_run

from symcost import models


def test_report_under_an_engine_profile_equals_the_library(capsys):
    """llama-3-8b decode at TP 8 under tensorrt-llm (its own all-reduce) is the library's step on
    H100_SXM.with_runtime("tensorrt-llm"), and faster than under NCCL alone (the neutral default):
    its small TP all-reduces take ~3 us instead of NCCL's ~15 us."""
    code, out, _ = main_run(capsys, "report", "--tp", "8", "--phase", "decode", "--engine", "tensorrt-llm", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["engine"] == "tensorrt-llm (1.3.0rc20)"
    model = models.get("llama-3-8b")
    trt = model.inference_step(_chip("tensorrt-llm"), 1, 8192, parallelism={"tensor_parallel": 8})
    neutral = model.inference_step("H100_SXM", 1, 8192, parallelism={"tensor_parallel": 8})
    assert data["inference"]["tpot_s"] == pytest.approx(float(trt.tpot), rel=1e-12)
    assert float(trt.tpot) < float(neutral.tpot)
    code, out, _ = main_run(capsys, "report", "--tp", "8", "--phase", "decode", "--engine", "tensorrt-llm")
    assert "engine tensorrt-llm (1.3.0rc20)" in out.splitlines()[0]


def _chip(engine):
    from symcost import hardware

    return hardware.get("H100_SXM").with_runtime(engine)


@pytest.mark.parametrize("command", [["report"], ["solve", "max-batch", "--seq", "4096"]])
def test_unknown_engine_is_one_line(capsys, command):
    code, _, err = main_run(capsys, *command, "--engine", "tgi")
    assert code == 2 and err.count("\n") == 1
    assert "argument --engine: unknown engine profile 'tgi'" in err and "tensorrt-llm" in err
