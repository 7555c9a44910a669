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

Where the traced graph cannot describe a timm layer correctly, the layer is declared here, in
one place that the pruner, the profile and the analyzers share (:func:`graph_options`):

* timm's attention layers (ViT ``Attention``, Swin ``WindowAttention``) have their heads given to
  torch-pruning, which then prunes whole heads or the same dimensions in every head;
* Swin's ``relative_position_bias_table`` has one column per head: the graph would couple it
  with the head *dimensions*, so it is left out of the graph and loses the columns of removed
  heads only (:func:`update_attention_modules`);
* Swin's ``PatchMerging`` concatenates 2x2 neighbouring patches (four blocks of the input
  channels) through a permute that torch-pruning's index mapping does not follow, so it is
  pruned as one layer (:class:`PatchMergingPruner`).
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
    "PatchMergingPruner",
    "attention_heads",
    "build_dependency_graph",
    "classifier_layers",
    "describe_groups",
    "graph_options",
    "group_key_module",
    "isomorphic_signature",
    "unsupported_layers",
    "update_attention_modules",
]

ROOT_MODULE_TYPES = (tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR)


def _timm_attention_types() -> tuple[type, ...]:
    """timm's attention layers with a fused ``qkv`` Linear (q, k, v blocks of heads x head_dim),
    an output ``proj`` and ``num_heads``; torch-pruning's op counter counts each as one layer."""
    try:
        from timm.models.swin_transformer import WindowAttention
        from timm.models.vision_transformer import Attention

        return (Attention, WindowAttention)
    except ImportError:  # pragma: no cover - timm is a dependency
        return ()


def _patch_merging_type() -> type | None:
    try:
        from timm.models.swin_transformer import PatchMerging

        return PatchMerging
    except ImportError:  # pragma: no cover - timm is a dependency
        return None


_UNTRACED_QKV = ("applies its qkv weight through F.linear with the concatenated q/k/v biases (qkv_bias=True), so "
                 "the traced graph has no qkv layer and couples the attention's per-head parameters with the "
                 "embedding channels")
#: timm layers the engine cannot prune correctly: ``(module, class name) -> why``. Anything else that
#: fails is found by ``engine.check_prunable``'s trial prune; these are named before it, with the cause.
UNSUPPORTED_LAYERS = {
    ("timm.models.beit", "Attention"): _UNTRACED_QKV,
    ("timm.models.swin_transformer_v2", "WindowAttention"): _UNTRACED_QKV + " (logit_scale, the position-bias MLP)",
    ("timm.models.swin_transformer_v2", "PatchMerging"):
        "merges 2x2 patches through a permute that torch-pruning's index mapping does not follow (Swin V1's "
        "PatchMerging is pruned as one layer; this variant, normalised after the reduction, is not)",
    ("timm.models.swin_transformer_v2_cr", "WindowMultiHeadAttention"):
        "has a per-head logit_scale and a meta MLP with one output per head, which the traced graph couples with "
        "the head dimensions of qkv",
}


def unsupported_layers(model: nn.Module) -> dict[str, list[str]]:
    """``{reason: [layer names]}`` for the layers of ``model`` listed in ``UNSUPPORTED_LAYERS``."""
    found: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        kind = type(module)
        reason = UNSUPPORTED_LAYERS.get((kind.__module__, kind.__name__))
        if reason is not None:
            found.setdefault(f"{kind.__name__} {reason}", []).append(name)
    return found


def attention_heads(model: nn.Module) -> dict[nn.Module, int]:
    """``{qkv_linear: num_heads}`` for every timm attention layer, as torch-pruning expects."""
    return {m.qkv: m.num_heads for m in model.modules() if isinstance(m, _timm_attention_types())}


