"""Sliding-window attention FLOPs against PyTorch's ``FlopCounterMode`` (optional: skipped
without torch).

NB: which op to count. PyTorch's own sliding-window op is ``flex_attention`` with a block mask.
In torch 2.13 FlopCounterMode's formula for it (``torch/utils/flop_counter.py``,
``flex_attention_forward_flop``) is ``sdpa_flop_count`` over the full (s, s) shapes, scaled by
``1 - sparsity_hint`` only when a compiled graph's node metadata carries a hint: it counts the
whole score matrix, not the window. On CPU it does not even run under the counter (eager and
``torch.compile(backend="eager")`` both raise "no implementation found for
'torch.ops.higher_order.flex_attention'"). So the cross-check uses two reference modules that
FlopCounterMode counts op by op instead:
- ``banded``: each query multiplies only the keys of its window (one Q·Kᵀ and one P·V matmul per
  query row), the work a windowed kernel does: it checks ``causal=True`` counting;
- ``masked``: the full score matrix with the sliding-window mask applied afterwards (eager
  attention, and what FlopCounterMode counts for flex_attention): it checks ``causal=False``
  counting, the dense part.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import symcost as sc  # noqa: E402

B, S, H, A, G = 2, 12, 32, 4, 2
D = H // A  # 8


class WindowAttention(nn.Module):
    """GQA projections and a sliding-window core, ``banded`` or ``masked`` (see the module doc).
    Query i at absolute position p sees keys max(0, p - window + 1) .. p (HF's sliding mask)."""

    def __init__(self, window: int, banded: bool):
        super().__init__()
        self.window, self.banded = window, banded
        self.q_proj, self.o_proj = nn.Linear(H, A * D, bias=False), nn.Linear(A * D, H, bias=False)
        self.k_proj, self.v_proj = nn.Linear(H, G * D, bias=False), nn.Linear(H, G * D, bias=False)

    def forward(self, x, cache=None):
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, A, D).transpose(1, 2)
        k = self.k_proj(x).view(b, s, G, D).transpose(1, 2)
        v = self.v_proj(x).view(b, s, G, D).transpose(1, 2)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        k, v = k.repeat_interleave(A // G, dim=1), v.repeat_interleave(A // G, dim=1)
        offset = k.shape[2] - s
        if self.banded:
            rows = []
            for i in range(s):
                pos = offset + i
                lo = max(0, pos - self.window + 1)
                p = (q[:, :, i:i + 1] @ k[:, :, lo:pos + 1].transpose(-2, -1)).softmax(-1)
                rows.append(p @ v[:, :, lo:pos + 1])
            o = torch.cat(rows, dim=2)
        else:
            pos = torch.arange(s)[:, None] + offset
            key = torch.arange(k.shape[2])[None, :]
            hidden = (key > pos) | (key <= pos - self.window)
            o = (q @ k.transpose(-2, -1)).masked_fill(hidden, float("-inf")).softmax(-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(b, s, A * D))


def torch_flops(module, phase):
    """prefill: forward over (B, S); training: forward + backward; decode: one token after S - 1 cached."""
    with FlopCounterMode(display=False) as counter:
        if phase == "decode":
            cache = (torch.randn(B, G, S - 1, D), torch.randn(B, G, S - 1, D))
            with torch.no_grad():
                module(torch.randn(B, 1, H), cache)
        elif phase == "training":
            module(torch.randn(B, S, H, requires_grad=True)).sum().backward()
        else:
            with torch.no_grad():
                module(torch.randn(B, S, H))
    return counter.get_total_flops()


def symcost_flops(window, causal, phase):
    # NB: flash_attention=False: the reference's backward is eager (2x the core's forward)
    layer = sc.GroupedQueryAttentionLayer(hidden_size=H, num_heads=A, num_kv_heads=G, window=window,
                                          causal=causal, flash_attention=False)
    return layer.compute_metrics(batch_size=B, seq_len=S, phase=phase, dtype="fp32").matmul_flops_per_chip


PROJECTIONS = 2 * B * S * H * (2 * A + 2 * G) * D  # q, o at A heads, k, v at G heads: 147,456


@pytest.mark.parametrize("window", [1, 4, 12, 20])
@pytest.mark.parametrize("phase", ["prefill", "training", "decode"])
def test_causal_window_matches_a_banded_reference(window, phase):
    """causal=True with a window counts exactly the matmuls of a kernel that skips keys outside it.
    By hand at prefill, window 4: pairs 1+2+3+4*9 = 42 per head, core 4*B*A*D*42 = 10,752."""
    got = torch_flops(WindowAttention(window, banded=True), phase)
    if (phase, window) == ("prefill", 4):
        assert got == PROJECTIONS + 4 * B * A * D * (1 + 2 + 3 + 4 * 9) == 147456 + 10752
    assert symcost_flops(window, True, phase) == got


@pytest.mark.parametrize("window", [1, 4, 20])
@pytest.mark.parametrize("phase", ["prefill", "training"])
def test_non_causal_window_counts_the_dense_matrix_as_torch_does(window, phase):
    """causal=False counts the whole score matrix, as FlopCounterMode counts masked eager attention
    (and flex_attention): prefill core 4*B*A*S*S*D = 36,864 whatever the window.
    NB: not decode: there the rolling-buffer cache holds only min(s, w) keys, so even causal=False
    scores min(s, w) of them (the banded test covers decode)."""
    got = torch_flops(WindowAttention(window, banded=False), phase)
    if phase == "prefill":
        assert got == PROJECTIONS + 4 * B * A * S * S * D == 147456 + 36864
    assert symcost_flops(window, False, phase) == got
