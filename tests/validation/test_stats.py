"""Statistics checked against scipy / statsmodels called directly on the same inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests

from multi_agent_pruning.exceptions import ValidationError
from multi_agent_pruning.stats.comparison import (analyze_methods, best_per_run, bootstrap_mean_ci, cohens_dz,
                                                  friedman_test, holm_adjust, paired_comparison, rank_biserial)

MIXED = [0.01, -0.02, 0.03, 0.04, 0.05, -0.01]


def _values(*values):
    return dict(enumerate(values))


def test_best_per_run_ignores_failed_rows_and_missing_metric(comparison_store):
    best = best_per_run(comparison_store.read())
    assert len(best) == 9
    row = best[(best["method"] == "multi_agent") & (best["run"] == 1)].iloc[0]
    assert (row["best"], row["trial_id"]) == (0.82, "multi_agent-1-a")
    frame = comparison_store.to_pandas()
    frame.loc[frame["trial_id"] == "taylor-2-a", "status"] = "failed"
    frame.loc[frame["trial_id"] == "taylor-2-b", "top1_after"] = np.nan
    best = best_per_run(frame)
    assert len(best) == 8
    assert not ((best["method"] == "taylor") & (best["run"] == 2)).any()


def test_best_per_run_breaks_ties_by_trial_id(comparison_store):
    frame = comparison_store.to_pandas()
    frame.loc[frame["trial_id"] == "random-0-b", "top1_after"] = 0.70
    row = best_per_run(frame).query("method == 'random' and run == 0").iloc[0]
    assert row["trial_id"] == "random-0-a"


def test_wilcoxon_and_t_match_scipy():
    reference = _values(0.5, 0.6, 0.55, 0.7, 0.65, 0.6)
    method = {run: reference[run] + d for run, d in enumerate(MIXED)}
    result = paired_comparison("m", method, "ref", reference)
    a = np.array([method[r] for r in range(6)])
    b = np.array([reference[r] for r in range(6)])
    wilcoxon = scipy_stats.wilcoxon(a - b)
    t = scipy_stats.ttest_rel(a, b)
    assert result.wilcoxon_statistic == pytest.approx(wilcoxon.statistic)
    assert result.wilcoxon_p == pytest.approx(wilcoxon.pvalue)
    assert result.t_statistic == pytest.approx(t.statistic)
    assert result.t_p == pytest.approx(t.pvalue)
    assert result.mean_difference == pytest.approx(np.mean(MIXED))
    assert result.cohens_dz == pytest.approx(np.mean(MIXED) / np.std(MIXED, ddof=1))
    assert (result.wilcoxon_reason, result.t_reason, result.n_pairs) == (None, None, 6)


def test_effect_sizes_on_known_values():
    # |d| ranks: 0.01 -> 1.5 (twice), 0.02 -> 3, 0.03 -> 4, 0.04 -> 5, 0.05 -> 6: W+ = 16.5, W- = 4.5.
    assert rank_biserial(MIXED) == pytest.approx((16.5 - 4.5) / 21)
    assert rank_biserial([0.0, 0.0]) is None
    assert rank_biserial([0.0, 0.1, 0.2]) == 1.0
    assert cohens_dz([0.1, 0.2, 0.3]) == pytest.approx(0.2 / 0.1)
    assert cohens_dz([0.1]) is None and cohens_dz([0.2, 0.2]) is None


def test_untestable_inputs_give_reasons():
    one = paired_comparison("m", _values(0.9), "ref", _values(0.8))
    assert (one.wilcoxon_p, one.t_p) == (None, None)
    assert one.wilcoxon_reason == one.t_reason == "needs at least 2 paired runs, got 1"
    assert one.ci_low is None and one.mean_difference == pytest.approx(0.1)
    zero = paired_comparison("m", _values(0.8, 0.7, 0.6), "ref", _values(0.8, 0.7, 0.6))
    assert zero.wilcoxon_reason == zero.t_reason == "all paired differences are zero"
    assert (zero.cohens_dz, zero.rank_biserial) == (None, None)
    constant = paired_comparison("m", _values(0.9, 0.8, 0.7), "ref", _values(0.8, 0.7, 0.6))
    assert constant.wilcoxon_p == pytest.approx(scipy_stats.wilcoxon([0.1, 0.1, 0.1]).pvalue)
    assert constant.t_p is None and constant.t_reason.startswith("paired differences have zero variance")
    assert constant.cohens_dz is None
    unpaired = paired_comparison("m", {0: 0.9, 5: 0.8}, "ref", {0: 0.8, 1: 0.7})
    assert unpaired.runs == (0,) and unpaired.n_pairs == 1


def test_bootstrap_matches_scipy_percentile_on_a_fixed_seed():
    x = np.array([0.713, 0.741, 0.689, 0.802, 0.774, 0.655, 0.731, 0.768, 0.702, 0.759])
    ours = bootstrap_mean_ci(x, n_resamples=10_000, seed=123)
    theirs = scipy_stats.bootstrap((x,), np.mean, method="percentile", n_resamples=10_000,
                                   rng=np.random.default_rng(123)).confidence_interval
    assert ours == pytest.approx((theirs.low, theirs.high), abs=1e-12)
    assert ours == pytest.approx((0.7066975, 0.759), abs=1e-9)
    assert bootstrap_mean_ci(x, seed=123) == ours
    assert bootstrap_mean_ci(x, seed=124) != ours
    assert bootstrap_mean_ci([0.5]) is None
    assert bootstrap_mean_ci([0.5, 0.5, 0.5]) == (0.5, 0.5)


def test_holm_matches_statsmodels_and_keeps_missing():
    p = [0.01, None, 0.04, 0.03]
    expected = multipletests([0.01, 0.04, 0.03], method="holm")[1]
    adjusted = holm_adjust(p)
    assert adjusted[1] is None
    assert [adjusted[0], adjusted[2], adjusted[3]] == pytest.approx(list(expected))
    assert holm_adjust([None]) == [None]


def test_friedman_matches_scipy_and_reasons():
    per_method = {"a": _values(0.8, 0.82, 0.81), "b": _values(0.78, 0.83, 0.77), "c": _values(0.7, 0.74, 0.72)}
    result = friedman_test(per_method)
    expected = scipy_stats.friedmanchisquare([0.8, 0.82, 0.81], [0.78, 0.83, 0.77], [0.7, 0.74, 0.72])
    assert (result.statistic, result.p_value) == pytest.approx((expected.statistic, expected.pvalue))
    assert result.methods == ("a", "b", "c") and result.runs == (0, 1, 2)
    assert friedman_test({"a": _values(1, 2), "b": _values(1, 2)}).reason == "needs at least 3 methods, got 2"
    short = friedman_test({"a": {0: 0.1, 1: 0.2}, "b": {0: 0.3}, "c": {0: 0.2, 2: 0.5}})
    assert short.reason == "needs at least 2 runs shared by all methods, got 1"
    tied = friedman_test({"a": _values(0.5, 0.6), "b": _values(0.5, 0.6), "c": _values(0.5, 0.6)})
    assert (tied.statistic, tied.reason) == (None, "all methods tie in every run")


def test_analyze_methods_on_the_synthetic_comparison(comparison_store):
    report = analyze_methods(comparison_store.read(), n_resamples=2_000, seed=7)
    assert report.reference == "multi_agent"
    summaries = {s.method: s for s in report.summaries}
    assert summaries["taylor"].mean == pytest.approx(0.78)
    assert summaries["taylor"].std == pytest.approx(0.01)
    assert (summaries["random"].minimum, summaries["random"].maximum) == (0.70, 0.74)
    comparisons = {c.method: c for c in report.comparisons}
    assert set(comparisons) == {"random", "taylor"}
    taylor, random_ = comparisons["taylor"], comparisons["random"]
    assert taylor.mean_difference == pytest.approx(-0.03)
    assert taylor.cohens_dz == pytest.approx(-3.0)
    assert random_.rank_biserial == -1.0
    t_values = [scipy_stats.ttest_rel([0.70, 0.74, 0.72], [0.80, 0.82, 0.81]).pvalue,
                scipy_stats.ttest_rel([0.78, 0.79, 0.77], [0.80, 0.82, 0.81]).pvalue]
    holm = multipletests(t_values, method="holm")[1]
    assert (random_.t_p, taylor.t_p) == pytest.approx(tuple(t_values))
    assert (random_.t_p_holm, taylor.t_p_holm) == pytest.approx(tuple(holm))
    assert taylor.wilcoxon_p == pytest.approx(0.25) and taylor.wilcoxon_p_holm == pytest.approx(0.5)
    # Every run ranks multi_agent > taylor > random: chi-square = 6, p = exp(-3).
    assert report.friedman.statistic == pytest.approx(6.0)
    assert report.friedman.p_value == pytest.approx(math.exp(-3))
    assert report.to_dict()["comparisons"][0]["runs"] == [0, 1, 2]


def test_analyze_methods_falls_back_to_the_first_method(comparison_store):
    table = comparison_store.read(method="taylor")
    report = analyze_methods(table, reference="multi_agent")
    assert report.reference == "taylor" and report.comparisons == ()
    assert report.friedman.reason == "needs at least 3 methods, got 1"


def test_best_per_run_names_missing_columns(comparison_store):
    frame = comparison_store.to_pandas().drop(columns=["top1_after"])
    with pytest.raises(ValidationError, match="results table lacks column\\(s\\) top1_after"):
        best_per_run(frame)
