"""Thin Ray actor wrappers of the agents.

Each actor holds one plain agent (tested without Ray) and forwards ``execute`` (and the typed
``MasterAgent.propose`` / ``AnalysisAgent.check`` the searcher calls). The master
actor restarts on failure (``max_restarts``) and rebuilds its memory of past iterations from
the result table, so a crash loses nothing the table has.

Agent actors run in processes of their own (``AGENT_RUNTIME_ENV``, set on each actor class):
Ray hands the worker
processes it prestarts at ``ray.init`` only to actors whose runtime_env is the job's, so a marker
variable in the agents' runtime_env leaves those workers to the search's trials; the agents'
processes start while the driver sets up, off the search's critical path.

The agents run on the driver's node (:func:`on_driver_node`, soft: elsewhere only when that node
cannot host them): on a cluster the worker nodes come and go (autoscaling, spot reclaims) and
only the trials, which Tune retries, should go with them.
"""

from __future__ import annotations

from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from multi_agent_pruning.agents import AnalysisAgent, MasterAgent, ProfilingAgent
from multi_agent_pruning.agents.analysis import Verdict
from multi_agent_pruning.agents.master import Proposal

__all__ = ["AGENT_RUNTIME_ENV", "AnalysisActor", "MasterActor", "ProfilingActor", "create_actors", "on_driver_node"]

# Merged with the job's runtime_env by Ray (env_vars are merged; working_dir and the rest are
# inherited), so a job submitted with --working-dir keeps it.
AGENT_RUNTIME_ENV = {"env_vars": {"MAPRUNER_AGENT_PROCESS": "1"}}


class _AgentActor:
    agent_class: type = object

    def __init__(self, config: dict[str, Any] | None = None) -> None:
        self.agent = self.agent_class(config or {})

    def execute(self, input_data: dict[str, Any]) -> dict[str, Any]:
        return self.agent.execute(input_data)

    def ping(self) -> int:
        import os

        return os.getpid()


@ray.remote(runtime_env=AGENT_RUNTIME_ENV)
class ProfilingActor(_AgentActor):
    agent_class = ProfilingAgent


@ray.remote(runtime_env=AGENT_RUNTIME_ENV)
class AnalysisActor(_AgentActor):
    agent_class = AnalysisAgent

    def check(self, *args: Any, **kwargs: Any) -> Verdict:
        return self.agent.check(*args, **kwargs)


@ray.remote(max_restarts=3, max_task_retries=3, runtime_env=AGENT_RUNTIME_ENV)
class MasterActor(_AgentActor):
    """The master agent; on (re)start it replays the best score per iteration from the table."""

    agent_class = MasterAgent

    def propose(self, *args: Any, **kwargs: Any) -> Proposal:
        return self.agent.propose(*args, **kwargs)

    def __init__(self, config: dict[str, Any] | None = None, store_root: str | None = None,
                 experiment: str | None = None, method: str | None = None) -> None:
        config = dict(config or {})
        settings = config.pop("llm_settings", None)
        if settings is not None:
            from multi_agent_pruning.agents.llm import LLMClient

            config["llm_client"] = LLMClient(settings)
        super().__init__(config)
        self.restored_rows = 0
        if store_root and experiment:
            self._restore(store_root, experiment, method)

    def _restore(self, store_root: str, experiment: str, method: str | None) -> None:
        from multi_agent_pruning.results import ResultStore

        rows = ResultStore(store_root).read(experiment=experiment, method=method).to_pylist()
        self.restored_rows = len(rows)
        best = None
        for iteration in sorted({r["iteration"] for r in rows}):
            scores = [r["top1_after"] for r in rows if r["iteration"] <= iteration and r["status"] == "ok"
                      and r["top1_after"] is not None]
            best = max(scores) if scores else best
            if best is not None:
                self.agent._best_by_iteration[iteration + 1] = best

    def restored(self) -> int:
        return self.restored_rows


def create_actors(master_config: dict[str, Any], analysis_config: dict[str, Any], *, store_root: str,
                  experiment: str, method: str) -> tuple[Any, Any]:
    """The master and analysis actors of one experiment, on the driver's node."""
    master = MasterActor.options(**on_driver_node()).remote(master_config, store_root, experiment, method)
    analysis = AnalysisActor.options(**on_driver_node()).remote(analysis_config)
    return master, analysis


def on_driver_node() -> dict[str, Any]:
    """Actor options that place it on this (the driver's) node, or elsewhere when that node has
    no room (soft affinity)."""
    node = ray.get_runtime_context().get_node_id()
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=True)}
