"""Measured kernel times on a real GPU against symcost's predictions (optional; needs CUDA).

    python benchmarks/gpu_check.py [--out results.json]

Runs bf16 PyTorch versions of the seed layers (eager ops, flash SDPA) on the GPU, times them with
CUDA events, and prints symcost's predicted latency for the same shapes on the matching preset
(H100_SXM or H200_SXM), with the ratio measured / predicted. A ratio above 1 is time the
roofline does not see (kernel efficiency, launch overhead); the first two rows measure the
chip's achieved matmul FLOP/s and HBM bandwidth against the datasheet. Never run by the tests.
"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction

import torch
import torch.nn.functional as F

import symcost as sc
from symcost import hardware


def timed(fn, warmup=5, iters=20):
    """Mean seconds per call, by CUDA events (or wall clock on the CPU)."""
    for _ in range(warmup):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / 1e3 / iters
    import time
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=None)
    parser.add_argument("--small", action="store_true", help="tiny shapes, to check the script on a CPU")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    chip = hardware.H200_SXM if "H200" in name else hardware.H100_SXM
    dt = torch.bfloat16 if device == "cuda" else torch.float32
    small = args.small or device == "cpu"
    h, f, a, g, d = (256, 512, 4, 2, 64) if small else (4096, 14336, 32, 8, 128)
    s_pre, s_dec, b_dec = (128, 256, 2) if small else (4096, 8192, 8)
    n_gemm = 512 if small else 8192
    rows = []

    def row(label, measured, predicted, bound=None):
        rows.append({"case": label, "measured_s": measured, "predicted_s": float(predicted),
                     "ratio": measured / float(predicted), "bound": bound})
        print(f"{label:52s} measured {measured * 1e6:10.1f} us  predicted {float(predicted) * 1e6:10.1f} us"
              f"  ratio {measured / float(predicted):5.2f}  {bound or ''}")

    print(f"device: {name}; preset: {chip.name}; torch {torch.__version__}")
    with torch.no_grad():
        x = torch.randn(n_gemm, n_gemm, device=device, dtype=dt)
        y = torch.randn(n_gemm, n_gemm, device=device, dtype=dt)
        t = timed(lambda: x @ y)
        row(f"gemm {n_gemm}^3 (vs dense bf16 peak)", t, Fraction(2 * n_gemm**3, chip.peak("bf16")))
        big = torch.empty(2**28 if not small else 2**20, device=device, dtype=torch.uint8)
        dst = torch.empty_like(big)
        t = timed(lambda: dst.copy_(big))
        row(f"copy {big.numel() / 1e9:.2f} GB (vs HBM bandwidth)", t,
            Fraction(2 * big.numel(), chip.hbm_bandwidth))

        # gated MLP, prefill and decode
        mlp = sc.GatedMLPLayer(hidden_size=h, intermediate_size=f)
        wg, wu = (torch.randn(h, f, device=device, dtype=dt) / h**0.5 for _ in range(2))
        wd = torch.randn(f, h, device=device, dtype=dt) / f**0.5

        def run_mlp(x):
            return (F.silu(x @ wg) * (x @ wu)) @ wd

        for label, tokens, phase, seq in (("prefill", s_pre, "prefill", s_pre), ("decode", b_dec, "decode", s_dec)):
            xx = torch.randn(tokens, h, device=device, dtype=dt)
            b = 1 if phase == "prefill" else b_dec
            m = mlp.compute_metrics(batch_size=b, seq_len=seq, phase=phase, dtype="bf16", hardware=chip)
            row(f"gated MLP {label} ({tokens} tokens)", timed(lambda xx=xx: run_mlp(xx)), m.latency, m.bound)

        # GQA attention: fused QKV, flash SDPA, output projection
        attn = sc.GroupedQueryAttentionLayer(hidden_size=h, num_heads=a, num_kv_heads=g)
        wqkv = torch.randn(h, (a + 2 * g) * d, device=device, dtype=dt) / h**0.5
        wo = torch.randn(a * d, h, device=device, dtype=dt) / (a * d) ** 0.5

        def run_attn(x, b, q_len, k_cache, v_cache):
            qkv = x @ wqkv
            q = qkv[:, : a * d].view(b, q_len, a, d).transpose(1, 2)
            if k_cache is None:
                k = qkv[:, a * d: (a + g) * d].view(b, q_len, g, d).transpose(1, 2)
                v = qkv[:, (a + g) * d:].view(b, q_len, g, d).transpose(1, 2)
            else:
                k, v = k_cache, v_cache
            o = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            return o.transpose(1, 2).reshape(b * q_len, a * d) @ wo

        xx = torch.randn(s_pre, h, device=device, dtype=dt)
        m = attn.compute_metrics(batch_size=1, seq_len=s_pre, phase="prefill", dtype="bf16", hardware=chip)
        measured = timed(lambda: run_attn(xx, 1, s_pre, None, None))
        row(f"GQA prefill flash (b=1, s={s_pre})", measured, m.latency, m.bound)
        kc = torch.randn(b_dec, g, s_dec, d, device=device, dtype=dt)
        vc = torch.randn(b_dec, g, s_dec, d, device=device, dtype=dt)
        xd = torch.randn(b_dec, h, device=device, dtype=dt)
        m = attn.compute_metrics(batch_size=b_dec, seq_len=s_dec, phase="decode", dtype="bf16", hardware=chip)
        row(f"GQA decode (b={b_dec}, {s_dec} keys)", timed(lambda: run_attn(xd, b_dec, 1, kc, vc)), m.latency, m.bound)

    # training: gated MLP forward + backward
    xt = torch.randn(s_pre, h, device=device, dtype=dt, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in (wg, wu, wd)]

    def train_step():
        out = (F.silu(xt @ params[0]) * (xt @ params[1])) @ params[2]
        out.backward(torch.ones_like(out))

    m = mlp.compute_metrics(batch_size=1, seq_len=s_pre, phase="training", dtype="bf16", hardware=chip)
    row(f"gated MLP training fwd+bwd ({s_pre} tokens)", timed(train_step), m.latency, m.bound)

    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"device": name, "preset": chip.name, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
