"""A symbolic model evaluated at numeric batch and sequence lengths keeps its shape symbols.

Regression: a block whose own fields are numbers but whose sub-layers hold symbols (the default
``Model.llama()`` has h, f, a, g free) took the compiled numeric path and raised ``NameError``
from the compiled code instead of returning formulas.
"""

import sympy as sp

from symcost import Model
from symcost import symbols as S


def test_symbolic_block_at_numeric_sizes_gives_formulas():
    block = Model.llama().blocks[0][0]
    m = block.compute_metrics(batch_size=2, seq_len=16, phase="prefill", dtype="bf16", hardware="h100")
    # the gated MLP alone does 3 matmuls of 2*(b*s)*h*f FLOPs: 3*2*32*h*f = 192*h*f, so the
    # block's FLOPs depend on f and h
    assert S.intermediate_size in sp.sympify(m.flops_per_chip).free_symbols
    assert S.hidden_size in sp.sympify(m.flops_per_chip).free_symbols


def test_symbolic_model_inference_step_at_numeric_sizes():
    step = Model.llama().inference_step("h100", 1, 8192)
    assert S.hidden_size in sp.sympify(step.weight_memory).free_symbols
