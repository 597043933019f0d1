"""Bad input: each is a clear error naming the field and the rule, never a wrong number."""

import pytest
import sympy as sp
from pydantic import ValidationError

import symcost as sc
from symcost import symbols as S


@pytest.mark.parametrize("value", [0, -4])
def test_non_positive_sizes(value):
    """hidden_size 0 or negative is refused, naming the field."""
    with pytest.raises(ValidationError, match="hidden_size must be positive"):
        sc.MLPLayer(hidden_size=value, intermediate_size=16)


def test_provably_negative_expression():
    """An expression that is provably negative is refused; an undecidable one passes."""
    with pytest.raises(ValidationError, match="hidden_size must be positive"):
        sc.NormLayer(hidden_size=-S.hidden_size)
    sc.NormLayer(hidden_size=sp.Symbol("x"))  # sign unknown: an assumption, not an error


@pytest.mark.parametrize("value", [4096.0, "4096", True, sp.Rational(1, 2)])
def test_inexact_or_unparsed_sizes(value):
    """Floats, strings, bools and fractions are not sizes."""
    with pytest.raises(ValidationError, match="hidden_size"):
        sc.NormLayer(hidden_size=value)


def test_heads_not_divisible_by_kv_heads():
    """num_heads must be a multiple of num_kv_heads."""
    with pytest.raises(ValidationError, match="num_heads must be divisible by num_kv_heads"):
        sc.GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=6)


def test_heads_not_divisible_by_tp():
    """num_heads must be a multiple of the TP degree."""
    with pytest.raises(ValidationError, match="num_heads must be divisible by tensor_parallel"):
        sc.AttentionLayer(hidden_size=4096, num_heads=32, parallelism={"tensor_parallel": 3})


def test_kv_heads_and_tp_must_nest():
    """KV heads either split evenly over TP or are replicated evenly (t a multiple of g)."""
    with pytest.raises(ValidationError, match="num_kv_heads must be divisible by tensor_parallel"):
        sc.GroupedQueryAttentionLayer(hidden_size=6144, num_heads=48, num_kv_heads=12,
                                      parallelism={"tensor_parallel": 8})
    with pytest.raises(ValidationError, match="tensor_parallel must be divisible by num_kv_heads"):
        sc.GroupedQueryAttentionLayer(hidden_size=6144, num_heads=48, num_kv_heads=3,
                                      parallelism={"tensor_parallel": 4})


def test_hidden_not_divisible_by_heads_without_head_dim():
    """hidden_size / num_heads must be whole unless head_dim is given."""
    with pytest.raises(ValidationError, match="hidden_size must be divisible by num_heads"):
        sc.AttentionLayer(hidden_size=100, num_heads=3)
    sc.AttentionLayer(hidden_size=100, num_heads=3, head_dim=32)  # fine with head_dim


def test_ffn_not_divisible_by_tp():
    """intermediate_size must split evenly over TP."""
    with pytest.raises(ValidationError, match="intermediate_size must be divisible by tensor_parallel"):
        sc.MLPLayer(hidden_size=8, intermediate_size=30, parallelism={"tensor_parallel": 4})


def test_seq_len_not_divisible_by_sequence_degree():
    """A Ulysses degree must divide seq_len; Megatron SP needs t | seq_len."""
    layer = sc.MLPLayer(hidden_size=8, intermediate_size=32, parallelism={"sequence_parallel": 4})
    with pytest.raises(ValueError, match="seq_len must be divisible by sequence_parallel"):
        layer.compute_metrics(batch_size=1, seq_len=30)
    meg = sc.MLPLayer(hidden_size=8, intermediate_size=32,
                      parallelism={"tensor_parallel": 4, "sequence_parallel": "tp"})
    with pytest.raises(ValueError, match="seq_len must be divisible by tensor_parallel"):
        meg.compute_metrics(batch_size=1, seq_len=30)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"dtype": "fp64"}, "dtype: unknown data type 'fp64'; valid: fp32"),
        ({"phase": "inference"}, "phase: unknown phase 'inference'; valid: prefill, decode, training"),
        ({"recompute": "some"}, "recompute: unknown mode 'some'"),
        ({"batch_size": 0}, "batch_size must be positive"),
        ({"seq_len": 1.5}, "seq_len must be exact"),
    ],
)
def test_bad_compute_metrics_arguments(kwargs, message):
    """Unknown dtype, phase or recompute mode, and bad sizes, name the argument."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        sc.NormLayer().compute_metrics(**kwargs)


def test_unknown_activation_and_norm_kind():
    """Unknown activation or norm kind lists the valid choices."""
    with pytest.raises(ValidationError, match="activation"):
        sc.MLPLayer(activation="swish")
    with pytest.raises(ValidationError, match="kind"):
        sc.NormLayer(kind="batchnorm")


@pytest.mark.parametrize(
    ("parallelism", "message"),
    [
        ({"tensor_paralel": 2}, "tensor_paralel"),
        ({"tensor_parallel": 0}, "tensor_parallel must be positive"),
        ({"data_parallel": -1}, "data_parallel must be positive"),
        ({"sequence_parallel": "megatron"}, 'sequence_parallel must be a positive integer degree or "tp"'),
        ({"sequence_parallel": True}, 'use "tp" for Megatron'),
        ({"pipeline_parallel": 2.0}, "pipeline_parallel must be exact"),
    ],
)
def test_bad_parallelism(parallelism, message):
    """Unknown keys and bad degrees are refused, naming the key."""
    with pytest.raises(ValidationError, match=message):
        sc.MLPLayer(parallelism=parallelism)


def test_unknown_hardware_lists_the_presets():
    """An unknown chip name is an error listing the known ones, never ignored."""
    with pytest.raises(ValueError, match="unknown chip 'h1000'; known: A100_SXM_80GB, H100_SXM"):
        sc.NormLayer().compute_metrics(dtype="bf16", hardware="h1000")


def test_hardware_needs_a_concrete_dtype():
    """A numeric chip cannot pick a peak FLOP/s for a symbolic dtype."""
    with pytest.raises(ValueError, match="H100_SXM: binding hardware needs a concrete dtype"):
        sc.NormLayer().compute_metrics(hardware="h100")


def test_chip_without_the_dtype():
    """int4 on an H100: the error names the chip, the dtype and what the chip lists."""
    with pytest.raises(ValueError, match="H100_SXM has no peak FLOP/s for int4; it lists: bf16"):
        sc.NormLayer().compute_metrics(dtype="int4", hardware="H100_SXM")


def test_layers_are_immutable():
    """Layers are frozen: a field cannot be reassigned."""
    layer = sc.NormLayer(hidden_size=8)
    with pytest.raises(ValidationError):
        layer.hidden_size = 16


def test_unknown_layer_field():
    """A misspelt option is refused, not ignored."""
    with pytest.raises(ValidationError, match="flash_atention"):
        sc.AttentionLayer(flash_atention=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"group_size": 0}, "group_size must be a positive integer"),
     ({"payload_bytes": -100}, "payload_bytes must be non-negative"),
     ({"count": sp.Rational(1, 2)}, "count must be a positive integer")],
)
def test_bad_collectives(kwargs, message):
    """A collective with a non-positive group, a negative payload or a fractional count is refused."""
    args = {"kind": "all_reduce", "axis": "tp", "group_size": 4, "payload_bytes": 100, **kwargs}
    with pytest.raises(ValueError, match=message):
        sc.Collective(**args)
