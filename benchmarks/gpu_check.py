"""Measured kernel times on a real GPU against symcost's predictions (optional; needs CUDA).

    python benchmarks/gpu_check.py [--out results.json]
    python benchmarks/gpu_check.py --micro --out h200_micro.csv      (raw microbenchmarks)
    python benchmarks/gpu_check.py --micro --dry-run --out x.csv      (every path, tiny, on the CPU)

Runs bf16 PyTorch versions of the seed layers (eager ops, flash SDPA) on the GPU, times them with
CUDA events, and prints symcost's predicted latency for the same shapes on the matching preset
(H100_SXM or H200_SXM), with the ratio measured / predicted. A ratio above 1 is time the
roofline does not see (kernel efficiency, launch overhead); the first two rows measure the
chip's achieved matmul FLOP/s and HBM bandwidth against the datasheet. Never run by the tests.

``--micro`` (issue 10) measures what the efficiency model is fitted to and writes one CSV row per
case (date, gpu, benchmark, dtype, params, seconds, rate, rate_unit), in under ~4 minutes on an
H200: GEMM time against (M, N, K) in BF16 and FP8 (``torch._scaled_mm``, compute capability
>= 8.9) for decode-like M = 1..256 and prefill-like M = 512..16384 on Llama-3-8B's projection
shapes; HBM copy and GEMV bandwidth; the minimum kernel time (eager launches and a CUDA graph);
flash attention (SDPA, flash backend) prefill and decode over long KV caches. Inputs smaller than
the L2 cache rotate through enough copies to read from HBM. A kernel that is unavailable is
skipped with one line saying why. Uses torch only.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import functools
import json
import math
import time
from fractions import Fraction
from typing import NamedTuple


def timed(fn, warmup=5, iters=20):
    """Mean seconds per call, by CUDA events (or wall clock on the CPU)."""
    import torch

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
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) / iters


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None,
                        help="JSON of the layer checks, or with --micro the CSV of the microbenchmarks")
    parser.add_argument("--small", action="store_true", help="tiny shapes, to check the script on a CPU")
    parser.add_argument("--micro", action="store_true",
                        help="raw microbenchmarks (GEMM BF16/FP8, copy, GEMV, kernel time, flash attention)")
    parser.add_argument("--dry-run", action="store_true",
                        help="with --micro: every benchmark at tiny sizes on the CPU (checks the code paths)")
    args = parser.parse_args(argv)
    if args.micro:
        micro(args.out, dry_run=args.dry_run)
        return
    check(args.out, args.small)


def check(out, small_only) -> None:
    """The layer checks: measured against predicted (see the module docstring)."""
    import torch
    import torch.nn.functional as F

    import symcost as sc
    from symcost import hardware

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    chip = hardware.H200_SXM if "H200" in name else hardware.H100_SXM
    dt = torch.bfloat16 if device == "cuda" else torch.float32
    small = small_only or device == "cpu"
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

    if out:
        with open(out, "w") as fh:
            json.dump({"device": name, "preset": chip.name, "rows": rows}, fh, indent=2)


# -- microbenchmarks (--micro) ------------------------------------------------------------------

L2_DEFEAT_BYTES = 256 * 2**20
"""Inputs smaller than this rotate through copies adding up to it (H200 L2: 50 MB), so each
timed call reads from HBM, not from the cache the previous call filled."""

LLAMA3_8B_PROJECTIONS = ((6144, 4096), (4096, 4096), (28672, 4096), (4096, 14336))
"""(N, K) of Llama-3-8B's matmuls: fused QKV (32 + 2 * 8 heads of 128), output, fused gate + up
(2 * 14336), down."""


def _timer(torch, device, dry_run):
    """``measure(fns)``: mean seconds per call of the callables called in turn (CUDA events on the
    GPU); warm-ups first, then enough calls for ~50 ms (5 to 500; 2 in a dry run)."""

    def clock(fns, n):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for i in range(n):
                fns[i % len(fns)]()
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / 1e3
        t = time.perf_counter()
        for i in range(n):
            fns[i % len(fns)]()
        return time.perf_counter() - t

    def measure(fns):
        if callable(fns):
            fns = [fns]
        if dry_run:
            clock(fns, 1)
            return clock(fns, 2) / 2
        clock(fns, max(3, len(fns)))
        estimate = clock(fns, 3) / 3
        n = min(500, max(5, int(0.05 / max(estimate, 1e-7))))
        return clock(fns, n) / n

    return measure


def _copies(make, nbytes, dry_run):
    """Enough copies of ``make()`` (``nbytes`` each) to defeat the L2 cache, at most 64."""
    count = 1 if dry_run else min(64, max(1, math.ceil(L2_DEFEAT_BYTES / nbytes)))
    return [make() for _ in range(count)]


class _Sizes(NamedTuple):
    """The shapes the microbenchmarks sweep: Llama-3-8B's on the GPU, tiny in a dry run."""

    projections: tuple
    decode_m: tuple
    prefill_m: tuple
    copy_bytes: tuple
    gemv_shapes: tuple
    prefill_s: tuple
    decode_b: tuple
    decode_l: tuple
    heads: int
    kv_heads: int
    head_dim: int


