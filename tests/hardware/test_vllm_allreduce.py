"""vLLM's all-reduce size switch (custom one-shot / two-shot, torch symmetric memory, NCCL), each
expected value derived by hand from vLLM's cited size tables and the formulas of
symcost.hardware.timing."""

from fractions import Fraction

import sympy as sp

from symcost import hardware
from symcost.core.ops import Collective
from symcost.hardware import Hardware, Runtime
from symcost.hardware.timing import collective_algorithms, collective_time, vllm_allreduce_window

US = Fraction(1, 10**6)
MIB = 2**20

# 100 GB/s scale-up; NCCL: base 10 us, 1 us per hop, LL 5 us + 0.5 us per hop at 1/4 of the link;
# the engine's one-shot 3 us at 1/2 of the link (two-shot unset: 2 * 3 = 6 us), no per-peer time;
# symmetric memory 10 us per call, the buffer at 1/4 of the link.
CHIP = Hardware(
    name="round-vllm", peak_flops={"bf16": 10**14}, vector_flops=10**13, hbm_capacity=10**11,
    hbm_bandwidth=10**12, scale_up_bandwidth=10**11, scale_up_domain=8, scale_out_bandwidth=10**10,
    collective_latency=US, collective_base_latency=10 * US, ll_base_latency=5 * US, ll_latency=US / 2,
    ll_efficiency=Fraction(1, 4), custom_allreduce_latency=3 * US, custom_allreduce_efficiency=Fraction(1, 2),
    symm_allreduce_latency=10 * US, symm_allreduce_efficiency=Fraction(1, 4), compute_capability="10.0",
    runtime=Runtime(name="round-vllm", cuda_graphs=True, allreduce="vllm"))


def _time(n: int, nbytes: int, chip: Hardware = CHIP) -> sp.Expr:
    return collective_time(Collective("all_reduce", "tp", n, nbytes), chip)


def test_window_thresholds_from_vllms_tables():
    """SM100, 8 GPUs (CUSTOM_ALL_REDUCE_MAX_SIZES["10.0"][8] = 1 MiB, SYMM_MEM_...["10.0"][8] = 128 MiB;
    the kernel's one-shot below 256 KiB): one-shot just below 256 KiB, two-shot from it up to just
    below 1 MiB (custom: ``size < max_size``), symmetric memory from 1 MiB through 128 MiB
    (``size <= max_size``), NCCL beyond. SM90, 2 GPUs: the custom all-reduce's 64 MiB is capped by
    its 8 MiB buffer (``min(table, 8192 * 1024)``), so symmetric memory (two-shot: 2 is not a
    multimem world size) takes 8 MiB to 64 MiB. A GPU without a table (A100, 8.0): custom up to its
    8 MiB buffer, then NCCL; a world size vLLM's kernels lack (3): NCCL."""
    assert vllm_allreduce_window(8, 256 * 1024 - 16, "10.0") == "custom"
    assert vllm_allreduce_window(8, 256 * 1024, "10.0") == "custom_two_shot"
    assert vllm_allreduce_window(8, MIB - 16, "10.0") == "custom_two_shot"
    assert vllm_allreduce_window(8, MIB, "10.0") == "symm"
    assert vllm_allreduce_window(8, 128 * MIB, "10.0") == "symm"
    assert vllm_allreduce_window(8, 128 * MIB + 16, "10.0") == "nccl"
    assert vllm_allreduce_window(4, 512 * 1024 - 16, "10.0") == "custom"
    assert vllm_allreduce_window(4, 512 * 1024, "10.0") == "custom_two_shot"
    assert vllm_allreduce_window(2, 2 * MIB - 16, "10.0") == "custom"          # 2 GPUs: always one-shot
    assert vllm_allreduce_window(2, 2 * MIB, "10.0") == "symm"
    assert vllm_allreduce_window(2, 8 * MIB - 16, "9.0") == "custom"
    assert vllm_allreduce_window(2, 8 * MIB, "9.0") == "symm"
    assert vllm_allreduce_window(2, 64 * MIB + 16, "9.0") == "nccl"
    assert vllm_allreduce_window(8, 4 * MIB - 16, "10.3") == "custom_two_shot"  # B300: custom to 4 MiB
    assert vllm_allreduce_window(2, 8 * MIB - 16, "8.0") == "custom"
    assert vllm_allreduce_window(2, 8 * MIB, "8.0") == "nccl"
    assert vllm_allreduce_window(3, 1024, "10.0") == "nccl"


