"""Tiny models and helpers for tests and benchmarks: fast on 2 CPUs, real enough to prune."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["TinyResNet", "accuracy", "calibration_batches", "train_briefly"]


class TinyResNet(nn.Module):
    """A few residual conv blocks with BatchNorm: enough coupling to exercise DepGraph."""

    def __init__(self, in_chans: int = 1, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.block1 = self._block(width, width)
        self.down = nn.Sequential(nn.Conv2d(width, 2 * width, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * width), nn.ReLU())
        self.block2 = self._block(2 * width, 2 * width)
        self.head = nn.Linear(2 * width, num_classes)

    @staticmethod
    def _block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, 2 * cout, 3, padding=1, bias=False), nn.BatchNorm2d(2 * cout), nn.ReLU(),
            nn.Conv2d(2 * cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = F.relu(x + self.block1(x))
        x = self.down(x)
        x = F.relu(x + self.block2(x))
        return self.head(x.mean(dim=(2, 3)))


def train_briefly(model: nn.Module, bundle, steps: int = 150, seed: int = 0) -> nn.Module:
    from multi_agent_pruning.data import create_loaders

    torch.manual_seed(seed)
    train_loader, _ = create_loaders(bundle, batch_size=64, seed=seed)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    done = 0
    while done < steps:
        for x, y in train_loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            done += 1
            if done >= steps:
                break
    return model.eval()


def accuracy(model: nn.Module, bundle) -> float:
    from multi_agent_pruning.data import create_loaders

    _, val_loader = create_loaders(bundle, batch_size=256)
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for x, y in val_loader:
            correct += int((model(x).argmax(1) == y).sum())
            total += len(y)
    return correct / total


def calibration_batches(bundle, n: int = 2, batch_size: int = 32):
    from multi_agent_pruning.data import take_calibration_batches

    return take_calibration_batches(bundle, n, batch_size)


def tiny_profile(cache_dir: str, steps: int = 30, batches: int = 1) -> dict:
    """The profiling agent's profile of a TinyResNet trained ``steps`` steps on digits (seed 0)."""
    from multi_agent_pruning.agents import ProfilingAgent
    from multi_agent_pruning.data import load_dataset

    digits = load_dataset("digits")
    torch.manual_seed(0)
    model = train_briefly(TinyResNet(), digits, steps=steps)
    agent = ProfilingAgent({"cache_dir": str(cache_dir)})
    return agent.execute({"model": model, "model_name": "tiny", "dataset": "digits", "input_size": (1, 16, 16),
                          "calibration": calibration_batches(digits, n=batches)})["profile"]
