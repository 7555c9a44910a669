"""evaluate() against hand-computed accuracies and losses; device resolution."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

from multi_agent_pruning.core.evaluation import evaluate, logits_of, resolve_device
from multi_agent_pruning.exceptions import ConfigurationError

# Six samples, six classes. Label ranks among each row's logits: 1, 2, 6, 1, 5, 3.
LOGITS = [
    [5.0, 1.0, 0.0, 0.0, 0.0, 0.0],   # label 0: rank 1
    [3.0, 2.0, 0.5, 0.1, 0.0, -1.0],  # label 1: rank 2
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],   # label 0: rank 6
    [0.0, 0.0, 0.0, 9.0, 0.0, 0.0],   # label 3: rank 1
    [6.0, 5.0, 4.0, 3.0, 2.0, 1.0],   # label 4: rank 5
    [1.0, 3.0, 2.0, 0.0, 4.0, -2.0],  # label 2: rank 3
]
LABELS = [0, 1, 0, 3, 4, 2]


class FixedLogits(nn.Module):
    """Returns the row of a fixed logits table selected by each input's sample index."""

    def __init__(self, table: list[list[float]]) -> None:
        super().__init__()
        self.register_buffer("table", torch.tensor(table))
        self.scale = nn.Parameter(torch.ones(()))  # gives the module a parameter and a device
        self.seen_training: list[bool] = []
        self.seen_grad: list[bool] = []

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        self.seen_training.append(self.training)
        self.seen_grad.append(torch.is_grad_enabled())
        return self.table[index.long()] * self.scale


def _loader(labels=LABELS, batch_size: int = 4) -> DataLoader:
    return DataLoader(TensorDataset(torch.arange(len(labels)), torch.tensor(labels)), batch_size=batch_size)


def _cross_entropy(row: list[float], label: int) -> float:
    return math.log(sum(math.exp(v) for v in row)) - row[label]


def test_topk_accuracy_and_loss_equal_hand_computed_values():
    metrics = evaluate(FixedLogits(LOGITS), _loader(), topk=(1, 2, 3, 5), device="cpu")
    assert metrics["top1"] == pytest.approx(2 / 6)
    assert metrics["top2"] == pytest.approx(3 / 6)
    assert metrics["top3"] == pytest.approx(4 / 6)
    assert metrics["top5"] == pytest.approx(5 / 6)
    expected_loss = sum(_cross_entropy(r, y) for r, y in zip(LOGITS, LABELS)) / 6
    assert metrics["loss"] == pytest.approx(expected_loss, rel=1e-6)
    assert (metrics["samples"], metrics["batches"]) == (6, 2)
    assert metrics["seconds"] >= 0


def test_default_keys_and_fewer_classes_than_k():
    table = [[2.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 1.0, 2.0]]
    metrics = evaluate(FixedLogits(table), _loader([0, 2, 1]), device="cpu")
    assert set(metrics) == {"top1", "top5", "loss", "samples", "batches", "seconds"}
    assert metrics["top1"] == pytest.approx(1 / 3)
    assert metrics["top5"] == 1.0  # only 3 classes: every label is in the top 3


def test_max_batches_limits_the_samples():
    metrics = evaluate(FixedLogits(LOGITS), _loader(), max_batches=1, device="cpu")
    assert (metrics["samples"], metrics["batches"]) == (4, 1)
    assert metrics["top1"] == pytest.approx(2 / 4)


def test_runs_in_eval_mode_without_grad_and_restores_modes():
    model = nn.Sequential(FixedLogits(LOGITS), nn.Dropout(0.5))
    model.train()
    model[1].eval()  # a mixed state must come back exactly
    evaluate(model, _loader(), device="cpu")
    assert model[0].seen_training == [False, False]
    assert model[0].seen_grad == [False, False]
    assert (model.training, model[0].training, model[1].training) == (True, True, False)


def test_empty_loader_and_bad_settings_are_errors():
    with pytest.raises(ConfigurationError, match="loader: must yield at least one sample"):
        evaluate(FixedLogits(LOGITS), _loader([]), device="cpu")
    with pytest.raises(ConfigurationError) as info:
        evaluate(FixedLogits(LOGITS), _loader(), topk=(0,), max_batches=0, device="cpu")
    assert [issue.path for issue in info.value.issues] == ["topk", "max_batches"]


def test_logits_of_averages_tuples():
    a, b = torch.tensor([[1.0, 3.0]]), torch.tensor([[3.0, 1.0]])
    assert torch.equal(logits_of((a, b)), torch.tensor([[2.0, 2.0]]))
    assert logits_of(a) is a
    with pytest.raises(TypeError, match="got dict"):
        logits_of({"logits": a})


def test_resolve_device():
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device().type == auto
    assert resolve_device("auto").type == auto
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ConfigurationError, match="device: must be 'auto'"):
        resolve_device("tpu-ish")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigurationError, match=f"CUDA device {count} is not available"):
        resolve_device(f"cuda:{count}")
