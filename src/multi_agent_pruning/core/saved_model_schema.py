"""What a saved pruned model's ``model.json`` may say, and how it must agree with the weights.

A saved model is data: ``model.json`` is read as untrusted input and can neither run code, nor
make the loader read another file, nor change what the network computes. The loader applies,
in this order:

1. **Integrity**: ``document_sha256`` is the SHA-256 of the document's canonical JSON (every
   key but this one, ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=True)``)
   and ``weights.sha256`` that of ``model.safetensors``, so editing either file alone, or
   pairing files from two saves, is detected. A hash is not a signature: whoever can edit
   ``model.json`` can recompute it. The checks below are the real defence.
2. **Schema** (:class:`SavedModelDocument`): only known keys; ``base_model`` is a plain
   registry/timm name (no ``hf-hub:`` or ``local-dir:`` prefix); ``model_kwargs`` come from an
   allowlist of plain constructor arguments (:class:`ModelKwargs`; nothing that names a
   checkpoint, pretrained weights, a file or a URL); ``structure`` attributes are the
   :data:`SHAPE_ATTRIBUTES` with typed values.
3. **Against the freshly built dense model** (:func:`check_against_dense`): the same modules
   with the same classes; geometry and constants (:data:`FIXED_ATTRIBUTES`: stride, padding,
   eps...) equal the rebuilt module's; pruned dimensions (:data:`PRUNED_DIMENSIONS`) between 1
   and the dense value; a conv's ``groups`` only changes where the dense conv is grouped; no
   tensor larger than the dense model's.
4. **Against the weights** (:func:`check_against_weights`): every dimension agrees with the
   tensors that use it (Linear, Conv, norms, timm and torch attention).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Annotated, Any, Literal

import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic import ValidationError as PydanticValidationError

__all__ = [
    "FIXED_ATTRIBUTES", "ModelKwargs", "ModelRecipe", "PRUNED_DIMENSIONS", "SHAPE_ATTRIBUTES", "SavedModelDocument",
    "check_against_dense", "check_against_weights", "class_name", "describe_issues", "document_sha256",
    "recipe_issues", "shape_attributes",
]

# Dimensions that structural pruning shrinks; a saved value lies between 1 and the dense one.
PRUNED_DIMENSIONS = frozenset({
    "in_features", "out_features", "in_channels", "out_channels", "num_features", "normalized_shape",
    "num_heads", "head_dim", "attn_dim", "num_channels", "embed_dim", "kdim", "vdim", "hidden_features",
    "head_hidden_size",
})
# Geometry and constants that pruning never changes; a saved value equals the rebuilt module's.
FIXED_ATTRIBUTES = frozenset({
    "kernel_size", "stride", "padding", "dilation", "output_padding", "num_groups", "num_classes",
    "num_prefix_tokens", "scale", "eps",
})
# Attributes that describe a module's shape, and that forward() of torch/timm modules reads.
# ``groups`` is neither kind: a depthwise conv's groups shrink with its channels.
SHAPE_ATTRIBUTES = tuple(sorted(PRUNED_DIMENSIONS | FIXED_ATTRIBUTES | {"groups"}))
_SHOWN = 5

_Count = Annotated[int, Field(ge=0)]
_Counts = Annotated[list[_Count], Field(min_length=1, max_length=8)]
_Float = Annotated[float, Field(allow_inf_nan=False)]
_Side = Annotated[int, Field(ge=1, le=4096)]
_Width = Annotated[int, Field(ge=1, le=8192)]
_Depth = Annotated[int, Field(ge=1, le=128)]
_Rate = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class ModelKwargs(_Strict):
    """The keyword arguments a saved model may pass to the builder of its dense model.

    Plain sizes, counts and rates only: the arguments the search saves (``num_classes``,
    ``in_chans``, ``input_size`` from ``orchestrator.dense.model_kwargs_for``) and the width,
    depth and dropout knobs of the registry and timm models. Anything that loads weights or
    other files (``checkpoint``, ``trust_checkpoint``, ``pretrained``, ``pretrained_cfg``...) is
    refused, as is every other key. The bounds keep a hostile file from building a huge model.
    """

    num_classes: Annotated[int, Field(ge=1, le=100_000)] | None = None
    """Classifier outputs."""
    in_chans: Annotated[int, Field(ge=1, le=1024)] | None = None
    """Input channels."""
    input_size: _Side | None = None
    """Image side in pixels (``create_model`` passes it on as ``img_size``)."""
    img_size: _Side | Annotated[list[_Side], Field(min_length=2, max_length=2)] | None = None
    """Image side, or (height, width), of a timm ViT."""
    patch_size: Annotated[int, Field(ge=1, le=1024)] | None = None
    """ViT / ConvNeXt stem patch size."""
    embed_dim: _Width | None = None
    """ViT embedding width."""
    depth: _Depth | None = None
    """ViT blocks."""
    num_heads: Annotated[int, Field(ge=1, le=256)] | None = None
    """ViT attention heads."""
    mlp_ratio: Annotated[float, Field(gt=0.0, le=64.0)] | None = None
    """ViT MLP width over embedding width."""
    class_token: bool | None = None
    """Whether a ViT has a class token."""
    global_pool: Literal["", "token", "avg", "max", "avgmax", "catavgmax", "map", "fast"] | None = None
    """timm pooling before the classifier."""
    width: _Width | None = None
    """Base width of the test models (``testing.tiny.TinyResNet``)."""
    widths: Annotated[list[_Width], Field(min_length=1, max_length=16)] | None = None
    """Stage widths of ``compact_cnn``."""
    depths: Annotated[list[_Depth], Field(min_length=1, max_length=16)] | None = None
    """Blocks per stage of ``compact_cnn`` / ConvNeXt."""
    dims: Annotated[list[_Width], Field(min_length=1, max_length=16)] | None = None
    """Stage widths of ConvNeXt."""
    drop_rate: _Rate | None = None
    """Dropout before the classifier."""
    drop_path_rate: _Rate | None = None
    """Stochastic depth."""
    attn_drop_rate: _Rate | None = None
    """Attention dropout."""
    proj_drop_rate: _Rate | None = None
    """Projection dropout."""
    pos_drop_rate: _Rate | None = None
    """Dropout after the position embedding."""

    def as_kwargs(self) -> dict[str, Any]:
        """The arguments that were given, ready for ``build_fn(name, **kwargs)``."""
        return self.model_dump(exclude_none=True)


class ModuleAttributes(_Strict):
    """Shape attributes of one module; an absent one keeps the rebuilt module's value."""

    in_features: _Count | None = None
    out_features: _Count | None = None
    in_channels: _Count | None = None
    out_channels: _Count | None = None
    groups: _Count | None = None
    num_features: _Count | None = None
    normalized_shape: _Counts | None = None
    num_heads: _Count | None = None
    head_dim: _Count | None = None
    attn_dim: _Count | None = None
    num_groups: _Count | None = None
    num_channels: _Count | None = None
    embed_dim: _Count | None = None
    kdim: _Count | None = None
    vdim: _Count | None = None
    kernel_size: _Count | _Counts | None = None
    stride: _Count | _Counts | None = None
    padding: _Count | _Counts | None = None
    dilation: _Count | _Counts | None = None
    output_padding: _Count | _Counts | None = None
    hidden_features: _Count | None = None
    head_hidden_size: _Count | None = None
    num_classes: _Count | None = None
    num_prefix_tokens: _Count | None = None
    scale: _Float | None = None
    eps: _Float | None = None


