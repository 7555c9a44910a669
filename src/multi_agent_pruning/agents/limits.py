"""Safety limits: their names and defaults, the limit of each group kind, and a strategy capped to them.

The names are those of the ``safety_limits`` config section (and of a profile's
``safety_limits``); the analysis agent checks strategies against them and the master agent keeps
its proposals inside the limits it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError, suggest_names

__all__ = ["DEFAULT_LIMITS", "cap_strategy", "check_limits", "kind_limit"]

DEFAULT_LIMITS = {"max_overall_pruning": 0.8, "max_mlp_pruning": 0.9, "max_attention_pruning": 0.9,
                  "max_conv_pruning": 0.9, "min_channels": 4, "min_heads": 1}
_FRACTIONS = ("max_overall_pruning", "max_mlp_pruning", "max_attention_pruning", "max_conv_pruning")
_COUNTS = ("min_channels", "min_heads")


def kind_limit(kind: str, limits: Mapping[str, Any]) -> float:
    """The safety limit that applies to a group kind."""
    if kind == "attention":
        return float(limits["max_attention_pruning"])
    if kind in ("mlp", "embed"):
        return float(limits["max_mlp_pruning"])
    return float(limits["max_conv_pruning"])


def check_limits(limits: Mapping[str, Any], path: str = "safety_limits") -> dict[str, Any]:
    """``limits`` as a dict, after checking every key and value (fractions in [0, 1], counts >= 1).

    Raises:
        ConfigurationError: One issue per unknown key (with suggestions) or bad value, keyed
            ``<path>.<name>``.
    """
    if not isinstance(limits, Mapping):
        raise ConfigurationError(f"{path} must be a mapping of limit names to values, got {limits!r}")
    issues = []
    for name, value in limits.items():
        if name not in DEFAULT_LIMITS:
            close = suggest_names(str(name), DEFAULT_LIMITS)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            issues.append(ConfigIssue(f"{path}.{name}", f"unknown safety limit; {hint}known: {', '.join(DEFAULT_LIMITS)}",
                                      value))
        elif name in _FRACTIONS and not (_is_number(value) and 0 <= value <= 1):
            issues.append(ConfigIssue(f"{path}.{name}", "must be a number in [0, 1]", value))
        elif name in _COUNTS and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            issues.append(ConfigIssue(f"{path}.{name}", "must be an integer >= 1", value))
    if issues:
        raise ConfigurationError("Invalid safety limits:", issues)
    return dict(limits)


def cap_strategy(strategy: Strategy, kinds: Iterable[str], limits: Mapping[str, Any]) -> Strategy:
    """``strategy`` with the per-kind caps (``kind_max_pruning``, never looser than the strategy's
    own) and ``min_channels`` that the engine enforces layer by layer; unchanged when it has them."""
    kinds = list(kinds)
    caps = {k: min(kind_limit(k, limits), strategy.kind_max_pruning.get(k, kind_limit(k, limits))) for k in kinds}
    min_channels = max(strategy.min_channels, int(limits["min_channels"]))
    if caps == dict(strategy.kind_max_pruning) and min_channels == strategy.min_channels:
        return strategy
    return strategy.replace(kind_max_pruning=caps, min_channels=min_channels)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
