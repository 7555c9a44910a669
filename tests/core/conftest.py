"""Shared fixtures for the pruning core: tiny models, some trained on the embedded digits data."""

from __future__ import annotations

import pytest
import torch


from multi_agent_pruning.testing.tiny import TinyResNet, train_briefly


@pytest.fixture(scope="session")
def digits():
    from multi_agent_pruning.data import load_dataset

    return load_dataset("digits")


@pytest.fixture(scope="session")
def trained_tiny_resnet(digits):
    torch.manual_seed(0)
    return train_briefly(TinyResNet(), digits)


@pytest.fixture(scope="session")
def trained_tiny_vit(digits):
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(img_size=16, patch_size=4, in_chans=1, num_classes=10, embed_dim=48, depth=2,
                            num_heads=4, mlp_ratio=4.0, class_token=True, global_pool="token")
    return train_briefly(vit, digits, steps=200)


