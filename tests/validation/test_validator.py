"""PaperReproductionValidator: skipping with reasons, a pluggable runner, and the analysis numbers."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats as scipy_stats

from multi_agent_pruning.exceptions import ValidationError
from multi_agent_pruning.results import ResultStore
from multi_agent_pruning.validation import PAPER_TARGETS, PaperReproductionValidator


@pytest.fixture
def no_datasets(monkeypatch, tmp_path):
    monkeypatch.delenv("IMAGENET_PATH", raising=False)
    monkeypatch.setenv("CIFAR10_PATH", str(tmp_path / "no-cifar"))


@pytest.fixture
def imagenet(monkeypatch, tmp_path):
    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        (root / split / "n01440764").mkdir(parents=True)
    monkeypatch.setenv("IMAGENET_PATH", str(root))
    monkeypatch.setenv("CIFAR10_PATH", str(tmp_path / "no-cifar"))
    return root


class RecordingRunner:
    """Writes, for each method and run, one trial at the paper's MACs with a known accuracy."""

    def __init__(self, make_row, accuracy: dict[str, float], fail_on: str | None = None):
        self.make_row = make_row
        self.accuracy = accuracy
        self.fail_on = fail_on
        self.calls = []

    def __call__(self, target, *, methods, num_runs, output_dir):
        self.calls.append((target.name, list(methods), num_runs, output_dir))
        if target.name == self.fail_on:
            raise RuntimeError("out of GPU memory")
        rows = [self.make_row(experiment=target.name, model=target.base_model, method=method, run=run,
                       trial_id=f"{target.name}-{method}-{run}", macs=target.macs * 1.01,
                       top1=self.accuracy[method] - 0.01 * run)
                for method in methods for run in range(num_runs)]
        ResultStore(output_dir / target.name / "results").append(rows)
        return {method: {"best_accuracy": self.accuracy[method]} for method in methods}


def test_everything_is_skipped_without_data(no_datasets, tmp_path):
    runner = RecordingRunner(None, {})
    validator = PaperReproductionValidator(output_dir=tmp_path / "out", runner=runner)
    outcome = validator.validate_all_targets()
    assert runner.calls == []
    assert set(outcome) == {t.name for t in PAPER_TARGETS}
    assert {o["status"] for o in outcome.values()} == {"skipped"}
    assert outcome["isomorphic_deit_4.2g"]["reason"] == (
        "ImageNet not found: IMAGENET_PATH is not set and the config gives no path (set IMAGENET_PATH)")
    resnet = outcome["depgraph_resnet56_cifar10"]["reason"]
    assert "model 'resnet56' (ResNet-56 (Ours-Group) base) is not in the model registry" in resnet
    assert f"CIFAR-10 not found at {tmp_path / 'no-cifar'} (set CIFAR10_PATH)" in resnet
    stored = json.loads((tmp_path / "out" / "validation_status.json").read_text())
    assert stored == outcome


def test_bad_arguments_are_rejected(tmp_path):
    validator = PaperReproductionValidator(output_dir=tmp_path / "out", runner=RecordingRunner(None, {}))
    with pytest.raises(ValidationError, match="num_runs must be a positive integer, got 0"):
        validator.validate_all_targets(num_runs=0)
    with pytest.raises(ValidationError, match="Unknown paper target 'deit_4.2g'. Did you mean: isomorphic_deit_4.2g"):
        validator.validate_all_targets(targets=["deit_4.2g"])
    with pytest.raises(ValidationError, match="Unknown method 'magnitude_l3'. Did you mean: magnitude_l2, magnitude_l1"):
        validator.validate_all_targets(methods=["multi_agent", "magnitude_l3"])
    with pytest.raises(ValidationError, match="methods must name at least one method"):
        validator.validate_all_targets(methods=[])
    assert not (tmp_path / "out").exists()
    assert validator.runner.calls == []


def test_reference_snippet_catches_validation_error(tmp_path, capsys):
    """The API reference's ``except ValidationError`` block runs for an invalid request."""
    validator = PaperReproductionValidator(output_dir=tmp_path / "out", runner=RecordingRunner(None, {}))
    try:
        validator.validate_all_targets(methods=["multi-agent"])
    except ValidationError as e:
        print(f"Validation failed: {e}")
    out = capsys.readouterr().out
    assert out.startswith("Validation failed: Invalid validation request: Unknown method 'multi-agent'. Did you mean: "
                          "multi_agent")


