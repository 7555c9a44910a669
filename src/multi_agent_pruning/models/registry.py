"""Model registry: short names -> timm architectures or our own builders, with input sizes.

In the spirit of timm's ``register_model`` / ``create_model`` / ``list_models``. Registry names
are looked up first; any other name timm knows (``deit_small_patch16_224``) works as well.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

import timm
import torch
from torch import nn

from multi_agent_pruning.exceptions import ConfigurationError, ModelDownloadError, UnknownNameError
from multi_agent_pruning.models.checkpoint import load_checkpoint
from multi_agent_pruning.models.inputs import record_input_size
from multi_agent_pruning.models.pretrained import load_pretrained_timm
from multi_agent_pruning.utils.registry import Registry

__all__ = [
    "FAMILIES",
    "ModelSpec",
    "create_model",
    "get_model_spec",
    "has_pretrained_weights",
    "list_models",
    "register_model",
    "register_model_spec",
]

logger = logging.getLogger(__name__)

FAMILIES = ("vit", "cnn", "convnext", "mobilenet", "efficientnet")
ModelBuilder = Callable[..., nn.Module]


@dataclass(frozen=True)
class ModelSpec:
    """What the registry knows about one model name.

    Attributes:
        name: Registry name, e.g. ``deit_small``.
        timm_name: timm architecture it maps to, or None for our own builders.
        input_size: Default input (C, H, W); small models follow the dataset instead.
        family: One of :data:`FAMILIES`; decides how ``input_size`` reaches the model.
        description: One line for ``mapruner models``.
        builder: ``builder(num_classes=, in_chans=, img_size=, **kwargs) -> nn.Module`` for
            models that timm does not provide; None for timm models.
        kwargs: Default keyword arguments for ``timm.create_model`` or the builder.
    """

    name: str
    timm_name: str | None
    input_size: tuple[int, int, int]
    family: str
    description: str = ""
    builder: ModelBuilder | None = None
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ConfigurationError(f"model {self.name!r}: family must be one of {FAMILIES}, got {self.family!r}")
        size = tuple(self.input_size)
        if len(size) != 3 or not all(isinstance(d, int) and d > 0 for d in size):
            raise ConfigurationError(f"model {self.name!r}: input_size must be (C, H, W) positive ints, got {size}")
        if self.builder is None and not self.timm_name:
            raise ConfigurationError(f"model {self.name!r}: needs a timm_name or a builder")
        object.__setattr__(self, "input_size", size)
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))


_MODELS: Registry[ModelSpec] = Registry("model")


def register_model_spec(spec: ModelSpec) -> ModelSpec:
    """Adds ``spec`` to the registry; a taken name raises MultiAgentPruningError."""
    return _MODELS.add(spec.name, spec)


def register_model(
    name: str,
    *,
    family: str = "cnn",
    input_size: tuple[int, int, int] = (1, 16, 16),
    description: str = "",
    **kwargs: Any,
) -> Callable[[ModelBuilder], ModelBuilder]:
    """Decorator registering a builder ``fn(num_classes=, in_chans=, img_size=, **kwargs)``."""

    def decorate(builder: ModelBuilder) -> ModelBuilder:
        text = description or next(iter((builder.__doc__ or "").strip().splitlines()), "")
        register_model_spec(ModelSpec(name, None, input_size, family, text, builder, kwargs))
        return builder

    return decorate


def list_models(pattern: str | None = None) -> list[str]:
    """Registry names, sorted; ``pattern`` filters with shell wildcards (``"deit_*"``)."""
    names = _MODELS.names()
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_model_spec(name: str) -> ModelSpec:
    """The spec of a registry name, or an ad-hoc spec for any other timm model name.

    Raises:
        UnknownNameError: Neither the registry nor timm knows ``name``; the message suggests
            the closest names from both.
    """
    if name in _MODELS:
        return _MODELS.get(name)
    if isinstance(name, str) and name and timm.is_model(name):
        return ModelSpec(name, name, _timm_input_size(name), _guess_family(name), "timm model")
    raise UnknownNameError("model", str(name), [*_MODELS.names(), *timm.list_models()])


def _timm_input_size(timm_name: str) -> tuple[int, int, int]:
    try:
        config = timm.models.get_pretrained_cfg(timm_name)
    except Exception:  # names without a default pretrained config
        config = None
    return tuple(config.input_size) if config is not None else (3, 224, 224)


def has_pretrained_weights(name: str) -> bool:
    """Whether timm publishes pretrained weights for the model ``name`` (registry or timm name);
    False for the registry's own small models, which are trained from scratch."""
    timm_name = get_model_spec(name).timm_name
    if timm_name is None:
        return False
    try:
        config = timm.models.get_pretrained_cfg(timm_name)
    except Exception:  # noqa: BLE001 - names timm has no default config for
        return False
    return bool(config and (config.hf_hub_id or config.url or config.file))


def _guess_family(timm_name: str) -> str:
    prefixes = {"convnext": "convnext", "mobilenet": "mobilenet", "efficientnet": "efficientnet"}
    for prefix, family in prefixes.items():
        if timm_name.startswith(prefix):
            return family
    return "vit" if timm_name.startswith(("vit_", "deit", "eva", "beit")) else "cnn"


