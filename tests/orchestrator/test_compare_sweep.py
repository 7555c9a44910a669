"""Comparisons over a sweep of targets: the budget split, the frontier in comparison.json and its
text, and real comparisons (compact_cnn on digits, local Ray) at two targets: multi_agent, a tuned
baseline, optuna_tpe and a custom method (slow), and a tuned baseline with an odd budget."""

from __future__ import annotations

import datetime as dt
import json

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from multi_agent_pruning import MultiAgentPruner
from multi_agent_pruning.baselines import METHOD_REGISTRY, BasePruningMethod, register_method
from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.orchestrator.compare import format_comparison, split_budget, summarise_comparison
from multi_agent_pruning.results import ResultStore, TrialResult, row_target, target_key
from multi_agent_pruning.stats.frontier import frontier_area

from orchestrator.conftest import FAST

EASY, HARD = target_key("macs", 0.3, None), target_key("macs", 0.5, None)


@pytest.mark.parametrize(("budget", "targets", "shares"), [
    (4, 2, [2, 2]), (5, 2, [2, 3]), (7, 3, [2, 2, 3]), (8, 3, [2, 3, 3]), (3, 3, [1, 1, 1]), (6, 1, [6]),
    (2, 3, [0, 1, 1]),  # a target whose share is 0 gets no trials (compare_methods refuses this budget)
])
def test_the_budget_splits_evenly_with_the_remainder_to_the_hardest_targets(budget, targets, shares):
    assert split_budget(budget, targets) == shares


def test_split_budget_refuses_no_targets():
    with pytest.raises(ConfigurationError, match=r"targets >= 1 and budget >= 0 \(got 0, 4\)"):
        split_budget(4, 0)


def _pruner(tmp_path, *extra: str) -> MultiAgentPruner:
    return MultiAgentPruner("tests/support/quickstart_single.yaml",
                            overrides=[*FAST, f"precomputation.cache_dir={tmp_path / 'cache'}",
                                       f"experiment.output_dir={tmp_path / 'runs'}", *extra])


def test_a_budget_below_the_number_of_targets_is_refused_before_anything_runs(tmp_path):
    with pytest.raises(ConfigurationError) as err:
        _pruner(tmp_path).compare_methods("compact_cnn", "digits", target_ratio=[0.3, 0.5, 0.7],
                                          methods=["multi_agent", "taylor"], trials_per_method=2)
    assert str(err.value) == ("Invalid trial budget:\n  - trials_per_method: must be at least the number of targets "
                              "of the sweep (3: sweep: remove 30%, 50%, 70% of MACs) so that every method tries "
                              "each target (got 2)")
    assert not (tmp_path / "runs").exists()


START = dt.datetime(2025, 5, 1, 9, 0, 0, tzinfo=dt.timezone.utc)


def _row(method: str, run: int, trial_id: str, reduction: float | None, top1: float | None, macs: float = 0.0,
         status: str = "ok") -> TrialResult:
    return TrialResult(experiment="sweep", run=run, method=method, model="compact_cnn", dataset="digits", seed=run,
                       trial_id=trial_id, iteration=0, strategy_json="{}", target_kind="macs",
                       target_reduction=reduction, base_macs=1000.0, macs=macs if status == "ok" else None,
                       top1_after=top1, status=status, error=None if status == "ok" else "boom",
                       error_type=None if status == "ok" else "RuntimeError", started_at=START, finished_at=START)


def _sweep_store(tmp_path) -> ResultStore:
    """Two runs at 30 % and 50 % removed. ``a`` reaches both targets in both runs; ``b`` reaches
    the easy target only (its hard trials fail); ``c`` produced no model."""
    rows = [
        _row("a", 0, "a0-1", 0.3, 0.90, 700), _row("a", 0, "a0-2", 0.3, 0.85, 690), _row("a", 0, "a0-3", 0.5, 0.80, 500),
        _row("a", 1, "a1-1", 0.3, 0.88, 710), _row("a", 1, "a1-2", 0.5, 0.70, 480), _row("a", 1, "a1-3", 0.5, 0.76, 520),
        _row("b", 0, "b0-1", 0.3, 0.60, 650), _row("b", 0, "b0-2", 0.5, None, status="failed"),
        _row("b", 1, "b1-1", 0.3, 0.64, 700), _row("b", 1, "b1-2", 0.5, None, status="failed"),
        _row("c", 0, "c0-1", 0.3, None, status="failed"), _row("c", 0, "c0-2", 0.5, None, status="failed"),
    ]
    store = ResultStore(tmp_path / "results")
    store.append(rows)
    return store


