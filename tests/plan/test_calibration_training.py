"""The training step against the published Megatron-Core runs (symcost/plan/calibration_training.py)."""

import importlib.util
from fractions import Fraction
from pathlib import Path

import pytest

from symcost.plan import calibration_training as ct

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rows():
    return {r.id: r for r in ct.load_rows()}


@pytest.fixture(scope="module")
def predictions():
    return ct.predict_all()


def test_rows_load_with_their_layouts(rows):
    """21 runs; every row's GPUs are TP x PP x DP x CP (EP shares the data-parallel ranks); 8 dense
    and 13 MoE over H100 and B200, as the file lists them (every row FP8)."""
    assert len(rows) == 21
    assert all(r.gpus == r.tp * r.pp * r.dp * r.cp for r in rows.values())
    r = rows["bridge-H100-qwen3-235b-gbs8192"]
    assert (r.tp, r.pp, r.dp, r.cp, r.ep, r.vp, r.global_batch, r.micro_batch, r.seq_len) == (
        2, 8, 16, 1, 32, 4, 8192, 1, 4096)
    assert r.tokens_per_gpu == 1712 and r.tflops_per_gpu == 253 and r.group == ("MoE", "FP8", "H100_SXM")
    assert sum(r.moe for r in rows.values()) == 13 and {r.precision_class for r in rows.values()} == {"FP8"}
    assert [r.id for r in rows.values() if r.token_drop] == [
        "bridge-H100-qwen3-30b-tokendrop-gbs512", "bridge-B200-qwen3-30b-tokendrop-gbs512",
        "bridge-H100-qwen3-235b-tokendrop-gbs2048", "bridge-B200-qwen3-235b-tokendrop-gbs1024"]
    assert [r.id for r in rows.values() if r.fsdp] == ["bridge-H100-llama3-8b-fsdp8-gbs128"]


def _megatron_flops_per_token(h, q, kv, ffn_params, layers, vocab, s):
    """Megatron-Bridge's count (training/utils/flop_utils.py, transformer_flops), per token:
    3 (forward + backward) x 2 FLOPs per weight of every projection, MLP or routed expert and the
    logits, plus the causal attention core, QK^T and PV over s/2 keys on average: 3 x 2 x 2 x
    (s/2) x q = 6 s q per layer."""
    per_layer = h * (q + 2 * kv) + q * h + ffn_params
    return 6 * (layers * per_layer + h * vocab) + 6 * layers * s * q


def test_the_published_tflops_are_megatrons_flops_per_token(rows):
    """A row's model TFLOP/s is its tokens/s times Megatron-Bridge's FLOPs per token, within the
    rounding of the published TFLOP/s (3 digits). Llama 3 8B at s = 8192: h = q = 4096,
    kv = 8 x 128, SwiGLU 3 x 4096 x 14336, 32 layers, V = 128256: 51,470,401,536 FLOPs per token;
    744 TFLOP/s / 14451 tokens/s = 51,484,326,344. Qwen3-30B-A3B at s = 4096: h = 2048,
    q = 32 x 128, kv = 4 x 128, 8 routed experts of 3 x 2048 x 768, 48 layers, V = 151936:
    23,006,281,728; 203 / 8826 = 23,000,226,603."""
    llama = _megatron_flops_per_token(4096, 4096, 1024, 3 * 4096 * 14336, 32, 128256, 8192)
    qwen = _megatron_flops_per_token(2048, 4096, 512, 8 * 3 * 2048 * 768, 48, 151936, 4096)
    assert (llama, qwen) == (51_470_401_536, 23_006_281_728)
    for key, flops in (("bridge-H100-llama3-8b-fsdp8-gbs128", llama), ("bridge-H100-qwen3-30b-ep16-gbs1024", qwen)):
        row = rows[key]
        assert row.flops_per_token == Fraction(row.tflops_per_gpu * 10**12, row.tokens_per_gpu)
        assert abs(float(row.flops_per_token) / flops - 1) < Fraction(1, 2) / row.tflops_per_gpu


