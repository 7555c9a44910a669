"""Model profiles: architecture, pruning groups with their cost, and measured sensitivity."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch_pruning as tp

from multi_agent_pruning.core.dependency import group_costs
from multi_agent_pruning.core.engine import check_prunable
from multi_agent_pruning.core.graph import GroupInfo, build_dependency_graph, describe_groups

logger = logging.getLogger(__name__)

__all__ = ["GroupProfile", "Profile", "detect_architecture", "profile_model", "weights_fingerprint"]


@dataclass
class GroupProfile:
    """One pruning group as the master and analysis agents see it.

    Attributes:
        name: Key layer of the group.
        kind: Group kind (``attention``, ``mlp``, ``stage2_residual`` ...).
        channels: Prunable channels.
        macs / params: Attributable cost; ``macs_share`` / ``params_share`` of the prunable total.
        sensitivity: Calibration loss increase when only this group loses ``fraction`` of its
            least important (L2) channels; None when not measured.
        accuracy_drop: Calibration top-1 drop in the same experiment.
        num_heads: Attention heads (0 for other groups).
        signature: Isomorphic signature.
    """

    name: str
    kind: str
    channels: int
    macs: float
    params: float
    macs_share: float
    params_share: float
    sensitivity: float | None = None
    accuracy_drop: float | None = None
    num_heads: int = 0
    signature: str = ""


@dataclass
class Profile:
    """What profiling learned about one model on one dataset (JSON-serialisable).

    Dict-style access (``profile["architecture_type"]``) works for every field, as in the
    API reference; ``prunable_layers`` is the list of group profiles as dicts.
    """

    model_name: str
    dataset: str
    architecture_type: str
    input_size: tuple[int, ...]
    base_macs: float
    base_params: int
    prunable_macs: float
    prunable_params: float
    groups: list[GroupProfile]
    safety_limits: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    cache_key: str = ""
    seconds: float = 0.0
    num_classes: int | None = None  # the model's output size; None in profiles cached before it was recorded

    @property
    def prunable_layers(self) -> list[dict[str, Any]]:
        return [asdict(g) for g in self.groups]

    @property
    def kinds(self) -> dict[str, dict[str, float]]:
        """Per kind: groups, channels, MACs/params share and mean sensitivity."""
        out: dict[str, dict[str, float]] = {}
        for g in self.groups:
            k = out.setdefault(g.kind, {"groups": 0, "channels": 0, "macs_share": 0.0, "params_share": 0.0,
                                        "sensitivity": 0.0, "_measured": 0})
            k["groups"] += 1
            k["channels"] += g.channels
            k["macs_share"] += g.macs_share
            k["params_share"] += g.params_share
            if g.sensitivity is not None:
                k["sensitivity"] += g.sensitivity
                k["_measured"] += 1
        for k in out.values():
            measured = k.pop("_measured")
            k["sensitivity"] = k["sensitivity"] / measured if measured else None
        return out

    def __getitem__(self, key: str) -> Any:
        if key in ("prunable_layers", "kinds") or key in self.__dataclass_fields__:
            return getattr(self, key)
        raise KeyError(key)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["input_size"] = list(self.input_size)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Profile:
        data = dict(data)
        data["groups"] = [GroupProfile(**g) for g in data["groups"]]
        data["input_size"] = tuple(data["input_size"])
        return cls(**data)

    def summary(self) -> dict[str, Any]:
        """A compact view for prompts and logs."""
        return {
            "model": self.model_name, "dataset": self.dataset, "architecture_type": self.architecture_type,
            "base_macs": self.base_macs, "base_params": self.base_params, "kinds": self.kinds,
        }


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 of the model's class, parameter names, shapes and values (cache identity)."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes()
                      if tensor.numel() else b"")
    return digest.hexdigest()


def detect_architecture(model: nn.Module, groups: list[GroupInfo]) -> str:
    """``vit``, ``cnn``, ``convnext`` or ``hybrid`` from the traced groups and layer types.

    Attention groups and spatial convolutions beyond a single patch-embedding/stem conv make a
    hybrid; attention alone a ViT; depthwise convolutions with LayerNorm a ConvNeXt.
    """
    has_attention = any(g.num_heads for g in groups)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    spatial = [c for c in convs if c.kernel_size != (1, 1) and c.stride != c.kernel_size]
    depthwise = [c for c in convs if c.groups > 1 and c.groups == c.in_channels]
    has_layernorm = any(isinstance(m, nn.LayerNorm) for m in model.modules())
    if has_attention:
        return "hybrid" if len(spatial) > 1 else "vit"
    if depthwise and has_layernorm:
        return "convnext"
    return "cnn"


def profile_model(
    model: nn.Module,
    example_inputs: torch.Tensor,
    calibration: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None,
    *,
    model_name: str = "",
    dataset: str = "",
    sensitivity_fraction: float = 0.3,
    safety_limits: Mapping[str, Any] | None = None,
) -> Profile:
    """Profiles ``model``: groups, their cost share and (with calibration data) their sensitivity.

    Sensitivity masks the least important ``sensitivity_fraction`` of one group's channels at a
    time (zeroing every coupled weight slice torch-pruning would remove) and measures the loss
    and accuracy change on the calibration batches; the model is restored after each group.

    Every search profiles its model before any trial: a model the engine cannot prune correctly
    is refused here (:func:`~multi_agent_pruning.core.engine.check_prunable`).

    Raises:
        PruningError: The engine cannot prune the model; the message names the layers and why.
    """
    start = time.perf_counter()
    check_prunable(model, example_inputs)
    DG = build_dependency_graph(model, example_inputs)
    groups = describe_groups(model, example_inputs, DG=DG)
    costs = group_costs(model, example_inputs, groups)
    macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    total_macs = sum(c[0] for c in costs) or 1.0
    total_params = sum(c[1] for c in costs) or 1.0
    profiles = [
        GroupProfile(name=g.key_name, kind=g.kind, channels=g.channels, macs=m, params=p,
                     macs_share=m / total_macs, params_share=p / total_params, num_heads=g.num_heads,
                     signature=g.signature)
        for g, (m, p) in zip(groups, costs)
    ]
    calibration_info: dict[str, Any] = {"fraction": sensitivity_fraction, "samples": 0}
    batches = list(calibration) if calibration is not None else []
    if batches:
        dense_loss, dense_acc = _calibration_loss(model, batches)
        calibration_info.update(samples=sum(len(y) for _, y in batches), loss=dense_loss, accuracy=dense_acc)
        for info, prof in zip(groups, profiles):
            loss, acc = _masked_loss(model, DG, info, sensitivity_fraction, batches)
            prof.sensitivity = loss - dense_loss
            prof.accuracy_drop = dense_acc - acc
    return Profile(
        model_name=model_name, dataset=dataset, architecture_type=detect_architecture(model, groups),
        input_size=tuple(int(d) for d in example_inputs.shape[1:]), base_macs=float(macs), base_params=int(params),
        prunable_macs=total_macs, prunable_params=total_params, groups=profiles,
        safety_limits=dict(safety_limits or {}), calibration=calibration_info,
        seconds=time.perf_counter() - start, num_classes=_output_size(model, example_inputs),
    )


@torch.no_grad()
def _output_size(model: nn.Module, example_inputs: torch.Tensor) -> int | None:
    """The size of the model's (first) output, its number of classes for a classifier."""
    was_training = model.training
    model.eval()
    try:
        out = model(example_inputs)
    finally:
        model.train(was_training)
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.dim() >= 1 else None


