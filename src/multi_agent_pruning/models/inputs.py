"""The input a model takes: one place that answers "what (C, H, W) does this model read?".

:func:`~multi_agent_pruning.models.create_model` records the input each model was built for
(``in_chans`` and ``input_size``, or the registry's defaults). For other models the answer comes
from timm's ``pretrained_cfg`` (with the channels of the first convolution and a ViT's
``patch_embed.img_size``, which timm's config does not update when they are changed). Every
place that takes an ``input_size`` applies the same rule (:func:`resolve_input_size`): an int is a
square image with the model's channel count, a ``(C, H, W)`` tuple is used as given, None means
the model's own input.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from multi_agent_pruning.exceptions import ConfigurationError

__all__ = ["INPUT_SIZE_ATTRIBUTE", "example_inputs", "model_input_size", "record_input_size", "resolve_input_size"]

#: Attribute :func:`~multi_agent_pruning.models.create_model` sets on every model it builds.
INPUT_SIZE_ATTRIBUTE = "mapruner_input_size"


def record_input_size(model: nn.Module, input_size: Sequence[int]) -> nn.Module:
    """Stores ``input_size`` (C, H, W) on ``model`` for :func:`model_input_size`; returns the model."""
    setattr(model, INPUT_SIZE_ATTRIBUTE, _chw(input_size, "input_size"))
    return model


def model_input_size(model: nn.Module) -> tuple[int, int, int] | None:
    """The (C, H, W) ``model`` was built for, or None when nothing on the model says so.

    Read from what :func:`~multi_agent_pruning.models.create_model` recorded, else from timm's
    ``pretrained_cfg`` / ``default_cfg`` corrected by the model's first convolution (channels)
    and ``patch_embed.img_size`` (a ViT's fixed image size).
    """
    recorded = getattr(model, INPUT_SIZE_ATTRIBUTE, None)
    if recorded is not None:
        return tuple(recorded)
    config = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
    size = config.get("input_size") if isinstance(config, Mapping) else None
    if not size or len(size) != 3:
        return None
    channels, height, width = (int(d) for d in size)
    image = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if isinstance(image, Sequence) and len(image) == 2:
        height, width = (int(d) for d in image)
    conv = _first_conv(model)
    return (conv.in_channels if conv is not None else channels), height, width


def resolve_input_size(model: nn.Module, input_size: int | Sequence[int] | None = None) -> tuple[int, int, int]:
    """The (C, H, W) to feed ``model``.

    Args:
        model: The network.
        input_size: None for the model's own input (:func:`model_input_size`); an int for a
            square image of that side with the model's channel count (3 for timm models, the
            registry model's ``in_chans`` otherwise); a (C, H, W) tuple as given.

    Raises:
        ConfigurationError: ``input_size`` is malformed, or the model does not say what it takes
            (then pass ``input_size=(C, H, W)`` or example inputs).
    """
    if input_size is None:
        size = model_input_size(model)
        if size is None:
            raise ConfigurationError(
                f"cannot tell the input size of {type(model).__name__} (it was not built by "
                "multi_agent_pruning.models.create_model and has no timm pretrained_cfg); pass "
                "input_size=(C, H, W) or example_inputs explicitly")
        return size
    if isinstance(input_size, int) and not isinstance(input_size, bool):
        if input_size <= 0:
            raise ConfigurationError(f"input_size must be a positive int or (C, H, W), got {input_size!r}")
        return _channels(model, input_size), input_size, input_size
    return _chw(input_size, "input_size")


def example_inputs(model: nn.Module, input_size: int | Sequence[int] | None = None, *,
                   batch_size: int = 1) -> torch.Tensor:
    """A random batch for ``model`` (shape from :func:`resolve_input_size`), on the device and
    with the floating dtype of the layer that reads the input (the first convolution or linear
    layer; else the first parameter or buffer; else the CPU), so a model whose parameters sit on
    several devices is traced where its input goes."""
    size = resolve_input_size(model, input_size)
    device, dtype = _input_placement(model)
    if device.type == "meta":
        return torch.empty(batch_size, *size, device=device, dtype=dtype)
    return torch.randn(batch_size, *size, device=device, dtype=dtype)


def _chw(size: Any, label: str) -> tuple[int, int, int]:
    try:
        dims = tuple(size)
    except TypeError:
        dims = ()
    if len(dims) != 3 or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ConfigurationError(f"{label} must be a positive int (square side) or (C, H, W) positive ints, "
                                 f"got {size!r}")
    return dims  # type: ignore[return-value]


def _first_conv(model: nn.Module) -> nn.Conv2d | None:
    return next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)


def _channels(model: nn.Module, side: int) -> int:
    known = model_input_size(model)
    if known is not None:
        return known[0]
    conv = _first_conv(model)
    if conv is None:
        raise ConfigurationError(
            f"input_size={side} needs the channel count of {type(model).__name__}, which it does not say; "
            "pass input_size=(C, H, W)")
    return conv.in_channels


def _input_placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    first_layer = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
    tensors = [first_layer.weight] if first_layer is not None else []
    tensors += [*model.parameters(), *model.buffers()]
    for tensor in tensors:
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return (tensors[0].device if tensors else torch.device("cpu")), torch.get_default_dtype()
