"""The pruning core: strategies, dependency/isomorphic analysis, the engine, recovery, evaluation."""

from multi_agent_pruning.core.dependency import (
    DependencyAnalyzer,
    IsomorphicAnalyzer,
    IsomorphicGroup,
    default_example_inputs,
    group_costs,
)
from multi_agent_pruning.core.engine import PruneResult, apply_strategy, build_scopes, check_prunable, count_macs_params
from multi_agent_pruning.core.graph import GroupInfo, describe_groups
from multi_agent_pruning.core.importance import IMPORTANCE_REGISTRY, create_importance
from multi_agent_pruning.core.strategy import IMPORTANCE_CRITERIA, Strategy
from multi_agent_pruning.core.evaluation import evaluate, resolve_device
from multi_agent_pruning.core.profile import GroupProfile, Profile, profile_model
from multi_agent_pruning.core.serialization import (
    load_pickled_model,
    load_pruned_model,
    save_pruned_model,
)
from multi_agent_pruning.core.training import (
    FineTuneConfig,
    FineTuneResult,
    NonFiniteLossError,
    distillation_loss,
    fine_tune,
)

__all__ = [
    "DependencyAnalyzer",
    "IsomorphicAnalyzer",
    "IsomorphicGroup",
    "GroupInfo",
    "IMPORTANCE_CRITERIA",
    "IMPORTANCE_REGISTRY",
    "PruneResult",
    "Strategy",
    "apply_strategy",
    "build_scopes",
    "check_prunable",
    "count_macs_params",
    "create_importance",
    "default_example_inputs",
    "describe_groups",
    "group_costs",

    "FineTuneConfig", "FineTuneResult", "GroupProfile", "NonFiniteLossError", "Profile", "distillation_loss",
    "evaluate", "fine_tune", "load_pickled_model", "load_pruned_model", "profile_model", "resolve_device",
    "save_pruned_model",
]