def test_summarise_comparison_of_a_sweep(tmp_path):
    store = _sweep_store(tmp_path)
    out = summarise_comparison(store, "sweep", ["a", "b", "c"], {"a": 3.0, "b": 2.0, "c": 1.0}, targets=[EASY, HARD])
    a, b, c = out["a"], out["b"], out["c"]
    assert [e["target"] for e in a["frontier"]] == ["remove 30% of MACs", "remove 50% of MACs"]
    assert a["frontier"][0]["best_per_run"] == [0.90, 0.88] and a["frontier"][0]["mean"] == pytest.approx(0.89)
    assert a["frontier"][0]["macs"] == pytest.approx(705) and a["frontier"][0]["trials_used"] == 3
    assert a["frontier"][1]["best_per_run"] == [0.80, 0.76] and a["frontier"][1]["macs"] == pytest.approx(510)
    # Top level: the hardest target with a model.
    assert a["best_target"] == "remove 50% of MACs"
    assert (a["final_accuracy"], a["best_accuracy"], a["best_per_run"]) == (pytest.approx(0.78), 0.80, [0.80, 0.76])
    assert a["final_macs"] == 500 and a["trials_used"] == 6 and a["trials_ok"] == 6
    # area = (0.5 - 0.3) * best at 50 % + (1 - 0.5) * best at 30 % (the points are below and left of each other)
    areas = [0.2 * 0.80 + 0.3 * 0.90, 0.19 * 0.76 + 0.29 * 0.88]
    assert a["frontier_area"]["per_run"] == pytest.approx(areas)
    assert a["frontier_area"]["mean"] == pytest.approx(sum(areas) / 2)
    assert a["frontier_area"]["targets_reached"] == [2, 2]
    assert b["best_target"] == "remove 30% of MACs" and b["final_accuracy"] == pytest.approx(0.62)
    assert b["frontier"][1] == {**b["frontier"][1], "mean": None, "std": None, "best_per_run": [None, None],
                                "macs": None, "trials_used": 2, "trials_ok": 0}
    assert b["frontier_area"]["per_run"] == pytest.approx([0.35 * 0.60, 0.30 * 0.64])
    assert b["frontier_area"]["targets_reached"] == [1, 1]
    assert c["final_accuracy"] is None and c["best_target"] is None and c["error"].startswith("no trial produced")
    assert c["frontier_area"] == {"mean": None, "std": None, "per_run": [None], "targets_reached": [None]}
    assert [e["best_per_run"] for e in c["frontier"]] == [[None], [None]]

    text = format_comparison(out).splitlines()
    assert text[0].split() == ["method", "area", "std", "trials", "ok", "wall", "s", "best", "target"]
    assert [line.split()[0] for line in text[1:4]] == ["a", "b", "c"]  # ranked by area
    assert text[1].split()[1] == f"{sum(areas) / 2:.4f}" and text[1].endswith("remove 50% of MACs")
    assert text[3].split()[1:3] == ["-", "-"]
    assert text[6].split() == ["best", "top-1", "per", "target", "a", "b", "c"]
    assert text[7].split() == ["remove", "30%", "of", "MACs", "0.8900", "0.6200", "-"]
    assert text[8].split() == ["remove", "50%", "of", "MACs", "0.7800", "-", "-"]


def test_summarise_comparison_of_one_target_is_unchanged(tmp_path):
    store = _sweep_store(tmp_path)
    out = summarise_comparison(store, "sweep", ["a"], {"a": 3.0})
    assert "frontier" not in out["a"] and "best_target" not in out["a"]
    assert out["a"]["best_per_run"] == [0.90, 0.88] and out["a"]["final_macs"] == 700
    assert format_comparison(out).splitlines()[1].split() == ["a", "0.8900", "0.0141", "0.9000", "6", "6", "3.0"]


class Halving(BasePruningMethod):
    """A custom method (its own prune_to_target_macs): keeps the asked MACs, scores 0.25."""

    def prune_to_target_macs(self, model_name: str, target_macs: float, dataset: str) -> dict:
        return {"final_accuracy": 0.25, "final_macs": target_macs, "method": "sweep_halving"}


@pytest.fixture
def custom_method():
    register_method("sweep_halving")(Halving)
    yield "sweep_halving"
    METHOD_REGISTRY.remove("sweep_halving")


