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
