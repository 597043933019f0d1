"""Mamba2Layer (the SSD chunked scan and its state cache): hand derivations, PyTorch
FlopCounterMode on a plain-torch Mamba-2, tensor parallelism, symbols."""

from __future__ import annotations

import pytest
import sympy as sp

from symcost import symbols as S
from symcost.core.metrics import METRIC_FIELDS
from symcost.layers.mamba2 import Mamba2Layer, chunk_split
from symcost.testing import assert_expr_equal

b, s, h, t, e = S.batch_size, S.seq_len, S.hidden_size, S.tp, S.dtype_bytes
Hs, Ps, Ns, Gs, ks, Qs = S.ssm_heads, S.ssm_head_dim, S.ssm_state_size, S.ssm_groups, S.conv_kernel, S.chunk_size

# A small shape: h = 64, H = 4 heads of P = 32 (d = 128), N = 16, G = 2 groups, k = 4, Q = 8.
HID, NH, HD, NS, NG, K, Q = 64, 4, 32, 16, 2, 4, 8
D_IN = NH * HD                      # 128
N_IN = 2 * D_IN + 2 * NG * NS + NH  # 256 + 64 + 4 = 324: z, x, B, C, dt
CH = D_IN + 2 * NG * NS             # 192 convolved channels: x, B, C
SMALL = dict(hidden_size=HID, num_heads=NH, head_dim=HD, state_size=NS, num_groups=NG,
             conv_kernel=K, chunk_size=Q)
BATCH, SEQ = 2, 20                  # s = 20 = 2 full chunks of 8 + a last chunk of 4


def layer(**kw) -> Mamba2Layer:
    return Mamba2Layer(**{**SMALL, **kw})


def metrics(lay, phase, bs=BATCH, sl=SEQ, dtype="bf16", **kw):
    return lay.compute_metrics(batch_size=bs, seq_len=sl, phase=phase, dtype=dtype, **kw)


# -- parameters --------------------------------------------------------------------------------

def test_num_params_by_hand():
    """in_proj 64*324 = 20736; conv 192*4 + 192 = 960; dt_bias, A_log, D 3*4 = 12; norm 128;
    out_proj 128*64 = 8192: 30028."""
    assert layer().num_params == 20736 + 960 + 12 + 128 + 8192 == 30028
    assert layer(conv_bias=False).num_params == 30028 - 192


def test_symbolic_num_params():
    """h(2HP + 2GN + H) + (HP + 2GN)(k + 1) + 3H + HP + HPh."""
    want = h * (2 * Hs * Ps + 2 * Gs * Ns + Hs) + (Hs * Ps + 2 * Gs * Ns) * (ks + 1) + 3 * Hs + Hs * Ps + Hs * Ps * h
    assert_expr_equal(Mamba2Layer().num_params, want)


def test_mamba_ssm_docstring_rule_of_thumb():
    """mamba_ssm: 'This module uses roughly 3 * expand * d_model^2 parameters': at h = 2560,
    expand 2 (in_proj 2560*10576, out_proj 5120*2560) within 2.5% of 3*2*2560^2 (2.27%)."""
    big = Mamba2Layer(hidden_size=2560, num_heads=80, head_dim=64, state_size=128, num_groups=1,
                      conv_kernel=4, chunk_size=256)
    assert big.num_params == 2560 * 10576 + 5376 * 5 + 240 + 5120 + 5120 * 2560 == 40214000
    assert abs(big.num_params / (6 * 2560**2) - 1) < sp.Rational(1, 40)


# -- chunks ------------------------------------------------------------------------------------

def test_chunk_split():
    """s = 20, Q = 8: 2 full chunks, a last chunk of 4, 3 chunks; s = 16: no last chunk."""
    assert chunk_split(20, 8) == (2, 4, 3)
    assert chunk_split(16, 8) == (2, 0, 2)
    assert chunk_split(5, 8) == (0, 5, 1)


