"""symcost's context-parallel collectives checked against PyTorch's own ring attention.

PyTorch 2.13's public API, ``torch.distributed.tensor.experimental.context_parallel``, runs on
CPU with the math SDPA backend (``sdpa_kernel(SDPBackend.MATH)``): its ring handlers are mapped
only to the CUDA flash, efficient and cuDNN kernels (the CPU flash kernel
``aten._scaled_dot_product_flash_attention_for_cpu`` has no sharding strategy), but the math
backend decomposes SDPA into matmuls and a softmax over DTensors, which DTensor itself shards: it
all-gathers K and V for the forward and again for the backward, and reduce-scatters dK and dV --
symcost's ``"all_gather"`` exchange, call by call split in two (K, then V). The math backend builds
a causal mask as a plain tensor, which DTensor refuses to add, so that check is non-causal (the
exchange is the same either way); and the sharded inputs take ``requires_grad`` inside the context
and are not restored after it (a tensor that requires grad cannot be resized back).

The ring itself (not what the math backend runs) is checked directly: ``_templated_ring_attention``
and ``_templated_ring_attention_backward`` (the functions the public API calls on CUDA, in
``torch.distributed.tensor.experimental._context_parallel._attention``) take the attention kernel as
an argument, so they run here with the CPU flash kernel on a *fake* process group (one process plays
rank 0 of ``cp``; the fake backend moves no data, as in ``test_torch_tp_comm.py``). Each collective
is recorded as symcost's ``(kind, axis, group size, payload bytes)`` (docs/conventions.md §11):
PyTorch's KV rotation by ``permute_tensor`` (an ``all_to_all_single`` whose whole buffer goes to the
next rank) is a point-to-point send of its buffer; an ``all_gather_into_tensor`` has its output as
payload.

What PyTorch does, per rank, and how it compares with symcost's ``cp_comm_type``:

- ``"alltoall"`` rotation (the ring, symcost's ``"p2p"``): forward cp - 1 sends of the K, V chunk;
  backward cp - 1 sends of K, V and cp sends of dK, dV. Equal to symcost, payloads included
  (fp32 here: PyTorch accumulates dK, dV in fp32, symcost at the activations' e, which is 4).
- ``"allgather"`` (PyTorch's default): forward one all-gather of K, V, equal to symcost's
  ``"all_gather"``; backward one all-gather of K, V (as symcost) but the dK, dV go around the ring
  (cp sends) where Megatron/Transformer Engine, and symcost, reduce-scatter them once.
"""

from __future__ import annotations

from collections import Counter

import pytest

torch = pytest.importorskip("torch")
if not torch.distributed.is_available():
    pytest.skip("torch was built without torch.distributed", allow_module_level=True)

import torch.distributed as dist  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.distributed.device_mesh import init_device_mesh  # noqa: E402
from torch.distributed.distributed_c10d import _resolve_process_group  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

# importing fake_pg registers the "fake" backend
from torch.testing._internal.distributed.fake_pg import FakeStore  # noqa: E402
from torch_comm import RecordingCommMode  # noqa: E402

try:
    from torch.distributed.tensor.experimental import context_parallel
    from torch.distributed.tensor.experimental._context_parallel._attention import (
        _templated_ring_attention,
        _templated_ring_attention_backward,
        set_rotate_method,
    )
except ImportError as err:  # pragma: no cover - another torch
    pytest.skip(f"torch {torch.__version__} has no ring attention to check against: {err}", allow_module_level=True)

import symcost as sc  # noqa: E402

B, A, S, D = 2, 4, 16, 8  # batch, heads (MHA: a = g), sequence, head dim
E = 4  # fp32, torch's default dtype
_FWD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default
_BWD = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward.default
_FUNCOL = ("_c10d_functional", "c10d_functional", "_c10d_functional_autograd")


@pytest.fixture(scope="module", params=[2, 4], ids=lambda c: f"cp{c}")
def mesh(request):
    """A 1-D CP mesh of ``cp`` ranks on a fake process group, this process being rank 0."""
    assert not dist.is_initialized(), "a process group is already initialised"
    dist.init_process_group("fake", rank=0, world_size=request.param, store=FakeStore())
    try:
        torch.manual_seed(0)
        yield init_device_mesh("cpu", (request.param,))
    finally:
        set_rotate_method("allgather")  # torch's default, restored for any later user
        dist.destroy_process_group()


def _record(func, args, kwargs, out) -> tuple:
    assert func.namespace in _FUNCOL, func
    bound = dict(zip((a.name for a in func._schema.arguments), args)) | dict(kwargs or {})
    group = _resolve_process_group(bound["group_name"]).size()
    in_bytes = bound["input"].numel() * bound["input"].element_size()
    if func._opname == "all_to_all_single":
        # permute_tensor: the whole buffer to one rank (split sizes: all of it to one peer)
        splits = list(bound["input_split_sizes"])
        assert sorted(splits) == [0] * (group - 1) + [bound["input"].shape[0]], splits
        return ("p2p", "cp", group, in_bytes)
    if func._opname == "all_gather_into_tensor":
        return ("all_gather", "cp", group, out.numel() * out.element_size())
    if func._opname == "reduce_scatter_tensor":  # the payload is the input (docs/conventions.md §11)
        return ("reduce_scatter", "cp", group, in_bytes)
    raise AssertionError(f"unexpected collective {func}")


