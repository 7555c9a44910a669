"""Statistics over the results table: best accuracy per (method, run) and paired comparisons.

The unit of comparison is the best accuracy a method reached in one run (repetition, seed);
methods are paired on ``run``. A test that cannot be computed (too few pairs, all differences
zero, zero variance) gives ``None`` and says why instead of a misleading p-value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from multi_agent_pruning.exceptions import ValidationError

__all__ = ["best_per_run", "bootstrap_mean_ci", "cohens_dz", "rank_biserial", "holm_adjust", "MethodSummary",
           "PairedComparison", "FriedmanResult", "StatisticsReport", "summarize_method", "paired_comparison",
           "friedman_test", "analyze_methods"]


def _frame(data: Any) -> pd.DataFrame:
    return data.to_pandas() if hasattr(data, "to_pandas") and not isinstance(data, pd.DataFrame) else data


def best_per_run(data: Any, metric: str = "top1_after", group: str = "method") -> pd.DataFrame:
    """The best ``metric`` of each (``group``, run) over its ok rows.

    Args:
        data: The results table (pyarrow Table or pandas DataFrame).
        metric: Column to maximise.
        group: Column naming the compared series (``method``).

    Returns:
        Columns ``[group, "run", "best", "trial_id"]``, sorted; a (group, run) with no ok row
        that measured ``metric`` is absent, never zero.
    """
    frame = _frame(data)
    missing = [c for c in (group, "run", "status", "trial_id", metric) if c not in frame.columns]
    if missing:
        raise ValidationError(f"results table lacks column(s) {', '.join(missing)}")
    ok = frame[(frame["status"] == "ok") & frame[metric].notna()]
    if ok.empty:
        return pd.DataFrame({group: pd.Series(dtype=object), "run": pd.Series(dtype=int),
                             "best": pd.Series(dtype=float), "trial_id": pd.Series(dtype=object)})
    ok = ok.assign(_metric=ok[metric].astype(float), run=ok["run"].astype(int))
    # Ties go to the smallest trial_id so the choice does not depend on row order.
    ok = ok.sort_values([group, "run", "_metric", "trial_id"], ascending=[True, True, False, True], kind="stable")
    best = ok.groupby([group, "run"], sort=True).head(1)
    return best.rename(columns={"_metric": "best"})[[group, "run", "best", "trial_id"]].reset_index(drop=True)


def bootstrap_mean_ci(values: Sequence[float], *, n_resamples: int = 10_000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float] | None:
    """Percentile bootstrap confidence interval of the mean; None for fewer than 2 values.

    Resamples with ``numpy.random.default_rng(seed).integers(0, n, (n_resamples, n))``, the same
    draws as ``scipy.stats.bootstrap(..., method="percentile", rng=default_rng(seed))``.
    """
    x = np.asarray(values, dtype=float)
    if x.size < 2:
        return None
    index = np.random.default_rng(seed).integers(0, x.size, (n_resamples, x.size))
    means = x[index].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.percentile(means, [100 * alpha, 100 * (1 - alpha)])
    return float(low), float(high)


def cohens_dz(differences: Sequence[float]) -> float | None:
    """Mean paired difference over its standard deviation (ddof=1); None when undefined."""
    d = np.asarray(differences, dtype=float)
    if d.size < 2 or _constant(d):
        return None
    return float(d.mean() / d.std(ddof=1))


def _constant(d: np.ndarray) -> bool:
    # Differences of rounded accuracies can differ in the last bits only; that is no variance.
    return bool(np.allclose(d, d[0], rtol=1e-9, atol=1e-12))


def rank_biserial(differences: Sequence[float]) -> float | None:
    """Matched-pairs rank-biserial correlation (W+ - W-) / (W+ + W-), zeros dropped as in Wilcoxon."""
    d = np.asarray(differences, dtype=float)
    d = d[d != 0]
    if d.size == 0:
        return None
    ranks = scipy_stats.rankdata(np.abs(d))
    positive, negative = ranks[d > 0].sum(), ranks[d < 0].sum()
    return float((positive - negative) / (positive + negative))


def holm_adjust(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (statsmodels ``multipletests``); None entries stay None."""
    from statsmodels.stats.multitest import multipletests

    present = [i for i, p in enumerate(pvalues) if p is not None]
    adjusted: list[float | None] = [None] * len(pvalues)
    if present:
        corrected = multipletests([pvalues[i] for i in present], method="holm")[1]
        for i, value in zip(present, corrected):
            adjusted[i] = float(value)
    return adjusted