# -- FLOPs by hand -----------------------------------------------------------------------------

# prefill, b = 2, s = 20 (T = 40), Σl² = 8² + 8² + 4² = 144:
#   in_proj 2*40*64*324 = 1658880; out_proj 2*40*128*64 = 655360
#   step 1: C Bᵀ 2*b*G*N*Σl² = 2*2*2*16*144 = 18432; (CB∘L) X 2*b*H*P*Σl² = 2*2*4*32*144 = 73728
#   step 2: Xᵀ B 2*T*H*P*N = 2*40*4*32*16 = 163840; step 4: C h, the same 163840
PREFILL_MATMUL = 1658880 + 655360 + 18432 + 73728 + 2 * 163840  # 2734080
#   conv T*C*(2k + bias + SiLU 4) = 40*192*13 = 99840; ssd_dt T*H*10 = 1600;
#   decay b*H*Σl²*4 = 4608; scale_x T*d = 5120; state passing b*c*H*P*N*2 = 2*3*4*32*16*2 = 24576;
#   output T*d*4 = 20480; gated norm T*d*(4 + 1 + 4) = 46080
PREFILL_VECTOR = 99840 + 1600 + 4608 + 5120 + 24576 + 20480 + 46080  # 202304
# decode, b = 2: in_proj 2*2*64*324 = 82944; out_proj 2*2*128*64 = 32768; y = C h 2*b*H*P*N = 8192
DECODE_MATMUL = 82944 + 32768 + 8192  # 123904
#   conv step 2*192*13 = 4992; dt 2*4*6 = 48; state update 2*4*32*16*3 = 12288;
#   output 2*128*3 = 768; gated norm 2*128*9 = 2304
DECODE_VECTOR = 4992 + 48 + 12288 + 768 + 2304  # 20400


def test_prefill_flops_by_hand():
    m = metrics(layer(), "prefill")
    assert m.matmul_flops_per_chip == PREFILL_MATMUL == 2734080
    assert m.flops_per_chip - m.matmul_flops_per_chip == PREFILL_VECTOR == 202304


def test_decode_flops_by_hand_and_independent_of_s():
    for sl in (1, SEQ, 100000):
        m = metrics(layer(), "decode", sl=sl)
        assert m.matmul_flops_per_chip == DECODE_MATMUL
        assert m.flops_per_chip - m.matmul_flops_per_chip == DECODE_VECTOR


def test_decode_is_order_heads_headdim_state_per_token():
    """Beyond the projections, one decode token costs O(H*P*N): doubling N doubles the scan's part."""
    def scan(n):
        m = metrics(layer(state_size=n), "decode", bs=1)
        proj = 2 * HID * (2 * D_IN + 2 * NG * n + NH) + 2 * D_IN * HID
        return m.matmul_flops_per_chip - proj
    assert scan(16) == 2 * NH * HD * 16 and scan(32) == 2 * scan(16)


def test_training_is_three_times_the_forward_matmuls():
    """Every product (projections and the scan's) has a dX and a dW: 3x the forward."""
    assert metrics(layer(), "training").matmul_flops_per_chip == 3 * PREFILL_MATMUL


def test_prefill_scan_is_linear_in_s_for_whole_chunks():
    """With s a multiple of Q the scan is 2TQ(GN + HP) + 4THPN: doubling s doubles every term."""
    one, two = metrics(layer(), "prefill", sl=16), metrics(layer(), "prefill", sl=32)
    assert two.matmul_flops_per_chip == 2 * one.matmul_flops_per_chip
    T = BATCH * 16
    scan = 2 * T * Q * (NG * NS + NH * HD) + 4 * T * NH * HD * NS
    assert one.matmul_flops_per_chip == 2 * T * HID * N_IN + 2 * T * D_IN * HID + scan


