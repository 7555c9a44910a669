"""Multi-fidelity searches under faults and with Optuna (slow: real Ray Tune, several searches)."""

from __future__ import annotations

import json

import pytest

from multi_agent_pruning.orchestrator.compare import compare_methods
from multi_agent_pruning.results import ResultStore

pytestmark = pytest.mark.slow

ASHA = {"search.scheduler": "asha", "search.rungs": "3", "search.reduction_factor": "2", "search.batch_size": "2",
        "search.max_failures": "1"}


def test_a_trial_whose_worker_dies_in_a_rung_continues_from_its_checkpoint(run_prune, short_tmp):
    """The first worker to start rung 1's fine-tune dies (os._exit); Tune retries that trial from
    its rung-0 checkpoint: the row shows rung 0 from the first process (session 0), the rungs after
    it from the retry (session 1), and the steps adding up, not starting over."""
    marker = short_tmp("asha-exit") / "died"
    fault = {"stage": "finetune", "kind": "exit_once", "rung": 1, "marker": str(marker)}
    run = run_prune("asha-exit", trials=4, settings=ASHA, env={"MAPRUNER_FAULT_INJECTION": json.dumps(fault)})
    assert marker.exists(), "no worker died: the fault was not injected"
    assert run.returncode == 0, run.explain()
    rows = run.rows()
    assert len(rows) == 4 and len({r.trial_id for r in rows}) == 4 and all(r.status == "ok" for r in rows)
    retried = [r for r in rows if any(e["session"] for e in json.loads(r.rungs_json))]
    assert len(retried) == 1, [r.rungs_json for r in rows]
    entries = json.loads(retried[0].rungs_json)
    assert [(e["rung"], e["steps"], e["session"]) for e in entries] == [(0, 5, 0), (1, 10, 1), (2, 20, 1)][:len(entries)]
    assert len(entries) >= 2 and retried[0].steps_trained == entries[-1]["steps"]


def test_optuna_runs_under_the_same_scheduler(local_ray, tmp_path):
    """The baselines' Optuna studies get the same ASHA scheduler (a fair comparison): its trials
    report rungs and some stop early; the study holds one finished trial per Tune trial."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from multi_agent_pruning.config import load_config

    cfg = load_config("tests/support/quickstart_single.yaml", overrides=[
        "finetune.steps=5", "model.train_steps=40", "evaluation.latency=false", "search.convergence_threshold=0",
        "agents.profiling_agent.calibration_batches=1", f"precomputation.cache_dir={tmp_path / 'cache'}",
        *(f"{k}={v}" for k, v in ASHA.items())])
    out = tmp_path / "cmp"
    compare_methods(cfg, ["optuna_tpe"], num_runs=1, trials_per_method=6, output_dir=out, progress=False)
    rows = ResultStore(out / "results").rows(method="optuna_tpe")
    assert len(rows) == 6 and all(r.status == "ok" for r in rows), [r.error for r in rows]
    assert all(r.rungs_json and r.steps_trained == 5 * 2 ** r.rung for r in rows)
    assert {r.rung for r in rows} >= {0, 2}
    (journal,) = (out / "optuna").glob("*.journal")
    storage = JournalStorage(JournalFileBackend(str(journal)))
    (study,) = optuna.study.get_all_study_summaries(storage)
    trials = optuna.load_study(study_name=study.study_name, storage=storage).trials
    assert len(trials) == 6 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.value for t in trials) == pytest.approx(sorted(r.top1_after for r in rows))


def test_the_llm_master_is_told_every_rung(run_prune):
    """An LLM-driven ASHA search: the prompt of the second batch shows each revealed trial's top-1
    at every rung it reached, exactly as the table stores them."""
    from support.llm_server import OpenAICompatibleServer, reply_json

    batches = ({"strategies": [{"importance": "l2"}, {"importance": "taylor", "global_pruning": False}],
                "reasoning": "two criteria"},
               {"strategies": [{"importance": "lamp"}, {"importance": "fpgm", "global_pruning": False}],
                "reasoning": "two more"})
    with OpenAICompatibleServer(model="test-model") as server:
        server.script(reply_json(batches[0]), reply_json(batches[1]))
        run = run_prune("asha-llm", trials=4, settings={
            **ASHA, "search.max_iterations": "2", "search.policy": "llm", "llm.base_url": server.base_url,
            "llm.model": "test-model", "llm.max_retries": "0", "llm.cache_dir": "{out}/llm_cache"},
            env={"OPENAI_API_KEY": "sk-test"})
        prompts = [r.messages_text() for r in server.chat_requests]
    assert run.returncode == 0, run.explain()
    rows = {r.importance: r for r in run.rows()}
    assert len(prompts) == 2 and "Multi-fidelity search" in prompts[1] and "top1_by_budget" not in prompts[0]
    import re

    seen = [json.loads(m) for m in re.findall(r'"top1_by_budget": (\{[^}]*\})', prompts[1])]
    stored = [{str(e["budget"]): round(e["top1"], 4) for e in json.loads(rows[i].rungs_json)} for i in ("l2", "taylor")]
    assert seen and all(entry in stored for entry in seen), (seen, stored)
