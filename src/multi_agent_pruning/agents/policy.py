"""The master's built-in search policy (used when no LLM is configured, or it fails).

The policy is a small evolutionary search with a sensitivity-informed prior:

1. **First batch** (no history): the most promising points first, then diversity. Per-kind ratio
   multipliers come from the profile's measured sensitivity: kinds whose pruning hurt the
   calibration loss less are pruned more (``m_k ~ (mean_sens / sens_k) ** 0.5``, normalised so the
   MACs-weighted mean multiplier is 1 and clamped to [0.25, 2.5]). The batch walks a fixed list of
   templates (criterion, ranking, multipliers, recovery learning rate, distillation weight) that
   alternates per-layer and global ranking: L1 global and L1 per layer (channel counts rounded to
   multiples of 8) with distillation, L2 per layer, Taylor per layer, Taylor + isomorphic +
   sensitivity multipliers, LAMP, L2 + isomorphic, FPGM, Hessian, Taylor global. Each template gets its own recovery learning rate, from 1x to
   10x the configured one (5x, 5x, 4x, 6x, 3x, ...; a short recovery after an aggressive prune is
   very sensitive to it and usually wants more than a full fine-tune's rate), and half of them
   distil from the dense model (``kd_weight`` 0.5), which helps a short recovery. On models with
   attention (ViT/DeiT) the templates with global isomorphic ranking come first: the Taylor one,
   the Isomorphic Pruning recipe for DeiT, then LAMP, Hessian and L2 (lower rates first), then
   the others. In all 18 ViT searches of benchmarks/history/search_quality.md runs 6-8, 10 and 12 the recipe scored
   0.71-0.78 while the L1 templates ahead of it scored 0.28-0.63, and in run 14 (digits-vit, a
   better trained dense model) the per-layer L1 and L2 templates scored 0.23-0.54 against
   0.77-0.91 for global isomorphic ones. On CNNs the recipe comes fifth, after
   the per-layer L2 and Taylor templates: in the 15 CNN searches of run 14 it scored 0.45-0.59
   (digits) and 0.21-0.24 (Fashion-MNIST), the sensitivity multipliers' extreme per-stage ratios
   breaking the CNN, while per-layer L2 scored 0.91-0.98 and 0.55-0.67.
2. **Later batches**: the best ``k`` evaluated strategies are parents. Each child copies a parent
   (rank-weighted choice) and changes one of its genes (two in 40 % of the children) inside a
   trust region that shrinks every iteration: the learning rate (log-normal, sigma
   0.5 * 0.8^iteration), the per-kind multipliers (log-normal on each, sigma 0.35 * 0.7^iteration,
   sometimes averaged with another parent's first), distillation on/off, ``round_to`` (none, 2, 4,
   8), the ranking mode (per layer, global, isomorphic) or the criterion (towards criteria that
   scored well). Prior odds 3 : 2 : 1 : 1 : 0.7 : 0.7, then **adapted to the search so far**: each
   scored child is matched to the evaluated strategy it differs from in one or two genes (its
   parent), and a gene's odds are scaled by its children's smoothed success rate (how often they
   beat their parent: ``(wins + 1) / (tries + 3)`` against the prior 1/3), so genes whose changes
   keep losing on this model are drawn less.
3. **The learning rate is line-searched**, not only jittered: the short recovery after an
   aggressive prune is the one hyperparameter with a large, smooth (unimodal in log lr) effect, and
   its best value depends on the model and data (2-6x the configured rate in benchmarks/history/search_quality.md). A
   child that changes the rate looks at the parent's evaluated *siblings* (the same strategy with
   other rates): with none it takes a log-normal step; with one it steps on past the better of the
   two, away from the worse; with three or more rates it fits a parabola to score against log lr and
   draws near its maximum (or extrapolates past the best edge when the fit has no maximum).
4. Every proposal is new: strategies already evaluated or already in the batch are redrawn.

Scores are top-1 accuracies after fine-tuning; failed trials count as worst.
"""

from __future__ import annotations

import math
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from multi_agent_pruning.core.strategy import Strategy

__all__ = ["BuiltinPolicy", "Observation", "gene_success", "sensitivity_multipliers"]