class ModuleEntry(_Strict):
    """One module of the saved model: its class (must match the rebuilt one) and shape."""

    class_name: str = Field(alias="class", max_length=300)
    attributes: ModuleAttributes = ModuleAttributes()


class WeightsRecord(_Strict):
    """The weights file that goes with the document."""

    file: Literal["model.safetensors"]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    tensors: _Count


class ModelRecipe(_Strict):
    """How to rebuild the pruned model: the dense model's name and arguments, then the shapes."""

    base_model: Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")]
    """A registry or timm name; no ``hf-hub:`` / ``local-dir:`` prefix, so nothing is fetched."""
    model_kwargs: ModelKwargs
    structure: dict[str, ModuleEntry]


class SavedModelDocument(ModelRecipe):
    """``model.json``: the recipe, the weights' record, the metadata and the integrity record."""

    format: Literal["multi_agent_pruning.pruned_model"]
    format_version: Literal[1, 2]
    metadata: dict[str, Any]
    weights: WeightsRecord
    document_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    @model_validator(mode="after")
    def _hash_required_from_version_2(self) -> SavedModelDocument:
        if self.format_version >= 2 and self.document_sha256 is None:
            raise ValueError("format_version 2 has no document_sha256 (its integrity record)")
        return self


def document_sha256(document: Mapping[str, Any]) -> str:
    """SHA-256 of ``document``'s canonical JSON, leaving out ``document_sha256`` itself."""
    body = {key: value for key, value in document.items() if key != "document_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def recipe_issues(recipe: Mapping[str, Any]) -> list[str]:
    """Why :class:`ModelRecipe` refuses ``recipe`` (see :func:`describe_issues`); empty if it accepts it."""
    try:
        ModelRecipe.model_validate(dict(recipe))
    except PydanticValidationError as error:
        return describe_issues(error)
    return []


def describe_issues(error: PydanticValidationError) -> list[str]:
    """One line per schema violation, naming the module and attribute or the key path."""
    lines, unknown_kwargs = [], False
    for item in error.errors():
        location, forbidden = item["loc"], item["type"] == "extra_forbidden"
        rule = "not an allowed key" if forbidden else item["msg"]
        if location[:1] == ("structure",) and len(location) >= 4 and location[2] == "attributes":
            where = f"module {location[1]!r} attribute {location[3]!r}"
            rule = "not an allowed shape attribute" if forbidden else rule
        elif location[:1] == ("structure",) and len(location) >= 3:
            where = f"module {location[1]!r} {'.'.join(map(str, location[2:]))}"
        else:
            where = ".".join(map(str, location)) or "document"
            if forbidden and location[:1] == ("model_kwargs",):
                rule, unknown_kwargs = "not an allowed model keyword argument", True
        lines.append(f"{where}: {rule} (got {_short(item.get('input'))})")
    if unknown_kwargs:
        lines.append(f"allowed model keyword arguments: {', '.join(ModelKwargs.model_fields)}")
    return lines


def check_against_dense(model: nn.Module, document: SavedModelDocument,
                        shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Problems of the saved structure and tensor shapes measured against the dense ``model``."""
    modules = dict(model.named_modules())
    missing = [name for name in document.structure if name not in modules]
    extra = [name for name in modules if name not in document.structure]
    if missing or extra:
        return [f"the rebuilt {type(model).__name__} does not have the saved architecture: saved modules "
                f"missing from it {_head(missing)}; its modules not in the save {_head(extra)}"]
    issues = []
    for name, entry in document.structure.items():
        module = modules[name]
        if class_name(module) != entry.class_name:
            issues.append(f"Module {name!r} is a {class_name(module)} in the rebuilt model but was saved as a "
                          f"{entry.class_name}")
            continue
        fresh = shape_attributes(module)
        for attribute, value in entry.attributes.model_dump(exclude_none=True).items():
            if attribute not in fresh:
                issues.append(f"module {name!r} attribute {attribute!r}: the rebuilt {type(module).__name__} has no "
                              f"such shape attribute (got {_short(value)})")
            else:
                issues.extend(_compare(name, attribute, value, fresh[attribute]))
    dense = {key: tuple(tensor.shape) for key, tensor in model.state_dict().items()}
    for key, shape in shapes.items():
        limit = dense.get(key)
        if limit is not None and (len(shape) != len(limit) or any(s > d for s, d in zip(shape, limit))):
            issues.append(f"tensor {key!r} has shape {shape}; expected at most {limit} (the dense model's; "
                          "a pruned model only shrinks)")
    return issues


def check_against_weights(model: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Problems where a module's (restored) dimensions disagree with the tensors that use them."""
    issues = []
    for name, module in model.named_modules():
        agree = _Agreement(name, module, shapes)
        issues.extend(_layer_issues(agree))
        if isinstance(getattr(module, "qkv", None), nn.Linear) and hasattr(module, "num_heads"):
            issues.extend(_timm_attention_issues(name, module))
    return issues


def class_name(module: nn.Module) -> str:
    """The module's fully qualified class name, as saved in ``structure``."""
    return f"{type(module).__module__}.{type(module).__qualname__}"


def shape_attributes(module: nn.Module) -> dict[str, Any]:
    """The module's own shape attributes, tuples as lists (the form they are saved in)."""
    attributes = {}
    for attribute in SHAPE_ATTRIBUTES:
        value = module.__dict__.get(attribute)
        if isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            attributes[attribute] = value
        elif isinstance(value, tuple) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            attributes[attribute] = list(value)
    return attributes


def _compare(module: str, attribute: str, value: Any, fresh: Any) -> list[str]:
    where = f"module {module!r} attribute {attribute!r} is {value}"
    if attribute in FIXED_ATTRIBUTES or (attribute == "groups" and fresh == 1):
        if value != fresh:
            return [f"{where}; expected {fresh} (the rebuilt module's value; {attribute} does not change by pruning)"]
        return []
    values, limits = (value, fresh) if isinstance(fresh, list) else ([value], [fresh])
    if isinstance(value, list) != isinstance(fresh, list) or len(values) != len(limits):
        return [f"{where}; expected a list of {len(limits)} value(s) (the dense model's {fresh})"
                if isinstance(fresh, list) else f"{where}; expected one number (the dense model's {fresh})"]
    if any(v > limit for v, limit in zip(values, limits)):
        return [f"{where}; expected at most {fresh} (the dense model's value; a pruned model only shrinks)"]
    if any(v < min(1, limit) for v, limit in zip(values, limits)):
        return [f"{where}; expected at least 1"]
    return []


class _Agreement:
    """Compares one module's attributes with dimensions of its tensors in the file."""

    def __init__(self, name: str, module: nn.Module, shapes: Mapping[str, tuple[int, ...]]) -> None:
        self.name, self.module, self.shapes = name, module, shapes
        self.prefix = f"{name}." if name else ""

    def __call__(self, attribute: str, tensor: str, dim: int, groups: int = 1) -> Iterator[str]:
        """An issue unless ``attribute == shape[dim] * groups`` of tensor ``tensor`` (absent: no issue)."""
        key = self.prefix + tensor
        shape, value = self.shapes.get(key), getattr(self.module, attribute)
        if shape is None or dim >= len(shape) or value == shape[dim] * groups:
            return
        times = f" times groups {groups}" if groups != 1 else ""
        yield (f"module {self.name!r} attribute {attribute!r} is {value}; expected {shape[dim] * groups} "
               f"(dimension {dim} of tensor {key!r}{times}, shape {shape})")


def _layer_issues(agree: _Agreement) -> Iterator[str]:
    module, name = agree.module, agree.name
    if isinstance(module, nn.Linear):
        yield from agree("out_features", "weight", 0)
        yield from agree("in_features", "weight", 1)
        yield from agree("out_features", "bias", 0)
    elif isinstance(module, nn.modules.conv._ConvNd):
        yield from _conv_issues(agree, module)
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        for tensor in ("weight", "bias", "running_mean", "running_var"):
            yield from agree("num_features", tensor, 0)
    elif isinstance(module, nn.LayerNorm):
        for tensor in ("weight", "bias"):
            shape = agree.shapes.get(agree.prefix + tensor)
            if shape is not None and tuple(module.normalized_shape) != shape:
                yield (f"module {name!r} attribute 'normalized_shape' is {list(module.normalized_shape)}; "
                       f"expected {list(shape)} (the shape of tensor {agree.prefix + tensor!r})")
    elif isinstance(module, nn.GroupNorm):
        yield from agree("num_channels", "weight", 0)
        if module.num_groups < 1 or module.num_channels % module.num_groups:
            yield (f"module {name!r} attribute 'num_channels' is {module.num_channels}; "
                   f"expected a multiple of num_groups {module.num_groups}")
    elif isinstance(module, nn.MultiheadAttention):
        yield from _heads_issues(name, module.num_heads, module.head_dim, "embed_dim", module.embed_dim)
        yield from agree("embed_dim", "in_proj_weight", 1)


def _conv_issues(agree: _Agreement, conv: nn.modules.conv._ConvNd) -> Iterator[str]:
    # groups is checked here, not against the dense conv: a depthwise conv's groups shrink with its channels.
    groups = conv.groups
    if groups < 1 or conv.in_channels % groups or conv.out_channels % groups:
        yield (f"module {agree.name!r} attribute 'groups' is {groups}; expected a divisor of in_channels "
               f"{conv.in_channels} and out_channels {conv.out_channels}")
        return
    outer, inner = ("in_channels", "out_channels") if conv.transposed else ("out_channels", "in_channels")
    yield from agree(outer, "weight", 0)
    yield from agree(inner, "weight", 1, groups)
    yield from agree("out_channels", "bias", 0)


def _timm_attention_issues(name: str, module: nn.Module) -> Iterator[str]:
    """timm's Attention reshapes ``qkv`` output by num_heads and head_dim and feeds attn_dim to ``proj``."""
    heads, head_dim = module.num_heads, getattr(module, "head_dim", None)
    if head_dim is None:
        return
    attn_dim = getattr(module, "attn_dim", heads * head_dim)
    yield from _heads_issues(name, heads, head_dim, "attn_dim", attn_dim)
    qkv_out = module.qkv.out_features
    if qkv_out != 3 * attn_dim:
        yield (f"module {name!r} attribute 'attn_dim' is {attn_dim}; expected {qkv_out / 3:g} "
               f"(a third of {name}.qkv.out_features {qkv_out})")
    proj = getattr(module, "proj", None)
    if isinstance(proj, nn.Linear) and proj.in_features != attn_dim:
        yield (f"module {name!r} attribute 'attn_dim' is {attn_dim}; expected {proj.in_features} "
               f"({name}.proj.in_features)")


def _heads_issues(name: str, heads: int, head_dim: int, total_name: str, total: int) -> Iterator[str]:
    if heads * head_dim != total:
        yield (f"module {name!r} attributes num_heads * head_dim = {heads} * {head_dim} = {heads * head_dim}; "
               f"expected {total_name} = {total}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _head(names: list[str]) -> str:
    if not names:
        return "none"
    more = f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else ""
    return ", ".join(repr(n) for n in names[:_SHOWN]) + more
