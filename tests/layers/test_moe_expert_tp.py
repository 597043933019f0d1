"""Expert tensor parallelism (Megatron-Core's ``expert_tensor_parallel_size``): the routed experts
split by their own degree, the expert grid ETP x EP x EDP laid over the TP x CP x DP ranks.

Megatron-Core (NVIDIA/Megatron-LM megatron/core/parallel_state.py, ``initialize_model_parallel``,
commit d98e8a64ddf34856e74b24714e3bedb2f5a39553): ``expert_tensor_parallel_size`` defaults to
``tensor_model_parallel_size``; ``expert_data_parallel_size = world_size // (ETP * EP * PP)``,
with ``world_size % (ETP * EP * PP) == 0`` required. Its all-to-all dispatcher
(megatron/core/transformer/moe/token_dispatcher.py, ``MoEAlltoAllTokenDispatcher``) routes each
rank's sequence-parallel shard of tokens, all-to-alls them over EP, all-gathers them over the
expert-TP group, and reverses both after the experts."""

import pytest
import sympy as sp

from symcost import MoELayer, Parallelism
from symcost.errors import ConfigError, DivisibilityError, one_line
from symcost.plan.pipeline import check_expert_parallel

H, F, E, K = 1024, 512, 8, 2


def _moe(**par):
    return MoELayer(hidden_size=H, expert_intermediate_size=F, num_experts=E, top_k=K, parallelism=par)


def test_the_refused_qwen3_235b_layout_is_valid_with_expert_tp_1():
    """Megatron-Bridge's Qwen3-235B-A22B on 256 H100s: TP 2, PP 8, DP 16, EP 32 with
    expert_tensor_parallel_size = 1. Per pipeline stage 2 x 16 = 32 ranks = ETP 1 x EP 32 x EDP 1.
    With the default expert TP (= TP 2) it needs 2 x 32 = 64 ranks per stage: refused."""
    check_expert_parallel(Parallelism(tensor_parallel=2, pipeline_parallel=8, data_parallel=16, expert_parallel=32,
                                      expert_tensor_parallel=1, sequence_parallel="tp"))
    with pytest.raises(DivisibilityError, match="expert_parallel"):
        check_expert_parallel(Parallelism(tensor_parallel=2, pipeline_parallel=8, data_parallel=16,
                                          expert_parallel=32, sequence_parallel="tp"))
    with pytest.raises(DivisibilityError, match="expert_tensor_parallel"):
        check_expert_parallel(Parallelism(tensor_parallel=2, data_parallel=16, expert_parallel=32,
                                          expert_tensor_parallel=2, sequence_parallel="tp"))


def test_expert_tp_defaults_to_tp_and_refuses_bad_values():
    assert Parallelism(tensor_parallel=4).etp == 4 and Parallelism(expert_tensor_parallel=2).etp == 2
    with pytest.raises(ValueError, match="expert_tensor_parallel must be positive"):
        Parallelism(expert_tensor_parallel=0)
    with pytest.raises(ValueError, match="expert_intermediate_size must be divisible by expert_tensor_parallel"):
        _moe(expert_tensor_parallel=3)


def test_expert_tp_1_under_tp_2_by_hand():
    """h 1024, f_e 512, E 8, k 2; TP 2 with Megatron SP, EP 4, ETP 1; prefill b 1, s 64, bf16.
    Tokens on a chip: the SP shard T/t = 32. Router (32 x 1024) @ (1024 x 8): 2*32*8*1024 = 524,288.
    Pairs after the EP all-to-all (uniform routing): 32 * 2 = 64; each expert whole (ETP 1): three
    products of 2*64*1024*512 = 67,108,864 each: 201,326,592. Weights: 8/4 = 2 local experts x
    3*1024*512 + the router 1024*8 = 3,153,920 parameters, 6,307,840 bytes. Communication: two
    all-to-alls over EP 4 of the 64 x 1024 x 2 = 131,072-byte buffer; no TP collective."""
    m = _moe(tensor_parallel=2, sequence_parallel="tp", expert_parallel=4, expert_tensor_parallel=1
             ).compute_metrics(batch_size=1, seq_len=64, phase="prefill", dtype="bf16")
    assert m.matmul_flops_per_chip == 524_288 + 201_326_592
    assert m.weight_memory_per_chip == 6_307_840
    assert [(c.kind, c.axis, c.group_size, c.payload_bytes, c.count) for c in m.collectives] == [
        ("all_to_all", "ep", 4, 131_072, 2)]


