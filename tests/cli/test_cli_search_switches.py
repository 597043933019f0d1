"""``symcost search`` takes the search's training switches (SearchOptions: dp_overlap, pp_overlap,
grad_reduce_in_fp32, expert_tensor_parallel; issue 22): each flag reaches the library's search,
and a bad value is one line naming the flag."""

import json

import pytest
from cli_run import main_run as run

from symcost import models
from symcost.plan import search

DENSE = {"model_type": "llama", "hidden_size": 256, "num_attention_heads": 8, "num_key_value_heads": 4,
         "num_hidden_layers": 4, "vocab_size": 1024, "intermediate_size": 512}
MOE = {"model_type": "mixtral", "hidden_size": 256, "num_attention_heads": 8, "num_key_value_heads": 4,
       "num_hidden_layers": 2, "vocab_size": 1024, "intermediate_size": 512, "num_local_experts": 4,
       "num_experts_per_tok": 2}
JOB = ["--chips", "8", "--global-batch", "16", "--seq", "1024", "--top", "50", "--json"]


def _config(tmp_path, data, name):
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(data))
    return str(path)


def _library(path, **switches):
    table = search.parallelism(models.from_hf_config(path), "H100_SXM", 8, 16, 1024, **switches)
    return table.rows(50)


@pytest.mark.parametrize("flags, switches", [
    (["--dp-overlap", "off"], {"dp_overlap": False}),
    (["--pp-overlap", "off", "--grad-reduce-in-fp32", "off"], {"pp_overlap": False, "grad_reduce_in_fp32": False}),
    (["--dp-overlap", "on"], {}),
])
def test_the_switches_reach_the_search(capsys, tmp_path, flags, switches):
    """The rows (layouts and step times) are the library's under the same switches; turning the DP
    overlap off never makes the best step faster (the sync it hid is now exposed)."""
    path = _config(tmp_path, DENSE, "dense")
    code, out, _ = run(capsys, "search", "--model", path, *JOB, *flags)
    assert code == 0
    rows, want = json.loads(out)["rows"], _library(path, **switches)
    assert [(r["tp"], r["pp"], r["dp"], r["micro_batch"]) for r in rows] == \
        [(r["tp"], r["pp"], r["dp"], r["micro_batch"]) for r in want]
    assert [r["step_time"] for r in rows] == pytest.approx([float(r["step_time"]) for r in want], rel=1e-12)
    if switches.get("dp_overlap") is False:
        _, on, _ = run(capsys, "search", "--model", path, *JOB)
        assert rows[0]["step_time"] >= json.loads(on)["rows"][0]["step_time"]


def test_expert_tensor_parallel_degrees_reach_the_search(capsys, tmp_path):
    """--expert-tensor-parallel tp,1 tries the MoE layer's default flow (tp) and the expert grid at
    ETP 1: both kinds of row appear, as in the library's search with (None, 1)."""
    path = _config(tmp_path, MOE, "moe")
    code, out, _ = run(capsys, "search", "--model", path, *JOB, "--expert-tensor-parallel", "tp,1")
    assert code == 0
    rows, want = json.loads(out)["rows"], _library(path, expert_tensor_parallel=(None, 1))
    assert [(r["tp"], r["ep"], r["etp"], r["expert_grid"]) for r in rows] == \
        [(r["tp"], r["ep"], r["etp"], r["expert_grid"]) for r in want]
    assert {r["expert_grid"] for r in rows} == {True, False}


@pytest.mark.parametrize("flags, message", [
    (["--dp-overlap", "maybe"], "argument --dp-overlap: expected on or off, got 'maybe'"),
    (["--grad-reduce-in-fp32", "2"], "argument --grad-reduce-in-fp32: expected on or off, got '2'"),
    (["--expert-tensor-parallel", "0"], "argument --expert-tensor-parallel: expected positive integer degrees "
     "or tp (the experts split tp ways), got '0'"),
    (["--expert-tensor-parallel", "tp,x"], "argument --expert-tensor-parallel: expected positive integer degrees"),
])
def test_bad_switches_are_one_line(capsys, flags, message):
    code, _, err = run(capsys, "search", "--chips", "8", "--global-batch", "16", *flags)
    assert code == 2 and err.count("\n") == 1 and message in err, err


def test_a_training_switch_on_an_inference_search_is_refused(capsys):
    """The inference search has no gradient sync nor expert grid: a switch set there would change
    nothing, so it is refused rather than dropped."""
    code, _, err = run(capsys, "search", "--chips", "8", "--global-batch", "16", "--phase", "inference",
                       "--dp-overlap", "off")
    assert code == 2 and err.count("\n") == 1
    assert "argument --dp-overlap: a training switch (the inference search has no gradients or expert grid)" in err