def test_switch_times_on_either_side_of_each_threshold():
    """8 GPUs at 100 GB/s. One-shot (M = 256 KiB - 16 = 262,128 B): 3 us + 7 M / (1e11 / 2);
    two-shot (M = 256 KiB): 6 us + 2 * 7/8 M / 5e10; symmetric memory (M = 1 MiB): 10 us +
    M / (1e11 / 4) = 10 + 41.94 us; NCCL (M = 128 MiB + 16): the ring, 10 us + 14 hops * 1 us +
    2 * 7/8 M / 1e11 (the LL protocol's 12 us + 1.75 M / 2.5e10 is slower)."""
    m = 256 * 1024 - 16
    assert _time(8, m) == 3 * US + Fraction(7 * m, 5 * 10**10)
    m = 256 * 1024
    assert _time(8, m) == 6 * US + Fraction(2 * 7 * m, 8 * 5 * 10**10)
    m = MIB
    assert _time(8, m) == 10 * US + Fraction(m, 25 * 10**9)
    m = 128 * MIB + 16
    assert _time(8, m) == 24 * US + Fraction(2 * 7 * m, 8 * 10**11)


def test_vllm_runs_its_switch_where_the_fastest_form_differs():
    """At 1 MiB over 8 GPUs NCCL runs LL, the protocol its own estimate picks on this SM100 chip
    (NCCL's ring B = 4/5 * 100 = 80 GB/s, 14 steps, factor 8/14: LL 6.6 + 14 * 0.6 = 15 us + M / (40 GB/s
    * 8/14) = 60.9 us, LL128 40.6 + M / (73.6 * 8/14) = 65.5, Simple 56 + M / (80 * 8/14) = 78.9), at
    LL's time 12 + 1.75 * 1,048,576 / 2.5e10 = 85.4 us (the Simple ring would take 24 + 1.75 M / 1e11
    = 42.35); the fastest form is then the two-shot (6 + 1.75 M / 5e10 = 42.70; one-shot 3 + 7 M / 5e10
    = 149.8), which a tuned engine (``allreduce="custom"``) takes; vLLM runs symmetric memory there
    all the same (10 + M / 2.5e10 = 51.94 us: 1 MiB is not below SM100's custom max_size of 1 MiB)."""
    tuned = CHIP.with_runtime(Runtime(name="round-tuned", cuda_graphs=True, allreduce="custom"))
    ring = 6 * US + Fraction(2 * 7 * MIB, 8 * 5 * 10**10)
    assert collective_time(Collective("all_reduce", "tp", 8, MIB), tuned) == ring
    assert "symm" not in collective_algorithms(Collective("all_reduce", "tp", 8, MIB), tuned)
    assert _time(8, MIB) == 10 * US + Fraction(MIB, 25 * 10**9) > ring


def test_without_a_size_table_or_symmetric_memory_nccl_follows_the_custom_all_reduce():
    """Compute capability 8.0 (no table): 2 GPUs run the one-shot up to 8 MiB - 16 B (3 us +
    M / 5e10), then NCCL's ring (10 us + 2 hops + M / 1e11). SM100 without the symmetric-memory
    terms: NCCL where symmetric memory would run (2 GPUs, 4 MiB: 12 us + M / 1e11)."""
    a100ish = Hardware(**{**dict(CHIP), "compute_capability": "8.0"})
    m = 8 * MIB - 16
    assert _time(2, m, a100ish) == 3 * US + Fraction(m, 5 * 10**10)
    assert _time(2, 8 * MIB, a100ish) == 12 * US + Fraction(8 * MIB, 10**11)
    bare = Hardware(**{**dict(CHIP), "symm_allreduce_latency": None})
    assert _time(2, 4 * MIB, bare) == 12 * US + Fraction(4 * MIB, 10**11)


