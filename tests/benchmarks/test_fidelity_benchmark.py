"""The multi-fidelity benchmark's plan and arithmetic (runs no search)."""

from __future__ import annotations

import pytest

from support.benchmark_scripts import load_benchmark

fidelity = load_benchmark("fidelity", "fidelity_benchmark")


def test_arms_share_the_strategy_budget_and_differ_in_scheduler_and_width():
    plan = fidelity.make_plan(fidelity.parse_args(["--settings", "fashion-cnn", "--trials", "12"]))
    assert fidelity.asha_base_steps(15) == 5 and fidelity.asha_base_steps(1) == 1
    fifo, n = fidelity.arm_overrides("fifo", plan, "fashion-cnn")
    assert n == 12 and "finetune.steps=15" in fifo and "evaluation.adaptive_bn_batches=8" in fifo
    asha, n = fidelity.arm_overrides("asha", plan, "fashion-cnn")
    assert n == 12 and {"finetune.steps=5", "search.scheduler=asha", "search.rungs=3"} <= set(asha)
    assert fidelity.arm_overrides("asha-half", plan, "fashion-cnn")[1] == 6
    assert not any("adaptive_bn" in o for o in fidelity.arm_overrides("fifo", plan, "digits-vit")[0])
    cfg, trials = fidelity.build_config("digits-cnn", "asha", plan, 500)
    assert (cfg.search.rung_budgets(), cfg.target.reduction, cfg.target.sweep, trials) == ((1, 3, 9), 0.8, None, 12)


def test_summary_means_over_seeds_and_steps_against_fifo():
    run = {"steps": 180, "proxy": 0.6, "recovered": 0.88, "gain": 0.28, "tau_before": 0.1, "tau_adaptive_bn": None}
    runs = {"fifo": [run, {**run, "recovered": 0.90, "gain": 0.30}],
            "asha-half": [{**run, "steps": 90, "recovered": 0.89, "gain": 0.05},
                          {**run, "steps": 110, "recovered": 0.91, "gain": -0.01}]}
    summary = fidelity.summarize(runs)
    assert summary["fifo"]["recovered"] == pytest.approx(0.89) and summary["fifo"]["steps_vs_fifo"] == 1.0
    half = summary["asha-half"]
    assert half["steps_vs_fifo"] == pytest.approx(100 / 180) and half["min_gain"] == -0.01
    assert half["recovered_per_seed"] == [0.89, 0.91] and half["tau_adaptive_bn"] is None
    lines = fidelity.format_setting("fashion-cnn", summary)
    assert lines[3] == ("| fashion-cnn | asha-half | 100 (0.56) | 0.6000 | 0.9000 (0.8900, 0.9100) | +0.0200 "
                        "(-0.0100) | 0.10 | - |")