@dataclass(frozen=True)
class MethodSummary:
    """Best accuracy per run of one method: mean, spread and bootstrap CI of the mean."""

    method: str
    n_runs: int
    runs: tuple[int, ...]
    mean: float
    std: float | None
    minimum: float
    maximum: float
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class PairedComparison:
    """``method`` minus ``reference`` over the runs both have; p-values None with a reason."""

    method: str
    reference: str
    n_pairs: int
    runs: tuple[int, ...]
    mean_difference: float | None
    ci_low: float | None
    ci_high: float | None
    cohens_dz: float | None
    rank_biserial: float | None
    wilcoxon_statistic: float | None
    wilcoxon_p: float | None
    wilcoxon_reason: str | None
    t_statistic: float | None
    t_p: float | None
    t_reason: str | None
    wilcoxon_p_holm: float | None = None
    t_p_holm: float | None = None


@dataclass(frozen=True)
class FriedmanResult:
    """Friedman test over the methods that share the same runs; statistic None with a reason."""

    methods: tuple[str, ...]
    runs: tuple[int, ...]
    statistic: float | None
    p_value: float | None
    reason: str | None


@dataclass(frozen=True)
class StatisticsReport:
    """Everything :func:`analyze_methods` computes, JSON-ready through :meth:`to_dict`."""

    metric: str
    reference: str | None
    confidence: float
    n_resamples: int
    seed: int
    summaries: tuple[MethodSummary, ...]
    comparisons: tuple[PairedComparison, ...]
    friedman: FriedmanResult

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists instead of tuples)."""
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def summarize_method(method: str, values: Mapping[int, float], *, n_resamples: int = 10_000,
                     confidence: float = 0.95, seed: int = 0) -> MethodSummary:
    """Mean, standard deviation (ddof=1), range and bootstrap CI of one method's per-run bests."""
    runs = tuple(sorted(values))
    x = np.array([values[run] for run in runs], dtype=float)
    ci = bootstrap_mean_ci(x, n_resamples=n_resamples, confidence=confidence, seed=seed)
    return MethodSummary(method=method, n_runs=len(runs), runs=runs, mean=float(x.mean()),
                         std=float(x.std(ddof=1)) if x.size > 1 else None, minimum=float(x.min()),
                         maximum=float(x.max()), ci_low=ci[0] if ci else None, ci_high=ci[1] if ci else None)


def _untestable(d: np.ndarray) -> str | None:
    if d.size < 2:
        return f"needs at least 2 paired runs, got {d.size}"
    if np.all(d == 0):
        return "all paired differences are zero"
    return None


def _wilcoxon(d: np.ndarray) -> tuple[float | None, float | None, str | None]:
    reason = _untestable(d)
    if reason:
        return None, None, reason
    result = scipy_stats.wilcoxon(d)
    return float(result.statistic), float(result.pvalue), None


def _paired_t(method: np.ndarray, reference: np.ndarray) -> tuple[float | None, float | None, str | None]:
    d = method - reference
    reason = _untestable(d)
    if reason is None and _constant(d):
        reason = f"paired differences have zero variance (all {d[0]:+.6g})"
    if reason:
        return None, None, reason
    result = scipy_stats.ttest_rel(method, reference)
    return float(result.statistic), float(result.pvalue), None


