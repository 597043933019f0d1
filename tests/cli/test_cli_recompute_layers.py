"""``symcost report --recompute full --recompute-layers N``: Megatron-Core's block recompute
(``--recompute-method block --recompute-num-layers N``) from the command line (issue 22).

The model: GPT-2 from a Hugging Face config (n_embd h = 64, n_head a = 4, n_layer L = 4, vocab
V = 128, n_positions 32: causal attention, flash kernel), seq s = 32, micro-batch b = 1, global
batch 4 (m = 4 micro-batches, one replica, one stage), bf16; the chip a pure roofline whose only
finite rate is the matmul peak, 10^12 FLOP/s (every bandwidth 10^24, no latency): a time is the
matmul FLOPs / 10^12.

By hand:
- one block's forward matmuls: the projections 24 s h^2 = 3,145,728 and causal attention's QK^T
  and PV, 2 x 2 h x s(s + 1)/2 = 135,168 (query i sees i + 1 keys): 3,280,896 FLOPs. A
  recomputed block runs its forward once more, in each of the m = 4 micro-batches' backward:
  4 x 3,280,896 = 13,123,584 FLOPs = 13.123584 µs more per recomputed block of the stage.
- a block's saved activations (Korthikanti et al. 2022, e = 2 bytes): 34 s b h = 69,632 B, with
  the flash kernel's fp32 log-sum-exp per head and query, 4 a s b = 512 B, instead of the a s^2
  scores: 70,144 B; recomputed, its input only, 2 s b h = 4,096 B. The embedding's dropout mask
  s b h = 2,048 B, the final norm's and LM head's inputs 2 x 2 s b h and the bf16 logit gradient
  2 s b V: 16,384 B. One stage of 1F1B holds one micro-batch in flight:
  no recompute: 4 x 70,144 + 2,048 + 16,384 = 299,008 B;
  the first block recomputed: 4,096 + 3 x 70,144 + 2,048 + 16,384 = 232,960 B (rebuilding it
  during the backward, after the other three are freed, holds less: 2,048 + 70,144 + 4,096).
"""

from __future__ import annotations

import json

import pytest

from symcost.cli import main
from symcost.models.hf import from_hf_config

GPT2 = {"model_type": "gpt2", "n_embd": 64, "n_head": 4, "n_layer": 4, "vocab_size": 128, "n_positions": 32}
TOY = {"name": "toy", "ideal": True, "peak_flops": {"bf16": 10**12}, "vector_flops": 1e24, "hbm_capacity": 10**9,
       "hbm_bandwidth": 1e24, "scale_up_bandwidth": 1e24, "scale_up_domain": 8, "scale_out_bandwidth": 1e24,
       "collective_latency": 0}
ONE_BLOCK_AGAIN = 13_123_584e-12  # s: one block's forward in each of the 4 micro-batches (module docstring)


@pytest.fixture
def files(tmp_path):
    model, chip = tmp_path / "gpt2.json", tmp_path / "toy.json"
    model.write_text(json.dumps(GPT2))
    chip.write_text(json.dumps(TOY))
    return str(model), str(chip)


def _report(capsys, files, *flags):
    model, chip = files
    code = main(["report", "--model", model, "--hardware", chip, "--phase", "training", "--seq", "32",
                 "--global-batch", "4", *flags])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_block_recompute_by_hand(capsys, files):
    code, out, _ = _report(capsys, files, "--recompute", "none", "--json")
    assert code == 0
    plain = json.loads(out)["training"]
    code, out, _ = _report(capsys, files, "--recompute", "full", "--recompute-layers", "1", "--json")
    assert code == 0
    report = json.loads(out)
    block = report["training"]
    assert plain["memory_per_chip"]["activations"] == 4 * 70_144 + 2_048 + 16_384 == 299_008
    assert block["memory_per_chip"]["activations"] == 4_096 + 3 * 70_144 + 2_048 + 16_384 == 232_960
    assert block["compute_time_s"] - plain["compute_time_s"] == pytest.approx(ONE_BLOCK_AGAIN, rel=1e-9)
    assert block["step_time_s"] - plain["step_time_s"] == pytest.approx(ONE_BLOCK_AGAIN, rel=1e-9)
    assert report["assumptions"]["recompute_layers"] == block["recompute_layers"] == 1
    # the library call, the same numbers
    step = from_hf_config(GPT2).training_step(_toy(), 32, 4, 1, recompute="full", recompute_layers=1)
    assert block["memory_per_chip"]["activations"] == step.activation_memory
    assert block["step_time_s"] == pytest.approx(float(step.step_time), rel=1e-12)


def _toy():
    from symcost.hardware import Hardware

    big = 10**24
    return Hardware(name="toy", peak_flops={"bf16": 10**12}, vector_flops=big, hbm_capacity=10**9,
                    hbm_bandwidth=big, scale_up_bandwidth=big, scale_up_domain=8, scale_out_bandwidth=big,
                    collective_latency=0)


def test_block_recompute_stated_in_the_text(capsys, files):
    code, out, _ = _report(capsys, files, "--recompute", "full", "--recompute-layers", "2")
    assert code == 0
    assert "recompute full, the first 2 blocks of each pipeline stage (block method)" in out


def test_block_recompute_in_the_html(capsys, files, tmp_path):
    page = tmp_path / "r.html"
    code, _, _ = _report(capsys, files, "--recompute", "full", "--recompute-layers", "2", "--html", str(page))
    assert code == 0
    assert "recompute full, the first 2 blocks of each pipeline stage (block method)" in page.read_text()


@pytest.mark.parametrize("flags, message", [
    (("--recompute-layers", "1"), "argument --recompute-layers: needs --recompute full"),
    (("--recompute", "selective", "--recompute-layers", "1"), "needs --recompute full"),
    (("--recompute", "full", "--recompute-layers", "5"),
     "argument --recompute-layers: at most 4, the blocks of the largest pipeline stage (--pp 1), got 5"),
    (("--recompute", "full", "--recompute-layers", "3", "--pp", "2"), "at most 2"),
    (("--recompute", "full", "--recompute-layers", "-1"), "argument --recompute-layers: expected an integer >= 0"),
    (("--recompute", "full", "--recompute-layers", "two"), "argument --recompute-layers: expected an integer >= 0"),
])
def test_bad_recompute_layers_one_line(capsys, files, flags, message):
    code, out, err = _report(capsys, files, *flags)
    assert code == 2
    assert message in err
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err  # argparse adds its usage line


def test_no_block_recomputed_is_said_so(capsys, files):
    """--recompute-layers 0 runs what --recompute none runs (the library: recompute="full",
    recompute_layers=0 recomputes no block, tests/plan/test_recompute_layers.py); the text says
    that, not "the first 0 blocks"."""
    code, out, _ = _report(capsys, files, "--recompute", "full", "--recompute-layers", "0")
    assert code == 0
    assert "recompute full with no block recomputed (block method, 0 blocks: as none)" in out
    assert "the first 0 blocks" not in out


def test_the_html_states_the_recompute_it_was_given():
    """html_report with recompute="selective" and recompute_layers (the step refuses it) does not
    claim "full": it states both and the step's error."""
    from symcost.report.html import html_report

    page = html_report(from_hf_config(GPT2), _toy(), seq_len=32, global_batch=4, recompute="selective",
                       recompute_layers=2, plots=False)
    assert "recompute full" not in page
    assert "recompute selective with recompute_layers 2 (block recompute needs full)" in page
    assert any(f"recompute_layers needs recompute={q}full{q}" in page for q in ("&#x27;", "'"))
