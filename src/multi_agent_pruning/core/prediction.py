"""MACs and params of a dry run's selection, predicted layer by layer.

The dense model is counted once with torch-pruning's op counter (the convention of the
Isomorphic Pruning and DepGraph papers). A selection becomes keep ratios of every layer (and
unwrapped parameter) its groups touch, and each layer's count is scaled by them. A layer pruned
as one unit by a customized pruner (Swin's ``PatchMerging``) passes its ratios on to the layers
inside it, which the op counter counts.
"""

from __future__ import annotations

import copy
from collections import defaultdict

import torch
import torch.nn as nn
import torch_pruning as tp

from multi_agent_pruning.compat import counted_modules
from multi_agent_pruning.core.graph import _timm_attention_types

__all__ = ["CostModel"]

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


class CostModel:
    """The dense model's MACs and params, and their prediction for per-layer keep ratios.

    Args:
        model: The dense model.
        example_inputs: The inputs the graph was traced with.
        DG: The traced dependency graph.
        importance: The pruner's ``CachedImportance`` (its groups are reused).
    """

    def __init__(self, model: nn.Module, example_inputs: torch.Tensor, DG: tp.DependencyGraph, importance) -> None:
        base_macs, base_params, layer_flops, _ = tp.utils.count_ops_and_params(model, example_inputs, layer_wise=True)
        self.base_macs, self.base_params = float(base_macs), int(base_params)
        self.model, self.DG, self.importance = model, DG, importance
        self._counted = counted_modules(model)
        self._layer_flops = {m: float(layer_flops.get(m) or 0.0) for m in self._counted}
        self._tokens = _attention_tokens(model, example_inputs)
        self._channels = {m: (DG.get_out_channels(m), DG.get_in_channels(m)) for m in DG.module2node
                          if isinstance(m, nn.Module) and DG.get_pruner_of_module(m) is not None}
        # Layers pruned as one unit: their pruner says what their children keep.
        self._composites = {id(m): DG.get_pruner_of_module(m) for m in self._channels
                            if hasattr(DG.get_pruner_of_module(m), "keep_ratios")}
        self._dependents: dict[tuple[int, object], list[tuple[object, str, float]]] = {}

    def keep_ratios(self, selections) -> dict[int, dict[str, float]]:
        """``{id(layer or parameter): {"out": kept share, "in": kept share}}`` after ``selections``."""
        removed: dict[int, dict[str, float]] = defaultdict(lambda: {"out": 0.0, "in": 0.0})
        targets: dict[int, object] = {}
        for sel in selections:
            for target, direction, factor in self._group_dependents(sel.module, sel.fn):
                removed[id(target)][direction] += len(sel.idxs) * factor
                targets[id(target)] = target
        keep = {tid: self._keep(targets[tid], rem) for tid, rem in removed.items()}
        for tid in [tid for tid in keep if tid in self._composites]:
            for child, keep_out, keep_in in self._composites[tid].keep_ratios(targets[tid], keep[tid]["out"],
                                                                              keep[tid]["in"]):
                keep[id(child)] = {"out": keep_out, "in": keep_in}
        return keep

    def _keep(self, target, removed: dict[str, float]) -> dict[str, float]:
        if isinstance(target, nn.Parameter):
            n_out = n_in = _pruned_dim_size(target)
        else:
            n_out, n_in = self._channels.get(target, (None, None))
        return {"out": max(0.0, 1 - removed["out"] / n_out) if n_out else 1.0,
                "in": max(0.0, 1 - removed["in"] / n_in) if n_in else 1.0}

    def _group_dependents(self, module: nn.Module, fn) -> list[tuple[object, str, float]]:
        """``(target, "out"|"in", removed per root channel)`` for the full group rooted here."""
        key = (id(module), fn)
        if key not in self._dependents:
            group = self.importance.groups.get(key)
            if group is None:  # importance was not asked for this root: build the group once
                out = self.DG.is_out_channel_pruning_fn(fn)
                n = self.DG.get_out_channels(module) if out else self.DG.get_in_channels(module)
                group = self.DG.get_pruning_group(module, fn, list(range(n)))
            self._dependents[key] = self._factors(group)
        return self._dependents[key]

    def _factors(self, group) -> list[tuple[object, str, float]]:
        n_root = len(group[0].idxs)
        factors: dict[tuple[int, str], tuple[object, str, float]] = {}
        for dep, idxs in group:
            target = dep.target.module
            direction = "out" if self.DG.is_out_channel_pruning_fn(dep.handler) else "in"
            factor = len(idxs) / n_root
            previous = factors.get((id(target), direction))
            if previous is None or previous[2] < factor:
                factors[(id(target), direction)] = (target, direction, factor)
        return list(factors.values())

    def macs(self, keep: dict, heads_after: dict[nn.Module, int]) -> float:
        """Predicted MACs at ``keep`` ratios, with ``heads_after`` attention heads."""
        total = 0.0
        for layer_macs in self.layer_macs(keep, heads_after).values():
            total += layer_macs
        return total

    def layer_macs(self, keep: dict, heads_after: dict[nn.Module, int]) -> dict[nn.Module, float]:
        """Predicted MACs of every layer the op counter counts, in its order."""
        layers = {}
        carried = 1.0  # keep ratio of the latest layer, for parameter-free ops that follow it
        for module in self._counted:
            base, ratios = self._layer_flops[module], keep.get(id(module))
            if isinstance(module, _timm_attention_types()):
                layers[module] = self._attention_flops(module, keep, heads_after)
            elif ratios is None:
                layers[module] = base * (carried if not _has_params(module) else 1.0)
            else:
                factor, carried = _macs_factor(module, ratios["out"], ratios["in"])
                layers[module] = base * factor
        return layers

    def _attention_flops(self, module: nn.Module, keep: dict, heads_after: dict[nn.Module, int]) -> float:
        """torch-pruning's count for a timm attention layer, with the planned dimensions."""
        ratios = keep.get(id(module.qkv), {"out": 1.0, "in": 1.0})
        if module not in self._tokens:
            return self._layer_flops[module]
        n, batch = self._tokens[module]
        qdim = module.qkv.out_features * ratios["out"] / 3
        dim_in = module.qkv.in_features * ratios["in"]
        heads = heads_after.get(module.qkv, module.num_heads)
        flops = n * qdim + 3 * n * dim_in * qdim
        if module.qkv.bias is not None:
            flops += 3 * n * qdim
        flops += heads * (2 * n * n * (qdim / max(heads, 1)) + n * n)
        flops += n * qdim * (qdim + 1)
        return flops * batch

    def params(self, keep: dict, heads_after: dict[nn.Module, int] | None = None) -> float:
        """Predicted params at ``keep`` ratios (with ``heads_after`` attention heads)."""
        total = 0.0
        for module in self.model.modules():
            ratios = keep.get(id(module), {"out": 1.0, "in": 1.0})
            r_out, r_in = ratios["out"], ratios["in"]
            for name, param in module.named_parameters(recurse=False):
                pk = keep.get(id(param))
                if pk is not None:
                    total += param.numel() * min(pk["out"], pk["in"])
                elif name == "relative_position_bias_table" and isinstance(module, _timm_attention_types()):
                    total += param.numel() * (heads_after or {}).get(module.qkv, module.num_heads) / module.num_heads
                elif name == "bias" or isinstance(module, _NORMS):
                    total += param.numel() * min(r_out, r_in)
                elif _depthwise(module):
                    total += param.numel() * r_out
                else:
                    total += param.numel() * r_out * r_in
        return total


