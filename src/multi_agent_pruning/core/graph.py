"""Pruning groups from torch-pruning's traced dependency graph, and what kind each one is.

Everything here reads the traced graph (``tp.DependencyGraph``); no decision is taken from
layer names. A *group* is torch-pruning's set of coupled (layer, channel) dependencies that
must be pruned together. Each group gets:

* a **key module**: the first layer in the group whose output channels are pruned, in the
  order torch-pruning itself uses to match layer-specific pruning ratios, so a ratio keyed
  by that layer applies to exactly that group;
* an **isomorphic signature**: torch-pruning's string tag of the group's structure (Isomorphic
  Pruning, ECCV 2024): groups with the same tag are ranked together;
* a **kind**, used by strategies for per-kind ratio multipliers: ``attention`` (query/key/value
  channels of an attention layer), ``embed``/``residual`` (channels shared by several producer
  layers through residual additions) and ``mlp``/``hidden`` (channels internal to one block);
  models with several spatial resolutions get a ``stage<k>`` prefix, e.g. ``stage2_residual``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch_pruning as tp

from multi_agent_pruning.exceptions import PruningError

logger = logging.getLogger(__name__)

__all__ = [
    "GroupInfo",
    "attention_heads",
    "build_dependency_graph",
    "classifier_layers",
    "describe_groups",
    "group_key_module",
    "isomorphic_signature",
    "update_attention_modules",
]

ROOT_MODULE_TYPES = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR)


def _timm_attention_types() -> tuple[type, ...]:
    try:
        from timm.models.vision_transformer import Attention

        return (Attention,)
    except ImportError:  # pragma: no cover - timm is a dependency
        return ()


def attention_heads(model: nn.Module) -> dict[nn.Module, int]:
    """``{qkv_linear: num_heads}`` for every timm attention layer, as torch-pruning expects."""
    return {m.qkv: m.num_heads for m in model.modules() if isinstance(m, _timm_attention_types())}


def update_attention_modules(model: nn.Module, num_heads: dict[nn.Module, int]) -> None:
    """Makes timm attention layers consistent with their pruned ``qkv`` projection.

    timm's forward reshapes with ``num_heads`` and ``head_dim``; after torch-pruning removed
    heads or head dimensions these attributes must follow, or the stock forward fails.
    """
    for module in model.modules():
        if not isinstance(module, _timm_attention_types()):
            continue
        heads = num_heads.get(module.qkv, module.num_heads)
        qkv_out = module.qkv.out_features
        if heads < 1 or qkv_out % (3 * heads):
            raise PruningError(f"attention layer with qkv of {qkv_out} features cannot have {heads} heads")
        module.num_heads = heads
        module.head_dim = qkv_out // (3 * heads)
        if hasattr(module, "attn_dim"):
            module.attn_dim = heads * module.head_dim


def classifier_layers(model: nn.Module) -> list[nn.Module]:
    """The classification head(s), which pruning must keep intact.

    Uses timm's ``get_classifier()`` (plus ``head_dist`` of distilled DeiT); for other models,
    the last ``nn.Linear`` registered.
    """
    heads: list[nn.Module] = []
    if hasattr(model, "get_classifier"):
        head = model.get_classifier()
        if isinstance(head, (tuple, list)):
            heads.extend(h for h in head if isinstance(h, nn.Module))
        elif isinstance(head, nn.Module) and not isinstance(head, nn.Identity):
            heads.append(head)
    dist = getattr(model, "head_dist", None)
    if isinstance(dist, nn.Module) and not isinstance(dist, nn.Identity):
        heads.append(dist)
    if not heads:
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if linears:
            heads.append(linears[-1])
    return heads


def build_dependency_graph(
    model: nn.Module, example_inputs: torch.Tensor, **kwargs
) -> tp.DependencyGraph:
    """Traces ``model`` into a torch-pruning dependency graph; tracing errors become PruningError."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "unwrapped parameters" (cls_token, pos_embed) are handled
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs, **kwargs)
    except Exception as err:  # torch-pruning raises bare exceptions on unsupported graphs
        raise PruningError(f"could not trace {type(model).__name__} into a dependency graph: {err}") from err
    finally:
        model.train(was_training)


def group_key_module(DG: tp.DependencyGraph, group) -> nn.Module | None:
    """First layer whose output channels the group prunes, in torch-pruning's matching order."""
    prunable = tuple(tp.ops.type2class(t) for t in DG.REGISTERED_PRUNERS)
    for dep, _ in group:
        for module, fn in ((dep.source.module, dep.trigger), (dep.target.module, dep.handler)):
            if isinstance(module, nn.Module) and isinstance(module, prunable) and DG.is_out_channel_pruning_fn(fn):
                return module
    return None


def isomorphic_signature(DG: tp.DependencyGraph, group) -> str:
    """torch-pruning's isomorphic tag of a group: its dependency structure as a string."""
    tag = "Isomorphic_"
    for dep, _ in group:
        direction = "out" if DG.is_out_channel_pruning_fn(dep.handler) else "in"
        tag += f"{type(dep.source.module)}_{direction}_{type(dep.target.module)}_{direction}"
    return tag


