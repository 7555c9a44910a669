"""The frontier benchmark's parts that run nothing: separate single-target searches combined into
one frontier per seed and its area against the joint sweep's (from real Parquet tables), the
per-method summary and its text, the options and the configs they build; one tiny real run (slow)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from multi_agent_pruning.results import ResultStore, TrialResult
from multi_agent_pruning.stats.frontier import frontier_points
from support.benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[2]
START = dt.datetime(2026, 1, 5, 9, 0, 0, tzinfo=dt.UTC)
EASY, HARD = "remove 50% of MACs", "remove 80% of MACs"


frontier = load_benchmark("frontier", "frontier_benchmark")


def _row(method: str, run: int, trial_id: str, reduction: float, fraction: float | None, top1: float | None,
         *, seed: int | None = None, status: str = "ok") -> TrialResult:
    """A row at ``reduction`` whose model keeps ``fraction`` of the dense model's 1000 MACs."""
    return TrialResult(experiment="fr", run=run, method=method, model="compact_cnn", dataset="digits",
                       seed=42 + run if seed is None else seed, trial_id=trial_id, iteration=0, strategy_json="{}",
                       target_kind="macs", target_reduction=reduction, base_macs=1000.0,
                       macs=None if fraction is None else 1000.0 * fraction, top1_after=top1, status=status,
                       error=None if status == "ok" else "boom", started_at=START, finished_at=START)


def _table(root: Path, rows: list[TrialResult]):
    store = ResultStore(root / "results")
    store.append(rows)
    return store.read()  # a pyarrow table, as the script reads it


@pytest.fixture
def tables(tmp_path):
    """The joint sweep (multi_agent and optuna_tpe, two seeds, two targets) and multi_agent's two
    separate single-target searches of the same seeds."""
    joint = _table(tmp_path / "joint", [
        _row("multi_agent", 0, "j0-1", 0.5, 0.50, 0.90), _row("multi_agent", 0, "j0-2", 0.8, 0.20, 0.50),
        _row("multi_agent", 1, "j1-1", 0.5, 0.49, 0.74), _row("multi_agent", 1, "j1-2", 0.8, 0.20, 0.70),
        _row("multi_agent", 1, "j1-3", 0.8, None, None, status="failed"),
        _row("optuna_tpe", 0, "o0-1", 0.5, 0.50, 0.80), _row("optuna_tpe", 0, "o0-2", 0.8, 0.20, 0.40),
        _row("optuna_tpe", 1, "o1-1", 0.5, 0.50, 0.70),  # reached only the easy target
    ])
    easy = _table(tmp_path / "easy", [
        _row("multi_agent", 0, "s0-1", 0.5, 0.50, 0.80), _row("multi_agent", 0, "s0-2", 0.5, 0.48, 0.85),
        _row("multi_agent", 1, "s1-1", 0.5, 0.50, 0.70),
    ])
    hard = _table(tmp_path / "hard", [
        _row("multi_agent", 0, "s0-1", 0.8, 0.20, 0.60),
        _row("multi_agent", 0, "s0-2", 0.8, None, None, status="failed"),
        _row("multi_agent", 1, "s1-1", 0.8, 0.19, 0.66),
    ])
    return joint, [easy, hard]


def test_separate_searches_combine_into_one_frontier_per_seed(tables):
    joint, separate = tables
    combined = frontier.combine_searches(joint, separate)
    assert sorted(combined["search"].unique()) == ["joint", "separate"]
    assert set(combined["method"]) == {"multi_agent"}  # optuna_tpe's rows are not the joint search's
    points = frontier_points(combined, group="search")
    mine = points[points["search"] == "separate"]
    assert [(int(r.run), r.target, r.best, r.macs_fraction) for r in mine.itertuples()] == [
        (0, EASY, 0.85, 0.48), (0, HARD, 0.60, 0.20), (1, EASY, 0.70, 0.50), (1, HARD, 0.66, 0.19)]


def test_joint_against_separate_areas_per_seed(tables):
    joint, separate = tables
    versus = frontier.joint_vs_separate(joint, separate, [EASY, HARD])
    # run 0 separate: (0.2, 0.60), (0.48, 0.85) -> 0.28 * 0.60 + 0.52 * 0.85 = 0.61
    # run 1 separate: (0.19, 0.66), (0.5, 0.70) -> 0.31 * 0.66 + 0.50 * 0.70 = 0.5546
    # run 0 joint:    (0.2, 0.50), (0.5, 0.90)  -> 0.30 * 0.50 + 0.50 * 0.90 = 0.60
    # run 1 joint:    (0.2, 0.70), (0.49, 0.74) -> 0.29 * 0.70 + 0.51 * 0.74 = 0.5804
    assert versus["separate"]["per_run"] == pytest.approx({0: 0.61, 1: 0.5546})
    assert versus["joint"]["per_run"] == pytest.approx({0: 0.60, 1: 0.5804})
    assert versus["joint"]["mean"] == pytest.approx(0.5902)
    assert versus["separate"]["mean"] == pytest.approx(0.5823)
    assert [(s["run"], s["seed"]) for s in versus["per_seed"]] == [(0, 42), (1, 43)]
    assert [s["difference"] for s in versus["per_seed"]] == pytest.approx([-0.01, 0.0258])
    assert versus["mean_difference"] == pytest.approx(0.0079)
    assert versus["test"]["method"] == "joint" and versus["test"]["reference"] == "separate"
    assert versus["test"]["mean_difference"] == pytest.approx(0.0079)
    assert versus["test"]["n_pairs"] == 2
    assert versus["per_target"][EASY]["joint"]["mean"] == pytest.approx(0.82)
    assert versus["per_target"][EASY]["separate"]["mean"] == pytest.approx(0.775)
    assert versus["per_target"][HARD]["separate"]["per_run"] == pytest.approx({0: 0.60, 1: 0.66})