def _sizes(dry_run) -> _Sizes:
    if dry_run:
        return _Sizes(projections=((32, 64),), decode_m=(1, 16), prefill_m=(32,),
                      copy_bytes=(2**16,), gemv_shapes=((64, 64),),
                      prefill_s=(64,), decode_b=(1, 2), decode_l=(128,),
                      heads=4, kv_heads=2, head_dim=16)
    return _Sizes(projections=LLAMA3_8B_PROJECTIONS,
                  decode_m=(1, 2, 4, 8, 16, 32, 64, 128, 256),
                  prefill_m=(512, 1024, 2048, 4096, 8192, 16384),
                  copy_bytes=(2**20, 2**24, 2**28, 2**31),
                  gemv_shapes=((4096, 4096), (14336, 4096), (4096, 14336), (28672, 8192), (32768, 32768)),
                  prefill_s=(1024, 4096, 16384, 65536), decode_b=(1, 8, 32), decode_l=(4096, 32768, 131072),
                  heads=32, kv_heads=8, head_dim=128)


class _Micro:
    """What every microbenchmark shares: torch, the device, the timer, and the CSV rows so far.
    (A plain class: the tests load this script without registering it in ``sys.modules``, which
    ``dataclasses`` needs.)"""

    def __init__(self, torch, device, gpu, date, measure, dry_run):
        self.torch, self.device, self.gpu, self.date = torch, device, gpu, date
        self.measure, self.dry_run = measure, dry_run
        self.rows = []

    def row(self, benchmark, dtype, params, seconds, amount, unit):
        rate = amount / seconds
        self.rows.append({"date": self.date, "gpu": self.gpu, "benchmark": benchmark, "dtype": dtype,
                          "params": params, "seconds": f"{seconds:.6e}", "rate": f"{rate:.6e}",
                          "rate_unit": unit})
        print(f"{benchmark:14s} {dtype:9s} {params:38s} {seconds * 1e6:12.2f} us  {rate:11.4e} {unit}")

    def skip(self, what, error):
        print(f"skipped {what}: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}")

    def copies(self, make, nbytes):
        return _copies(make, nbytes, self.dry_run)


def micro(out, dry_run=False) -> None:
    """Run the microbenchmarks; print one line per case and write the CSV to ``out``."""
    import torch

    device = "cuda" if torch.cuda.is_available() and not dry_run else "cpu"
    if device == "cpu" and not dry_run:
        raise SystemExit("--micro needs a CUDA GPU (use --dry-run to check the code paths on the CPU)")
    gpu = torch.cuda.get_device_name() if device == "cuda" else "cpu (dry run)"
    date = datetime.date.today().isoformat()
    run = _Micro(torch, device, gpu, date, _timer(torch, device, dry_run), dry_run)
    sizes = _sizes(dry_run)

    started = time.perf_counter()
    print(f"device: {gpu}; torch {torch.__version__}; {date}")
    with torch.no_grad():
        _gemm(run, sizes)
        _copy(run, sizes)
        _gemv(run, sizes)
        _kernel_time(run)
        _flash(run, sizes)

    print(f"{len(run.rows)} cases in {time.perf_counter() - started:.1f} s")
    if out:
        _write_csv(out, run.rows)


