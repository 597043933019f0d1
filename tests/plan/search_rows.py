"""The exact training step of one row of a parallelism search table, for the tests that check the
vectorized search against the step (test_step_parallelism, test_tp_summed_grads, test_recompute_layers)."""

from __future__ import annotations

from typing import Any


def row_step(model: Any, chip: Any, table: Any, i: int, seq_len: int, global_batch: int, **options: Any) -> Any:
    """``model.training_step`` at row ``i``'s layout, micro-batch, recompute mode (and blocks per
    stage under block recompute), interleave and ZeRO stage (``options`` adds or overrides keywords,
    e.g. ``overlap``)."""
    row = table.row(i)
    kwargs = {"recompute": row["recompute"], "interleave": row["interleave"], "zero_stage": row["zero_stage"],
              "recompute_layers": row.get("recompute_layers"), **options}
    return model.training_step(chip, seq_len=seq_len, global_batch=global_batch, micro_batch=row["micro_batch"],
                               parallelism=table.parallelism(i), **kwargs)
