"""Quick start: one MLP layer, numeric and symbolic.

Run: python examples/quickstart.py
"""

from symcost import DataType, MLPLayer, Phase
from symcost import symbols as S

layer = MLPLayer(
    name="layer_0_mlp",
    layer_idx=0,
    hidden_size=4096,
    intermediate_size=16384,
    parallelism={"tensor_parallel": 2, "sequence_parallel": 4},
)

metrics = layer.compute_metrics(
    batch_size=1, seq_len=2048, phase=Phase.PREFILL, dtype=DataType.BF16
)
print(f"{layer.name}: prefill, b=1, s=2048, bf16, TP=2, Ulysses SP=4 (per chip)")
print(f"  FLOPs               {metrics.flops_per_chip:>20,}")
print(f"  matmul FLOPs        {metrics.matmul_flops_per_chip:>20,}")
print(f"  HBM traffic (bytes) {metrics.hbm_bytes_per_chip:>20,}")
print(f"  weights (bytes)     {metrics.weight_memory_per_chip:>20,}")
print(f"  activations (bytes) {metrics.activation_memory_per_chip:>20,}")
print(f"  comm sent (bytes)   {metrics.comm_bytes_per_chip:>20,}")
for c in metrics.collectives:
    print(f"  {c.kind} over {c.axis} (n={c.group_size}): {c.payload_bytes:,} bytes x {c.count}")

# The same layer with symbols: omit what you want to keep symbolic.
symbolic = MLPLayer(parallelism={"tensor_parallel": S.tp}).compute_metrics(phase="training")
print("\ntraining, symbolic (per chip):")
print("  matmul FLOPs =", symbolic.matmul_flops_per_chip)
print("  activations  =", symbolic.activation_memory_per_chip)
# The symbolic metrics were timed on the symbolic roofline chip, so bind the ideal H100
# ("h100-ideal"); the realistic preset's efficiency model is not in these formulas (conventions §17).
point = symbolic.evaluate(batch_size=8, seq_len=4096, hidden_size=4096,
                          intermediate_size=14336, tp=4, dtype="bf16", hardware="h100-ideal")
print(f"  at b=8, s=4096, h=4096, f=14336, t=4, bf16: {point.matmul_flops_per_chip:,}")
