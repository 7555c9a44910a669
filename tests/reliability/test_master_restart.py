"""The master actor dies mid-search: Ray restarts it (``max_restarts``), and the new process
rebuilds its memory of past iterations from the result table, so its next answer is the one the
old process would have given.

The table is made of real proposals: the master's batches, approved (and capped) by the
analysis agent exactly as the searcher does, with scores attached.
"""

from __future__ import annotations

import pytest

from multi_agent_pruning.agents import AnalysisAgent, MasterAgent
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.results import ResultStore, TrialResult
from multi_agent_pruning.results.trial import strategy_columns
from multi_agent_pruning.testing.tiny import tiny_profile

EXPERIMENT, METHOD = "restart", "multi_agent"
TARGET = {"kind": "macs", "reduction": 0.5, "budget": None}
MASTER = {"max_iterations": 10, "convergence_threshold": 0.01, "batch_size": 4, "seed": 0}
# Iteration 0: four strategies (one fails); iteration 1: two more. Best 0.80, then 0.805.
SCORES = {0: [0.70, 0.80, None, 0.60], 1: [0.805, 0.50]}


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    return tiny_profile(tmp_path_factory.mktemp("profiles"), steps=30, batches=1)


def _approved(profile, proposal) -> list[Strategy]:
    checked = AnalysisAgent({"safety_enforcement": "strict"}).execute(
        {"profile_results": profile, "strategies": proposal["strategies"], "target": TARGET})
    return [Strategy.from_dict(s) for s in checked["approved"]]


def _row(strategy: Strategy, iteration: int, index: int, score: float | None) -> TrialResult:
    ids = {"experiment": EXPERIMENT, "run": 0, "method": METHOD, "model": "tiny", "dataset": "digits", "seed": 0,
           "trial_id": f"it{iteration}-{index}", "iteration": iteration}
    if score is None:
        return TrialResult.failed(error=RuntimeError("injected"), strategy=strategy, **ids)
    return TrialResult(**ids, **strategy_columns(strategy), status="ok", top1_after=score)


@pytest.fixture(scope="module")
def table(profile, tmp_path_factory):
    """A result table of two iterations of real, analysis-approved proposals."""
    master = MasterAgent(MASTER)
    history: list[dict] = []
    rows: list[TrialResult] = []
    for iteration, scores in SCORES.items():
        proposal = master.execute({"profile_results": profile, "target_ratio": 0.5, "history": history,
                                   "revision_number": iteration, "batch_size": len(scores)})
        approved = _approved(profile, proposal)
        assert len(approved) == len(scores)
        for index, (strategy, score) in enumerate(zip(approved, scores)):
            rows.append(_row(strategy, iteration, index, score))
            history.append({"strategy_json": rows[-1].strategy_json, "top1_after": score,
                            "status": rows[-1].status})
    root = tmp_path_factory.mktemp("results")
    ResultStore(root).append(rows)
    return root, history


def _ask(actor, profile, history, revision):
    return actor.execute.remote({"profile_results": profile, "target_ratio": 0.5, "history": history,
                                 "revision_number": revision, "batch_size": 2})


def test_killed_master_restarts_and_rebuilds_its_state_from_the_table(local_ray, profile, table):
    from multi_agent_pruning.actors import MasterActor

    ray = local_ray
    root, history = table
    master = MasterActor.remote(MASTER, str(root), EXPERIMENT, METHOD)
    assert ray.get(master.restored.remote()) == 6
    pid = ray.get(master.ping.remote())
    ray.kill(master, no_restart=False)
    # The call made while the actor is down is retried on the restarted process (max_task_retries).
    answer = ray.get(_ask(master, profile, history, 2), timeout=120)
    new_pid = ray.get(master.ping.remote())
    assert new_pid != pid
    assert ray.get(master.restored.remote()) == 6
    # Rebuilt from the table: the best was 0.80 after iteration 0 and 0.805 now, an improvement
    # below convergence_threshold=0.01, so the restarted master stops the search.
    assert answer["continue_iterations"] is False
    assert answer["stop_reason"].startswith("converged: best accuracy improved by 0.0050")
    assert answer["directives"]["best_score"] == 0.805
    # Control: a master that never saw the table has no previous best and would go on.
    fresh = MasterActor.remote(MASTER)
    control = ray.get(_ask(fresh, profile, history, 2))
    assert ray.get(fresh.restored.remote()) == 0
    assert control["continue_iterations"] is True and len(control["strategies"]) == 2
    for actor in (master, fresh):
        ray.kill(actor, no_restart=True)


def test_restarted_master_proposes_only_new_strategies(local_ray, profile, table):
    from multi_agent_pruning.actors import MasterActor

    ray = local_ray
    root, history = table
    master = MasterActor.remote({**MASTER, "convergence_threshold": 0.0}, str(root), EXPERIMENT, METHOD)
    ray.get(master.ping.remote())
    ray.kill(master, no_restart=False)
    answer = ray.get(_ask(master, profile, history, 2), timeout=120)
    ray.kill(master, no_restart=True)
    assert answer["continue_iterations"] is True and len(answer["strategies"]) == 2
    # What would run: the proposals as the analysis agent approves them (the searcher's path).
    approved = {s.key() for s in _approved(profile, answer)}
    evaluated = {Strategy.from_json(h["strategy_json"]).key() for h in history}
    assert len(approved) == 2 and not approved & evaluated
