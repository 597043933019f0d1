"""symcost's tensor-parallel collectives checked against PyTorch's own tensor parallelism.

The same modules are sharded with ``torch.distributed.tensor.parallel`` (``ColwiseParallel``,
``RowwiseParallel``, ``SequenceParallel``) on a *fake* process group: one process plays rank 0
of ``t`` ranks, DTensor issues every collective it would issue on a real group, and the fake
backend moves no data. The forward and the backward each run under a ``CommDebugMode`` that also
records, per collective, symcost's record ``(kind, axis, group size, payload bytes)``, with the
payload as docs/conventions.md §11 defines it (the all-reduce buffer, the all-gather output, the
reduce-scatter input). The forward must equal symcost's ``prefill`` collectives and forward plus
backward its ``training`` collectives.

What torch does differently from the conventions, each asserted as torch actually behaves:

- An input that does not require grad gets no gradient collective (``test_mlp_input_without_grad``);
  every other test makes the input require grad, as any layer but the first sees it.
- Separate q, k, v projections that each convert the input themselves issue the input-side
  collective three times (``test_attention_per_projection_inputs``); one conversion for all three
  (``PrepareModuleInput``, the torchtitan recipe) or a fused qkv matches symcost.
- Under sequence parallelism the norm's parameter gradients are left ``Partial``: their TP
  all-reduce (h*e bytes per parameter) happens outside the layer's backward, when the gradient
  is materialised (``test_norm_then_mlp``).
- Under sequence parallelism DTensor's ``ColwiseParallel`` keeps the *gathered* input for the
  weight gradient (``test_dtensor_saves_the_gathered_input``), so its backward issues no
  all-gather of it; Megatron-Core and Transformer Engine save the shard and all-gather it again in
  the backward (docs/conventions.md §12), which symcost counts: each comparison adds that
  re-gather to torch's backward by hand (:func:`_regather`).
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
import sympy

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch was built without torch.distributed", allow_module_level=True)

import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.distributed_c10d import _resolve_process_group  # noqa: E402
from torch.distributed.tensor import Partial, Replicate, Shard  # noqa: E402
from torch.distributed.tensor.parallel import (  # noqa: E402
    ColwiseParallel,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    parallelize_module,
)

# importing fake_pg registers the "fake" backend
from torch.testing._internal.distributed.fake_pg import FakeStore  # noqa: E402
from torch_comm import RecordingCommMode  # noqa: E402

import symcost as sc  # noqa: E402
from symcost.layers.base import Context  # noqa: E402

B, S, H, A, FF = 2, 8, 32, 4, 128  # batch, sequence, hidden, heads, MLP width
E = 4  # fp32, torch's default dtype
PAYLOAD = B * S * H * E  # 2 * 8 * 32 * 4 = 2048 bytes: the full (b, s, h) activation

# functional-collective op name -> symcost's kind
_KINDS = {
    "all_reduce": "all_reduce",
    "all_gather_into_tensor": "all_gather",
    "reduce_scatter_tensor": "reduce_scatter",
    "all_to_all_single": "all_to_all",
}
_FUNCOL_NAMESPACES = ("_c10d_functional", "c10d_functional", "_c10d_functional_autograd")


# -- the fake process group ------------------------------------------------------------------


@pytest.fixture(scope="module", params=[2, 4], ids=lambda t: f"t{t}")
def mesh(request):
    """A 1-D TP mesh of ``t`` ranks on a fake process group, this process being rank 0."""
    assert not dist.is_initialized(), "a process group is already initialised"
    t = request.param
    dist.init_process_group("fake", rank=0, world_size=t, store=FakeStore())
    try:
        torch.manual_seed(0)
        yield init_device_mesh("cpu", (t,))
    finally:
        dist.destroy_process_group()


# -- recording collectives -------------------------------------------------------------------


def _record(func, args, kwargs, out) -> tuple:
    """symcost's key ``(kind, axis, group size, payload bytes)`` of one functional collective."""
    if func.namespace not in _FUNCOL_NAMESPACES or func._opname not in _KINDS:
        raise AssertionError(f"unexpected collective {func}: extend _KINDS before comparing")
    kind = _KINDS[func._opname]
    bound = dict(zip((a.name for a in func._schema.arguments), args)) | dict(kwargs or {})
    group = _resolve_process_group(bound["group_name"]).size()
    in_bytes = bound["input"].numel() * bound["input"].element_size()
    out_bytes = out.numel() * out.element_size()
    # docs/conventions.md §11: M is the all-reduce buffer, the all-gather output, the reduce-scatter input
    if kind == "all_gather":
        assert bound["group_size"] == group and out_bytes == group * in_bytes
        payload = out_bytes
    elif kind == "reduce_scatter":
        assert bound["group_size"] == group and in_bytes == group * out_bytes
        payload = in_bytes
    else:
        payload = in_bytes
    return (kind, "tp", group, payload)  # every mesh here is the TP group