def create_model(
    name: str,
    *,
    num_classes: int | None = None,
    in_chans: int | None = None,
    input_size: int | None = None,
    pretrained: bool | Literal["auto"] = False,
    checkpoint: str | os.PathLike[str] | None = None,
    trust_checkpoint: bool = False,
    device: str | torch.device = "cpu",
    **kwargs: Any,
) -> nn.Module:
    """Builds a model by registry or timm name.

    Args:
        name: Registry name (``deit_small``, ``compact_cnn``) or timm name.
        num_classes: Classifier size; None keeps the model's default (1000 for timm, 10 for
            the small models).
        in_chans: Input channels; None keeps the spec's.
        input_size: Image side in pixels. ViT-family models are built for it (``img_size``);
            convolutional models accept any size and ignore it.
        pretrained: Load timm's pretrained weights (see :mod:`.pretrained`). ``"auto"`` loads
            them where the model has them (:func:`has_pretrained_weights`) and no ``checkpoint``
            replaces them; where they cannot be fetched (offline, not in the Hugging Face cache)
            the model keeps its random initialisation and one warning says how to get them.
        checkpoint: A ``.pth``/``.pt``/``.safetensors`` file loaded after construction.
        trust_checkpoint: Allow unpickling a checkpoint that is more than tensors.
        device: Where the model ends up; ``"meta"`` builds it without allocating weights.
        **kwargs: Passed on to ``timm.create_model`` or the builder.

    The model records the input it was built for (``in_chans`` x ``input_size``, or the spec's
    defaults); :func:`~multi_agent_pruning.models.model_input_size` reads it back.

    Raises:
        UnknownNameError: Unknown name. ConfigurationError: invalid arguments.
        ModelDownloadError: Pretrained weights unavailable. CheckpointError: bad checkpoint.
    """
    spec = get_model_spec(name)
    target = _parse_device(device)
    options = _options(spec, num_classes, in_chans, input_size, kwargs)
    built_for = _built_for(spec, options, input_size)
    if pretrained == "auto":
        pretrained = checkpoint is None and target.type != "meta" and has_pretrained_weights(name)
        fallback = True
    elif isinstance(pretrained, bool):
        fallback = False
    else:
        raise ConfigurationError(f"pretrained must be True, False or 'auto', got {pretrained!r}")
    if target.type == "meta":
        if pretrained or checkpoint is not None:
            raise ConfigurationError(
                "device='meta' builds an empty model; it cannot take pretrained or checkpoint weights"
            )
        with torch.device("meta"):
            return record_input_size(_build(spec, options, pretrained=False), built_for)
    model = _build_with_fallback(spec, options) if pretrained and fallback else _build(spec, options, pretrained)
    if checkpoint is not None:
        load_checkpoint(model, checkpoint, trust_checkpoint=trust_checkpoint)
    return record_input_size(model.to(target), built_for)


def _built_for(spec: ModelSpec, options: Mapping[str, Any], input_size: int | None) -> tuple[int, int, int]:
    """The (C, H, W) the model is built for: channels and ``img_size`` as passed, else the spec's."""
    side = options.get("img_size", input_size)
    if isinstance(side, int) and not isinstance(side, bool):
        height = width = side
    elif isinstance(side, (tuple, list)) and len(side) == 2:
        height, width = (int(d) for d in side)
    else:
        height, width = spec.input_size[1:]
    return int(options.get("in_chans") or spec.input_size[0]), height, width


def _build_with_fallback(spec: ModelSpec, options: dict[str, Any]) -> nn.Module:
    """``pretrained="auto"``: the pretrained model, or a randomly initialised one and one warning
    (the same one ``pretrained=False`` builds from the same seed)."""
    rng = torch.get_rng_state()
    try:
        return _build(spec, options, pretrained=True)
    except ModelDownloadError as error:
        torch.set_rng_state(rng)  # the failed attempt initialised a model too
        # The error names the model, the Hub and cache it tried, ModelDownloader and checkpoint=PATH.
        logger.warning("%s Model %r starts from random initialisation instead (accuracy near chance until "
                       "trained); pretrained=False builds it so without this warning.", error, spec.name)
        return _build(spec, options, pretrained=False)


def _parse_device(device: str | torch.device) -> torch.device:
    try:
        return torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ConfigurationError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from error


def _positive(label: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
        raise ConfigurationError(f"{label} must be a positive integer, got {value!r}")


def _options(
    spec: ModelSpec, num_classes: int | None, in_chans: int | None, input_size: int | None, kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    for label, value in (("num_classes", num_classes), ("in_chans", in_chans), ("input_size", input_size)):
        _positive(label, value)
    options = {**spec.kwargs, **kwargs}
    if num_classes is not None:
        options["num_classes"] = num_classes
    if spec.builder is not None:
        options["in_chans"] = in_chans or spec.input_size[0]
        options["img_size"] = input_size or spec.input_size[1]
        return options
    if in_chans is not None:
        options["in_chans"] = in_chans
    if input_size is not None and spec.family == "vit":
        options["img_size"] = input_size
    elif input_size is not None:
        logger.debug("%s is convolutional; input_size=%d needs no change to the model", spec.name, input_size)
    return options


def _build(spec: ModelSpec, options: dict[str, Any], pretrained: bool) -> nn.Module:
    if spec.builder is not None:
        if pretrained:
            raise ConfigurationError(
                f"model {spec.name!r} has no pretrained weights (it is trained from scratch); "
                "use pretrained=False or checkpoint=PATH"
            )
        return _call(spec, spec.builder, options)
    timm_name = spec.timm_name or ""  # ModelSpec guarantees one of builder / timm_name
    if pretrained:
        return load_pretrained_timm(spec.name, timm_name, options)
    return _call(spec, lambda **kw: timm.create_model(timm_name, pretrained=False, **kw), options)


def _call(spec: ModelSpec, builder: ModelBuilder, options: dict[str, Any]) -> nn.Module:
    try:
        return builder(**options)
    except TypeError as error:  # an argument the architecture does not take
        raise ConfigurationError(f"model {spec.name!r} cannot be built with {options}: {error}") from error
