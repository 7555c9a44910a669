"""The root :class:`ExperimentConfig` and the views that resolve one setting from several keys."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from ._agents import AgentsConfig
from ._base import ConfigModel, cross_field_error
from ._data import DatasetConfig, DatasetOverride, ExperimentMetadata, ModelConfig, SafetyLimits
from ._runtime import HardwareConfig, LLMConfig, PrecomputationConfig, RayConfig
from ._search import (
    BaselinesConfig,
    EvaluationConfig,
    FinetuneConfig,
    SearchConfig,
    StrategyDefaults,
    TargetConfig,
)

__all__ = ["ExperimentConfig", "CacheSettings", "SECTION_ALIASES"]

#: Alternative top-level keys, as written in the API reference, and the section they mean.
SECTION_ALIASES = {"openai": "llm"}


@dataclass(frozen=True)
class CacheSettings:
    """Whether one cache is used, where it lives and how old an entry may be."""

    enabled: bool
    directory: str
    max_age_s: float


class ExperimentConfig(ConfigModel):
    """A whole experiment, validated at once and frozen. Build it with ``load_config``."""

    experiment: ExperimentMetadata = Field(default_factory=ExperimentMetadata, description="Run identity.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="Dense model.")
    dataset: DatasetConfig = Field(default_factory=DatasetConfig, description="Selected dataset.")
    datasets: dict[str, DatasetOverride] = Field(
        default_factory=dict, description="Per-dataset settings, applied when dataset.name matches."
    )
    target: TargetConfig = Field(default_factory=TargetConfig, description="MACs/params target.")
    search: SearchConfig = Field(default_factory=SearchConfig, description="Search loop.")
    strategy_defaults: StrategyDefaults = Field(
        default_factory=StrategyDefaults, description="Initial strategy."
    )
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig, description="Recovery training.")
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig, description="Metrics.")
    safety_limits: SafetyLimits = Field(default_factory=SafetyLimits, description="Pruning bounds.")
    agents: AgentsConfig = Field(default_factory=AgentsConfig, description="Per-agent settings.")
    llm: LLMConfig = Field(default_factory=LLMConfig, description="LLM endpoint (alias: openai).")
    hardware: HardwareConfig = Field(default_factory=HardwareConfig, description="Resources.")
    ray: RayConfig = Field(default_factory=RayConfig, description="Ray connection.")
    precomputation: PrecomputationConfig = Field(
        default_factory=PrecomputationConfig, description="On-disk caches."
    )
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig, description="Baselines.")

    @model_validator(mode="before")
    @classmethod
    def _resolve_aliases(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for alias, name in SECTION_ALIASES.items():
                if alias in data and name not in data:
                    data = {(name if key == alias else key): value for key, value in data.items()}
        return data

    @model_validator(mode="after")
    def _one_target_per_asha_search(self) -> ExperimentConfig:
        if self.search.scheduler == "asha" and self.target.sweep is not None:
            raise cross_field_error([(("search", "scheduler"),
                                      "asha compares the trials at each rung, so the targets of a sweep would "
                                      "compete (a harder target always looks worse): use fifo for a sweep, or one "
                                      "target per run (target.reduction or target.budget)", "asha")])
        return self

    def effective_dataset(self) -> DatasetConfig:
        """``dataset`` with the ``datasets.<dataset.name>`` entry merged over it."""
        override = self.datasets.get(self.dataset.name)
        if override is None:
            return self.dataset
        changes = override.model_dump(exclude={"safety_limits"}, exclude_none=True)
        return self.dataset.model_copy(update=changes)

    def effective_safety_limits(self) -> SafetyLimits:
        """``safety_limits`` with ``datasets.<dataset.name>.safety_limits`` merged over it."""
        override = self.datasets.get(self.dataset.name)
        if override is None or override.safety_limits is None:
            return self.safety_limits
        return self.safety_limits.model_copy(update=override.safety_limits.model_dump(exclude_none=True))

    def effective_search(self) -> SearchConfig:
        """``search`` with ``agents.master_agent`` overrides applied."""
        master = self.agents.master_agent.model_dump(include={"max_iterations", "convergence_threshold"})
        return self.search.model_copy(update={k: v for k, v in master.items() if v is not None})

    def effective_strategy_defaults(self) -> StrategyDefaults:
        """``strategy_defaults`` with ``agents.pruning_agent.global_pruning`` applied when set."""
        global_pruning = self.agents.pruning_agent.global_pruning
        if global_pruning is None:
            return self.strategy_defaults
        return self.strategy_defaults.model_copy(update={"global_pruning": global_pruning})

    def effective_finetune(self) -> FinetuneConfig:
        """``finetune`` with AMP off when ``hardware.gpu.mixed_precision`` is false."""
        amp = self.finetune.amp and self.hardware.gpu.mixed_precision
        return self.finetune.model_copy(update={"amp": amp})

    def custom_metrics(self) -> tuple[str, ...]:
        """``evaluation.custom_metrics`` then ``agents.evaluation_agent.custom_metrics``, no repeats."""
        names = self.evaluation.custom_metrics + self.agents.evaluation_agent.custom_metrics
        return tuple(dict.fromkeys(names))

    def profile_cache(self) -> CacheSettings:
        """Model-profile cache: on only if every switch is on; the shorter lifetime wins."""
        agent, section = self.agents.profiling_agent, self.precomputation.model_analysis
        enabled = self.precomputation.enabled and section.enabled and agent.enable_caching
        max_age = min(section.cache_duration, agent.cache_duration)
        return CacheSettings(enabled, self.precomputation.cache_dir, max_age)

    def output_path(self) -> Path:
        """``<experiment.output_dir>/<experiment.name>``."""
        return Path(self.experiment.output_dir) / self.experiment.name

    def llm_api_key(self) -> str | None:
        """The LLM API key: ``llm.api_key`` if set, else the variable named by ``llm.api_key_env``."""
        return self.llm.resolve_api_key()

    def llm_enabled(self) -> bool:
        """Whether strategies come from the LLM (``search.policy``, with ``auto`` resolved)."""
        if self.search.policy != "auto":
            return self.search.policy == "llm"
        return self.llm.base_url is not None or self.llm_api_key() is not None
