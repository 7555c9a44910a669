"""The master's built-in search policy (used when no LLM is configured, or it fails).

The policy is a small evolutionary search with a sensitivity-informed prior:

1. **First batch** (no history): the most promising points first, then diversity. Per-kind ratio
   multipliers come from the profile's measured sensitivity: kinds whose pruning hurt the
   calibration loss less are pruned more (``m_k ~ (mean_sens / sens_k) ** 0.5``, normalised so the
   MACs-weighted mean multiplier is 1 and clamped to [0.25, 2.5]). The batch walks a fixed list of
   templates (criterion, ranking, multipliers, recovery learning rate, distillation weight) that
   alternates per-layer and global ranking: L1 global and L1 per layer with distillation, Taylor +
   isomorphic + sensitivity multipliers, L2 per layer, Taylor per layer, LAMP, L2 + isomorphic,
   FPGM, Hessian, Taylor global. Each template gets its own recovery learning rate, from 1x to
   10x the configured one (5x, 8x, 3x, 4x, 6x, ...; a short recovery after an aggressive prune is
   very sensitive to it and usually wants more than a full fine-tune's rate), and half of them
   distil from the dense model (``kd_weight`` 0.5), which helps a short recovery.
2. **Later batches**: the best ``k`` evaluated strategies are parents. Each child copies a parent
   (rank-weighted choice) and changes one of its genes (two in 40 % of the children) inside a
   trust region that shrinks every iteration: the learning rate (log-normal, sigma
   0.5 * 0.8^iteration), the per-kind multipliers (log-normal on each, sigma 0.35 * 0.7^iteration,
   sometimes averaged with another parent's first), distillation on/off, ``round_to`` (none, 2, 4,
   8), the ranking mode (per layer, global, isomorphic) or the criterion (towards criteria that
   scored well). Odds 3 : 2 : 1 : 1 : 0.7 : 0.7.
3. Every proposal is new: strategies already evaluated or already in the batch are redrawn.

Scores are top-1 accuracies after fine-tuning; failed trials count as worst.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from multi_agent_pruning.core.strategy import Strategy

__all__ = ["BuiltinPolicy", "Observation", "sensitivity_multipliers"]

_MULT_RANGE = (0.25, 2.5)
# The first batch's templates: (criterion, global ranking, isomorphic, multipliers, recovery learning
# rate relative to the configured one, distillation weight). Measured on digits (BENCHMARKS.md,
# search quality runs 1-4): a fixed rate lost to Optuna-tuned baselines, the tuned ones won with
# 3-8x the configured rate, L1 magnitude ranking (global or per layer) and distillation; so those
# come first, then global/isomorphic Taylor (the Isomorphic Pruning recipe). "sens": sensitivity
# multipliers.
_TEMPLATES = (
    ("l1", True, False, "uniform", 5.0, 0.5),
    ("l1", False, False, "uniform", 8.0, 0.5),
    ("taylor", True, True, "sens", 3.0, 0.5),
    ("l2", False, False, "uniform", 4.0, 0.0),
    ("taylor", False, False, "uniform", 6.0, 0.0),
    ("lamp", True, True, "sens", 2.0, 0.5),
    ("l2", True, True, "sens", 10.0, 0.0),
    ("fpgm", False, False, "uniform", 3.0, 0.5),
    ("hessian", True, True, "sens", 1.5, 0.0),
    ("taylor", True, False, "sens", 1.0, 0.5),
)
_KD_CHOICES = (0.0, 0.5)
# What a mutation may change, with its odds (see ``BuiltinPolicy._mutate``).
_GENES = {"lr": 3.0, "multipliers": 2.0, "kd": 1.0, "round_to": 1.0, "ranking": 0.7, "criterion": 0.7}
_ROUND_TO = (None, 2, 4, 8)
_RANKINGS = ((False, False), (True, False), (True, True))  # (global, isomorphic): per layer, global, isomorphic


@dataclass(frozen=True)
class Observation:
    """An evaluated strategy: ``score`` is top-1 after fine-tuning, None when the trial failed."""

    strategy: Strategy
    score: float | None


def sensitivity_multipliers(kinds: Mapping[str, Mapping[str, float]], power: float = 0.5) -> dict[str, float]:
    """Per-kind multipliers: less sensitive kinds are pruned more (see module docstring)."""
    sens = {k: v.get("sensitivity") for k, v in kinds.items()}
    if not kinds or any(s is None for s in sens.values()):
        return {}
    floor = 1e-3
    mean = sum(max(s, floor) for s in sens.values()) / len(sens)
    raw = {k: (mean / max(s, floor)) ** power for k, s in sens.items()}
    shares = {k: max(float(kinds[k].get("macs_share", 0.0)), 1e-6) for k in kinds}
    norm = sum(shares[k] * raw[k] for k in raw) / sum(shares.values())
    return {k: _clamp(v / norm) for k, v in raw.items()}


def _clamp(value: float) -> float:
    return round(min(_MULT_RANGE[1], max(_MULT_RANGE[0], value)), 4)


class BuiltinPolicy:
    """Proposes batches of new strategies from a profile and the search history.

    Args:
        seed: Seed of the policy's own random generator (proposals are reproducible).
        exploration: Scales the mutation step sizes (0.3 is the default of the config).
        criteria: Importance criteria the policy may use.
    """

    def __init__(self, seed: int = 0, exploration: float = 0.3,
                 criteria: Sequence[str] = ("taylor", "l2", "lamp", "fpgm", "hessian", "l1")) -> None:
        self.rng = random.Random(seed)
        self.exploration = exploration
        self.criteria = tuple(criteria)

    def propose(self, kinds: Mapping[str, Mapping[str, float]], base: Strategy, history: Sequence[Observation],
                batch_size: int, iteration: int, *, has_attention: bool = False) -> list[Strategy]:
        """``batch_size`` distinct strategies never seen in ``history``."""
        seen = {obs.strategy.key() for obs in history}
        batch: list[Strategy] = []
        candidates = self._first_batch(kinds, base, has_attention)
        if _scored(history):
            # Keep exploring the prior's best templates for a few iterations, one per batch.
            candidates = [c for c in candidates[:4] if c.key() not in seen][:1] if iteration <= 2 else []
        for candidate in candidates:
            if len(batch) == batch_size:
                break
            self._add(candidate, batch, seen)
        attempts = 0
        while len(batch) < batch_size and attempts < 200:
            attempts += 1
            parent = self._pick_parent(history, batch, base)
            self._add(self._mutate(parent, history, kinds, iteration, attempts), batch, seen)
        return batch

    # -- first batch ---------------------------------------------------------------------------
    def _first_batch(self, kinds, base: Strategy, has_attention: bool) -> list[Strategy]:
        multipliers = {"sens": sensitivity_multipliers(kinds), "uniform": {k: 1.0 for k in kinds}}
        out = []
        for criterion, global_pruning, isomorphic, mult, lr_factor, kd in _TEMPLATES:
            if criterion not in self.criteria:
                continue
            out.append(base.replace(importance=criterion, global_pruning=global_pruning,
                                    isomorphic=isomorphic and global_pruning,
                                    group_multipliers=multipliers[mult] or {}, kd_weight=kd,
                                    prune_num_heads=base.prune_num_heads if has_attention else False,
                                    learning_rate=_round_lr(base.learning_rate * lr_factor)))
        return out

    # -- refinement ----------------------------------------------------------------------------
    def _pick_parent(self, history: Sequence[Observation], batch: list[Strategy], base: Strategy) -> Strategy:
        ranked = sorted((o for o in history if o.score is not None), key=lambda o: -o.score)
        if not ranked:
            return batch[0] if batch else base
        elites = ranked[: max(2, min(4, len(ranked) // 2 + 1))]
        weights = [1.0 / (rank + 1) for rank in range(len(elites))]
        return self.rng.choices(elites, weights=weights)[0].strategy

    def _mutate(self, parent: Strategy, history, kinds, iteration: int, attempt: int) -> Strategy:
        """A child that differs from ``parent`` in one gene (sometimes two), inside the trust region.

        Genes (with their odds): recovery learning rate (3), per-kind multipliers (2), distillation
        on/off (1), ``round_to`` (1), ranking mode (0.7), criterion (0.7). Changing one thing at a
        time keeps what made the parent good; at this budget a trial's noise is as large as most
        differences between neighbours, so more draws near the best parents pay off.
        """
        scale = self.exploration / 0.3
        widen = 1 + attempt / 50  # repeated collisions with seen strategies widen the steps
        genes = self._pick_genes(2 if self.rng.random() < 0.4 else 1)
        changes: dict = {}
        if "lr" in genes:
            sigma = 0.5 * scale * (0.8 ** iteration) * widen
            changes["learning_rate"] = _round_lr(parent.learning_rate * math.exp(self.rng.gauss(0.0, sigma)))
        if "multipliers" in genes:
            sigma = 0.35 * scale * (0.7 ** max(0, iteration - 1)) * widen
            mult = dict(parent.group_multipliers) or {k: 1.0 for k in kinds}
            other = self._pick_parent(history, [], parent)
            if other.group_multipliers and self.rng.random() < 0.3:
                mult = {k: (mult.get(k, 1.0) + other.group_multipliers.get(k, 1.0)) / 2 for k in mult}
            changes["group_multipliers"] = {k: _clamp(v * math.exp(self.rng.gauss(0.0, sigma)))
                                            for k, v in mult.items()}
        if "kd" in genes:
            changes["kd_weight"] = _KD_CHOICES[1] if parent.kd_weight == 0 else _KD_CHOICES[0]
        if "round_to" in genes:
            changes["round_to"] = self.rng.choice([r for r in _ROUND_TO if r != parent.round_to])
        if "ranking" in genes:
            current = (parent.global_pruning, parent.isomorphic and parent.global_pruning)
            global_pruning, isomorphic = self.rng.choice([m for m in _RANKINGS if m != current])
            changes.update(global_pruning=global_pruning, isomorphic=isomorphic)
        if "criterion" in genes:
            changes["importance"] = self._criterion(history, parent.importance)
        return parent.replace(**changes)

    def _pick_genes(self, count: int) -> set[str]:
        names, weights = list(_GENES), list(_GENES.values())
        chosen: set[str] = set()
        while len(chosen) < count:
            chosen.add(self.rng.choices(names, weights=weights)[0])
        return chosen

    def _criterion(self, history: Sequence[Observation], current: str) -> str:
        means: dict[str, list[float]] = {}
        for o in history:
            if o.score is not None:
                means.setdefault(o.strategy.importance, []).append(o.score)
        weights = [1.0 + 4.0 * (sum(means[c]) / len(means[c]) if c in means else 0.5) for c in self.criteria]
        choice = self.rng.choices(self.criteria, weights=weights)[0]
        return choice if choice != current else self.rng.choice(self.criteria)

    @staticmethod
    def _add(candidate: Strategy, batch: list[Strategy], seen: set[str]) -> None:
        key = candidate.key()
        if key not in seen:
            seen.add(key)
            batch.append(candidate)


def _round_lr(lr: float) -> float:
    return float(f"{min(1.0, max(1e-6, lr)):.3g}")


def _scored(history: Sequence[Observation]) -> bool:
    return any(o.score is not None for o in history)
