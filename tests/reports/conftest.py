"""A small results table for the report tests, and one with hostile text in every free-text field.

Clean rows (experiment ``demo``, DeiT-Base on ImageNet; trials listed in finishing order):

    multi_agent run 0: failed; ok 60 % @ 5.0 G; ok 70 % @ 4.2 G; ok 65 % @ 3.0 G
    multi_agent run 1: ok 72 % @ 4.16 G; rejected
    taylor      run 0: ok 55 % @ 5.0 G; ok 50 % @ 2.6 G
    taylor      run 1: ok 58 % @ 4.5 G; failed
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

from multi_agent_pruning.results import ResultStore, TrialResult

START = dt.datetime(2025, 6, 1, 8, 0, 0, tzinfo=dt.timezone.utc)
BASE_MACS = 17.58e9
SCRIPT = "<script>window.__pwned=1</script>"
IMG = "<img src=x onerror=window.__pwned=2>"


def _ok(method, run, index, top1, macs_g, prune, iteration=0, experiment="demo", reasoning=None):
    strategy = {"importance": "taylor", "target_kind": "macs", "target_reduction": 0.75}
    if reasoning is not None:
        strategy["reasoning"] = reasoning
    macs = macs_g * 1e9
    return TrialResult(
        experiment=experiment, run=run, method=method, model="deit_base", dataset="imagenet", seed=run,
        trial_id=f"{method[:12]}-{run}-{index}", iteration=iteration, strategy_json=json.dumps(strategy),
        importance="taylor", target_kind="macs", target_reduction=0.75, base_macs=BASE_MACS,
        base_params=86_600_000, macs=macs, params=int(macs / 200), macs_reduction=1 - macs / BASE_MACS,
        top1_before=top1 / 2, top1_after=top1, seconds_total=prune + 9.0, seconds_prune=prune,
        seconds_finetune=8.0, seconds_evaluate=1.0, status="ok", started_at=START,
        finished_at=START + dt.timedelta(minutes=index))


def _not_ok(method, run, index, error, status="failed", iteration=0, experiment="demo", **measured):
    return TrialResult.failed(
        experiment=experiment, run=run, method=method, model="deit_base", dataset="imagenet", seed=run,
        trial_id=f"{method[:12]}-{run}-{index}", iteration=iteration, target_kind="macs", error=error,
        status=status, started_at=START, finished_at=START + dt.timedelta(minutes=index), **measured)


def clean_rows() -> list[TrialResult]:
    return [
        _not_ok("multi_agent", 0, 1, RuntimeError("CUDA out of memory"), seconds_prune=0.5),
        _ok("multi_agent", 0, 2, 0.60, 5.0, prune=1.0),
        _ok("multi_agent", 0, 3, 0.70, 4.2, prune=2.0, iteration=1),
        _ok("multi_agent", 0, 4, 0.65, 3.0, prune=3.0, iteration=1),
        _ok("multi_agent", 1, 5, 0.72, 4.16, prune=4.0),
        _not_ok("multi_agent", 1, 6, "head ratio 0.9 above the safety limit 0.5", status="rejected"),
        _ok("taylor", 0, 7, 0.55, 5.0, prune=1.0),
        _ok("taylor", 0, 8, 0.50, 2.6, prune=1.0),
        _ok("taylor", 1, 9, 0.58, 4.5, prune=1.0),
        _not_ok("taylor", 1, 10, RuntimeError("CUDA out of memory")),
    ]


def hostile_rows() -> list[TrialResult]:
    """A method named like a script tag, whose reasoning and errors carry HTML payloads."""
    return [
        _ok(SCRIPT, 0, 11, 0.40, 4.0, prune=1.0, reasoning=f"{SCRIPT} {IMG}"),
        _ok(SCRIPT, 1, 12, 0.45, 4.1, prune=1.0, reasoning=IMG),
        _not_ok(SCRIPT, 1, 13, f"{IMG} {SCRIPT}"),
    ]


@pytest.fixture
def clean_store(tmp_path):
    store = ResultStore(tmp_path / "runs" / "demo" / "results")
    store.append(clean_rows())
    return store


@pytest.fixture
def hostile_store(tmp_path):
    store = ResultStore(tmp_path / "runs" / "demo" / "results")
    store.append(clean_rows() + hostile_rows())
    return store


@pytest.fixture(scope="session")
def clean_rows_factory():
    return clean_rows


# -- a sweep: 4 targets, 2 methods x 2 runs ---------------------------------------------------
#
# compact_cnn on digits, dense model 10 M MACs. Each (method, run, target) lists its ok trials as
# (top-1, MACs in M); the best is the first unless marked. The per-target means the tests check:
#
#   target (removed)   multi_agent best per run   mean / std (pp)     mean MACs   taylor best per run   mean
#   50 %               90 @ 5.0, 92 @ 5.0        91.0 / 1.41421     5.0 M       89 @ 5.0, 87 @ 5.0    88.0 / 1.41421
#   70 %               86 @ 2.9, 84 @ 3.1        85.0 / 1.41421     3.0 M       80 @ 3.0, 82 @ 3.0    81.0 / 1.41421
#   85 %               80 @ 1.5, 78 @ 1.5        79.0 / 1.41421     1.5 M       70 @ 1.5, 66 @ 1.5    68.0 / 2.82843
#   90 %               70 @ 1.0, 74 @ 1.0        72.0 / 2.82843     1.0 M       -, 50 @ 1.0           50.0 / -
SWEEP_BASE_MACS = 10e6
SWEEP_DENSE_TOP1 = 0.97  # the dense model's top-1, on every row (base_top1)
SWEEP_TRIALS = {
    # (method, run): {reduction: [(top1, macs in M), ...] in finishing order}
    ("multi_agent", 0): {0.5: [(0.88, 4.9), (0.90, 5.0)], 0.7: [(0.85, 3.0), (0.86, 2.9)], 0.85: [(0.80, 1.5)],
                         0.9: [(0.70, 1.0)]},
    ("multi_agent", 1): {0.5: [(0.92, 5.0)], 0.7: [(0.84, 3.1)], 0.85: [(0.78, 1.5)], 0.9: [(0.74, 1.0)]},
    ("taylor", 0): {0.5: [(0.89, 5.0)], 0.7: [(0.80, 3.0), (0.79, 2.8)], 0.85: [(0.70, 1.5)], 0.9: []},
    ("taylor", 1): {0.5: [(0.87, 5.0)], 0.7: [(0.82, 3.0)], 0.85: [(0.66, 1.5)], 0.9: [(0.50, 1.0)]},
}
SWEEP_REDUCTIONS = (0.5, 0.7, 0.85, 0.9)


def _sweep_ok(method, run, index, reduction, top1, macs_m, iteration):
    strategy = {"importance": "taylor", "target_kind": "macs", "target_reduction": reduction}
    macs = macs_m * 1e6
    return TrialResult(
        experiment="sweep", run=run, method=method, model="compact_cnn", dataset="digits", seed=run,
        trial_id=f"{method}-{run}-{index:02d}", iteration=iteration, strategy_json=json.dumps(strategy),
        importance="taylor", target_kind="macs", target_reduction=reduction, base_macs=SWEEP_BASE_MACS,
        base_params=50_000, base_top1=SWEEP_DENSE_TOP1, macs=macs, params=int(macs / 100),
        macs_reduction=1 - macs / SWEEP_BASE_MACS,
        top1_before=top1 / 2, top1_after=top1, seconds_total=3.0, seconds_prune=1.0, seconds_finetune=1.5,
        seconds_evaluate=0.5, status="ok", started_at=START, finished_at=START + dt.timedelta(minutes=index))


def sweep_rows() -> list[TrialResult]:
    rows = []
    for (method, run), per_target in SWEEP_TRIALS.items():
        index = 0
        for reduction in SWEEP_REDUCTIONS:
            for top1, macs_m in per_target[reduction]:
                index += 1
                rows.append(_sweep_ok(method, run, index, reduction, top1, macs_m, iteration=index))
        # A failed trial at the hardest target (taylor run 0 has nothing else there), and one
        # that failed before it had a strategy, hence no target.
        index += 1
        strategy = {"importance": "taylor", "target_kind": "macs", "target_reduction": 0.9}
        rows.append(TrialResult.failed(
            experiment="sweep", run=run, method=method, model="compact_cnn", dataset="digits", seed=run,
            trial_id=f"{method}-{run}-{index:02d}", iteration=index, strategy=strategy, error="diverged",
            started_at=START, finished_at=START + dt.timedelta(minutes=index)))
        rows.append(TrialResult.failed(
            experiment="sweep", run=run, method=method, model="compact_cnn", dataset="digits", seed=run,
            trial_id=f"{method}-{run}-{index + 1:02d}", iteration=index + 1, target_kind="macs",
            error="worker died", started_at=START, finished_at=START + dt.timedelta(minutes=index + 1)))
    return rows


@pytest.fixture
def sweep_store(tmp_path):
    store = ResultStore(tmp_path / "runs" / "sweep" / "results")
    store.append(sweep_rows())
    return store


@pytest.fixture(scope="session")
def sweep_rows_factory():
    return sweep_rows