class _PayloadCommMode(RecordingCommMode):
    """:class:`RecordingCommMode` with this file's record of a TP collective."""

    def __init__(self):
        super().__init__(_record)

    def counts(self) -> Counter:
        """Calls per ``(kind, axis, group size, payload bytes)``, checked against torch's own
        per-op counts."""
        got = Counter(self.records)
        by_kind = Counter({_KINDS[op.__name__]: n for op, n in self.get_comm_counts().items()})
        assert Counter(key[0] for key in self.records) == by_kind
        return got


def _trace(module: nn.Module, x: torch.Tensor, ordered: bool = False):
    """The collectives of ``module(x)`` (forward) and of ``.sum().backward()`` (backward):
    calls per record, or with ``ordered`` each phase's records in issue order."""
    with _PayloadCommMode() as fw:
        y = module(x)
    with _PayloadCommMode() as bw:
        y.sum().backward()
    if x.grad is not None:
        # complete the fake group's pending work on the input gradient (unused afterwards),
        # which c10d would otherwise report as unwaited at exit
        torch.ops._c10d_functional.wait_tensor(x.grad)
    if ordered:
        return fw.records, bw.records
    return fw.counts(), bw.counts()


def _symcost(metrics: sc.LayerMetrics) -> Counter:
    """symcost's collectives as calls per ``(kind, axis, group size, payload bytes)``."""
    got: Counter = Counter()
    for c in metrics.collectives:
        got[(c.kind, c.axis, int(c.group_size), int(c.payload_bytes))] += int(c.count)
    return got


def _metrics(layers, phase: str):
    """The summed symcost metrics of ``layers`` for the test workload, in fp32."""
    return sum(layer.compute_metrics(batch_size=B, seq_len=S, phase=phase, dtype="fp32")
               for layer in layers)


def _parallelism(t: int, seq_par: bool) -> dict:
    return {"tensor_parallel": t, **({"sequence_parallel": "tp"} if seq_par else {})}


def _regather(t: int, seq_par: bool, linears: int = 1) -> Counter:
    """What Megatron's backward runs and DTensor's does not: under sequence parallelism each
    column-parallel linear saved its input shard and all-gathers it again (the full (b, s, h)
    payload) for its weight gradient (Megatron-Core megatron/core/tensor_parallel/layers.py
    ``LinearWithGradAccumulationAndAsyncCommunication.backward``: ``if ctx.sequence_parallel:
    ... dist_all_gather_func(all_gather_buffer, input, ...)``; Transformer Engine
    ``ln_out_needs_gather``). DTensor keeps the gathered input instead: nothing to add without SP."""
    return Counter({("all_gather", "tp", t, PAYLOAD): linears}) if seq_par else Counter()


def _assert_matches(layers, fw: Counter, bw: Counter, regather: Counter) -> None:
    """Forward == symcost prefill, forward + backward (+ Megatron's re-gather) == symcost
    training, bytes sent alike."""
    prefill, training = _metrics(layers, "prefill"), _metrics(layers, "training")
    assert fw == _symcost(prefill)
    assert fw + bw + regather == _symcost(training)
    assert bw + regather == _symcost(training) - _symcost(prefill)
    sent = sum(n * sc.Collective(*key).bytes_sent_per_chip for key, n in (fw + bw + regather).items())
    assert sent == training.comm_bytes_per_chip


