"""The CLI on a state-space model: ``report`` and ``latex`` for mamba2-2.7b and the mamba2 layer."""

import json
import subprocess
import sys


def run(*args):
    result = subprocess.run([sys.executable, "-m", "symcost", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_report_mamba2_state_cache():
    """mamba2-2.7b, b = 8, decode: weights 2 bytes x 2,702,599,680; the state cache 64 layers x 8 x
    (3*5376 conv + 80*64*128 SSM) x 2 bytes = 687,603,712, whatever the context."""
    data = json.loads(run("report", "--json", "--model", "mamba2-2.7b", "--phase", "decode", "--batch", "8"))
    memory = data["inference"]["memory_per_chip"]
    assert data["parameters"] == 2_702_599_680
    assert memory["weights"] == 2 * 2_702_599_680
    assert memory["kv_cache"] == 64 * 8 * (3 * 5376 + 80 * 64 * 128) * 2 == 687_603_712


def test_latex_mamba2_layer_and_model():
    """The layer's formulas use the SSM symbols (k_conv, Q, the chunk count floor(s/Q)); the
    model's table shows each block's state cache, 671,488 b e (3*5376 + 80*64*128 elements)."""
    layer = run("latex", "--layer", "mamba2", "--phase", "prefill")
    assert r"k_{\mathrm{conv}}" in layer and r"\left\lfloor{\frac{s}{Q}}\right\rfloor" in layer
    kv = next(line for line in layer.splitlines() if line.startswith(r"M_{\mathrm{KV}}"))
    assert " s " not in kv and "Q" not in kv  # constant in the sequence length
    model = run("latex", "--model", "mamba2-2.7b", "--phase", "decode")
    assert "671488 b e" in model and "2702599680" in model
