"""The API reference's snippets for MultiAgentPruner, compare_methods and the baselines, on small
offline stand-ins (compact_cnn on digits): return shapes, default directories and errors."""

from __future__ import annotations

import json
import logging

import pytest

from multi_agent_pruning import MultiAgentPruner
from multi_agent_pruning.baselines import BasePruningMethod, MagnitudePruning, METHOD_REGISTRY, register_method
from multi_agent_pruning.exceptions import ConfigurationError, PruningError
from multi_agent_pruning.methods import list_methods
from multi_agent_pruning.orchestrator.compare import all_methods
from multi_agent_pruning.orchestrator.prepare import default_output_dir
from multi_agent_pruning.results import ResultStore

from orchestrator.conftest import FAST


def _pruner(tmp_path, *extra: str) -> MultiAgentPruner:
    return MultiAgentPruner("tests/support/quickstart_single.yaml",
                            overrides=[*FAST, f"precomputation.cache_dir={tmp_path / 'cache'}",
                                       f"experiment.output_dir={tmp_path / 'runs'}", *extra])


def test_prune_model_raises_pruning_error_when_no_trial_produced_a_model(local_ray, tmp_path, capsys):
    pruner = _pruner(tmp_path, "search.trial_timeout_s=0.001", "search.trials=2", "model.train_steps=0")
    try:
        result = pruner.prune_model(model_name="compact_cnn", dataset="digits", target_ratio=0.5)
        print(f"Final accuracy: {result['final_accuracy']:.1%}")
    except PruningError as e:
        print(f"Pruning failed: {e}")
        error = e
    out = capsys.readouterr().out
    assert out.startswith("Pruning failed: no trial produced a model: 2 trials, 2 failed, 0 rejected; main reasons: "
                          "TrialTimeoutError: trial exceeded its time limit of 0.001 s")
    # The table and the summary were written before the error.
    summary = error.result
    assert summary["final_accuracy"] is None and summary["trials"] == {"total": 2, "ok": 0, "failed": 2, "rejected": 0}
    root = tmp_path / "runs" / "quickstart"
    assert json.loads((root / "summary.json").read_text())["error"] == summary["error"]
    assert [r.status for r in ResultStore(root / "results").rows()] == ["failed", "failed"]
    assert json.loads((root / "experiment.json").read_text())["status"] == "finished"


def test_default_output_directory_never_collides(tmp_path):
    pruner = _pruner(tmp_path)
    plain = tmp_path / "runs" / "quickstart"
    assert default_output_dir(pruner.config) == plain
    plain.mkdir(parents=True)
    assert default_output_dir(pruner.config) == plain  # an empty directory is free
    (plain / "experiment.json").write_text("{}")
    first = default_output_dir(pruner.config)
    assert first.parent == plain.parent and first.name.startswith("quickstart-2") and first != plain
    first.mkdir()
    (first / "experiment.json").write_text("{}")
    second = default_output_dir(pruner.config)
    assert second not in (plain, first) and second.name.startswith(first.name[:len("quickstart-YYYYmmdd-")])
    # --resume without a directory continues the latest run.
    assert default_output_dir(pruner.config, resume=True) == first


class Halving(BasePruningMethod):
    """The API reference's custom method: overrides only prune_to_target_macs."""

    def __init__(self, custom_param=1.0):
        super().__init__()
        self.custom_param = custom_param

    def prune_to_target_macs(self, model_name: str, target_macs: float, dataset: str) -> dict:
        return {"final_accuracy": 0.25 * self.custom_param, "final_macs": target_macs * 1.001, "method": "custom_method"}


@pytest.fixture
def custom_method():
    register_method("custom_halving")(Halving)
    yield "custom_halving"
    METHOD_REGISTRY.remove("custom_halving")


def test_compare_methods_reference_loop_and_custom_method(local_ray, tmp_path, capsys, custom_method):
    pruner = _pruner(tmp_path, "baselines.num_runs=1")
    comparison = pruner.compare_methods(model_name="compact_cnn", dataset="digits", target_ratio=0.5,
                                        methods=["multi_agent", "magnitude_l1", custom_method], trials_per_method=1)
    for method, result in comparison.items():
        print(f"{method}: {result['final_accuracy']:.1%} accuracy")
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines[-3:]] == ["multi_agent", "magnitude_l1", custom_method]
    assert lines[-1] == f"{custom_method}: 25.0% accuracy"
    for method in ("multi_agent", "magnitude_l1"):
        entry = comparison[method]
        assert 0 < entry["final_accuracy"] <= 1
        assert entry["final_accuracy"] == entry["mean"] == entry["best_accuracy"] == entry["best_per_run"][0]
        assert entry["trials_used"] == 1 and entry["error"] is None
    custom = comparison[custom_method]
    assert custom["trials_used"] == 1 and custom["macs_reduction"] == pytest.approx(0.5 - 0.0005, abs=1e-9)
    # A second comparison without output_dir goes to a new directory.
    again = pruner.compare_methods(model_name="compact_cnn", dataset="digits", target_ratio=0.5,
                                   methods=[custom_method])
    assert again[custom_method]["final_accuracy"] == 0.25
    dirs = sorted(p.name for p in (tmp_path / "runs").iterdir())
    assert len(dirs) == 2 and dirs[0] == "quickstart" and dirs[1].startswith("quickstart-")
    rows = ResultStore(tmp_path / "runs" / "quickstart" / "results").rows()
    mine = [r for r in rows if r.method == custom_method]
    assert len(mine) == 1 and mine[0].status == "ok" and mine[0].top1_after == 0.25
    assert mine[0].target_error == pytest.approx(0.001)


