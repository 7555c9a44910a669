"""The small dataset models: patch choice, prunability with torch-pruning, trainability."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torch_pruning as tp
from sklearn.datasets import load_digits

from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.models import create_model
from multi_agent_pruning.models.small import pick_patch_size
from multi_agent_pruning.utils.metrics import compute_macs, compute_params


@pytest.mark.parametrize(("side", "patch"), [(16, 2), (28, 4), (32, 4), (64, 8), (224, 28)])
def test_pick_patch_size(side: int, patch: int) -> None:
    assert pick_patch_size(side) == patch
    assert 16 <= (side // patch) ** 2 <= 64


@pytest.mark.parametrize("side", [17, 3])
def test_pick_patch_size_rejects_unsplittable_sides(side: int) -> None:
    with pytest.raises(ConfigurationError, match=f"input_size {side} cannot be split"):
        pick_patch_size(side)


def test_compact_cnn_layout() -> None:
    model = create_model("compact_cnn", in_chans=3, num_classes=10)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs if c.kernel_size == (3, 3)] == [32, 32, 32, 64, 64, 128, 128]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules()) == 9
    assert model.get_classifier() is model.head
    assert (model.head.in_features, model.head.out_features) == (128, 10)


def test_compact_cnn_dependency_graph_and_half_prune() -> None:
    torch.manual_seed(0)
    model = create_model("compact_cnn", in_chans=1, input_size=16).eval()
    example = torch.randn(1, 1, 16, 16)
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example)
    groups = list(graph.get_all_groups(ignored_layers=[model.head], root_module_types=[torch.nn.Conv2d]))
    # Residual additions couple every conv writing into a stage's sum: stem + 3 stages, plus
    # the first conv of each block.
    assert len(groups) == 6
    macs_before, params_before = compute_macs(model, (1, 1, 16, 16)), compute_params(model)

    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=[model.head],
    )
    pruner.step()

    assert model.head.in_features == 64
    assert [stage[0].conv1.out_channels for stage in model.stages] == [16, 32, 64]
    assert model(torch.randn(4, 1, 16, 16)).shape == (4, 10)
    assert compute_params(model) < 0.3 * params_before
    assert compute_macs(model, (1, 1, 16, 16)) < 0.3 * macs_before


def test_deit_micro_prunes_heads_and_channels() -> None:
    torch.manual_seed(0)
    model = create_model("deit_micro", in_chans=3, input_size=32).eval()
    example = torch.randn(1, 3, 32, 32)
    params_before = compute_params(model)
    pruner = tp.pruner.MetaPruner(
        model,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=0.5,
        ignored_layers=[model.head],
        num_heads={block.attn.qkv: block.attn.num_heads for block in model.blocks},
        prune_num_heads=True,
        prune_head_dims=False,
        head_pruning_ratio=0.5,
        unwrapped_parameters=[(model.cls_token, 2), (model.pos_embed, 2)],  # the embedding dim
    )
    pruner.step()
    for block in model.blocks:  # timm's Attention keeps these as plain attributes
        attn = block.attn
        attn.num_heads = pruner.num_heads[attn.qkv]
        attn.head_dim = attn.qkv.out_features // (3 * attn.num_heads)
        attn.attn_dim = attn.num_heads * attn.head_dim
        assert attn.num_heads < 3 and attn.head_dim == 32
    assert model.patch_embed.proj.out_channels == 48
    assert model.blocks[0].mlp.fc1.in_features == 48
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert compute_params(model) < 0.5 * params_before


def test_compact_cnn_learns_digits() -> None:
    torch.manual_seed(0)
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32).unsqueeze(1) / 16.0
    images = F.interpolate(images, size=16, mode="bilinear", align_corners=False)
    labels = torch.tensor(digits.target)
    train_x, train_y, test_x, test_y = images[:1400], labels[:1400], images[1400:], labels[1400:]
    model = create_model("compact_cnn", in_chans=1, input_size=16, num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(2):
        order = torch.randperm(len(train_x))
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            loss = F.cross_entropy(model(train_x[batch]), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    # 44 steps are too few for BatchNorm's running averages (momentum 0.1) to catch up with
    # the weights, so they are re-estimated once with a cumulative average, as is standard.
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None
        model(train_x)
    model.eval()
    with torch.no_grad():
        accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    assert accuracy > 0.9