def test_expert_tp_2_gathers_the_dispatched_tokens_over_the_expert_tp_group():
    """The same with ETP 2 (given explicitly): after the EP all-to-all the expert-TP group
    all-gathers the 64 dispatched pairs of each rank, 128 x 1024 x 2 = 262,144 bytes gathered, and
    reduce-scatters the expert outputs after; each expert at width 512/2 = 256: three products of
    2*128*1024*256 = 67,108,864, the same FLOPs; weights 2 x 3*1024*256 + 8192 = 1,581,056 params."""
    m = _moe(tensor_parallel=2, sequence_parallel="tp", expert_parallel=4, expert_tensor_parallel=2
             ).compute_metrics(batch_size=1, seq_len=64, phase="prefill", dtype="bf16")
    assert m.matmul_flops_per_chip == 524_288 + 201_326_592
    assert m.weight_memory_per_chip == 2 * 1_581_056
    assert [(c.kind, c.axis, c.group_size, c.payload_bytes, c.count) for c in m.collectives] == [
        ("all_to_all", "ep", 4, 131_072, 2), ("all_gather", "tp", 2, 262_144, 1),
        ("reduce_scatter", "tp", 2, 262_144, 1)]


def test_expert_tp_needs_the_sequence_parallel_shard():
    """With TP > 1 the expert grid routes each rank's sequence-parallel shard; without Megatron SP
    every TP rank holds every token (Megatron-Core warns "When using expert parallelism and tensor
    parallelism for training, sequence parallelism must be used"): refused, not costed twice."""
    with pytest.raises(ConfigError, match="sequence_parallel"):
        _moe(tensor_parallel=2, expert_parallel=4, expert_tensor_parallel=1).compute_metrics(
            batch_size=1, seq_len=64, phase="prefill", dtype="bf16")


def test_at_tp_1_expert_tp_1_changes_nothing():
    """TP 1: the explicit expert grid and the default are one layout, the same numbers."""
    base = _moe(expert_parallel=4).compute_metrics(batch_size=2, seq_len=128, phase="training", dtype="bf16")
    grid = _moe(expert_parallel=4, expert_tensor_parallel=1).compute_metrics(
        batch_size=2, seq_len=128, phase="training", dtype="bf16")
    for field in ("flops_per_chip", "matmul_flops_per_chip", "hbm_bytes_per_chip", "weight_memory_per_chip",
                  "activation_memory_per_chip", "comm_bytes_per_chip"):
        assert sp.sympify(getattr(base, field)) == sp.sympify(getattr(grid, field)), field