@torch.no_grad()
def _calibration_loss(model: nn.Module, batches) -> tuple[float, float]:
    was_training = model.training
    model.eval()
    loss = correct = count = 0.0
    try:
        for x, y in batches:
            logits = model(x)
            if isinstance(logits, (tuple, list)):
                logits = torch.stack(list(logits)).mean(0)
            loss += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += float((logits.argmax(1) == y).sum())
            count += len(y)
    finally:
        model.train(was_training)
    return loss / count, correct / count


@torch.no_grad()
def _masked_loss(model, DG, info: GroupInfo, fraction: float, batches) -> tuple[float, float]:
    scores = tp.importance.GroupMagnitudeImportance(p=2)(info.group)
    if scores is None or len(scores) == 0:
        return _calibration_loss(model, batches)
    k = max(1, int(len(scores) * fraction))
    idxs = torch.argsort(scores)[:k].tolist()
    root = info.group[0].dep
    selection = DG.get_pruning_group(root.target.module, root.handler, idxs)
    backups: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        for dep, dep_idxs in selection:
            _zero_slices(DG, dep.target.module, DG.is_out_channel_pruning_fn(dep.handler), dep_idxs, backups)
        return _calibration_loss(model, batches)
    finally:
        for tensor, saved in reversed(backups):
            tensor.copy_(saved)


def _zero_slices(DG, target, is_out: bool, idxs: list[int], backups: list) -> None:
    """Zeroes what pruning ``idxs`` of ``target`` would remove, saving the originals first."""
    unit = DG.get_pruner_of_module(target) if isinstance(target, nn.Module) else None
    if hasattr(unit, "parts"):  # a layer pruned as one unit (Swin's PatchMerging): its children
        for child, child_out, child_idxs in unit.parts(target, idxs, is_out):
            _zero_slices(DG, child, child_out, child_idxs, backups)
        return
    index = torch.as_tensor(idxs, dtype=torch.long)

    def zero(tensor: torch.Tensor | None, dim: int) -> None:
        if tensor is None or tensor.dim() <= dim or (len(idxs) and max(idxs) >= tensor.shape[dim]):
            return
        backups.append((tensor.data, tensor.data.clone()))
        tensor.data.index_fill_(dim, index, 0.0)

    if isinstance(target, nn.Parameter):
        dims = [d for d, size in enumerate(target.shape) if size > 1]
        if dims:
            zero(target, dims[-1])
    elif isinstance(target, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        depthwise = isinstance(target, nn.Conv2d) and target.groups > 1 and target.groups == target.in_channels
        if is_out or depthwise:
            zero(target.weight, 0)
            zero(target.bias, 0)
        elif getattr(target, "groups", 1) == 1:
            zero(target.weight, 1)
    elif isinstance(target, (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)):
        zero(getattr(target, "weight", None), 0)
        zero(getattr(target, "bias", None), 0)


def profile_cache_key(model: nn.Module, *, model_name: str, dataset: str, input_size: Iterable[int],
                      calibration: Mapping[str, Any]) -> str:
    """Cache identity of a profile: model identity and weights, input size, dataset, calibration."""
    payload = json.dumps({"model": model_name, "weights": weights_fingerprint(model), "input": list(input_size),
                          "dataset": dataset, "calibration": dict(calibration)}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:32]
