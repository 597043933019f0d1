"""Engine profiles: what a serving or training engine adds around the kernels.

A :class:`Runtime` says whether kernels are replayed from CUDA graphs, how long each inference
step spends outside the model, and how the engine counts decode steps. Named profiles describe
the engines of the shipped calibration data (docs/conventions.md §17); ``"neutral"`` is the
default of the realistic chips.

>>> runtime("tensorrt-llm").prefill_emits_first_token
True
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import sympy as sp
from pydantic import BaseModel, ConfigDict

from ..errors import ConfigError
from .validate import Seconds

__all__ = ["Runtime", "RUNTIMES", "runtime", "runtimes"]


class Runtime(BaseModel):
    """What the serving or training engine adds around the kernels (docs/conventions.md §17).

    ``cuda_graphs``: kernels are replayed from a captured graph, so the host's launch time
    (:attr:`Hardware.launch_time`) never paces the GPU; without graphs a kernel takes at least
    that long. ``step_overhead``: seconds per inference step spent outside the model
    (scheduling, sampling, host synchronisation), added once to each prefill and decode step.
    ``collective_overhead``: seconds the engine adds to every collective call beyond the chip's
    ``collective_base_latency`` (its own synchronisation around the library call).
    ``prefill_emits_first_token``: how many decode steps an engine runs to produce ``n``
    output tokens is ``n - 1`` when the prefill emits the first token (TensorRT-LLM, vLLM), or
    ``n`` when its generation loop runs once per output token (FasterTransformer).

    >>> Runtime(name="mine", step_overhead="0.002").step_overhead
    1/500
    """

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    name: str
    cuda_graphs: bool = True
    step_overhead: Seconds = sp.Integer(0)
    collective_overhead: Seconds = sp.Integer(0)
    prefill_emits_first_token: bool = True

    def decode_steps(self, output_len: Any) -> Any:
        """Decode steps that produce ``output_len`` tokens after the prefill."""
        return output_len - 1 if self.prefill_emits_first_token else output_len


# Named profiles: those of the engines in symcost/data/inference_calibration.csv, whose terms are
# fitted by symcost.calibration_inference (benchmarks/calibrate.py; tests/plan/test_calibration_inference.py).
RUNTIMES: dict[str, Runtime] = {}


def _register(profile: Runtime) -> Runtime:
    RUNTIMES[profile.name] = profile
    return profile


IDEAL = _register(Runtime(name="ideal"))
"""No engine: the roofline's runtime."""

# The calibration engines' fitted terms (symcost.calibration_inference.fit(); benchmarks/calibrate.py
# refits them and tests/plan/test_calibration_inference.py checks that the fit reproduces them).
ENGINE_FIT = {"step_overhead": Fraction(7, 2500), "collective_overhead": Fraction(199, 2000000)}

# NB: TensorRT-LLM's gptSessionBenchmark (v0.5/v0.6.1, the runs of the calibration data) launches
# without CUDA graphs unless --enable_cuda_graph is given, and its context phase emits the first
# output token.
TENSORRT_LLM = _register(Runtime(name="tensorrt-llm", cuda_graphs=False, prefill_emits_first_token=True,
                                 **ENGINE_FIT))
# NB: FasterTransformer (v5.x) launches from the host (no CUDA graphs) and its generation loop runs
# one decoder step per output token after the context phase (ParallelGpt's step loop); it has no
# scheduler, so it has no step overhead; its collective calls cost what TensorRT-LLM's do (a
# separate fit gave the same value).
FASTERTRANSFORMER = _register(Runtime(name="fastertransformer", cuda_graphs=False, prefill_emits_first_token=False,
                                      collective_overhead=ENGINE_FIT["collective_overhead"]))
# The default of the realistic chips: CUDA graphs on, no engine time per step and no time per
# collective call beyond NCCL's own (the chip's collective_base_latency): neutral, i.e. only the
# chip's own terms, among them the fitted time per kernel (which on the calibration engines, run
# without graphs, also holds what a host launch costs). Engine-specific costs come with a named
# profile (with_runtime("tensorrt-llm")) or a Runtime of the user's.
NEUTRAL = _register(Runtime(name="neutral", cuda_graphs=True, prefill_emits_first_token=True))


def runtime(name: "str | Runtime") -> Runtime:
    """A named engine profile (case-insensitive); one-line :class:`~symcost.errors.ConfigError` listing the names."""
    if isinstance(name, Runtime):
        return name
    key = str(name).strip().lower()
    if key not in RUNTIMES:
        raise ConfigError(f"runtime: unknown engine profile {name!r}; known: {', '.join(RUNTIMES)}")
    return RUNTIMES[key]


def runtimes() -> list[str]:
    """The names of the engine profiles."""
    return list(RUNTIMES)
