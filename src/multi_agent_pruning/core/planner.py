"""Fast dry runs of torch-pruning's channel selection, with predicted MACs and params.

Hitting a MACs target exactly means searching the pruning ratio, and each candidate ratio
would cost a full prune and a count. The planner instead runs torch-pruning's own ranking
(``BasePruner._prune``) in *dry* mode: importance is computed once and cached, the graph's
groups are enumerated once, and the selected channels are turned into per-layer keep ratios.
MACs and params are then predicted layer by layer from the dense model's counts (torch-pruning's
op counter, the convention of the Isomorphic Pruning and DepGraph papers). The engine checks
the prediction against a real count after pruning.
"""

from __future__ import annotations

import copy
import logging
import math
from collections import defaultdict
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning.utils.op_counter import is_supported_instance

from multi_agent_pruning.compat import check_torch_pruning
from multi_agent_pruning.core.graph import GroupInfo, _timm_attention_types

logger = logging.getLogger(__name__)

__all__ = ["CachedImportance", "SelectionPlanner", "Scope"]

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)


class CachedImportance:
    """Wraps a torch-pruning importance; scores are computed once per group until ``clear()``."""

    def __init__(self, importance: tp.importance.Importance) -> None:
        self.importance = importance
        self._cache: dict[tuple[int, object], torch.Tensor | None] = {}
        self.groups: dict[tuple[int, object], object] = {}

    def __call__(self, group) -> torch.Tensor | None:
        key = (id(group[0].dep.target.module), group[0].dep.handler)
        if key not in self._cache:
            self._cache[key] = self._break_ties(group, self.importance(group))
            self.groups[key] = group
        return self._cache[key]

    @staticmethod
    def _break_ties(group, scores: torch.Tensor | None) -> torch.Tensor | None:
        """Replaces non-finite scores by 0 and orders exactly tied scores by weight magnitude.

        Gradient criteria give many exact ties (zeros) on some models, e.g. timm ResNets whose
        last BatchNorm scale starts at zero; global ranking would then take or leave whole
        blocks of tied channels at once and could not meet a MACs target finely. A term a
        million times smaller than the scores orders the ties and nothing else.
        """
        if scores is None or scores.numel() < 2:
            return scores
        # torch-pruning normalises by the group mean: an all-zero group becomes 0/0 = NaN, and a
        # NaN threshold would select nothing at all.
        scores = torch.nan_to_num(scores, nan=0.0, posinf=0.0, neginf=0.0)
        if torch.unique(scores).numel() == scores.numel():
            return scores
        magnitude = tp.importance.GroupMagnitudeImportance(p=2)(group)
        if magnitude is None or magnitude.shape != scores.shape:
            return scores
        scale = float(scores.abs().max()) or 1.0
        return scores + 1e-6 * scale * magnitude / (float(magnitude.max()) or 1.0)

    def scores(self, module: nn.Module, fn) -> torch.Tensor | None:
        """Cached scores of the group rooted at ``(module, fn)``, if computed."""
        return self._cache.get((id(module), fn))

    def clear(self) -> None:
        self._cache.clear()
        self.groups.clear()


@dataclass
class Scope:
    """A ranking scope: groups whose channels are ranked together under one pruning ratio.

    Attributes:
        name: Unique scope name (``kind:index``).
        kind: Group kind of its members (for per-kind multipliers).
        keys: Key modules of its groups.
        multiplier: Factor applied to the common pruning ratio.
        channels: Channels of all its groups together.
        cap: Upper bound of the scope's ratio (None: the strategy's ``max_layer_pruning``).
    """

    name: str
    kind: str
    keys: tuple[nn.Module, ...]
    multiplier: float
    channels: int
    cap: float | None = None


class _DryGroup(list):
    """What the dry run yields instead of a real pruning group: the root and chosen indices."""

    def __init__(self, module: nn.Module, fn, idxs: list[int]) -> None:
        super().__init__()
        self.module, self.fn, self.idxs = module, fn, idxs