def paired_comparison(method: str, values: Mapping[int, float], reference: str,
                      reference_values: Mapping[int, float], *, n_resamples: int = 10_000,
                      confidence: float = 0.95, seed: int = 0) -> PairedComparison:
    """Wilcoxon signed-rank and paired t-test of ``method - reference`` over their common runs.

    Also the bootstrap CI of the mean difference (pairs resampled), Cohen's d_z and the
    matched-pairs rank-biserial correlation. Holm-adjusted p-values are filled in by
    :func:`analyze_methods`, which knows the whole family of comparisons.
    """
    runs = tuple(sorted(set(values) & set(reference_values)))
    a = np.array([values[run] for run in runs], dtype=float)
    b = np.array([reference_values[run] for run in runs], dtype=float)
    d = a - b
    ci = bootstrap_mean_ci(d, n_resamples=n_resamples, confidence=confidence, seed=seed)
    w_stat, w_p, w_reason = _wilcoxon(d)
    t_stat, t_p, t_reason = _paired_t(a, b)
    return PairedComparison(
        method=method, reference=reference, n_pairs=len(runs), runs=runs,
        mean_difference=float(d.mean()) if d.size else None, ci_low=ci[0] if ci else None,
        ci_high=ci[1] if ci else None, cohens_dz=cohens_dz(d), rank_biserial=rank_biserial(d),
        wilcoxon_statistic=w_stat, wilcoxon_p=w_p, wilcoxon_reason=w_reason,
        t_statistic=t_stat, t_p=t_p, t_reason=t_reason)


def friedman_test(per_method: Mapping[str, Mapping[int, float]]) -> FriedmanResult:
    """Friedman test over the runs that every method has; needs 3+ methods and 2+ such runs."""
    methods = tuple(sorted(per_method))
    common = set.intersection(*(set(v) for v in per_method.values())) if per_method else set()
    runs = tuple(sorted(common))
    if len(methods) < 3:
        return FriedmanResult(methods, runs, None, None, f"needs at least 3 methods, got {len(methods)}")
    if len(runs) < 2:
        return FriedmanResult(methods, runs, None, None,
                              f"needs at least 2 runs shared by all methods, got {len(runs)}")
    samples = [np.array([per_method[m][run] for run in runs], dtype=float) for m in methods]
    if all(np.all(s == s[0]) for s in np.stack(samples, axis=1)):
        return FriedmanResult(methods, runs, None, None, "all methods tie in every run")
    result = scipy_stats.friedmanchisquare(*samples)
    return FriedmanResult(methods, runs, float(result.statistic), float(result.pvalue), None)


def analyze_methods(data: Any, *, reference: str | None = "multi_agent", metric: str = "top1_after",
                    group: str = "method", n_resamples: int = 10_000, confidence: float = 0.95,
                    seed: int = 0) -> StatisticsReport:
    """Per-method summaries, paired comparisons against ``reference`` (Holm across methods), Friedman.

    Args:
        data: The results table (pyarrow or pandas), or the output of :func:`best_per_run`.
        reference: Method the others are compared with; when absent from the data the first
            method in sorted order is used, and no comparison is made for a single method.
        metric: Accuracy column; the best per (method, run) is used.
        group: Column naming the series compared.
        n_resamples: Bootstrap resamples.
        confidence: Confidence level of the bootstrap intervals.
        seed: Seed of the bootstrap resampling.
    """
    frame = _frame(data)
    best = frame if "best" in frame.columns else best_per_run(frame, metric, group)
    per_method: dict[str, dict[int, float]] = {}
    for row in best.itertuples(index=False):
        per_method.setdefault(str(getattr(row, group)), {})[int(row.run)] = float(row.best)
    options = dict(n_resamples=n_resamples, confidence=confidence, seed=seed)
    summaries = tuple(summarize_method(m, per_method[m], **options) for m in sorted(per_method))
    if reference not in per_method:
        reference = min(per_method) if per_method else None
    comparisons = [paired_comparison(m, per_method[m], reference, per_method[reference], **options)
                   for m in sorted(per_method) if m != reference]
    w_holm = holm_adjust([c.wilcoxon_p for c in comparisons])
    t_holm = holm_adjust([c.t_p for c in comparisons])
    comparisons = [PairedComparison(**{**asdict(c), "runs": c.runs, "wilcoxon_p_holm": w, "t_p_holm": t})
                   for c, w, t in zip(comparisons, w_holm, t_holm)]
    return StatisticsReport(metric=metric, reference=reference, confidence=confidence, n_resamples=n_resamples,
                            seed=seed, summaries=summaries, comparisons=tuple(comparisons),
                            friedman=friedman_test(per_method))