class PatchMergingPruner(tp.pruner.function.BasePruningFunc):
    """torch-pruning's pruning functions for timm's Swin ``PatchMerging`` (taken as one layer).

    Its forward concatenates each 2x2 patch neighbourhood into ``4 * dim`` features (four blocks
    of the ``dim`` input channels), normalises them and projects them to ``out_dim``: input
    channel ``c`` is feature ``b * dim + c`` of block ``b`` in ``norm`` and ``reduction``.
    Importance criteria do not read this layer's weights (torch-pruning skips layer types it
    does not know); the other layers of its groups rank the channels.
    """

    def parts(self, layer: nn.Module, idxs: Sequence[int], out: bool) -> list[tuple[nn.Module, bool, list[int]]]:
        """``(child, out_channels?, indices)`` that pruning ``idxs`` of ``layer`` removes."""
        idxs = [int(i) for i in idxs]
        if out:
            return [(layer.reduction, True, idxs)]
        blocks = [b * layer.dim + i for b in range(4) for i in idxs]
        return [(layer.norm, True, blocks), (layer.reduction, False, blocks)]

    def keep_ratios(self, layer: nn.Module, keep_out: float, keep_in: float) -> list[tuple[nn.Module, float, float]]:
        """``(child, kept share of its out channels, of its in channels)`` for the layer's shares."""
        return [(layer.norm, keep_in, keep_in), (layer.reduction, keep_out, keep_in)]

    def prune_out_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        self._prune_parts(layer, idxs, out=True)
        layer.out_dim = layer.reduction.out_features
        return layer

    def prune_in_channels(self, layer: nn.Module, idxs: Sequence[int]) -> nn.Module:
        self._prune_parts(layer, idxs, out=False)
        layer.dim -= len(set(idxs))
        return layer

    def _prune_parts(self, layer: nn.Module, idxs: Sequence[int], out: bool) -> None:
        for child, child_out, child_idxs in self.parts(layer, idxs, out):
            if isinstance(child, nn.LayerNorm):
                tp.prune_layernorm_out_channels(child, child_idxs)
            elif isinstance(child, nn.Linear):
                (tp.prune_linear_out_channels if child_out else tp.prune_linear_in_channels)(child, child_idxs)
            else:
                raise PruningError(f"PatchMerging with a {type(child).__name__} cannot be pruned (LayerNorm and "
                                   "Linear only)")

    def get_out_channels(self, layer: nn.Module) -> int:
        return layer.reduction.out_features

    def get_in_channels(self, layer: nn.Module) -> int:
        return layer.dim


def graph_options(model: nn.Module) -> dict:
    """What torch-pruning must be told about ``model``'s timm layers (see the module docstring):
    ``customized_pruners`` and ``ignored_params``, keyword arguments of its dependency graph."""
    merging = _patch_merging_type()
    merges = merging is not None and any(isinstance(m, merging) for m in model.modules())
    tables = (getattr(m, "relative_position_bias_table", None) for m in model.modules()
              if isinstance(m, _timm_attention_types()))
    return {"customized_pruners": {merging: PatchMergingPruner()} if merges else {},
            "ignored_params": [table for table in tables if isinstance(table, nn.Parameter)]}


def update_attention_modules(model: nn.Module, num_heads: dict[nn.Module, int],
                             removed_heads: dict[nn.Module, Sequence[int]] | None = None) -> None:
    """Makes timm attention layers consistent with their pruned ``qkv`` projection.

    timm's forward reshapes with ``num_heads`` (and ``head_dim`` in ViT); after torch-pruning
    removed heads or head dimensions these attributes must follow, or the stock forward fails.
    A per-head relative position bias table (Swin) loses the columns of ``removed_heads``
    (``{qkv: head indices}``, numbered before this pruning step).
    """
    names = {m: n for n, m in model.named_modules()}
    for module in model.modules():
        if not isinstance(module, _timm_attention_types()):
            continue
        heads = num_heads.get(module.qkv, module.num_heads)
        qkv_out = module.qkv.out_features
        if heads < 1 or qkv_out % (3 * heads):
            raise PruningError(f"attention layer {names[module]} with qkv of {qkv_out} features cannot have "
                               f"{heads} heads")
        _remove_bias_columns(module, (removed_heads or {}).get(module.qkv, ()))
        table = getattr(module, "relative_position_bias_table", None)
        if table is not None and table.shape[-1] != heads:
            raise PruningError(f"attention layer {names[module]} has {heads} heads but its relative position bias "
                               f"table has {table.shape[-1]} columns")
        module.num_heads = heads
        if hasattr(module, "head_dim"):
            module.head_dim = qkv_out // (3 * heads)
        if hasattr(module, "attn_dim"):
            module.attn_dim = qkv_out // 3


def _remove_bias_columns(module: nn.Module, removed: Sequence[int]) -> None:
    table = getattr(module, "relative_position_bias_table", None)
    if table is None or not removed:
        return
    keep = [h for h in range(table.shape[-1]) if h not in set(removed)]
    module.relative_position_bias_table = nn.Parameter(table.data[:, keep].clone(), requires_grad=table.requires_grad)


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
    """Traces ``model`` into a torch-pruning dependency graph (with :func:`graph_options`); tracing
    errors become PruningError."""
    was_training = model.training
    model.eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "unwrapped parameters" (cls_token, pos_embed) are handled
            return tp.DependencyGraph().build_dependency(model, example_inputs=example_inputs,
                                                         **{**graph_options(model), **kwargs})
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