class SelectionPlanner:
    """Dry-runs a torch-pruning ``BasePruner`` and predicts MACs/params of the selection.

    Args:
        pruner: A pruner built on the (dense) model with a :class:`CachedImportance`.
        model: The dense model.
        example_inputs: The inputs the graph was traced with.
        groups: :func:`~multi_agent_pruning.core.graph.describe_groups` of the model.
        scopes: Ranking scopes; installed into the pruner as layer-specific ratios.
    """

    def __init__(self, pruner: tp.pruner.BasePruner, model: nn.Module, example_inputs: torch.Tensor,
                 groups: list[GroupInfo], scopes: list[Scope]) -> None:
        check_torch_pruning(pruner)  # the private APIs below, or one clear error naming what is missing
        self.pruner, self.model, self.scopes = pruner, model, scopes
        self.DG = pruner.DG
        self._initial_num_heads = dict(pruner.num_heads)
        self._initial_out_groups = dict(pruner.out_channel_groups)
        self._install_scopes()
        self._full_groups: list | None = None
        self._rerooted: dict[int, object] = {}
        self.dry_runs = 0
        self.max_layer_pruning = pruner.max_pruning_ratio
        self.min_channels = 1
        # Per-root caps (tighter per-kind safety limits), keyed like CachedImportance.
        self.root_caps: dict[tuple[int, object], float] = {}
        self._dependents: dict[tuple[int, object], list[tuple[object, str, float]]] = {}
        base_macs, base_params, layer_flops, _ = tp.utils.count_ops_and_params(model, example_inputs, layer_wise=True)
        self.base_macs, self.base_params = float(base_macs), int(base_params)
        self._counted = _counted_modules(model)
        self._layer_flops = {m: float(layer_flops.get(m) or 0.0) for m in self._counted}
        self._tokens = _attention_tokens(model, example_inputs)
        self._batch = int(example_inputs.shape[0])
        self._channels = {}
        for m in self.DG.module2node:
            if isinstance(m, nn.Module) and self.DG.get_pruner_of_module(m) is not None:
                self._channels[m] = (self.DG.get_out_channels(m), self.DG.get_in_channels(m))
        self.unmatched_groups = [g.key_name for g in groups if not any(g.key in s.keys for s in scopes)]
        # Roots of attention groups: the qkv projection (out channels: q, k, v blocks of heads x
        # head_dim) and the output projection (in channels: heads x head_dim).
        self._attention_roots: dict[int, tuple[nn.Module, int]] = {}
        for m in model.modules():
            if isinstance(m, _timm_attention_types()):
                self._attention_roots[id(m.qkv)] = (m.qkv, 3)
                self._attention_roots[id(m.proj)] = (m.qkv, 1)
        self._step_heads: dict[nn.Module, int] = dict(pruner.num_heads)

    # -- pruner state ------------------------------------------------------------------------
    def _install_scopes(self) -> None:
        """Registers every scope as a torch-pruning user-defined ranking scope."""
        p = self.pruner
        p._layer_to_scope.clear()
        p.pruning_ratio_dict.clear()
        for scope in self.scopes:
            for i, key in enumerate(scope.keys):
                name = scope.name if p.global_pruning else f"{scope.name}_{i}"
                p._layer_to_scope[key] = (name, scope.keys)
                p.pruning_ratio_dict[key] = [0.0, 0.0]
        # Groups outside every scope (none, normally) keep their channels.
        p.pruning_ratio = 0.0
        p.per_step_pruning_ratio = [0.0] * (p.iterative_steps + 1)

    def set_ratios(self, ratios: dict[str, float], head_ratio: float, steps: int) -> None:
        """Resets the pruner and schedules ``ratios`` (by scope name) over ``steps`` steps."""
        p = self.pruner
        p.current_step = 0
        p.iterative_steps = steps
        p._scope_initial_channels = {}
        p.num_heads.clear()
        p.num_heads.update(self._initial_num_heads)
        p.out_channel_groups.clear()
        p.out_channel_groups.update(self._initial_out_groups)
        p.per_step_pruning_ratio = [0.0] * (steps + 1)
        p.per_step_head_pruning_ratio = p.iterative_pruning_ratio_scheduler(head_ratio, steps)
        for scope in self.scopes:
            schedule = p.iterative_pruning_ratio_scheduler(ratios[scope.name], steps)
            for key in scope.keys:
                p.pruning_ratio_dict[key] = schedule

    # -- dry run -----------------------------------------------------------------------------
    def dry_run(self, ratios: dict[str, float], head_ratio: float = 0.0) -> tuple[float, float, dict]:
        """Predicted ``(macs, params, keep_ratios)`` if the scopes were pruned at ``ratios``."""
        self.set_ratios(ratios, head_ratio, steps=1)
        DG, pruner = self.DG, self.pruner
        real_get_all, real_reroot = DG.get_all_groups, pruner._downstream_node_as_root_if_attention
        real_get_group = DG.get_pruning_group

        def get_all_groups(*args, **kwargs):
            if self._full_groups is None:
                self._full_groups = list(real_get_all(*args, **kwargs))
            return iter(self._full_groups)

        def reroot(group):
            if id(group) not in self._rerooted:
                DG.get_pruning_group = real_get_group
                try:
                    self._rerooted[id(group)] = real_reroot(group)
                finally:
                    DG.get_pruning_group = dry_group
            return self._rerooted[id(group)]

        DG.get_all_groups, pruner._downstream_node_as_root_if_attention = get_all_groups, reroot
        def dry_group(module, fn, idxs):
            return _DryGroup(module, fn, self.capped(module, fn, idxs))

        DG.get_pruning_group = dry_group
        DG.check_pruning_group = lambda group: True
        try:
            pruner.current_step += 1
            self._step_heads = dict(pruner.num_heads)
            selections = list(pruner._prune())
        finally:
            del DG.get_all_groups, DG.get_pruning_group, DG.check_pruning_group
            del pruner._downstream_node_as_root_if_attention
        self.dry_runs += 1
        heads_after = dict(self.pruner.num_heads)
        keep = self._keep_ratios(selections)
        return self._predict_macs(keep, heads_after), self._predict_params(keep), keep

    def capped(self, module: nn.Module, fn, idxs) -> list[int]:
        """``idxs`` limited so the group keeps ``1 - cap`` of its channels and ``min_channels``.

        torch-pruning's global ranking can select every channel of a weak layer; the least
        important channels (by the cached importance) are the ones kept out of the selection.
        """
        idxs = [int(i) for i in idxs]
        out = self.DG.is_out_channel_pruning_fn(fn)
        total = self.DG.get_out_channels(module) if out else self.DG.get_in_channels(module)
        cap = self.root_caps.get((id(module), fn), self.max_layer_pruning)
        keep_min = min(total, max(self.min_channels, math.ceil(total * (1 - cap) - 1e-9)))
        if total - len(idxs) >= keep_min:
            return idxs
        attention = self._attention_roots.get(id(module))
        if attention is not None and (attention[1] == 3) == out:
            return self._cap_attention(module, fn, idxs, total, keep_min, *attention)
        scores = self.pruner.importance.scores(module, fn)
        if scores is None or len(scores) != total:
            return idxs[: max(0, total - keep_min)]  # grouped channels: keep the layout, cap the count
        order = sorted(idxs, key=lambda i: float(scores[i]))
        return sorted(order[: max(0, total - keep_min)])

    def _cap_attention(self, module: nn.Module, fn, idxs: list[int], total: int, keep_min: int,
                       qkv: nn.Module, blocks: int) -> list[int]:
        """``capped`` for an attention root, keeping every remaining head the same width.

        torch-pruning selects whole heads plus the same dimensions inside every head; cutting
        that selection to a count (as for plain channels) leaves a width the heads cannot share
        (e.g. 10 features for 3 heads). Here the per-head dimensions are given back first (the
        most important ones), then whole heads (the most important ones), and ``num_heads`` of
        the pruner follows the heads given back.
        """
        heads = self._step_heads.get(qkv, self.pruner.num_heads.get(qkv, 0))
        unit = total // blocks  # one block: heads x head_dim channels
        if heads < 1 or unit % heads or total % blocks:
            return idxs[: max(0, total - keep_min)]
        head_dim = unit // heads
        chosen = {i for i in idxs if i < unit}  # q, k and v are selected alike
        scores = self.pruner.importance.scores(module, fn)
        unit_scores = None
        if scores is not None and len(scores) == total:
            unit_scores = [sum(float(scores[b * unit + i]) for b in range(blocks)) for i in range(unit)]

        def weight(channels) -> float:
            return sum(unit_scores[c] for c in channels) if unit_scores is not None else 0.0

        def head_weight(h: int) -> float:
            return weight(range(h * head_dim, (h + 1) * head_dim))

        need = math.ceil(keep_min / blocks)
        removed = [h for h in range(heads) if all(h * head_dim + o in chosen for o in range(head_dim))]
        removed.sort(key=head_weight)
        # Give back whole heads (the most important first) while even full-width remaining heads
        # would be too few.
        while removed and (heads - len(removed)) * head_dim < need:
            removed.pop()
        kept = [h for h in range(heads) if h not in removed]
        # The dimensions selected in every remaining head (a head given back had all of them).
        offsets = [o for o in range(head_dim) if all(h * head_dim + o in chosen for h in kept)]
        max_offsets = max(0, min(len(offsets), head_dim - math.ceil(need / len(kept))))
        offsets.sort(key=lambda o: weight(h * head_dim + o for h in kept))
        offsets = offsets[:max_offsets]  # the least important stay selected
        # torch-pruning counted its head selection before asking for this group; the heads that
        # are really removed are those decided here.
        self.pruner.num_heads[qkv] = len(kept)
        if qkv in self.pruner.out_channel_groups:
            self.pruner.out_channel_groups[qkv] = len(kept)
        selected = {h * head_dim + o for h in removed for o in range(head_dim)}
        selected |= {h * head_dim + o for h in kept for o in offsets}
        return sorted(b * unit + i for b in range(blocks) for i in selected)

    def prune(self) -> None:
        """Runs the scheduled pruning step for real, with the same per-layer cap as the dry run."""
        DG, pruner = self.DG, self.pruner
        real_get_group, real_get_all = DG.get_pruning_group, DG.get_all_groups
        real_reroot = pruner._downstream_node_as_root_if_attention

        def capped_group(module, fn, idxs):
            return real_get_group(module, fn, self.capped(module, fn, idxs))

        # Only the selected channels are capped: enumerating the groups (all channels) and
        # re-rooting attention groups use the real call, as in the dry run.
        def get_all_groups(*args, **kwargs):
            groups = real_get_all(*args, **kwargs)
            while True:
                DG.get_pruning_group = real_get_group
                try:
                    group = next(groups)
                except StopIteration:
                    return
                finally:
                    DG.get_pruning_group = capped_group
                yield group

        def reroot(group):
            DG.get_pruning_group = real_get_group
            try:
                return real_reroot(group)
            finally:
                DG.get_pruning_group = capped_group

        DG.get_pruning_group, DG.get_all_groups = capped_group, get_all_groups
        pruner._downstream_node_as_root_if_attention = reroot
        self._step_heads = dict(pruner.num_heads)
        try:
            pruner.step()
        finally:
            del DG.get_pruning_group, DG.get_all_groups, pruner._downstream_node_as_root_if_attention

    def _group_dependents(self, module: nn.Module, fn) -> list[tuple[object, str, float]]:
        """``(target, "out"|"in", removed per root channel)`` for the full group rooted here."""
        key = (id(module), fn)
        if key not in self._dependents:
            group = self.pruner.importance.groups.get(key)
            if group is None:  # importance was not asked for this root: build the group once
                out = self.DG.is_out_channel_pruning_fn(fn)
                n = self.DG.get_out_channels(module) if out else self.DG.get_in_channels(module)
                group = self.DG.get_pruning_group(module, fn, list(range(n)))
            n_root = len(group[0].idxs)
            factors: dict[tuple[int, str], tuple[object, str, float]] = {}
            for dep, idxs in group:
                target = dep.target.module
                direction = "out" if self.DG.is_out_channel_pruning_fn(dep.handler) else "in"
                factor = len(idxs) / n_root
                previous = factors.get((id(target), direction))
                if previous is None or previous[2] < factor:
                    factors[(id(target), direction)] = (target, direction, factor)
            self._dependents[key] = list(factors.values())
        return self._dependents[key]

    def _keep_ratios(self, selections: list[_DryGroup]) -> dict[int, dict[str, float]]:
        removed: dict[int, dict[str, float]] = defaultdict(lambda: {"out": 0.0, "in": 0.0})
        targets: dict[int, object] = {}
        for sel in selections:
            for target, direction, factor in self._group_dependents(sel.module, sel.fn):
                removed[id(target)][direction] += len(sel.idxs) * factor
                targets[id(target)] = target
        keep: dict[int, dict[str, float]] = {}
        for tid, rem in removed.items():
            target = targets[tid]
            if isinstance(target, nn.Parameter):
                size = _pruned_dim_size(target)
                keep[tid] = {"out": max(0.0, 1 - rem["out"] / size), "in": max(0.0, 1 - rem["in"] / size)}
                continue
            n_out, n_in = self._channels.get(target, (None, None))
            keep[tid] = {
                "out": max(0.0, 1 - rem["out"] / n_out) if n_out else 1.0,
                "in": max(0.0, 1 - rem["in"] / n_in) if n_in else 1.0,
            }
        return keep

    # -- prediction --------------------------------------------------------------------------
    def _predict_macs(self, keep: dict, heads_after: dict[nn.Module, int]) -> float:
        total = 0.0
        carried = 1.0  # keep ratio of the latest layer, for parameter-free ops that follow it
        for module in self._counted:
            base = self._layer_flops[module]
            ratios = keep.get(id(module))
            if isinstance(module, _timm_attention_types()):
                total += self._attention_flops(module, keep, heads_after)
                continue
            if ratios is None:
                total += base * (carried if not _has_params(module) else 1.0)
                continue
            r_out, r_in = ratios["out"], ratios["in"]
            if isinstance(module, _NORMS):
                factor = min(r_out, r_in)
            elif isinstance(module, tp.ops.TORCH_CONV) and module.groups > 1 and module.groups == module.in_channels:
                factor = r_out  # depthwise: input and output channels are the same channels
            else:
                factor = r_out * r_in
            carried = min(r_out, r_in) if isinstance(module, _NORMS) else r_out
            total += base * factor
        return total

    def _attention_flops(self, module: nn.Module, keep: dict, heads_after: dict[nn.Module, int]) -> float:
        """torch-pruning's count for a timm attention layer, with the planned dimensions."""
        ratios = keep.get(id(module.qkv), {"out": 1.0, "in": 1.0})
        n = self._tokens.get(module)
        if n is None:
            return self._layer_flops[module]
        qdim = module.qkv.out_features * ratios["out"] / 3
        dim_in = module.qkv.in_features * ratios["in"]
        heads = heads_after.get(module.qkv, module.num_heads)
        flops = n * qdim + 3 * n * dim_in * qdim
        if module.qkv.bias is not None:
            flops += 3 * n * qdim
        flops += heads * (2 * n * n * (qdim / max(heads, 1)) + n * n)
        flops += n * qdim * (qdim + 1)
        return flops * self._batch

    def _predict_params(self, keep: dict) -> float:
        total = 0.0
        for module in self.model.modules():
            ratios = keep.get(id(module), {"out": 1.0, "in": 1.0})
            r_out, r_in = ratios["out"], ratios["in"]
            for name, param in module.named_parameters(recurse=False):
                pk = keep.get(id(param))
                if pk is not None:
                    total += param.numel() * min(pk["out"], pk["in"])
                elif name == "bias" or isinstance(module, _NORMS):
                    total += param.numel() * min(r_out, r_in)
                elif isinstance(module, tp.ops.TORCH_CONV) and module.groups > 1 and module.groups == module.in_channels:
                    total += param.numel() * r_out
                else:
                    total += param.numel() * r_out * r_in
        return total


def _has_params(module: nn.Module) -> bool:
    return any(True for _ in module.parameters(recurse=False))


def _pruned_dim_size(param: nn.Parameter) -> int:
    """Size of the dimension torch-pruning prunes in an unwrapped parameter (last non-singleton)."""
    for size in reversed(param.shape):
        if size > 1:
            return int(size)
    return 1


def _counted_modules(model: nn.Module) -> list[nn.Module]:
    """Modules torch-pruning's op counter counts, in registration order (not their children)."""
    counted: list[nn.Module] = []

    def visit(module: nn.Module) -> None:
        if is_supported_instance(module):
            counted.append(module)
            return
        for child in module.children():
            visit(child)

    visit(model)
    return counted


def _attention_tokens(model: nn.Module, example_inputs: torch.Tensor) -> dict[nn.Module, int]:
    """Sequence length seen by each timm attention layer in one forward pass."""
    tokens: dict[nn.Module, int] = {}
    attn_types = _timm_attention_types()
    if not any(isinstance(m, attn_types) for m in model.modules()):
        return tokens

    def hook(module, inputs, _output):
        tokens[module] = int(inputs[0].shape[1])

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
