"""AnalysisAgent: checks proposed strategies against the profile and the safety limits.

``safety_enforcement: strict`` rejects a strategy that breaks a limit, with every reason;
``warn`` clamps it into the limits and lists each change. In both modes every approved strategy
carries the per-kind caps (``kind_max_pruning``) and ``min_channels`` that the engine enforces
layer by layer, so no strategy leaves this agent able to prune past a limit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from multi_agent_pruning.agents.base import BaseAgent
from multi_agent_pruning.agents.limits import DEFAULT_LIMITS, cap_strategy, kind_limit
from multi_agent_pruning.agents.master import _as_profile, strategy_view
from multi_agent_pruning.core.profile import Profile
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import ConfigurationError

__all__ = ["AnalysisAgent", "DEFAULT_LIMITS", "Verdict", "kind_limit", "estimate_kind_ratios"]


def estimate_kind_ratios(profile: Profile, strategy: Strategy, reduction: float) -> dict[str, float]:
    """Channel ratio each kind would get for a MACs reduction (MACs ~ kept channels squared).

    Solves ``sum_k share_k * (1 - s * m_k) ** 2 = 1 - reduction`` for the common ratio ``s`` by
    bisection. An estimate for checks and reasons; the engine measures the real thing.
    """
    kinds = profile.kinds
    mult = {k: strategy.group_multipliers.get(k, 1.0) for k in kinds}
    shares = {k: v["macs_share"] for k, v in kinds.items()}

    def kept(s: float) -> float:
        return sum(shares[k] * (1 - min(0.999, s * mult[k])) ** 2 for k in kinds)

    lo, hi = 0.0, 1.0 / max(min((m for m in mult.values() if m > 0), default=1.0), 1e-6)
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if kept(mid) > 1 - reduction else (lo, mid)
    return {k: min(0.999, hi * mult[k]) for k in kinds}


@dataclass(frozen=True)
class Verdict:
    """What :meth:`AnalysisAgent.check` decided; ``execute`` returns it as a dict."""

    approved: list[Strategy]
    rejected: list[dict[str, Any]]
    changes: list[dict[str, Any]]
    mode: str
    safety_checks: dict[str, Any]


class AnalysisAgent(BaseAgent):
    """Validates strategies against a profile; config key ``safety_enforcement`` (strict|warn)."""

    config_keys = frozenset({"safety_enforcement"})

    def get_agent_role(self) -> str:
        return "Safety analyst: checks pruning strategies against the model profile and safety limits."

    def execute(self, input_data: dict[str, Any]) -> dict[str, Any]:
        """The API reference's form of :meth:`check`: strategies as dicts."""
        verdict = self.check(input_data.get("strategies", []), input_data["profile_results"],
                             target=input_data.get("target"), safety_limits=input_data.get("safety_limits"))
        rejected = [{"strategy": item["strategy"] if isinstance(item["strategy"], dict) else _as_dict(item["strategy"]),
                     "reasons": item["reasons"]} for item in verdict.rejected]
        return self.result(approved=[strategy_view(s) for s in verdict.approved], rejected=rejected,
                           **{k: v for k, v in vars(verdict).items() if k not in ("approved", "rejected")})

    def check(self, strategies: Sequence[Any], profile: Any, *,
              target: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
              safety_limits: Mapping[str, Any] | None = None) -> Verdict:
        """Approves (possibly clamped, ``warn``) or rejects each of ``strategies`` (Strategies or
        dicts); a rejected item keeps what was proposed, with every reason. ``target`` (``{"kind",
        "reduction", "budget"}``, or a list of them for a sweep) rejects a strategy at any other."""
        mode = self.config.get("safety_enforcement", "strict")
        if mode not in ("strict", "warn"):
            raise ConfigurationError(f"agents.analysis_agent.safety_enforcement must be 'strict' or 'warn', got {mode!r}")
        profile = _as_profile(profile)
        limits = {**DEFAULT_LIMITS, **dict(profile.safety_limits or {}), **dict(safety_limits or {})}
        approved, rejected, changes = [], [], []
        with self.profiler.timer("check"):
            for raw in strategies:
                strategy, reasons, changed = self._check(raw, profile, limits, mode, target)
                if strategy is None:
                    rejected.append({"strategy": raw, "reasons": reasons})
                else:
                    approved.append(strategy)
                    if changed:
                        changes.append({"strategy_key": strategy.key(), "changes": changed})
        for item in rejected:
            self.logger.info("rejected strategy: %s", "; ".join(item["reasons"]))
        return Verdict(approved, rejected, changes, mode, {"limits": limits, "checked": len(approved) + len(rejected),
                                                           "rejected": len(rejected), "clamped": len(changes)})

    def _check(self, raw: Any, profile: Profile, limits: Mapping[str, Any], mode: str,
               target: Mapping[str, Any] | None) -> tuple[Strategy | None, list[str], list[str]]:
        try:
            strategy = raw if isinstance(raw, Strategy) else Strategy.from_dict(dict(raw))
        except ConfigurationError as err:
            return None, [str(issue) for issue in err.issues] or [str(err)], []
        reasons, changed = [], []
        kinds = set(profile.kinds)
        for field_name in ("group_multipliers", "kind_max_pruning"):
            unknown = sorted(set(getattr(strategy, field_name)) - kinds)
            for kind in unknown:
                reasons.append(f"{field_name} names group kind {kind!r}, which this model lacks (kinds: {sorted(kinds)})")
        reduction = _reduction(strategy, profile)
        targets = [target] if isinstance(target, Mapping) else list(target or [])
        if target is not None and not any(_same_target(strategy, t) for t in targets):
            shown = dict(targets[0]) if len(targets) == 1 else [dict(t) for t in targets]
            return None, [f"strategy target {strategy.target_kind}/{strategy.target_reduction}/{strategy.target_budget} "
                          f"differs from the experiment's target{'s' if len(targets) > 1 else ''} {shown}"], []
        if reduction > limits["max_overall_pruning"] + 1e-9:
            return None, [f"target removes {reduction:.1%} of {strategy.target_kind}, above "
                          f"max_overall_pruning={limits['max_overall_pruning']}"], []
        caps = {k: kind_limit(k, limits) for k in kinds}
        layer_cap = max(caps.values(), default=strategy.max_layer_pruning)
        if strategy.max_layer_pruning > layer_cap + 1e-9:
            reasons.append(f"max_layer_pruning={strategy.max_layer_pruning} exceeds the largest safety limit {layer_cap}")
        attention = [g for g in profile.groups if g.num_heads]
        if strategy.prune_num_heads and attention:
            heads = min(g.num_heads for g in attention)
            left = heads - math.ceil(heads * strategy.head_pruning_ratio)
            if left < int(limits["min_heads"]) or strategy.head_pruning_ratio > limits["max_attention_pruning"]:
                reasons.append(f"head_pruning_ratio={strategy.head_pruning_ratio} leaves {left} of {heads} heads "
                               f"(min_heads={limits['min_heads']}, max_attention_pruning={limits['max_attention_pruning']})")
        notes = []
        if strategy.target_kind == "macs" and not reasons:
            for kind, ratio in estimate_kind_ratios(profile, strategy, reduction).items():
                if ratio > caps[kind] + 1e-9:  # not unsafe: the engine stops this kind at its cap
                    notes.append(f"kind {kind!r} asks for about {ratio:.0%} of its channels; capped at {caps[kind]:.0%}")
        if reasons and mode == "strict":
            return None, reasons, []
        if reasons:  # warn: clamp into the limits and say what changed
            strategy, changed = _clamp(strategy, kinds, caps, layer_cap, limits, attention)
        return cap_strategy(strategy, kinds, limits), reasons, changed + notes


