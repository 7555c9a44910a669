"""The pruning strategy: everything a trial needs to prune a model and recover it."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError

__all__ = ["Strategy", "IMPORTANCE_CRITERIA", "TARGET_KINDS"]

IMPORTANCE_CRITERIA = ("l1", "l2", "taylor", "hessian", "lamp", "fpgm", "random")
#: Read-only aliases the agents add to strategy dicts (API reference names); ignored on input.
VIEW_ALIASES = ("importance_criterion", "pruning_ratio")
#: Fields the analysis agent sets from the safety limits; not part of a strategy's identity.
SAFETY_FIELDS = ("kind_max_pruning", "min_channels", "max_layer_pruning")
TARGET_KINDS = ("macs", "params")


@dataclass(frozen=True)
class Strategy:
    """A structural pruning strategy; frozen, hashable and JSON-serialisable.

    The target is either ``target_reduction`` (fraction of the dense model's MACs or params to
    remove, in (0, 1)) or ``target_budget`` (absolute MACs or params to keep); exactly one is set.

    Attributes:
        importance: Channel importance criterion, one of ``IMPORTANCE_CRITERIA``.
        global_pruning: Rank channels across layers (True) or within each layer (False).
        isomorphic: Rank globally only among structurally identical groups (Isomorphic Pruning).
        group_multipliers: Per group-kind multiplier of the common pruning ratio, e.g.
            ``{"mlp": 1.2, "attention": 0.8}``; kinds come from the model's profile.
        head_pruning_ratio: Fraction of attention heads to remove (needs ``prune_num_heads``).
        prune_num_heads: Remove whole attention heads.
        prune_head_dims: Remove dimensions inside each attention head.
        round_to: Keep channel counts multiples of this number (None: no rounding).
        iterative_steps: Prune in this many steps, re-estimating importance in between.
        max_layer_pruning: Upper bound of the pruning ratio of any single layer.
        kind_max_pruning: Tighter per-kind bounds, e.g. ``{"attention": 0.5}`` (safety limits).
        min_channels: Channels every pruned group keeps at least.
        ignored_layers: Module names never pruned (the classifier is always ignored).
        target_kind: ``"macs"`` or ``"params"``.
        target_reduction: Fraction of MACs/params to remove.
        target_budget: Absolute MACs/params to keep.
        finetune_epochs: Recovery epochs (used when ``finetune_steps`` is None).
        finetune_steps: Recovery optimiser steps (overrides epochs).
        learning_rate: Peak AdamW learning rate of the recovery.
        weight_decay: AdamW weight decay of the recovery.
        kd_weight: Weight of the distillation loss from the dense teacher (0 disables it).
    """

    importance: str = "taylor"
    global_pruning: bool = True
    isomorphic: bool = True
    group_multipliers: Mapping[str, float] = field(default_factory=dict)
    head_pruning_ratio: float = 0.0
    prune_num_heads: bool = False
    prune_head_dims: bool = True
    round_to: int | None = None
    iterative_steps: int = 1
    max_layer_pruning: float = 0.9
    kind_max_pruning: Mapping[str, float] = field(default_factory=dict)
    min_channels: int = 1
    ignored_layers: tuple[str, ...] = ()
    target_kind: str = "macs"
    target_reduction: float | None = 0.5
    target_budget: float | None = None
    finetune_epochs: float = 1.0
    finetune_steps: int | None = None
    learning_rate: float = 1e-3
    weight_decay: float = 0.05
    kd_weight: float = 0.0

    def __post_init__(self) -> None:
        # Normalise containers so that equal strategies hash and compare equal.
        multipliers = dict(sorted((str(k), float(v)) for k, v in dict(self.group_multipliers).items()))
        object.__setattr__(self, "group_multipliers", _FrozenDict(multipliers))
        caps = dict(sorted((str(k), float(v)) for k, v in dict(self.kind_max_pruning).items()))
        object.__setattr__(self, "kind_max_pruning", _FrozenDict(caps))
        object.__setattr__(self, "ignored_layers", tuple(str(n) for n in self.ignored_layers))
        issues = list(_check(self))
        if issues:
            raise ConfigurationError("Invalid pruning strategy:", issues)

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-friendly dict (multipliers as a dict, ignored layers as a list)."""
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["group_multipliers"] = dict(self.group_multipliers)
        data["kind_max_pruning"] = dict(self.kind_max_pruning)
        data["ignored_layers"] = list(self.ignored_layers)
        return data

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal strategies give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Strategy:
        """Builds a strategy from a dict; unknown keys are an error with suggestions.

        The view aliases ``importance_criterion`` and ``pruning_ratio`` (see ``VIEW_ALIASES``)
        are accepted and ignored: they repeat ``importance`` and ``target_reduction``.
        """
        data = {k: v for k, v in data.items() if k not in VIEW_ALIASES}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = [k for k in data if k not in known]
        if unknown:
            issues = [
                ConfigIssue(f"strategy.{k}", _unknown_rule(k, known), data[k]) for k in unknown
            ]
            raise ConfigurationError("Invalid pruning strategy:", issues)
        kwargs = dict(data)
        if "ignored_layers" in kwargs and kwargs["ignored_layers"] is not None:
            kwargs["ignored_layers"] = tuple(kwargs["ignored_layers"])
        for name in ("group_multipliers", "kind_max_pruning"):
            if kwargs.get(name) is None:
                kwargs[name] = {}
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> Strategy:
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> Strategy:
        """A copy with ``changes`` applied (validated again)."""
        if "target_budget" in changes and changes["target_budget"] is not None:
            changes.setdefault("target_reduction", None)
        if "target_reduction" in changes and changes["target_reduction"] is not None:
            changes.setdefault("target_budget", None)
        return dataclasses.replace(self, **changes)

    def key(self) -> str:
        """Identity of the search point, used to avoid evaluating a strategy twice.

        Floats are rounded, and the safety fields (``SAFETY_FIELDS``) that the analysis agent
        installs are left out: a proposal and its approved, capped form are the same point.
        """
        data = self.to_dict()
        for name in SAFETY_FIELDS:
            data.pop(name)
        for name, value in data.items():
            if isinstance(value, float):
                data[name] = round(value, 6)
        data["group_multipliers"] = {k: round(v, 4) for k, v in data["group_multipliers"].items()}
        return json.dumps(data, sort_keys=True)

    def target_macs_or_params(self, base: float) -> float:
        """The absolute MACs/params budget for a dense model of size ``base``."""
        if self.target_budget is not None:
            return float(self.target_budget)
        return float(base) * (1.0 - float(self.target_reduction))