def test_dataset_path_comes_from_the_config(no_datasets, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(f"dataset:\n  name: imagenet\n  path: {tmp_path / 'imagenet-here'}\n")
    validator = PaperReproductionValidator(config, output_dir=tmp_path / "out", runner=RecordingRunner(None, {}))
    outcome = validator.validate_all_targets(targets=["isomorphic_convnext_8.5g"])
    assert outcome == {"isomorphic_convnext_8.5g": {
        "status": "skipped", "reason": f"ImageNet not found at {tmp_path / 'imagenet-here'} (set IMAGENET_PATH)"}}


def test_an_unreadable_config_is_named_in_the_reason(no_datasets, tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text("dataset:\n  name: imagenet\n  path: ${IMAGENET_PATH}\n")
    validator = PaperReproductionValidator(config, output_dir=tmp_path / "out", runner=RecordingRunner(None, {}))
    reason = validator.validate_all_targets(targets=["isomorphic_deit_2.6g"])["isomorphic_deit_2.6g"]["reason"]
    assert reason.startswith("ImageNet not found: IMAGENET_PATH is not set and the config could not be read "
                             "(dataset.path: environment variable IMAGENET_PATH is not set")
    assert reason.endswith("(set IMAGENET_PATH)")


def test_runner_is_called_when_data_is_present(imagenet, tmp_path, make_ok_row):
    accuracy = {"multi_agent": 0.83, "taylor": 0.80, "random": 0.75}
    runner = RecordingRunner(make_ok_row, accuracy, fail_on="isomorphic_deit_2.6g")
    validator = PaperReproductionValidator(output_dir=tmp_path / "out", runner=runner)
    methods = ["multi_agent", "taylor", "random"]
    outcome = validator.validate_all_targets(
        methods, num_runs=2, targets=["isomorphic_deit_4.2g", "isomorphic_deit_2.6g", "depgraph_resnet56_cifar10"])
    assert [call[:3] for call in runner.calls] == [("isomorphic_deit_4.2g", methods, 2),
                                                  ("isomorphic_deit_2.6g", methods, 2)]
    assert runner.calls[0][3] == tmp_path / "out" / "runs"
    assert outcome["isomorphic_deit_4.2g"]["status"] == "completed"
    assert outcome["isomorphic_deit_4.2g"]["output"]["taylor"] == {"best_accuracy": 0.80}
    assert outcome["isomorphic_deit_2.6g"] == {"status": "failed", "reason": "RuntimeError: out of GPU memory"}
    assert outcome["depgraph_resnet56_cifar10"]["status"] == "skipped"

    analysis = validator.analyze_results()
    assert analysis["summary"]["rows"] == 6 and analysis["summary"]["experiments"] == ["isomorphic_deit_4.2g"]
    reproduction = analysis["paper_reproduction"]["isomorphic_deit_4.2g"]
    assert reproduction["status"] == "compared"
    ours = reproduction["methods"]["multi_agent"]
    assert ours["best_top1"] == 0.83 and ours["delta"] == pytest.approx(0.83 - 0.8241)
    assert ours["within_tolerance"] is True and ours["reached"] is True
    assert ours["size_error"] == pytest.approx(0.01) and ours["n_runs"] == 2
    assert ours["mean_best_per_run"] == pytest.approx(0.825)
    assert reproduction["methods"]["random"]["within_tolerance"] is False
    assert reproduction["methods"]["random"]["reached"] is False
    assert analysis["paper_reproduction"]["isomorphic_deit_2.6g"]["status"] == "no data"


def test_analyze_results_numbers(comparison_store, tmp_path):
    validator = PaperReproductionValidator(output_dir=tmp_path / "out", results_dir=comparison_store.root,
                                           n_resamples=2_000)
    analysis = validator.analyze_results()
    summary = analysis["summary"]
    assert (summary["rows"], summary["ok"], summary["failed"], summary["rejected"]) == (27, 18, 9, 0)
    assert summary["methods"] == ["multi_agent", "random", "taylor"] and summary["runs"] == [0, 1, 2]

    table = analysis["method_comparison"]["cmp"]
    assert table["taylor"]["trials"] == 9 and table["taylor"]["success_rate"] == pytest.approx(6 / 9)
    assert table["multi_agent"]["mean_best_top1"] == pytest.approx(0.81)
    assert table["random"]["max_best_top1"] == 0.74
    assert table["random"]["mean_seconds_total"] == pytest.approx(10.0)

    tests = analysis["statistical_tests"]["cmp"]
    assert tests["reference"] == "multi_agent"
    by_method = {c["method"]: c for c in tests["comparisons"]}
    expected_t = scipy_stats.ttest_rel([0.78, 0.79, 0.77], [0.80, 0.82, 0.81]).pvalue
    assert by_method["taylor"]["t_p"] == pytest.approx(expected_t)
    assert by_method["taylor"]["mean_difference"] == pytest.approx(-0.03)
    assert by_method["random"]["mean_difference"] == pytest.approx(-0.09)
    assert tests["friedman"]["p_value"] == pytest.approx(math.exp(-3))

    deit = analysis["paper_reproduction"]["isomorphic_deit_4.2g"]
    assert deit["status"] == "compared" and set(deit["methods"]) == {"multi_agent", "taylor"}
    assert deit["methods"]["multi_agent"]["delta"] == pytest.approx(0.82 - 0.8241)
    assert deit["methods"]["multi_agent"]["within_tolerance"] is True
    assert deit["methods"]["multi_agent"]["macs"] == 4.20e9
    assert deit["methods"]["taylor"]["delta"] == pytest.approx(0.79 - 0.8241)
    assert deit["methods"]["taylor"]["within_tolerance"] is False
    assert deit["methods"]["taylor"]["trial_id"] == "taylor-1-a"
    small = analysis["paper_reproduction"]["isomorphic_deit_0.6g"]
    assert small == {**small, "status": "no data", "methods": {}}
    # The closest trial is the 4.16 G one: (4.16 - 0.62) / 0.62 = 571.0 %.
    assert small["reason"] == ("18 ok row(s) of deit_base/deit_base_distilled on imagenet, none within 2% of "
                               "0.62 G MACs (closest off by 571.0%)")
    assert analysis["paper_reproduction"]["depgraph_resnet56_cifar10"]["reason"] == (
        "no ok rows of resnet56 on cifar10")
    assert json.loads((tmp_path / "out" / "analysis.json").read_text())["summary"]["rows"] == 27


def test_generate_visualizations_writes_the_report(comparison_store, tmp_path):
    validator = PaperReproductionValidator(output_dir=tmp_path / "out", results_dir=comparison_store.root,
                                           n_resamples=500)
    paths = validator.generate_visualizations()
    assert paths == [tmp_path / "out" / "report.html", tmp_path / "out" / "analysis.json"]
    html = paths[0].read_text()
    assert html.count('class="plotly-graph-div"') == 5
    assert "<title>Paper reproduction</title>" in html
    assert f"<code>mapruner report {comparison_store.root}</code>" in html
    assert json.loads(paths[1].read_text())["summary"]["rows"] == 27


def test_generate_visualizations_without_results(tmp_path):
    validator = PaperReproductionValidator(output_dir=tmp_path / "out")
    with pytest.raises(ValidationError, match="No trial results under .*out; run validate_all_targets"):
        validator.generate_visualizations()
    with pytest.raises(ValidationError, match="No trial results under .*out; run validate_all_targets"):
        validator.analyze_results()
    assert not (tmp_path / "out" / "analysis.json").exists()


class RecordingSweepRunner:
    """Writes, per target of the sweep, method and run, one trial at the paper's MACs."""

    def __init__(self, make_row, accuracy: dict[str, float], fail: bool = False):
        self.make_row, self.accuracy, self.fail, self.calls = make_row, accuracy, fail, []

    def __call__(self, targets, *, methods, num_runs, output_dir):
        self.calls.append(([t.name for t in targets], list(methods), num_runs, output_dir))
        if self.fail:
            raise RuntimeError("cluster lost")
        rows = [self.make_row(experiment="sweep", model=t.base_model, method=method, run=run,
                              trial_id=f"{t.name}-{method}-{run}", macs=t.macs * 1.01, top1=self.accuracy[method])
                for t in targets for method in methods for run in range(num_runs)]
        ResultStore(output_dir / "sweep" / "results").append(rows)
        return {method: {"frontier_area": {"mean": 0.5}} for method in methods}


def test_targets_of_one_model_and_dataset_run_as_one_sweep(imagenet, tmp_path, make_ok_row):
    accuracy = {"multi_agent": 0.80, "taylor": 0.78}
    runner, sweeps = RecordingRunner(make_ok_row, accuracy), RecordingSweepRunner(make_ok_row, accuracy)
    validator = PaperReproductionValidator(output_dir=tmp_path / "out", runner=runner, sweep_runner=sweeps)
    names = ["isomorphic_deit_4.2g", "isomorphic_convnext_8.5g", "isomorphic_deit_1.2g", "depgraph_resnet56_cifar10",
             "isomorphic_deit_2.6g"]
    outcome = validator.validate_all_targets(["multi_agent", "taylor"], num_runs=2, targets=names, sweep=True)
    deit = ["isomorphic_deit_4.2g", "isomorphic_deit_1.2g", "isomorphic_deit_2.6g"]
    assert sweeps.calls == [(deit, ["multi_agent", "taylor"], 2, tmp_path / "out" / "runs")]
    assert [call[0] for call in runner.calls] == ["isomorphic_convnext_8.5g"]  # alone on its model: no sweep
    assert list(outcome) == names
    for name in deit:
        assert outcome[name]["status"] == "completed" and outcome[name]["sweep"] == deit
        assert outcome[name]["output"]["taylor"] == {"frontier_area": {"mean": 0.5}}
    assert "sweep" not in outcome["isomorphic_convnext_8.5g"]
    assert outcome["depgraph_resnet56_cifar10"]["status"] == "skipped"
    # The sweep's rows count for each paper target at its own MACs.
    reproduction = validator.analyze_results()["paper_reproduction"]
    best = {name: reproduction[name]["methods"]["multi_agent"]["best_top1"] for name in deit}
    assert best == dict.fromkeys(deit, 0.80)


def test_a_failed_sweep_fails_each_of_its_targets(imagenet, tmp_path):
    sweeps = RecordingSweepRunner(None, {}, fail=True)
    validator = PaperReproductionValidator(output_dir=tmp_path / "out", runner=RecordingRunner(None, {}),
                                           sweep_runner=sweeps)
    outcome = validator.validate_all_targets(["taylor"], num_runs=1, sweep=True,
                                             targets=["isomorphic_deit_4.2g", "isomorphic_deit_2.6g"])
    assert outcome == {name: {"status": "failed", "reason": "RuntimeError: cluster lost",
                              "sweep": ["isomorphic_deit_4.2g", "isomorphic_deit_2.6g"]} for name in outcome}
    assert json.loads((tmp_path / "out" / "validation_status.json").read_text()) == outcome


def test_the_default_runners_give_each_comparison_its_own_directory(imagenet, tmp_path, monkeypatch):
    """One comparison per target goes to runs/<target>, a sweep to runs/sweep-<model>-<dataset>,
    with the paper's MACs as the target (a list for the sweep)."""
    from multi_agent_pruning.orchestrator import MultiAgentPruner

    calls = []
    monkeypatch.setattr(MultiAgentPruner, "compare_methods",
                        lambda self, **kwargs: calls.append((self.config.experiment.name, kwargs)) or {})
    validator = PaperReproductionValidator(output_dir=tmp_path / "out")
    validator.validate_all_targets(["taylor"], num_runs=1, targets=["isomorphic_deit_4.2g", "isomorphic_deit_2.6g"])
    validator.validate_all_targets(["taylor"], num_runs=1, sweep=True,
                                   targets=["isomorphic_deit_4.2g", "isomorphic_deit_2.6g"])
    runs = tmp_path / "out" / "runs"
    assert [(name, kw["output_dir"], kw["target_macs"], kw["target_ratio"]) for name, kw in calls] == [
        ("isomorphic_deit_4.2g", runs / "isomorphic_deit_4.2g", 4.16e9, None),
        ("isomorphic_deit_2.6g", runs / "isomorphic_deit_2.6g", 2.61e9, None),
        ("sweep-deit_base-imagenet", runs / "sweep-deit_base-imagenet", [4.16e9, 2.61e9], None)]
    assert {kw["model_name"] for _, kw in calls} == {"deit_base"}
