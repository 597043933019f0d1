"""Training and inference steps of a whole model on a cluster: time, memory, MFU.

Training (Megatron-LM conventions, Narayanan et al. 2021; Korthikanti et al. 2022):

- ``m = global_batch / (dp * micro_batch)`` micro-batches per step; pipeline stage ``k`` holds
  ``n_k`` consecutive blocks (the first also the embedding, the last the final norm and LM head;
  see :func:`pipeline_stages` for the split, even or not); one micro-batch costs ``T_mb`` = the
  slowest stage's forward + backward (+ recompute) latency: the slowest stage sets the pace;
- 1F1B schedule with ``v`` interleaved chunks: ``m * T_mb`` plus a bubble ``(p - 1)/v * T_mb``
  (bubble fraction ``(p - 1)/(v * m)``);
- stage-to-stage sends: ``2 * v * m`` point-to-point messages per step of
  ``b * s * h * e / (t * sp)`` bytes (Megatron's scatter/gather over the TP ranks);
- data parallelism: an all-reduce of the fp32 gradients once per step; ZeRO-1 (Megatron's
  distributed optimizer) a reduce-scatter of the gradients at the accumulation boundary and an
  all-gather of the updated weights; ZeRO-2 (DeepSpeed stage 2) keeps only a gradient shard, so
  it reduce-scatters every micro-batch's gradients (``m`` per step) and gathers the weights once;
  ZeRO-3 also reduce-scatters per micro-batch and all-gathers the weights for every
  micro-batch's forward and backward, and nothing after the step (3 Psi per micro-batch,
  Rajbhandari et al. 2020, section 7.2.2). With pipeline stages ZeRO-2/3 are FSDP as torchtitan
  and Meta's Llama 3 run it (docs/explanation/modelling.md): ZeRO-2 Meta's
  (weights gathered once per step), ZeRO-3 FSDP2's ``reshard_after_forward=True``;
- a tied LM head under pipeline parallelism: the last stage holds a copy of the embedding table,
  and the first and the last stage all-reduce its fp32 gradient after the data-parallel
  reduction (Megatron-LM's embedding group; docs/conventions.md §6);
- memory per chip: weights (activation dtype), fp32 gradients, Adam's fp32 master weights and two
  moments (12 bytes per parameter), sharded over ``dp`` by ZeRO stage (stage 1 is Megatron's
  distributed optimizer: ``6 + 12/d`` bytes per parameter), and the stage's in-flight
  activations: stage ``k`` of 1F1B holds ``min(p - k, m)`` micro-batches; interleaved,
  ``min(2(p - k - 1) + (v - 1)p + 1, m v)`` chunks of ``n_k/v`` blocks (Megatron-LM's warm-up
  count plus one; ``p(1 + (p - 1)/(p v))`` micro-batches on the first stage). The fullest stage
  (the largest sum of those terms) sets the memory per chip, and its terms are reported.
- parallelism: the model's own (set by its builder or :meth:`~symcost.models.model.Model.with_parallelism`)
  with the degrees given to the step added (:func:`resolve_parallelism`); expert parallelism
  follows one rule in training and inference (:func:`check_expert_parallel`).

MFU is ``model_flops / (step_time * chips * peak)``, with ``model_flops`` the model's own counted
training matmul FLOPs per step (no recomputation) under its ``causal`` setting and attention
kernel: ``6 N`` per token for the N matmul weights plus the attention core. For an eager,
non-causal model (``Model.gpt``) that is PaLM's definition, ``6N + 12 L h s`` per token (Chowdhery
et al. 2022, appendix B); a flash, causal model (the Llama-style presets) counts ``6N +
7 L h (s + 1)``: half the pairs, and the flash backward's recomputed Q Kᵀ. Every result is an
expression; with numbers it is exact.
"""

from __future__ import annotations

from typing import Any, Callable

from ..core.parallelism import ParallelismLike
from ..errors import ConfigError
from ..hardware import Hardware
from ..models.model import Model, register_steps
from . import compiled as csteps
from . import inference, training
from .compiled import CompiledStep as CompiledStep
from .inference import inference_step as inference_step
from .inference import max_batch_size as max_batch_size
from .inference import max_context as max_context
from .pipeline import GRADIENT_BYTES as GRADIENT_BYTES
from .pipeline import OPTIMIZER_BYTES as OPTIMIZER_BYTES
from .pipeline import InferenceStep as InferenceStep
from .pipeline import TrainingStep as TrainingStep
from .pipeline import check_expert_parallel as check_expert_parallel
from .pipeline import model_parts as model_parts
from .pipeline import pipeline_stages as pipeline_stages
from .pipeline import resolve_parallelism as resolve_parallelism
from .pipeline import stage_layout as stage_layout
from .pipeline import stages_from_parts as stages_from_parts
from .pipeline import values_from_rows as values_from_rows
from .training import assemble_training as assemble_training
from .training import flops_per_sequence as flops_per_sequence
from .training import training_step as training_step

