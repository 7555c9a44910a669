"""PaperReproductionValidator.analyze_results on a table searched at a sweep of targets: the best
top-1 per target and run, the frontier area and its paired tests across seeds."""

from __future__ import annotations

import json

import pytest
from scipy import stats as scipy_stats

from multi_agent_pruning.exceptions import ValidationError
from multi_agent_pruning.results import ResultStore
from multi_agent_pruning.validation import PaperReproductionValidator

from validation.conftest import BASE_MACS

#: Best top-1 per (method, run) at 30 % and at 60 % of the MACs removed.
EASY = {"multi_agent": (0.80, 0.82, 0.81), "taylor": (0.78, 0.79, 0.77), "random": (0.70, 0.74, 0.72)}
HARD = {"multi_agent": (0.70, 0.74, 0.72), "taylor": (0.60, 0.66, 0.61), "random": (0.55, 0.52, 0.58)}


def _area(easy: float, hard: float, reference: float = 0.0) -> float:
    """The points (0.7, easy) and (0.4, hard) dominate [0.4, 0.7] x [ref, hard] and [0.7, 1] x [ref, easy]."""
    return (0.3 * (hard - reference) + 0.3 * (easy - reference)) / (1 - reference)


@pytest.fixture
def sweep_store(tmp_path, make_ok_row):
    """Experiment ``sweep``: 3 methods x 3 runs at two targets, with a worse ok and a failed trial
    at each; experiment ``single``: one target only (no frontier)."""
    rows = []
    for reduction, bests in ((0.3, EASY), (0.6, HARD)):
        macs = BASE_MACS * (1 - reduction)
        for method, values in bests.items():
            for run, best in enumerate(values):
                common = dict(experiment="sweep", method=method, run=run, target_reduction=reduction,
                              target_value=macs)
                rows.append(make_ok_row(**common, trial_id=f"{method}-{run}-{reduction}-a", top1=best, macs=macs))
                rows.append(make_ok_row(**common, trial_id=f"{method}-{run}-{reduction}-b", top1=best - 0.1,
                                        macs=macs * 0.99))
    rows.append(make_ok_row(experiment="single", method="taylor", run=0, trial_id="single-0", top1=0.5))
    store = ResultStore(tmp_path / "results")
    store.append(rows)
    return store


def test_analyze_results_adds_the_frontier_of_a_sweep(sweep_store, tmp_path):
    validator = PaperReproductionValidator(output_dir=tmp_path / "out", results_dir=sweep_store.root,
                                           n_resamples=500)
    analysis = validator.analyze_results()
    assert list(analysis["frontier"]) == ["sweep"]  # "single" has one target
    frontier = analysis["frontier"]["sweep"]
    assert frontier["targets"] == ["remove 30% of MACs", "remove 60% of MACs"]
    assert frontier["reference_accuracy"] == 0.0 and frontier["dense_macs"] == [BASE_MACS]
    assert frontier["area_definition"].startswith("normalised hypervolume of each run's best (MACs / dense_macs")
    for label, bests in zip(frontier["targets"], (EASY, HARD)):
        for method, values in bests.items():
            entry = frontier["per_target"][label][method]
            assert entry["per_run"] == {run: best for run, best in enumerate(values)}
            assert entry["mean"] == pytest.approx(sum(values) / 3)
    areas = {m: [_area(e, h) for e, h in zip(EASY[m], HARD[m])] for m in EASY}
    for method, values in areas.items():
        entry = frontier["areas"][method]
        assert list(entry["per_run"].values()) == pytest.approx(values)
        assert entry["mean"] == pytest.approx(sum(values) / 3) and entry["targets_reached"] == {0: 2, 1: 2, 2: 2}
    tests = frontier["area_statistics"]
    assert tests["metric"] == "frontier_area" and tests["reference"] == "multi_agent"
    by_method = {c["method"]: c for c in tests["comparisons"]}
    assert by_method["taylor"]["t_p"] == pytest.approx(
        scipy_stats.ttest_rel(areas["taylor"], areas["multi_agent"]).pvalue)
    assert by_method["random"]["mean_difference"] == pytest.approx(
        sum(areas["random"]) / 3 - sum(areas["multi_agent"]) / 3)
    assert tests["friedman"]["p_value"] == pytest.approx(scipy_stats.friedmanchisquare(*areas.values()).pvalue)
    written = json.loads((tmp_path / "out" / "analysis.json").read_text())["frontier"]["sweep"]
    assert written["areas"]["taylor"]["per_run"]["1"] == pytest.approx(areas["taylor"][1])
    assert written["per_target"]["remove 60% of MACs"]["random"]["per_run"] == {"0": 0.55, "1": 0.52, "2": 0.58}


def test_the_reference_accuracy_sets_where_the_area_starts(sweep_store, tmp_path):
    validator = PaperReproductionValidator(output_dir=tmp_path / "out", results_dir=sweep_store.root,
                                           n_resamples=200, reference_accuracy=0.5)
    frontier = validator.analyze_results()["frontier"]["sweep"]
    assert frontier["reference_accuracy"] == 0.5
    assert frontier["areas"]["random"]["per_run"][1] == pytest.approx(_area(0.74, 0.52, 0.5))
    with pytest.raises(ValidationError, match=r"reference_accuracy must be in \[0, 1\), got 1.0"):
        PaperReproductionValidator(output_dir=tmp_path / "out", reference_accuracy=1.0)


def test_a_table_with_one_target_per_experiment_has_no_frontier(comparison_store, tmp_path):
    validator = PaperReproductionValidator(output_dir=tmp_path / "out", results_dir=comparison_store.root,
                                           n_resamples=200)
    assert validator.analyze_results()["frontier"] == {}
    assert json.loads((tmp_path / "out" / "analysis.json").read_text())["frontier"] == {}


def test_a_sweep_compares_best_accuracy_per_target_not_across_targets(sweep_store, tmp_path):
    """The best top-1 of a run over all targets is its easiest target's: method_comparison and
    statistical_tests split a sweep by target instead."""
    analysis = PaperReproductionValidator(output_dir=tmp_path / "out", results_dir=sweep_store.root,
                                          n_resamples=200).analyze_results()
    keys = ["single", "sweep @ remove 30% of MACs", "sweep @ remove 60% of MACs"]
    assert list(analysis["method_comparison"]) == keys and list(analysis["statistical_tests"]) == keys
    for key, bests in zip(keys[1:], (EASY, HARD)):
        table = analysis["method_comparison"][key]
        for method, values in bests.items():
            assert table[method]["max_best_top1"] == pytest.approx(max(values))
            assert table[method]["mean_best_top1"] == pytest.approx(sum(values) / 3)
            assert table[method]["trials"] == 6  # 3 runs x 2 trials at this target
    hard = {c["method"]: c for c in analysis["statistical_tests"][keys[2]]["comparisons"]}
    assert hard["taylor"]["t_p"] == pytest.approx(scipy_stats.ttest_rel(HARD["taylor"], HARD["multi_agent"]).pvalue)
    assert analysis["method_comparison"]["single"]["taylor"]["max_best_top1"] == 0.5
