"""The pruning strategy: everything a trial needs to prune a model and recover it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, ValidationError, create_model

from multi_agent_pruning.config import issues_from_pydantic
from multi_agent_pruning.core.importance import IMPORTANCE_REGISTRY, criteria
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError, suggest_names

__all__ = ["Strategy", "IMPORTANCE_CRITERIA", "TARGET_KINDS"]

#: The built-in criteria in registration order; a strategy may name any criterion of ``IMPORTANCE_REGISTRY``.
IMPORTANCE_CRITERIA = tuple(criteria())
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
        importance: Channel importance criterion, any name registered in ``IMPORTANCE_REGISTRY``.
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
        for name in ("group_multipliers", "kind_max_pruning"):
            items = sorted((str(k), float(v)) for k, v in dict(getattr(self, name)).items())
            object.__setattr__(self, name, _FrozenDict(items))
        object.__setattr__(self, "ignored_layers", tuple(str(n) for n in self.ignored_layers))
        issues = _check(self)
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

    def __reduce__(self) -> tuple:  # pickle rebuilds it from a plain dict (not item by item)
        return _FrozenDict, (dict(self),)


def _unknown_rule(key: str, known: set[str]) -> str:
    close = suggest_names(key, known)
    return "unknown key" + (f"; did you mean {', '.join(close)}?" if close else "")


def _int_or_float(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("not a number")
    return value


def _registered(name: str) -> str:
    if name not in IMPORTANCE_REGISTRY:
        raise ValueError("not a registered importance criterion")
    return name


def _number(**bounds: float) -> Any:
    """An int or a finite float (never a bool) within ``bounds``."""
    return Annotated[float, BeforeValidator(_int_or_float), Field(**bounds)]


# Each checked field, in reporting order: its type and bounds (checked by pydantic, strictly: no strings
# or bools for numbers, no NaN or inf) and the rule reported when its value breaks them.
_RULES: dict[str, tuple[Any, str]] = {
    "importance": (Annotated[str, AfterValidator(_registered)], "must be one of {criteria}"),
    **dict.fromkeys(("global_pruning", "isomorphic", "prune_num_heads", "prune_head_dims"),
                    (bool, "must be true or false")),
    "group_multipliers": (Mapping[str, _number(ge=0.0, le=4.0)], "must be a number in [0, 4]"),
    "head_pruning_ratio": (_number(ge=0.0, lt=1.0), "must be in [0, 1)"),
    "round_to": (Annotated[int, Field(ge=1)] | None, "must be a positive integer or null"),
    "iterative_steps": (Annotated[int, Field(ge=1, le=64)], "must be an integer in [1, 64]"),
    "max_layer_pruning": (_number(gt=0.0, lt=1.0), "must be in (0, 1)"),
    "kind_max_pruning": (Mapping[str, _number(ge=0.0, lt=1.0)], "must be in [0, 1)"),
    "min_channels": (Annotated[int, Field(ge=1)], "must be an integer >= 1"),
    "target_kind": (Literal[TARGET_KINDS], "must be 'macs' or 'params'"),
    "target_reduction": (_number(gt=0.0, lt=1.0) | None, "must be a number in (0, 1) (the fraction removed)"),
    "target_budget": (_number(gt=0.0) | None, "must be a positive number of MACs/params"),
    "finetune_epochs": (_number(ge=0.0, lt=1e4), "must be a number >= 0"),
    "finetune_steps": (Annotated[int, Field(ge=0)] | None, "must be an integer >= 0 or null"),
    "learning_rate": (_number(gt=0.0, lt=10.0), "must be in (0, 10)"),
    "weight_decay": (_number(ge=0.0, lt=10.0), "must be in [0, 10)"),
    "kd_weight": (_number(ge=0.0, le=1.0), "must be in [0, 1]"),
}
_RULES_MODEL = create_model("StrategyRules", __config__=ConfigDict(strict=True, allow_inf_nan=False),
                            **{name: (kind, ...) for name, (kind, _) in _RULES.items()})


def _check(s: Strategy) -> list[ConfigIssue]:
    """A ConfigIssue for every rule the strategy breaks, in ``_RULES`` order."""
    issues = []
    try:
        _RULES_MODEL.model_validate({name: getattr(s, name) for name in _RULES})
    except ValidationError as err:
        names = ", ".join(criteria())
        issues = [ConfigIssue(f"strategy.{i.path}", _RULES[i.path.split(".")[0]][1].format(criteria=names), i.value)
                  for i in issues_from_pydantic(err)]
    if (s.target_reduction is None) == (s.target_budget is None):
        targets = {"target_reduction": s.target_reduction, "target_budget": s.target_budget}
        issues.insert(0, ConfigIssue("strategy.target_reduction",
                                     "exactly one of target_reduction and target_budget must be set", targets))
    if isinstance(s.head_pruning_ratio, (int, float)) and s.head_pruning_ratio > 0 and not s.prune_num_heads:
        issues.append(ConfigIssue("strategy.head_pruning_ratio", "needs prune_num_heads=true to take effect",
                                  s.head_pruning_ratio))
    return sorted(issues, key=lambda issue: list(_RULES).index(issue.path.split(".")[1]))