def test_symbolic_group_size_binds_to_each_world_sizes_switch():
    """With the group size a symbol the switch is a Piecewise over the world sizes; bound to 4 or
    8 it is the numeric switch (4 GPUs, 1 MiB: SM100's two-shot, 6 us + 1.5 M / 5e10)."""
    n = sp.Symbol("n", positive=True, integer=True)
    symbolic = collective_time(Collective("all_reduce", "tp", n, MIB), CHIP)
    assert symbolic.xreplace({n: 4}) == 6 * US + Fraction(3 * MIB, 2 * 5 * 10**10) == _time(4, MIB)
    assert symbolic.xreplace({n: 8}) == _time(8, MIB)


def test_vllm_profile_runs_the_switch_on_the_presets():
    """The vllm profile names the rule, the presets their compute capability (B200 10.0, B300 10.3,
    H100 9.0, A100 8.0), and its fitted symmetric-memory terms apply where the size table has them."""
    assert hardware.runtime("vllm").allreduce == "vllm"
    caps = {name: hardware.get(name).compute_capability for name in ("B200", "B300", "H100_SXM", "A100_SXM_80GB")}
    assert caps == {"B200": "10.0", "B300": "10.3", "H100_SXM": "9.0", "A100_SXM_80GB": "8.0"}
    b200 = hardware.get("B200").with_runtime("vllm")
    assert b200.symm_allreduce_latency is not None
    assert hardware.get("A100_SXM_80GB").with_runtime("vllm").symm_allreduce_latency is None
    # 8 B200s at 1 MiB: symmetric memory, its own fitted terms
    t = collective_time(Collective("all_reduce", "tp", 8, MIB), b200)
    assert t == b200.symm_allreduce_latency + MIB / (b200.scale_up_bandwidth * b200.symm_allreduce_efficiency)


def test_symmetric_memory_takes_bf16_only_other_formats_run_nccl_in_its_window():
    """Issue 19: vLLM's symmetric-memory all-reduce is allocated in bf16 and refuses any other
    element type (vllm/distributed/device_communicators/symm_mem.py: ``self.dtype =
    torch.bfloat16``; ``should_use_symm_mem``: ``if inp.dtype != self.dtype: return False``), so
    an fp16 or fp32 tensor in its size window goes on to pynccl. 8 GPUs, 1 MiB (SM100: custom below
    1 MiB, symmetric memory from it): bf16 10 + M / 2.5e10 = 51.94 us; fp16 and fp32 NCCL, in the
    protocol its own estimate picks there, LL (test_vllm_runs_its_switch_where_the_fastest_form_differs):
    12 + 1.75 M / 2.5e10 = 85.4 us (the Simple ring's 42.35 us is not what NCCL runs). The
    custom all-reduce takes fp16 and fp32 alike (its kernels are instantiated for float, half and
    bfloat16): below 1 MiB the format changes nothing. A collective whose format is not given
    (``None``) keeps the bf16 reading."""
    m = MIB
    bf16 = Collective("all_reduce", "tp", 8, m, element_format="bf16")
    assert collective_time(bf16, CHIP) == 10 * US + Fraction(m, 25 * 10**9)
    assert collective_time(Collective("all_reduce", "tp", 8, m), CHIP) == 10 * US + Fraction(m, 25 * 10**9)
    for fmt in ("fp16", "fp32"):
        c = Collective("all_reduce", "tp", 8, m, element_format=fmt)
        assert collective_time(c, CHIP) == 12 * US + Fraction(2 * 7 * m, 8 * 25 * 10**9), fmt
    m = 256 * 1024 - 16   # the one-shot: 3 us + 7 M / 5e10 whatever the format
    for fmt in ("bf16", "fp16", "fp32"):
        c = Collective("all_reduce", "tp", 8, m, element_format=fmt)
        assert collective_time(c, CHIP) == 3 * US + Fraction(7 * m, 5 * 10**10), fmt