def test_a_seed_without_any_model_in_the_separate_searches_has_no_difference(tmp_path):
    failed = _table(tmp_path / "failed", [_row("multi_agent", 2, "f2", 0.5, None, None, status="failed")])
    joint_two = _table(tmp_path / "joint2", [_row("multi_agent", 2, "j2", 0.5, 0.5, 0.8)])
    versus = frontier.joint_vs_separate(joint_two, [failed], [EASY])
    assert versus["per_seed"] == [{"run": 2, "seed": 44, "joint": pytest.approx(0.4), "separate": None,
                                   "difference": None}]
    assert versus["separate"] is None and versus["mean_difference"] is None


def test_separate_searches_with_other_seeds_are_refused(tmp_path, tables):
    joint, _ = tables
    other = _table(tmp_path / "other", [_row("multi_agent", 0, "x", 0.5, 0.5, 0.8, seed=7)])
    with pytest.raises(ValueError, match=r"different seeds \(run: \(joint, separate\)\): \{0: \(42, 7\)\}"):
        frontier.joint_vs_separate(joint, [other], [EASY])


def test_method_summary_areas_per_target_and_test_against_multi_agent(tables):
    joint, _ = tables
    summary = frontier.method_summary(joint, ["multi_agent", "optuna_tpe"], [EASY, HARD])
    assert summary["reference"] == "multi_agent"
    optuna = summary["methods"]["optuna_tpe"]
    # run 0: (0.2, 0.4), (0.5, 0.8) -> 0.3 * 0.4 + 0.5 * 0.8 = 0.52; run 1: (0.5, 0.7) -> 0.35
    assert optuna["area"]["per_run"] == pytest.approx({0: 0.52, 1: 0.35})
    assert optuna["area"]["targets_reached"] == {0: 2, 1: 1}
    assert optuna["per_target"][EASY]["mean"] == pytest.approx(0.75)
    assert optuna["per_target"][HARD]["per_run"] == pytest.approx({0: 0.40})
    assert optuna["vs_reference"]["mean_difference"] == pytest.approx((0.52 - 0.60 + 0.35 - 0.5804) / 2)
    assert summary["methods"]["multi_agent"]["vs_reference"] is None
    lines = frontier.format_methods("digits-cnn", summary, [EASY, HARD], ["-50%", "-80%"],
                                    {"multi_agent": 12.0, "optuna_tpe": 9.4})
    assert lines[0].split()[:2] == ["setting", "method"] and "-50%" in lines[0] and "-80%" in lines[0]
    assert lines[1].split()[:6] == ["digits-cnn", "multi_agent", "0.5902", "±", "0.0139", "(n=2)"]
    assert lines[1].split()[6:] == ["0.8200", "0.6000", "ref", "12"]
    assert lines[2].split()[:8] == ["digits-cnn", "optuna_tpe", "0.4350", "±", "0.1202", "(n=2)", "0.7500", "0.4000"]
    assert lines[2].split()[8] == "-0.1552"


def test_joint_against_separate_text(tables):
    joint, separate = tables
    versus = frontier.joint_vs_separate(joint, separate, [EASY, HARD])
    lines = frontier.format_joint_vs_separate("digits-cnn", versus, [EASY, HARD], ["-50%", "-80%"])
    assert lines[1].split()[:8] == ["digits-cnn", "joint", "0.5902", "±", "0.0139", "(n=2)", "0.8200", "0.6000"]
    assert lines[2].split()[:8] == ["digits-cnn", "separate", "0.5823", "±", "0.0392", "(n=2)", "0.7750", "0.6300"]
    assert "seed 42: -0.0100, seed 43: +0.0258; mean +0.0079" in lines[3]


@pytest.mark.parametrize(("text", "message"), [
    ("0.5", "at least two distinct targets"), ("0.5,0.5", "at least two distinct targets"),
    ("0.5,1.2", "fractions of the MACs removed"), ("0.5,x", "not a comma-separated list"),
])
def test_bad_targets_are_refused(text, message):
    with pytest.raises(Exception, match=message):
        frontier.parse_targets(text)


