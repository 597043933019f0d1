"""symcost's ``matmul_flops_per_chip`` against PyTorch's ``FlopCounterMode`` (docs/conventions.md §1–§5).

Each test builds a small reference PyTorch module, counts its FLOPs with
``torch.utils.flop_counter.FlopCounterMode`` (an independent source: it counts the mm / addmm /
bmm / SDPA ops the module actually dispatches) and asserts symcost's count is the same integer.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils import flop_counter  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

import symcost as sc  # noqa: E402

# Small shapes: every test runs in milliseconds.
B, S, H, A, FFN = 2, 16, 64, 8, 256
D = H // A  # head dim 8


# -- counting with torch ---------------------------------------------------------------------
#
# On CPU, F.scaled_dot_product_attention dispatches to aten._scaled_dot_product_flash_attention_for_cpu
# (and, in the backward, aten._scaled_dot_product_flash_attention_for_cpu_backward). FlopCounterMode's
# registry does not list those ops, so it would count the whole attention core as 0. We map the two
# ops to torch's *own* SDPA formulas -- flop_counter.sdpa_flop_count (Q K^T + P V) and
# flop_counter.sdpa_backward_flop_count (the flash backward's five bmms, Q K^T recomputed) -- the
# functions torch registers for its CUDA flash / efficient / cuDNN SDPA kernels, whose argument
# order (grad_out, query, key, value, ...) the CPU ops share. The count therefore stays torch's, not
# ours. (The meta device is no alternative: there SDPA decomposes to the math path, whose backward is
# the eager 4 bmms, not flash's 5.) The adapters take shapes: FlopCounterMode wraps custom_mapping
# entries with shape_wrapper, which passes tensor shapes and out_shape.


def _cpu_flash_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_flash_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args,
                             out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


CPU_FLASH = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
CPU_FLASH_BACKWARD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward
CPU_SDPA_MAPPING = {CPU_FLASH: _cpu_flash_flop, CPU_FLASH_BACKWARD: _cpu_flash_backward_flop}


def count(run) -> tuple[int, dict]:
    """Run ``run()`` under FlopCounterMode: (total FLOPs, {op packet: FLOPs})."""
    with FlopCounterMode(display=False, custom_mapping=CPU_SDPA_MAPPING) as counter:
        run()
    return counter.get_total_flops(), dict(counter.get_flop_counts().get("Global", {}))


# -- reference modules -----------------------------------------------------------------------

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU}


class PlainMLP(nn.Module):
    """fc1 -> activation -> fc2."""

    def __init__(self, h, f, activation="gelu", bias=False, device=None):
        super().__init__()
        self.fc1 = nn.Linear(h, f, bias=bias, device=device)
        self.act = ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(f, h, bias=bias, device=device)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)), as in Llama."""

    def __init__(self, h, f, bias=False, device=None):
        super().__init__()
        self.gate = nn.Linear(h, f, bias=bias, device=device)
        self.up = nn.Linear(h, f, bias=bias, device=device)
        self.down = nn.Linear(f, h, bias=bias, device=device)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


def repeat_kv(x, n_rep):
    """HF transformers' repeat_kv: (b, g, s, d) -> (b, g * n_rep, s, d)."""
    b, g, s, d = x.shape
    if n_rep == 1:
        return x
    return x[:, :, None, :, :].expand(b, g, n_rep, s, d).reshape(b, g * n_rep, s, d)


