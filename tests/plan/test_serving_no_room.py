"""A layout whose weights alone exceed its engine's memory bound is ruled out before any of its
steps is built (issue 23's speed target: a layout's symbolic step is most of a plan's time); the
plans stay as they were (tests/plan/test_serving_deploy_fast.py builds every layout's steps)."""

from fractions import Fraction

import pytest

from symcost import models
from symcost.errors import ConfigError
from symcost.hardware import get as get_hardware
from symcost.plan.serving import batching, deploy
from symcost.plan.serving.deploy import one_stage_weights, plan_deployment

# Llama-3-70B (config.json: hidden 8192, intermediate 28672, 80 layers, 64 query / 8 KV heads of
# 128, vocab 128256, untied head): embedding and LM head 128256 * 8192 = 1,050,673,152 each; a
# block: q, o 8192^2 = 67,108,864 each, k, v 8192 * 1024 = 8,388,608 each (attention 150,994,944),
# MLP 3 * 8192 * 28672 = 704,643,072, two norms 8192 each; final norm 8192. In all
# 2,101,346,304 + 80 * 855,654,400 + 8192 = 70,553,706,496 parameters (the model card's 70.6B).
LLAMA_70B_PARAMS = 70_553_706_496
# TP 2 halves all but the norms (replicated): (2,101,346,304 + 80 * 855,638,016) / 2 + 80 * 16,384
# + 8192 = 35,276,193,792 + 1,318,912 = 35,277,512,704 parameters per chip
LLAMA_70B_TP2_PARAMS = 35_277_512_704


def test_one_stage_weights_by_hand():
    m = models.get("llama-3-70b")
    assert one_stage_weights(m, "bf16", {"tensor_parallel": 1}) == 2 * LLAMA_70B_PARAMS
    assert one_stage_weights(m, "bf16", {"tensor_parallel": 2}) == 2 * LLAMA_70B_TP2_PARAMS


@pytest.mark.parametrize("name, dtype, par", [
    ("llama-3-70b", "bf16", {"tensor_parallel": 8}),
    ("llama-3-8b", "fp8_e4m3", {"tensor_parallel": 2}),
    ("mixtral-8x7b", "bf16", {"data_parallel": 4, "expert_parallel": 4, "expert_tensor_parallel": 1}),
    ("mamba2-2.7b", "bf16", {"tensor_parallel": 1}),
])
def test_one_stage_weights_are_the_steps(name, dtype, par):
    """The weights read off the layers are the one-stage step's ``weight_memory`` (its stage sum)."""
    m = models.get(name)
    assert one_stage_weights(m, dtype, par) == m.inference_step("H100_SXM", 1, 1, dtype, par).weight_memory


def _opts(engine, hardware="H100_SXM"):
    chip = get_hardware(hardware) if engine is None else get_hardware(hardware).with_runtime(engine)
    return deploy._Options(models.get("llama-3-70b"), chip, deploy.Workload.of(2048, 256), 8, "bf16", 1,
                           Fraction(1, 20), None, None, 32, None, "throughput", None, None)


@pytest.mark.parametrize("engine", ["vllm", "sglang", "tensorrt-llm"])
def test_no_room_by_hand(engine):
    """H100 SXM: M = 80 GiB = 85,899,345,920 B. The room left at no activations, bound(W, 0) - W:
    total phi M - W, static phi M - W, free phi M + (1 - phi) W - W = phi (M - W) (room < 0 iff
    W > M, whatever phi). phi: vLLM's and TensorRT-LLM's 9/10; SGLang's per replica of g GPUs
    (sglang.json: round(1 - reserved/81,920 MiB, 3), reserved = 13,312 MiB + 128 MiB x g):
    g = 1: 1 - 13,440/81,920 = 0.8359375 -> 0.836 = 209/250; g = 2: 1 - 13,568/81,920 = 0.834375
    -> 0.834 = 417/500. TP 1: 141,107,412,992 B of weights, above 9/10 M (total), 209/250 M =
    71,811,853,189.12 (static) and M (free): no room. TP 2 (a replica of 2 GPUs):
    70,555,025,408 B, below 9/10 M = 77,309,411,328 (total), 417/500 M = 71,640,054,497.28
    (static) and M (free): room left."""
    opts = _opts(engine)
    if engine == "sglang":
        assert opts.engine((1, 1, 1)).memory_fraction == Fraction(209, 250)
        assert opts.engine((2, 1, 1)).memory_fraction == Fraction(417, 500)
    assert get_hardware("H100_SXM").hbm_capacity == 85_899_345_920
    assert deploy._no_room(opts, (1, 1, 1))
    assert not deploy._no_room(opts, (2, 1, 1))
    with pytest.raises(ConfigError, match="memory: llama-3-70b"):
        batching.serving_curve(opts.model, opts.chip, opts.workload, parallelism={"tensor_parallel": 1})
    assert deploy._prefill(opts, (1, 1, 1)) is None and deploy._decode(opts, (1, 1, 1)) is None