_MULT_RANGE = (0.25, 2.5)
# The first batch's templates: (criterion, global ranking, isomorphic, multipliers, recovery learning
# rate relative to the configured one, distillation weight, round_to). Measured on digits
# (benchmarks/history/search_quality.md, runs 1-4): a fixed rate lost to Optuna-tuned baselines, the tuned
# ones won with 3-8x the configured rate, L1 magnitude ranking (global or per layer) and
# distillation; so those come first, then per-layer L2 and Taylor, then global/isomorphic Taylor
# (the Isomorphic Pruning recipe; first on models with attention, see the module docstring).
# "sens": sensitivity multipliers. Per-layer L1 rounds channel counts to multiples of 8 at 5x:
# in run 14's Optuna-tuned CNN trials, per-layer L1 scored 0.93 / 0.70 (median, digits /
# Fashion-MNIST) with round_to 8 against 0.86 / 0.47 without, best at 4-6x with distillation.
_TEMPLATES = (
    ("l1", True, False, "uniform", 5.0, 0.5, None),
    ("l1", False, False, "uniform", 5.0, 0.5, 8),
    ("l2", False, False, "uniform", 4.0, 0.0, None),
    ("taylor", False, False, "uniform", 6.0, 0.0, None),
    ("taylor", True, True, "sens", 3.0, 0.5, None),
    ("lamp", True, True, "sens", 2.0, 0.5, None),
    ("l2", True, True, "sens", 10.0, 0.0, None),
    ("fpgm", False, False, "uniform", 3.0, 0.5, None),
    ("hessian", True, True, "sens", 1.5, 0.0, None),
    ("taylor", True, False, "sens", 1.0, 0.5, None),
)
# On models with attention: the templates with global isomorphic ranking first (the Isomorphic
# Pruning recipe, then LAMP, Hessian and L2, lower rates first), then the rest in order.
_ATTENTION_ORDER = (4, 5, 8, 6, 0, 1, 2, 3, 7, 9)
_KD_CHOICES = (0.0, 0.5)
# What a mutation may change, with its odds (see ``BuiltinPolicy._mutate``).
_GENES = {"lr": 3.0, "multipliers": 2.0, "kd": 1.0, "round_to": 1.0, "ranking": 0.7, "criterion": 0.7}
_GENE_PRIOR_RATE = 1 / 3  # prior success rate of a gene's children (smoothing of the adapted odds)
_ROUND_TO = (None, 2, 4, 8)
_RANKINGS = ((False, False), (True, False), (True, True))  # (global, isomorphic): per layer, global, isomorphic