__all__ = ["GRADIENT_BYTES", "OPTIMIZER_BYTES", "CompiledStep", "InferenceStep", "TrainingStep",
           "check_expert_parallel", "compile_step", "inference_step", "pipeline_stages",
           "resolve_parallelism", "stage_layout", "training_step"]


def compile_step(model: "Model", hardware: Hardware | str, phase: str = "inference", dtype: Any = "bf16",
                 parallelism: ParallelismLike = None, **options: Any) -> Callable[..., Any]:
    """The step of ``model`` on ``hardware`` compiled once, as a function of its sizes.

    ``phase="inference"``: ``f(batch_size, seq_len, exact=True)`` -> :class:`InferenceStep`
    (``options``: ``overlap``, ``stage_layers``); ``phase="training"``: ``f(seq_len,
    global_batch, micro_batch=1, exact=True)`` -> :class:`TrainingStep` (``options``:
    ``recompute``, ``interleave``, ``zero_stage``, ``overlap``, ``stage_layers``, ``dp_overlap``,
    ``grad_reduce_in_fp32``, ``pp_overlap``, ``recompute_layers``). The
    configuration is validated here, once; each call evaluates compiled code: exact ints and
    Fractions (equal to the uncompiled step), or float64 with ``exact=False`` (agreeing to 1e-12).
    :func:`training_step` and :func:`inference_step` use the same compiled programs whenever
    their sizes are positive ints; a wrong size gets the uncompiled step's error.

    >>> from symcost import models
    >>> f = compile_step(models.get("llama-2-7b"), "H100_SXM", "inference")
    >>> exact, fast = f(8, 2048), f(8, 2048, exact=False)
    >>> abs(fast.ttft - exact.ttft) <= 1e-12 * exact.ttft
    True
    """
    if phase == "inference":
        program = inference.inference_front(model, hardware, dtype, parallelism, options.get("overlap", False),
                                             options.get("stage_layers"))
        if options.get("prefill_chunk") is not None:
            program = None  # a chunked prefill is not compiled

        def infer(batch_size: Any, seq_len: Any, *, exact: bool = True) -> InferenceStep:
            fast = program(batch_size, seq_len, exact=exact) if program is not None and csteps.USE_COMPILED else None
            return fast if fast is not None else inference_step(model, hardware, batch_size, seq_len, dtype,
                                                                parallelism, exact=exact, **options)
        return infer
    if phase != "training":
        raise ConfigError(f"phase: 'training' or 'inference', got {phase!r}")
    known = {"recompute": "none", "interleave": 1, "zero_stage": 1, "overlap": False, "stage_layers": None,
             "dp_overlap": True, "grad_reduce_in_fp32": True, "pp_overlap": True, "recompute_layers": None}
    unknown = set(options) - set(known)
    if unknown:
        raise ConfigError(f"compile_step: unknown training options {sorted(unknown)}; valid: {sorted(known)}")
    chosen = {**known, **options}
    sync = training.StepComm(bool(chosen.pop("dp_overlap")), bool(chosen.pop("grad_reduce_in_fp32")),
                             bool(chosen.pop("pp_overlap")))
    layers = chosen["stage_layers"]
    trained = training.training_front(model, hardware, dtype, parallelism, training.TrainingOptions(
        chosen["recompute"], chosen["interleave"], chosen["zero_stage"], chosen["overlap"],
        None if layers is None else tuple(layers), sync, chosen["recompute_layers"]))

    def train(seq_len: Any, global_batch: Any, micro_batch: Any = 1, *, exact: bool = True) -> TrainingStep:
        fast = None
        if trained is not None and csteps.USE_COMPILED:
            fast = trained(seq_len, global_batch, micro_batch, exact=exact)
        return fast if fast is not None else training_step(model, hardware, seq_len, global_batch, micro_batch,
                                                           dtype, parallelism, exact=exact, **options)
    return train


# Model.training_step, .inference_step, .max_batch_size and .max_context delegate to these.
register_steps(training_step, inference_step, max_batch_size, max_context)