def _clamp(strategy: Strategy, kinds, caps, layer_cap, limits, attention) -> tuple[Strategy, list[str]]:
    changed = []
    mult = {k: v for k, v in strategy.group_multipliers.items() if k in kinds}
    if mult != dict(strategy.group_multipliers):
        changed.append(f"dropped multipliers of unknown kinds {sorted(set(strategy.group_multipliers) - kinds)}")
    caps_in = {k: v for k, v in strategy.kind_max_pruning.items() if k in kinds}
    out = strategy.replace(group_multipliers=mult, kind_max_pruning=caps_in)
    if out.max_layer_pruning > layer_cap:
        changed.append(f"max_layer_pruning {out.max_layer_pruning} -> {layer_cap}")
        out = out.replace(max_layer_pruning=layer_cap)
    if out.prune_num_heads and attention:
        heads = min(g.num_heads for g in attention)
        allowed = min(limits["max_attention_pruning"], (heads - int(limits["min_heads"])) / heads)
        if out.head_pruning_ratio > allowed:
            changed.append(f"head_pruning_ratio {out.head_pruning_ratio} -> {allowed:.3f}")
            out = out.replace(head_pruning_ratio=max(0.0, allowed - 1e-6))
    changed.append(f"per-kind caps set to the safety limits {caps}")
    return out, changed


def _reduction(strategy: Strategy, profile: Profile) -> float:
    if strategy.target_reduction is not None:
        return float(strategy.target_reduction)
    base = profile.base_macs if strategy.target_kind == "macs" else profile.base_params
    return 1.0 - float(strategy.target_budget) / float(base)


def _same_target(strategy: Strategy, target: Mapping[str, Any]) -> bool:
    return (strategy.target_kind == target.get("kind", strategy.target_kind)
            and strategy.target_reduction == target.get("reduction")
            and strategy.target_budget == target.get("budget"))


def _as_dict(raw: Any) -> dict[str, Any]:
    return raw.to_dict() if isinstance(raw, Strategy) else {"raw": repr(raw)[:500]}