def _ring(mesh, method: str) -> tuple[Counter, Counter]:
    """PyTorch's ring attention on rank 0's chunks (b, a, s/cp, d), causal and load-balanced:
    the collectives of the forward and of the backward."""
    set_rotate_method(method)
    cp = mesh.size()
    q, k, v = (torch.randn(B, A, S // cp, D) for _ in range(3))
    group = mesh.get_group()
    with RecordingCommMode(_record) as fw:
        out, lse = _templated_ring_attention(group, 2, _FWD, q, k, v, is_causal=True)[:2]
    with RecordingCommMode(_record) as bw:
        _templated_ring_attention_backward(group, 2, _BWD, torch.ones_like(out), "grad_out", q, k, v, out, lse,
                                           is_causal=True, dropout_p=0.0)
    return Counter(fw.records), Counter(bw.records)


def _symcost(cp: int, comm: str, causal: bool = True) -> tuple[Counter, Counter]:
    """symcost's collectives of the attention layer (t = 1: the CP exchange only), fp32: prefill
    (the forward) and training minus prefill (the backward)."""
    layer = sc.AttentionLayer(hidden_size=A * D, num_heads=A, causal=causal,
                              parallelism={"context_parallel": cp, "cp_comm_type": comm})

    def calls(phase):
        m = layer.compute_metrics(batch_size=B, seq_len=S, phase=phase, dtype="fp32")
        return Counter({(c.kind, c.axis, int(c.group_size), int(c.payload_bytes)): int(c.count)
                        for c in m.collectives})

    fw = calls("prefill")
    return fw, calls("training") - fw


def test_ring_p2p_matches(mesh):
    """The ring: forward cp-1 sends, backward cp-1 + cp, of the K, V chunk
    M = b*a*(s/cp)*d*2*4 bytes (cp = 2: 2*4*8*8*2*4 = 4,096), as symcost's ``"p2p"``."""
    cp = mesh.size()
    chunk = B * A * (S // cp) * D * 2 * E
    fw, bw = _ring(mesh, "alltoall")
    assert fw == Counter({("p2p", "cp", cp, chunk): cp - 1})
    assert bw == Counter({("p2p", "cp", cp, chunk): (cp - 1) + cp})
    assert (fw, bw) == _symcost(cp, "p2p")


def test_all_gather_forward_matches(mesh):
    """PyTorch's default rotation: one all-gather of the whole K, V, b*a*s*d*2*4 bytes, forward and
    again backward, as symcost's ``"all_gather"``; its dK, dV go around the ring (cp sends) where
    symcost (Megatron/TE) reduce-scatters them once."""
    cp = mesh.size()
    whole, chunk = B * A * S * D * 2 * E, B * A * (S // cp) * D * 2 * E
    fw, bw = _ring(mesh, "allgather")
    assert fw == Counter({("all_gather", "cp", cp, whole): 1})
    assert bw == Counter({("all_gather", "cp", cp, whole): 1, ("p2p", "cp", cp, chunk): cp})
    ours_fw, ours_bw = _symcost(cp, "all_gather")
    assert fw == ours_fw
    assert ours_bw == Counter({("all_gather", "cp", cp, whole): 1, ("reduce_scatter", "cp", cp, whole): 1})


def test_public_api_on_cpu_matches_all_gather(mesh):
    """``context_parallel`` itself on CPU (math SDPA, non-causal): forward all-gathers of K and of V,
    b*a*s*d*4 bytes each (cp = 2: 2*4*16*8*4 = 4,096), whose sum is symcost's one all-gather of K and
    V together (8,192); backward the same all-gathers again plus reduce-scatters of dK and of dV,
    summing to symcost's one all-gather and one reduce-scatter of K, V and of dK, dV."""
    cp = mesh.size()
    one = B * A * S * D * E  # K (or V) over the whole sequence, fp32
    q, k, v = (torch.randn(B, A, S, D) for _ in range(3))
    with sdpa_kernel(SDPBackend.MATH), context_parallel(mesh, buffers=[q, k, v], buffer_seq_dims=[2, 2, 2],
                                                       no_restore_buffers={q, k, v}):
        for t in (q, k, v):
            t.requires_grad_()
        with RecordingCommMode(_record) as fw:
            out = F.scaled_dot_product_attention(q, k, v)
        with RecordingCommMode(_record) as bw:
            out.sum().backward()
    assert Counter(fw.records) == Counter({("all_gather", "cp", cp, one): 2})
    assert Counter(bw.records) == Counter({("all_gather", "cp", cp, one): 2, ("reduce_scatter", "cp", cp, one): 2})
    ours_fw, ours_bw = _symcost(cp, "all_gather", causal=False)
    assert _bytes(fw.records) == _bytes(ours_fw) and _bytes(bw.records) == _bytes(ours_bw)


def _bytes(calls) -> Counter:
    """Payload bytes by (kind, axis, group size): records (one per call) or symcost's counted calls."""
    counted = calls if isinstance(calls, Counter) else Counter(calls)
    out: Counter = Counter()
    for (kind, axis, group, payload), n in counted.items():
        out[kind, axis, group] += payload * n
    return out