def test_each_row_gets_its_own_settings(rows):
    """Megatron SP where TP > 1, the virtual pipeline as interleave, ZeRO-3 for the FSDP run, FP8."""
    par = ct.parallelism(rows["bridge-H100-llama3.1-405b-gbs512"])
    assert par == {"tensor_parallel": 8, "pipeline_parallel": 8, "data_parallel": 8, "context_parallel": 2,
                   "expert_parallel": 1, "sequence_parallel": "tp"}
    assert "sequence_parallel" not in ct.parallelism(rows["bridge-H100-qwen3-30b-ep16-gbs1024"])
    assert ct.options(rows["bridge-H100-llama3-70b-gbs128"]) == {"dtype": "fp8_e4m3", "interleave": 5,
                                                                  "zero_stage": 1, "grad_reduce_in_fp32": False,
                                                                  "overlap": True}
    assert ct.options(rows["bridge-H100-llama3-8b-fsdp8-gbs128"])["zero_stage"] == 3
    qwen = ct.build_model(rows["bridge-H100-qwen3-235b-gbs8192"])
    assert qwen.num_layers == 94 and qwen.blocks[0][0].num_routed_experts == 128


def test_dense_rows_with_tp_overlap_their_tp_and_cp_traffic(rows):
    """The Llama recipes set tp_comm_overlap where TP > 1 (Megatron-Bridge v0.2.0
    scripts/performance/configs/llama3/llama3_llm_pretrain.py: the 70B configs set
    tp_comm_overlap_cfg = userbuffers_fp8_h100_h8192_tp4_mbs1_seqlen8192 on the library recipe's
    CommOverlapConfig(tp_comm_overlap=True); the 8B ones CommOverlapConfig(tp_comm_overlap=tp > 1)),
    and Transformer Engine always overlaps the CP ring (AttnFuncWithCPAndKVP2P): overlap=True for
    every dense row with TP or CP > 1, the TP 1 rows and the MoE rows (whose settings file has no
    such column) as before."""
    on = {r.id for r in rows.values() if ct.options(r)["overlap"]}
    assert on == {"bridge-H100-llama3-70b-gbs128", "bridge-H100-llama3-70b-gbs256", "bridge-H100-llama3.1-405b-gbs512",
                  "bridge-H100-llama3.1-405b-gbs1536", "bridge-B200-llama3.1-405b-gbs64",
                  "bridge-H100-llama3-70b-sft-gbs32"}


def test_the_fastest_fitting_recompute_mode_is_chosen(rows):
    """The chosen mode fits; every faster mode does not (or the chosen one is the fastest)."""
    for key in ("bridge-H100-llama3-70b-gbs128", "bridge-H100-qwen3-30b-ep16-gbs1024"):
        p = ct.predict(rows[key])
        assert p.memory_per_chip <= 80e9
        for mode in ct.RECOMPUTE[:ct.RECOMPUTE.index(p.recompute)]:
            step = ct.build_model(rows[key]).training_step(
                "H100_SXM", rows[key].seq_len, rows[key].global_batch, rows[key].micro_batch,
                parallelism=ct.parallelism(rows[key]), recompute=mode, **ct.options(rows[key]))
            assert not step.fits


def test_every_shipped_row_is_costed(predictions):
    """No row is refused: the TP 2 x EP 32 x DP 16 layouts run on the expert grid (expert TP 1) and
    the 405B and 235B interleaved layouts count the embedding and the loss as Megatron does."""
    assert [p.row.id for p in predictions if p.refused is not None] == []


def test_a_refused_row_carries_the_librarys_reason(rows):
    """A row the library cannot cost is listed with the library's own one-line reason: EP 3 does not
    divide Qwen3-30B's 128 experts."""
    import dataclasses

    bad = dataclasses.replace(rows["bridge-B200-qwen3-30b-mb1-gbs512"], ep=3, dp=6, id="bad")
    p = ct.predict(bad)
    assert p.tokens_per_gpu is None and p.relative_error is None
    assert "num_experts must be divisible by expert_parallel" in p.refused and "\n" not in p.refused
    assert "- bad: " in ct.validation_table([p])


def test_group_summary_is_the_mean_of_its_rows(predictions):
    """Each group's mean absolute and signed error are the plain means over its predicted rows (over
    its fitted rows for a key ending in "fitted rows")."""
    summary = ct.group_summary(predictions)
    assert ("MoE", "fitted rows") in summary and ("all", "fitted rows") in summary
    for key, (n, mae, signed) in summary.items():
        fitted_only = key[-1] == "fitted rows"
        group = key[:-1] if fitted_only else key
        errs = [p.relative_error for p in predictions if p.relative_error is not None
                and (p.row.fitted or not fitted_only)
                and (group == ("all",) or p.row.group == group or (p.row.kind,) == group)]
        assert n == len(errs) and mae == pytest.approx(sum(map(abs, errs)) / n)
        assert signed == pytest.approx(sum(errs) / n)


