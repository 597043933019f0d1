"""`--window` and `--global-every` on the command line (symcost/cli/common.py), and the window
symbol in the LaTeX the CLI prints."""

from __future__ import annotations

import json

import pytest
from cli_run import main_run as run


def test_report_hybrid_window_kv_cache(capsys):
    """llama-3-8b, --window 4096 --global-every 2, decode at 8,192 keys, bf16: one token's K and V
    in one layer are 2 * 8 heads * 128 * 2 bytes = 4,096 bytes; 16 local layers hold 4,096 tokens
    and 16 global layers 8,192: 16 * (4096 + 8192) * 4096 = 805,306,368 bytes (no window:
    32 * 8192 * 4096 = 1,073,741,824)."""
    code, out, err = run(capsys, "report", "--window", "4096", "--global-every", "2", "--phase", "decode",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["inference"]["memory_per_chip"]["kv_cache"] == 16 * (4096 + 8192) * 4096 == 805306368
    code, out, _ = run(capsys, "report", "--window", "4096", "--phase", "decode", "--json")
    assert json.loads(out)["inference"]["memory_per_chip"]["kv_cache"] == 32 * 4096 * 4096


def test_latex_prints_the_window_symbol(capsys):
    """`symcost latex --model llama-3-8b --window w --phase decode`: the KV cache is
    32 layers * 2 * 8 * 128 = 65,536 elements per token, b e min(s, w) tokens, and w is in the glossary."""
    code, out, err = run(capsys, "latex", "--model", "llama-3-8b", "--window", "w", "--phase", "decode")
    assert code == 0, err
    assert r"M_{\mathrm{KV}} &= 65536 b e \min\left(s, w\right)" in out
    assert r"$w$ & sliding-window length" in out


@pytest.mark.parametrize(("args", "message"), [
    (("report", "--global-every", "2"), "argument --global-every: needs --window"),
    (("report", "--window", "0"), "argument --window: expected a positive integer, got 0"),
    (("report", "--model", "deepseek-v3", "--window", "8"), "argument --window: the model's MLALayer has no"),
    (("latex", "--layer", "gqa", "--window", "w"), "argument --window: applies to --model"),
])
def test_bad_window_options_are_one_line(capsys, args, message):
    code, _, err = run(capsys, *args)
    assert code == 2
    assert err.startswith(f"symcost: error: {message}") and len(err.strip().splitlines()) == 1


def test_report_prefill_chunk_on_a_window_model(capsys):
    """`symcost report --model mistral-7b --prefill-chunk 2048` runs (it raised "an attention core's
    time is not affine in its keys"); the 8,192-token default prompt takes 4 chunks."""
    code, out, err = run(capsys, "report", "--model", "mistral-7b", "--prefill-chunk", "2048", "--phase", "prefill",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["assumptions"]["prefill_chunk"] == 2048
    assert data["inference"]["num_prefill_chunks"] == 4
