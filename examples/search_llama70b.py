"""Which TP/PP/DP for Llama-3-70B training on 64 H100s? The ten fastest configurations that fit.

Run: python examples/search_llama70b.py
"""

from symcost import calibration, hardware, models, search

# the matmul efficiency calibrated on Megatron-LM's A100 measurements, assumed to carry over
chip = hardware.H100_SXM.with_efficiency(matmul=calibration.MEGATRON_A100_EFFICIENCY["matmul"])
table = search.parallelism(models.get("llama-3-70b"), chip, num_chips=64, global_batch=1024, seq_len=4096)
print(table)
best = table.best
print(f"\nbest: TP={best['tp']} PP={best['pp']} DP={best['dp']} "
      f"SP={'megatron' if best['megatron_sp'] else best['sp']} micro-batch={best['micro_batch']} "
      f"interleave={best['interleave']} recompute={best['recompute']}"
      f"{'' if best['recompute_layers'] is None else ' (blocks per stage: %d)' % best['recompute_layers']} "
      f"ZeRO-{best['zero_stage']}: "
      f"{best['step_time']:.2f} s per step, MFU {best['mfu']:.1%}, {best['tokens_per_second']:,.0f} tokens/s")
