"""Where a decode step of Llama-3-8B sits on the H100 roofline, op by op, as the batch grows.

Run: python examples/decode_roofline.py
"""

import sympy as sp

from symcost import DataType, hardware, models
from symcost.hardware.timing import op_time

chip = hardware.H100_SXM.ideal()  # the roofline itself (docs/conventions.md §17: the ideal chip)
peak = chip.effective_peak("bf16")
block = models.get("llama-3-8b").blocks[0][0]
ridge = chip.peak("bf16") / chip.hbm_bandwidth
print(f"H100 ridge point: {float(ridge):.0f} FLOP/byte (bf16 peak / HBM bandwidth)")
for batch in (1, 16, 256):
    m = block.compute_metrics(batch_size=batch, seq_len=4096, phase="decode", dtype="bf16", hardware=chip)
    print(f"\nbatch {batch}: block latency {float(m.latency) * 1e6:.1f} us, bound: {m.bound}")
    for op, _count in m.ops:
        if not op.hbm_bytes:
            continue
        t = op_time(op, chip, peak, DataType.BF16)
        intensity = sp.sympify(op.flops) / op.hbm_bytes
        kind = "compute" if t.compute >= t.memory else "memory"
        print(f"  {op.name:16s} intensity {float(intensity):8.1f} FLOP/B  {kind}-bound  "
              f"{float(t.time) * 1e6:8.2f} us")
