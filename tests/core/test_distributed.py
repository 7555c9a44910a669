"""Data-parallel fine-tuning through Ray Train: gloo on CPU with two workers."""

from __future__ import annotations

import pytest
import torch

from multi_agent_pruning.core.training import FineTuneConfig
from multi_agent_pruning.data import load_dataset
from multi_agent_pruning.core.distributed import DistributedSettings, distributed_fine_tune
from multi_agent_pruning.testing.tiny import TinyResNet, accuracy


@pytest.mark.slow
def test_gloo_world_size_two_trains_the_model(local_ray):
    torch.manual_seed(0)
    bundle = load_dataset("digits")
    model = TinyResNet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    dense_accuracy = accuracy(model, bundle)
    summary = distributed_fine_tune(model, bundle.train, FineTuneConfig(epochs=0.0, steps=30, lr=3e-3),
                                    DistributedSettings(world_size=2, backend="gloo", cpus_per_worker=1.0),
                                    batch_size=32, seed=0)
    assert summary["world_size"] == 2 and summary["steps"] == 30
    assert torch.isfinite(torch.tensor(summary["final_loss"]))
    changed = [k for k, v in model.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert len(changed) > 10  # rank 0's trained weights came back
    assert accuracy(model, bundle) > dense_accuracy + 0.2  # 30 data-parallel steps learn something
