"""The models that ship with the package: timm short names and the small dataset models."""

from __future__ import annotations

from typing import Any

from torch import nn

from multi_agent_pruning.models.registry import ModelSpec, register_model, register_model_spec
from multi_agent_pruning.models.small import CompactResNet, build_convnext_micro, build_deit_micro

__all__: list[str] = []

_IMAGENET = (3, 224, 224)

# name -> (timm architecture, family, description)
_TIMM_MODELS = {
    "deit_tiny": ("deit_tiny_patch16_224", "vit", "DeiT-Tiny, 12 blocks, embed 192, 3 heads"),
    "deit_small": ("deit_small_patch16_224", "vit", "DeiT-Small, 12 blocks, embed 384, 6 heads"),
    "deit_base": ("deit_base_patch16_224", "vit", "DeiT-Base, 12 blocks, embed 768, 12 heads"),
    "deit_base_distilled": ("deit_base_distilled_patch16_224", "vit", "DeiT-Base with distillation token"),
    "vit_tiny": ("vit_tiny_patch16_224", "vit", "ViT-Ti/16 (AugReg)"),
    "vit_small": ("vit_small_patch16_224", "vit", "ViT-S/16 (AugReg)"),
    "vit_base": ("vit_base_patch16_224", "vit", "ViT-B/16 (AugReg)"),
    "resnet18": ("resnet18", "cnn", "ResNet-18"),
    "resnet34": ("resnet34", "cnn", "ResNet-34"),
    "resnet50": ("resnet50", "cnn", "ResNet-50"),
    "resnet101": ("resnet101", "cnn", "ResNet-101"),
    "resnet152": ("resnet152", "cnn", "ResNet-152"),
    "convnext_tiny": ("convnext_tiny", "convnext", "ConvNeXt-T"),
    "convnext_small": ("convnext_small", "convnext", "ConvNeXt-S"),
    "convnext_base": ("convnext_base", "convnext", "ConvNeXt-B"),
    "mobilenetv2_100": ("mobilenetv2_100", "mobilenet", "MobileNetV2, width 1.0"),
    "efficientnet_b0": ("efficientnet_b0", "efficientnet", "EfficientNet-B0"),
}

for _name, (_timm_name, _family, _description) in _TIMM_MODELS.items():
    register_model_spec(ModelSpec(_name, _timm_name, _IMAGENET, _family, _description))


@register_model("compact_cnn", family="cnn", input_size=(1, 16, 16))
def compact_cnn(num_classes: int = 10, in_chans: int = 1, img_size: int = 16, **kwargs: Any) -> nn.Module:
    """Three-stage residual CNN (32/64/128 channels, BatchNorm) for 16-32 px images."""
    del img_size  # global pooling makes the network size-agnostic
    return CompactResNet(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model("deit_micro", family="vit", input_size=(1, 16, 16))
def deit_micro(num_classes: int = 10, in_chans: int = 1, img_size: int = 16, **kwargs: Any) -> nn.Module:
    """DeiT-style ViT, 4 blocks, embed 96, 3 heads, 16-64 patches for 16-32 px images."""
    return build_deit_micro(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kwargs)


@register_model("convnext_micro", family="convnext", input_size=(1, 16, 16))
def convnext_micro(num_classes: int = 10, in_chans: int = 1, img_size: int = 16, **kwargs: Any) -> nn.Module:
    """timm ConvNeXt, four one-block stages (16/32/64/128) for 16-32 px images."""
    return build_convnext_micro(num_classes=num_classes, in_chans=in_chans, img_size=img_size, **kwargs)
