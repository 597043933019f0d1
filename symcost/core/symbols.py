"""The canonical symbol table.

Every symbol symcost emits comes from this table, created once with its assumptions, so that
``symcost.core.symbols.seq_len`` in one formula is the very same object as in another. Never build a
symbol from a string: ``sympy.sympify("S*E")`` turns ``S`` into ``sympy.S`` and ``E`` into Euler's
number.

>>> from symcost import symbols as S
>>> S.seq_len.is_integer, S.seq_len.is_positive
(True, True)
>>> S.dtype_bytes.is_integer is None     # int4 stores 1/2 byte per element
True
>>> S.lookup("hidden_size") is S.hidden_size
True
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

__all__ = [
    "SymbolInfo",
    "TABLE",
    "lookup",
    "latex_names",
    "batch_size",
    "seq_len",
    "hidden_size",
    "intermediate_size",
    "num_heads",
    "num_kv_heads",
    "head_dim",
    "vocab_size",
    "num_layers",
    "dtype_bytes",
    "ssm_heads",
    "ssm_head_dim",
    "ssm_state_size",
    "ssm_groups",
    "conv_kernel",
    "chunk_size",
    "tp",
    "sp",
    "cp",
    "pp",
    "ep",
    "dp",
    "peak_flops",
    "vector_flops",
    "hbm_capacity",
    "hbm_bandwidth",
    "scale_up_bandwidth",
    "scale_up_domain",
    "scale_up_peer_bandwidth",
    "scale_out_bandwidth",
    "collective_latency",
    "scale_out_latency",
    "peak_flops_16bit",
    "compute_units",
    "matmul_efficiency",
    "matmul_efficiency_8bit",
    "memory_efficiency",
    "attention_memory_efficiency",
    "attention_efficiency",
    "network_efficiency",
    "scale_out_efficiency",
    "kernel_time",
    "launch_time",
    "collective_base_latency",
    "step_overhead",
    "collective_overhead",
    "moe_sync_time",
    "a2a_overlap_efficiency",
    "tp_overlap_efficiency",
    "tree_latency",
    "tree_efficiency",
    "nvls_latency",
    "nvls_efficiency",
    "nvls_arch_efficiency",
    "gemm_time",
    "quantize_bytes",
    "gemm_backward_efficiency",
    "gemm_memory_efficiency",
    "grouped_gemm_efficiency",
    "grouped_gemm_time",
    "grouped_gemm_memory_efficiency",
    "grouped_gemm_output_efficiency",
    "attention_time",
    "attention_io_efficiency",
    "attention_backward_efficiency",
    "attention_backward_peak_efficiency",
    "attention_backward_time",
    "attention_decode_time",
    "grouped_decode_time_8bit",
    "attention_exp_rate",
    "mha_decode_rate",
    "decode_ramp_time",
    "decode_ramp_bytes",
    "ll_base_latency",
    "ll_latency",
    "ll_efficiency",
    "custom_allreduce_latency",
    "custom_allreduce_efficiency",
    "custom_allreduce_peer_latency",
    "custom_allreduce_two_shot_latency",
    "custom_allreduce_block_rate",
    "symm_allreduce_latency",
    "symm_allreduce_efficiency",
    "all_to_all_latency",
    "all_to_all_peer_latency",
    "all_to_all_ll_latency",
    "all_to_all_ll_efficiency",
    "all_to_all_efficiency",
    "routing_imbalance",
    "spec_k",
    "spec_alpha",
    "draft_time",
    "verify_time",
    "concurrency",
]


@dataclass(frozen=True)
class SymbolInfo:
    """One row of the table: the attribute name, the SymPy symbol, its LaTeX and its meaning."""

    name: str
    symbol: sympy.Symbol
    latex: str
    meaning: str


_SIZE = {"positive": True, "integer": True}


def _row(name: str, printed: str, latex: str, meaning: str, **assumptions: bool) -> SymbolInfo:
    return SymbolInfo(name, sympy.Symbol(printed, **(assumptions or _SIZE)), latex, meaning)


# NB: printed names follow the Megatron-LM papers (b, s, h, a, t) and docs/conventions.md
# (f, g, d, e); the parallel degrees other than t print with a two-letter name so that no letter
# means two things (d is the head dimension, e the bytes per element).
_ROWS = (
    _row("batch_size", "b", "b", "sequences per micro-batch"),
    _row("seq_len", "s", "s", "tokens per sequence (keys attended in decode)"),
    _row("hidden_size", "h", "h", "model (hidden) width"),
    _row("intermediate_size", "f", "f", "feed-forward width"),
    _row("num_heads", "a", "a", "query (attention) heads"),
    _row("num_kv_heads", "g", "g", "key/value heads"),
    _row("head_dim", "d", "d", "width of one attention head"),
    _row("vocab_size", "V", "V", "vocabulary size"),
    _row("num_layers", "L", "L", "transformer layers"),
    _row("window", "w", "w", "sliding-window length (keys one query may attend)"),
    _row("attention_chunk", "c_a", r"c_{\mathrm{a}}", "chunked-local attention's chunk length (Llama 4)"),
    _row("dtype_bytes", "e", "e", "bytes per element", positive=True, rational=True),
    # state-space (Mamba-2) mixers: the letters of Dao & Gu 2024 ("Transformers are SSMs",
    # arXiv:2405.21060): H heads of P channels, state size N, G groups of B and C, chunk length Q
    _row("ssm_heads", "H", "H", "SSM (Mamba-2) heads"),
    _row("ssm_head_dim", "P", "P", "channels of one SSM head (Mamba-2 headdim)"),
    _row("ssm_state_size", "N", "N", "SSM state size per channel (Mamba-2 d-state)"),
    _row("ssm_groups", "G", "G", "groups sharing B and C (Mamba-2 ngroups)"),
    _row("conv_kernel", "k_conv", r"k_{\mathrm{conv}}", "width of the causal depthwise convolution (Mamba-2 d-conv)"),
    _row("chunk_size", "Q", "Q", "chunk length of the SSD chunked scan"),
    _row("tp", "t", "t", "tensor-parallel degree"),
    _row("sp", "sp", r"n_{\mathrm{sp}}", "sequence-parallel (Ulysses) degree"),
    _row("cp", "cp", r"n_{\mathrm{cp}}", "context-parallel (Megatron CP, ring attention) degree"),
    _row("pp", "pp", "p", "pipeline-parallel degree"),
    _row("ep", "ep", r"n_{\mathrm{ep}}", "expert-parallel degree"),
    _row("dp", "dp", r"n_{\mathrm{dp}}", "data-parallel degree"),
    # hardware: what an unbound (symbolic) chip is made of; rates in base units
    _row("peak_flops", "F", r"F_{\mathrm{peak}}", "peak matrix FLOP/s for the dtype in use",
         positive=True),
    _row("vector_flops", "F_vec", r"F_{\mathrm{vec}}", "vector-unit FLOP/s", positive=True),
    _row("hbm_capacity", "M_HBM", r"M_{\mathrm{HBM}}", "HBM capacity (bytes)", positive=True),
    _row("hbm_bandwidth", "B_HBM", r"B_{\mathrm{HBM}}", "HBM bandwidth (bytes/s)", positive=True),
    _row("scale_up_bandwidth", "B_up", r"B_{\mathrm{up}}",
         "scale-up link bandwidth per chip and direction (bytes/s)", positive=True),
    _row("scale_up_domain", "D_up", r"D_{\mathrm{up}}", "chips in one scale-up domain"),
    _row("scale_up_peer_bandwidth", "B_peer", r"B_{\mathrm{peer}}",
         "scale-up bandwidth between one pair of chips, per direction (bytes/s)", positive=True),
    _row("scale_out_bandwidth", "B_out", r"B_{\mathrm{out}}",
         "scale-out bandwidth per chip (bytes/s)", positive=True),
    _row("collective_latency", "alpha", r"\alpha",
         "latency of one collective step (hop) inside the scale-up domain (s)", nonnegative=True),
    _row("scale_out_latency", "alpha_net", r"\alpha_{\mathrm{net}}",
         "latency of one collective hop over the scale-out network (s)", nonnegative=True),
    # the realistic chip's efficiency model (docs/conventions.md §17)
    _row("peak_flops_16bit", "F_16", r"F_{16}",
         "16-bit peak FLOP/s (attention kernels of 8-bit models run at it)", positive=True),
    _row("compute_units", "N_cu", r"N_{\mathrm{cu}}", "SMs or CUs that run GEMM tiles"),
    _row("matmul_efficiency", "eta_mm", r"\eta_{\mathrm{mm}}",
         "achieved fraction of the matmul peak for the dtype in use", positive=True),
    _row("matmul_efficiency_8bit", "eta_mm8", r"\eta_{\mathrm{mm8}}",
         "achieved fraction of the 8-bit matmul peak", positive=True),
    _row("memory_efficiency", "eta_mem", r"\eta_{\mathrm{mem}}",
         "achieved fraction of HBM bandwidth in streaming kernels", positive=True),
    _row("attention_memory_efficiency", "eta_kv", r"\eta_{\mathrm{kv}}",
         "achieved fraction of HBM bandwidth in decode attention over the KV cache", positive=True),
    _row("attention_efficiency", "eta_attn", r"\eta_{\mathrm{attn}}",
         "achieved fraction of the 16-bit peak in flash-attention kernels", positive=True),
    _row("network_efficiency", "eta_net", r"\eta_{\mathrm{net}}",
         "achieved fraction of link bandwidth in collectives (bus bandwidth)", positive=True),
    _row("scale_out_efficiency", "eta_out", r"\eta_{\mathrm{out}}",
         "achieved fraction of the scale-out link's bandwidth in collectives", positive=True),
    _row("kernel_time", "t_k", r"t_{\mathrm{k}}", "fixed GPU time per kernel (s)", nonnegative=True),
    _row("launch_time", "t_launch", r"t_{\mathrm{launch}}",
         "host time to launch one kernel without CUDA graphs (s)", nonnegative=True),
    _row("collective_base_latency", "alpha_0", r"\alpha_{0}", "fixed latency of one collective call (s)",
         nonnegative=True),
    _row("step_overhead", "t_step", r"t_{\mathrm{step}}",
         "engine time per inference step outside the model (s)", nonnegative=True),
    _row("collective_overhead", "t_coll", r"t_{\mathrm{coll}}",
         "engine time per collective call beyond the chip's (s)", nonnegative=True),
    _row("moe_sync_time", "t_sync", r"t_{\mathrm{sync}}",
         "host time an eager MoE layer's training forward exposes (dropless sync, padded launches) (s)",
         nonnegative=True),
    _row("a2a_overlap_efficiency", "eta_a2a", r"\eta_{\mathrm{a2a}}",
         "share of a layer's overlapped EP all-to-all time its other micro-batch's compute covers", nonnegative=True),
    _row("tp_overlap_efficiency", "eta_tp", r"\eta_{\mathrm{tp}}",
         "share of what the TP overlap could hide behind a layer's GEMMs that the engine hides", nonnegative=True),
    _row("tree_latency", "alpha_tree", r"\alpha_{\mathrm{tree}}",
         "latency of one tree hop over the scale-out network (s)", nonnegative=True),
    _row("tree_efficiency", "eta_tree", r"\eta_{\mathrm{tree}}",
         "tree all-reduce bus bandwidth over the ring's", positive=True),
    _row("nvls_latency", "alpha_nvls", r"\alpha_{\mathrm{nvls}}",
         "latency of one NVLink SHARP collective call (s)", nonnegative=True),
    _row("nvls_efficiency", "eta_nvls", r"\eta_{\mathrm{nvls}}",
         "NVLink SHARP bandwidth factor", positive=True),
    _row("nvls_arch_efficiency", "kappa_nvls", r"\kappa_{\mathrm{nvls}}",
         "NCCL's own NVLink SHARP bandwidth factor for the GPU's architecture (tuning.cc nvlsEfficiency)",
         positive=True),
    # the kernel classes' terms (symcost/hardware/kernels.py, docs/conventions.md §17)
    _row("gemm_time", "t_gemm", r"t_{\mathrm{gemm}}",
         "fixed time of one GEMM for the dtype in use, its input quantization kernels included (s)",
         nonnegative=True),
    _row("quantize_bytes", "q_quant", r"q_{\mathrm{quant}}",
         "HBM bytes per input element that quantizing a GEMM's input moves (0 at 16 bits)",
         nonnegative=True, rational=True),
    _row("gemm_backward_efficiency", "eta_gbwd", r"\eta_{\mathrm{gemm,bwd}}",
         "the backward GEMMs' (dgrad, wgrad) FLOP/s as a fraction of the forward's, for the dtype in use "
         "(split accumulation of 8-bit GEMMs; 1 at 16 bits)", positive=True),
    _row("gemm_memory_efficiency", "eta_gmem", r"\eta_{\mathrm{gmem}}",
         "achieved fraction of HBM bandwidth in bandwidth-bound GEMMs", positive=True),
    _row("grouped_gemm_efficiency", "eta_gg", r"\eta_{\mathrm{gg}}",
         "grouped GEMMs (MoE experts): their FLOP/s over the dense GEMM's of the dtype in use (may exceed 1)",
         positive=True),
    _row("grouped_gemm_memory_efficiency", "eta_ggmem", r"\eta_{\mathrm{gg,mem}}",
         "achieved fraction of HBM bandwidth of grouped GEMMs streaming their experts' weights", positive=True),
    _row("grouped_gemm_output_efficiency", "eta_ggout", r"\eta_{\mathrm{gg,out}}",
         "achieved fraction of HBM bandwidth at which the experts' second grouped GEMM writes its scattered "
         "output after its main loop",
         positive=True),
    _row("grouped_gemm_time", "t_gg", r"t_{\mathrm{gg}}", "fixed time of one grouped GEMM kernel (s)",
         nonnegative=True),
    _row("attention_time", "t_attn", r"t_{\mathrm{attn}}",
         "fixed time of one prefill (context) attention call (s)", nonnegative=True),
    _row("attention_io_efficiency", "eta_aio", r"\eta_{\mathrm{aio}}",
         "fraction of HBM bandwidth at which prefill attention moves Q, K, V and O outside its core",
         positive=True),
    _row("attention_backward_efficiency", "eta_abwd", r"\eta_{\mathrm{attn,bwd}}",
         "the attention backward kernels' FLOP/s as a fraction of the forward kernels'", positive=True),
    _row("attention_backward_peak_efficiency", "eta_abpk", r"\eta_{\mathrm{attn,bwd}}^{\mathrm{pk}}",
         "the flash attention backward kernel's FLOP/s as a fraction of the 16-bit peak, its whole kernel "
         "(exponentials, softmax) included: compute capability 10.x only", positive=True),
    _row("attention_backward_time", "t_abwd", r"t_{\mathrm{attn,bwd}}",
         "time of one flash attention backward call per (sequence, query head) on compute capability 10.x "
         "(s), fitted with the backward share on cuDNN's rows", nonnegative=True),
    _row("attention_decode_time", "t_dec", r"t_{\mathrm{dec}}",
         "fixed time of one decode attention call (s)", nonnegative=True),
    _row("attention_exp_rate", "F_exp", r"F_{\mathrm{exp}}",
         "exponentials per second of the attention kernels' softmax (special-function units), one per scored pair",
         positive=True),
    _row("mha_decode_rate", "R_mha", r"R_{\mathrm{mha}}",
         "K and V elements per second a multi-head (one query head per KV head) decode kernel works through",
         positive=True),
    _row("decode_ramp_time", "t_ramp", r"t_{\mathrm{ramp}}",
         "time a decode attention kernel loses to the ramp of its loads before streaming at its full rate (s)",
         nonnegative=True),
    _row("decode_ramp_bytes", "M_ramp", r"M_{\mathrm{ramp}}",
         "bytes a decode attention kernel moves before it streams at its full rate", positive=True),
    _row("grouped_decode_time_8bit", "t_dec8", r"t_{\mathrm{dec,g8}}",
         "fixed time of one decode attention call grouping query heads over an 8-bit KV cache (s)",
         nonnegative=True),
    _row("ll_base_latency", "alpha_LL0", r"\alpha_{\mathrm{LL},0}",
         "fixed latency of one collective call under the low-latency protocol (s)", nonnegative=True),
    _row("ll_latency", "alpha_LL", r"\alpha_{\mathrm{LL}}",
         "latency of one ring step under the low-latency protocol (s)", nonnegative=True),
    _row("ll_efficiency", "eta_LL", r"\eta_{\mathrm{LL}}",
         "bus bandwidth of the low-latency protocol over the link's", positive=True),
    _row("custom_allreduce_latency", "alpha_c", r"\alpha_{\mathrm{c}}",
         "fixed latency of one call of an engine's own (one-shot) all-reduce (s)", nonnegative=True),
    _row("custom_allreduce_efficiency", "eta_c", r"\eta_{\mathrm{c}}",
         "bandwidth of an engine's own all-reduce over the link's", positive=True),
    _row("custom_allreduce_peer_latency", "alpha_cp", r"\alpha_{\mathrm{c},p}",
         "latency an engine's own all-reduce adds per peer it synchronises with, either form (s)",
         nonnegative=True),
    _row("custom_allreduce_two_shot_latency", "alpha_c2", r"\alpha_{\mathrm{c},2}",
         "fixed latency of one call of an engine's own two-shot all-reduce (reduce-scatter, then all-gather) (s)",
         nonnegative=True),
    _row("custom_allreduce_block_rate", "R_cb", r"R_{\mathrm{c,b}}",
         "bytes per second one thread block of an engine's one-shot all-reduce pushes and polls (its token's "
         "row to and from every chip of the group)", positive=True),
    _row("symm_allreduce_latency", "alpha_s", r"\alpha_{\mathrm{s}}",
         "fixed latency of one call of an engine's symmetric-memory all-reduce (copy in, reduce, copy out) (s)",
         nonnegative=True),
    _row("symm_allreduce_efficiency", "eta_s", r"\eta_{\mathrm{s}}",
         "rate at which an engine's symmetric-memory all-reduce streams its buffer, over the link's",
         positive=True),
    _row("all_to_all_latency", "alpha_A2A", r"\alpha_{\mathrm{A2A}}",
         "fixed latency of one all-to-all call (NCCL's grouped sends, Simple protocol) (s)", nonnegative=True),
    _row("all_to_all_peer_latency", "alpha_A2Ap", r"\alpha_{\mathrm{A2A},p}",
         "latency an all-to-all adds per peer it sends to (s)", nonnegative=True),
    _row("all_to_all_ll_latency", "alpha_A2ALL", r"\alpha_{\mathrm{A2A,LL}}",
         "fixed latency of one all-to-all call whose messages take the low-latency protocol (s)",
         nonnegative=True),
    _row("routing_imbalance", "iota_r", r"\iota_{r}",
         "token-expert pairs of the busiest expert-parallel rank over the balanced T k per rank (1: balanced)",
         positive=True),
    _row("all_to_all_efficiency", "eta_A2A", r"\eta_{\mathrm{A2A}}",
         "bandwidth of an all-to-all's grouped sends over the rings' bus bandwidth", positive=True),
    _row("all_to_all_ll_efficiency", "eta_A2ALL", r"\eta_{\mathrm{A2A,LL}}",
         "bandwidth of one peer's low-latency message over the link's bus bandwidth", positive=True),
    # speculative decoding (Leviathan et al. 2023, "Fast Inference from Transformers via
    # Speculative Decoding"): alpha in [0, 1] is a probability, so only nonnegative is an assumption
    _row("spec_k", "k", "k", "draft tokens proposed per speculation round"),
    _row("spec_alpha", "alpha_acc", r"\alpha_{\mathrm{acc}}",
         "probability that the target accepts one draft token (in [0, 1])", real=True, nonnegative=True),
    _row("draft_time", "T_draft", r"T_{\mathrm{draft}}", "time of one draft decode step (s)", positive=True),
    _row("verify_time", "T_verify", r"T_{\mathrm{verify}}",
         "time of the target's verification forward over k + 1 tokens (s)", positive=True),
    # continuous batching (symcost/plan/serving): the running requests of a closed loop; a real
    # number, since a pipeline's micro-batches (and a mean-field steady state) hold fractions
    _row("concurrency", "c", "c", "requests in a serving engine at once (a closed loop)", positive=True),
)

TABLE: dict[str, SymbolInfo] = {row.name: row for row in _ROWS}
"""Every canonical symbol by its attribute name."""

_BY_SYMBOL = {row.symbol: row for row in _ROWS}

batch_size = TABLE["batch_size"].symbol
seq_len = TABLE["seq_len"].symbol
hidden_size = TABLE["hidden_size"].symbol
intermediate_size = TABLE["intermediate_size"].symbol
num_heads = TABLE["num_heads"].symbol
num_kv_heads = TABLE["num_kv_heads"].symbol
head_dim = TABLE["head_dim"].symbol
vocab_size = TABLE["vocab_size"].symbol
num_layers = TABLE["num_layers"].symbol
window = TABLE["window"].symbol
attention_chunk = TABLE["attention_chunk"].symbol
dtype_bytes = TABLE["dtype_bytes"].symbol
ssm_heads = TABLE["ssm_heads"].symbol
ssm_head_dim = TABLE["ssm_head_dim"].symbol
ssm_state_size = TABLE["ssm_state_size"].symbol
ssm_groups = TABLE["ssm_groups"].symbol
conv_kernel = TABLE["conv_kernel"].symbol
chunk_size = TABLE["chunk_size"].symbol
tp = TABLE["tp"].symbol
sp = TABLE["sp"].symbol
cp = TABLE["cp"].symbol
pp = TABLE["pp"].symbol
ep = TABLE["ep"].symbol
dp = TABLE["dp"].symbol
peak_flops = TABLE["peak_flops"].symbol
vector_flops = TABLE["vector_flops"].symbol
hbm_capacity = TABLE["hbm_capacity"].symbol
hbm_bandwidth = TABLE["hbm_bandwidth"].symbol
scale_up_bandwidth = TABLE["scale_up_bandwidth"].symbol
scale_up_peer_bandwidth = TABLE["scale_up_peer_bandwidth"].symbol
scale_up_domain = TABLE["scale_up_domain"].symbol
scale_out_bandwidth = TABLE["scale_out_bandwidth"].symbol
collective_latency = TABLE["collective_latency"].symbol
scale_out_latency = TABLE["scale_out_latency"].symbol
peak_flops_16bit = TABLE["peak_flops_16bit"].symbol
compute_units = TABLE["compute_units"].symbol
matmul_efficiency = TABLE["matmul_efficiency"].symbol
matmul_efficiency_8bit = TABLE["matmul_efficiency_8bit"].symbol
memory_efficiency = TABLE["memory_efficiency"].symbol
attention_memory_efficiency = TABLE["attention_memory_efficiency"].symbol
attention_efficiency = TABLE["attention_efficiency"].symbol
network_efficiency = TABLE["network_efficiency"].symbol
scale_out_efficiency = TABLE["scale_out_efficiency"].symbol
kernel_time = TABLE["kernel_time"].symbol
launch_time = TABLE["launch_time"].symbol
collective_base_latency = TABLE["collective_base_latency"].symbol
step_overhead = TABLE["step_overhead"].symbol
collective_overhead = TABLE["collective_overhead"].symbol
moe_sync_time = TABLE["moe_sync_time"].symbol
a2a_overlap_efficiency = TABLE["a2a_overlap_efficiency"].symbol
tp_overlap_efficiency = TABLE["tp_overlap_efficiency"].symbol
tree_latency = TABLE["tree_latency"].symbol
tree_efficiency = TABLE["tree_efficiency"].symbol
nvls_latency = TABLE["nvls_latency"].symbol
nvls_efficiency = TABLE["nvls_efficiency"].symbol
nvls_arch_efficiency = TABLE["nvls_arch_efficiency"].symbol
gemm_time = TABLE["gemm_time"].symbol
quantize_bytes = TABLE["quantize_bytes"].symbol
gemm_backward_efficiency = TABLE["gemm_backward_efficiency"].symbol
gemm_memory_efficiency = TABLE["gemm_memory_efficiency"].symbol
grouped_gemm_efficiency = TABLE["grouped_gemm_efficiency"].symbol
grouped_gemm_time = TABLE["grouped_gemm_time"].symbol
grouped_gemm_memory_efficiency = TABLE["grouped_gemm_memory_efficiency"].symbol
grouped_gemm_output_efficiency = TABLE["grouped_gemm_output_efficiency"].symbol
attention_time = TABLE["attention_time"].symbol
attention_io_efficiency = TABLE["attention_io_efficiency"].symbol
attention_backward_efficiency = TABLE["attention_backward_efficiency"].symbol
attention_backward_peak_efficiency = TABLE["attention_backward_peak_efficiency"].symbol
attention_backward_time = TABLE["attention_backward_time"].symbol
attention_decode_time = TABLE["attention_decode_time"].symbol
grouped_decode_time_8bit = TABLE["grouped_decode_time_8bit"].symbol
attention_exp_rate = TABLE["attention_exp_rate"].symbol
mha_decode_rate = TABLE["mha_decode_rate"].symbol
decode_ramp_time = TABLE["decode_ramp_time"].symbol
decode_ramp_bytes = TABLE["decode_ramp_bytes"].symbol
ll_base_latency = TABLE["ll_base_latency"].symbol
ll_latency = TABLE["ll_latency"].symbol
ll_efficiency = TABLE["ll_efficiency"].symbol
custom_allreduce_latency = TABLE["custom_allreduce_latency"].symbol
custom_allreduce_efficiency = TABLE["custom_allreduce_efficiency"].symbol
custom_allreduce_peer_latency = TABLE["custom_allreduce_peer_latency"].symbol
custom_allreduce_two_shot_latency = TABLE["custom_allreduce_two_shot_latency"].symbol
custom_allreduce_block_rate = TABLE["custom_allreduce_block_rate"].symbol
symm_allreduce_latency = TABLE["symm_allreduce_latency"].symbol
symm_allreduce_efficiency = TABLE["symm_allreduce_efficiency"].symbol
all_to_all_latency = TABLE["all_to_all_latency"].symbol
all_to_all_peer_latency = TABLE["all_to_all_peer_latency"].symbol
all_to_all_ll_latency = TABLE["all_to_all_ll_latency"].symbol
all_to_all_ll_efficiency = TABLE["all_to_all_ll_efficiency"].symbol
all_to_all_efficiency = TABLE["all_to_all_efficiency"].symbol
routing_imbalance = TABLE["routing_imbalance"].symbol
spec_k = TABLE["spec_k"].symbol
spec_alpha = TABLE["spec_alpha"].symbol
draft_time = TABLE["draft_time"].symbol
verify_time = TABLE["verify_time"].symbol
concurrency = TABLE["concurrency"].symbol


def lookup(name: str) -> sympy.Symbol:
    """The canonical symbol called ``name`` (its attribute name, e.g. ``"seq_len"``).

    Raises ``KeyError`` listing the known names otherwise; nothing is parsed.

    >>> lookup("tp")
    t
    """
    try:
        return TABLE[name].symbol
    except KeyError:
        raise KeyError(f"unknown symbol {name!r}; known: {', '.join(TABLE)}") from None


def latex_names() -> dict[sympy.Symbol, str]:
    """``symbol_names`` for :func:`sympy.latex`: each canonical symbol's LaTeX."""
    return {row.symbol: row.latex for row in _ROWS}


def info(symbol: sympy.Symbol) -> SymbolInfo | None:
    """The table row of a canonical symbol, or ``None`` for any other symbol."""
    return _BY_SYMBOL.get(symbol)


def describe(symbol: sympy.Symbol) -> str:
    """``"name (printed)"`` for a canonical symbol, for error messages; else the symbol itself.

    >>> describe(seq_len)
    'seq_len (s)'
    """
    row = _BY_SYMBOL.get(symbol)
    return f"{row.name} ({symbol})" if row else str(symbol)