def test_symbolic_prefill_formula_at_whole_chunks():
    """All symbolic, s = Q*m: 2Th(2HP + 2GN + H)/t + 2ThHP/t + 2TQ(GN + HP)/t + 4THPN/t."""
    m_ = sp.Symbol("m", positive=True, integer=True)
    lay = Mamba2Layer(parallelism={"tensor_parallel": t})
    got = lay.compute_metrics(phase="prefill").matmul_flops_per_chip.xreplace({s: Qs * m_})
    T = b * Qs * m_
    want = (2 * T * h * (2 * Hs * Ps + 2 * Gs * Ns + Hs) / t + 2 * T * Hs * Ps * h / t
            + 2 * T * Qs * (Gs * Ns + Hs * Ps) / t + 4 * T * Hs * Ps * Ns / t)
    assert_expr_equal(got, want)


def test_all_fields_symbolic_evaluate_to_the_numeric_call():
    """Every shape field and t a symbol: evaluating at a point equals the numeric call."""
    lay = Mamba2Layer(parallelism={"tensor_parallel": t})
    point = {h: HID, Hs: NH, Ps: HD, Ns: NS, Gs: NG, ks: K, Qs: Q, t: 2, b: BATCH, s: SEQ}
    numeric = layer(parallelism={"tensor_parallel": 2})
    for phase in ("prefill", "decode", "training"):
        got = lay.compute_metrics(phase=phase).evaluate(point, hardware="h100-ideal", dtype="bf16")
        want = metrics(numeric, phase, hardware="h100-ideal")
        for field in METRIC_FIELDS:
            assert getattr(got, field) == getattr(want, field), (phase, field)
        assert got.collectives == want.collectives


def test_float64_sweep_agrees_with_the_exact_counts():
    """The chunk count (floor, Mod) sweeps in float64 to the exact numbers at s = 16, 20, 5."""
    np = pytest.importorskip("numpy")
    from symcost import sweep

    m = layer().compute_metrics(batch_size=BATCH, phase="prefill", dtype="bf16")
    got = sweep(m.matmul_flops_per_chip, seq_len=np.array([16, 20, 5]))
    want = [metrics(layer(), "prefill", sl=x).matmul_flops_per_chip for x in (16, 20, 5)]
    assert list(got) == [float(w) for w in want] and want[1] == PREFILL_MATMUL


# -- the state cache ---------------------------------------------------------------------------

def test_state_cache_by_hand():
    """b((k - 1)C e + HPN e_ssm): 2*(3*192*2 + 4*32*16*2) = 10496 bytes in bf16; with an fp32
    SSM state 2*(3*192*2 + 2048*4) = 18688."""
    assert metrics(layer(), "decode").kv_cache_memory_per_chip == 2 * (3 * 192 * 2 + 4 * 32 * 16 * 2) == 10496
    fp32 = layer(ssm_state_dtype="fp32")
    assert metrics(fp32, "decode").kv_cache_memory_per_chip == 2 * (3 * 192 * 2 + 2048 * 4) == 18688
    assert metrics(layer(), "prefill").kv_cache_memory_per_chip == 10496
    assert metrics(layer(), "training").kv_cache_memory_per_chip == 0


def test_symbolic_state_cache_has_no_s():
    want = b * ((ks - 1) * (Hs * Ps + 2 * Gs * Ns) * e + Hs * Ps * Ns * e)
    for phase in ("prefill", "decode"):
        got = Mamba2Layer().compute_metrics(phase=phase).kv_cache_memory_per_chip
        assert_expr_equal(got, want)
        assert s not in sp.sympify(got).free_symbols


@pytest.mark.parametrize("sl", [1, 7, 4096, 1 << 20])
def test_state_cache_is_constant_in_s(sl):
    assert metrics(layer(), "decode", sl=sl).kv_cache_memory_per_chip == 10496


