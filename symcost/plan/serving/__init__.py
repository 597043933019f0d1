"""Serving plans: one engine's continuous batching at a load (:mod:`.batching`, its steps in
:mod:`.steps`, the request mix in :mod:`.workload`) and the deployment search over layouts,
concurrency, aggregated and disaggregated, with its Pareto front (:mod:`.deploy`)."""

from .batching import BENCHMARK_WAVES as BENCHMARK_WAVES
from .batching import DEFAULT_MEMORY_FRACTION as DEFAULT_MEMORY_FRACTION
from .batching import DEFAULT_TOKEN_BUDGET as DEFAULT_TOKEN_BUDGET
from .batching import ServingCurve as ServingCurve
from .batching import ServingMemory as ServingMemory
from .batching import ServingPoint as ServingPoint
from .batching import continuous_batching as continuous_batching
from .batching import serving_curve as serving_curve
from .deploy import Deployment as Deployment
from .deploy import DeploymentPlan as DeploymentPlan
from .deploy import plan_deployment as plan_deployment
from .steps import EngineSteps as EngineSteps
from .steps import engine_steps as engine_steps
from .workload import Workload as Workload

__all__ = ["BENCHMARK_WAVES", "DEFAULT_MEMORY_FRACTION", "DEFAULT_TOKEN_BUDGET", "Deployment", "DeploymentPlan",
           "EngineSteps", "ServingCurve", "ServingMemory", "ServingPoint", "Workload", "continuous_batching",
           "engine_steps", "plan_deployment", "serving_curve"]
