"""Block-scaled formats (symcost/core/dtypes.py): NVFP4, MXFP4 and MXFP8 bytes with their scales,
weights and KV cache stored in them, their peaks on B200 and their refusal on chips without them.

Bytes per element, by hand from the block layouts:
- NVFP4 (NVIDIA): 16 E2M1 elements of 4 bits + one E4M3 scale of 8 bits = 72 bits per 16
  elements = 9 bytes per 16 = 9/16 byte (4.5 bits).
- MXFP4 (OCP MX v1.0): 32 E2M1 elements of 4 bits + one E8M0 scale of 8 bits = 136 bits per 32
  = 17 bytes per 32 = 17/32 byte (4.25 bits).
- MXFP8 (OCP MX v1.0): 32 E4M3 elements of 8 bits + one E8M0 scale = 264 bits per 32 = 33/32 byte.
"""

import json
import subprocess
import sys
from fractions import Fraction

import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import symcost as sc
from symcost import hardware
from symcost.core.ops import Matmul

BLOCK_BYTES = {  # (bits per block) / 8 / (elements per block), from the layouts above
    "nvfp4": Fraction(16 * 4 + 8, 8 * 16),
    "mxfp4": Fraction(32 * 4 + 8, 8 * 32),
    "mxfp8": Fraction(32 * 8 + 8, 8 * 32),
}


def test_bytes_per_element_include_one_scale_per_block():
    """9/16, 17/32 and 33/32 byte: exact Rationals, aliases parse to the same member."""
    assert BLOCK_BYTES == {"nvfp4": Fraction(9, 16), "mxfp4": Fraction(17, 32), "mxfp8": Fraction(33, 32)}
    for name, want in BLOCK_BYTES.items():
        got = sc.DataType(name).bytes
        assert isinstance(got, sp.Rational) and got == sp.Rational(want.numerator, want.denominator)
        assert sc.DataType(name).is_block_scaled
    assert sc.DataType.parse("MX_FP4") is sc.DataType.MXFP4
    assert sc.DataType.parse("nv_fp4") is sc.DataType.NVFP4
    assert not sc.DataType.FP8_E4M3.is_block_scaled


