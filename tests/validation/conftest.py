"""A synthetic comparison: three methods x three runs of DeiT-Base on ImageNet, with known bests.

Best top-1 per (method, run):

    multi_agent  0.80  0.82  0.81
    taylor       0.78  0.79  0.77
    random       0.70  0.74  0.72

Each (method, run) also has a worse ok trial and one failed trial. multi_agent's run-1 best is at
4.20 G MACs and taylor's run-1 best at 4.16 G (both within 2 % of the 4.16 G paper target);
every other trial is at 5.0 G MACs.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from multi_agent_pruning.results import ResultStore, TrialResult

START = dt.datetime(2025, 5, 1, 9, 0, 0, tzinfo=dt.timezone.utc)
BEST = {"multi_agent": (0.80, 0.82, 0.81), "taylor": (0.78, 0.79, 0.77), "random": (0.70, 0.74, 0.72)}
BEST_MACS = {("multi_agent", 1): 4.20e9, ("taylor", 1): 4.16e9}
BASE_MACS = 17.58e9


def ok_row(*, method: str, run: int, trial_id: str, top1: float, macs: float = 5.0e9, iteration: int = 0,
           experiment: str = "cmp", model: str = "deit_base", dataset: str = "imagenet", **extra) -> TrialResult:
    """An ok trial with sizes derived from ``macs`` and fixed stage times."""
    values = dict(
        experiment=experiment, run=run, method=method, model=model, dataset=dataset, seed=run, trial_id=trial_id,
        iteration=iteration, strategy_json=json.dumps({"importance": "taylor"}), importance="taylor",
        target_kind="macs", target_value=4.16e9, base_macs=BASE_MACS, base_params=86_600_000, macs=macs,
        params=int(macs / 200), macs_reduction=1 - macs / BASE_MACS, top1_before=top1 / 2, top1_after=top1,
        seconds_total=10.0, seconds_prune=1.0, seconds_finetune=8.0, seconds_evaluate=1.0, status="ok",
        started_at=START, finished_at=START + dt.timedelta(seconds=10 + iteration))
    values.update(extra)
    return TrialResult(**values)


def failed_row(*, method: str, run: int, trial_id: str, experiment: str = "cmp", **extra) -> TrialResult:
    return TrialResult.failed(experiment=experiment, run=run, method=method, model="deit_base", dataset="imagenet",
                              seed=run, trial_id=trial_id, iteration=1, target_kind="macs",
                              error=RuntimeError("target unreachable"), started_at=START,
                              finished_at=START + dt.timedelta(seconds=30), **extra)


def comparison_rows() -> list[TrialResult]:
    rows = []
    for method, bests in BEST.items():
        for run, best in enumerate(bests):
            macs = BEST_MACS.get((method, run), 5.0e9)
            rows.append(ok_row(method=method, run=run, trial_id=f"{method}-{run}-a", top1=best, macs=macs))
            rows.append(ok_row(method=method, run=run, trial_id=f"{method}-{run}-b", top1=best - 0.05, iteration=1))
            rows.append(failed_row(method=method, run=run, trial_id=f"{method}-{run}-c"))
    return rows


@pytest.fixture
def comparison_store(tmp_path):
    """A ResultStore under tmp_path holding :func:`comparison_rows` (27 rows)."""
    store = ResultStore(tmp_path / "results")
    store.append(comparison_rows())
    return store


@pytest.fixture
def make_ok_row():
    """:func:`ok_row`, for tests that build their own rows."""
    return ok_row
