"""Kill `mapruner finetune` (the final recovery of a finished run) after one epoch and resume it.

Slow (a search, then three recovery processes): out of `make test`, run by CI in
`make test-reliability`. The exact-resume property itself (same weights as a recovery that ran
through) is tested in tests/core/test_recovery.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import torch

from multi_agent_pruning.core.recovery import CHECKPOINT_FILE
from multi_agent_pruning.orchestrator.experiment import run_experiment
from multi_agent_pruning.orchestrator.recover import STOP_AFTER_ENV, finetune_run
from multi_agent_pruning.results import ResultStore
from multi_agent_pruning.config import load_config

pytestmark = pytest.mark.slow

FAST = ["search.trials=3", "search.max_iterations=2", "search.batch_size=2", "search.convergence_threshold=0",
        "finetune.steps=5", "model.train_steps=40", "evaluation.latency=false",
        "agents.profiling_agent.calibration_batches=1"]


@pytest.fixture
def finished_run(local_ray, tmp_path):
    out = tmp_path / "run"
    cfg = load_config("tests/support/quickstart_single.yaml",
                      overrides=FAST + [f"precomputation.cache_dir={tmp_path / 'cache'}"])
    summary = run_experiment(cfg, output_dir=out, progress=False)
    assert summary["final_accuracy"] is not None
    return out, summary


def _finetune(run_dir, *args, env=None):
    return subprocess.run([sys.executable, "-m", "multi_agent_pruning", "finetune", str(run_dir), "--epochs", "3",
                           "--batch-size", "256", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_finetune_killed_after_one_epoch_resumes_without_losing_or_repeating_one(finished_run):
    run_dir, summary = finished_run
    best = summary["best_trial_id"]
    folder = run_dir / "recovered" / "macs-remove-50pct" / best
    killed = _finetune(run_dir, env={STOP_AFTER_ENV: "1"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert (folder / "checkpoint" / CHECKPOINT_FILE).exists()
    store = ResultStore(run_dir / "results")
    assert store.rows(stage="final") == []  # nothing half-done is stored as a result
    # Without --resume the interrupted recovery is not thrown away: one clear error.
    refused = _finetune(run_dir)
    assert refused.returncode == 2 and "pass --resume" in refused.stderr, refused.stderr[-2000:]
    resumed = _finetune(run_dir, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    record = json.loads((folder / "recovery.json").read_text())
    assert [e["epoch"] for e in record["history"]] == [1, 2, 3]
    assert record["resumed_from"] == [1]  # the second session started after epoch 1
    (final,) = store.rows(stage="final")
    assert (final.stage, final.source_trial_id, final.recovery_epochs, final.status) == ("final", best, 3, "ok")
    assert final.top1_after == record["history"][-1]["top1"]
    source = next(r for r in store.rows() if r.trial_id == best)
    assert (final.macs, final.params, final.strategy_json) == (source.macs, source.params, source.strategy_json)
    assert final.base_top1 is not None and final.top1_before is not None
    assert len(store.rows()) == 3  # the search rows, unchanged and still all a reader gets by default

    written = json.loads((run_dir / "summary.json").read_text())
    recovered = written["recovered"]
    assert recovered["final_accuracy"] == final.top1_after and recovered["epochs"] == 3
    assert recovered["proxy_accuracy"] == summary["final_accuracy"] == source.top1_after
    assert (run_dir / "recovered" / "macs-remove-50pct" / best / "model" / "model.safetensors").exists()
    assert recovered["model_path"].endswith(f"{best}/model")
    assert written["final_accuracy"] == summary["final_accuracy"]  # the search's own fields stay

    # Recovered already, with the same settings: not again.
    again = finetune_run(run_dir, epochs=3, batch_size=256)
    assert len(ResultStore(run_dir / "results").rows(stage="final")) == 1
    assert again["recovered"]["final_accuracy"] == final.top1_after


def test_data_parallel_recovery_with_two_gloo_workers(local_ray, tmp_path):
    """hardware.distributed: the recovery across two Ray Train workers (gloo on CPU) with DDP."""
    from multi_agent_pruning.core.distributed import DistributedSettings, distributed_recover
    from multi_agent_pruning.core.engine import apply_strategy
    from multi_agent_pruning.core.evaluation import evaluate
    from multi_agent_pruning.core.recovery import RecoveryConfig
    from multi_agent_pruning.core.strategy import Strategy
    from multi_agent_pruning.data import create_loaders, load_dataset
    from multi_agent_pruning.testing.tiny import TinyResNet, calibration_batches, train_briefly

    digits = load_dataset("digits")
    torch.manual_seed(0)
    trained_tiny_resnet = train_briefly(TinyResNet(), digits)

    def pruned():
        return apply_strategy(trained_tiny_resnet, Strategy(importance="l2", target_reduction=0.6, global_pruning=False),
                              torch.randn(1, 1, 16, 16), calibration=calibration_batches(digits)).model

    def _loaders(data):
        _, val = create_loaders(data, 256)
        return None, val

    model = pruned()
    _, val = _loaders(digits)
    before = evaluate(model, val, device="cpu")["top1"]
    config = RecoveryConfig(epochs=2, lr=3e-3, warmup_epochs=0.5, kd_weight=0.5, batch_size=32, seed=3)
    settings = DistributedSettings(world_size=2, backend="gloo", cpus_per_worker=1.0)
    result = distributed_recover(model, digits.train, digits.val, config, settings,
                                 checkpoint_dir=str(tmp_path / "ckpt"), teacher=trained_tiny_resnet,
                                 storage_path=str(tmp_path / "ray"))
    per_rank = len(digits.train) // 2  # DistributedSampler with drop_last: each worker's shard
    assert result.world_size == 2 and result.epochs == 2
    assert [e["steps"] for e in result.history] == [per_rank // 32] * 2
    assert (tmp_path / "ckpt" / CHECKPOINT_FILE).exists()
    # Rank 0's weights came back: the model evaluates as the workers measured it.
    assert evaluate(model, val, device="cpu")["top1"] == pytest.approx(result.top1)
    assert result.top1 > before + 0.05, (before, result.top1)
    # The workers continue from the checkpoint they find: a finished one trains nothing more.
    again = distributed_recover(pruned(), digits.train, digits.val, config, settings,
                                checkpoint_dir=str(tmp_path / "ckpt"), teacher=trained_tiny_resnet,
                                storage_path=str(tmp_path / "ray"))
    assert again.resumed_from == 2 and again.top1 == result.top1


def test_prune_recover_runs_the_recovery_after_the_search(tmp_path):
    """`mapruner prune --recover`: the search, then `mapruner finetune` with its defaults."""
    out = tmp_path / "run"
    args = [sys.executable, "-m", "multi_agent_pruning", "prune", "--config", "tests/support/quickstart_single.yaml",
            "--output-dir", str(out), "--trials", "3", "--recover", "--set", f"precomputation.cache_dir={tmp_path / 'c'}"]
    for override in FAST:
        if not override.startswith("search.trials"):
            args += ["--set", override]
    done = subprocess.run(args, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"})
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recovered"]["epochs"] == 10 and summary["recovered"]["source_trial_id"] == summary["best_trial_id"]
    assert "recovered       remove 50% of MACs #1" in done.stdout
    (final,) = ResultStore(out / "results").rows(stage="final")
    assert final.top1_after == summary["recovered"]["final_accuracy"]
