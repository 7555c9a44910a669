"""The full acceptance matrix of the engine (slow: ``make test-slow``).

deit_tiny, resnet18, resnet50 and convnext_tiny at 224 px (random init: shapes and MACs only),
every criterion x global on/off x isomorphic on/off x 30/50/70 % MACs reduction.
"""

from __future__ import annotations

import itertools

import pytest
import timm
import torch

from multi_agent_pruning.core import Strategy, apply_strategy, count_macs_params
from multi_agent_pruning.core.importance import criteria

pytestmark = pytest.mark.slow

MODELS = ["deit_tiny_patch16_224", "resnet18", "resnet50", "convnext_tiny"]
_cache: dict[str, torch.nn.Module] = {}


def dense(name: str) -> torch.nn.Module:
    if name not in _cache:
        torch.manual_seed(0)
        _cache[name] = timm.create_model(name).eval()
    return _cache[name]


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("criterion", criteria())
@pytest.mark.parametrize("global_pruning,isomorphic", list(itertools.product([True, False], [True, False])))
@pytest.mark.parametrize("reduction", [0.3, 0.5, 0.7])
def test_matrix(name, criterion, global_pruning, isomorphic, reduction):
    model = dense(name)
    x = torch.randn(1, 3, 224, 224)
    g = torch.Generator().manual_seed(0)
    calib = [(torch.randn(2, 3, 224, 224, generator=g), torch.randint(0, 1000, (2,), generator=g))]
    strategy = Strategy(importance=criterion, global_pruning=global_pruning, isomorphic=isomorphic,
                        target_reduction=reduction)
    result = apply_strategy(model, strategy, x, calib)
    assert abs(result.error) <= 0.005, f"{100 * result.error:.3f}% from the target"
    macs, _ = count_macs_params(result.model, x)
    assert abs(macs / (result.base_macs * (1 - reduction)) - 1) <= 0.005
    assert result.model(x).shape == (1, 1000)