def _gemm(run, sizes) -> None:
    # GEMM: y[M, N] = x[M, K] @ w[N, K]^T, BF16 and FP8 (per-tensor scales, BF16 out)
    torch, device, bf16 = run.torch, run.device, run.torch.bfloat16
    fp8 = _fp8_available(run)
    for n, k in sizes.projections + ((8192, 8192),) * (not run.dry_run):
        ws = run.copies(functools.partial(torch.randn, n, k, device=device, dtype=bf16), 2 * n * k)
        ws8 = [w.to(torch.float8_e4m3fn) for w in ws] if fp8 else []
        one = torch.ones((), device=device, dtype=torch.float32)
        for m in sizes.decode_m + sizes.prefill_m if (n, k) != (8192, 8192) else (8192,):
            x = torch.randn(m, k, device=device, dtype=bf16)
            params = f"m={m} n={n} k={k}"
            t = run.measure([functools.partial(torch.matmul, x, w.t()) for w in ws])
            run.row("gemm", "bf16", params, t, 2 * m * n * k, "FLOP/s")
            if ws8:
                _gemm_fp8(run, x, ws8, one, params, 2 * m * n * k)
        del ws, ws8


def _fp8_available(run) -> bool:
    torch = run.torch
    fp8 = hasattr(torch, "float8_e4m3fn") and hasattr(torch, "_scaled_mm")
    if run.device == "cuda" and torch.cuda.get_device_capability() < (8, 9):
        fp8 = False
        print(f"skipped fp8 gemm: compute capability {torch.cuda.get_device_capability()} < (8, 9)")
    return fp8


def _gemm_fp8(run, x, ws8, one, params, flops) -> None:
    torch, bf16 = run.torch, run.torch.bfloat16
    x8 = x.to(torch.float8_e4m3fn)
    try:
        torch._scaled_mm(x8, ws8[0].t(), scale_a=one, scale_b=one, out_dtype=bf16)
    except (RuntimeError, NotImplementedError) as error:
        run.skip(f"fp8 gemm {params}", error)
        return
    t = run.measure([functools.partial(torch._scaled_mm, x8, w.t(), scale_a=one, scale_b=one,
                                       out_dtype=bf16) for w in ws8])
    run.row("gemm", "fp8_e4m3", params, t, flops, "FLOP/s")


def _copy(run, sizes) -> None:
    # HBM copy: bytes counted read + written
    torch = run.torch
    for nbytes in sizes.copy_bytes:
        src_ = torch.empty(nbytes, device=run.device, dtype=torch.uint8)
        dst = torch.empty_like(src_)
        t = run.measure(functools.partial(dst.copy_, src_))
        run.row("copy", "uint8", f"bytes={nbytes}", t, 2 * nbytes, "B/s")
        del src_, dst


def _gemv(run, sizes) -> None:
    # GEMV: y[N] = w[N, K] @ x[K], rate = weight bytes read per second
    torch, device, bf16 = run.torch, run.device, run.torch.bfloat16
    for n, k in sizes.gemv_shapes:
        ws = run.copies(functools.partial(torch.randn, n, k, device=device, dtype=bf16), 2 * n * k)
        x = torch.randn(k, device=device, dtype=bf16)
        t = run.measure([functools.partial(torch.mv, w, x) for w in ws])
        run.row("gemv", "bf16", f"n={n} k={k}", t, 2 * n * k, "B/s")
        del ws


def _kernel_time(run) -> None:
    # minimum kernel time: back-to-back one-element kernels, eager and replayed from a graph
    tiny = run.torch.zeros(1, device=run.device)
    t = run.measure(lambda: tiny.add_(1))
    run.row("kernel_eager", "fp32", "numel=1", t, 1, "kernels/s")
    if run.device == "cuda":
        try:
            _kernel_graph(run, tiny)
        except RuntimeError as error:
            run.skip("kernel_graph", error)
    else:
        print("skipped kernel_graph: CUDA graphs need a GPU")