def test_decode_reads_and_writes_the_state():
    """The state update reads and writes the b*H*P*N state (at e_ssm) and reads x, B and C."""
    m = metrics(layer(ssm_state_dtype="fp32"), "decode")
    (update,) = [o for o, _ in m.ops if o.name == "ssm_update"]
    state = BATCH * NH * HD * NS * 4
    assert update.write_bytes == state
    assert update.read_bytes == state + BATCH * (D_IN + 2 * NG * NS) * 2


# -- memory ------------------------------------------------------------------------------------

def test_saved_activations_by_hand():
    """mamba_ssm's fused path saves in_proj's input and output and y: T*(h + 324 + 128)*e;
    full recompute keeps the input only."""
    T = BATCH * SEQ
    assert metrics(layer(), "training").activation_memory_per_chip == T * (64 + 324 + 128) * 2 == 41280
    assert metrics(layer(), "training", recompute="full").activation_memory_per_chip == T * 64 * 2


def test_peak_activations_by_hand():
    """Decode: 2Th + T(n_in + C + 2H + 2d) at T = b; prefill adds the C Bᵀ blocks b*G*Σl² and the
    chunk states b*c*H*P*N."""
    dec = BATCH * (2 * HID + N_IN + CH + 2 * NH + 2 * D_IN)
    assert metrics(layer(), "decode").activation_memory_per_chip == dec * 2
    T = BATCH * SEQ
    pre = T * (2 * HID + N_IN + CH + 2 * NH + 2 * D_IN) + BATCH * (NG * 144 + 3 * NH * HD * NS)
    assert metrics(layer(), "prefill").activation_memory_per_chip == pre * 2


# -- tensor parallelism ------------------------------------------------------------------------

@pytest.mark.parametrize("phase", ["prefill", "decode", "training"])
def test_tp_splits_everything(phase):
    """Heads and groups split 2 ways: per-chip matmul FLOPs, weights and state cache x 2 = total."""
    one, two = metrics(layer(), phase), metrics(layer(parallelism={"tensor_parallel": 2}), phase)
    assert 2 * two.matmul_flops_per_chip == one.matmul_flops_per_chip
    assert 2 * two.weight_memory_per_chip == one.weight_memory_per_chip
    assert 2 * two.kv_cache_memory_per_chip == one.kv_cache_memory_per_chip


def test_tp_collectives():
    """One all-reduce of b*s*h*e leaving out_proj (40*64*2 = 5120 bytes); in training one more
    for in_proj's input gradient; decode b*h*e = 256."""
    lay = layer(parallelism={"tensor_parallel": 2})
    (c,) = metrics(lay, "prefill").collectives
    assert (c.kind, c.axis, c.group_size, c.payload_bytes, c.count) == ("all_reduce", "tp", 2, 5120, 1)
    (c,) = metrics(lay, "training").collectives
    assert (c.kind, c.payload_bytes, c.count) == ("all_reduce", 5120, 2)
    (c,) = metrics(lay, "decode").collectives
    assert (c.kind, c.payload_bytes) == ("all_reduce", 256)
    assert metrics(layer(), "prefill").collectives == ()


def test_megatron_sequence_parallel():
    lay = layer(parallelism={"tensor_parallel": 2, "sequence_parallel": "tp"})
    kinds = sorted(c.kind for c in metrics(lay, "prefill").collectives)
    assert kinds == ["all_gather", "reduce_scatter"]


@pytest.mark.parametrize("kw, field", [
    (dict(parallelism={"tensor_parallel": 4}), "num_groups"),        # G = 2
    (dict(num_groups=1, parallelism={"tensor_parallel": 2}), "num_groups"),
    (dict(num_groups=8, num_heads=8, parallelism={"tensor_parallel": 16}), "num_heads"),
    (dict(num_groups=3), "num_heads must be divisible by num_groups"),
])
def test_indivisible_degrees_are_refused(kw, field):
    with pytest.raises(ValueError, match=field):  # pydantic's ValidationError, a ValueError
        layer(**kw)