@pytest.mark.slow  # about 65 s on 2 cores: five Tune runs (one multi_agent search, two studies per baseline)
def test_a_sweep_comparison_splits_every_budget_and_reports_each_frontier(local_ray, tmp_path, custom_method):
    methods = ["multi_agent", "magnitude_l2", "optuna_tpe", custom_method]
    out = tmp_path / "cmp"
    comparison = _pruner(tmp_path).compare_methods("compact_cnn", "digits", target_ratio=[0.5, 0.3], methods=methods,
                                                   num_runs=1, trials_per_method=4, output_dir=out)
    rows = ResultStore(out / "results").rows()
    counted = {m: [row_target(r) for r in rows if r.method == m and r.status != "rejected"] for m in methods}
    # multi_agent: the whole budget in one search over both targets, each tried at least once.
    assert len(counted["multi_agent"]) == 4 and {EASY, HARD} == set(counted["multi_agent"])
    # Optuna methods: one study per target, 4 // 2 trials each; the custom method: once per target.
    for method, per_target in (("magnitude_l2", 2), ("optuna_tpe", 2), (custom_method, 1)):
        assert sorted(counted[method], key=lambda k: k.order) == [EASY] * per_target + [HARD] * per_target
    for method in ("magnitude_l2", "optuna_tpe"):
        for key in (EASY, HARD):
            study = optuna.load_study(study_name=f"quickstart-{method}-{key.slug}-run0", storage=JournalStorage(
                JournalFileBackend(str(out / "optuna" / f"{method}-{key.slug}-run0.journal"))))
            assert len(study.trials) == 2
            assert (out / "tune" / f"{method}-{key.slug}-run0").is_dir()
    # The dense model's top-1 is measured once and carried by every row of every method.
    (dense,) = {r.base_top1 for r in rows}
    assert dense is not None and 0.5 < dense <= 1.0
    assert sorted(r.trial_id for r in rows if r.method == custom_method) == [
        f"{custom_method}-macs-remove-30pct-run0", f"{custom_method}-macs-remove-50pct-run0"]

    written = json.loads((out / "comparison.json").read_text())
    assert written == json.loads(json.dumps(comparison))
    for method in methods:
        entry = written[method]
        assert [e["target"] for e in entry["frontier"]] == [EASY.label, HARD.label]
        assert entry["trials_used"] == (4 if method != custom_method else 2)
        mine = [r for r in rows if r.method == method and r.status == "ok" and r.top1_after is not None]
        points = []
        for key, at in zip((EASY, HARD), entry["frontier"]):
            best = max((r for r in mine if row_target(r) == key), key=lambda r: r.top1_after)
            assert at["best_per_run"] == [best.top1_after] and at["mean"] == best.top1_after
            points.append((best.macs / best.base_macs, best.top1_after))
        assert entry["frontier_area"]["per_run"] == [pytest.approx(frontier_area(points))]
        assert entry["frontier_area"]["mean"] == pytest.approx(frontier_area(points))
        assert entry["best_target"] == HARD.label and entry["final_accuracy"] == entry["frontier"][1]["mean"]
    assert written[custom_method]["frontier"][0]["mean"] == 0.25
    lines = format_comparison(comparison).splitlines()
    assert sorted(line.split()[0] for line in lines[1:5]) == sorted(methods)
    assert [line.split(" of ")[0] for line in lines[-2:]] == ["remove 30%", "remove 50%"]


def test_a_baseline_studies_each_target_with_its_share_of_the_budget(local_ray, tmp_path, custom_method):
    out = tmp_path / "cmp"
    comparison = _pruner(tmp_path, "model.train_steps=0").compare_methods(
        "compact_cnn", "digits", target_ratio="0.3,0.5", methods=["magnitude_l2", custom_method], num_runs=1,
        trials_per_method=3, output_dir=out)
    rows = ResultStore(out / "results").rows()
    studied = sorted((row_target(r).order, r.iteration) for r in rows if r.method == "magnitude_l2")
    assert studied == [(0.3, 0), (0.5, 0), (0.5, 1)]  # 3 // 2 each, the remainder to the hardest target
    assert sorted(p.name for p in (out / "optuna").iterdir()) == [
        "magnitude_l2-macs-remove-30pct-run0.journal", "magnitude_l2-macs-remove-50pct-run0.journal"]
    entry = comparison["magnitude_l2"]
    assert [(e["target"], e["trials_used"]) for e in entry["frontier"]] == [(EASY.label, 1), (HARD.label, 2)]
    assert comparison[custom_method]["frontier_area"]["per_run"] == [pytest.approx(0.2 * 0.25 + 0.3 * 0.25)]