def _input(t: int, seq_par: bool, requires_grad: bool = True) -> torch.Tensor:
    """Rank 0's input: (b, s, h), or its sequence shard (b, s/t, h) under sequence parallelism."""
    return torch.randn(B, S // t if seq_par else S, H, requires_grad=requires_grad)


def _expected(t: int, seq_par: bool, blocks: int = 1) -> tuple[Counter, Counter]:
    """Hand-written convention (item 12), per phase: per TP block one all-reduce of b*s*h*e, or
    an all-gather plus a reduce-scatter of it under sequence parallelism."""
    if seq_par:
        one = Counter({("all_gather", "tp", t, PAYLOAD): blocks,
                       ("reduce_scatter", "tp", t, PAYLOAD): blocks})
    else:
        one = Counter({("all_reduce", "tp", t, PAYLOAD): blocks})
    return one, Counter(one)


# -- modules ---------------------------------------------------------------------------------


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(H, FF, bias=False)
        self.fc2 = nn.Linear(FF, H, bias=False)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class _Attention(nn.Module):
    """Multi-head attention whose core runs on the heads local to the rank (``local_heads``).

    ``fused``: one qkv projection whose output columns are laid out (head, q/k/v, d), Megatron's
    layout, so a column shard holds whole heads; else separate q, k and v projections.
    """

    def __init__(self, fused: bool):
        super().__init__()
        self.fused = fused
        if fused:
            self.qkv = nn.Linear(H, 3 * H, bias=False)
        else:
            self.q, self.k, self.v = (nn.Linear(H, H, bias=False) for _ in range(3))
        self.o = nn.Linear(H, H, bias=False)
        self.local_heads = None

    def forward(self, x):
        d = H // A
        if self.fused:
            qkv = self.qkv(x)  # (b, s, 3 * h/t): gathered sequence, local heads
            b, s, width = qkv.shape
            heads = width // (3 * d)
            q, k, v = qkv.view(b, s, heads, 3, d).unbind(3)
        else:
            q, k, v = self.q(x), self.k(x), self.v(x)  # (b, s, h/t) each
            b, s, width = q.shape
            heads = width // d
            q, k, v = (z.view(b, s, heads, d) for z in (q, k, v))
        self.local_heads = heads
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))  # (b, a/t, s, d)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)  # (b, a/t, s, s)
        core = torch.softmax(scores, dim=-1) @ v  # (b, a/t, s, d)
        return self.o(core.transpose(1, 2).reshape(b, s, heads * d))  # (b, s, a/t * d) -> h


class _NormMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.norm = nn.LayerNorm(H)
        self.mlp = _MLP()

    def forward(self, x):
        return self.mlp(self.norm(x))


class _Block(nn.Module):
    """A pre-norm transformer block: x + attn(norm1(x)), then h + mlp(norm2(h))."""

    def __init__(self):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(H), nn.LayerNorm(H)
        self.attn = _Attention(fused=True)
        self.mlp = _MLP()

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# -- plans -----------------------------------------------------------------------------------


def _layout(seq_par: bool):
    """Placement of the activations between TP blocks: sequence-sharded, or replicated."""
    return Shard(1) if seq_par else Replicate()


def _mlp_plan(seq_par: bool, prefix: str = "") -> dict:
    return {f"{prefix}fc1": ColwiseParallel(input_layouts=_layout(seq_par)),
            f"{prefix}fc2": RowwiseParallel(output_layouts=_layout(seq_par))}


def _attention_plan(seq_par: bool, qkv: str, prefix: str = "") -> dict:
    """``qkv``: "fused" (one colwise qkv), "prepared" (the input converted once for q, k and
    v by ``PrepareModuleInput``) or "per_projection" (each of q, k, v converts it)."""
    layout = _layout(seq_par)
    plan = {f"{prefix}o": RowwiseParallel(output_layouts=layout)}
    if qkv == "fused":
        plan[f"{prefix}qkv"] = ColwiseParallel(input_layouts=layout)
    elif qkv == "prepared":
        plan[prefix.rstrip(".")] = PrepareModuleInput(input_layouts=(layout,),
                                                      desired_input_layouts=(Replicate(),))
        plan.update({f"{prefix}{n}": ColwiseParallel() for n in "qkv"})
    else:
        plan.update({f"{prefix}{n}": ColwiseParallel(input_layouts=layout) for n in "qkv"})
    return plan


def _norm_plan(seq_par: bool, name: str) -> dict:
    # without sequence parallelism the norm stays a plain replicated module on the full sequence
    return {name: SequenceParallel()} if seq_par else {}


SEQ_PAR = pytest.mark.parametrize("seq_par", [False, True], ids=["no_sp", "sp"])


# -- tests -----------------------------------------------------------------------------------