def test_quick_and_full_plans():
    quick = frontier.make_plan(frontier.parse_args(["--quick"]))
    assert (quick.settings, quick.methods, quick.trials, quick.seeds) == (
        ["digits-cnn"], ["multi_agent", "optuna_tpe", "magnitude_l2"], 8, 1)
    full = frontier.make_plan(frontier.parse_args(["--targets", "0.9,0.5,0.7,0.8"]))
    assert full.settings == ["digits-cnn", "digits-vit", "fashion-cnn", "fashion-vit"]
    assert (full.targets, full.trials, full.seeds) == ([0.5, 0.7, 0.8, 0.9], 16, 3)
    assert full.methods == ["multi_agent", "optuna_tpe", "magnitude_l1", "magnitude_l2", "taylor", "isomorphic"]
    with pytest.raises(SystemExit, match="--trials 3 is below the number of targets"):
        frontier.make_plan(frontier.parse_args(["--trials", "3"]))


def test_joint_and_separate_configs_differ_only_in_the_target():
    plan = frontier.make_plan(frontier.parse_args(["--set", "experiment.seed=7"]))
    joint = frontier.build_config("fashion-vit", plan, "fr", plan.targets, 16)
    single = frontier.build_config("fashion-vit", plan, "fr", [0.7], 4)
    assert (joint.target.sweep, joint.target.reduction) == ((0.5, 0.7, 0.8, 0.9), None)
    assert (single.target.sweep, single.target.reduction) == (None, 0.7)
    assert (joint.model.name, joint.dataset.name, joint.dataset.train_samples) == ("deit_micro", "fashion_mnist", 6000)
    assert joint.safety_limits.max_overall_pruning == joint.safety_limits.max_conv_pruning == 0.9
    assert (joint.experiment.seed, single.experiment.seed) == (7, 7)
    assert (joint.search.max_iterations, single.search.max_iterations) == (8, 2)
    assert joint.finetune == single.finetune


def test_help_runs_without_starting_anything():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "frontier.py"), "--help"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    for option in ("--quick", "--targets", "--methods", "--seeds", "--trials", "--finetune-steps", "--json"):
        assert option in result.stdout


@pytest.mark.slow
def test_a_tiny_real_run_reports_every_area(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    code = frontier.main(["--settings", "digits-cnn", "--methods", "multi_agent,magnitude_l2", "--targets", "0.5,0.8",
                          "--trials", "2", "--seeds", "1", "--finetune-steps", "2", "--output", str(tmp_path / "out"),
                          "--json", str(tmp_path / "numbers.json"), "--set", f"precomputation.cache_dir={tmp_path}"])
    assert code == 0
    numbers = json.loads((tmp_path / "numbers.json").read_text())
    setting = numbers["settings"][0]
    for method in ("multi_agent", "magnitude_l2"):
        assert 0.0 < setting["summary"]["methods"][method]["area"]["mean"] <= 1.0
    assert [s["seed"] for s in setting["joint_vs_separate"]["per_seed"]] == [42]
    assert setting["joint_vs_separate"]["separate"]["n_runs"] == 1


def test_same_as_names_each_search_that_differs(tmp_path):
    """--same-as: the joint comparison per method and run, and each separate search, compared trial
    by trial between two outputs of the script."""
    def output(root: Path, changed_top1: float) -> Path:
        setting = root / "digits-cnn"
        _table(setting / "joint", [_row("multi_agent", 0, "j0", 0.5, 0.5, 0.9),
                                   _row("optuna_tpe", 0, "o0", 0.5, 0.5, 0.8),
                                   _row("multi_agent", 1, "j1", 0.8, 0.2, changed_top1)])
        _table(setting / "separate" / "macs-remove-50pct", [_row("multi_agent", 0, "s0", 0.5, 0.5, 0.85)])
        _table(setting / "separate" / "macs-remove-80pct", [_row("multi_agent", 0, "s1", 0.8, 0.2, changed_top1)])
        return root

    before, after = output(tmp_path / "before", 0.6), output(tmp_path / "after", 0.6)
    verdict = frontier.same_as(before, after, "digits-cnn")
    assert verdict == {"joint": {"multi_agent": {0: "identical", 1: "identical"}, "optuna_tpe": {0: "identical"}},
                       "separate macs-remove-50pct": {"multi_agent": {0: "identical"}},
                       "separate macs-remove-80pct": {"multi_agent": {0: "identical"}}}
    changed = frontier.same_as(before, output(tmp_path / "changed", 0.61), "digits-cnn")
    assert changed["joint"]["multi_agent"] == {0: "identical", 1: "1 trials differ"}
    assert changed["separate macs-remove-80pct"] == {"multi_agent": {0: "1 trials differ"}}
    lines = frontier.format_same_as("before", changed)
    assert lines[0] == ("same as before: joint: multi_agent 1 of 2 searches identical "
                        "{0: 'identical', 1: '1 trials differ'}")