def test_the_element_format_tells_collectives_apart():
    """Two all-reduces of the same bytes in fp16 and in bf16 may take different times under vLLM, so
    they are not merged into one record (``Collective.key``); an unknown name is refused in one line."""
    import pytest

    from symcost.core.dtypes import DataType
    from symcost.errors import ConfigError

    fp16 = Collective("all_reduce", "tp", 8, MIB, element_format="fp16")
    assert fp16.element_format is DataType.FP16
    assert fp16.key != Collective("all_reduce", "tp", 8, MIB, element_format="bf16").key
    with pytest.raises(ConfigError, match="element_format"):
        Collective("all_reduce", "tp", 8, MIB, element_format="fp17")


def test_tp_all_reduces_carry_the_format_engines_reduce_in():
    """A TP block's exit all-reduce carries the model's 16- or 32-bit format, and an 8-bit model's
    its bf16 activations (``Context.wire_bytes``: TensorRT-LLM, vLLM and SGLang FP8 checkpoints keep
    activations in bf16); with the dtype a symbol, the format is unknown (``None``). Under vLLM on
    H100 (SM90, 8 GPUs: custom below 256 KiB, symmetric memory to 64 MiB), one 8,192-wide row of
    2,048 tokens (32 MiB) in fp16 then takes NCCL's time, in bf16 symmetric memory's."""
    from symcost import MLPLayer
    from symcost.core.dtypes import DataType
    from symcost.core.parallelism import Parallelism

    mlp = MLPLayer(hidden_size=8192, intermediate_size=8192, parallelism=Parallelism(tensor_parallel=8))
    h100 = hardware.get("H100_SXM").with_runtime("vllm")

    def exit_all_reduce(dtype):
        metrics = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill", dtype=dtype, hardware=h100)
        (c,) = [c for c in metrics.collectives if c.kind == "all_reduce"]
        return c

    assert exit_all_reduce("fp16").element_format is DataType.FP16
    assert exit_all_reduce("bf16").element_format is DataType.BF16
    assert exit_all_reduce("fp32").element_format is DataType.FP32
    assert exit_all_reduce("fp8_e4m3").element_format is DataType.BF16
    symbolic = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill")
    assert [c.element_format for c in symbolic.collectives if c.kind == "all_reduce"] == [None]
    fp16, bf16 = exit_all_reduce("fp16"), exit_all_reduce("bf16")
    assert fp16.payload_bytes == bf16.payload_bytes == 2048 * 8192 * 2
    # vLLM's profile with NCCL's rule: the same chip and engine fields, NCCL's fastest form
    nccl = h100.with_runtime(h100.runtime.model_copy(update={"allreduce": "nccl", "allreduce_chips": ()}))
    assert collective_time(fp16, h100) == collective_time(bf16, nccl)
    symm = 32 * MIB / (h100.scale_up_bandwidth * h100.symm_allreduce_efficiency)
    assert collective_time(bf16, h100) == (h100.symm_allreduce_latency + h100.runtime.collective_overhead + symm)


def test_binding_a_16_or_32_bit_dtype_other_than_bf16_to_vllms_symbolic_chip_is_refused():
    """Metrics computed with the dtype a symbol on a symbolic chip under vLLM's switch (SM90: with
    its symmetric-memory all-reduce) timed the TP all-reduce as bf16, the one format that kernel
    takes; fp16 (2 bytes too, so ``e`` cannot tell them apart) would need NCCL's time there: binding
    it is refused in one line. bf16, and an FP8 model (bf16 activations), bind and equal the numeric
    path, their all-reduce tagged bf16; on A100 (8.0: no symmetric memory) fp16 binds too."""
    import pytest

    from symcost import MLPLayer
    from symcost.core.dtypes import DataType
    from symcost.core.parallelism import Parallelism
    from symcost.errors import ConfigError

    mlp = MLPLayer(hidden_size=8192, intermediate_size=8192, parallelism=Parallelism(tensor_parallel=8))
    h100 = hardware.get("H100_SXM").with_runtime("vllm")

    def like(chip):   # the symbolic chip of the bound chip's structure
        return Hardware.symbolic(realistic=True, **chip.structure)

    assert h100.structure["symm_allreduce"]   # SM90's symmetric-memory windows
    symbolic = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill", hardware=like(h100))
    with pytest.raises(ConfigError, match="fp16.*bf16"):
        symbolic.evaluate(dtype="fp16", hardware=h100)
    for dtype in ("bf16", "fp8_e4m3"):
        bound = symbolic.evaluate(dtype=dtype, hardware=h100)
        numeric = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill", dtype=dtype, hardware=h100)
        assert bound.collectives == numeric.collectives
        assert [c.element_format for c in bound.collectives] == [DataType.BF16]
        assert bound.latency == numeric.latency
    a100 = hardware.get("A100_SXM_80GB").with_runtime("vllm")
    assert a100.structure["symm_allreduce"] == ()
    on_a100 = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill", hardware=like(a100))
    bound = on_a100.evaluate(dtype="fp16", hardware=a100)
    numeric = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill", dtype="fp16", hardware=a100)
    assert bound.collectives == numeric.collectives and bound.latency == numeric.latency


