"""Typed experiment configuration: hierarchical YAML, ``${ENV}`` substitution, overrides.

    from multi_agent_pruning.config import load_config
    cfg = load_config("configs/quickstart.yaml", overrides=["search.trials=4"])

Every section is a frozen pydantic model; ``load_config`` reports every problem of a file in
one :class:`~multi_agent_pruning.exceptions.ConfigurationError`. See docs/configuration.md.
"""

from __future__ import annotations

from ._agents import (
    AgentsConfig,
    AnalysisAgentConfig,
    EvaluationAgentConfig,
    FineTuningAgentConfig,
    MasterAgentConfig,
    PruningAgentConfig,
    ProfilingAgentConfig,
)
from ._data import (
    DatasetConfig,
    DatasetOverride,
    ExperimentMetadata,
    ModelConfig,
    SafetyLimits,
    SafetyLimitsOverride,
)
from ._docs import render_config_reference
from ._experiment import CacheSettings, ExperimentConfig
from ._issues import issues_from_pydantic
from ._loader import (
    apply_overrides,
    config_to_dict,
    load_config,
    load_config_dict,
    section_issues,
    validate_config_file,
)
from ._secrets import mask_secrets, redact_urls
from ._runtime import (
    CacheSectionConfig,
    DistributedConfig,
    GPUConfig,
    HardwareConfig,
    LLMConfig,
    ModelAnalysisCacheConfig,
    PrecomputationConfig,
    RayConfig,
)
from ._search import (
    BaselinesConfig,
    EvaluationConfig,
    FinetuneConfig,
    SearchConfig,
    StrategyDefaults,
    TargetConfig,
    parse_target_number,
)

__all__ = [
    "load_config",
    "load_config_dict",
    "apply_overrides",
    "config_to_dict",
    "validate_config_file",
    "render_config_reference",
    "issues_from_pydantic",
    "mask_secrets",
    "section_issues",
    "redact_urls",
    "ExperimentConfig",
    "CacheSettings",
    # sections
    "ExperimentMetadata",
    "ModelConfig",
    "DatasetConfig",
    "DatasetOverride",
    "SafetyLimits",
    "SafetyLimitsOverride",
    "TargetConfig",
    "parse_target_number",
    "SearchConfig",
    "StrategyDefaults",
    "FinetuneConfig",
    "EvaluationConfig",
    "BaselinesConfig",
    "AgentsConfig",
    "ProfilingAgentConfig",
    "MasterAgentConfig",
    "AnalysisAgentConfig",
    "PruningAgentConfig",
    "FineTuningAgentConfig",
    "EvaluationAgentConfig",
    "LLMConfig",
    "HardwareConfig",
    "DistributedConfig",
    "GPUConfig",
    "RayConfig",
    "PrecomputationConfig",
    "CacheSectionConfig",
    "ModelAnalysisCacheConfig",
]
