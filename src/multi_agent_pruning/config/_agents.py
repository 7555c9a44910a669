"""The ``agents`` section: per-agent settings, in the API reference's shape."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import ConfigModel

__all__ = [
    "ProfilingAgentConfig",
    "MasterAgentConfig",
    "AnalysisAgentConfig",
    "PruningAgentConfig",
    "FineTuningAgentConfig",
    "EvaluationAgentConfig",
    "AgentsConfig",
]


class ProfilingAgentConfig(ConfigModel):
    """Profiling agent: architecture, pruning groups and sensitivity of the dense model."""

    enable_caching: bool = Field(True, description="Reuse a cached profile of the same model.")
    cache_duration: float = Field(3600, ge=0, description="Seconds a cached profile stays valid.")
    sensitivity_fraction: float = Field(
        0.3, gt=0.0, lt=1.0, description="Pruning fraction applied per group to measure sensitivity."
    )
    calibration_batches: int = Field(2, ge=1, description="Batches used for the sensitivity test.")


class MasterAgentConfig(ConfigModel):
    """Master agent: proposes strategies and decides when to stop."""

    max_iterations: int | None = Field(None, ge=1, description="Overrides search.max_iterations.")
    convergence_threshold: float | None = Field(
        None, ge=0.0, description="Overrides search.convergence_threshold."
    )
    exploration: float = Field(
        0.3, ge=0.0, le=1.0,
        description="Step size of the built-in policy's mutations of the recovery learning rate and the per-kind "
                    "multipliers, relative to 0.3 (0.6: steps twice as large); the other genes are drawn as before.",
    )


class AnalysisAgentConfig(ConfigModel):
    """Analysis agent: checks strategies against the profile and safety limits."""

    safety_enforcement: Literal["strict", "warn"] = Field(
        "strict", description="strict rejects/clamps unsafe strategies; warn only logs them."
    )


class PruningAgentConfig(ConfigModel):
    """Pruning agent: applies a strategy to a copy of the dense model."""

    global_pruning: bool | None = Field(
        None, description="Overrides strategy_defaults.global_pruning when set."
    )


class FineTuningAgentConfig(ConfigModel):
    """Fine-tuning agent: optimizer and schedule of the recovery training."""

    optimizer: Literal["adamw", "sgd"] = Field("adamw", description="Optimizer.")
    scheduler: Literal["cosine", "step", "none"] = Field("cosine", description="Learning-rate schedule.")


class EvaluationAgentConfig(ConfigModel):
    """Evaluation agent: metrics computed on each pruned model."""

    custom_metrics: tuple[str, ...] = Field(
        (), description="Extra registered metrics, added to evaluation.custom_metrics."
    )


class AgentsConfig(ConfigModel):
    """Settings of the six agents."""

    profiling_agent: ProfilingAgentConfig = Field(
        default_factory=ProfilingAgentConfig, description="Profiling agent."
    )
    master_agent: MasterAgentConfig = Field(default_factory=MasterAgentConfig, description="Master agent.")
    analysis_agent: AnalysisAgentConfig = Field(
        default_factory=AnalysisAgentConfig, description="Analysis agent."
    )
    pruning_agent: PruningAgentConfig = Field(
        default_factory=PruningAgentConfig, description="Pruning agent."
    )
    fine_tuning_agent: FineTuningAgentConfig = Field(
        default_factory=FineTuningAgentConfig, description="Fine-tuning agent."
    )
    evaluation_agent: EvaluationAgentConfig = Field(
        default_factory=EvaluationAgentConfig, description="Evaluation agent."
    )