class _FrozenDict(dict):
    """A read-only, hashable dict for the multipliers of a frozen strategy."""

    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("Strategy.group_multipliers is read-only; use Strategy.replace()")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _readonly  # type: ignore[assignment]

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(sorted(self.items())))


def _unknown_rule(key: str, known: set[str]) -> str:
    from multi_agent_pruning.exceptions import suggest_names

    close = suggest_names(key, known)
    return "unknown key" + (f"; did you mean {', '.join(close)}?" if close else "")


def _is_ratio(value: Any, low: float, high: float, *, closed_high: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return False
    return low <= value < high or (closed_high and value == high)


def _check(s: Strategy):
    """Yields a ConfigIssue for every rule the strategy breaks."""
    p = "strategy."
    if s.importance not in IMPORTANCE_CRITERIA:
        yield ConfigIssue(p + "importance", f"must be one of {', '.join(IMPORTANCE_CRITERIA)}", s.importance)
    for name in ("global_pruning", "isomorphic", "prune_num_heads", "prune_head_dims"):
        if not isinstance(getattr(s, name), bool):
            yield ConfigIssue(p + name, "must be true or false", getattr(s, name))
    for kind, mult in s.group_multipliers.items():
        if not _is_ratio(mult, 0.0, 4.0, closed_high=True):
            yield ConfigIssue(f"{p}group_multipliers.{kind}", "must be a number in [0, 4]", mult)
    if not _is_ratio(s.head_pruning_ratio, 0.0, 1.0):
        yield ConfigIssue(p + "head_pruning_ratio", "must be in [0, 1)", s.head_pruning_ratio)
    if s.head_pruning_ratio > 0 and not s.prune_num_heads:
        yield ConfigIssue(p + "head_pruning_ratio", "needs prune_num_heads=true to take effect", s.head_pruning_ratio)
    if s.round_to is not None and (isinstance(s.round_to, bool) or not isinstance(s.round_to, int) or s.round_to < 1):
        yield ConfigIssue(p + "round_to", "must be a positive integer or null", s.round_to)
    if isinstance(s.iterative_steps, bool) or not isinstance(s.iterative_steps, int) or not 1 <= s.iterative_steps <= 64:
        yield ConfigIssue(p + "iterative_steps", "must be an integer in [1, 64]", s.iterative_steps)
    if not _is_ratio(s.max_layer_pruning, 0.0, 1.0) or s.max_layer_pruning <= 0:
        yield ConfigIssue(p + "max_layer_pruning", "must be in (0, 1)", s.max_layer_pruning)
    for kind, cap in s.kind_max_pruning.items():
        if not _is_ratio(cap, 0.0, 1.0):
            yield ConfigIssue(f"{p}kind_max_pruning.{kind}", "must be in [0, 1)", cap)
    if isinstance(s.min_channels, bool) or not isinstance(s.min_channels, int) or s.min_channels < 1:
        yield ConfigIssue(p + "min_channels", "must be an integer >= 1", s.min_channels)
    if s.target_kind not in TARGET_KINDS:
        yield ConfigIssue(p + "target_kind", "must be 'macs' or 'params'", s.target_kind)
    yield from _check_target(s, p)
    yield from _check_recovery(s, p)


def _check_target(s: Strategy, p: str):
    if (s.target_reduction is None) == (s.target_budget is None):
        yield ConfigIssue(p + "target_reduction", "exactly one of target_reduction and target_budget must be set",
                          {"target_reduction": s.target_reduction, "target_budget": s.target_budget})
    if s.target_reduction is not None and (not _is_ratio(s.target_reduction, 0.0, 1.0) or s.target_reduction <= 0):
        yield ConfigIssue(p + "target_reduction", "must be a number in (0, 1) (the fraction removed)", s.target_reduction)
    if s.target_budget is not None and (
        isinstance(s.target_budget, bool) or not isinstance(s.target_budget, (int, float))
        or not math.isfinite(s.target_budget) or s.target_budget <= 0
    ):
        yield ConfigIssue(p + "target_budget", "must be a positive number of MACs/params", s.target_budget)


def _check_recovery(s: Strategy, p: str):
    if not _is_ratio(s.finetune_epochs, 0.0, 1e4):
        yield ConfigIssue(p + "finetune_epochs", "must be a number >= 0", s.finetune_epochs)
    if s.finetune_steps is not None and (
        isinstance(s.finetune_steps, bool) or not isinstance(s.finetune_steps, int) or s.finetune_steps < 0
    ):
        yield ConfigIssue(p + "finetune_steps", "must be an integer >= 0 or null", s.finetune_steps)
    if not _is_ratio(s.learning_rate, 0.0, 10.0) or s.learning_rate <= 0:
        yield ConfigIssue(p + "learning_rate", "must be in (0, 10)", s.learning_rate)
    if not _is_ratio(s.weight_decay, 0.0, 10.0):
        yield ConfigIssue(p + "weight_decay", "must be in [0, 10)", s.weight_decay)
    if not _is_ratio(s.kd_weight, 0.0, 1.0, closed_high=True):
        yield ConfigIssue(p + "kd_weight", "must be in [0, 1]", s.kd_weight)
