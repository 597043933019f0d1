"""The data-parallel traffic of ZeRO-2/3 checked against PyTorch's FSDP2 with tensor parallelism.

One MLP layer (two linear layers, the first column- and the second row-parallel over ``t`` TP
ranks, ``torch.distributed.tensor.parallel``) is wrapped by ``fully_shard`` over ``d`` DP ranks of
a 2-D mesh on a *fake* process group (one process plays rank 0; every collective is issued, no
data moves), as torchtitan composes FSDP2 with TP. One micro-batch's forward and backward run
under a ``CommDebugMode`` that records each collective with its payload (the all-gather output,
the reduce-scatter input, the all-reduce buffer; docs/conventions.md §11).

symcost's model of the same step (:func:`symcost.plan.training._sync_phases` for one micro-batch,
fp32 weights and gradients, ``P`` the layer's TP-local parameters):

- ``reshard_after_forward=True`` (ZeRO-3; torchtitan's policy without PP): the weights gathered
  for the forward and again for the backward, the gradients reduce-scattered: all-gathers of
  ``2 x 4P`` bytes, one reduce-scatter of ``4P``;
- ``reshard_after_forward=False`` (torchtitan's default with PP; Meta's Llama 3 FSDP): one gather
  for the forward and the backward, one reduce-scatter: symcost's ZeRO-2 traffic with one
  micro-batch (gather ``4P``, reduce-scatter ``4P``);
- the TP all-reduces of the layer (Megatron's g forward, f backward) are symcost's MLPLayer's.
"""

from __future__ import annotations

from collections import Counter

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch was built without torch.distributed", allow_module_level=True)

import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.fsdp import fully_shard  # noqa: E402
from torch.distributed.tensor.debug import CommDebugMode  # noqa: E402
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module  # noqa: E402
from torch.testing._internal.distributed.fake_pg import FakeStore  # noqa: E402

import symcost as sc  # noqa: E402
from symcost.plan import training  # noqa: E402

# NB: FSDP2 warns that a wrapped module returns a view (the TP output); nothing here writes to it
pytestmark = pytest.mark.filterwarnings("ignore:FSDP2-wrapped module")

D, T = 2, 4  # data- and tensor-parallel degrees
B, S, H, FF = 2, 8, 32, 128
E = 4  # fp32, torch's default dtype
P = 2 * H * FF // T  # TP-local parameters of the layer: 2,048

_KINDS = {"_allgather_base_": "all_gather", "allgather_into_tensor_coalesced": "all_gather",
          "_reduce_scatter_base_": "reduce_scatter", "reduce_scatter_tensor_coalesced": "reduce_scatter",
          "all_reduce": "all_reduce", "allreduce_": "all_reduce"}


class _Recording(CommDebugMode):
    """Keeps ``(kind, payload bytes)`` of each collective ``CommDebugMode`` counts."""

    def __init__(self):
        super().__init__()
        self.records: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        before = self.get_total_counts()
        out = super().__torch_dispatch__(func, types, args, kwargs)
        if out is not NotImplemented and self.get_total_counts() > before:
            name = func.__name__.split(".")[0]
            kind = _KINDS[name]
            # all-gather: the output (args[0]); reduce-scatter: the input (args[1]); all-reduce: the buffer
            tensor = args[0] if kind != "reduce_scatter" else args[1]
            if isinstance(tensor, (list, tuple)):
                tensor = tensor[0]
            self.records.append((kind, tensor.numel() * tensor.element_size()))
        return out


class _MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.up = nn.Linear(H, FF, bias=False)
        self.down = nn.Linear(FF, H, bias=False)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


@pytest.fixture(scope="module")
def mesh():
    assert not dist.is_initialized(), "a process group is already initialised"
    dist.init_process_group("fake", rank=0, world_size=D * T, store=FakeStore())
    try:
        yield init_device_mesh("cpu", (D, T), mesh_dim_names=("dp", "tp"))
    finally:
        dist.destroy_process_group()


def _one_microbatch(mesh, reshard_after_forward):
    """Torch's collectives of one forward and backward, as ``{kind: total payload}`` and counts."""
    layer = _MLP()
    parallelize_module(layer, mesh["tp"], {"up": ColwiseParallel(), "down": RowwiseParallel()})
    model = nn.Sequential(layer)
    fully_shard(layer, mesh=mesh["dp"], reshard_after_forward=reshard_after_forward)
    fully_shard(model, mesh=mesh["dp"])
    x = torch.randn(B, S, H, requires_grad=True)
    with _Recording() as mode:
        model(x).sum().backward()
    payload, count = Counter(), Counter()
    for kind, nbytes in mode.records:
        payload[kind] += nbytes
        count[kind] += 1
    return payload, count


def _symcost_dp(zero_stage):
    """symcost's data-parallel traffic of one micro-batch: ``{kind: total payload}``."""
    out: Counter = Counter()
    for phase in training._sync_phases([(P, D, T)], e=E, m=1, zero_stage=zero_stage, grad=E):
        for kind, _, size, nbytes, _ in phase.traffic:
            out[kind] += phase.count * size * nbytes
    return out


def _symcost_tp():
    layer = sc.MLPLayer(hidden_size=H, intermediate_size=FF, activation="relu", parallelism={"tensor_parallel": T})
    m = layer.compute_metrics(batch_size=B, seq_len=S, phase="training", dtype="fp32")
    return Counter({c.kind: c.count * c.payload_bytes for c in m.collectives})


def test_fsdp2_resharding_after_forward_is_zero3(mesh):
    payload, count = _one_microbatch(mesh, reshard_after_forward=True)
    assert count["all_gather"] == 2 and count["reduce_scatter"] == 1
    dp = Counter({k: v for k, v in payload.items() if k != "all_reduce"})
    assert dp == _symcost_dp(3) == Counter({"all_gather": 2 * E * P, "reduce_scatter": E * P})
    assert Counter({"all_reduce": payload["all_reduce"]}) == _symcost_tp() == Counter({"all_reduce": 2 * B * S * H * E})


def test_fsdp2_without_resharding_is_zero2_with_one_microbatch(mesh):
    payload, count = _one_microbatch(mesh, reshard_after_forward=False)
    assert count["all_gather"] == 1 and count["reduce_scatter"] == 1
    dp = Counter({k: v for k, v in payload.items() if k != "all_reduce"})
    assert dp == _symcost_dp(2) == Counter({"all_gather": E * P, "reduce_scatter": E * P})
