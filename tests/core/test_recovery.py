"""The final recovery: an interrupted and resumed run gives the weights of one that ran through,
the schedule and averages are those asked for, and bad checkpoints are refused by name."""

from __future__ import annotations

import copy

import pytest
import torch

from multi_agent_pruning.core.engine import apply_strategy
from multi_agent_pruning.core.evaluation import evaluate
from multi_agent_pruning.core.recovery import CHECKPOINT_FILE, RecoveryConfig, recover
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.data import create_loaders
from multi_agent_pruning.exceptions import CheckpointError, ConfigurationError
from multi_agent_pruning.testing.tiny import calibration_batches


class _Interrupt(Exception):
    pass


@pytest.fixture(scope="module")
def pruned(trained_tiny_resnet, digits):
    """The trained tiny ResNet with 60 % of its MACs removed (a strategy re-applied from the dense model)."""
    def make():
        return apply_strategy(trained_tiny_resnet, Strategy(importance="l2", target_reduction=0.6,
                                                            global_pruning=False),
                              torch.randn(1, 1, 16, 16), calibration=calibration_batches(digits)).model
    return make


def _loaders(digits, seed=0):
    _, val = create_loaders(digits, 256)
    return (lambda epoch: create_loaders(digits, 64, seed=seed * 1000 + epoch)[0]), val


def _run(make, teacher, digits, folder, config, **kwargs):
    model = make()
    train_for, val = _loaders(digits, config.seed)
    result = recover(model, train_for, val, config, checkpoint_dir=folder, teacher=teacher, device="cpu", **kwargs)
    return model, result


def test_an_interrupted_recovery_resumes_to_the_same_weights(pruned, trained_tiny_resnet, digits, tmp_path):
    config = RecoveryConfig(epochs=3, lr=3e-3, warmup_epochs=0.5, kd_weight=0.5, ema_decay=0.9, seed=7)
    through, full = _run(pruned, trained_tiny_resnet, digits, tmp_path / "through", config)
    assert full.epochs == 3 and [e["epoch"] for e in full.history] == [1, 2, 3] and full.ema
    assert full.top1 == full.history[-1]["top1"]  # the last epoch's, not the best one's

    def stop_after_first(entry):
        if entry["epoch"] == 1:
            raise _Interrupt()

    with pytest.raises(_Interrupt):
        _run(pruned, trained_tiny_resnet, digits, tmp_path / "cut", config, on_epoch=stop_after_first)
    resumed_model, resumed = _run(pruned, trained_tiny_resnet, digits, tmp_path / "cut", config, resume=True)
    assert resumed.resumed_from == 1 and [e["epoch"] for e in resumed.history] == [1, 2, 3]
    for (name, a), b in zip(through.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), name
    assert [e["top1"] for e in resumed.history] == [e["top1"] for e in full.history]
    assert [e["train_loss"] for e in resumed.history] == [e["train_loss"] for e in full.history]
    # The model handed back is the evaluated one (the average), in eval mode.
    _, val = _loaders(digits)
    assert evaluate(resumed_model, val, device="cpu")["top1"] == pytest.approx(resumed.top1)
    assert not resumed_model.training


def test_recovery_raises_the_pruned_accuracy_and_follows_its_schedule(pruned, trained_tiny_resnet, digits, tmp_path):
    model = pruned()
    _, val = _loaders(digits)
    before = evaluate(model, val, device="cpu")["top1"]
    config = RecoveryConfig(epochs=2, lr=3e-3, warmup_epochs=1, kd_weight=0.0, seed=1)
    train_for, _ = _loaders(digits, 1)
    result = recover(model, train_for, val, config, checkpoint_dir=tmp_path, device="cpu")
    steps = len(train_for(0))
    assert [e["steps"] for e in result.history] == [steps, steps]
    # Warm-up ends at the peak after one epoch; the cosine reaches 0 at the last step.
    assert result.history[0]["lr_end"] == pytest.approx(3e-3)
    assert result.history[1]["lr_end"] == pytest.approx(0.0, abs=1e-12)
    assert result.top1 > before + 0.05, (before, result.top1)
    # Resuming a finished recovery trains nothing more.
    again = recover(pruned(), train_for, val, config, checkpoint_dir=tmp_path, device="cpu", resume=True)
    assert again.resumed_from == 2 and again.top1 == result.top1


def test_bad_settings_and_checkpoints_are_refused_by_name(pruned, trained_tiny_resnet, digits, tmp_path):
    with pytest.raises(ConfigurationError, match="recovery.epochs"):
        RecoveryConfig.build(epochs=0)
    with pytest.raises(ConfigurationError, match="recovery.kd_weight"):
        _run(pruned, None, digits, tmp_path / "kd", RecoveryConfig(epochs=1, kd_weight=0.5))
    config = RecoveryConfig(epochs=2, kd_weight=0.0)

    def stop(entry):
        raise _Interrupt()

    with pytest.raises(_Interrupt):
        _run(pruned, None, digits, tmp_path / "a", config, on_epoch=stop)
    with pytest.raises(CheckpointError, match="lr differ"):
        _run(pruned, None, digits, tmp_path / "a", config.model_copy(update={"lr": 0.01}), resume=True)
    other = copy.deepcopy(trained_tiny_resnet)  # the dense model: not the structure the checkpoint holds
    with pytest.raises(CheckpointError, match="does not fit the re-pruned model"):
        recover(other, _loaders(digits)[0], _loaders(digits)[1], config, checkpoint_dir=tmp_path / "a",
                device="cpu", resume=True)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read the recovery checkpoint"):
        _run(pruned, None, digits, tmp_path / "b", config, resume=True)

