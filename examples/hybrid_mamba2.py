"""State-space and hybrid models: Mamba-2's constant state cache against a transformer's KV cache.

Builds the mamba2-2.7b preset and a Nemotron-H-style hybrid (Mamba-2, attention and MLP blocks;
shapes in the style of Nemotron-H-8B, not a checked preset), then prints, per context length, the
cache each keeps for a batch of 8 and the decode step time (TPOT) on an H100.

Run: ``python examples/hybrid_mamba2.py``
"""

from symcost import models
from symcost.models import ssm

HARDWARE, BATCH = "H100_SXM", 8


def main() -> None:
    mamba = models.get("mamba2-2.7b")
    hybrid = ssm.hybrid(hidden_size=4096, vocab_size=131072, mamba_layers=24, attention_layers=4,
                        mlp_layers=24, num_heads=32, num_kv_heads=8, head_dim=128,
                        intermediate_size=21504, num_groups=8, chunk_size=128, name="hybrid-8b")
    llama = models.get("llama-3-8b")
    for model in (mamba, hybrid, llama):
        print(f"{model.name}: {model.parameter_count:,} parameters, {int(model.num_layers)} layers")
    print(f"\ncache for {BATCH} sequences (bytes) and TPOT on {HARDWARE}:")
    for seq in (4096, 32768, 131072):
        cells = []
        for model in (mamba, hybrid, llama):
            step = model.inference_step(HARDWARE, batch_size=BATCH, seq_len=seq)
            cells.append(f"{model.name} {step.kv_cache_memory:>15,} B {float(step.tpot) * 1e3:6.2f} ms")
        print(f"s = {seq:>7,}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
