"""MLPLayer and GatedMLPLayer: hand-derived FLOPs, bytes, memory and communication."""

from fractions import Fraction

import pytest

import symcost as sc
from symcost import symbols as S
from symcost.core.metrics import METRIC_FIELDS
from symcost.testing import assert_expr_equal

b, s, h, f, t, e = S.batch_size, S.seq_len, S.hidden_size, S.intermediate_size, S.tp, S.dtype_bytes


def seed_metrics(phase="prefill"):
    layer = sc.MLPLayer(name="layer_0_mlp", layer_idx=0, hidden_size=4096, intermediate_size=16384,
                        parallelism={"tensor_parallel": 2, "sequence_parallel": 4})
    return layer.compute_metrics(batch_size=1, seq_len=2048, phase=phase, dtype="bf16")


def test_seed_quick_start_numbers():
    """The seed example (t = 2, Ulysses sp = 4): every field by hand."""
    m = seed_metrics()
    # tokens per chip T = 1 * 2048 / 4 = 512; f/t = 8192
    # matmuls: fc1 2*512*4096*8192 + fc2 2*512*8192*4096 = 68,719,476,736
    assert m.matmul_flops_per_chip == 2 * (2 * 512 * 4096 * 8192) == 68_719_476_736
    # GELU: 8 FLOPs per element over 512*8192 elements
    assert m.flops_per_chip == 68_719_476_736 + 8 * 512 * 8192
    # weights: 2 * 4096 * 8192 parameters at 2 bytes
    assert m.weight_memory_per_chip == 2 * 4096 * 8192 * 2 == 134_217_728
    # traffic: fc1 2*(512*4096 + 4096*8192 + 512*8192) + gelu 2*2*512*8192 + fc2 (= fc1)
    fc = 2 * (512 * 4096 + 4096 * 8192 + 512 * 8192)
    assert m.hbm_bytes_per_chip == 2 * fc + 2 * 2 * 512 * 8192 == 176_160_768
    # peak: input and output 512*4096 each, fc1 output 512*8192, at 2 bytes
    assert m.activation_memory_per_chip == 2 * (2 * 512 * 4096 + 512 * 8192)
    assert m.kv_cache_memory_per_chip == 0
    # one TP all-reduce of the chip's 512 x 4096 output: 2(n-1)/n * M = M for n = 2
    (ar,) = m.collectives
    assert (ar.kind, ar.axis, ar.group_size, ar.payload_bytes, ar.count) == (
        "all_reduce", "tp", 2, 512 * 4096 * 2, 1)
    assert m.comm_bytes_per_chip == 512 * 4096 * 2
    counts = [f for f in METRIC_FIELDS if not f.endswith(("_time", "latency"))]
    assert all(isinstance(getattr(m, name), int) for name in counts)
    # without hardware the times are formulas in the symbolic chip's rates
    assert m.latency.free_symbols


def test_training_is_three_forwards_of_matmul_flops():
    """Backward of every matmul is 2x its forward: training = 3x prefill matmul FLOPs."""
    fwd = seed_metrics("prefill").matmul_flops_per_chip
    assert seed_metrics("training").matmul_flops_per_chip == 3 * fwd


def test_training_communication_doubles():
    """Training issues the forward all-reduce and the backward one (docs/conventions.md §12)."""
    (ar,) = seed_metrics("training").collectives
    assert ar.count == 2 and ar.payload_bytes == 512 * 4096 * 2


def test_symbolic_plain_mlp():
    """Symbolic plain MLP: matmul FLOPs 4 b s h f / t, weights 2 h f e / t."""
    m = sc.MLPLayer(parallelism={"tensor_parallel": t}).compute_metrics()
    assert_expr_equal(m.matmul_flops_per_chip, 4 * b * s * h * f / t)
    assert_expr_equal(m.flops_per_chip, 4 * b * s * h * f / t + 8 * b * s * f / t)
    assert_expr_equal(m.weight_memory_per_chip, 2 * h * f * e / t)


