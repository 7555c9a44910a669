"""Adaptive BatchNorm: the statistics are re-estimated as the plain mean over the batches, nothing
else changes, and on a trained model pruned hard it restores accuracy the stale statistics lose."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from multi_agent_pruning.core.engine import apply_strategy
from multi_agent_pruning.core.evaluation import evaluate, has_batchnorm, recalibrate_batchnorm
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.data import create_loaders
from multi_agent_pruning.testing.tiny import TinyResNet, calibration_batches, train_briefly


def test_statistics_are_the_mean_over_the_batches_and_nothing_else_changes():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3, momentum=0.3), nn.ReLU())
    model.eval()
    batches = [(torch.randn(4, 1, 8, 8) * (i + 1), torch.zeros(4)) for i in range(3)]
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    assert recalibrate_batchnorm(model, batches, max_batches=2) == 2
    outputs = [model[0](x) for x, _ in batches[:2]]
    expected_mean = torch.stack([o.mean(dim=(0, 2, 3)) for o in outputs]).mean(dim=0)
    assert torch.allclose(model[1].running_mean, expected_mean, atol=1e-6)
    assert model[1].momentum == 0.3 and not model.training and not model[1].training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    plain = nn.Sequential(nn.Linear(4, 2))
    assert not has_batchnorm(plain) and recalibrate_batchnorm(plain, batches, max_batches=2) == 0


def test_adaptive_bn_recovers_accuracy_after_a_hard_prune(digits):
    # Its own trained model, not the session's trained_tiny_resnet: using that one here, first,
    # made test_engine's taylor-vs-random test fail with one torch thread (order-dependent state).
    torch.manual_seed(1)
    trained = train_briefly(TinyResNet(), digits)
    pruned = apply_strategy(trained, Strategy(importance="l1", target_reduction=0.7, global_pruning=False),
                            torch.randn(1, 1, 16, 16), calibration=calibration_batches(digits)).model
    assert has_batchnorm(pruned)
    _, val = create_loaders(digits, 256)
    train, _ = create_loaders(digits, 64, seed=0)
    before = evaluate(pruned, val, device="cpu")["top1"]
    adapted = copy.deepcopy(pruned)
    assert recalibrate_batchnorm(adapted, train, max_batches=8, device="cpu") == 8
    after = evaluate(adapted, val, device="cpu")["top1"]
    assert after > before + 0.05, (before, after)
    assert evaluate(pruned, val, device="cpu")["top1"] == pytest.approx(before)  # the original is untouched
