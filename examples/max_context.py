"""The longest context Llama-3-70B's KV cache fits on one 8-GPU node: H100 vs H200.

Memory is one limit; the model was trained for ``max_position_embeddings`` tokens (8,192 for
Llama-3-70B), the other: the longest context served is the smaller.

Run: python examples/max_context.py
"""

from symcost import models

model = models.get("llama-3-70b")
par = {"tensor_parallel": 8}
for chip in ("H100_SXM", "H200_SXM"):
    for batch in (1, 8):
        r = model.max_context(chip, batch_size=batch, parallelism=par)
        step = model.inference_step(chip, batch_size=batch, seq_len=r.value, parallelism=par)
        print(f"{chip:9s} batch {batch}: max context {r.value:>9,} tokens "
              f"(KV cache {float(step.kv_cache_memory) / 1e9:5.1f} GB per GPU, "
              f"TPOT at that context {float(step.tpot) * 1e3:6.2f} ms)")
        served = min(r.value, model.max_position_embeddings)
        print(f"{'':9s} served: {served:,} tokens, the smaller of that and the trained length "
              f"(max_position_embeddings, {model.max_position_embeddings:,})")