@SEQ_PAR
def test_mlp(mesh, seq_par):
    """A colwise fc1 + rowwise fc2 MLP issues exactly symcost's MLPLayer collectives."""
    t = mesh.size()
    mlp = parallelize_module(_MLP(), mesh, _mlp_plan(seq_par))
    fw, bw = _trace(mlp, _input(t, seq_par))
    assert (fw, bw) == _expected(t, seq_par)
    _assert_matches([sc.MLPLayer(hidden_size=H, intermediate_size=FF,
                                 parallelism=_parallelism(t, seq_par))], fw, bw, _regather(t, seq_par))


@SEQ_PAR
# CommDebugMode's module tracker hooks the backward of a module whose input needs no gradient
@pytest.mark.filterwarnings("ignore:Full backward hook is firing:UserWarning")
def test_mlp_input_without_grad(mesh, seq_par):
    """An input without grad skips the backward collective of fc1's input gradient."""
    # NB: symcost (like Megatron's per-layer accounting) always counts that backward collective;
    # torch skips it for a first layer whose input needs no gradient. Only the forward and the
    # remaining backward collective (fc2's output-gradient all-gather, under SP) are comparable.
    t = mesh.size()
    mlp = parallelize_module(_MLP(), mesh, _mlp_plan(seq_par))
    fw, bw = _trace(mlp, _input(t, seq_par, requires_grad=False))
    layer = sc.MLPLayer(hidden_size=H, intermediate_size=FF, parallelism=_parallelism(t, seq_par))
    assert fw == _symcost(_metrics([layer], "prefill"))
    missing = Counter({("reduce_scatter" if seq_par else "all_reduce", "tp", t, PAYLOAD): 1})
    # Megatron's re-gather of fc1's input for the weight gradient still runs (_regather)
    assert bw + missing + _regather(t, seq_par) == _symcost(_metrics([layer], "training")) - fw