def _symbolic_like(chip):
    """The realistic symbolic chip of ``chip``'s structure, built from it as Hardware.symbolic says."""
    return Hardware.symbolic(realistic=True, **chip.structure)


def test_binding_checks_the_format_after_substituting_the_shape():
    """Review of coll-fix, item 1 (tests/core/test_properties.py's falsifying example: B200 under
    vLLM, fp32, TP 1). The refusal ran before the values were bound, on every model-format
    all-reduce. Now: at TP 1 no all-reduce remains (a group of one sends nothing), so fp32 and fp16
    bind. fp32 (e = 4) is told apart from the 16-bit formats (e = 2): the symbolic chip's
    symmetric-memory piece holds for e <= 2 only, so fp32 binds inside its window too and takes
    NCCL's time there (H100, 8 GPUs, 2,048 x 8,192 x 4 B = 64 MiB <= SM90's 64 MiB symm limit).
    fp16 (e = 2, as bf16) is refused only where symmetric memory's window holds the payload
    (H100, 8 GPUs: 256 KiB .. 64 MiB; 2,048 x 8,192 x 2 B = 32 MiB inside), and binds outside it
    (one token: 16 KiB, the one-shot)."""
    import pytest

    from symcost import MLPLayer
    from symcost import symbols as S
    from symcost.core.parallelism import Parallelism
    from symcost.errors import ConfigError

    for name, tp in (("B200", 1), ("H100_SXM", 8)):
        chip = hardware.get(name).with_runtime("vllm")
        mlp = MLPLayer(hidden_size=8192, intermediate_size=8192 * tp, parallelism=Parallelism(tensor_parallel=S.tp))
        numeric_mlp = MLPLayer(hidden_size=8192, intermediate_size=8192 * tp,
                               parallelism=Parallelism(tensor_parallel=tp))
        symbolic = mlp.compute_metrics(phase="prefill", hardware=_symbolic_like(chip))
        for seq, dtypes in ((2048, ("fp32", "bf16") if tp > 1 else ("fp32", "fp16", "bf16")), (1, ("fp16", "fp32"))):
            for dtype in dtypes:
                bound = symbolic.evaluate({S.batch_size: 1, S.seq_len: seq, S.tp: tp}, dtype=dtype, hardware=chip)
                numeric = numeric_mlp.compute_metrics(batch_size=1, seq_len=seq, phase="prefill", dtype=dtype,
                                                      hardware=chip)
                assert bound.collectives == numeric.collectives, (name, seq, dtype)
                assert bound.latency == numeric.latency, (name, seq, dtype)
    with pytest.raises(ConfigError, match="fp16.*bf16"):
        symbolic.evaluate({S.batch_size: 1, S.seq_len: 2048, S.tp: 8}, dtype="fp16", hardware=chip)


