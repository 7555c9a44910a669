"""The standard baselines: magnitude (L1/L2), Taylor, Isomorphic Pruning, random."""

from __future__ import annotations

from collections.abc import Sequence

from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import ConfigurationError
from multi_agent_pruning.methods.base import Dimension, PruningMethod, register_method

__all__ = ["IsomorphicOriginal", "MagnitudePruning", "RandomPruning", "TaylorPruning", "FullSpaceMethod"]


def _plain(base: Strategy, **changes) -> Strategy:
    """``base`` without per-kind multipliers or head pruning, with ``changes``."""
    return base.replace(group_multipliers={}, prune_num_heads=False, head_pruning_ratio=0.0, **changes)


class MagnitudePruning(PruningMethod):
    """Filter/channel magnitude (L1 or L2 norm of the coupled weights), ranked per layer with a
    uniform ratio (Li et al., 2017, as group norms in DepGraph). Optuna may switch to global ranking.

    Args:
        criterion: ``"l1"`` or ``"l2"``.
    """

    tunes_ranking = True

    def __init__(self, criterion: str = "l2") -> None:
        super().__init__()
        if criterion not in ("l1", "l2"):
            raise ConfigurationError(f"MagnitudePruning criterion must be 'l1' or 'l2', got {criterion!r}")
        self.criterion = criterion
        self.name = f"magnitude_{criterion}"

    def make_strategy(self, base: Strategy, kinds: Sequence[str] = ()) -> Strategy:
        return _plain(base, importance=self.criterion, global_pruning=False, isomorphic=False)


@register_method("magnitude_l1")
class _MagnitudeL1(MagnitudePruning):
    def __init__(self) -> None:
        super().__init__("l1")


@register_method("magnitude_l2")
class _MagnitudeL2(MagnitudePruning):
    def __init__(self) -> None:
        super().__init__("l2")


@register_method("taylor")
class TaylorPruning(PruningMethod):
    """First-order Taylor importance from calibration gradients, ranked globally
    (Molchanov et al., 2019). Optuna may also tune per-kind multipliers."""

    tunes_multipliers = True

    def make_strategy(self, base: Strategy, kinds: Sequence[str] = ()) -> Strategy:
        return _plain(base, importance="taylor", global_pruning=True, isomorphic=False)


@register_method("isomorphic")
class IsomorphicOriginal(PruningMethod):
    """Isomorphic Pruning (Fang et al., ECCV 2024) as published: Taylor importance from
    calibration batches, global ranking within isomorphic groups, attention heads pruned with
    the head ratio, channels rounded to ``round_to``, classifier head kept.

    Args:
        head_pruning_ratio: Fraction of heads removed in ViTs (the paper's ``--head-pruning-ratio``).
        round_to: Channel rounding (the paper uses 2 for ConvNeXt, none for DeiT).
    """

    tunes_multipliers = True

    def __init__(self, head_pruning_ratio: float = 0.0, round_to: int | None = None) -> None:
        super().__init__()
        self.head_pruning_ratio = head_pruning_ratio
        self.round_to = round_to

    def make_strategy(self, base: Strategy, kinds: Sequence[str] = ()) -> Strategy:
        strategy = _plain(base, importance="taylor", global_pruning=True, isomorphic=True, round_to=self.round_to)
        if self.head_pruning_ratio > 0 and "attention" in kinds:
            strategy = strategy.replace(prune_num_heads=True, head_pruning_ratio=self.head_pruning_ratio)
        return strategy


@register_method("random")
class RandomPruning(PruningMethod):
    """Random channel selection with a uniform per-layer ratio: the floor every method must beat."""

    tunes_ranking = True

    def make_strategy(self, base: Strategy, kinds: Sequence[str] = ()) -> Strategy:
        return _plain(base, importance="random", global_pruning=False, isomorphic=False)


class FullSpaceMethod(PruningMethod):
    """Optuna over the whole strategy space the master searches (``optuna_tpe`` in comparisons):
    criterion, ranking, isomorphic grouping, per-kind multipliers and the recovery settings."""

    tunes_multipliers = True
    tunes_ranking = True

    def make_strategy(self, base: Strategy, kinds: Sequence[str] = ()) -> Strategy:
        return base

    def search_space(self, base, kinds=(), has_attention=False):
        dims = super().search_space(base, kinds, has_attention)
        return [Dimension("importance", "categorical", choices=("taylor", "l2", "lamp", "fpgm", "hessian", "l1")),
                Dimension("isomorphic", "categorical", choices=(True, False)), *dims]