def test_every_method_is_the_default_and_a_custom_method_without_a_strategy_fails_as_a_row(tmp_path, custom_method):
    assert all_methods() == ["multi_agent", *list_methods(), "optuna_tpe"]
    assert custom_method in all_methods() and "magnitude_l1" in all_methods()
    assert _pruner(tmp_path).config.baselines.methods is None
    with pytest.raises(ConfigurationError, match="custom_halving prunes with its own prune_to_target_macs"):
        _pruner(tmp_path).compare_methods("compact_cnn", "digits", 0.5, methods=[f"optuna_tpe:{custom_method}"])


def test_prune_to_target_macs_raises_for_an_infeasible_target(tmp_path, capsys):
    pruner = MagnitudePruning(criterion="l1")
    try:
        pruner.prune_to_target_macs(model_name="compact_cnn", target_macs=1.0, dataset="digits",
                                    output_dir=tmp_path / "out")
    except PruningError as e:
        print(f"Pruning failed: {e}")
    out = capsys.readouterr().out
    assert out.startswith("Pruning failed: Impossible target:\n  - target.budget: must keep at least")
    assert not (tmp_path / "out" / "results").exists()


def test_prune_to_target_macs_warns_about_a_random_model(tmp_path, caplog):
    caplog.set_level(logging.WARNING)
    result = MagnitudePruning(criterion="l2").prune_to_target_macs(
        model_name="compact_cnn", target_macs=0.5, dataset="digits", output_dir=tmp_path / "out",
        overrides=["finetune.steps=2", "evaluation.latency=false", f"precomputation.cache_dir={tmp_path / 'c'}"])
    assert result["status"] == "ok" and result["pretrained"] is False and 0 <= result["final_accuracy"] <= 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["magnitude_l2: compact_cnn is randomly initialised (no pretrained weights, model.checkpoint "
                        "or model.train_steps), so its accuracy is near chance"]


def test_prune_to_target_macs_falls_back_offline_with_one_warning(tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    caplog.set_level(logging.WARNING)
    result = MagnitudePruning(criterion="l1").prune_to_target_macs(
        model_name="resnet18", target_macs=0.5, dataset="digits", output_dir=tmp_path / "out",
        overrides=["finetune.steps=1", "evaluation.latency=false", "dataset.val_samples=64",
                   "dataset.train_samples=64", "agents.profiling_agent.calibration_batches=1",
                   f"precomputation.cache_dir={tmp_path / 'c'}"])
    assert result["status"] == "ok" and result["pretrained"] is False
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("magnitude_l1: pretrained weights of resnet18 could not be loaded (")
    assert "ModelDownloader" in warnings[0]


def test_a_metric_registered_in_the_driver_reaches_the_ray_workers(local_ray, tmp_path, fast_config):
    """The reference registers a custom metric in the user's script; trials run in Ray workers that
    never ran that script, so the search ships the metric functions with the trial context."""
    from multi_agent_pruning.agents import EvaluationAgent
    from multi_agent_pruning.data import create_loaders
    from multi_agent_pruning.orchestrator.prepare import build_context
    from multi_agent_pruning.utils.metrics import _METRICS, list_metrics, register_metric

    @register_metric("driver_only_kilo_params")
    def kilo_params(model, dataset_info):  # nested: pickled by value, as a function of a user's __main__
        return sum(p.numel() for p in model.parameters()) / 1e3

    try:
        cfg = fast_config("evaluation.custom_metrics=[driver_only_kilo_params]", "model.train_steps=0")
        context = build_context(cfg, method="multi_agent", run=0)
    finally:
        _METRICS.remove("driver_only_kilo_params")

    @local_ray.remote
    def evaluate_in_worker(ctx):
        from multi_agent_pruning.utils.metrics import list_metrics as worker_metrics

        _, val = create_loaders(ctx.bundle, 64)
        out = EvaluationAgent(ctx.evaluation).execute({"model": ctx.model, "val_loader": val, "max_batches": 1})
        return "driver_only_kilo_params" in worker_metrics(), out["metrics"]["custom"]

    registered_there, custom = local_ray.get(evaluate_in_worker.remote(context))
    assert not registered_there and "driver_only_kilo_params" not in list_metrics()
    assert custom == {"driver_only_kilo_params": sum(p.numel() for p in context.model.parameters()) / 1e3}
