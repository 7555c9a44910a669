"""Small models for the embedded datasets (digits 1x16x16, Fashion-MNIST 1x28x28, CIFAR-10 3x32x32).

They train in seconds on two CPU cores and are prunable by torch-pruning's DependencyGraph,
so the whole search loop can be exercised end to end without a GPU or downloaded weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models.convnext import ConvNeXt
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from multi_agent_pruning.exceptions import ConfigurationError

__all__ = ["BasicBlock", "CompactResNet", "build_deit_micro", "build_convnext_micro", "pick_patch_size"]


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (ResNet's basic block)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.downsample(x))


class CompactResNet(nn.Module):
    """A three-stage ResNet for 16-32 px images: stem, residual stages, global pooling, ``head``.

    Args:
        num_classes: Size of the classifier output.
        in_chans: Input channels (1 for digits / Fashion-MNIST, 3 for CIFAR-10).
        widths: Channels of each stage; every stage after the first halves the resolution.
        depths: Residual blocks per stage.
    """

    def __init__(
        self,
        num_classes: int = 10,
        in_chans: int = 1,
        widths: Sequence[int] = (32, 64, 128),
        depths: Sequence[int] = (1, 1, 1),
    ) -> None:
        super().__init__()
        if len(widths) != len(depths) or not widths:
            raise ConfigurationError(
                f"CompactResNet needs one depth per stage width, got widths={tuple(widths)} "
                f"and depths={tuple(depths)}"
            )
        self.num_classes = num_classes
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, channels = [], widths[0]
        for index, (width, depth) in enumerate(zip(widths, depths, strict=True)):
            blocks = [BasicBlock(channels, width, stride=1 if index == 0 else 2)]
            blocks += [BasicBlock(width, width) for _ in range(depth - 1)]
            stages.append(nn.Sequential(*blocks))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(channels, num_classes)

    def get_classifier(self) -> nn.Module:
        """The final linear layer (timm's interface, used when a checkpoint's head differs)."""
        return self.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.head(torch.flatten(self.pool(x), 1))


def pick_patch_size(img_size: int, max_tokens: int = 64, min_tokens: int = 4) -> int:
    """Smallest patch size >= 2 that divides ``img_size`` into at most ``max_tokens`` patches.

    16 px -> 2 (64 tokens), 28 px -> 4 (49 tokens), 32 px -> 4 (64 tokens).
    """
    for patch in range(2, img_size + 1):
        tokens = (img_size // patch) ** 2
        if img_size % patch == 0 and tokens <= max_tokens:
            if tokens < min_tokens:
                break
            return patch
    raise ConfigurationError(
        f"input_size {img_size} cannot be split into {min_tokens}-{max_tokens} square patches; "
        "use a side such as 16, 28 or 32"
    )


def build_deit_micro(
    num_classes: int = 10, in_chans: int = 1, img_size: int = 16, **kwargs: object
) -> VisionTransformer:
    """A 4-block DeiT-style ViT (embed 96, 3 heads) with 16-64 tokens for small images."""
    options: dict[str, object] = {
        "patch_size": pick_patch_size(img_size),
        "embed_dim": 96,
        "depth": 4,
        "num_heads": 3,
        "mlp_ratio": 4.0,
        "class_token": True,
    }
    options.update(kwargs)
    return VisionTransformer(img_size=img_size, in_chans=in_chans, num_classes=num_classes, **options)


def build_convnext_micro(
    num_classes: int = 10, in_chans: int = 1, img_size: int = 16, **kwargs: object
) -> ConvNeXt:
    """A four-stage ConvNeXt (dims 16/32/64/128, one block each) for 16-32 px images."""
    # timm's ConvNeXt always has four stages and downsamples three times after the stem,
    # so the stem keeps small images at full resolution to end on a 2x2 or larger map.
    options: dict[str, object] = {
        "patch_size": 1 if img_size <= 32 else 4,
        "depths": (1, 1, 1, 1),
        "dims": (16, 32, 64, 128),
    }
    options.update(kwargs)
    return ConvNeXt(in_chans=in_chans, num_classes=num_classes, **options)
