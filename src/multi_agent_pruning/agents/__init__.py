"""The agents: plain classes with ``execute(input_data) -> dict`` (Ray actors wrap them)."""

from multi_agent_pruning.agents.analysis import AnalysisAgent
from multi_agent_pruning.agents.base import AgentResponse, BaseAgent
from multi_agent_pruning.agents.execution import EvaluationAgent, FineTuningAgent, PruningAgent
from multi_agent_pruning.agents.master import MasterAgent
from multi_agent_pruning.agents.policy import BuiltinPolicy
from multi_agent_pruning.agents.profiling import ProfilingAgent

__all__ = [
    "AgentResponse",
    "AnalysisAgent",
    "BaseAgent",
    "BuiltinPolicy",
    "EvaluationAgent",
    "FineTuningAgent",
    "MasterAgent",
    "PruningAgent",
    "ProfilingAgent",
]
