"""Orchestration: Ray start-up, the master-driven search, and the MultiAgentPruner API."""

from multi_agent_pruning.orchestrator.experiment import run_experiment
from multi_agent_pruning.orchestrator.pruner import MultiAgentPruner

__all__ = ["MultiAgentPruner", "run_experiment"]