@dataclass
class GroupInfo:
    """One pruning group of a model, with what strategies and profiles need to know about it.

    Attributes:
        index: Position in the graph's group order.
        key: The key module (see module docstring); ``key_name`` is its qualified name.
        channels: Prunable channels of the group (out-channels of the key module).
        kind: Kind used by per-kind multipliers (``attention``, ``mlp``, ``stage2_residual`` ...).
        signature: Isomorphic signature.
        members: ``(layer name, "out"|"in")`` of every layer the group touches.
        group: The torch-pruning group itself (full indices).
        num_heads: Attention heads of the group's qkv layer (0 for non-attention groups).
    """

    index: int
    key: nn.Module
    key_name: str
    channels: int
    kind: str
    signature: str
    members: list[tuple[str, str]]
    group: object = field(repr=False)
    num_heads: int = 0


def _positions(model: nn.Module, example_inputs: torch.Tensor) -> dict[nn.Module, int]:
    """Spatial positions (tokens or pixels) of each conv/linear output, from one forward pass."""
    sizes: dict[nn.Module, int] = {}

    def hook(module: nn.Module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor) and output.dim() >= 2:
            shape = output.shape
            # NCHW conv: positions are H*W; (..., C) linear: everything between batch and C.
            inner = shape[2:] if isinstance(module, tp.ops.TORCH_CONV) else shape[1:-1]
            n = 1
            for d in inner:
                n *= int(d)
            sizes[module] = n

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, ROOT_MODULE_TYPES)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_inputs)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return sizes


def describe_groups(
    model: nn.Module,
    example_inputs: torch.Tensor,
    DG: tp.DependencyGraph | None = None,
    ignored_layers: Sequence[nn.Module] = (),
    raw_groups: list | None = None,
) -> list[GroupInfo]:
    """Every prunable group of ``model`` with its key module, kind and isomorphic signature.

    Attention groups are re-rooted at the downstream projection exactly as torch-pruning's
    pruner does, so the groups listed here are the ones its ranking sees.
    """
    DG = DG or build_dependency_graph(model, example_inputs)
    heads = attention_heads(model)
    names = {m: n for n, m in model.named_modules()}
    param_names = {id(p): n for n, p in model.named_parameters()}
    ignored = list(ignored_layers) or classifier_layers(model)
    ignored_all = [sub for layer in ignored for sub in layer.modules()]
    positions = _positions(model, example_inputs)
    resolutions = sorted({p for p in positions.values()}, reverse=True)
    # Transformers keep one token grid (the patch embedding's pixel grid differs from the token
    # count by the class token), so stages are only a CNN notion.
    multi_stage = len(resolutions) > 1 and not heads
    infos: list[GroupInfo] = []
    if raw_groups is None:
        raw_groups = list(DG.get_all_groups(ignored_layers=ignored_all, root_module_types=ROOT_MODULE_TYPES))
    for group in raw_groups:
        qkv = [dep.target.module for dep, _ in group
               if dep.target.module in heads and DG.is_out_channel_pruning_fn(dep.handler)]
        if qkv:
            group = _reroot_attention(DG, group, heads)
            if group is None:
                continue
        key = group_key_module(DG, group)
        if key is None:
            continue
        producers = [dep.target.module for dep, _ in group
                     if isinstance(dep.target.module, ROOT_MODULE_TYPES) and DG.is_out_channel_pruning_fn(dep.handler)]
        kind = _kind(bool(qkv), len(set(producers)), multi_stage,
                     resolutions.index(positions[key]) + 1 if key in positions else 1)
        members = []
        for dep, _ in group:
            name = names.get(dep.target.module) or param_names.get(id(dep.target.module))
            member = (name, "out" if DG.is_out_channel_pruning_fn(dep.handler) else "in")
            if name and member not in members:  # graph-only nodes (reshape, add, ...) have no name
                members.append(member)
        root = group[0].dep.target.module
        fn = group[0].dep.handler
        channels = DG.get_out_channels(root) if DG.is_out_channel_pruning_fn(fn) else DG.get_in_channels(root)
        infos.append(GroupInfo(
            index=len(infos), key=key, key_name=names.get(key, "?"), channels=int(channels), kind=kind,
            signature=isomorphic_signature(DG, group), members=members, group=group,
            num_heads=heads[qkv[0]] if qkv else 0,
        ))
    return infos


def _reroot_attention(DG: tp.DependencyGraph, group, heads: dict[nn.Module, int]):
    """torch-pruning's re-rooting of an attention group at its downstream projection's input."""
    downstream, idxs = None, None
    for dep, dep_idxs in group:
        if isinstance(dep.target.module, ROOT_MODULE_TYPES) and DG.is_in_channel_pruning_fn(dep.handler):
            downstream, idxs = dep, dep_idxs
    if downstream is None:
        return None
    return DG.get_pruning_group(downstream.target.module, downstream.handler, idxs)


def _kind(is_attention: bool, producers: int, multi_stage: bool, stage: int) -> str:
    if is_attention:
        role = "attention"
    elif producers > 1:
        role = "residual" if multi_stage else "embed"
    else:
        role = "hidden" if multi_stage else "mlp"
    return f"stage{stage}_{role}" if multi_stage else role