def _macs_factor(module: nn.Module, r_out: float, r_in: float) -> tuple[float, float]:
    """Share of a layer's MACs kept, and the keep ratio carried to parameter-free ops after it."""
    if isinstance(module, _NORMS):
        return min(r_out, r_in), min(r_out, r_in)
    if _depthwise(module):
        return r_out, r_out  # input and output channels are the same channels
    return r_out * r_in, r_out


def _depthwise(module: nn.Module) -> bool:
    return isinstance(module, tp.ops.TORCH_CONV) and module.groups > 1 and module.groups == module.in_channels


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _pruned_dim_size(param: nn.Parameter) -> int:
    """Size of the dimension torch-pruning prunes in an unwrapped parameter (last non-singleton)."""
    for size in reversed(param.shape):
        if size > 1:
            return int(size)
    return 1


def _attention_tokens(model: nn.Module, example_inputs: torch.Tensor) -> dict[nn.Module, tuple[int, int]]:
    """``(sequence length, batch)`` seen by each timm attention layer in one forward pass (Swin's
    window attention sees one sequence per window)."""
    tokens: dict[nn.Module, tuple[int, int]] = {}
    attn_types = _timm_attention_types()
    if not any(isinstance(m, attn_types) for m in model.modules()):
        return tokens

    def hook(module, inputs, _output):
        tokens[module] = (int(inputs[0].shape[1]), int(inputs[0].shape[0]))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, attn_types)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(copy.copy(example_inputs))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return tokens