def test_dtensor_saves_the_gathered_input(mesh):
    """Why torch's SP backward has no re-gather (:func:`_regather`): DTensor's colwise fc1 saves
    its input for the weight gradient as gathered, all b*s*h elements on the rank, not the
    rank's b*s/t*h shard that Megatron saves (and that symcost's activation memory counts)."""
    t = mesh.size()
    mlp = parallelize_module(_MLP(), mesh, _mlp_plan(True))
    saved: list[int] = []

    def pack(x):
        saved.append(getattr(x, "_local_tensor", x).numel())  # a DTensor's rank-local part
        return x

    x = _input(t, True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        y = mlp(x)
    y.sum().backward()  # completes the fake group's pending collectives, as _trace does
    torch.ops._c10d_functional.wait_tensor(x.grad)
    assert x.numel() == B * S // t * H  # the shard it was given
    assert B * S * H in saved and B * S // t * H not in saved


@SEQ_PAR
@pytest.mark.parametrize("qkv", ["fused", "prepared"])
def test_attention(mesh, seq_par, qkv):
    """Attention with a colwise qkv (fused, or split after one input conversion) and a rowwise
    out projection issues exactly symcost's AttentionLayer collectives."""
    t = mesh.size()
    attn = parallelize_module(_Attention(fused=qkv == "fused"), mesh,
                              _attention_plan(seq_par, qkv))
    fw, bw = _trace(attn, _input(t, seq_par))
    assert attn.local_heads == A // t
    assert (fw, bw) == _expected(t, seq_par)
    _assert_matches([sc.AttentionLayer(hidden_size=H, num_heads=A,
                                       parallelism=_parallelism(t, seq_par))], fw, bw, _regather(t, seq_par))


@SEQ_PAR
def test_attention_per_projection_inputs(mesh, seq_par):
    """Separate q, k, v plans each convert the input: its collective is issued three times."""
    # NB: a deviation from symcost, which models a fused qkv (Megatron): with a ColwiseParallel
    # plan on each of q, k and v, each plan turns the plain input into its own DTensor, so the
    # input-side collective (SP: the all-gather in forward; the gradient's all-reduce, or SP
    # reduce-scatter, in backward) happens once per projection. Payloads are unchanged.
    t = mesh.size()
    attn = parallelize_module(_Attention(fused=False), mesh,
                              _attention_plan(seq_par, "per_projection"))
    fw, bw = _trace(attn, _input(t, seq_par))
    assert attn.local_heads == A // t
    layer = sc.AttentionLayer(hidden_size=H, num_heads=A, parallelism=_parallelism(t, seq_par))
    prefill = _symcost(_metrics([layer], "prefill"))
    backward = _symcost(_metrics([layer], "training")) - prefill
    if seq_par:
        enter_fw, enter_bw = ("all_gather", "tp", t, PAYLOAD), ("reduce_scatter", "tp", t, PAYLOAD)
    else:
        enter_fw, enter_bw = None, ("all_reduce", "tp", t, PAYLOAD)
    if enter_fw:
        prefill[enter_fw] += 2  # 3 calls instead of 1
    backward[enter_bw] += 2
    assert fw == prefill
    assert bw + _regather(t, seq_par) == backward  # one re-gather for the fused QKV (Megatron)


@SEQ_PAR
def test_norm_then_mlp(mesh, seq_par):
    """A LayerNorm (SequenceParallel under SP) before the MLP adds no collective to its own."""
    t = mesh.size()
    plan = _norm_plan(seq_par, "norm") | _mlp_plan(seq_par, "mlp.")
    block = parallelize_module(_NormMLP(), mesh, plan)
    fw, bw = _trace(block, _input(t, seq_par))
    assert (fw, bw) == _expected(t, seq_par)
    par = _parallelism(t, seq_par)
    _assert_matches([sc.NormLayer(hidden_size=H, parallelism=par),
                     sc.MLPLayer(hidden_size=H, intermediate_size=FF, parallelism=par)], fw, bw,
                    _regather(t, seq_par))
    if seq_par:
        # NB: each rank's norm-parameter gradients cover only its sequence shard; torch leaves
        # them Partial and issues their TP all-reduce (h*e bytes per parameter) only when they
        # are materialised, outside the layer's backward (Megatron all-reduces them after the
        # backward, in finalize_model_grads). symcost's per-layer collectives exclude it, as they
        # exclude the data-parallel gradient all-reduce.
        for param in (block.norm.weight, block.norm.bias):
            assert param.grad.placements == (Partial(),)
            with _PayloadCommMode() as sync:
                param.grad.full_tensor()
            assert sync.counts() == Counter({("all_reduce", "tp", t, H * E): 1})


@SEQ_PAR
def test_norm_issues_nothing_per_module(mesh, seq_par):
    """CommDebugMode's per-module counts put every collective on fc1 and fc2, none on the norm."""
    t = mesh.size()
    block = parallelize_module(_NormMLP(), mesh,
                               _norm_plan(seq_par, "norm") | _mlp_plan(seq_par, "mlp."))
    with _PayloadCommMode() as comm:
        block(_input(t, seq_par)).sum().backward()
    per_module = {
        (module, phase): Counter({_KINDS[op.__name__]: n for op, n in ops.items() if n})
        for module, phases in comm.comm_module_counts.items() for phase, ops in phases.items()
    }
    nothing = Counter()
    assert per_module.get(("_NormMLP.norm", "forward"), nothing) == nothing
    assert per_module.get(("_NormMLP.norm", "backward"), nothing) == nothing
    if seq_par:
        # fc1 gathers its input and reduce-scatters its input gradient; fc2 the transpose
        assert per_module[("_NormMLP.mlp.fc1", "forward")] == Counter(all_gather=1)
        assert per_module[("_NormMLP.mlp.fc1", "backward")] == Counter(reduce_scatter=1)
        assert per_module[("_NormMLP.mlp.fc2", "forward")] == Counter(reduce_scatter=1)
        assert per_module[("_NormMLP.mlp.fc2", "backward")] == Counter(all_gather=1)
    else:
        assert per_module[("_NormMLP.mlp.fc2", "forward")] == Counter(all_reduce=1)
        # the input gradient's all-reduce runs after fc1's backward hooks: it lands on the root
        assert per_module[("_NormMLP", "backward")] == Counter(all_reduce=1)


@SEQ_PAR
def test_transformer_block(mesh, seq_par):
    """A pre-norm block (norm, attention, norm, MLP, residuals) issues the sum of symcost's
    per-layer collectives: two TP blocks per phase."""
    t = mesh.size()
    plan = (_norm_plan(seq_par, "norm1") | _attention_plan(seq_par, "fused", "attn.")
            | _norm_plan(seq_par, "norm2") | _mlp_plan(seq_par, "mlp."))
    block = parallelize_module(_Block(), mesh, plan)
    fw, bw = _trace(block, _input(t, seq_par))
    assert (fw, bw) == _expected(t, seq_par, blocks=2)
    par = _parallelism(t, seq_par)
    _assert_matches([sc.NormLayer(hidden_size=H, parallelism=par),
                     sc.AttentionLayer(hidden_size=H, num_heads=A, parallelism=par),
                     sc.NormLayer(hidden_size=H, parallelism=par),
                     sc.MLPLayer(hidden_size=H, intermediate_size=FF, parallelism=par)], fw, bw,
                    _regather(t, seq_par, linears=2))


@SEQ_PAR
@pytest.mark.parametrize("kind", ["mlp", "attention"])
def test_collective_order(mesh, seq_par, kind):
    """torch issues the collectives in symcost's op order: forward, then each transposed in
    reverse (under SP the backward all-gathers the output gradient before reduce-scattering
    the input gradient, and Megatron's re-gather of the saved input shard comes between them:
    it is issued before the dgrad GEMM whose output is reduce-scattered)."""
    # merged counts cannot see the order: under SP a backward that failed to transpose
    # (all-gather, reduce-scatter -> all-gather, reduce-scatter) has the same records
    t = mesh.size()
    par = _parallelism(t, seq_par)
    if kind == "mlp":
        module = parallelize_module(_MLP(), mesh, _mlp_plan(seq_par))
        layer = sc.MLPLayer(hidden_size=H, intermediate_size=FF, parallelism=par)
    else:
        module = parallelize_module(_Attention(fused=True), mesh, _attention_plan(seq_par, "fused"))
        layer = sc.AttentionLayer(hidden_size=H, num_heads=A, parallelism=par)
    fw, bw = _trace(module, _input(t, seq_par), ordered=True)
    # the op sequence behind compute_metrics(phase="training"), collectives in execution order
    ctx = Context(batch_size=sympy.Integer(B), seq_len=sympy.Integer(S), phase=sc.Phase.TRAINING,
                  dtype_bytes=sympy.Integer(E), parallelism=layer.parallelism, recompute="none")
    want = [(c.kind, c.axis, int(c.group_size), int(c.payload_bytes))
            for c in layer.ops(ctx) if isinstance(c, sc.Collective) for _ in range(int(c.count))]
    if seq_par:
        assert bw == [("all_gather", "tp", t, PAYLOAD), ("reduce_scatter", "tp", t, PAYLOAD)]
        bw = bw[:1] + list(_regather(t, seq_par).elements()) + bw[1:]
    assert fw + bw == want


@SEQ_PAR
def test_replicated_gradients_summed_over_tp(mesh, seq_par):
    """The gradients torch leaves ``Partial`` after a pre-norm block's backward, all-reduced when
    materialised, are the ones symcost's step sums over TP (``tp_summed_params`` of the block's
    layers at e bytes; Megatron-Core's ``finalize_model_grads`` -> ``_allreduce_layernorm_grads``):
    under SP the two LayerNorms' weight and bias, 2 * 2h elements; without SP none."""
    # NB: a bias on a rowwise linear is where torch and Megatron differ: DTensor's RowwiseParallel
    # leaves its gradient Replicate (nothing to sum), Megatron-Core's RowParallelLinear adds it on
    # the sequence shard after the reduce-scatter and marks it sequence_parallel (summed); the
    # block here has no linear biases
    t = mesh.size()
    plan = (_norm_plan(seq_par, "norm1") | _attention_plan(seq_par, "fused", "attn.")
            | _norm_plan(seq_par, "norm2") | _mlp_plan(seq_par, "mlp."))
    block = parallelize_module(_Block(), mesh, plan)
    _trace(block, _input(t, seq_par))
    with _PayloadCommMode() as sync:
        for param in block.parameters():
            if getattr(param.grad, "placements", None) == (Partial(),):
                param.grad.full_tensor()
    par = _parallelism(t, seq_par)
    layers = [sc.NormLayer(hidden_size=H, parallelism=par),
              sc.AttentionLayer(hidden_size=H, num_heads=A, parallelism=par),
              sc.NormLayer(hidden_size=H, parallelism=par),
              sc.MLPLayer(hidden_size=H, intermediate_size=FF, parallelism=par)]
    summed = sum(int(layer.tp_summed_params) for layer in layers)
    assert summed == (2 * 2 * H if seq_par else 0)
    want = Counter({("all_reduce", "tp", t, H * E): 4}) if seq_par else Counter()  # one per Partial tensor
    assert sync.counts() == want
    assert sum(payload * n for (_, _, _, payload), n in sync.counts().items()) == summed * E