def test_symbolic_takes_the_structure_it_documents():
    """Review of coll-fix, item 2: ``Hardware.symbolic(**chip.structure)`` builds (the structure's
    ``symm_allreduce``, symmetric memory's byte windows per world size, is accepted and checked);
    the windows follow the chip's symmetric-memory terms, not its capability alone: a chip of
    capability 9.0 without them has none (its fp16 all-reduce runs as bf16's: custom, then NCCL),
    so its symbolic twin binds fp16 where it would otherwise be refused. SM90's windows: custom
    below min(table, 8 MiB buffer), symmetric memory from there through its table (2 GPUs:
    8 MiB .. 64 MiB; 8 GPUs: 256 KiB .. 64 MiB)."""
    import pytest

    from symcost import MLPLayer
    from symcost.errors import HardwareError

    h100 = hardware.get("H100_SXM").with_runtime("vllm")
    windows = dict((n, (lo, hi)) for n, lo, hi in h100.structure["symm_allreduce"])
    assert windows == {2: (8 * MIB, 64 * MIB), 4: (8 * MIB, 32 * MIB), 6: (MIB // 2, 64 * MIB),
                       8: (MIB // 4, 64 * MIB)}
    assert Hardware.symbolic(realistic=True, **h100.structure).structure == h100.structure
    with pytest.raises(HardwareError, match="symm_allreduce"):
        Hardware.symbolic(realistic=True, **{**h100.structure, "symm_allreduce": ((2, 1, 2),)})
    bare = Hardware(**{**dict(h100), "symm_allreduce_latency": None, "symm_allreduce_efficiency": 1})
    assert bare.structure["symm_allreduce"] == ()
    twin = Hardware.symbolic(realistic=True, **bare.structure)
    assert twin.structure == bare.structure
    mlp = MLPLayer(hidden_size=8192, intermediate_size=8192, parallelism={"tensor_parallel": 8})
    bound = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill", hardware=twin).evaluate(
        dtype="fp16", hardware=bare)
    numeric = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill", dtype="fp16", hardware=bare)
    assert bound.latency == numeric.latency


def test_weight_only_formats_leave_the_wire_format_unknown():
    """Review of coll-fix, item 6: an int8 or int4 checkpoint names its weights' format, not its
    activations' (vLLM runs those in ``model_config.dtype``; AWQ's kernels take fp16 only,
    ``AWQConfig.get_supported_act_dtypes`` returns ``[torch.half]``), so its TP all-reduce's format
    is unknown (``None``, read as bf16), not bf16; the symbolic dtype bound to int8 agrees with it."""
    from symcost import MLPLayer
    from symcost.core.dtypes import DataType, wire_format

    assert wire_format(DataType.INT4) is None and wire_format(DataType.INT8) is None
    mlp = MLPLayer(hidden_size=8192, intermediate_size=8192, parallelism={"tensor_parallel": 8})
    h100 = hardware.get("H100_SXM").with_runtime("vllm")
    numeric = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill", dtype="int8", hardware=h100)
    assert [c.element_format for c in numeric.collectives if c.kind == "all_reduce"] == [None]
    bound = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill",
                                hardware=_symbolic_like(h100)).evaluate(dtype="int8", hardware=h100)
    assert bound.collectives == numeric.collectives and bound.latency == numeric.latency


def test_vllms_own_all_reduces_run_on_the_tp_group_only():
    """Review of coll-fix, item 5: vLLM builds its custom all-reduce and symmetric memory for the TP
    group only (cuda_communicator.py ``CudaCommunicator.__init__``: ``if "tp" not in unique_name``,
    both off), so an all-reduce over another axis runs NCCL in every window. 8 GPUs, 1 MiB on the
    round chip: TP symmetric memory 10 + M / 2.5e10 = 51.94 us; SP (a decode's partial outputs)
    NCCL in the protocol its estimate picks, LL: 12 + 1.75 M / 2.5e10 = 85.4 us
    (test_vllm_runs_its_switch_where_the_fastest_form_differs); 16 KiB: TP one-shot 3 + 7 M / 5e10, SP the LL
    protocol 5 + 14 x 0.5 + 1.75 M / 2.5e10 = 13.15 us (the ring's 24 + 1.75 M / 1e11 = 24.29)."""
    for axis, big, small in (("tp", 10 * US + Fraction(MIB, 25 * 10**9), 3 * US + Fraction(7 * 16384, 5 * 10**10)),
                             ("sp", 12 * US + Fraction(2 * 7 * MIB, 8 * 25 * 10**9),
                              12 * US + Fraction(2 * 7 * 16384, 8 * 25 * 10**9))):
        assert collective_time(Collective("all_reduce", axis, 8, MIB), CHIP) == big, axis
        assert collective_time(Collective("all_reduce", axis, 8, 16384), CHIP) == small, axis


def test_collectives_of_a_known_format_carry_it():
    """Review of coll-fix, item 5: the vocab-parallel loss's three all-reduces are fp32 whatever the
    model's format (Megatron's cross-entropy reduces fp32 logits' max, sum and target; Transformer
    Engine's fused loss all-gathers fp32 row statistics); a decode's
    partial-output all-reduce over the sequence shards carries the model's activations (tagged
    ``model_format``, its format the model's: fp16 for an fp16 model)."""
    from symcost import GroupedQueryAttentionLayer, LMHeadLayer
    from symcost.core.dtypes import DataType

    head = LMHeadLayer(vocab_size=32000, hidden_size=4096, parallelism={"tensor_parallel": 8}, fused_loss=False)
    loss = head.compute_metrics(batch_size=1, seq_len=128, phase="training", dtype="bf16")
    reduces = [c for c in loss.collectives if c.kind == "all_reduce" and c.count == 3]
    assert reduces and all(c.element_format is DataType.FP32 for c in reduces)
    fused = LMHeadLayer(vocab_size=32000, hidden_size=4096, parallelism={"tensor_parallel": 8})
    stats = [c for c in fused.compute_metrics(batch_size=1, seq_len=128, phase="training", dtype="bf16").collectives
             if c.kind == "all_gather"]   # the fused loss's fp32 row statistics
    assert stats and all(c.element_format is DataType.FP32 for c in stats)
    attn = GroupedQueryAttentionLayer(hidden_size=4096, num_heads=32, num_kv_heads=8,
                                      parallelism={"tensor_parallel": 1, "sequence_parallel": 2})
    dec = attn.compute_metrics(batch_size=1, seq_len=1024, phase="decode", dtype="fp16")
    combine = [c for c in dec.collectives if c.kind == "all_reduce" and c.axis == "sp"]
    assert combine and all(c.model_format and c.element_format is DataType.FP16 for c in combine)


def test_the_repr_shows_a_set_format():
    """Review of coll-fix, item 9: two records that differ only in their format (not equal, other
    keys) print differently, so an assertion's diff shows why; unset, the repr is as before."""
    plain = Collective("all_reduce", "tp", 8, MIB)
    assert repr(plain) == "Collective(kind='all_reduce', axis='tp', group_size=8, payload_bytes=1048576, count=1)"
    fp16 = Collective("all_reduce", "tp", 8, MIB, element_format="fp16", model_format=True)
    assert repr(fp16).endswith("count=1, element_format='fp16', model_format=True)")

def test_blackwell_outside_vllms_rule_has_no_symmetric_memory_windows():
    """Review of prefill-bw, item 2: a 10.x chip carries its compute capability in its structure
    (its prefill kernels overlap matmuls and exponentials), but symmetric memory's byte windows are
    vLLM's alone: under NCCL's or TensorRT-LLM's rule there are none, so its symbolic twin binds fp16
    (its TP all-reduce runs the same form as bf16's there) and equals the numeric path."""
    from symcost import MLPLayer

    b200 = hardware.get("B200")
    assert b200.allreduce_rule != "vllm" and "symm_allreduce" not in b200.structure
    twin = Hardware.symbolic(realistic=True, **b200.structure)
    mlp = MLPLayer(hidden_size=8192, intermediate_size=8192, parallelism={"tensor_parallel": 8})
    bound = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill", hardware=twin).evaluate(
        dtype="fp16", hardware=b200)
    numeric = mlp.compute_metrics(batch_size=1, seq_len=2048, phase="prefill", dtype="fp16", hardware=b200)
    assert bound.latency == numeric.latency
