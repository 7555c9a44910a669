"""Baselines end to end on digits, the Optuna search, and a small comparison."""

from __future__ import annotations

import pytest

from multi_agent_pruning.baselines import (
    BasePruningMethod,
    IsomorphicOriginal,
    MagnitudePruning,
    RandomPruning,
    TaylorPruning,
    get_method,
    list_methods,
)
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.results import ResultStore

FAST = ["model.train_steps=40", "finetune.steps=5", "evaluation.latency=false",
        "agents.profiling_agent.calibration_batches=1"]


@pytest.fixture(scope="module")
def overrides(tmp_path_factory):
    return FAST + [f"precomputation.cache_dir={tmp_path_factory.mktemp('cache')}"]


@pytest.mark.parametrize("method", [MagnitudePruning("l1"), MagnitudePruning("l2"), TaylorPruning(),
                                    IsomorphicOriginal(round_to=2), RandomPruning()], ids=lambda m: m.name)
def test_each_baseline_meets_the_target_and_stores_its_row(method, overrides, tmp_path):
    out = method.prune_to_target_macs("compact_cnn", 0.5, "digits", config_path="tests/support/quickstart_single.yaml",
                                      output_dir=tmp_path / "out", overrides=overrides)
    assert out["status"] == "ok", out["error"]
    assert abs(out["target_error"]) <= 0.02 and out["macs_reduction"] == pytest.approx(0.5, abs=0.01)
    assert 0 <= out["final_accuracy"] <= 1
    rows = ResultStore(out["results_path"]).rows()
    assert len(rows) == 1 and rows[0].method == method.name and rows[0].top1_after == out["final_accuracy"]
    assert rows[0].importance == {"magnitude_l1": "l1", "magnitude_l2": "l2", "taylor": "taylor",
                                  "isomorphic": "taylor", "random": "random"}[method.name]


def test_strategies_are_the_published_recipes():
    base = Strategy(target_reduction=0.5, group_multipliers={"mlp": 2.0})
    iso = IsomorphicOriginal(head_pruning_ratio=0.5, round_to=2).make_strategy(base, ["attention", "mlp", "embed"])
    assert (iso.importance, iso.global_pruning, iso.isomorphic, iso.round_to) == ("taylor", True, True, 2)
    assert iso.prune_num_heads and iso.head_pruning_ratio == 0.5 and not iso.group_multipliers
    mag = get_method("magnitude_l1").make_strategy(base)
    assert (mag.importance, mag.global_pruning, mag.isomorphic) == ("l1", False, False)
    assert set(list_methods()) >= {"magnitude_l1", "magnitude_l2", "taylor", "isomorphic", "random"}


def test_user_defined_method_as_in_the_api_reference():
    class CustomPruningMethod(BasePruningMethod):
        def __init__(self, custom_param=1.0):
            super().__init__()
            self.custom_param = custom_param

        def make_strategy(self, base, kinds=()):
            return base.replace(importance="fpgm")

    method = CustomPruningMethod(2.0)
    assert method.make_strategy(Strategy()).importance == "fpgm"
    params = method.strategy_from_params(Strategy(), {"lr": 0.01, "round_to": 4})
    assert (params.importance, params.learning_rate, params.round_to) == ("fpgm", 0.01, 4)


def test_optuna_proposes_different_hyperparameters_and_the_study_reloads(tmp_path, overrides):
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from multi_agent_pruning.config import load_config
    from multi_agent_pruning.orchestrator.compare import compare_methods

    cfg = load_config("tests/support/quickstart_single.yaml", overrides=overrides)
    out = tmp_path / "cmp"
    result = compare_methods(cfg, ["multi_agent", "taylor"], num_runs=1, trials_per_method=3, output_dir=out,
                             progress=False)
    assert set(result) == {"multi_agent", "taylor"}
    for stats in result.values():
        assert stats["trials_used"] == 3 and len(stats["best_per_run"]) == 1
    rows = ResultStore(out / "results").rows()
    assert {(r.method, r.run) for r in rows} == {("multi_agent", 0), ("taylor", 0)}
    study = optuna.load_study(study_name="quickstart-taylor-run0",
                              storage=JournalStorage(JournalFileBackend(str(out / "optuna" / "taylor-run0.journal"))))
    assert len(study.trials) == 3
    # search.reproducible holds results back until their turn; every one reached the study
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert sorted(t.value for t in study.trials) == sorted(r.top1_after for r in rows if r.method == "taylor")
    params = [tuple(sorted(t.params.items())) for t in study.trials]
    assert len(set(params)) == 3  # every trial tried different hyperparameters
    # each row's iteration is its Optuna trial number (it was a digit run of the Tune trial id)
    taylor_rows = {r.trial_id: r.iteration for r in rows if r.method == "taylor"}
    assert sorted(taylor_rows.values()) == [t.number for t in study.trials] == [0, 1, 2]
    first = study.trials[0].params  # the default point the master also starts from
    assert first["lr"] == pytest.approx(cfg.finetune.lr) and first["round_to"] == 1
    assert result["taylor"]["best_accuracy"] == max(r.top1_after for r in rows if r.method == "taylor")