def test_a_dropless_moe_forward_waits_for_its_host_sync():
    """Megatron-Core's all-to-all dispatcher copies the routing counts to the host and
    synchronizes once per dropless MoE forward (token_dispatcher.py ``_maybe_dtoh_and_synchronize``:
    skipped when ``moe_pad_expert_input_to_capacity``, the token-drop runs). One ``dispatch_sync``
    op in the training forward (none in the backward, where the splits are known), costing the
    engine's ``moe_sync_time``: 3 ms under an engine that sets it adds exactly 3 ms to the layer;
    a capacity factor (padding) removes the sync (its eager launches cost the same, next test); under
    the neutral engine it costs nothing."""
    from fractions import Fraction

    from symcost import hardware
    from symcost.hardware import Runtime

    chip = hardware.get("H100_SXM")
    synced = chip.with_runtime(Runtime(name="sync", moe_sync_time=Fraction(3, 1000)))
    moe = _moe(expert_parallel=1)
    kw = dict(batch_size=1, seq_len=128, phase="training", dtype="bf16")
    names = [op.name for op, _ in moe.compute_metrics(**kw).ops]
    assert names.count("dispatch_sync") == 1 and not any(n.startswith("dispatch_sync.") for n in names)
    base, slow = moe.compute_metrics(hardware=chip, **kw), moe.compute_metrics(hardware=synced, **kw)
    assert slow.latency - base.latency == Fraction(3, 1000)
    padded = MoELayer(hidden_size=H, expert_intermediate_size=F, num_experts=E, top_k=K, capacity_factor=1)
    assert "dispatch_sync" not in [op.name for op, _ in padded.compute_metrics(**kw).ops]
    full = moe.compute_metrics(hardware=synced, recompute="full", **kw)
    assert full.latency - moe.compute_metrics(hardware=chip, recompute="full", **kw).latency == Fraction(6, 1000)


def test_an_eager_token_drop_moe_forward_exposes_the_same_host_time_and_a_layer_graph_removes_it():
    """Issue 22: the padded (token-drop) dispatcher has no device-to-host sync (core_v0.14.0
    token_dispatcher.py ``preprocess``: with ``drop_and_pad`` the per-expert counts are a host
    ``torch.full``), yet the eager token-drop runs lose what the dropless ones do (the MoE layer's
    many small launches pace the GPU: Megatron-Core's MoE README, "CPU Overhead Bottleneck"), and
    the one run that replays whole layers from CUDA graphs (25.09's ``enable_cuda_graph``, static
    shapes, so token drop only) loses nothing. So a padded layer in training exposes the engine's
    ``moe_sync_time`` once per forward, as one ``launch_bound`` op: 3 ms under an engine that sets
    3 ms; ``recompute="full"`` runs the forward twice, 6 ms; with ``cuda_graph`` 0; inference
    (prefill) none. A dropless layer cannot be captured whole (its shapes follow the routing):
    refused in one line naming the field."""
    from fractions import Fraction

    from symcost import hardware
    from symcost.hardware import Runtime

    chip = hardware.get("H100_SXM")
    synced = chip.with_runtime(Runtime(name="sync", moe_sync_time=Fraction(3, 1000)))
    kw = dict(batch_size=1, seq_len=128, phase="training", dtype="bf16")
    padded = MoELayer(hidden_size=H, expert_intermediate_size=F, num_experts=E, top_k=K, capacity_factor=1)
    names = [op.name for op, _ in padded.compute_metrics(**kw).ops]
    assert names.count("launch_bound") == 1 and "dispatch_sync" not in names
    assert (padded.compute_metrics(hardware=synced, **kw).latency
            - padded.compute_metrics(hardware=chip, **kw).latency) == Fraction(3, 1000)
    assert (padded.compute_metrics(hardware=synced, recompute="full", **kw).latency
            - padded.compute_metrics(hardware=chip, recompute="full", **kw).latency) == Fraction(6, 1000)
    graphed = MoELayer(hidden_size=H, expert_intermediate_size=F, num_experts=E, top_k=K, capacity_factor=1,
                       cuda_graph=True)
    assert (graphed.compute_metrics(hardware=synced, **kw).latency
            == graphed.compute_metrics(hardware=chip, **kw).latency)
    prefill = dict(kw, phase="prefill")
    assert "launch_bound" not in [op.name for op, _ in padded.compute_metrics(**prefill).ops]
    with pytest.raises(ValueError, match="cuda_graph: a whole-layer CUDA graph") as err:  # pydantic's, a ValueError
        MoELayer(hidden_size=H, expert_intermediate_size=F, num_experts=E, top_k=K, cuda_graph=True)
    assert "\n" not in one_line(err.value) and "capacity_factor" in one_line(err.value)