def _kernel_graph(run, tiny) -> None:
    torch = run.torch
    graph, per_graph = torch.cuda.CUDAGraph(), 100
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        tiny.add_(1)
    torch.cuda.current_stream().wait_stream(stream)
    with torch.cuda.graph(graph):
        for _ in range(per_graph):
            tiny.add_(1)
    t = run.measure(graph.replay) / per_graph
    run.row("kernel_graph", "fp32", f"numel=1 kernels_per_graph={per_graph}", t, 1, "kernels/s")


def _flash(run, sizes) -> None:
    # flash attention (SDPA, flash backend), GQA
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError as error:
        run.skip("flash attention", error)
        return
    import torch.nn.functional as F

    def attention(q, k, v, causal):
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=True)

    _flash_prefill(run, sizes, attention)
    _flash_decode(run, sizes, attention)


def _flash_fns(run, attention, what, q, kvs, causal):
    """The callables to time (one per K/V pair) and a note, or None with a line why not:
    grouped K/V heads first; expanded to every query head where the kernel refuses them."""
    try:
        attention(q, *kvs[0], causal)
        return [functools.partial(attention, q, k, v, causal) for k, v in kvs], ""
    except RuntimeError as error:
        run.skip(f"{what} with grouped KV heads (enable_gqa)", error)
    group = q.shape[1] // kvs[0][0].shape[1]
    kvs = [tuple(x.repeat_interleave(group, dim=1) for x in kv) for kv in kvs]
    try:
        attention(q, *kvs[0], causal)
    except RuntimeError as error:
        run.skip(what, error)
        return None
    return [functools.partial(attention, q, k, v, causal) for k, v in kvs], " kv_expanded"


def _flash_prefill(run, sizes, attention) -> None:
    torch, device, bf16 = run.torch, run.device, run.torch.bfloat16
    h, g, d = sizes.heads, sizes.kv_heads, sizes.head_dim
    for s in sizes.prefill_s:
        q = torch.randn(1, h, s, d, device=device, dtype=bf16)
        kv = tuple(torch.randn(1, g, s, d, device=device, dtype=bf16) for _ in range(2))
        params = f"b=1 s={s} h={h} g={g} d={d} causal"
        timed_fns = _flash_fns(run, attention, f"flash prefill {params}", q, [kv], True)
        if timed_fns is not None:
            # causal: QK^T and PV, 2 * s^2 * d FLOPs each per head, half the square
            run.row("flash_prefill", "bf16", params + timed_fns[1], run.measure(timed_fns[0]),
                    2 * h * s * s * d, "FLOP/s")
        del q, kv, timed_fns


def _flash_decode(run, sizes, attention) -> None:
    torch, device, bf16 = run.torch, run.device, run.torch.bfloat16
    h, g, d = sizes.heads, sizes.kv_heads, sizes.head_dim
    for b in sizes.decode_b:
        for length in sizes.decode_l:
            kv_bytes = 2 * b * g * length * d * 2  # K and V, bf16
            shape = (b, g, length, d)
            caches = run.copies(lambda shape=shape: tuple(torch.randn(*shape, device=device, dtype=bf16)
                                                          for _ in range(2)), kv_bytes)
            q = torch.randn(b, h, 1, d, device=device, dtype=bf16)
            params = f"b={b} kv_len={length} h={h} g={g} d={d}"
            timed_fns = _flash_fns(run, attention, f"flash decode {params}", q, caches, False)
            if timed_fns is not None:
                read = kv_bytes * (h // g if timed_fns[1] else 1)  # K and V bytes read per call
                run.row("flash_decode", "bf16", params + timed_fns[1], run.measure(timed_fns[0]), read, "B/s")
            del caches, q, timed_fns


def _write_csv(out, rows) -> None:
    with open(out, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["date"])
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