class Attention(nn.Module):
    """MHA / GQA / MQA: q, k, v projections (fused or separate), a core, the o projection.

    ``core="eager"``: Q K^T, softmax, P V as explicit matmuls (bmm); ``core="sdpa"``:
    F.scaled_dot_product_attention (the CPU flash kernel). K/V heads are repeated to the query
    heads before the core. ``forward(x, kv_cache)`` appends the new tokens' K/V to the cache.
    """

    def __init__(self, h, a, g, head_dim=None, core="sdpa", fused=False, bias=False, causal=False,
                 device=None):
        super().__init__()
        self.a, self.g, self.d = a, g, head_dim or h // a
        self.core, self.fused, self.causal = core, fused, causal
        q_out, kv_out = a * self.d, g * self.d
        if fused:
            self.qkv = nn.Linear(h, q_out + 2 * kv_out, bias=bias, device=device)
        else:
            self.q_proj = nn.Linear(h, q_out, bias=bias, device=device)
            self.k_proj = nn.Linear(h, kv_out, bias=bias, device=device)
            self.v_proj = nn.Linear(h, kv_out, bias=bias, device=device)
        self.o_proj = nn.Linear(q_out, h, bias=bias, device=device)

    def forward(self, x, kv_cache=None):
        b, s, _ = x.shape
        if self.fused:
            q, k, v = self.qkv(x).split([self.a * self.d, self.g * self.d, self.g * self.d], dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(b, s, self.a, self.d).transpose(1, 2)
        k = k.view(b, s, self.g, self.d).transpose(1, 2)
        v = v.view(b, s, self.g, self.d).transpose(1, 2)
        if kv_cache is not None:
            k = torch.cat([kv_cache[0], k], dim=2)
            v = torch.cat([kv_cache[1], v], dim=2)
        k, v = repeat_kv(k, self.a // self.g), repeat_kv(v, self.a // self.g)
        if self.core == "sdpa":
            o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        else:
            scores = (q @ k.transpose(-2, -1)) * self.d ** -0.5
            if self.causal:
                mask = torch.ones(s, k.shape[2], dtype=torch.bool, device=x.device).triu(1)
                scores = scores.masked_fill(mask, float("-inf"))
            o = scores.softmax(dim=-1) @ v
        return self.o_proj(o.transpose(1, 2).reshape(b, s, self.a * self.d))


def torch_count(module, phase, b=B, s=S, h=H, device="cpu") -> tuple[int, dict]:
    """FLOPs of ``module`` for one symcost phase.

    prefill: forward over (b, s, h); training: forward + backward of ``.sum()`` with the input
    requiring grad (so dX of the first matmul is counted, as symcost does); decode: forward of one
    new token per sequence with a K/V cache of s - 1 tokens, so the core attends to s keys.
    """
    if phase == "prefill":
        x = torch.randn(b, s, h, device=device)

        def run():
            with torch.no_grad():
                module(x)
    elif phase == "training":
        x = torch.randn(b, s, h, device=device, requires_grad=True)

        def run():
            module(x).sum().backward()
    elif phase == "decode":
        x = torch.randn(b, 1, h, device=device)
        kwargs = {}
        if isinstance(module, Attention):
            cache = (torch.randn(b, module.g, s - 1, module.d, device=device),
                     torch.randn(b, module.g, s - 1, module.d, device=device))
            kwargs = {"kv_cache": cache}

        def run():
            with torch.no_grad():
                module(x, **kwargs)
    else:
        raise ValueError(phase)
    return count(run)


# -- symcost builders ------------------------------------------------------------------------

def sc_metrics(layer, phase, b=B, s=S):
    return layer.compute_metrics(batch_size=b, seq_len=s, phase=phase, dtype="fp32")


def sc_mlp(gated, *, activation=None, bias=False, tp=1, h=H, f=FFN):
    return sc.MLPLayer(hidden_size=h, intermediate_size=f, num_projections=3 if gated else 2,
                       activation=activation or ("silu" if gated else "gelu"), bias=bias,
                       parallelism={"tensor_parallel": tp})


def torch_mlp(gated, *, activation=None, bias=False, h=H, f=FFN, device=None):
    if gated:
        return SwiGLU(h, f, bias=bias, device=device)
    return PlainMLP(h, f, activation=activation or "gelu", bias=bias, device=device)


def sc_attention(a, g, *, flash, bias=False, causal=False, tp=1, h=H):
    kwargs = dict(hidden_size=h, num_heads=a, flash_attention=flash, causal=causal, bias=bias,
                  parallelism={"tensor_parallel": tp})
    if g == a:
        return sc.AttentionLayer(**kwargs)
    return sc.GroupedQueryAttentionLayer(num_kv_heads=g, **kwargs)


HEADS = [pytest.param(8, 8, id="mha"), pytest.param(8, 4, id="gqa-g4"),
         pytest.param(8, 2, id="gqa-g2"), pytest.param(8, 1, id="mqa")]
CORES = [pytest.param("eager", id="eager"), pytest.param("sdpa", id="sdpa-flash")]


# -- MLP -------------------------------------------------------------------------------------

@pytest.mark.parametrize("activation", ["gelu", "relu", "silu"])
def test_plain_mlp_prefill_matches_torch(activation):
    """Plain MLP prefill: symcost's 2 matmuls equal torch's count for any activation (counted 0)."""
    total, _ = torch_count(torch_mlp(False, activation=activation), "prefill")
    assert total == 4 * B * S * H * FFN  # 2 matmuls x 2*b*s*h*f = 1,048,576
    assert sc_metrics(sc_mlp(False, activation=activation), "prefill").matmul_flops_per_chip == total


def test_gated_mlp_prefill_matches_torch():
    """SwiGLU prefill: GatedMLPLayer and MLPLayer(num_projections=3) equal torch's count."""
    total, _ = torch_count(torch_mlp(True), "prefill")
    assert total == 6 * B * S * H * FFN  # 3 matmuls x 2*b*s*h*f = 1,572,864
    gated = sc.GatedMLPLayer(hidden_size=H, intermediate_size=FFN)
    assert sc_metrics(gated, "prefill").matmul_flops_per_chip == total
    assert sc_metrics(sc_mlp(True), "prefill").matmul_flops_per_chip == total


@pytest.mark.parametrize("phase", ["prefill", "training", "decode"])
@pytest.mark.parametrize("gated", [False, True], ids=["plain", "gated"])
def test_mlp_phases_match_torch(gated, phase):
    """MLP in every phase: training is 3x forward (dX, dW), decode is b tokens; all equal torch."""
    total, _ = torch_count(torch_mlp(gated), phase)
    projections = 3 if gated else 2
    tokens = B if phase == "decode" else B * S
    per_forward = projections * 2 * tokens * H * FFN
    assert total == (3 if phase == "training" else 1) * per_forward
    assert sc_metrics(sc_mlp(gated), phase).matmul_flops_per_chip == total


# -- attention -------------------------------------------------------------------------------

@pytest.mark.parametrize("fused", [False, True], ids=["qkv-separate", "qkv-fused"])
@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("a,g", HEADS)
def test_attention_prefill_matches_torch(a, g, core, fused):
    """MHA/GQA/MQA prefill: projections (K/V at g heads) + core at all a query heads equal torch."""
    total, ops = torch_count(Attention(H, a, g, core=core, fused=fused), "prefill")
    d = H // a
    projections = 2 * B * S * H * (2 * a + 2 * g) * d  # q and o at a heads, k and v at g heads
    core_flops = 4 * B * a * S * S * d  # Q K^T and P V with all query heads (item 3)
    assert total == projections + core_flops
    if core == "sdpa":
        assert ops.get(CPU_FLASH) == core_flops  # the custom mapping was exercised
    layer = sc_attention(a, g, flash=core == "sdpa")
    assert sc_metrics(layer, "prefill").matmul_flops_per_chip == total


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("a,g", HEADS)
def test_attention_training_matches_torch(a, g, core):
    """Training: projections 3x forward; the core's backward is 2x forward eager, 2.5x flash."""
    total, ops = torch_count(Attention(H, a, g, core=core), "training")
    d = H // a
    projections = 3 * 2 * B * S * H * (2 * a + 2 * g) * d  # forward + dX + dW
    core_forward = 4 * B * a * S * S * d
    # flash backward: 5 bmms (Q K^T recomputed) = 5/2 x forward; eager: 4 bmms = 2 x forward
    core_backward = core_forward * 5 // 2 if core == "sdpa" else 2 * core_forward
    assert total == projections + core_forward + core_backward
    if core == "sdpa":
        assert ops.get(CPU_FLASH_BACKWARD) == core_backward
    layer = sc_attention(a, g, flash=core == "sdpa")
    assert sc_metrics(layer, "training").matmul_flops_per_chip == total


@pytest.mark.parametrize("core", CORES)
@pytest.mark.parametrize("a,g", HEADS)
def test_attention_decode_matches_torch(a, g, core):
    """Decode: projections for 1 new token per sequence; core over seq_len keys (cache + new)."""
    total, _ = torch_count(Attention(H, a, g, core=core), "decode")
    d = H // a
    projections = 2 * B * 1 * H * (2 * a + 2 * g) * d  # b new tokens
    core_flops = 4 * B * a * 1 * S * d  # 1 query x s keys, all query heads
    assert total == projections + core_flops
    layer = sc_attention(a, g, flash=core == "sdpa")
    assert sc_metrics(layer, "decode").matmul_flops_per_chip == total


@pytest.mark.parametrize("core", CORES)
def test_causal_mask_is_not_discounted_by_torch(core):
    """A causal core costs torch the full s^2, as symcost's default causal=False counts it;
    causal=True drops exactly the masked (query, key) pairs from torch's count."""
    causal, _ = torch_count(Attention(H, A, 2, core=core, causal=True), "prefill")
    full, _ = torch_count(Attention(H, A, 2, core=core), "prefill")
    assert causal == full
    flash = core == "sdpa"
    assert sc_metrics(sc_attention(A, 2, flash=flash), "prefill").matmul_flops_per_chip == causal
    masked_pairs = S * (S - 1) // 2  # 120 keys above the diagonal of a 16 x 16 score matrix
    masked_flops = 4 * B * A * masked_pairs * D  # Q K^T + P V for those pairs = 61,440
    discounted = sc_metrics(sc_attention(A, 2, flash=flash, causal=True), "prefill")
    assert discounted.matmul_flops_per_chip == causal - masked_flops


@pytest.mark.parametrize("phase", ["prefill", "training", "decode"])
@pytest.mark.parametrize("a,g", [pytest.param(8, 8, id="mha"), pytest.param(8, 2, id="gqa-g2")])
def test_explicit_head_dim_matches_torch(a, g, phase):
    """head_dim=16 with h=64, a=8 (a*d = 128 != h): q/o and k/v projections and core use d=16."""
    total, _ = torch_count(Attention(H, a, g, head_dim=16, core="sdpa"), phase)
    layer = sc.GroupedQueryAttentionLayer(hidden_size=H, num_heads=a, num_kv_heads=g, head_dim=16,
                                          flash_attention=True)
    assert sc_metrics(layer, phase).matmul_flops_per_chip == total


@pytest.mark.parametrize("phase", ["prefill", "training", "decode"])
def test_symbolic_expression_evaluates_to_torch(phase):
    """The symbolic count in b and s, substituted with numbers, equals torch's count."""
    total, _ = torch_count(Attention(H, A, 2, core="sdpa"), phase)
    layer = sc_attention(A, 2, flash=True)
    symbolic = layer.compute_metrics(phase=phase, dtype="fp32")  # b, s left as symbols
    assert symbolic.subs(batch_size=B, seq_len=S).matmul_flops_per_chip == total


# -- bias ------------------------------------------------------------------------------------

@pytest.mark.parametrize("phase", ["prefill", "training", "decode"])
@pytest.mark.parametrize("kind", ["plain", "gated", "mha", "gqa"])
def test_bias_adds_no_matmul_flops(kind, phase):
    """bias=True: torch counts addmm as its mm only, symcost counts biases as vector FLOPs only."""
    if kind in ("plain", "gated"):
        gated = kind == "gated"
        with_bias, _ = torch_count(torch_mlp(gated, bias=True), phase)
        without, _ = torch_count(torch_mlp(gated), phase)
        layer = sc_mlp(gated, bias=True)
    else:
        g = A if kind == "mha" else 2
        with_bias, _ = torch_count(Attention(H, A, g, core="sdpa", bias=True), phase)
        without, _ = torch_count(Attention(H, A, g, core="sdpa"), phase)
        layer = sc_attention(A, g, flash=True, bias=True)
    assert with_bias == without
    metrics = sc_metrics(layer, phase)
    assert metrics.matmul_flops_per_chip == with_bias
    assert metrics.flops_per_chip > metrics.matmul_flops_per_chip  # the bias adds live elsewhere


# -- tensor parallelism ----------------------------------------------------------------------

@pytest.mark.parametrize("phase", ["prefill", "training"])
@pytest.mark.parametrize("t", [2, 4])
@pytest.mark.parametrize("kind", ["plain", "gated", "mha", "gqa-g4"])
def test_tp_per_chip_is_total_over_t(kind, t, phase):
    """With g >= t nothing is replicated: per-chip matmul FLOPs x t equal the unsharded torch total."""
    if kind in ("plain", "gated"):
        gated = kind == "gated"
        total, _ = torch_count(torch_mlp(gated), phase)
        layer = sc_mlp(gated, tp=t)
    else:
        g = A if kind == "mha" else 4
        total, _ = torch_count(Attention(H, A, g, core="sdpa"), phase)
        layer = sc_attention(A, g, flash=True, tp=t)
    assert sc_metrics(layer, phase).matmul_flops_per_chip * t == total


@pytest.mark.parametrize("phase", ["prefill", "training", "decode"])
@pytest.mark.parametrize("g", [4, 2, 1], ids=["g4", "g2-replicated", "mqa-replicated"])
def test_tp_per_chip_equals_one_rank_shard(g, phase):
    """TP t=4: per-chip FLOPs equal torch's count of one rank's shard (a/t query heads, g/t or one
    replicated KV head, f/t FFN columns), so KV replication at g < t is counted as run."""
    t = 4
    g_t = max(g // t, 1)  # Megatron: fewer KV heads than ranks -> one whole head per rank
    shard, _ = torch_count(Attention(H, A // t, g_t, head_dim=D, core="sdpa"), phase)
    assert sc_metrics(sc_attention(A, g, flash=True, tp=t), phase).matmul_flops_per_chip == shard
    mlp_shard, _ = torch_count(PlainMLP(H, FFN // t), phase)
    assert sc_metrics(sc_mlp(False, tp=t), phase).matmul_flops_per_chip == mlp_shard


# -- the reference shape, on the meta device -------------------------------------------------

REF_B, REF_S, REF_H = 1, 2048, 4096


@pytest.mark.parametrize("name,expected", [
    ("plain", 549_755_813_888),  # 2 matmuls x 2*2048*4096*16384
    ("gated", 554_050_781_184),  # 3 matmuls x 2*2048*4096*11008
    ("mha", 343_597_383_680),  # 4 projections x 2*2048*4096*4096 + core 4*32*2048*2048*128
    ("gqa", 240_518_168_576),  # 2*2048*4096*(4096+2*1024) + 2*2048*4096*4096 + 4*32*2048^2*128
])
def test_reference_points_on_meta(name, expected):
    """docs/conventions.md §5 reference points (b=1 s=2048 h=4096 a=32 g=8): symcost == torch == the table."""
    arithmetic = {
        "plain": 2 * (2 * 2048 * 4096 * 16384),
        "gated": 3 * (2 * 2048 * 4096 * 11008),
        "mha": 4 * (2 * 2048 * 4096 * 4096) + 4 * 32 * 2048 * 2048 * 128,
        "gqa": 2 * 2048 * 4096 * (4096 + 2 * 1024) + 2 * 2048 * 4096 * 4096 + 4 * 32 * 2048 ** 2 * 128,
    }
    assert arithmetic[name] == expected
    # meta tensors carry shapes only: FlopCounterMode counts the same ops with no real compute
    if name == "plain":
        module = PlainMLP(REF_H, 16384, device="meta")
        layer = sc_mlp(False, h=REF_H, f=16384)
    elif name == "gated":
        module = SwiGLU(REF_H, 11008, device="meta")
        layer = sc.GatedMLPLayer(hidden_size=REF_H, intermediate_size=11008)
    else:
        g = 32 if name == "mha" else 8
        module = Attention(REF_H, 32, g, core="eager", device="meta")
        layer = sc_attention(32, g, flash=True, h=REF_H)
    total, _ = torch_count(module, "prefill", b=REF_B, s=REF_S, h=REF_H, device="meta")
    assert total == expected
    assert sc_metrics(layer, "prefill", b=REF_B, s=REF_S).matmul_flops_per_chip == expected