# A small GQA layer: h = 64, 4 query heads and 2 KV heads of d = 16.
# Weights: Q 64*64 + K 64*32 + V 64*32 + O 64*64 = 4096 + 2048 + 2048 + 4096 = 12,288 parameters.
# Decode KV cache at b = 2, s = 128: K and V, 2 * 2 * 128 * (2 * 16) = 16,384 elements.
LAYER = sc.GroupedQueryAttentionLayer(hidden_size=64, num_heads=4, num_kv_heads=2)
HAND = {  # format: (weight bytes, KV-cache bytes)
    "nvfp4": (12288 * 9 // 16, 16384 * 9 // 16),      # 6,912 and 9,216
    "mxfp4": (12288 * 17 // 32, 16384 * 17 // 32),    # 6,528 and 8,704
    "mxfp8": (12288 * 33 // 32, 16384 * 33 // 32),    # 12,672 and 16,896
}


@pytest.mark.parametrize("fmt", sorted(HAND))
def test_small_layer_weights_and_kv_cache_in_each_format(fmt):
    """dtype=fmt stores weights and cache in it; kv_cache_dtype=fmt only the cache (weights bf16)."""
    weights, cache = HAND[fmt]
    m = LAYER.compute_metrics(batch_size=2, seq_len=128, phase="decode", dtype=fmt)
    assert (m.weight_memory_per_chip, m.kv_cache_memory_per_chip) == (weights, cache)
    kv_only = LAYER.model_copy(update={"kv_cache_dtype": sc.DataType(fmt)})
    m = kv_only.compute_metrics(batch_size=2, seq_len=128, phase="decode", dtype="bf16")
    assert (m.weight_memory_per_chip, m.kv_cache_memory_per_chip) == (12288 * 2, cache)


def test_symbolic_weights_carry_the_scale_overhead():
    """Symbolic h: the MLP's 2 h f weights at 9/16 byte are 9 h f / 8 bytes."""
    mlp = sc.MLPLayer()
    got = mlp.compute_metrics(phase="decode", dtype="nvfp4").weight_memory_per_chip
    assert sp.cancel(got - sp.Rational(9, 8) * sc.symbols.hidden_size * sc.symbols.intermediate_size) == 0


def test_model_kv_cache_dtype_in_a_block_scaled_format():
    """Model.llama(kv_cache_dtype="mxfp4"): 2 layers, h = 64, 2 KV heads of 16, b = 1, s = 64:
    2 layers * 2 (K, V) * 64 tokens * 32 = 8,192 elements * 17/32 = 4,352 bytes."""
    model = sc.Model.llama(hidden_size=64, num_heads=4, num_kv_heads=2, num_layers=2, vocab_size=128,
                           intermediate_size=128, kv_cache_dtype="mxfp4")
    m = model.compute_metrics(batch_size=1, seq_len=64, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == 8192 * 17 // 32 == 4352


def test_b200_fp4_gemm_time_by_hand():
    """An 8192^3 GEMM in NVFP4 on the ideal B200: 2 * 8192^3 FLOPs at 9 PFLOP/s dense (Blackwell
    datasheet: 18 PFLOPS FP4 with sparsity), i.e. 2^40 / (9 * 10^15) s = 122 us; its bytes
    (3 * 8192^2 * 9/16 = 113,246,208 at 7.7 TB/s = 14.7 us) do not bind. Twice as fast as FP8."""
    b200 = hardware.get("B200")
    ideal = b200.ideal()
    mm = Matmul("w", m=8192, n=8192, k=8192, dtype_bytes=sc.DataType.NVFP4.bytes)
    assert mm.hbm_bytes == 3 * 8192**2 * 9 // 16 == 113246208
    t = sc.hardware.timing.op_time(mm, ideal, ideal.effective_peak("nvfp4"), sc.DataType.NVFP4)
    assert t.compute == sp.Rational(2**40, 9 * 10**15)
    assert t.time == t.compute
    assert ideal.peak("mxfp4") == ideal.peak("nvfp4") == 2 * ideal.peak("fp8_e4m3")
    assert ideal.peak("mxfp8") == ideal.peak("fp8_e4m3") == 4500 * 10**12
    # the realistic B200: its NVFP4 terms are fitted on its own NVFP4 GEMM table (presets/b200.json),
    # a lower fraction of the peak than FP8's; 64 x 128 tiles: 128 * 64 = 8,192 tiles on 148 SMs
    # = 1 + ceil(8044/148) = 56 waves. Quantizing the 8192 x 8192 input moves q4 bytes per element
    # in a pass of its own, and the kernel's fixed time is the 4-bit class's
    eta4 = b200.matmul_efficiency_4bit
    assert b200.matmul_efficiency_for("nvfp4") == eta4 < b200.matmul_efficiency_for("fp8_e4m3") < 1
    real = sc.hardware.timing.op_time(mm, b200, b200.effective_peak("nvfp4"), sc.DataType.NVFP4)
    flops = 2 * 8192 * 64 * 128 * 148 * 56
    assert real.compute == sp.Rational(flops) / (9 * 10**15 * eta4)
    # and writes its 8192 x 8192 bf16 output (2 bytes each) after its main loop, at B eta_gmem
    assert real.serial == (b200.quantize_bytes_4bit * 8192**2 / (77 * 10**11)
                           + 2 * 8192**2 / (77 * 10**11 * b200.gemm_memory_efficiency))
    # compute-bound: 113 MB at 7.7 TB/s is 15 us before any efficiency, the compute 235 us
    assert real.time == real.compute + real.serial + b200.gemm_time_4bit


@pytest.mark.parametrize("chip", ["H100_SXM", "H200_SXM", "A100_SXM_80GB"])
@pytest.mark.parametrize("fmt", ["nvfp4", "mxfp4", "mxfp8"])
def test_chips_without_block_scaled_matrix_units_refuse(chip, fmt):
    """Hopper and Ampere list no block-scaled peak: a timed metric is refused with one line naming
    the chip and the format (never computed at some other format's rate); memory still works."""
    with pytest.raises(sc.errors.HardwareError, match=rf"^{chip} has no peak FLOP/s for {fmt}; .*B200\)$"):
        LAYER.compute_metrics(batch_size=1, seq_len=16, phase="prefill", dtype=fmt, hardware=chip)
    assert LAYER.compute_metrics(batch_size=2, seq_len=128, phase="decode",
                                 dtype=fmt).kv_cache_memory_per_chip == HAND[fmt][1]


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "symcost", *args], capture_output=True, text=True, timeout=120)


def test_cli_dtype_nvfp4():
    """`symcost report --dtype nvfp4` on B200: llama-3-8b's 8,030,261,248 weights at 9/16 byte
    (4,517,021,952 bytes) and its decode KV cache, 32 layers * 2 * 8192 * 8 * 128 elements at
    9/16 byte (301,989,888 bytes); on H100 one line and exit code 2."""
    out = _cli("report", "--hardware", "B200", "--dtype", "nvfp4", "--phase", "decode", "--json")
    assert out.returncode == 0, out.stderr
    memory = json.loads(out.stdout)["inference"]["memory_per_chip"]
    assert memory["weights"] == 8030261248 * 9 // 16 == 4517021952
    assert memory["kv_cache"] == 32 * 2 * 8192 * 8 * 128 * 9 // 16 == 301989888
    bad = _cli("report", "--dtype", "mxfp4", "--phase", "decode")
    assert bad.returncode == 2
    assert bad.stderr.startswith("symcost: error: H100_SXM has no peak FLOP/s for mxfp4")
    assert len(bad.stderr.strip().splitlines()) == 1


@settings(max_examples=10, deadline=None, database=None)
@given(fmt=st.sampled_from(sorted(BLOCK_BYTES)), phase=st.sampled_from(["prefill", "decode", "training"]),
       b=st.integers(1, 8), s=st.integers(1, 512), heads=st.sampled_from([(4, 1), (4, 2), (8, 8)]),
       d=st.integers(1, 32))
def test_bytes_scale_with_the_format(fmt, phase, b, s, heads, d):
    """Relation: in inference, weights and KV cache in a format are the bf16 figures times
    bytes(format) / 2, and so is HBM traffic; in training (Transformer Engine's recipes, issue
    22 item 3) the weights stay bf16 whatever the GEMMs' format; FLOPs do not change."""
    a, g = heads
    layer = sc.GroupedQueryAttentionLayer(hidden_size=a * d, num_heads=a, num_kv_heads=g)
    ref = layer.compute_metrics(batch_size=b, seq_len=s, phase=phase, dtype="bf16")
    got = layer.compute_metrics(batch_size=b, seq_len=s, phase=phase, dtype=fmt)
    ratio = BLOCK_BYTES[fmt] / 2 if phase != "training" else 1
    fields = ["weight_memory_per_chip", "kv_cache_memory_per_chip"]
    fields += ["hbm_bytes_per_chip"] if phase != "training" else []
    for field in fields:
        assert getattr(got, field) == getattr(ref, field) * ratio, field
    assert got.flops_per_chip == ref.flops_per_chip


def test_with_kv_cache_dtype_on_a_preset():
    """llama-3-8b with its cache in MXFP8, computing in bf16: KV 32 layers * 2 * 8192 * 8 * 128 =
    536,870,912 elements * 33/32 = 553,648,128 bytes; weights stay 2 bytes * 8,030,261,248."""
    model = sc.models.get("llama-3-8b").with_kv_cache_dtype("mxfp8")
    m = model.compute_metrics(batch_size=1, seq_len=8192, phase="decode", dtype="bf16")
    assert m.kv_cache_memory_per_chip == 536870912 * 33 // 32 == 553648128
    assert m.weight_memory_per_chip == 2 * 8030261248
    assert model.with_kv_cache_dtype(None) == sc.models.get("llama-3-8b")
    with pytest.raises(sc.errors.ConfigError, match="MLALayer has no KV-cache format of its own"):
        sc.models.get("deepseek-v3").with_kv_cache_dtype("nvfp4")


def test_cli_kv_dtype(capsys):
    """`--dtype fp8_e4m3 --kv-dtype nvfp4` on B200: weights 1 byte each (8,030,261,248), cache
    at 9/16 byte (301,989,888, as above)."""
    from symcost.cli.main import main

    assert main(["report", "--hardware", "B200", "--dtype", "fp8_e4m3", "--kv-dtype", "nvfp4",
                 "--phase", "decode", "--json"]) == 0
    memory = json.loads(capsys.readouterr().out)["inference"]["memory_per_chip"]
    assert (memory["weights"], memory["kv_cache"]) == (8030261248, 301989888)


def test_a_fused_gemm_writes_its_output_too():
    """Review finding: the ``up`` half of a gate-and-up fc1 runs inside its partner's kernel (no
    kernel, no floor, no quantizing pass of its own), but the fused kernel writes both halves'
    outputs, ``[m, 2f]`` in bf16: ``up``'s serial write was dropped (B200, NVFP4, m 4096, f 14336:
    2 * 4096 * 14336 bytes at B eta_gmem, 20.2 us). Each half writes ``2 m f / (B eta_gmem)``, in
    a fused kernel as in two; under one GEMM per expert (Megatron-Core) too."""
    b200 = hardware.get("B200")
    peak = b200.effective_peak("nvfp4")
    write = sp.Integer(2 * 4096 * 14336) / (77 * 10**11 * b200.gemm_memory_efficiency)
    for name in ("gate", "up"):
        mm = Matmul(name, m=4096, n=14336, k=4096, dtype_bytes=sc.DataType.NVFP4.bytes)
        t = sc.hardware.timing.op_time(mm, b200, peak, sc.DataType.NVFP4)
        quantize = 0 if name == "up" else b200.quantize_bytes_4bit * 4096 * 4096 / (77 * 10**11)
        assert t.serial == quantize + write, name
    mega = b200.with_runtime("megatron-core")
    up = Matmul("experts.up", m=512, n=1536, k=4096, batch=8, dtype_bytes=sc.DataType.NVFP4.bytes, grouped=True)
    t = sc.hardware.timing.op_time(up, mega, mega.effective_peak("nvfp4"), sc.DataType.NVFP4)
    assert t.serial == sp.Integer(2 * 8 * 512 * 1536) / (77 * 10**11 * mega.gemm_memory_efficiency)