def test_ulysses_is_refused():
    with pytest.raises(ValueError, match="sequence_parallel must be 1"):
        layer(parallelism={"sequence_parallel": 2})


def test_context_parallel_is_refused():
    """A CP split of the scan would need the state passed between ranks, which is not counted."""
    with pytest.raises(ValueError, match="context_parallel must be 1 for Mamba2Layer"):
        layer(parallelism={"context_parallel": 2})
    assert layer(parallelism={"context_parallel": 1}).parallelism.cp == 1


# -- PyTorch FlopCounterMode on a plain-torch Mamba-2 --------------------------------------------
#
# The module below follows mamba_ssm/modules/mamba2.py (in_proj, causal depthwise conv, SiLU,
# softplus dt, gated RMSNorm, out_proj) with the SSD scan written as ssd_minimal.py's four steps,
# chunk by chunk (the last chunk shorter), B and C per group, and the state passed between
# chunks elementwise (as the kernels do; ssd_minimal's einsum over chunks would add
# 2*b*H*(c+1)^2*P*N). FlopCounterMode counts its mm/bmm (the projections and the scan's einsums)
# and the convolution (aten.convolution, 2*T*C*k); the rest is elementwise and counted 0.


def _torch():
    return pytest.importorskip("torch")


def reference_mamba2(h_=HID, nh=NH, hd=HD, n=NS, g=NG, k=K, q=Q):
    torch = _torch()
    F = torch.nn.functional
    d, ch = nh * hd, nh * hd + 2 * g * n

    class Mamba2(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.in_proj = torch.nn.Linear(h_, 2 * d + 2 * g * n + nh, bias=False)
            self.conv1d = torch.nn.Conv1d(ch, ch, k, groups=ch, bias=True)
            self.dt_bias = torch.nn.Parameter(torch.rand(nh))
            self.A_log = torch.nn.Parameter(torch.rand(nh))
            self.D = torch.nn.Parameter(torch.rand(nh))
            self.norm_weight = torch.nn.Parameter(torch.ones(d))
            self.out_proj = torch.nn.Linear(d, h_, bias=False)

        def _gate_norm_out(self, y, z):
            y = y * F.silu(z)
            y = y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-5) * self.norm_weight
            return self.out_proj(y)

        def _ssd(self, x, dt, B, C, state):
            """x (b, s, G, H/G, P), dt (b, s, H), B and C (b, s, G, N), the entering state
            (b, G, H/G, P, N): y like x and the final state."""
            bsz, sl = x.shape[:2]
            A = -torch.exp(self.A_log)
            out = []
            for start in range(0, sl, q):
                xc, Bc, Cc = x[:, start:start + q], B[:, start:start + q], C[:, start:start + q]
                n_l = xc.shape[1]
                dA = (dt[:, start:start + q] * A).view(bsz, n_l, g, nh // g)
                cs = torch.cumsum(dA, dim=1)                             # (b, l, G, H/G)
                xdt = xc * dt[:, start:start + q].view(bsz, n_l, g, nh // g, 1)
                # step 1: C Bᵀ per group, masked by L = exp(segsum), times X per head
                cb = torch.einsum("blgn,bsgn->bgls", Cc, Bc)
                seg = cs.permute(0, 2, 3, 1)[..., :, None] - cs.permute(0, 2, 3, 1)[..., None, :]
                L = torch.exp(seg) * torch.tril(torch.ones(n_l, n_l, dtype=x.dtype))
                y_diag = torch.einsum("bgels,bsgep->blgep", cb[:, :, None] * L, xdt)
                # step 2: the chunk's state, X scaled by the decay to the chunk's end
                decay = torch.exp(cs[:, -1:] - cs)[..., None]
                chunk_state = torch.einsum("blgn,blgep->bgepn", Bc, xdt * decay)
                # step 4: the entering state to the output
                y_off = torch.einsum("blgn,bgepn->blgep", Cc, state) * torch.exp(cs)[..., None]
                # step 3: pass the state on (elementwise)
                state = torch.exp(cs[:, -1])[..., None, None] * state + chunk_state
                out.append(y_diag + y_off)
            return torch.cat(out, dim=1), state

        def forward(self, u, state=None):
            """The output and the final SSM state (mamba_ssm's ``return_final_states``)."""
            bsz, sl, _ = u.shape
            if state is None:
                state = torch.zeros(bsz, g, nh // g, hd, n, dtype=u.dtype)
            z, xbc, dt = torch.split(self.in_proj(u), [d, ch, nh], dim=-1)
            xbc = F.silu(self.conv1d(F.pad(xbc.transpose(1, 2), (k - 1, 0))).transpose(1, 2))
            x, B, C = torch.split(xbc, [d, g * n, g * n], dim=-1)
            dt = F.softplus(dt + self.dt_bias)
            xs = x.reshape(bsz, sl, g, nh // g, hd)
            y, state = self._ssd(xs, dt, B.reshape(bsz, sl, g, n), C.reshape(bsz, sl, g, n), state)
            y = y + xs * self.D.view(g, nh // g, 1)
            return self._gate_norm_out(y.reshape(bsz, sl, d), z), state

        def step(self, u, conv_state, ssm_state):
            """One decode token: u (b, h), conv_state (b, C, k - 1), ssm_state (b, G, H/G, P, N)."""
            bsz = u.shape[0]
            z, xbc, dt = torch.split(self.in_proj(u), [d, ch, nh], dim=-1)
            window = torch.cat([conv_state, xbc[..., None]], dim=-1)
            xbc = F.silu((window * self.conv1d.weight[:, 0]).sum(-1) + self.conv1d.bias)
            x, B, C = torch.split(xbc, [d, g * n, g * n], dim=-1)
            dt = F.softplus(dt + self.dt_bias).view(bsz, g, nh // g)
            dA = torch.exp(dt * -torch.exp(self.A_log).view(g, nh // g))
            xs = x.view(bsz, g, nh // g, hd)
            Bg, Cg = B.view(bsz, g, 1, 1, n), C.view(bsz, g, n)
            state = ssm_state * dA[..., None, None] + (xs * dt[..., None])[..., None] * Bg
            y = torch.einsum("bgepn,bgn->bgep", state, Cg) + xs * self.D.view(g, nh // g, 1)
            return self._gate_norm_out(y.reshape(bsz, d), z)

    return Mamba2()


def torch_counts(module, phase, bs=BATCH, sl=SEQ):
    """(mm/bmm FLOPs, convolution FLOPs) FlopCounterMode counts for one symcost phase."""
    torch = _torch()
    from torch.utils.flop_counter import FlopCounterMode

    if phase == "decode":
        args = (torch.randn(bs, HID), torch.randn(bs, CH, K - 1), torch.randn(bs, NG, NH // NG, HD, NS))

        def run():
            with torch.no_grad():
                module.step(*args)
    elif phase == "training":
        # NB: an entering state that needs a gradient and the final state in the loss (as when
        # training with initial_states / return_final_states): else autograd skips the first
        # chunk's d(state) and the last chunk's state products, which the kernels still run
        x = torch.randn(bs, sl, HID, requires_grad=True)
        state = torch.randn(bs, NG, NH // NG, HD, NS, requires_grad=True)

        def run():
            y, final = module(x, state)
            (y.sum() + final.sum()).backward()
    else:
        x = torch.randn(bs, sl, HID)

        def run():
            with torch.no_grad():
                module(x)
    with FlopCounterMode(display=False) as counter:
        run()
    by_op = {str(op): n for op, n in counter.get_flop_counts()["Global"].items()}
    conv = sum(n for op, n in by_op.items() if "convolution" in op)
    # NB: only the forward convolution is compared: torch 2.13 prices a depthwise
    # convolution_backward as if the convolution were dense (193x the forward here)
    mm = sum(n for op, n in by_op.items() if op in ("aten.mm", "aten.bmm", "aten.addmm"))
    assert mm + conv == counter.get_total_flops()
    return mm, by_op.get("aten.convolution", 0)


@pytest.mark.parametrize("sl", [SEQ, 16, 5])
def test_prefill_matmuls_match_torch(sl):
    """Projections and the four SSD products equal FlopCounterMode's mm/bmm count (s = 20: a short
    last chunk; 16: whole chunks; 5: one short chunk); its convolution count is 2*T*C*k."""
    mm, conv = torch_counts(reference_mamba2(), "prefill", sl=sl)
    assert mm == metrics(layer(), "prefill", sl=sl).matmul_flops_per_chip
    assert conv == 2 * BATCH * sl * CH * K


def test_decode_matmuls_match_torch():
    mm, conv = torch_counts(reference_mamba2(), "decode")
    assert mm == metrics(layer(), "decode").matmul_flops_per_chip == DECODE_MATMUL
    assert conv == 0  # the conv step is a window product, elementwise


def test_training_matmuls_match_torch():
    """Forward and backward: every mm/bmm 3x (a dX and a dW per product)."""
    mm, conv = torch_counts(reference_mamba2(), "training")
    assert mm == metrics(layer(), "training").matmul_flops_per_chip == 3 * PREFILL_MATMUL
    assert conv == 2 * BATCH * SEQ * CH * K  # the forward convolution


def test_torch_reference_scan_matches_the_recurrence():
    """The chunked reference is the SSM: it equals the token-by-token recurrence of ``step``
    (so the FLOPs above are those of a correct Mamba-2), here on the SSD output at s = 20."""
    torch = _torch()
    torch.manual_seed(0)
    mod = reference_mamba2().double()
    u = torch.randn(1, SEQ, HID, dtype=torch.float64)
    with torch.no_grad():
        full, _ = mod(u)
        conv_state = torch.zeros(1, CH, K - 1, dtype=torch.float64)
        state = torch.zeros(1, NG, NH // NG, HD, NS, dtype=torch.float64)
        outs = []
        for i in range(SEQ):
            outs.append(_step_with_state(mod, u[:, i], conv_state, state))
            conv_state, state = outs[-1][1], outs[-1][2]
    stepped = torch.stack([o[0] for o in outs], dim=1)
    assert torch.allclose(full, stepped, atol=1e-9)


def _step_with_state(mod, u, conv_state, ssm_state):
    """``mod.step`` that also returns the updated conv and SSM states (for the recurrence test)."""
    torch = _torch()
    F = torch.nn.functional
    g, nh, hd, n, d, ch = NG, NH, HD, NS, D_IN, CH
    bsz = u.shape[0]
    z, xbc, dt = torch.split(mod.in_proj(u), [d, ch, nh], dim=-1)
    window = torch.cat([conv_state, xbc[..., None]], dim=-1)
    conv = F.silu((window * mod.conv1d.weight[:, 0]).sum(-1) + mod.conv1d.bias)
    x, B, C = torch.split(conv, [d, g * n, g * n], dim=-1)
    dt = F.softplus(dt + mod.dt_bias).view(bsz, g, nh // g)
    dA = torch.exp(dt * -torch.exp(mod.A_log).view(g, nh // g))
    xs = x.view(bsz, g, nh // g, hd)
    state = ssm_state * dA[..., None, None] + (xs * dt[..., None])[..., None] * B.view(bsz, g, 1, 1, n)
    y = torch.einsum("bgepn,bgn->bgep", state, C.view(bsz, g, n)) + xs * mod.D.view(g, nh // g, 1)
    return mod._gate_norm_out(y.reshape(bsz, d), z), window[..., 1:], state