def test_the_plan_builds_no_step_for_a_layout_without_room(monkeypatch):
    """Llama-3-70B on 8 H200 (the docs' question): TP 1's 141 GB of weights exceed 9/10 of 141 GiB
    (136,257,837,465.6 B), so no engine curve, prefill step or decode step is asked of it."""
    asked = []
    for name in ("serving_curve", "inference_step", "decode_step"):
        real = getattr(deploy, name)

        def spy(*args, _real=real, **kwargs):
            par = kwargs.get("parallelism", args[5] if len(args) > 5 else None)
            asked.append(par if isinstance(par, dict) else None)
            return _real(*args, **kwargs)
        monkeypatch.setattr(deploy, name, spy)
    plan = plan_deployment(models.get("llama-3-70b"), "H200", (4000, 500), 8, 1, Fraction(3, 100))
    assert plan.best_aggregated is not None
    assert {"tensor_parallel": 1, "pipeline_parallel": 1} not in asked
    assert {"tensor_parallel": 2, "pipeline_parallel": 1} in asked


def test_a_layouts_activation_peak_is_evaluated_once():
    """The serving planner builds a layout's symbolic step twice (its compiled program, its engine
    steps): SymPy's ``Max`` of the layers' peaks, evaluated, is taken once and is the same value."""
    import sympy as sp

    from symcost.core import symbols as sym
    from symcost.core._expr import exact_value
    from symcost.core.dtypes import DataType
    from symcost.plan import compiled, inference
    from symcost.plan.serving import steps

    m, par = models.get("llama-2-7b"), {"tensor_parallel": 2}
    # every memo in front of the peak cleared, so that this layout's program and engine steps are
    # built here whatever ran before (the test order)
    inference._symbolic_peak.cache_clear()
    inference._inference_program.cache_clear()
    compiled._forget_programs()  # the compiled steps looked up by their arguments (compiled.front)
    steps._engine_steps.cache_clear()
    batching.serving_curve(m, "A100_80GB", (512, 64), parallelism=par)
    info = inference._symbolic_peak.cache_info()
    assert info.hits >= 1 and info.misses >= 1
    rows = m.with_parallelism(par).breakdown(sym.batch_size, sym.seq_len, "prefill", DataType.BF16,
                                             get_hardware("A100_80GB"), "none", False)
    peak = exact_value(sp.Max(*(r[2].activation_memory_per_chip for r in rows)))
    assert m.inference_step("A100_80GB", None, None, parallelism=par).activation_memory == peak


# Mixtral-8x7B built with its own pipeline parallelism 2. Its attention-DP x EP layouts (1, 1, d)
# give no pipeline degree, so the steps run at the model's pp 2 (resolve_parallelism). Mixtral's
# model card: 46.7B parameters, about 1.6B of them outside the experts (embedding, head,
# attention, norms, routers). With EP 2 each rank holds half the experts, about
# 1.6B + 45.1B / 2 = 24.2B parameters, 48.3 GB in bf16. That is more than half an H100's
# 85,899,345,920 B (42.95 GB), but pp 2's fullest stage holds only about half of it (24.2 GB).
# The layout has room, so the fast path must not rule it out as if it were one stage.
MIXTRAL_PP2 = dict(tp=[8], ep=[2], max_concurrency=8, memory_fraction=Fraction(1, 2), disaggregated=False)


def _mixtral_pp2():
    return models.get("mixtral-8x7b").with_parallelism({"pipeline_parallel": 2})


def test_one_stage_weights_refuses_a_model_with_its_own_pipeline():
    with pytest.raises(ConfigError, match="pipeline_parallel"):
        one_stage_weights(_mixtral_pp2(), "bf16", deploy._par(1, 1, 2))


def test_no_room_reads_the_pipeline_the_steps_run_with():
    m = _mixtral_pp2()
    chip = get_hardware("H100_SXM")
    opts = deploy._Options(m, chip, deploy.Workload.of(1024, 128), 8, "bf16", 10, Fraction(1, 5), None,
                           Fraction(1, 2), 8, None, "throughput", None, None)
    step = m.inference_step(chip, 1, 1, "bf16", deploy._par(1, 1, 2))
    assert 24 * 10**9 < step.weight_memory < Fraction(1, 2) * chip.hbm_capacity  # the fullest stage fits
    assert not deploy._no_room(opts, (1, 1, 2))


def test_a_model_with_its_own_pipeline_plans_as_without_the_shortcut(monkeypatch):
    """The plan equals the one that builds every layout's steps (no _no_room), and it holds the
    DP-attention layout (the reviewer's repro: it raised 'no layout ... holds one request')."""
    fast = plan_deployment(_mixtral_pp2(), "H100_SXM", (1024, 128), 8, 10, Fraction(1, 5), **MIXTRAL_PP2)
    monkeypatch.setattr(deploy, "_no_room", lambda opts, layout: False)
    slow = plan_deployment(_mixtral_pp2(), "H100_SXM", (1024, 128), 8, 10, Fraction(1, 5), **MIXTRAL_PP2)
    assert fast.best_aggregated == slow.best_aggregated
    assert fast.best_aggregated.layout == "2 x DP-attention 2 x EP 2"
    for k in deploy.COLUMNS:
        assert fast.columns[k].tolist() == slow.columns[k].tolist(), k
