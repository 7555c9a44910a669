"""The whole search on a local Ray cluster: rows, summary, best model, output-directory guards."""

from __future__ import annotations

import json

import pytest

from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.orchestrator.experiment import run_experiment
from multi_agent_pruning.orchestrator.recover import finetune_run
from multi_agent_pruning.results import ResultStore

SUMMARY_KEYS = {"final_accuracy", "params_reduction", "macs_reduction", "convergence_iterations",
                "total_time_minutes", "best_model_path", "results_path"}


def test_search_end_to_end(local_ray, fast_config, tmp_path):
    cfg = fast_config()
    out = tmp_path / "exp"
    summary = run_experiment(cfg, output_dir=out, progress=False)
    assert SUMMARY_KEYS <= set(summary)
    rows = ResultStore(out / "results").rows(experiment="quickstart")
    assert len(rows) == 3 and len({r.trial_id for r in rows}) == 3
    assert all(r.status == "ok" for r in rows), [r.error for r in rows]
    assert all(abs(r.target_error) <= 0.02 for r in rows)
    assert {r.iteration for r in rows} == {0, 1}  # batch of 2, then the rest of the budget
    assert summary["final_accuracy"] == max(r.top1_after for r in rows)
    assert summary["convergence_iterations"] == 2
    assert json.loads((out / "summary.json").read_text())["final_accuracy"] == summary["final_accuracy"]
    assert (out / "best_model" / "model.safetensors").exists()
    best = next(r for r in rows if r.trial_id == summary["best_trial_id"])
    assert json.loads((out / "best_model" / "model.json").read_text())["metadata"]["trial_id"] == best.trial_id
    # Bad input must not touch a finished experiment.
    with pytest.raises(ConfigurationError, match="--resume"):
        run_experiment(cfg, output_dir=out, progress=False)
    with pytest.raises(ConfigurationError, match="different experiment"):
        run_experiment(fast_config("experiment.name=other"), output_dir=out, progress=False)
    assert len(ResultStore(out / "results").rows()) == 3
    # The final recovery of the finished run (mapruner finetune; killed and resumed in
    # tests/reliability/test_finetune_resume.py): the two best strategies, ranked as the summary ranks.
    with pytest.raises(ConfigurationError, match="holds no mapruner run"):
        finetune_run(tmp_path)
    with pytest.raises(ConfigurationError, match="recovery.epochs"):
        finetune_run(out, epochs=0)
    recovered = finetune_run(out, top_k=2, epochs=1, batch_size=256, kd_weight=0.0)
    ranked = sorted(rows, key=lambda r: (-r.top1_after, r.macs))
    assert [(e["rank"], e["source_trial_id"]) for e in recovered["recoveries"]] == \
        [(1, ranked[0].trial_id), (2, ranked[1].trial_id)]
    assert recovered["recovered"]["source_trial_id"] == summary["best_trial_id"]
    finals = ResultStore(out / "results").rows(stage="final")
    assert sorted(r.source_trial_id for r in finals) == sorted(r.trial_id for r in ranked[:2])
    assert all(r.recovery_epochs == 1 and r.status == "ok" and r.top1_after is not None for r in finals)
    assert len(ResultStore(out / "results").rows()) == 3  # readers get the search rows unless asked


def test_resume_with_nothing_to_resume_is_bad_input(fast_config, tmp_path):
    with pytest.raises(ConfigurationError, match="no experiment to resume"):
        run_experiment(fast_config(), output_dir=tmp_path / "empty", resume=True, progress=False)
    assert not (tmp_path / "empty").exists()


def test_master_policy_is_seeded_with_the_run_seed(fast_config):
    """Comparisons run seeds experiment.seed + run: each run's master must search independently."""
    from types import SimpleNamespace

    from multi_agent_pruning.orchestrator.tune_run import master_settings

    cfg = fast_config("experiment.seed=7")
    settings = [master_settings(cfg, SimpleNamespace(seed=7 + run), batch_size=2) for run in range(3)]
    assert [s["seed"] for s in settings] == [7, 8, 9]
    assert {s["batch_size"] for s in settings} == {2}
    assert settings[0]["max_iterations"] == 2  # from the config (search.max_iterations=2)