@dataclass(frozen=True)
class Observation:
    """An evaluated strategy: ``score`` is top-1 after fine-tuning, None when the trial failed.

    In a multi-fidelity search ``score`` is the top-1 at the last rung the trial reached, and
    ``rungs`` holds ``(budget, top1)`` at each rung (a trial the scheduler stopped at a low rung
    is an early, noisy result, not a failure); None in a one-budget search.
    """

    strategy: Strategy
    score: float | None
    rungs: tuple[tuple[int, float], ...] | None = None


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
        """``batch_size`` distinct strategies never seen in ``history``: the round's plan
        (:meth:`round_plan`), then mutations of the elites."""
        seen = {obs.strategy.key() for obs in history}
        index = _HistoryIndex(history)
        batch = self._plan(kinds, base, history, batch_size, iteration, has_attention, False, seen, index)
        attempts = 0
        while len(batch) < batch_size and attempts < 200:
            attempts += 1
            parent = self._pick_parent(history, batch, base)
            self._add(self._mutate(parent, history, kinds, iteration, attempts, index), batch, seen)
        return batch

    def round_plan(self, kinds: Mapping[str, Mapping[str, float]], base: Strategy, history: Sequence[Observation],
                   size: int, iteration: int, *, has_attention: bool = False,
                   probe_first: bool = False) -> list[Strategy]:
        """The strategies of round ``iteration`` that are not mutations, at most ``size``: every
        template while nothing is scored; then, in rounds 0-2, the most promising template not yet
        tried (of the first four), and in rounds 0-3 the learning-rate probe of the best strategy
        (:meth:`_lr_probe`). ``probe_first`` puts the probe before the template (the frontier
        search, where a target may get one slot of its round: agents/frontier.py)."""
        return self._plan(kinds, base, history, size, iteration, has_attention, probe_first,
                          {obs.strategy.key() for obs in history}, _HistoryIndex(history))

    def _plan(self, kinds, base: Strategy, history: Sequence[Observation], size: int, iteration: int,
              has_attention: bool, probe_first: bool, seen: set[str], index: _HistoryIndex) -> list[Strategy]:
        batch: list[Strategy] = []
        candidates = self._first_batch(kinds, base, has_attention)
        if not _scored(history):
            for candidate in candidates:
                if len(batch) == size:
                    break
                self._add(candidate, batch, seen)
            return batch
        # Keep exploring the prior's best templates for a few iterations, one per batch.
        template = [c for c in candidates[:4] if c.key() not in seen][:1] if iteration <= 2 else []
        probe = iteration <= 3
        if probe and probe_first and size > 0:
            self._add(self._lr_probe(history, base, index), batch, seen)
            probe = False
        for candidate in template:
            if len(batch) < size:
                self._add(candidate, batch, seen)
        if probe and len(batch) < size:
            self._add(self._lr_probe(history, base, index), batch, seen)
        return batch

    # -- first batch ---------------------------------------------------------------------------
    def _first_batch(self, kinds, base: Strategy, has_attention: bool) -> list[Strategy]:
        multipliers = {"sens": sensitivity_multipliers(kinds), "uniform": {k: 1.0 for k in kinds}}
        templates = _TEMPLATES
        if has_attention:  # global isomorphic ranking first (module docstring, point 1)
            templates = tuple(_TEMPLATES[i] for i in _ATTENTION_ORDER)
        out = []
        for criterion, global_pruning, isomorphic, mult, lr_factor, kd, round_to in templates:
            if criterion not in self.criteria:
                continue
            out.append(base.replace(importance=criterion, global_pruning=global_pruning,
                                    round_to=round_to if round_to is not None else base.round_to,
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

    def _mutate(self, parent: Strategy, history, kinds, iteration: int, attempt: int,
                index: _HistoryIndex | None = None) -> Strategy:
        """A child that differs from ``parent`` in one gene (sometimes two), inside the trust region.

        Genes (with their prior odds, adapted by ``gene_success``): recovery learning rate (3,
        line-searched: ``_next_lr``), per-kind multipliers (2), distillation on/off (1),
        ``round_to`` (1), ranking mode (0.7), criterion (0.7). Changing one thing at a time keeps
        what made the parent good; at this budget a trial's noise is as large as most differences
        between neighbours, so more draws near the best parents pay off.
        """
        index = index or _HistoryIndex(history)
        scale = self.exploration / 0.3
        widen = 1 + attempt / 50  # repeated collisions with seen strategies widen the steps
        genes = self._pick_genes(2 if self.rng.random() < 0.4 else 1, index.gene_weights())
        changes: dict = {}
        if "lr" in genes:
            sigma = 0.5 * scale * (0.8 ** iteration) * widen
            changes["learning_rate"] = _round_lr(self._next_lr(parent, index.lr_siblings(parent), sigma))
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

    def _lr_probe(self, history: Sequence[Observation], base: Strategy, index: _HistoryIndex) -> Strategy:
        """The best strategy so far at another rate (one per batch in iterations 1-3): with fewer
        than two of its rates evaluated, twice or half its rate, towards the configured one; then
        the line search."""
        best = max((o for o in history if o.score is not None), key=lambda o: o.score).strategy
        siblings = index.lr_siblings(best)
        if len(siblings) < 2:
            factor = 0.5 if best.learning_rate >= base.learning_rate else 2.0
            return best.replace(learning_rate=_round_lr(best.learning_rate * factor))
        return best.replace(learning_rate=_round_lr(self._next_lr(best, siblings, 0.5 * self.exploration / 0.3)))

    def _next_lr(self, parent: Strategy, siblings: Mapping[float, float], sigma: float) -> float:
        """The line search on the learning rate (module docstring, point 3).

        ``siblings`` maps each evaluated rate of the parent's strategy (all other genes equal) to
        its mean score; ``sigma`` is the log-space step of the trust region.
        """
        x_parent = math.log(parent.learning_rate)
        points = sorted((math.log(lr), score) for lr, score in siblings.items())
        if len(points) < 2:
            return math.exp(x_parent + self.rng.gauss(0.0, sigma))
        xs = [x for x, _ in points]
        x_best = max(points, key=lambda p: p[1])[0]
        spacing = (xs[-1] - xs[0]) / (len(xs) - 1)
        step = max(sigma, 0.5 * spacing)
        if len(points) == 2:  # away from the worse rate
            x_worse = min(points, key=lambda p: p[1])[0]
            direction = 1.0 if x_best > x_worse else -1.0
        else:
            a, b, _ = np.polyfit(xs, [score for _, score in points], 2)
            if a < 0:
                vertex = min(xs[-1] + step, max(xs[0] - step, -b / (2 * a)))
                return math.exp(vertex + self.rng.gauss(0.0, 0.5 * sigma))
            if x_best not in (xs[0], xs[-1]):
                return math.exp(x_best + self.rng.gauss(0.0, sigma))
            direction = 1.0 if x_best == xs[-1] else -1.0  # no maximum inside: past the best edge
        # on past the better rate, by about the spacing of the rates tried
        return math.exp(x_best + direction * max(sigma, spacing) * self.rng.uniform(0.6, 1.4))

    def _pick_genes(self, count: int, odds: Mapping[str, float] | None = None) -> set[str]:
        odds = odds or _GENES
        names, weights = list(odds), list(odds.values())
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


# -- what the history says about genes and rates ----------------------------------------------------
def _genes_of(strategy: Strategy) -> dict[str, object]:
    return {"lr": strategy.learning_rate,
            "multipliers": tuple(sorted(strategy.group_multipliers.items())),
            "kd": strategy.kd_weight,
            "round_to": strategy.round_to,
            "ranking": (strategy.global_pruning, strategy.isomorphic and strategy.global_pruning),
            "criterion": strategy.importance}


def _rest_key(strategy: Strategy) -> str:
    """The strategy's key with every gene set to a fixed value: equal for strategies that differ
    in genes only."""
    return strategy.replace(learning_rate=1.0, group_multipliers={}, kd_weight=0.0, round_to=None,
                            global_pruning=True, isomorphic=False, importance="l1").key()


def gene_success(history: Sequence[Observation]) -> dict[str, tuple[int, int]]:
    """``{gene: (wins, tries)}``: how often a child that changed the gene beat its parent.

    ``history`` is in the order the trials finished (a child always finishes after its parent).
    Each scored strategy's parent is the earlier scored strategy it differs from in the fewest
    genes (one or two, everything else equal; the better-scored on a tie); a child with no such
    parent (a template, an LLM proposal) is not counted. Both genes of a two-gene child are
    credited.
    """
    return _HistoryIndex(history).success


class _HistoryIndex:
    """What one ``propose`` call needs from the history, computed once: the genes' success counts
    and, per strategy without its rate, the evaluated rates with their mean score."""

    def __init__(self, history: Sequence[Observation]) -> None:
        scored = [o for o in history if o.score is not None]
        genes = [_genes_of(o.strategy) for o in scored]
        rests = [_rest_key(o.strategy) for o in scored]
        wins: Counter[str] = Counter()
        tries: Counter[str] = Counter()
        for i, child in enumerate(scored):
            parent: tuple[int, float, list[str]] | None = None  # (changed count, -score, genes)
            for j in range(i):
                if rests[j] != rests[i]:
                    continue
                changed = [g for g in genes[i] if genes[i][g] != genes[j][g]]
                if 1 <= len(changed) <= 2:
                    candidate = (len(changed), -scored[j].score, changed)
                    if parent is None or candidate[:2] < parent[:2]:
                        parent = candidate
            if parent is not None:
                for gene in parent[2]:
                    tries[gene] += 1
                    wins[gene] += child.score > -parent[1]
        self.success = {g: (wins[g], tries[g]) for g in _GENES}
        self._rates: dict[str, dict[float, list[float]]] = {}
        for o in scored:
            key = o.strategy.replace(learning_rate=1.0).key()
            self._rates.setdefault(key, {}).setdefault(o.strategy.learning_rate, []).append(o.score)

    def gene_weights(self) -> dict[str, float]:
        """The prior odds scaled by each gene's smoothed success rate against the prior rate."""
        return {g: odds * ((self.success[g][0] + 1) / (self.success[g][1] + 3)) / _GENE_PRIOR_RATE
                for g, odds in _GENES.items()}

    def lr_siblings(self, strategy: Strategy) -> dict[float, float]:
        """Evaluated rates of ``strategy`` (all other fields equal) -> mean score."""
        rates = self._rates.get(strategy.replace(learning_rate=1.0).key(), {})
        return {lr: sum(scores) / len(scores) for lr, scores in rates.items()}


def _round_lr(lr: float) -> float:
    return float(f"{min(1.0, max(1e-6, lr)):.3g}")


def _scored(history: Sequence[Observation]) -> bool:
    return any(o.score is not None for o in history)