def test_readme_block_is_the_scripts_output(predictions):
    """The fidelity page's block between the training-validation markers is benchmarks/calibrate_training.py's."""
    spec = importlib.util.spec_from_file_location("calibrate_training", ROOT / "benchmarks" / "calibrate_training.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    readme = Path(script.page("training-validation")).read_text(encoding="utf-8")
    assert readme.count(script.BEGIN) == 1 and readme.count(script.END) == 1
    shipped = readme.split(script.BEGIN)[1].split(script.END)[0].strip()
    assert shipped == ct.validation_table(predictions).strip()


@pytest.fixture(scope="module")
def fitted():
    return ct.fit()


def test_the_fit_reproduces_the_shipped_profile(fitted):
    """benchmarks/calibrate_training.py's fit equals what the megatron-core profile ships, exactly."""
    assert fitted.values == ct.shipped()
    from symcost.hardware import runtime

    assert runtime("megatron-core").moe_sync_time == fitted.values["moe_sync_time"]


def test_the_overlap_share_is_a_published_a_b_not_a_fit(rows):
    """Issue 22: ``a2a_overlap_efficiency`` is derived from a published A/B, not fitted on these runs.
    Megatron-Bridge skills/nemo-mbridge-perf-expert-parallel-overlap/SKILL.md (commit 415e90afd,
    "HybridEP Production-Shape Benchmark", validated 2026-07-25): Qwen3-30B-A3B, 16 H100, HybridEP,
    TP 1, PP 1, EP 16, MBS 1, GBS 1024, CUDA graphs moe_router + moe_preprocess, only plain EP overlap
    changed: step 24.7138 s off, 20.9920 s on (the independent validation). Its Nsight comparison:
    communication concurrent with GEMM and attention 9.079 ms, 0.11 % of the communication time, with
    overlap off, so the communication, all on the critical path then, takes 9.079 ms / 0.0011 =
    8.2536 s per step. A layer takes ``ops + a2a - eta min(ops, a2a)``; where the all-to-alls take
    less than the ops (the EP 16 row's block: checked below), the step saves eta x the all-to-all
    time: eta = 3.7218 / 8.2536 = 0.451, 9/20 on the 1/20 grid, and so at either end of the 0.11 %'s
    rounding (0.105 %: 0.430; 0.115 %: 0.471)."""
    from symcost.hardware import runtime

    assert "a2a_overlap_efficiency" not in ct.PARAMETERS
    saved = Fraction("24.7138") - Fraction("20.9920")
    for share in (Fraction("0.0011"), Fraction("0.00105"), Fraction("0.00115")):
        eta = saved / (Fraction("0.009079") / share)
        assert round(eta * 20) == 9, share
    assert runtime("megatron-core").a2a_overlap_efficiency == Fraction(9, 20)
    parts = ct.block_breakdown(rows["bridge-H100-qwen3-30b-ep16-gbs1024"], "none")
    ops = sum(parts[k] for k in ("gemm", "grouped_gemm", "attention", "permute", "router", "elementwise", "host_sync"))
    assert 0 < parts["all_to_all_across"] < ops


def test_the_fit_is_a_local_minimum_on_its_grid(fitted):
    """No single grid step of one term lowers the sum of squared log errors."""
    functions, rows, names = ct._compiled(), ct.fit_rows(), list(ct.PARAMETERS)
    x = [float(fitted.values[n]) for n in names]
    best = ct._loss(functions, rows, x)
    for j, name in enumerate(names):
        grid = ct.PARAMETERS[name][1]
        i = grid.index(fitted.values[name])
        for k in (i - 1, i + 1):
            if 0 <= k < len(grid):
                assert ct._loss(functions, rows, [*x[:j], float(grid[k]), *x[j + 1:]]) >= best, (name, grid[k])


def test_the_exact_step_gives_the_fits_numbers(fitted, predictions):
    """The shipped chip through training_step (exact) and the fit's compiled expressions agree."""
    for p in predictions:
        assert p.tokens_per_gpu == pytest.approx(fitted.predicted[p.row.id], rel=1e-9)


def test_the_host_time_touches_every_eager_moe_row(rows):
    """Issue 22: ``moe_sync_time`` is what an eagerly run MoE layer exposes per forward, the dropless
    dispatcher's sync or the padded one's launches: every MoE row depends on it but the one whose
    release captured whole layers in CUDA graphs (bridge-B200-qwen3-30b-tokendrop-gbs512, 25.09's
    ``enable_cuda_graph``: cuda_graph_scope ``layer`` in the settings file); dense rows do not
    (the compiled prediction at 0 and at 10 ms)."""
    functions = ct._compiled()
    for row in rows.values():
        moved = functions[row.id](0.0, 1.0) != functions[row.id](0.01, 1.0)
        assert moved == (row.moe and row.id != "bridge-B200-qwen3-30b-tokendrop-gbs512"), row.id


def test_the_overlap_share_touches_only_the_rows_whose_recipe_overlaps_the_all_to_all(rows):
    """Only the rows whose release ran ``moe_a2a_overlap`` (and have an EP all-to-all) depend on
    ``a2a_overlap_efficiency``: by the settings file, the 25.11 and 26.04.01 H100 235B runs and the
    25.11 H100 30B and B200 235B ones: their MoE block's all-to-alls are covered at the share, the
    others' not at all (``a2a_covered`` exactly 0)."""
    moved = {key for key, row in rows.items() if row.moe and ct.block_breakdown(row, "none")["a2a_covered"] > 0}
    assert moved == {"bridge-H100-qwen3-235b-gbs8192", "bridge-H100-qwen3-235b-gbs2048",
                     "bridge-H100-qwen3-30b-pp2vp24-gbs512", "bridge-B200-qwen3-235b-gbs1024"}


def test_the_tp_overlap_share_touches_only_the_rows_that_overlap_tp(rows):
    """Only the dense rows whose recipe runs tp_comm_overlap (options(row)["overlap"] with TP > 1)
    depend on ``tp_overlap_efficiency``; a higher share hides more, so they run faster."""
    functions = ct._compiled()
    moved = {key for key in rows if functions[key](0.002, 0.0) != functions[key](0.002, 1.0)}
    assert moved == {r.id for r in rows.values() if ct.options(r)["overlap"] and r.tp > 1}
    assert all(functions[key](0.002, 1.0) > functions[key](0.002, 0.0) for key in moved)


def test_the_moe_block_breakdown_adds_up_to_the_block(rows):
    """``block_breakdown``: one pass (forward + backward) of a row's MoE block on one chip, by kind of
    work; the kinds add up to the block's latency (communication is not overlapped). Qwen3-235B on
    H100 (TP 2, EP 32, expert TP 1): the EP group is 32 consecutive ranks over 4 nodes of 8
    (scale-up domain 8), so its all-to-all runs across nodes; no recomputation, so the dropless
    dispatcher syncs once per block, in the forward (the backward has none): 1 x moe_sync_time.
    The B200 run with EP 8 keeps its all-to-all inside one node; its token-drop twin pads to
    capacity, so it has no sync, but runs eagerly: the same host time (issue 22); the 25.09 B200
    30B token-drop run replays whole layers from CUDA graphs: none."""
    from symcost.hardware import runtime

    sync = float(runtime(ct.ENGINE).moe_sync_time)
    eta = float(runtime(ct.ENGINE).a2a_overlap_efficiency)
    h100 = ct.block_breakdown(rows["bridge-H100-qwen3-235b-gbs8192"], "none")
    assert h100["host_sync"] == pytest.approx(sync)
    assert h100["all_to_all_across"] > 0 and h100["all_to_all_inside"] == 0 and h100["tp_comm"] > 0
    # its release ran moe_a2a_overlap: the all-to-alls hide behind the ops at share eta,
    # covered = eta * min(ops, a2a), ops = every kind but the collectives
    ops = sum(h100[k] for k in ("gemm", "grouped_gemm", "attention", "permute", "router", "elementwise", "host_sync"))
    assert h100["a2a_covered"] == pytest.approx(eta * min(ops, h100["all_to_all_across"]), rel=1e-9)
    parts = sum(v for k, v in h100.items() if k not in ("block", "a2a_covered"))
    assert parts - h100["a2a_covered"] == pytest.approx(h100["block"], rel=1e-12)
    b200 = ct.block_breakdown(rows["bridge-B200-qwen3-235b-gbs8192"], "none")
    assert b200["all_to_all_inside"] > 0 and b200["all_to_all_across"] == 0 and b200["tp_comm"] == 0
    assert b200["a2a_covered"] == 0.0     # moe_a2a_overlap False in v0.4.1's V2 preset: nothing covered, exactly
    drop = ct.block_breakdown(rows["bridge-B200-qwen3-235b-tokendrop-gbs1024"], "none")
    assert drop["host_sync"] == pytest.approx(sync)     # padded, no sync, but eager: its launches (issue 22)
    graphed = ct.block_breakdown(rows["bridge-B200-qwen3-30b-tokendrop-gbs512"], "none")
    assert graphed["host_sync"] == 0                     # whole layers replayed from CUDA graphs
    assert set(h100) == {"gemm", "grouped_gemm", "attention", "permute", "router", "elementwise", "host_sync",
                         "all_to_all_inside", "all_to_all_across", "tp_comm", "a2a_covered", "block"}


def test_a_block_without_hidden_all_to_alls_covers_nothing(rows):
    """Review finding: ``a2a_covered`` was the kinds' sum less the block (float noise, 1.7e-18 s on
    the dense 70B row); it is eta * min(ops, hidden all-to-alls), so exactly 0 where no collective
    hides: a dense row (no all-to-all) and an MoE row whose release did not overlap them."""
    for key in ("bridge-H100-llama3-70b-gbs128", "bridge-H100-llama3-8b-gbs128", "bridge-B200-qwen3-235b-gbs8192"):
        if key in rows:
            assert ct.block_breakdown(rows[key], "none")["a2a_covered"] == 0.0, key


def test_every_moe_row_has_its_releases_settings_with_a_source(rows):
    """symcost/data/training_calibration_settings.csv: one row per MoE run, each naming the
    Megatron-Bridge file at the run's release (a tag or commit) it was read from; no dense row."""
    settings = ct.load_settings()
    assert set(settings) == {key for key, row in rows.items() if row.moe}
    for key, s in settings.items():
        assert s.source.startswith("https://github.com/NVIDIA-NeMo/Megatron-Bridge/blob/")
        assert s.release in s.source
        assert s.dispatcher in ("alltoall", "deepep", "hybridep")
        assert s.recompute == "none" and s.expert_tensor_parallel == 1
        assert (s.capacity_factor is not None) == rows[key].token_drop


def test_the_settings_reach_the_model(rows):
    """Read by hand from the recipes: the 26.02.01 H100 Qwen3-30B run (v0.3.1) HybridEP without
    moe_a2a_overlap; the 26.04.01 B200 one HybridEP without; 25.11's H100 235B alltoall with; the 25.09
    token-drop runs alltoall, capacity factor 1 padded, without."""
    def mlp(key):
        return ct.build_model(rows[key]).blocks[0][0].mlp

    pp2 = mlp("bridge-H100-qwen3-30b-pp2vp12-gbs1024")
    assert (pp2.dispatcher, pp2.a2a_overlap, pp2.capacity_factor) == ("flex", False, None)
    b200 = mlp("bridge-B200-qwen3-30b-mb4-gbs512")
    assert (b200.dispatcher, b200.a2a_overlap) == ("flex", False)
    big = mlp("bridge-H100-qwen3-235b-gbs2048")
    assert (big.dispatcher, big.a2a_overlap) == ("alltoall", True)
    drop = mlp("bridge-H100-qwen3-235b-tokendrop-gbs2048")
    assert (drop.dispatcher, drop.a2a_overlap, drop.capacity_factor) == ("alltoall", False, 1)
    assert ct.parallelism(rows["bridge-H100-qwen3-235b-gbs2048"])["expert_tensor_parallel"] == 1


def test_a_moe_row_runs_its_recipes_recompute_mode_even_where_the_memory_says_no(rows):
    """The Qwen3 recipes publish their recompute mode (``recompute_granularity = None``,
    set_qwen3_common_configs; v0.1.0rc3's YAML: null): a row whose layout is its release preset's is
    costed at it, and where symcost's memory exceeds the chip's HBM the prediction says so (``fits``
    False) instead of choosing a mode the run did not use. A row whose layout differs from the preset
    (the preset is then not known to be the run's) and a dense row get the fastest mode that fits.
    The H100 Qwen3-30B token-drop run ran without recompute on 80 GiB (its v0.1.0rc3 YAML), so
    symcost's memory at ``none`` must fit there."""
    p = ct.predict(rows["bridge-H100-qwen3-30b-tokendrop-gbs512"])
    assert p.recompute == "none" and p.fits is True and p.memory_per_chip <= 80 * 2**30
    differs = ct.predict(rows["bridge-B200-qwen3-235b-gbs1024"])
    assert differs.fits is True and differs.recompute in ct.RECOMPUTE
    assert ct.predict(rows["bridge-H100-qwen3-30b-ep16-gbs1024"]).fits is True
    assert ct.predict(rows["bridge-H100-llama3-70b-gbs128"]).fits is True


@pytest.mark.parametrize("column, bad, rule", [
    ("a2a_overlap", "yes", "a2a_overlap: must be true or false (got yes)"),
    ("expert_tensor_parallel", "two", "expert_tensor_parallel: must be a whole number of at least 1 (got two)"),
    ("expert_tensor_parallel", "0", "expert_tensor_parallel: must be a whole number of at least 1 (got 0)"),
    ("capacity_factor", "1.2.5", "capacity_factor: must be none or a positive number such as 1 or 1.25 (got 1.2.5)"),
    ("capacity_factor", "-1", "capacity_factor: must be none or a positive number such as 1 or 1.25 (got -1)"),
    # second review: a typo in layout dropped the row from the fit without a word
    ("layout", "match", "layout: must be matches or differs... (got match)"),
    ("dispatcher", "all2all", "dispatcher: must be alltoall or hybridep or deepep or flex (got all2all)"),
    ("recompute", "some", "recompute: must be none or selective or full (got some)"),
    # issue 22: the scope now costs (``layer``: no host time), so a typo must not drop it silently
    ("cuda_graph_scope", "layers", "cuda_graph_scope: must be none, layer, or ;-separated attn, mlp, moe, "
                                   "moe_router, moe_preprocess, mamba (got layers)"),
    ("cuda_graph_scope", "attn;router", "cuda_graph_scope: must be none, layer, or ;-separated attn, mlp, moe, "
                                        "moe_router, moe_preprocess, mamba (got attn;router)"),
])
def test_a_bad_settings_row_is_one_line_naming_its_column(monkeypatch, column, bad, rule):
    """Review finding: a bad value in training_calibration_settings.csv raised a bare ValueError
    (a flag) or a traceback from int()/Fraction() not naming the column; now one ConfigError line
    naming the file, the row and the column with its rule."""
    from symcost.errors import ConfigError

    header = ("id,release,preset,source,dispatcher,a2a_overlap,cuda_graph_scope,permute_fusion,grouped_gemm,"
              "router_fusion,recompute,expert_tensor_parallel,shared_expert_overlap,capacity_factor,layout")
    good = dict(zip(header.split(","), "r1,v0.5.0,P,S,alltoall,false,none,true,true,true,none,1,false,none,matches"
                                        .split(",")))
    text = header + "\n" + ",".join({**good, column: bad}.values())

    class File:
        def joinpath(self, name):
            return self

        def read_text(self, encoding=None):
            return text

    monkeypatch.setattr(ct.resources, "files", lambda package: File())
    ct.load_settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as err:
            ct.load_settings()
    finally:
        monkeypatch.undo()
        ct.load_settings.cache_clear()
    assert str(err.value) == f"training_calibration_settings.csv: r1: {rule}"


def test_rows_whose_layout_is_not_their_releases_preset_are_not_fitted(rows):
    """A MoE row whose degrees or batch sizes differ from its release's preset (the settings file's
    ``layout`` column: its recipe, and so its recompute mode and overlap settings, are not known) is
    predicted and shown but left out of the fit: by the settings file, the H100 30B PP 2 runs of
    26.02.01 (VP 12) and 25.11 (VP 24, MBS 2), the 25.11 B200 235B run (VP 2) and the 25.09 B200
    token-drop runs (30B at PP 1, 235B at VP 2). Dense rows are all fitted."""
    left_out = {"bridge-H100-qwen3-30b-pp2vp12-gbs1024", "bridge-H100-qwen3-30b-pp2vp24-gbs512",
                "bridge-B200-qwen3-235b-gbs1024", "bridge-B200-qwen3-30b-tokendrop-gbs512",
                "bridge-B200-qwen3-235b-tokendrop-gbs1024"}
    assert {r.id for r in ct.fit_rows()} == set(rows) - left_out
    # the fit does not see them: moving their prediction cannot move the fitted values
    assert ct.fit().values == ct.fit(ct.fit_rows()).values
    table = ct.validation_table(held=False)
    assert all(("not fitted" in line) == any(key in line for key in left_out)
               for line in table.splitlines() if line.startswith("| bridge-"))


def test_a_settings_file_without_a_column_is_one_line():
    """Second review: a missing column raised a KeyError traceback; one line naming it instead."""
    from symcost.errors import ConfigError

    with pytest.raises(ConfigError, match="columns: missing layout"):
        ct.parse_settings("id,release,preset,source,dispatcher,a2a_overlap,cuda_graph_scope,permute_fusion,"
                          "grouped_gemm,router_fusion,recompute,expert_tensor_parallel,shared_expert_overlap,"
                          "capacity_factor\nr1,v,P,S,alltoall,false,none,true,true,true,none,1,false,none")


def test_dense_runs_meet_the_issues_target_with_tp_overlap_on(predictions):
    """Issue 22's target for the dense runs, with tp_comm_overlap on as their recipes ran it: mean
    absolute error at most 5 %, no systematic sign (|mean signed| at most half of that), and no
    dense run more than 10 % off either way."""
    _, mae, signed = ct.group_summary(predictions)[("dense",)]
    assert mae <= 0.05 and abs(signed) <= 0.025
    assert all(abs(p.relative_error) <= 0.10 for p in predictions if not p.row.moe)


def test_each_fitted_terms_source_names_the_rows_that_constrain_it():
    """A fitted term's source names the runs whose prediction moves with it, not all 16 fitted
    runs. By hand: tp_overlap_efficiency scales only what TE's userbuffers hide, so only the runs
    with TP > 1 and --tp-comm-overlap constrain it: the dense Llama recipes (TP 4 and 8); the Qwen3
    MoE recipes run TP 1 or 2 without it. moe_sync_time is a MoE layer's host sync: MoE runs only."""
    import json

    path = Path(ct.__file__).resolve().parents[1] / "hardware" / "engines" / "megatron-core.json"
    fields = json.loads(path.read_text(encoding="utf-8"))["fields"]
    named = {name: fields[name]["source"].rsplit(": ", 1)[1].split(", ") for name in ct.PARAMETERS}
    dense_tp = [r.id for r in ct.fit_rows() if r.family == "Llama" and r.tp > 1]
    assert len(dense_tp) == 6
    assert named["tp_overlap_efficiency"] == dense_tp
    moe = {r.id for r in ct.fit_rows() if r.family == "Qwen3"}
    assert named["moe_sync_time"] and set(named["moe_sync_time"]) <= moe


def test_the_profiled_a_b_estimates_the_host_time_an_moe_layer_exposes():
    """Issue 22: NVIDIA's matched Nsight A/B of the same layout as the H100 EP 16 row (Megatron-Bridge
    #5094, commit 7ded17dae, skills/nemo-mbridge-perf-moe-comm-overlap/SKILL.md: Qwen3-30B-A3B, 16 H100,
    BF16, TP 1, PP 1, EP 16, MBS 1, GBS 1024, HybridEP, CUDA graphs moe_router + moe_preprocess; one
    steady iteration of rank 0 profiled per arm) publishes the unprofiled step (24.7138 s with EP overlap
    off, 20.9920 s on) and the profiled iteration's GPU-active interval union (22.821 s off, 21.221 s
    on). The GPU idles for whatever is not device work (the dispatcher's sync, the eager launches, the
    optimizer's host time): 24.7138 - 22.821 = 1.8928 s per step with the overlap off, over 48 layers
    x 1024 / (16 x 1) = 64 micro-batches = 3072 MoE layer passes, 1.8928 / 3072 = 0.6161 ms each; with
    the overlap on the union exceeds the step by 21.221 - 20.992 = 0.229 s (the step is an unprofiled
    window's average, the union one profiled iteration's), so the difference is signed, -0.229 / 3072 =
    -0.0745 ms, and the off-arm's 0.6161 ms is an estimate within 0.6161 -+ 0.0745 = 0.5416 to 0.6907 ms."""
    off, on = ct.profiled_runs()
    assert (off.row.precision_class, off.row.ep, off.row.dp, off.row.micro_batch, off.row.global_batch) == (
        "BF16", 16, 16, 1, 1024)
    assert (off.row.dispatcher, off.row.settings.a2a_overlap, on.row.settings.a2a_overlap) == ("flex", False, True)
    assert off.row.settings.cuda_graph_scope == "moe_router;moe_preprocess"
    assert off.layer_passes == 48 * 64 == 3072
    assert off.idle_per_layer_pass == (Fraction("24.7138") - Fraction("22.821")) / 3072
    assert float(off.idle_per_layer_pass) == pytest.approx(0.0006161, abs=1e-7)
    assert on.idle_per_layer_pass == (Fraction("20.9920") - Fraction("21.221")) / 3072 < 0
    spread = (Fraction("21.221") - Fraction("20.9920")) / 3072
    assert ct.profiled_idle() == (off.idle_per_layer_pass, off.idle_per_layer_pass - spread,
                                  off.idle_per_layer_pass + spread)
    assert [round(float(x) * 1e7) for x in ct.profiled_idle()] == [6161, 5416, 6907]  # 0.61615, 0.54160, 0.69069 ms
    # the published model TFLOP/s per GPU of each arm (SKILL.md: "throughput rose from 244.039 to 287.305")
    assert (off.row.tflops_per_gpu, on.row.tflops_per_gpu) == (Fraction("244.039"), Fraction("287.305"))
    # predicted and shown, never fitted
    assert not off.row.fitted and not on.row.fitted
    assert not {off.row.id, on.row.id} & {r.id for r in ct.fit_rows()}
    # the published tokens/s per GPU the rows carry: GBS x seq / (GPUs x step)
    assert off.row.tokens_per_gpu == Fraction(1024 * 4096, 16) / Fraction("24.7138")
    # the fitted host time is above the estimated idle time per pass (step minus GPU-active): the source says so
    import json

    from symcost.hardware import runtime

    assert runtime("megatron-core").moe_sync_time > off.idle_per_layer_pass
    path = Path(ct.__file__).resolve().parents[1] / "hardware" / "engines" / "megatron-core.json"
    source = json.loads(path.read_text(encoding="utf-8"))["fields"]["moe_sync_time"]["source"]
    assert "#5094" in source and "0.62 ms per pass" in source and "0.54 ms to 0.69 ms" in source
    assert f"= {float(off.idle_per_layer_pass) * 1000:.2f} ms per pass" in source  # built from the run
    assert "an estimate, not a bound" in source and "FP8 eagerly" in source and "24.7138 s" in source


def test_the_profiled_a_b_is_predicted_with_and_without_the_host_time():
    """Each arm is predicted as the calibration predicts a row (its release settings carried by the
    row, not the settings file); the device-only prediction (``moe_sync_time`` 0) differs from the
    full one by exactly the host time the model charges: one per MoE layer forward and micro-batch,
    3072 x the shipped value per step (PP 1: no bubble to stretch), 3072 x 3 ms = 9.216 s."""
    from symcost.hardware import runtime

    sync = runtime("megatron-core").moe_sync_time
    for case in ct.profiled_runs():
        full, device = ct.profiled_steps(case)
        assert full - device == pytest.approx(float(3072 * sync), rel=1e-6), case.case


def test_a_refused_profiled_run_is_one_clear_error(monkeypatch):
    """Where the model refuses a profiled run, profiled_steps says so in one line, never a
    TypeError from a missing prediction."""
    from symcost.errors import SymcostError

    run = ct.profiled_runs()[0]
    monkeypatch.setattr(ct, "predict", lambda row, chip=None, **kw: ct.Prediction(row, refused="no mode fits"))
    with pytest.raises(SymcostError, match="refuses the profiled run: no mode fits"):
        ct.profiled_steps(run)


def test_the_8b_h100_run_is_costed_as_its_table_lists_it(rows):
    """The 25.11 table (Megatron-Bridge docs/performance-summary.md, 97ad8cc6f) lists the 8B H100 run
    with FSDP = 1; its recipe's recompute_num_layers=5 came in cb62f8620 (r0.2.0: 8aed9a229), which
    removed use_megatron_fsdp=True from LLAMA3_8B_H100_FP8_CS_BASE_CONFIG: no recipe ran both. The
    row follows the table, FSDP (zero_stage 3) and, its recomputation unpublished, the fastest
    mode that fits (as every dense row)."""
    row = rows["bridge-H100-llama3-8b-fsdp8-gbs128"]
    assert ct.options(row)["zero_stage"] == 3
    assert ct.recompute_modes(row) == (False, tuple((m, None) for m in ct.RECOMPUTE))
    p = ct.predict(row)
    assert (p.recompute, p.recompute_layers) == ("none", None)


def test_expert_map_sort_counts_with_the_permutation():
    """The fused MoE's expert-map sort (kernel class gemm.grouped.prologue) builds the maps the
    dispatcher's permutation reads: block_breakdown files it under "permute", not "elementwise"."""
    from symcost.core.ops import ExpertMapSort
    from symcost.plan.calibration_training import _work_kind
    assert _work_kind(ExpertMapSort("expert_map_sort")) == "permute"