def test_gated_mlp_counts():
    """Gated MLP with bias: 6 b s h f/t matmul FLOPs; vector work silu (4) + gate multiply (1)
    per intermediate element, bias adds on gate, up (f/t each) and down (h)."""
    m = sc.GatedMLPLayer(bias=True, parallelism={"tensor_parallel": t}).compute_metrics()
    assert_expr_equal(m.matmul_flops_per_chip, 6 * b * s * h * f / t)
    vector = (4 + 1) * b * s * f / t + 2 * b * s * f / t + b * s * h
    assert_expr_equal(m.flops_per_chip - m.matmul_flops_per_chip, vector)
    # 3 h f/t weights, column biases 2 f/t, the row bias h replicated
    assert_expr_equal(m.weight_memory_per_chip, (3 * h * f / t + 2 * f / t + h) * e)


def test_decode_processes_one_token_per_sequence():
    """Decode: T = b tokens regardless of seq_len; weights read once."""
    m = sc.GatedMLPLayer(hidden_size=4096, intermediate_size=14336).compute_metrics(
        batch_size=8, seq_len=100_000, phase="decode", dtype="bf16")
    assert m.matmul_flops_per_chip == 3 * 2 * 8 * 4096 * 14336
    weights = 3 * 4096 * 14336 * 2
    # gate, up: read 8x4096 and the weight, write 8x14336; silu: read/write 8x14336;
    # multiply: read 2, write 1 8x14336; down: read 8x14336 and weight, write 8x4096
    traffic = 2 * (2 * (8 * 4096 + 8 * 14336) + 2 * 8 * 14336 + 3 * 8 * 14336
                   + (8 * 14336 + 8 * 4096)) + weights
    assert m.hbm_bytes_per_chip == traffic
    assert m.kv_cache_memory_per_chip == 0


def test_megatron_sequence_parallel_collectives():
    """Under sequence_parallel="tp" the all-reduce becomes all-gather + reduce-scatter of the
    full b*s*h*e tensor, forward and backward; in training the backward also re-gathers fc1's
    saved input shard for the weight gradient (docs/conventions.md §12), bulk beside dgrad."""
    layer = sc.MLPLayer(parallelism={"tensor_parallel": 4, "sequence_parallel": "tp"})
    fwd = layer.compute_metrics(batch_size=2, seq_len=16, phase="prefill", dtype="fp32")
    payload = 2 * 16 * S.hidden_size * 4
    assert [(c.kind, c.group_size, c.payload_bytes, c.count) for c in fwd.collectives] == [
        ("all_gather", 4, payload, 1), ("reduce_scatter", 4, payload, 1)]
    train = layer.compute_metrics(batch_size=2, seq_len=16, phase="training", dtype="fp32")
    # the backward's reduce-scatter of the input gradient and the re-gather are TE's bulk overlaps
    # (Collective.bulk: ub_bulk_wgrad, ub_bulk_dgrad)
    assert [(c.kind, c.count, c.bulk) for c in train.collectives] == [
        ("all_gather", 2, False), ("reduce_scatter", 1, False), ("all_gather", 1, True),
        ("reduce_scatter", 1, True)]
    # each sends (n-1)/n of the payload per call: 5 calls (3 all-gathers, 2 reduce-scatters) * 3/4 * payload
    assert_expr_equal(train.comm_bytes_per_chip, 5 * Fraction(3, 4) * payload)


def test_int4_gives_exact_fractions():
    """int4 weights are half a byte: an odd parameter count gives an exact Fraction."""
    m = sc.MLPLayer(hidden_size=3, intermediate_size=5).compute_metrics(
        batch_size=1, seq_len=1, dtype="int4")
    # 2 * 3 * 5 = 30 params -> 15 bytes; peak = (2*1*3 + 1*5) / 2 = 11/2
    assert m.weight_memory_per_chip == 15
    assert m.activation_memory_per_chip == Fraction(11, 2)


@pytest.mark.parametrize("activation,per_element", [("relu", 1), ("gelu", 8), ("silu", 4)])
def test_activation_vector_flops(activation, per_element):
    """The activation's FLOPs per element come from the documented table."""
    m = sc.MLPLayer(hidden_size=8, intermediate_size=32, activation=activation).compute_metrics(
        batch_size=1, seq_len=2, dtype="bf16")
    assert m.flops_per_chip - m.matmul_flops_per_chip == per_element * 2 * 32
