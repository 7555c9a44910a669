"""Fast dry runs of torch-pruning's channel selection, capped per group, with predicted costs.

Hitting a MACs target exactly means searching the pruning ratio, and each candidate ratio
would cost a full prune and a count. The planner instead runs torch-pruning's own ranking in
*dry* mode (:func:`~multi_agent_pruning.compat.dry_step`): importance is computed once and
cached, the graph's groups are enumerated once, every group's selection is capped
(:class:`SelectionCap`), and MACs and params are predicted from it (:mod:`.prediction`). The
engine checks the prediction against a real count after pruning.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch_pruning as tp

from multi_agent_pruning.compat import (
    capped_step, channel_groups, check_torch_pruning, dry_step, install_scopes, schedule_ratios, set_num_heads)
from multi_agent_pruning.core.graph import (
    GroupInfo, _timm_attention_types, attention_heads, describe_groups, graph_options, unsupported_layers)
from multi_agent_pruning.core.prediction import CostModel
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import PruningError, suggest_names

__all__ = ["CachedImportance", "Scope", "SelectionCap", "SelectionPlanner", "build_scopes", "plan"]


class CachedImportance:
    """Wraps a torch-pruning importance; scores are computed once per group until ``clear()``."""

    def __init__(self, importance: tp.importance.Importance) -> None:
        self.importance = importance
        self._cache: dict[tuple[int, object], torch.Tensor | None] = {}
        self.groups: dict[tuple[int, object], object] = {}
        self.current = None  # the group being scored (left set when scoring fails)

    def __call__(self, group) -> torch.Tensor | None:
        key = (id(group[0].dep.target.module), group[0].dep.handler)
        if key not in self._cache:
            self.current = group
            self._cache[key] = self._break_ties(group, self.importance(group))
            self.groups[key] = group
            self.current = None
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


def build_scopes(groups: list[GroupInfo], strategy: Strategy) -> list[Scope]:
    """Ranking scopes for ``strategy`` over the model's groups.

    * isomorphic: one scope per isomorphic signature, exactly as torch-pruning's isomorphic mode
      ranks (split further by kind when per-kind multipliers differ);
    * global, no per-kind multipliers: a single scope over all groups (plain global ranking);
    * global with multipliers: one scope per kind, each at its multiplied ratio;
    * local: one scope per kind; torch-pruning then ranks each layer on its own.
    """
    multipliers = strategy.group_multipliers
    kinds = sorted({g.kind for g in groups})
    unknown = sorted((set(multipliers) | set(strategy.kind_max_pruning)) - set(kinds))
    if unknown:
        hints = {k: suggest_names(k, kinds) for k in unknown}
        raise PruningError(f"strategy names group kinds this model does not have: {unknown} (suggestions: {hints}); "
                           f"the model's kinds are {kinds}")
    uniform = len({multipliers.get(k, 1.0) for k in kinds}) <= 1
    buckets: dict[tuple[str, str], list[GroupInfo]] = {}
    for g in groups:
        buckets.setdefault(_bucket(g, strategy, uniform), []).append(g)
    scopes = []
    for i, ((kind, _), members) in enumerate(buckets.items()):
        mult = multipliers.get(kind, next(iter(multipliers.values()), 1.0))
        caps = [strategy.kind_max_pruning[g.kind] for g in members if g.kind in strategy.kind_max_pruning]
        scopes.append(Scope(name=f"{kind}:{i}", kind=kind, keys=tuple(g.key for g in members),
                            multiplier=float(mult), channels=sum(g.channels for g in members),
                            cap=min(caps) if caps else None))
    return scopes


def _bucket(group: GroupInfo, strategy: Strategy, uniform: bool) -> tuple[str, str]:
    isomorphic = strategy.isomorphic and strategy.global_pruning
    together = "isomorphic" if isomorphic else "all"
    return (together if strategy.global_pruning and uniform else group.kind), (group.signature if isomorphic else "")


class SelectionCap:
    """``cap(module, fn, idxs)``: the ``idxs`` selected in the group rooted at ``(module, fn)``, capped.

    torch-pruning's global ranking can select every channel of a weak layer; the most important
    selected channels (by the cached importance) are given back until the group keeps ``1 - cap``
    of its channels and ``min_channels``; in attention groups per-head dimensions and whole heads
    are given back, so that every remaining head keeps the same width, and in groups of grouped
    channels (grouped convolutions, GroupNorm) the same offsets in every channel group.

    Args:
        pruner: The pruner whose selections are capped (importance: a ``CachedImportance``).
        model: The dense model.
        max_ratio: Cap of every group (the strategy's ``max_layer_pruning``).
        root_caps: Tighter caps (per-kind safety limits) by ``(id(root module), pruning fn)``.
        min_channels: Channels every group keeps at least.
        channel_groups: Channel groups (more than one) of the groups so rooted, by the same key.

    Attributes:
        removed_heads: ``{qkv: head indices}`` the attention groups selected whole, numbered as
            at the start of the step (what per-head parameters lose; see ``update_attention_modules``).
    """

    def __init__(self, pruner: tp.pruner.BasePruner, model: nn.Module, max_ratio: float,
                 root_caps: dict[tuple[int, object], float], min_channels: int,
                 channel_groups: dict[tuple[int, object], int] | None = None) -> None:
        self.pruner, self.DG = pruner, pruner.DG
        self.max_ratio, self.root_caps, self.min_channels = max_ratio, root_caps, min_channels
        self.channel_groups = channel_groups or {}
        self.step_heads = dict(pruner.num_heads)  # before the current step; the planner sets it
        self.removed_heads: dict[nn.Module, list[int]] = {}
        # Roots of attention groups: the qkv projection (out channels: q, k, v blocks of heads x
        # head_dim) and the output projection (in channels: heads x head_dim).
        self._attention_roots: dict[int, tuple[nn.Module, int]] = {}
        for m in model.modules():
            if isinstance(m, _timm_attention_types()):
                self._attention_roots[id(m.qkv)] = (m.qkv, 3)
                self._attention_roots[id(m.proj)] = (m.qkv, 1)

    def __call__(self, module: nn.Module, fn, idxs) -> list[int]:
        idxs = [int(i) for i in idxs]
        out = self.DG.is_out_channel_pruning_fn(fn)
        total = self.DG.get_out_channels(module) if out else self.DG.get_in_channels(module)
        cap = self.root_caps.get((id(module), fn), self.max_ratio)
        keep_min = min(total, max(self.min_channels, math.ceil(total * (1 - cap) - 1e-9)))
        attention = self._attention_roots.get(id(module))
        if attention is not None and (attention[1] == 3) == out:
            if total - len(idxs) < keep_min:
                idxs = self._cap_attention(module, fn, idxs, total, keep_min, *attention)
            self._record_heads(idxs, total, *attention)
            return idxs
        groups = self.channel_groups.get((id(module), fn), 1)
        if groups > 1 and total % groups == 0:
            # Two channels per group at least: with one, a grouped convolution would turn depthwise,
            # which torch-pruning prunes differently (whole groups) from the next step on.
            keep_min = max(keep_min, groups * min(2, total // groups))
            if total - len(idxs) >= keep_min:
                return idxs
            return self._cap_grouped(module, fn, idxs, total, keep_min, groups)
        if total - len(idxs) >= keep_min:
            return idxs
        scores = self.pruner.importance.scores(module, fn)
        if scores is None or len(scores) != total:
            return idxs[: max(0, total - keep_min)]
        return sorted(sorted(idxs, key=lambda i: float(scores[i]))[: max(0, total - keep_min)])

    def _cap_grouped(self, module: nn.Module, fn, idxs: list[int], total: int, keep_min: int,
                     groups: int) -> list[int]:
        """The cap of grouped channels: torch-pruning selects the same offsets in every channel
        group (a grouped convolution keeps its groups); the most important offsets are given back."""
        size = total // groups
        chosen = set(idxs)
        offsets = [o for o in range(size) if all(g * size + o in chosen for g in range(groups))]
        weight = self._weight(module, fn, total, size, groups)
        keep = max(0, min(len(offsets), size - math.ceil(keep_min / groups)))
        offsets = sorted(offsets, key=lambda o: weight((o,)))[:keep]
        return sorted(g * size + o for g in range(groups) for o in offsets)

    def _record_heads(self, idxs: list[int], total: int, qkv: nn.Module, blocks: int) -> None:
        """Notes the heads of ``qkv`` that the selection ``idxs`` removes whole."""
        heads = self.step_heads.get(qkv, self.pruner.num_heads.get(qkv, 0))
        unit = total // blocks
        if heads < 1 or unit % heads:
            return
        head_dim, chosen = unit // heads, set(idxs)
        self.removed_heads[qkv] = [h for h in range(heads)
                                   if all(h * head_dim + o in chosen for o in range(head_dim))]

    def _cap_attention(self, module: nn.Module, fn, idxs: list[int], total: int, keep_min: int,
                       qkv: nn.Module, blocks: int) -> list[int]:
        """The cap of an attention root, keeping every remaining head the same width.

        torch-pruning selects whole heads plus the same dimensions inside every head; cutting
        that selection to a count (as for plain channels) leaves a width the heads cannot share
        (e.g. 10 features for 3 heads). Here the per-head dimensions are given back first (the
        most important ones), then whole heads (the most important ones), and ``num_heads`` of
        the pruner follows the heads given back.
        """
        heads = self.step_heads.get(qkv, self.pruner.num_heads.get(qkv, 0))
        unit = total // blocks  # one block: heads x head_dim channels
        if heads < 1 or unit % heads or total % blocks:
            return idxs[: max(0, total - keep_min)]
        head_dim, need = unit // heads, math.ceil(keep_min / blocks)
        chosen = {i for i in idxs if i < unit}  # q, k and v are selected alike
        weight = self._weight(module, fn, total, unit, blocks)
        removed = sorted((h for h in range(heads) if all(h * head_dim + o in chosen for o in range(head_dim))),
                         key=lambda h: weight(range(h * head_dim, (h + 1) * head_dim)))
        # Give back whole heads (the most important first) while even full-width remaining heads
        # would be too few.
        while removed and (heads - len(removed)) * head_dim < need:
            removed.pop()
        kept = [h for h in range(heads) if h not in removed]
        # The dimensions selected in every remaining head (a head given back had all of them).
        offsets = [o for o in range(head_dim) if all(h * head_dim + o in chosen for h in kept)]
        max_offsets = max(0, min(len(offsets), head_dim - math.ceil(need / len(kept))))
        offsets = sorted(offsets, key=lambda o: weight(h * head_dim + o for h in kept))[:max_offsets]
        # torch-pruning counted its head selection before asking for this group; the heads that
        # are really removed are those decided here.
        set_num_heads(self.pruner, qkv, len(kept))
        selected = {h * head_dim + o for h in removed for o in range(head_dim)}
        selected |= {h * head_dim + o for h in kept for o in offsets}
        return sorted(b * unit + i for b in range(blocks) for i in selected)

    def _weight(self, module: nn.Module, fn, total: int, unit: int, blocks: int) -> Callable[..., float]:
        """Importance of some channels of one block (q, k and v summed); 0 without scores."""
        scores = self.pruner.importance.scores(module, fn)
        if scores is None or len(scores) != total:
            return lambda channels: 0.0
        unit_scores = [sum(float(scores[b * unit + i]) for b in range(blocks)) for i in range(unit)]
        return lambda channels: sum(unit_scores[c] for c in channels)


class SelectionPlanner:
    """Dry-runs a torch-pruning ``BasePruner`` and predicts MACs/params of the selection.

    Args:
        pruner: A pruner built on the (dense) model with a :class:`CachedImportance`.
        model: The dense model.
        example_inputs: The inputs the graph was traced with.
        scopes: Ranking scopes; installed into the pruner as layer-specific ratios.
        all_groups: Every group of the pruner's graph, as its ``DG.get_all_groups`` yields them.
        root_caps / min_channels: Tighter caps of some groups, and the channels every group keeps
            (see :class:`SelectionCap`).
    """

    def __init__(self, pruner: tp.pruner.BasePruner, model: nn.Module, example_inputs: torch.Tensor,
                 scopes: list[Scope], all_groups: list, root_caps: dict | None = None, min_channels: int = 1) -> None:
        check_torch_pruning(pruner)  # what compat's patches rely on, or one clear error naming what is missing
        self.pruner, self.scopes, self.dry_runs = pruner, scopes, 0
        self._initial_heads = (dict(pruner.num_heads), dict(pruner.out_channel_groups))
        install_scopes(pruner, [(scope.name, scope.keys) for scope in scopes])
        self._all_groups, self._rerooted, self._pruning = all_groups, {}, None
        self.cost = CostModel(model, example_inputs, pruner.DG, pruner.importance)
        self.base_macs, self.base_params = self.cost.base_macs, self.cost.base_params
        self.cap = SelectionCap(pruner, model, pruner.max_pruning_ratio, root_caps or {}, min_channels,
                                _channel_groups(pruner, all_groups))

    @property
    def all_groups(self) -> list:
        """Every group of the dense model's graph (full indices)."""
        return self._all_groups

    def set_ratios(self, ratios: dict[str, float], head_ratio: float, steps: int) -> None:
        """Resets the pruner and schedules ``ratios`` (by scope name) over ``steps`` steps."""
        schedule_ratios(self.pruner, [(scope.keys, ratios[scope.name]) for scope in self.scopes], head_ratio, steps,
                        self._initial_heads)

    def dry_run(self, ratios: dict[str, float], head_ratio: float = 0.0) -> tuple[float, float, dict]:
        """Predicted ``(macs, params, keep_ratios)`` if the scopes were pruned at ``ratios``."""
        keep, heads_after = self._select(ratios, head_ratio)
        return self.cost.macs(keep, heads_after), self.cost.params(keep, heads_after), keep

    def predict_layers(self, ratios: dict[str, float], head_ratio: float = 0.0) -> dict[nn.Module, float]:
        """Predicted MACs of every counted layer if the scopes were pruned at ``ratios``."""
        return self.cost.layer_macs(*self._select(ratios, head_ratio))

    def _select(self, ratios: dict[str, float], head_ratio: float) -> tuple[dict, dict[nn.Module, int]]:
        """Keep ratios of the dry run's selection, and the attention heads left after it."""
        self.set_ratios(ratios, head_ratio, steps=1)
        self.cap.step_heads = dict(self.pruner.num_heads)
        with self._naming_failures("rank"):
            selections = dry_step(self.pruner, self.cap, self._all_groups, self._rerooted)
        self.dry_runs += 1
        return self.cost.keep_ratios(selections), dict(self.pruner.num_heads)

    def prune(self) -> None:
        """Runs the scheduled pruning step for real, with the same per-layer cap as the dry run;
        ``cap.removed_heads`` then holds the heads this step removed."""
        self.cap.step_heads = dict(self.pruner.num_heads)
        self.cap.removed_heads = {}
        with self._naming_failures("prune"):
            capped_step(self.pruner, self.cap, self._prune_group)

    def _prune_group(self, group) -> None:
        self._pruning = group
        group.prune()
        self._pruning = None

    @contextmanager
    def _naming_failures(self, action: str) -> Iterator[None]:
        """torch-pruning's errors on one group become a PruningError naming the group's layers."""
        self._pruning = self.pruner.importance.current = None
        try:
            yield
        except (PruningError, MemoryError, torch.cuda.OutOfMemoryError):
            raise
        except Exception as err:
            group = self._pruning or self.pruner.importance.current
            if group is None:
                raise
            raise PruningError(f"torch-pruning cannot {action} the group of {self._describe(group)}: "
                               f"{type(err).__name__}: {err}") from err

    def _describe(self, group) -> str:
        """The group's root layer and the layers it prunes, by name."""
        names = {**{id(p): n for n, p in self.cost.model.named_parameters()},
                 **{id(m): n for n, m in self.cost.model.named_modules()}}
        members = list(dict.fromkeys(names[id(dep.target.module)] for dep, _ in group
                                     if id(dep.target.module) in names))
        root = names.get(id(group[0].dep.target.module), type(group[0].dep.target.module).__name__)
        return f"{root} (layers {', '.join(members[:8])}{' ...' if len(members) > 8 else ''})"


def _channel_groups(pruner: tp.pruner.BasePruner, groups: list) -> dict[tuple[int, object], int]:
    """Channel groups of the (non-attention) groups that have several, by ``(id(root), fn)``."""
    found = {}
    for group in groups:
        if any(dep.target.module in pruner.num_heads and pruner.DG.is_out_channel_pruning_fn(dep.handler)
               for dep, _ in group):
            continue  # attention groups: the cap handles heads itself
        count = channel_groups(pruner, group)
        if count > 1:
            found[(id(group[0].dep.target.module), group[0].dep.handler)] = count
    return found


def plan(model: nn.Module, strategy: Strategy, example_inputs: torch.Tensor, cached: CachedImportance,
         ignored: list[nn.Module]) -> SelectionPlanner:
    """The pruner for ``strategy``, wrapped in a planner over the strategy's ranking scopes.

    Raises:
        PruningError: The model has layers the engine cannot prune (``graph.UNSUPPORTED_LAYERS``),
            cannot be traced, or has nothing to prune.
    """
    unsupported = unsupported_layers(model)
    if unsupported:
        raise PruningError(f"{type(model).__name__} has layers the engine cannot prune correctly: " + "; ".join(
            f"{', '.join(names[:4])}{f' and {len(names) - 4} more' if len(names) > 4 else ''}: {reason}"
            for reason, names in unsupported.items()))
    pruner = _build_pruner(model, strategy, example_inputs, cached, ignored)
    raw_groups = list(pruner.DG.get_all_groups(ignored_layers=pruner.ignored_layers,
                                               root_module_types=pruner.root_module_types))
    groups = describe_groups(model, example_inputs, DG=pruner.DG, ignored_layers=ignored, raw_groups=raw_groups)
    if not groups:
        raise PruningError(f"{type(model).__name__} has no prunable layer groups")
    root_caps = {(id(info.group[0].dep.target.module), info.group[0].dep.handler): strategy.kind_max_pruning[info.kind]
                 for info in groups if info.kind in strategy.kind_max_pruning}
    return SelectionPlanner(pruner, model, example_inputs, build_scopes(groups, strategy), raw_groups, root_caps,
                            strategy.min_channels)


def _build_pruner(model, strategy, example_inputs, importance, ignored) -> tp.pruner.BasePruner:
    options = graph_options(model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch-pruning warns about unwrapped parameters
            return tp.pruner.BasePruner(
                model, example_inputs, importance=importance, global_pruning=strategy.global_pruning,
                pruning_ratio=0.0, pruning_ratio_dict=None, max_pruning_ratio=strategy.max_layer_pruning,
                iterative_steps=strategy.iterative_steps, ignored_layers=[*ignored, *options["ignored_params"]],
                round_to=strategy.round_to, customized_pruners=options["customized_pruners"],
                # Fresh dicts: torch-pruning's defaults are shared mutable arguments.
                in_channel_groups={}, out_channel_groups={}, num_heads=attention_heads(model),
                prune_num_heads=strategy.prune_num_heads, prune_head_dims=strategy.prune_head_dims,
                head_pruning_ratio=strategy.head_pruning_ratio, root_module_types=[tp.ops.TORCH_CONV, tp.ops.TORCH_LINEAR],
            )
    except PruningError:
        raise
    except Exception as err:
        raise PruningError(f"torch-pruning could not prepare {type(model).__name__}: {err}") from err
