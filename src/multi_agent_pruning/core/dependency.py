"""Dependency and isomorphic analysis of a model, read from torch-pruning's traced graph."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch_pruning as tp
from torch_pruning.utils.op_counter import is_supported_instance

from multi_agent_pruning.core.graph import (
    GroupInfo, build_dependency_graph, classifier_layers, describe_groups, graph_options)
from multi_agent_pruning.exceptions import ConfigurationError, UnknownNameError
from multi_agent_pruning.models.inputs import example_inputs as model_example_inputs

__all__ = ["DependencyAnalyzer", "IsomorphicAnalyzer", "IsomorphicGroup", "group_costs", "default_example_inputs"]


def default_example_inputs(model: nn.Module) -> torch.Tensor:
    """A one-sample input of the size the model takes (see
    :func:`~multi_agent_pruning.models.model_input_size`: what ``create_model`` recorded, or timm's
    config), on the device of the layer that reads it.

    Raises:
        ConfigurationError: The model does not say what it takes; pass ``example_inputs``.
    """
    return model_example_inputs(model)


def group_costs(model: nn.Module, example_inputs: torch.Tensor, groups: list[GroupInfo]) -> list[tuple[float, float]]:
    """``(macs, params)`` attributable to each group; together they make the prunable cost.

    A layer's MACs and parameters are split evenly between the groups that prune it (usually
    one on its output channels and one on its input channels), so the per-group numbers add up
    to the MACs and parameters of every layer that pruning can shrink. MACs use torch-pruning's
    op counter; a counted container (timm attention) is attributed through its children, and the
    children of a layer pruned as one unit (Swin's ``PatchMerging``) through that layer.
    """
    _, _, layer_flops, _ = tp.utils.count_ops_and_params(model, example_inputs, layer_wise=True)
    touching: dict[int, set[int]] = defaultdict(set)  # id(module or parameter) -> group indices
    for info in groups:
        for dep, _ in info.group:
            touching[id(dep.target.module)].add(info.index)
    units = tuple(graph_options(model)["customized_pruners"])
    for unit in (m for m in model.modules() if units and isinstance(m, units)):
        for child in unit.modules():
            touching[id(child)] |= touching[id(unit)]
    macs = [0.0] * len(groups)
    params = [0.0] * len(groups)

    def share(obj_groups: set[int], amount: float, into: list[float]) -> None:
        for g in obj_groups:
            into[g] += amount / len(obj_groups)

    for module in model.modules():
        owners = set(touching.get(id(module), ()))
        if is_supported_instance(module):
            if not owners:  # e.g. timm attention: pruned through its qkv/proj children
                for child in module.modules():
                    owners |= touching.get(id(child), set())
            if owners:
                share(owners, float(layer_flops.get(module) or 0.0), macs)
        for param in module.parameters(recurse=False):
            param_owners = touching.get(id(param)) or owners
            if param_owners:
                share(param_owners, float(param.numel()), params)
    return list(zip(macs, params))


class DependencyAnalyzer:
    """Layer dependencies and coupling constraints of a model (torch-pruning's DepGraph).

    Args:
        model: The model to analyse (not modified).
        example_inputs: A batch to trace with; when omitted, one sample of the input the model
            was built for (:func:`default_example_inputs`; every registry and timm model).

    Example:
        >>> analyzer = DependencyAnalyzer(model, torch.randn(1, 3, 224, 224))  # doctest: +SKIP
        >>> analyzer.get_coupled_layers("blocks.0.mlp.fc1")  # doctest: +SKIP
        ['blocks.0.mlp.fc2']
    """

    def __init__(self, model: nn.Module, example_inputs: torch.Tensor | None = None) -> None:
        self.model = model
        self.example_inputs = example_inputs if example_inputs is not None else default_example_inputs(model)
        self.DG = build_dependency_graph(model, self.example_inputs)
        self.groups = describe_groups(model, self.example_inputs, DG=self.DG)
        self._names = {m: n for n, m in model.named_modules()}
        self._ignored = {self._names[m] for m in classifier_layers(model)}

    def get_dependency_graph(self) -> dict[str, dict]:
        """Per prunable layer: type, channels, and the layers coupled to its output and input.

        Returns:
            ``{layer: {"type", "out_channels", "in_channels", "out_coupled", "in_coupled"}}``
            where ``out_coupled`` lists the layers that must lose the same channels when this
            layer's output channels are pruned, and ``in_coupled`` those coupled to its input.
        """
        graph: dict[str, dict] = {}
        for module in self.DG.module2node:
            name = self._names.get(module)
            if not name or self.DG.get_pruner_of_module(module) is None:
                continue
            graph[name] = {
                "type": type(module).__name__,
                "out_channels": self.DG.get_out_channels(module),
                "in_channels": self.DG.get_in_channels(module),
                "out_coupled": [],
                "in_coupled": [],
            }
        for info in self.groups:
            members = [n for n, _ in info.members]
            for name, direction in info.members:
                if name in graph:
                    side = graph[name][f"{direction}_coupled"]
                    side.extend(m for m in members if m != name and m not in side)
        return graph

    def get_coupling_constraints(self) -> list[dict]:
        """One constraint per pruning group: which layer dimensions must shrink together."""
        constraints = []
        for info in self.groups:
            layers = sorted({f"{n}.{d}" for n, d in info.members})
            constraints.append({
                "group": info.index,
                "kind": info.kind,
                "channels": info.channels,
                "layers": layers,
                "num_heads": info.num_heads,
                "description": (
                    f"{len(layers)} layer dimensions ({', '.join(layers[:4])}{', ...' if len(layers) > 4 else ''}) "
                    f"share {info.channels} channels and must be pruned with the same indices"
                    + (f"; channels come in {info.num_heads} attention heads" if info.num_heads else "")
                ),
            })
        return constraints

    def get_coupled_layers(self, layer_name: str) -> list[str]:
        """Layers that must be pruned together with ``layer_name``'s output channels."""
        known = [n for n, _ in self.model.named_modules() if n]
        if layer_name not in known:
            raise UnknownNameError("layer", layer_name, known)
        for info in self.groups:
            if (layer_name, "out") in info.members:
                return sorted({n for n, _ in info.members if n != layer_name})
        return []  # not prunable on its own (e.g. the classifier, or a parameter-free layer)


@dataclass
class IsomorphicGroup:
    """Structurally identical pruning groups, ranked together by Isomorphic Pruning.

    Attributes:
        name: ``<kind>:<index>``.
        kind: Group kind (``attention``, ``mlp``, ``stage2_residual`` ...).
        signature: torch-pruning's isomorphic tag shared by the members.
        members: Key layer of each member group.
        channels: Prunable channels over all members.
        macs / params: Attributable cost (see :func:`group_costs`).
        macs_share / params_share: Fraction of the model's prunable MACs / params.
        ratio: Pruning ratio this group gets: its custom ratio, else the target ratio.
    """

    name: str
    kind: str
    signature: str
    members: list[str] = field(default_factory=list)
    channels: int = 0
    macs: float = 0.0
    params: float = 0.0
    macs_share: float = 0.0
    params_share: float = 0.0
    ratio: float = 0.0


class IsomorphicAnalyzer:
    """Groups a model's pruning groups by torch-pruning's isomorphic signature.

    Args:
        model: The model to analyse (not modified).
        example_inputs: A batch to trace with; when omitted, one sample of the input the model
            was built for (:func:`default_example_inputs`; every registry and timm model).
    """

    def __init__(self, model: nn.Module, example_inputs: torch.Tensor | None = None) -> None:
        self.model = model
        self.example_inputs = example_inputs if example_inputs is not None else default_example_inputs(model)
        self.groups = describe_groups(model, self.example_inputs)
        self.costs = group_costs(model, self.example_inputs, self.groups)

    def create_isomorphic_groups(
        self, target_ratio: float, group_ratios: dict[str, float] | None = None
    ) -> dict[str, IsomorphicGroup]:
        """Isomorphic groups, each with the ratio it would be pruned at.

        Args:
            target_ratio: Common channel pruning ratio in [0, 1).
            group_ratios: Custom ratios in [0, 1) for some groups, by kind (``{"mlp": 0.3}``
                prunes every MLP group at 0.3) or by isomorphic group name (``{"mlp:2": 0.5}``,
                which wins over its kind); the other groups get ``target_ratio``.

        Returns:
            ``{name: IsomorphicGroup}`` in graph order.

        Raises:
            ConfigurationError: A ratio outside [0, 1). UnknownNameError: A name that is neither a
                group kind nor a group of this model.
        """
        _check_ratio("target_ratio", target_ratio)
        group_ratios = dict(group_ratios or {})
        for name, ratio in group_ratios.items():
            _check_ratio(f"group_ratios[{name!r}]", ratio)
        total_macs = sum(m for m, _ in self.costs) or 1.0
        total_params = sum(p for _, p in self.costs) or 1.0
        result: dict[str, IsomorphicGroup] = {}
        by_signature: dict[tuple[str, str], IsomorphicGroup] = {}
        for info, (macs, params) in zip(self.groups, self.costs):
            key = (info.kind, info.signature)
            if key not in by_signature:
                name = f"{info.kind}:{len(result)}"
                by_signature[key] = result[name] = IsomorphicGroup(name=name, kind=info.kind, signature=info.signature)
            iso = by_signature[key]
            iso.members.append(info.key_name)
            iso.channels += info.channels
            iso.macs += macs
            iso.params += params
        known = set(result) | {g.kind for g in result.values()}
        unknown = sorted(set(group_ratios) - known)
        if unknown:
            raise UnknownNameError("group", unknown[0], sorted(known))
        for iso in result.values():
            iso.ratio = float(group_ratios.get(iso.name, group_ratios.get(iso.kind, target_ratio)))
            iso.macs_share = iso.macs / total_macs
            iso.params_share = iso.params / total_params
        return result


def _check_ratio(label: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise ConfigurationError(f"{label} must be a pruning ratio in [0, 1), got {value!r}")
