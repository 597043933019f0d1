"""The time model: a roofline per op plus an explicit efficiency model (docs/conventions.md §13, §14, §17).

Per op, on a chip whose fields give the efficiencies (all 1 and overheads 0 on the ideal chip):

- matmul: ``2 k * T_M T_N * waves * U / (peak * eta_mm)`` where the product is cut into
  ``tiles = batch * ceil(m/T_M) * ceil(n/T_N)`` output tiles run ``U`` at a time
  (``waves = ceil(tiles/U)``; fewer tiles than compute units are spread over the chip by
  split-K, ``waves = tiles/U``): tile and wave quantization, and the small-M regime of decode
  GEMMs, whose M is padded to a whole tile;
- attention core: FLOPs at the 16-bit peak times ``eta_attn`` (flash kernels);
- bytes and fixed times by the op's kernel class (:mod:`symcost.hardware.kernels`: GEMMs at
  ``eta_gmem`` with a quantizing pass in 8- and 4-bit formats, grouped GEMMs, prefill attention
  with a pass over its new tokens, decode attention at ``eta_kv``, elementwise at ``eta_mem``),
  vector FLOPs at the vector units' rate;
- time ``max(compute, memory) + serial + kernels * t_class``, and without CUDA graphs at least
  ``kernels * t_launch`` (the host launches each kernel), where ``kernels`` is the op's kernel
  count in a fusing engine (:data:`FUSED_OPS` run inside another op's kernel).

Collectives: NCCL's own cost model (NVIDIA/nccl v2.30.7, src/graph/tuning.cc), the fastest of
the algorithms the chip offers (:func:`collective_algorithms`): ring (every collective; per call
``alpha_0 + t_coll`` plus ``alpha`` per hop inside a scale-up domain and ``alpha_net`` per hop
between domains, plus ``bytes_sent / link``, the link at ``eta_net`` inside a domain and at
``eta_out`` beyond it), NCCL's low-latency protocol, an engine's own all-reduce, double binary
tree (all-reduce across domains) and NVLink SHARP (inside a domain whose switches reduce); inside
one domain the ring runs the protocol (LL, LL128, Simple) NCCL's own estimate picks
(:func:`nccl_ring_protocol`), at that protocol's time. ``t_coll`` is the engine's
own time per call (:class:`~symcost.hardware.Runtime`); the link is the scale-up link when the
group fits in one scale-up domain, else the scale-out link.

Communication adds to the compute time, less what the compute hides (:func:`exposed_comm`): the
hidden all-to-alls, and with ``overlap=True`` the TP chunks and the CP ring's sends.

>>> from symcost.core.ops import Collective
>>> from symcost import hardware
>>> c = Collective("all_reduce", "tp", 8, 10**9)          # 1 GB over 8 H100s (NVLink)
>>> t = collective_time(c, hardware.H100_SXM.ideal())     # ring: 14 hops * 0.6 us + 1.75 GB / 450 GB/s
>>> t == 14 * sp.Rational(6, 10**7) + sp.Rational(7 * 10**9 // 4, 450 * 10**9)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Optional

import sympy as sp

from ..core import symbols as sym
from ..core._expr import Ceil, as_expr, extreme, total
from ..core.dtypes import DataType
from ..core.ops import Collective, Op
from .chip import Hardware
from .kernels import FUSED_OPS, KERNELS, OpTime, kernel, kernels, matmul_compute_flops, time_of
from .runtime import MIB, NCCL_TUNING, VLLM_ALLREDUCE_SIZES, VLLM_CUSTOM_MAX  # noqa: F401 (MIB: the doctests' unit)

__all__ = ["FUSED_OPS", "KERNELS", "LayerSums", "OpTime", "Times", "VLLM_ALLREDUCE_SIZES", "collective_algorithms",
           "collective_steps", "collective_time", "exposed_comm", "kernel", "kernels", "layer_times",
           "matmul_compute_flops", "op_time", "trtllm_allreduce_window", "vllm_allreduce_window"]

_OP_TIMES: dict[tuple, OpTime] = {}
_COLLECTIVE_TIMES: dict[tuple, sp.Expr] = {}


def _cached(cache: dict[tuple, Any], key: tuple, build: Any, size: int = 4096) -> Any:
    """``cache[key]``, built by ``build()`` on a miss (the cache emptied once it holds ``size``);
    a key that cannot be hashed (a user's op with a list field) is built every time."""
    try:
        hit = cache.get(key)
    except TypeError:
        return build()
    if hit is None:
        if len(cache) >= size:
            cache.clear()
        hit = cache[key] = build()
    return hit


def op_time(op: Op, hardware: Hardware, peak: sp.Expr, datatype: Optional[DataType] = None) -> OpTime:
    """Time terms of ``op`` on ``hardware`` with matmul FLOP/s ``peak`` (efficiency applied);
    ``datatype`` picks the attention kernels' rate (the 16-bit peak for 8-bit models).

    NB: memoized per (op, chip, peak, dtype), all immutable: the layer variants of a search (sequence
    mode, recompute, overlap) and the roofline share most ops."""
    return _cached(_OP_TIMES, (op, hardware, peak, datatype), lambda: _op_time(op, hardware, peak, datatype))


def _op_time(op: Op, hardware: Hardware, peak: sp.Expr, datatype: Optional[DataType]) -> OpTime:
    return time_of(op, hardware, peak, datatype)


def collective_steps(kind: str, n: Any) -> sp.Expr:
    """Latency-bound steps (hops) of one ring collective over ``n`` chips: all-reduce
    ``2(n-1)``, all-gather, reduce-scatter and all-to-all ``n-1``, p2p 1 (NVIDIA/nccl
    src/graph/tuning.cc, ``nsteps``; a p2p in a group of one: 0)."""
    n = as_expr(n, "group_size")
    if kind == "all_reduce":
        return 2 * (n - 1)
    if kind in ("all_gather", "reduce_scatter", "all_to_all"):
        return n - 1
    # p2p: one send, none in a group of one (a context-parallel ring of one rank)
    return sp.Integer(1) if n.is_number and n > 1 else sp.Min(1, n - 1)


def _inter_steps(kind: str, nodes: sp.Expr) -> sp.Expr:
    """Of a ring's steps, those that cross the scale-out network between ``nodes`` scale-up
    domains (tuning.cc ``nInterSteps``: all-reduce ``2(nodes-1)``, the others ``nodes-1``)."""
    return 2 * (nodes - 1) if kind == "all_reduce" else nodes - 1


def collective_algorithms(c: Collective, hardware: Hardware) -> dict[str, sp.Expr]:
    """Seconds of all ``c.count`` calls under each algorithm the chip offers for ``c``: NCCL's
    own cost model (NVIDIA/nccl v2.30.7, src/graph/tuning.cc), ``count * latency +
    bytes / bandwidth`` per algorithm, with latency figures of the LL protocol and bandwidth
    figures of the Simple protocol (docs/conventions.md §17):

    - ``ring`` (every kind): ``(alpha_0 + t_coll) * min(1, n - 1) + alpha * (steps - inter) +
      alpha_net * inter`` per call, plus ``bytes_sent / link`` (:func:`_link`: the scale-up link
      at ``eta_net``, the scale-out link at ``eta_out``); ``inter`` the steps between scale-up
      domains (:func:`collective_steps`);
    - ``ll`` (chips with ``ll_base_latency``; not a hierarchical all-to-all, which DeepEP's or
      HybridEP's own kernels run): NCCL's low-latency protocol, ``alpha_LL0 + t_coll +
      alpha_LL (steps - inter) + alpha_net inter`` per call, plus ``bytes_sent / (link eta_LL)``.
      Inside one domain, for an all-reduce, all-gather or reduce-scatter on a chip whose compute
      capability NCCL's tables cover (:func:`nccl_ring_tuning`), ``ring`` is instead the protocol
      NCCL's own estimate picks, LL, LL128 or Simple (:func:`nccl_ring_protocol`), at that
      protocol's time, and there is no ``ll`` entry: NCCL does not take the fastest;
    - ``custom`` and ``custom_two_shot`` (all-reduce inside one domain under an engine profile
      with ``allreduce = "custom"``): the engine's own all-reduce (:func:`_custom_allreduce`);
    - ``tree`` (all-reduce over more than one scale-up domain, chips with ``tree_latency``): a
      double binary tree, ``alpha_0 + t_coll + 2 ((n/nodes - 1) alpha + floor(log2 nodes)
      alpha_tree)`` per call, plus ``2 M count / (link * eta_tree)`` (tuning.cc:
      bus bandwidth times ``.92``, algorithm bandwidth half of it). Inside one domain NCCL's tree
      is a chain as slow as the ring per hop and sends more bytes, so it is left out there;
    - ``nvls`` (all-reduce, all-gather, reduce-scatter inside one scale-up domain with NVLink
      SHARP): ``alpha_nvls + t_coll`` per call (tuning.cc: NVLS has no base latency, its hop
      latency is the whole), plus all-reduce ``bytes_sent / (2 kappa_nvls eta_nvls link)`` (the
      switch reduces; NCCL pipelines two operations) or all-gather / reduce-scatter
      ``M count / (kappa_nvls eta_nvls (n-1)/n link)``, ``kappa_nvls`` NCCL's own factor for the
      GPU's architecture (:attr:`~symcost.hardware.chip.Hardware.nccl_nvls_efficiency`).

    ``nodes``, the scale-up domains the group touches, is ``min(n, ceil(span / D_up))``.
    """
    fits = sp.Le(as_expr(c.span, "span"), hardware.scale_up_domain)
    if fits is sp.true:
        return _algorithms(c, hardware, inside=True)
    if fits is sp.false:
        return _algorithms(c, hardware, inside=False)
    # a symbolic span: one Piecewise per algorithm over the two placements (an algorithm one
    # placement lacks costs oo there)
    inside, across = _algorithms(c, hardware, inside=True), _algorithms(c, hardware, inside=False)
    return {name: sp.Piecewise((inside.get(name, sp.oo), fits), (across.get(name, sp.oo), True))
            for name in dict.fromkeys([*inside, *across])}


def _link(kind: str, hardware: Hardware, inside: bool, n: sp.Expr, nodes: sp.Expr) -> sp.Expr:
    """Bytes/s per chip a collective moves: the scale-up link at ``eta_net`` inside one domain;
    across domains, a ring or tree collective runs one NCCL channel through the NIC of each of
    the group's n/nodes chips in a domain, so a domain's traffic shares n/nodes scale-out links
    at ``eta_out`` (at most the scale-up link's rate: every channel also crosses it); an
    all-to-all or p2p sends each chip's bytes over its own scale-out link. Inside a domain a p2p
    send takes the link between its two chips, ``peer_bandwidth``.

    NB: n/nodes assumes the group spreads evenly over its domains; an uneven split (10 chips as
    8 + 2) is paced by its smallest domain's NICs, which this overstates (docs/conventions.md §17)."""
    up = hardware.scale_up_bandwidth * hardware.network_efficiency
    out = hardware.scale_out_bandwidth * hardware.out_efficiency
    if inside:
        # a send between two chips crosses one link of a mesh or torus (all of a switch's)
        return hardware.peer_bandwidth * hardware.network_efficiency if kind == "p2p" else up
    if kind in ("all_reduce", "all_gather", "reduce_scatter"):
        return extreme(sp.Min, up, n / nodes * out)
    return out


def node_crossings(hierarchical: tuple[Any, Any, Any], group_size: Any, per_node: Any) -> sp.Expr:
    """Bytes one call of a hierarchical dispatch moves through the busiest scale-out link direction
    (:attr:`~symcost.core.ops.Collective.hierarchical` ``(R, E, k)``), ``n`` ranks placed
    contiguously (Megatron-Core's EP rank order) ``r`` to a node: ``F = floor(n/r)`` full nodes and
    one of ``q = n - r F`` ranks when ``q > 0``. A token reaches a node of ``x`` ranks (``x E/n``
    experts) with probability ``m(x) = 1 - C(E - x E/n, k)/C(E, k)`` (``k`` experts drawn
    uniformly without replacement; the product form ``1 - prod_{i<k} (E - x E/n - i)/(E - i)``
    where ``k`` is a number), once per node over the network. Per rank and direction:

    - a rank of a full node sends ``R ((F - 1) m(r) + m(q))`` and receives ``R ((F - 1) m(r) +
      q m(r)/r)`` (the other nodes' tokens for its node spread over its node's ``r`` links);
    - a rank of the partial node sends ``R F m(r)`` and receives ``R F r m(q)/q``.

    ``m`` is concave (one minus a product of positive, falling, linear factors), so ``m(q)/q >=
    m(r)/r``: the partial node's receives are the largest, ``R F r m(q)/q``; with ``q = 0`` every
    rank moves ``R (F - 1) m(r)``, the even split's ``R (N - 1)(1 - C(E - E/N, k)/C(E, k))``.

    >>> node_crossings((14, 8, 2), 4, 2)     # even: 14 (2 - 1)(1 - C(4, 2)/C(8, 2)) = 14 * 22/28
    11
    >>> node_crossings((5, 6, 2), 6, 4)      # 4 + 2: 5 * 1 * 4 * (1 - C(4, 2)/C(6, 2))/2 = 5 * 2 * 3/5
    6
    """
    rows, experts, k = (sp.sympify(v) for v in hierarchical)
    n, r = sp.sympify(group_size), sp.sympify(per_node)

    def reach(x: sp.Expr) -> sp.Expr:
        other = experts - x * experts / n
        if k.is_Integer:
            return 1 - sp.Mul(*[(other - i) / (experts - i) for i in range(int(k))])
        return 1 - sp.binomial(other, k) / sp.binomial(experts, k)

    full = -Ceil(-n / r)              # floor(n / r)
    partial = n - r * full
    even = rows * (full - 1) * reach(r)
    uneven = rows * full * r * reach(partial) / partial
    if partial.is_zero:
        return even
    if partial.is_positive:
        return uneven
    return sp.Piecewise((uneven, sp.Gt(partial, 0)), (even, True))


def _moved(c: Collective, sent: sp.Expr, n: sp.Expr, nodes: sp.Expr, link: sp.Expr, hardware: Hardware,
           inside: bool) -> sp.Expr:
    """Seconds a chip's ``sent`` bytes take over its links: ``sent / link``; an all-to-all over
    several scale-up domains sends to every peer at once (NCCL's grouped send and receive), the
    share bound for other domains, ``(n - n/nodes)/(n - 1)`` of ``sent``, over the chip's
    scale-out link while the rest crosses the scale-up link: the slower of the two. A
    hierarchical all-to-all (:attr:`~symcost.core.ops.Collective.hierarchical`) sends
    :func:`node_crossings` per call over the network, and every sent byte once over the scale-up
    link (directly, or forwarded on arrival)."""
    if c.kind != "all_to_all" or inside:
        return sent / link
    up = hardware.scale_up_bandwidth * hardware.network_efficiency
    if c.hierarchical is not None:
        # the group's members are span/n chips apart: a scale-up domain holds D n/span of them
        # (NB: exact where the stride divides D or is at least D, as Megatron-Core's power-of-two
        # expert TP sizes do)
        per_node = extreme(sp.Max, 1, -Ceil(-hardware.scale_up_domain * n / as_expr(c.span, "span")))
        outside = as_expr(c.count, "count") * node_crossings(c.hierarchical, n, per_node)
        return extreme(sp.Max, outside / link, sent / up)
    outside = sent * (n - n / nodes) / (n - 1)
    return extreme(sp.Max, outside / link, (sent - outside) / up)


def _custom_allreduce(count: sp.Expr, n: sp.Expr, payload: sp.Expr, hardware: Hardware,
                      bf16: bool = True, tokens: Optional[sp.Expr] = None) -> dict[str, sp.Expr]:
    """The engine's own all-reduce (TensorRT-LLM, vLLM, SGLang) over the scale-up link, both its
    forms (the ``Min`` picks the faster, or NCCL's where that is faster still; under vLLM's
    profile its size switch picks, :func:`vllm_allreduce_window`): one-shot, each
    chip reads the other n - 1 buffers, ``alpha_c + (n - 1) alpha_c,p + (n - 1) M / (B_up eta_c)``;
    two-shot, a reduce-scatter then an all-gather of (n - 1)/n of the buffer each, ``alpha_c,2 +
    (n - 1) alpha_c,p + 2 (n - 1) M / (n B_up eta_c)``. ``alpha_c,p`` is each peer's flag (both
    forms signal every other chip of the group); ``alpha_c,2`` the two-shot's own time per call
    (two barriers and a second pass; unset ``2 alpha_c``). The engine's own time per call
    (``t_coll``) is added once to either form. Under the ``"trtllm-1.0"`` rule with
    ``custom_allreduce_block_rate`` ``R_cb`` set the one-shot also takes
    ``n (M / T') ceil(T' / min(S, T')) / R_cb`` (:func:`_one_shot_blocks`; ``T' = max(1, T)``, ``T``
    the collective's ``tokens``, 1 where unknown; ``S`` the chip's ``compute_units``): TensorRT-LLM
    1.0's Lamport one-shot below SM 90 (no thread-block clusters) launches one block per token up
    to the SM count (``allreduce_fusion_kernel_launcher``: ``cluster_size = 1``, ``grid_size =
    min(sm_count, token_num)``; cpp/tensorrt_llm/kernels/communicationKernels/allReduceFusionKernels.cu,
    TensorRT-LLM tag v1.0.0; the text read here is commit 04c74656f77c, the tag's own copy not
    being readable here), each block looping over tokens with stride
    ``gridDim.x`` and storing each token's ``M/T`` bytes into all ``n`` chips' buffers and polling
    the ``n`` copies back (``allreduce_fusion_kernel_oneshot_lamport``), at the rate one block
    reaches, whatever the link's. On A100 a single block's rate (tens of GB/s) paces the small
    messages the link does not. SM >= 90 spreads a token over a cluster of up to 8 blocks, so the
    term is applied under ``"trtllm-1.0"`` only (the A100 rule). NB: the rate is fitted on the
    collector's rows of 4096 16-bit elements (blocks of 512 threads) and taken per block for
    other row widths; rows above 8192 16-bit elements need more than 1024 threads a block below
    SM 90 (``TLLM_CHECK(block_size <= 1024)``), where the Lamport one-shot cannot run and the
    model extrapolates. The two-shot (2 GPUs above 128 tokens) runs ``min(S, ceil(T/n))`` blocks
    and has no such term (not fitted). NB: the collector (aiconfigurator e46d9089f) times
    ``tensorrt_llm._torch.distributed.AllReduce`` with strategy AUTO, the PyTorch path
    (``ar_fusion``), not the plugin's customAllReduceKernels.cu. NB: the ``Min`` stands for the
    engines' own choice: TensorRT-LLM's AUTO strategy picks from a table of benchmarked one-shot, two-shot and NCCL
    times per TP size, hidden size and token count (``selectStrategyLookUpTable``,
    cpp/tensorrt_llm/common/customAllReduceUtils.h), vLLM switches at fixed sizes (one-shot below
    512 KB on up to 4 GPUs and below 256 KB on 8, always on 2: ``CustomAllreduce::allreduce``,
    csrc/custom_all_reduce.cuh), so the faster form is the one a tuned engine runs.

    Under the ``"vllm"`` rule with ``symm_allreduce_latency`` set and a ``bf16`` payload (the
    collective's :attr:`~symcost.core.ops.Collective.element_format` bf16 or unknown: vLLM's
    symmetric-memory communicator takes bf16 only, symm_mem.py ``should_use_symm_mem``; an fp16 or
    fp32 tensor in its window goes on to NCCL), also ``symm``: torch symmetric
    memory's all-reduce, ``alpha_s + t_coll + M / (B_up eta_s)`` per call (a copy in, the
    multimem or two-shot kernel, a copy out; both kernels run on a fixed 8 or 24 thread blocks, so
    the buffer's ``M`` bytes at the rate those blocks reach pace them, not the link's bytes: on
    B200's table this form fits the symmetric-memory rows at 6.9 % mean error, the link-bytes form
    ``(n - 1) M / n`` (multimem) or ``2 (n - 1) M / n`` (two-shot) at 14.4 %)."""
    alpha = hardware.custom_allreduce_latency
    assert alpha is not None  # the caller checked
    custom_link = hardware.scale_up_bandwidth * hardware.custom_allreduce_efficiency
    # the engine's own time per call (t_coll) around its kernel, as around NCCL's
    overhead = hardware.runtime.collective_overhead
    peers = (n - 1) * hardware.custom_allreduce_peer_latency
    blocks = _one_shot_blocks(n, payload, hardware, tokens)
    out = {"custom": count * (alpha + overhead + peers + (n - 1) * payload / custom_link + blocks),
           "custom_two_shot": count * (hardware.custom_two_shot_latency + overhead + peers
                                       + 2 * (n - 1) * payload / (n * custom_link))}
    if hardware.allreduce_rule == "vllm" and hardware.symm_allreduce_latency is not None and bf16:
        symm_link = hardware.scale_up_bandwidth * hardware.symm_allreduce_efficiency
        out["symm"] = count * (hardware.symm_allreduce_latency + overhead + payload / symm_link)
    return out


def _one_shot_blocks(n: sp.Expr, payload: sp.Expr, hardware: Hardware, tokens: Optional[sp.Expr]) -> sp.Expr:
    """The slowest block's time in TensorRT-LLM 1.0's Lamport one-shot below SM 90 (the
    ``"trtllm-1.0"`` rule, ``custom_allreduce_block_rate`` set; else zero):
    ``n (M / T') ceil(T' / min(S, T')) / R_cb`` with ``T' = max(1, T)`` and ``S`` the chip's
    ``compute_units``. The grid is ``min(S, T)`` blocks, each looping over tokens with stride
    ``gridDim.x`` (``IndexHelper``: ``token_stride = gridDim.x``), so the slowest carries
    ``ceil(T / min(S, T))`` rows of ``M / T`` bytes, each stored into and read back from ``n``
    buffers. Without ``tokens`` one block is taken to carry the whole message (``T' = 1``: the
    slowest the one-shot can run, so an unknown token count never makes it faster; the ``Min``
    over the forms still picks another where that is faster).

    >>> from symcost import hardware
    >>> a100 = hardware.get("A100_SXM_80GB").with_runtime("tensorrt-llm")
    >>> rate = a100.custom_allreduce_block_rate
    >>> _one_shot_blocks(sp.Integer(8), sp.Integer(128 * 8192), a100, sp.Integer(128)) == 8 * 8192 * 2 / rate
    True
    """
    rate = hardware.custom_allreduce_block_rate
    if rate is None or hardware.allreduce_rule != "trtllm-1.0":
        return sp.Integer(0)
    # NB: at least one block (a tensor of less than one token's row, or no rows, runs one)
    rows = sp.Integer(1) if tokens is None else extreme(sp.Max, 1, tokens)
    if hardware.compute_units is not None:  # unset: a block per token whatever the count
        return n * payload * Ceil(rows / extreme(sp.Min, hardware.compute_units, rows)) / (rows * rate)
    return n * payload / (rows * rate)


VLLM_WORLD_SIZES = (2, 4, 6, 8)
"""``CustomAllreduce._SUPPORTED_WORLD_SIZES`` (and the size tables' keys): other group sizes run NCCL."""


def vllm_one_shot_max(n: int) -> Optional[int]:
    """Bytes below which vLLM's custom all-reduce runs its one-shot kernel (csrc/custom_all_reduce.cuh,
    ``REDUCE_CASE``: always on 2 GPUs, ``None``, below 512 KiB on up to 4, below 256 KiB on up to 8).

    >>> vllm_one_shot_max(2), vllm_one_shot_max(4), vllm_one_shot_max(8)
    (None, 524288, 262144)
    """
    if n == 2:
        return None
    return 512 * 1024 if n <= 4 else 256 * 1024


def vllm_allreduce_window(n: int, nbytes: int, capability: Optional[str]) -> str:
    """Which all-reduce vLLM's ``CudaCommunicator.all_reduce`` runs for ``nbytes`` over ``n`` GPUs
    of one node (vllm/distributed/device_communicators/cuda_communicator.py; defaults:
    ``VLLM_ALLREDUCE_USE_SYMM_MEM=1``, FlashInfer's and NCCL's symmetric-memory paths off): the
    custom all-reduce while ``nbytes < max_size`` (custom_all_reduce.py ``should_custom_ar``; its
    one-shot or two-shot kernel by :func:`vllm_one_shot_max`), else torch symmetric memory while
    ``nbytes <= max_size`` (symm_mem.py ``should_use_symm_mem``), else NCCL; the sizes per compute
    capability and world size in :data:`VLLM_ALLREDUCE_SIZES`. Returns ``"custom"`` (one-shot),
    ``"custom_two_shot"``, ``"symm"`` or ``"nccl"``.

    >>> vllm_allreduce_window(8, 256 * 1024 - 16, "10.0"), vllm_allreduce_window(8, 256 * 1024, "10.0")
    ('custom', 'custom_two_shot')
    >>> vllm_allreduce_window(8, MIB, "10.0"), vllm_allreduce_window(8, 128 * MIB + 16, "10.0")
    ('symm', 'nccl')
    """
    if n not in VLLM_WORLD_SIZES:
        return "nccl"
    one_max, custom_max, symm_max = _vllm_limits(n, capability)
    if nbytes < custom_max:
        return "custom" if nbytes < one_max else "custom_two_shot"
    if symm_max is not None and nbytes <= symm_max:
        return "symm"
    return "nccl"


def _vllm_limits(n: int, capability: Optional[str]) -> tuple[int, int, Optional[int]]:
    """vLLM's size limits over ``n`` GPUs (one of :data:`VLLM_WORLD_SIZES`) of ``capability``: bytes
    below which its one-shot runs (at most the custom ``max_size``), the custom all-reduce's
    ``max_size`` (capped by its buffer, :data:`VLLM_CUSTOM_MAX`), symmetric memory's (``None``:
    no size table, no symmetric-memory path)."""
    sizes = VLLM_ALLREDUCE_SIZES.get(capability or "")
    custom_max = VLLM_CUSTOM_MAX if sizes is None else min(sizes[0][n], VLLM_CUSTOM_MAX)
    shot_max = vllm_one_shot_max(n)
    one_max = custom_max if shot_max is None else min(shot_max, custom_max)
    return one_max, custom_max, None if sizes is None else sizes[1][n]


def _vllm_switch(n: sp.Expr, payload: sp.Expr, times: dict[str, sp.Expr], capability: Optional[str],
                 symm_holds: Any = sp.true) -> sp.Expr:
    """vLLM's all-reduce as :func:`vllm_allreduce_window` picks it: a ``Piecewise`` in the message
    size (and in ``n`` where it is a symbol), NCCL's fastest algorithm beyond its own; the
    symmetric-memory piece only where ``symm_holds`` (its format condition, :func:`_symm_format`)."""
    nccl = extreme(sp.Min, *(t for name, t in times.items() if name not in ("custom", "custom_two_shot", "symm")))

    def switch(k: int) -> sp.Expr:
        if k not in VLLM_WORLD_SIZES:
            return nccl
        one_max, custom_max, symm_max = _vllm_limits(k, capability)
        pieces = [(times["custom"], sp.Lt(payload, one_max))]
        if one_max < custom_max:
            pieces.append((times["custom_two_shot"], sp.Lt(payload, custom_max)))
        if symm_max is not None and "symm" in times:
            pieces.append((times["symm"], sp.And(sp.Le(payload, symm_max), symm_holds)))
        return sp.Piecewise(*pieces, (nccl, True))

    if n.is_Integer:
        return switch(int(n))
    return sp.Piecewise(*((switch(k), sp.Eq(n, k)) for k in VLLM_WORLD_SIZES), (nccl, True))


TRTLLM_ONE_SHOT_TOKENS = 128
"""TensorRT-LLM 1.0's token switch: its AUTO all-reduce strategy runs NCCL above this many tokens on
more than 2 GPUs (cpp/tensorrt_llm/thop/allreduceOp.cpp, ``AllreduceOp::selectImplementation``:
``ALLREDUCE_AUTO_HEURISTIC_MIN_LATENCY_THRESHOLD_TOKEN_NUM``, default 128, "NCCL is faster than
MIN_LATENCY when the token number is greater than 256. I conservatively set the threshold here to
128 tokens"), and its MIN_LATENCY kernel runs one-shot up to this many tokens, two-shot above
(``runFusionAllReduce``: ``use_oneshot = seq_len <= kOneShotMaxToken``, 128,
kernels/communicationKernels/allReduceFusionKernels.h). Later releases pick from
``selectStrategyLookUpTable`` (by SM, TP size, hidden size and tokens), which the ``"custom"``
rule's fastest form stands for."""
TRTLLM_WORKSPACE = {2: 16 * 10**6, 8: 8 * 10**6}
"""Bytes above which TensorRT-LLM 1.0 runs NCCL whatever the tokens (``ifFallbackToNCCL``:
``message_size_bytes > getMaxRequiredWorkspaceSize(world_size)``, 16 MB on up to 2 GPUs, else 8 MB:
cpp/tensorrt_llm/common/customAllReduceUtils.h); keyed by the largest world size each holds for."""


def trtllm_allreduce_window(n: int, tokens: int, nbytes: int) -> str:
    """Which all-reduce TensorRT-LLM 1.0's AUTO strategy runs for ``tokens`` rows of ``nbytes`` over
    ``n`` GPUs of one NVLink domain (fusion none or residual + RMSNorm): NCCL above the workspace
    (:data:`TRTLLM_WORKSPACE`); on up to 2 GPUs its own kernel, one-shot up to
    :data:`TRTLLM_ONE_SHOT_TOKENS` tokens and two-shot above; on more, one-shot up to that many
    tokens and NCCL above. Returns ``"custom"`` (one-shot), ``"custom_two_shot"`` or ``"nccl"``.

    >>> trtllm_allreduce_window(8, 128, 128 * 8192), trtllm_allreduce_window(8, 129, 129 * 8192)
    ('custom', 'nccl')
    >>> trtllm_allreduce_window(2, 129, 129 * 8192), trtllm_allreduce_window(2, 2048, 2048 * 8192)
    ('custom_two_shot', 'nccl')
    """
    if n == 1 or nbytes > TRTLLM_WORKSPACE[2 if n <= 2 else 8]:
        return "nccl"  # a group of one sends nothing (NCCL's ring: no time)
    if tokens <= TRTLLM_ONE_SHOT_TOKENS:
        return "custom"
    return "custom_two_shot" if n <= 2 else "nccl"


def _trtllm_switch(n: sp.Expr, payload: sp.Expr, tokens: sp.Expr, times: dict[str, sp.Expr]) -> sp.Expr:
    """TensorRT-LLM 1.0's all-reduce as :func:`trtllm_allreduce_window` picks it: a ``Piecewise`` in
    the tokens and the message size (and in ``n`` where it is a symbol), NCCL's fastest algorithm
    beyond its own."""
    nccl = extreme(sp.Min, *(t for name, t in times.items() if name not in ("custom", "custom_two_shot")))
    few = sp.Le(tokens, TRTLLM_ONE_SHOT_TOKENS)

    def switch(pair: bool) -> sp.Expr:
        fits = sp.Le(payload, TRTLLM_WORKSPACE[2 if pair else 8])
        pieces = [(times["custom"], sp.And(few, fits))]
        if pair:
            pieces.append((times["custom_two_shot"], fits))
        return sp.Piecewise(*pieces, (nccl, True))

    # a group of one sends nothing: NCCL's ring, no time (as the fastest form finds it)
    if n.is_number:
        return nccl if n == 1 else switch(bool(n == 2))
    return sp.Piecewise((switch(True), sp.Eq(n, 2)), (switch(False), sp.Gt(n, 2)), (nccl, True))


P2P_LL_THRESHOLD = 16384
"""Bytes per peer and channel up to which NCCL sends a point-to-point message with the
low-latency protocol (NVIDIA/nccl v2.30.7, src/enqueue.cc: ``NCCL_PARAM(P2pLLThreshold,
"P2P_LL_THRESHOLD", 16384)``, line 859, and ``protoLL &= bytes <= nChannels *
ncclParamP2pLLThreshold()``, line 932). Inside a node a message below 64 KiB runs on one channel
(``minPartSize = p2pChunkSize / 8``, line 919, with ``P2P_NVL_CHUNKSIZE`` 512 KiB, src/init.cc line
820), so the low-latency protocol takes exactly the messages of at most 16 KiB."""


def _all_to_all(count: sp.Expr, n: sp.Expr, payload: sp.Expr, sent: sp.Expr, link: sp.Expr,
                hardware: Hardware, own_kernels: bool = False) -> dict[str, sp.Expr]:
    """An all-to-all inside one scale-up domain as NCCL runs it: grouped sends of ``M/n`` bytes to
    each of the ``n - 1`` peers at once (src/enqueue.cc ``addP2pToPlan``), each peer adding
    ``alpha_A2A,p``; the protocol by the size of one peer's message (:data:`P2P_LL_THRESHOLD`):

    - ``ring`` (Simple): ``alpha_A2A + t_coll`` per call (none in a group of one) ``+ (n - 1)
      alpha_A2A,p``, plus ``bytes_sent / (link eta_A2A)``: the peers share the link, the grouped
      sends at ``eta_A2A`` of the rings' bus bandwidth;
    - ``ll`` (``M/n <= 16384``, chips with ``all_to_all_ll_latency``): ``alpha_A2A,LL + t_coll +
      (n - 1) alpha_A2A,p`` per call, plus ``(M/n) count / (link eta_A2A,LL)``: the peers' messages
      move in parallel, each at the low-latency protocol's rate for one peer. Above the threshold
      NCCL never takes it: there this entry is the Simple form. ``own_kernels`` (a hierarchical
      all-to-all, :attr:`~symcost.core.ops.Collective.hierarchical`: DeepEP's or HybridEP's own
      kernels, not NCCL's) leaves it out.

    With the all-to-all terms unset (``alpha_A2A = alpha_0``, ``alpha_A2A,p = alpha``, ``eta_A2A = 1``, no LL) this
    is NCCL's ring formula, the roofline's ``alpha (n - 1) + bytes_sent / B_up`` on the ideal chip."""
    overhead = hardware.runtime.collective_overhead
    base = hardware.a2a_latency + overhead
    calls = extreme(sp.Min, 1, n - 1) if base != 0 else 0
    peers = hardware.a2a_peer_latency * (n - 1)
    out = {"ring": count * (base * calls + peers) + sent / (link * hardware.all_to_all_efficiency)}
    if hardware.all_to_all_ll_latency is not None and not own_kernels:
        per_peer = payload / n
        ll = (count * (hardware.all_to_all_ll_latency + overhead + peers)
              + count * per_peer / (link * hardware.all_to_all_ll_efficiency))
        # NB: above the threshold NCCL sends Simple: the ring's time (not oo, which the exact
        # compiler cannot print)
        out["ll"] = sp.Piecewise((ll, sp.Le(per_peer, P2P_LL_THRESHOLD)), (out["ring"], True))
    return out


_RING_KINDS = ("all_reduce", "all_gather", "reduce_scatter")

NCCL_RING_BANDWIDTH_SHARE = sp.Rational(4, 5)
"""NCCL's own figure for a ring's bus bandwidth on one NVSwitch node, a share of the datasheet NVLink
bandwidth (``scale_up_bandwidth``): NCCL counts ``ncclTopoNVLinkBw`` per link (NVIDIA/nccl
v2.29.2-1, src/graph/topo.h line 22: ``SM80_NVLINK_BW 20.0``, ``SM90_NVLINK_BW 20.6``,
``SM100_NVLINK_BW 40.1`` GB/s (40.0 in v2.27.3-1), against NVLink 3, 4 and 5's 25, 25 and 50), and
its ring search takes whole channels at the speeds of src/graph/search.cc (``speedArrayIntra`` 40,
``sm90SpeedArrayIntra`` 60, ``sm100SpeedArrayIntra`` 90 GB/s: 6 channels x 40 = 240 of A100's 12 x
20; 6 x 60 = 360 of H100's 18 x 20.6 = 370.8; 8 x 90 = 720 of B200's 18 x 40.1 = 721.8), which
``ncclTopoDupChannels`` doubles at half the speed each: ``nChannels * bwIntra`` = 240, 360 and 720
GB/s, 4/5 of 300, 450 and 900 on each."""

NCCL_PROTOCOL_LATENCY = {"ll": (sp.Rational(66, 10**7), sp.Rational(6, 10**7)),
                         "ll128": (sp.Rational(14, 10**6), sp.Rational(19, 10**7)),
                         "simple": (sp.Rational(84, 10**7), sp.Rational(34, 10**7))}
"""NCCL's estimate of a ring's latency per protocol over NVLink, seconds: ``(baseLat, hwLat)``, the
call's base and each ring step's (NVIDIA/nccl src/graph/tuning.cc, ``baseLat`` Ring {6.6, 14.0, 8.4}
and ``hwLat`` NVLINK Ring {.6, 1.9, 3.4} us for LL, LL128, Simple: v2.27.3-1 lines 132-147, the A100
tables' version; the same in v2.29.2-1's ``ncclTunerConstantsDefaults``, the other chips')."""

NCCL_LL128_LATENCY = NCCL_PROTOCOL_LATENCY["ll128"]
"""The LL128 protocol's time per call and per ring step, seconds: NCCL's own figures
(:data:`NCCL_PROTOCOL_LATENCY`), not fitted: the tables hold few rows where NCCL runs LL128
(9 of 189 on A100)."""

LL128_DATA_SHARE = sp.Rational(120, 128)
"""Of each 128-byte LL128 line, 120 bytes carry data and 8 a flag (NVIDIA/nccl v2.29.2-1,
src/include/device.h lines 105-107: ``NCCL_LL128_LINESIZE 128``, ``NCCL_LL128_DATAELEMS`` 15 of
``NCCL_LL128_LINEELEMS`` 16 eight-byte words; tuning.cc's ``0.92 /*120.0/128.0*/``): LL128 moves data
at 15/16 of the Simple protocol's rate. (LL's 16-byte ``ncclLLFifoLine``, lines 70-80, carries two
4-byte data words and two flags: half, the ``busBw * .5`` of NCCL's estimate.)"""

NCCL_LL128_ESTIMATE_SHARE = sp.Rational(92, 100)
"""The LL128 ring's bandwidth in NCCL's estimate, a share of the Simple ring's (tuning.cc: ``busBw *
(0.92 /*120.0/128.0*/)``)."""

def nccl_ring_tuning(hardware: Hardware) -> Optional[tuple[sp.Expr, sp.Expr]]:
    """NCCL's LL and LL128 bus-bandwidth caps for the chip's compute capability
    (:data:`~symcost.hardware.runtime.NCCL_TUNING`: the data-centre parts 8.0, 9.0, 10.0 and 10.3,
    which NCCL's NVLink latencies and caps describe), or ``None`` for any other chip (no
    compute capability, or one not listed): there, a modelling choice rather than a gap in NCCL's
    tables (which have rows for 7.x and for 11.x and later too, and PCI latencies for 8.6 and 8.9), the
    ring takes the faster of its Simple and LL forms.

    >>> from symcost import hardware
    >>> nccl_ring_tuning(hardware.get("A100_SXM_80GB"))
    (877/10, 240)
    >>> nccl_ring_tuning(hardware.get("MI300X")) is None
    True
    """
    capability = hardware.compute_capability
    return None if capability is None else NCCL_TUNING.get(capability)


def _has_ll(latency: sp.Expr) -> Any:
    """Whether the chip runs NCCL's LL protocols: ``alpha_LL0 < 1`` (second), on a number (true: a
    chip's ``ll_base_latency`` is refused from 1 s up) as on a symbol (the symbolic chip), which every
    chip with the terms meets and a chip without them (``alpha_LL0 = oo``, as
    :meth:`~symcost.hardware.Hardware.symbol_values` binds it) does not, leaving the Simple ring.
    (NB: not ``alpha_LL0 < oo``, which SymPy decides true for a finite symbol.)"""
    return sp.Lt(latency, 1)


def nccl_ring_protocol(kind: str, n: sp.Expr, payload: sp.Expr, scale_up: sp.Expr,
                       tuning: tuple[sp.Expr, sp.Expr], times: tuple[sp.Expr, sp.Expr, sp.Expr],
                       has_ll: Any = sp.true) -> sp.Expr:
    """The ring's time under the protocol NCCL picks by its own estimate (src/graph/tuning.cc,
    ``ncclTopoTuneModel``; src/enqueue.cc ``topoGetAlgoInfo``, the least estimate, ties to the
    earlier of LL, LL128, Simple): per protocol ``baseLat + steps hwLat + M / (busBw n / steps)``
    (:data:`NCCL_PROTOCOL_LATENCY`, :func:`collective_steps`; ``M`` the call's bytes, NCCL's
    ``nBytes``), with ``busBw`` from NCCL's ring bandwidth ``B = 4/5 B_up``
    (:data:`NCCL_RING_BANDWIDTH_SHARE`): Simple ``B``, LL ``min(llMaxBw, B/2)``, LL128
    ``min(0.92 B, nChannels perChMaxRingLL128Bw)`` (:data:`~symcost.hardware.runtime.NCCL_TUNING`). ``times`` are the
    protocols' own times (LL, LL128, Simple): what the chosen one then takes; ``has_ll`` false
    (a chip without NCCL's LL terms) leaves the Simple ring.

    On 2 A100s (B = 240 GB/s) an all-gather's LL estimate ``7.2 us + M / 175.4 GB/s`` meets
    Simple's ``11.8 us + M / 480 GB/s`` at M = 1.27 MB:

    >>> a, b, c = sp.symbols("t_LL t_LL128 t_S")
    >>> pick = lambda m: nccl_ring_protocol("all_gather", sp.Integer(2), sp.Integer(m), 300 * 10**9,
    ...                                     (sp.Rational(877, 10), sp.Integer(240)), (a, b, c))
    >>> pick(2**20), pick(2**21)
    (t_LL, t_S)
    """
    steps = collective_steps(kind, n)
    bus = NCCL_RING_BANDWIDTH_SHARE * scale_up
    llmax, ll128max = (cap * 10**9 for cap in tuning)
    rates = (extreme(sp.Min, llmax, bus / 2), extreme(sp.Min, NCCL_LL128_ESTIMATE_SHARE * bus, ll128max), bus)
    estimate = [base + steps * hop + payload * steps / (rate * n)
                for (base, hop), rate in zip(NCCL_PROTOCOL_LATENCY.values(), rates)]
    ll, ll128, simple = times
    chosen = sp.Piecewise((ll, sp.And(sp.Le(estimate[0], estimate[1]), sp.Le(estimate[0], estimate[2]))),
                          (ll128, sp.Le(estimate[1], estimate[2])), (simple, True))
    # a group of one sends nothing: the Simple ring's zero (NCCL: nRanks == 1, ring/Simple, 0).
    # NB: the gates nest rather than join the estimate's conditions: a condition of one value (the
    # chip's alpha_LL0) beside conditions over rows does not broadcast in the compiled sweeps
    return sp.Piecewise((sp.Piecewise((chosen, sp.Gt(n, 1)), (simple, True)), has_ll), (simple, True))


def _algorithms(c: Collective, hardware: Hardware, inside: bool) -> dict[str, sp.Expr]:
    """:func:`collective_algorithms` for a group inside one scale-up domain (``inside``) or
    spread over several."""
    count = as_expr(c.count, "count")
    n = as_expr(c.group_size, "group_size")
    payload = as_expr(c.payload_bytes, "payload_bytes")
    overhead = hardware.runtime.collective_overhead
    base = hardware.collective_base_latency + overhead
    nodes = sp.Integer(1) if inside else extreme(sp.Min, n, Ceil(as_expr(c.span, "span") / hardware.scale_up_domain))
    link = _link(c.kind, hardware, inside, n, nodes)
    # a group of one sends nothing and waits for nothing: min(1, n - 1) switches the base off
    calls = extreme(sp.Min, 1, n - 1) if base != 0 else 0
    steps = collective_steps(c.kind, n)
    inter = sp.Integer(0)
    if not inside:
        inter = _inter_steps(c.kind, nodes) if c.kind != "p2p" else extreme(sp.Min, 1, nodes - 1)
    hops = hardware.collective_latency * (steps - inter) + hardware.net_latency * inter
    sent = as_expr(c.bytes_sent_per_chip, "bytes_sent_per_chip")
    if c.kind == "all_to_all" and inside:
        return _all_to_all(count, n, payload, sent, link, hardware, own_kernels=c.hierarchical is not None)
    out = {"ring": count * (base * calls + hops) + _moved(c, sent, n, nodes, link, hardware, inside)}
    if hardware.ll_base_latency is not None and c.hierarchical is None:
        # NCCL's low-latency protocol: its own latencies, a fraction of the bus bandwidth (not for
        # a hierarchical all-to-all: DeepEP's and HybridEP's own kernels run it, not NCCL)
        # (NB: no min(1, n - 1) switch: a group of one costs nothing on the ring, which wins the Min)
        ll_hops = hardware.ll_latency * (steps - inter) + hardware.net_latency * inter
        out["ll"] = (count * (hardware.ll_base_latency + overhead + ll_hops)
                     + sent / (link * hardware.ll_efficiency))
        tuning = nccl_ring_tuning(hardware)
        if inside and c.kind in _RING_KINDS and tuning is not None:
            # NCCL picks the ring's protocol by its own estimate, not by the time it then takes
            ll128 = count * (NCCL_LL128_LATENCY[0] + overhead + NCCL_LL128_LATENCY[1] * steps) + sent / (
                link * LL128_DATA_SHARE)
            simple, ll = out.pop("ring"), out.pop("ll")
            out["ring"] = nccl_ring_protocol(c.kind, n, as_expr(c.payload_bytes, "payload_bytes"),
                                             hardware.scale_up_bandwidth, tuning, (ll, ll128, simple),
                                             _has_ll(hardware.ll_base_latency))
    if (c.kind == "all_reduce" and inside and hardware.allreduce_rule != "nccl"
            and hardware.custom_allreduce_latency is not None and _engine_group(c, hardware)):
        tokens = None if c.tokens is None else as_expr(c.tokens, "tokens")
        out.update(_custom_allreduce(count, n, payload, hardware, c.element_format in (None, DataType.BF16), tokens))
    if c.kind == "all_reduce" and hardware.tree_latency is not None and not inside:
        # NB: floor(log2 nodes) is NCCL's log2i; max(1, .) only where nodes = 1 (a group of
        # one), where the ring costs nothing and wins the Min anyway, so that an absent tree
        # bound to alpha_tree = oo stays oo, never 0 * oo
        depth = extreme(sp.Max, 1, sp.floor(sp.log(nodes, 2)))
        tree = base + 2 * ((n / nodes - 1) * hardware.collective_latency + depth * hardware.tree_latency)
        out["tree"] = count * tree + 2 * payload * count / (link * hardware.tree_efficiency)
    if c.kind in ("all_reduce", "all_gather", "reduce_scatter") and hardware.nvls_latency is not None and inside:
        if c.kind == "all_reduce":
            moved = sent / (2 * hardware.nvls_bus_efficiency * link)
        else:
            # NB: max(n - 1, 1) only guards n = 1, where the ring (no cost) wins the Min
            moved = payload * count * n / (extreme(sp.Max, n - 1, 1) * hardware.nvls_bus_efficiency * link)
        out["nvls"] = count * (hardware.nvls_latency + overhead) + moved
    return out


def collective_time(c: Collective, hardware: Hardware) -> sp.Expr:
    """Seconds of all ``c.count`` calls: the fastest of :func:`collective_algorithms`, as NCCL's
    tuner picks it (a collective over a group of one costs nothing; a ``p2p`` is one send
    between two chips, whatever its ``group_size``). Memoized per (collective, chip), as
    :func:`op_time`."""
    return _cached(_COLLECTIVE_TIMES, (c, hardware), lambda: _collective_time(c, hardware))


def _collective_time(c: Collective, hardware: Hardware) -> sp.Expr:
    fits = sp.Le(as_expr(c.span, "span"), hardware.scale_up_domain)
    if fits is sp.true or fits is sp.false:
        return _picked(c, hardware, _algorithms(c, hardware, inside=fits is sp.true))
    # a symbolic span: the fastest algorithm of each placement (NB: extreme leaves the Min
    # unevaluated while the times are symbolic: SymPy's pairwise order search rarely succeeds)
    inside, across = (_algorithms(c, hardware, inside=flag) for flag in (True, False))
    return sp.Piecewise((_picked(c, hardware, inside), fits), (_picked(c, hardware, across), True))


def _engine_group(c: Collective, hardware: Hardware) -> bool:
    """Whether the engine's own all-reduce may run ``c``: under vLLM's rule only over the TP group
    (vllm/distributed/device_communicators/cuda_communicator.py, ``CudaCommunicator.__init__``: ``if
    "tp" not in unique_name``, "custom allreduce or torch symm mem can be used only by tp", both
    off), so an ``sp``, ``cp``, ``ep`` or ``dp`` all-reduce runs NCCL; the other rules' engines as
    before (the fastest form: their group rules are not read here)."""
    return hardware.allreduce_rule != "vllm" or c.axis == "tp"


def _symm_format(c: Collective) -> Any:
    """Where vLLM's symmetric-memory all-reduce (bf16 only) may run ``c``: always for a known format
    (:func:`_custom_allreduce` leaves its form out for another); for the model's activations in a
    format not yet named (:attr:`~symcost.core.ops.Collective.model_format`, the dtype a symbol),
    ``e <= 2``: a 16-bit model or a narrower one (its activations bf16, ``wire_format``), not an
    fp32 one (e = 4), which runs NCCL there. fp16 and bf16 (both e = 2) stay the bf16 reading:
    :meth:`~symcost.core.metrics.LayerMetrics.subs` refuses fp16 where the window holds the payload."""
    if c.model_format and c.element_format is None and sym.dtype_bytes in sp.sympify(c.payload_bytes).free_symbols:
        return sp.Le(sym.dtype_bytes, 2)
    return sp.true


def _picked(c: Collective, hardware: Hardware, times: dict[str, sp.Expr]) -> sp.Expr:
    """The time the library or engine runs: NCCL's tuner and a tuned engine take the fastest
    algorithm; vLLM switches by size (:func:`vllm_allreduce_window`), TensorRT-LLM 1.0 by token
    count (:func:`trtllm_allreduce_window`; a collective without :attr:`~Collective.tokens`: the
    fastest form)."""
    rule = hardware.allreduce_rule
    if "custom" in times and rule == "vllm":
        return _vllm_switch(as_expr(c.group_size, "group_size"), as_expr(c.payload_bytes, "payload_bytes"), times,
                            hardware.compute_capability, _symm_format(c))
    if "custom" in times and rule == "trtllm-1.0" and c.tokens is not None:
        return _trtllm_switch(as_expr(c.group_size, "group_size"), as_expr(c.payload_bytes, "payload_bytes"),
                              as_expr(c.tokens, "tokens"), times)
    return times["ring"] if len(times) == 1 else extreme(sp.Min, *times.values())


@dataclass(frozen=True)
class Times:
    """A layer's time terms in seconds (``overhead``: the kernels' fixed costs)."""

    compute_time: sp.Expr
    memory_time: sp.Expr
    comm_time: sp.Expr
    latency: sp.Expr


def layer_times(ops: Iterable[tuple[Op, Any]], collectives: Iterable[Collective],
                hardware: Hardware, peak: sp.Expr, overlap: bool = False,
                datatype: Optional[DataType] = None) -> Times:
    """Sum the per-op times and collective times; ``latency`` is the op time plus the
    communication the compute leaves exposed (:func:`exposed_comm`): the collectives marked
    ``hidden`` (they run while another micro-batch computes, :attr:`~symcost.core.ops.Collective.hidden`)
    covered at the engine's ``a2a_overlap_efficiency``, and with ``overlap`` the TP chunks and
    the CP ring's sends as Megatron-Core and Transformer Engine hide them; everything else adds.

    NB: the sums are memoized per (ops, collectives, chip, peak, dtype), as :func:`op_time`: a
    layer timed with and without overlap shares them."""
    ops, collectives = tuple(ops), tuple(collectives)
    sums = _cached(_LAYER_SUMS, (ops, collectives, hardware, peak, datatype),
                   lambda: _sums(ops, collectives, hardware, peak, datatype), 512)
    latency = exposed_comm(sums, hardware.runtime.a2a_overlap_efficiency, overlap,
                           hardware.runtime.tp_overlap_efficiency)
    return Times(sums.compute, sums.memory, sums.comm, latency)


class LayerSums(NamedTuple):
    """A layer's time sums in seconds on one chip (:func:`layer_times`), those
    :func:`exposed_comm` reads included."""

    compute: sp.Expr
    """The ops' compute time."""
    memory: sp.Expr
    """The ops' memory time."""
    ops: sp.Expr
    """``T_ops``: the ops' time."""
    comm: sp.Expr
    """Every collective's time."""
    gemm: sp.Expr
    """``G``: the dense GEMMs' time."""
    attention: sp.Expr
    """``A``: the attention kernels' time (prefill and backward)."""
    tp: sp.Expr
    """``C_tp``: the TP collectives' time."""
    tp_pipelined: sp.Expr
    """The share of ``C_tp`` a chunked pipeline can hide: ``sum_i C_i (k_i - 1)/k_i / C_tp``, each
    TP collective cut into its own group's ``k_i`` chunks (``(k - 1)/k`` for one degree; 0 without TP)."""
    ring: sp.Expr
    """``C_cp``: the CP ring's sends' time."""
    ring_window: sp.Expr
    """``(c - 1)/c``: the share of ``A`` that hides the ring's sends (0 without a ring)."""
    hidden: sp.Expr
    """The time of the collectives marked ``hidden`` (EP all-to-alls behind the other micro-batch)."""
    tp_split: sp.Expr = sp.Integer(0)
    """What the ring exchange adds to the TP-overlapped GEMMs (:func:`_ring_exchange_cost`)."""


def exposed_comm(sums: LayerSums, eta: Any = 1, overlap: bool = True, eta_tp: Any = 1) -> sp.Expr:
    """A layer's latency: its op time plus the communication its compute leaves exposed, each
    second of compute hiding at most one second of communication (the GEMMs that hide the TP
    chunks hide nothing else):

    ``latency = T_ops + C + S_tp - H_tp - H_cp - eta min(T_ops - H_tp - H_cp, C_hidden)``

    - **TP** (``overlap`` only; ``--tp-comm-overlap``, Transformer Engine userbuffers; Megatron-Bridge's
      ``userbuffers_fp8_h100_h8192_tp4_mbs1_seqlen8192``, src/megatron/bridge/training/comm_overlap.py:
      ``ring_exchange`` for the all-gathers into qkv/fc1 and the reduce-scatters out of proj/fc2
      forward and their dgrad transposes; the BF16 configs' 4-split pipeline is not modelled,
      :func:`_ring_exchange_cost`): each userbuffers collective (``C_i`` over ``k_i`` ranks;
      :attr:`~symcost.core.ops.Collective.userbuffers`, an attention or MLP block's entry and exit;
      other TP collectives are plain NCCL and add in full) is cut into ``k_i`` chunks, each sent
      while the GEMM computes the previous chunk. A two-stage
      pipeline of ``k`` chunks takes ``C/k + (k-1) max(C, G)/k + G/k``: it hides
      ``(k-1)/k min(C, G)``; a bulk collective (:attr:`~symcost.core.ops.Collective.bulk`: a TP block's
      input-gradient reduce-scatter and re-gather, the LM head's async ones) runs whole beside its
      GEMM, priced at the same share (:func:`_pipelined_share`). Summed over the layer (its
      collectives and GEMMs alike in proportion), ``H_tp = eta_tp * tp_pipelined * min(C_tp, G)``,
      ``eta_tp`` the engine's ``tp_overlap_efficiency`` (the share it realises). The ring exchange's own work adds
      ``S_tp`` (:func:`_ring_exchange_cost`: a GEMM per chunk, the reduction of a ring-exchanged
      reduce-scatter's chunks). A block's TP all-reduce (no sequence parallelism) is pipelined the same way here,
      though Megatron-Core overlaps TP traffic only under sequence parallelism (userbuffers need
      it): optimistic there;
    - **CP ring** (``overlap`` only; Transformer Engine ``AttnFuncWithCPAndKVP2P``,
      transformer_engine/pytorch/attention/dot_product_attention/context_parallel.py, commit
      d0067d0: step ``i`` posts the send of step ``i + 1``'s K, V (and in the backward dK, dV) and
      then computes step ``i``'s attention block): each send is hidden behind one ring step's
      block, ``1/c`` of the core, and of each pass's ``c`` steps one hides nothing:
      ``H_cp = min(C_cp, A (c - 1)/c)``;
    - **hidden** collectives (with or without ``overlap``): the EP dispatch and combine under
      Megatron-Core's ``overlap_moe_expert_parallel_comm`` run while another micro-batch computes
      (megatron/core/pipeline_parallel/combined_1f1b.py), covered by the compute left over at
      ``eta`` (the engine's ``a2a_overlap_efficiency``);
    - everything else adds in full: Megatron-Core does not overlap a micro-batch's own EP
      all-to-alls with its compute (megatron/core/transformer/moe/token_dispatcher.py: the experts
      wait on the dispatch's output), nor the CP all-gather of K, V (``all_gather`` context
      parallelism, waited for before the core), and DeepSpeed-Ulysses' all-to-alls sit between the
      projections and the core (deepspeed/sequence/layer.py ``DistributedAttention``).

    >>> from symcost.core.ops import Matmul
    >>> from symcost import hardware
    >>> chip, mm = hardware.H100_SXM.ideal(), Matmul("proj", m=4096, k=8192, n=8192)
    >>> rs = Collective("reduce_scatter", "tp", 8, 4096 * 8192 * 2, userbuffers=True)
    >>> serial, hidden = (layer_times([(mm, 1)], [rs], chip, chip.effective_peak('bf16'), o) for o in (False, True))
    >>> reduce = sp.Rational(4096 * 8192 * 2 * 9, 8 * 3_350_000_000_000)  # the chunks' sum: P (1 + 1/8) / B
    >>> hidden.latency == serial.latency - serial.comm_time * 7 / 8 + reduce  # the GEMM hides 7 of 8 chunks
    True
    """
    latency = sums.ops + sums.comm
    spent = sp.Integer(0)
    if overlap and sums.tp_pipelined != 0:
        spent += eta_tp * sums.tp_pipelined * extreme(sp.Min, sums.tp, sums.gemm)
        latency += sums.tp_split
    if overlap and sums.ring_window != 0:
        spent += extreme(sp.Min, sums.ring, sums.attention * sums.ring_window)
    if sums.hidden != 0:
        spent += eta * extreme(sp.Min, sums.ops - spent, sums.hidden)
    return latency - spent


def _tp_chunked(c: Collective) -> bool:
    """A TP collective overlapped with its GEMM: TE's userbuffers (:attr:`Collective.userbuffers`)
    or a bulk one (:attr:`Collective.bulk`: also Megatron-Core's asynchronous backward collectives of
    the LM head); the rest (plain NCCL: the embedding's, the LM head's forward gather, a MoE layer's)
    add in full."""
    return c.userbuffers or c.bulk


def _cp_ring(c: Collective) -> bool:
    return c.axis == "cp" and c.kind == "p2p"


_LAYER_SUMS: dict[tuple, LayerSums] = {}


def _sums(ops: tuple[tuple[Op, Any], ...], collectives: tuple[Collective, ...], hardware: Hardware, peak: sp.Expr,
          datatype: Optional[DataType]) -> LayerSums:
    """The compute, memory, op and communication time sums of :func:`layer_times`, then those
    :func:`exposed_comm` reads (:class:`LayerSums`)."""
    terms = [(op_time(op, hardware, peak, datatype), n, op.kernel) for op, n in ops]
    compute = total(t.compute * n for t, n, _ in terms)
    memory = total(t.memory * n for t, n, _ in terms)
    ops_time = total(t.time * n for t, n, _ in terms)
    gemm = total(t.time * n for t, n, kind in terms if kind == "gemm")
    attention = total(t.time * n for t, n, kind in terms if kind in ("attn.prefill", "attn.backward"))
    times = [(collective_time(c, hardware), c) for c in collectives]
    tp_times = [(t, c) for t, c in times if _tp_chunked(c)]
    tp = total(t for t, _ in tp_times)
    ring_sizes = {c.group_size for c in collectives if _cp_ring(c)}
    split = total(_ring_exchange_cost(c, hardware, datatype) for c in collectives if _tp_chunked(c))
    return LayerSums(compute, memory, ops_time, total(t for t, _ in times), gemm, attention, tp,
                     _pipelined_share(tp_times, tp), total(t for t, c in times if _cp_ring(c)),
                     _ring_window(ring_sizes), total(t for t, c in times if c.hidden), split)


def _ring_exchange_cost(c: Collective, hardware: Hardware, datatype: Optional[DataType]) -> sp.Expr:
    """Seconds Transformer Engine's userbuffers add to the GEMM a TP all-gather or reduce-scatter
    ``c`` over ``k`` ranks overlaps (0 for a bulk one, :attr:`Collective.bulk`, and an all-reduce,
    which userbuffers do not split). A ring exchange: ``k - 1`` more GEMM kernels, each with the
    format's fixed time, and after a reduce-scatter one kernel summing the ``k`` received output
    chunks (reads the payload ``P``, writes ``P/k``): per call ``(k - 1) t_gemm + [P (1 + 1/k) / (B
    eta_mem) + t_k]``. transformer_engine/common/comm_gemm_overlap/comm_gemm_overlap.cpp (commit
    d0067d0), ``CommOverlapP2PBase::split_overlap_ag`` and ``split_overlap_rs``: ``for (int i = 0; i <
    _tp_size; i++)`` one ``nvte_cublas_gemm`` per chunk, then ``reduce_bf16(..., _tp_size, ...)``.
    NB: Megatron-Bridge's BF16 configs pipeline the forward reduce-scatters in 4 splits
    (``PipelineOverlapCfg(num_splits=4)``: 3 more GEMMs, no reduction pass); not modelled, as the
    choice hangs on the format class, which the symbolic chip binds with the dtype (every
    calibration run is FP8, the ring exchange)."""
    if c.bulk or c.kind not in ("all_gather", "reduce_scatter"):
        return sp.Integer(0)
    k, payload = as_expr(c.group_size, "group_size"), as_expr(c.payload_bytes, "payload_bytes")
    per_call = (k - 1) * hardware.gemm_time_for(datatype)
    if c.kind == "reduce_scatter":
        # NB: Min(1, k - 1): a group of one (a symbolic degree bound to 1) reduces nothing
        reduce = payload * (1 + 1 / k) / hardware.effective_hbm_bandwidth + hardware.kernel_time
        per_call += extreme(sp.Min, 1, k - 1) * reduce
    return as_expr(c.count, "count") * per_call


def _pipelined_share(tp_times: list[tuple[sp.Expr, Collective]], tp: sp.Expr) -> sp.Expr:
    """``sum_i C_i w_i / C_tp``: each userbuffers collective's share its GEMM can hide, ``w = (k - 1)/k``
    cut into its group's ``k`` chunks (a bulk one, :attr:`Collective.bulk`, alike); ``(k - 1)/k``
    where every one has ``k`` ranks."""
    # NB: a bulk collective (whole beside one GEMM) would hide all of min(C, G) beside a long
    # enough GEMM; the layer-wide pooling cannot tell which GEMM that is, and a share of 1 next to
    # (k - 1)/k would divide by C_tp, 0/0 at a symbolic degree bound to 1: priced as a chunked one,
    # conservative by C_bulk/k
    shares = [(t, (as_expr(c.group_size, "group_size") - 1) / as_expr(c.group_size, "group_size"))
              for t, c in tp_times]
    distinct = {w for _, w in shares}
    if not distinct:
        return sp.Integer(0)
    if len(distinct) == 1:
        return distinct.pop()
    return total(t * w for t, w in shares) / tp


def _ring_window(sizes: set[Any]) -> sp.Expr:
    """``(c - 1)/c`` for the CP ring's ``c`` ranks (one CP degree per layer), 0 without a ring."""
    if not sizes:
        return sp.Integer(0)
    c = as_expr(min(sizes, key=str), "group_size")
    return (c - 1) / c
