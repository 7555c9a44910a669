"""The master's built-in policy over a sweep of targets: one search of the accuracy-MACs frontier.

A sweep (``target.sweep``) is searched as one problem, not as separate searches side by side.
Each batch is built in two steps (docs/agents.md, "Searching a frontier"):

1. **Where to spend** (:meth:`FrontierPolicy.allocate`). First every target gets two trials
   (scored, failed or still running; fewest first, widest first), so that each target's own
   spread is measured. Every other slot goes, one at a time, to the target where one more trial
   is expected to raise the frontier's area most: ``width * min(spread * (e(n + 1) - e(n)),
   1 - best)``, recomputed after each slot:

   - ``width`` is the share of the frontier's area the target's accuracy controls: the MACs kept
     at the next easier target minus those kept here (the dense model's 100 % for the easiest).
     Raising the best top-1 of a target by ``d`` raises the frontier area by ``width * d``
     (stats/frontier.py).
   - ``spread`` is the standard deviation of the target's scores: a target where every strategy
     lands within a point of the others has little left to find; one where they range widely
     has. (The largest measured spread stands in for a target with fewer than two scores, 0.05
     before any target has two.)
   - ``e(n)`` is the expected maximum of ``n`` standard normal draws, so ``spread * (e(n + 1) -
     e(n))`` is what one more trial adds to the best of the ``n`` the target has (trials
     scored, failed and running): it falls fast, and a target where everything fails is not
     retried for ever. ``1 - best`` caps it (no accuracy above 100 %).

   So easy targets, where every strategy keeps the dense accuracy, get few trials, and the
   budget goes where strategies differ and the frontier can still move.
2. **What to propose there.** Knowledge is shared across targets: a strategy's recipe (its
   criterion, ranking, per-kind multipliers, recovery rate, distillation) is re-targeted to the
   target in hand. Up to half of a target's slots (at least one) go to the best recipes of the
   other targets not yet tried here, nearest targets first: a good recipe at 50 % is a strong
   start at 30 % and at 70 %, and a new best anywhere is tried at its neighbours in the next
   batch. A target whose best is beaten by a harder target's best (the frontier must fall as
   MACs fall) gets that recipe first. The other slots come from the single-target policy
   (:class:`~multi_agent_pruning.agents.policy.BuiltinPolicy`) run on that target's own history
   and its own round (:meth:`FrontierPolicy.local_round`: as if the target were searched alone
   with its share of the batch): its templates while the target is new, then mutations of its
   elites and the learning-rate line search.

The allocation and the transfers are deterministic given the history; the policy's random
generator is the one of the single-target policy, so a seed gives the same search.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

from multi_agent_pruning.agents.policy import BuiltinPolicy, Observation
from multi_agent_pruning.core.strategy import Strategy

__all__ = ["FrontierPolicy", "retarget", "same_target", "target_tuple"]


def _expected_max(n: int) -> float:
    """Expected maximum of ``n`` standard normal draws (Blom: ``Phi^-1((n - 0.375) / (n + 0.25))``)."""
    return statistics.NormalDist().inv_cdf((n - 0.375) / (n + 0.25)) if n >= 1 else 0.0

#: Spread assumed for a target's scores before any target has two.
PRIOR_SPREAD = 0.05
#: Trials every target gets before the spreads decide (two measure a target's own spread).
MIN_TRIALS = 2
#: Recipes taken from each other target as transfer candidates (its best ones).
_TRANSFER_PER_SOURCE = 2


def target_tuple(strategy: Strategy) -> tuple[str, float | None, float | None]:
    """``(target_kind, target_reduction, target_budget)`` of a strategy."""
    return (strategy.target_kind, strategy.target_reduction, strategy.target_budget)


def same_target(strategy: Strategy, base: Strategy) -> bool:
    return target_tuple(strategy) == target_tuple(base)


def retarget(strategy: Strategy, base: Strategy) -> Strategy:
    """``strategy``'s recipe at ``base``'s target."""
    return strategy.replace(target_kind=base.target_kind, target_reduction=base.target_reduction,
                            target_budget=base.target_budget)


class FrontierPolicy:
    """Proposes one batch over several targets (module docstring).

    Args:
        policy: The single-target policy (and its random generator) used within each target.
    """

    def __init__(self, policy: BuiltinPolicy) -> None:
        self.policy = policy

    # -- where to spend ------------------------------------------------------------------------------
    @staticmethod
    def kept_fractions(bases: Sequence[Strategy], dense: Mapping[str, float]) -> list[float]:
        """The share of the dense MACs/params each target keeps."""
        out = []
        for base in bases:
            if base.target_reduction is not None:
                out.append(1.0 - float(base.target_reduction))
            else:
                total = float(dense.get(base.target_kind) or 0.0)
                out.append(min(1.0, float(base.target_budget) / total) if total > 0 else 0.5)
        return out

    @classmethod
    def widths(cls, bases: Sequence[Strategy], dense: Mapping[str, float]) -> list[float]:
        """The frontier area each target's accuracy controls (module docstring, step 1)."""
        kept = cls.kept_fractions(bases, dense)
        widths = []
        for index, keep in enumerate(kept):
            easier = [k for k in kept if k > keep + 1e-12]
            widths.append(max(1e-6, (min(easier) if easier else 1.0) - keep))
        return widths

    def allocate(self, bases: Sequence[Strategy], history: Sequence[Observation], pending: Sequence[Strategy],
                 batch_size: int, dense: Mapping[str, float]) -> list[int]:
        """Slots of the next batch per target (in the order of ``bases``)."""
        scores = [[o.score for o in history if o.score is not None and same_target(o.strategy, b)] for b in bases]
        counts = [sum(same_target(o.strategy, b) for o in history) + sum(same_target(s, b) for s in pending)
                  for b in bases]
        spreads = [statistics.stdev(s) for s in scores if len(s) >= 2]
        prior = max(spreads) if spreads else PRIOR_SPREAD
        widths = self.widths(bases, dense)
        slots = [0] * len(bases)
        for _ in range(batch_size):
            # First every target gets MIN_TRIALS trials (fewest first, widest first): its own spread
            # is then measured, not borrowed from targets that may be far easier.
            short = [i for i in range(len(bases)) if counts[i] + slots[i] < MIN_TRIALS]
            if short:
                index = min(short, key=lambda i: (counts[i] + slots[i], -widths[i], i))
            else:
                index = max(range(len(bases)), key=lambda i: (self._gain(widths[i], scores[i], prior,
                                                                         counts[i] + slots[i]), -i))
            slots[index] += 1
        return slots

    @staticmethod
    def _gain(width: float, scores: Sequence[float], prior: float, trials: int) -> float:
        """Expected rise of the frontier area from one more trial at a target that has ``trials``.

        The best of ``n`` draws from a normal with the target's spread ``s`` lies ``s * e(n)`` above
        the mean (``e``: expected maximum of ``n`` standard normals, Blom's approximation), so one
        more trial adds ``s * (e(n + 1) - e(n))`` to the best, and ``width`` times that to the area;
        capped by ``1 - best`` (no accuracy above 100 %).
        """
        spread = statistics.stdev(scores) if len(scores) >= 2 else prior
        gain = spread * (_expected_max(trials + 1) - _expected_max(trials))
        if scores:
            gain = min(gain, 1.0 - max(scores))
        return width * max(gain, 1e-6)

    # -- what to propose -----------------------------------------------------------------------------
    def transfers(self, index: int, bases: Sequence[Strategy], history: Sequence[Observation],
                  seen: set[str]) -> list[Strategy]:
        """The recipes of the other targets worth trying at ``bases[index]``, best first."""
        base = bases[index]
        local = [o.score for o in history if o.score is not None and same_target(o.strategy, base)]
        local_best = max(local, default=None)
        candidates: list[tuple[tuple, Strategy]] = []
        for source_index, source in enumerate(bases):
            if source_index == index:
                continue
            scored = sorted((o for o in history if o.score is not None and same_target(o.strategy, source)),
                            key=lambda o: -o.score)
            if not scored:
                continue
            best = scored[0].score
            for rank, obs in enumerate(scored[:_TRANSFER_PER_SOURCE]):
                candidate = retarget(obs.strategy, base)
                if candidate.key() in seen:
                    continue
                # A harder target that beats this one's best: its recipe is evidence this target is
                # under-searched (the frontier falls as MACs fall), so it goes first.
                violation = source_index > index and local_best is not None and obs.score > local_best
                candidates.append(((not violation, rank, best - obs.score, abs(source_index - index), source_index),
                                   candidate))
        candidates.sort(key=lambda item: item[0])
        out, keys = [], set()
        for _, candidate in candidates:
            if candidate.key() not in keys:
                keys.add(candidate.key())
                out.append(candidate)
        return out

    @staticmethod
    def local_round(trials: int, batch_size: int, targets: int) -> int:
        """The round a target would be in if it were searched alone with its share of the batch
        (at least two a round), after ``trials`` trials there: the single-target policy's
        schedule (templates, then the learning-rate probe, then mutations in a shrinking trust
        region) follows each target's own progress, not the sweep's round count."""
        return trials // max(2, -(-batch_size // targets))

    def propose(self, kinds: Mapping[str, Mapping[str, float]], bases: Sequence[Strategy],
                history: Sequence[Observation], pending: Sequence[Strategy], batch_size: int, *,
                dense: Mapping[str, float], has_attention: bool = False,
                slots: Sequence[int] | None = None) -> list[Strategy]:
        """``batch_size`` new strategies spread over the targets of ``bases``.

        ``history`` holds the scored and failed strategies of every target; ``pending`` the
        strategies still running (and any already proposed in this batch). ``slots`` overrides
        :meth:`allocate` (the LLM path fills part of a batch first). Each target's schedule follows
        its own progress (:meth:`local_round`), not the sweep's round count.
        """
        slots = list(slots) if slots is not None else self.allocate(bases, history, pending, batch_size, dense)
        seen = {o.strategy.key() for o in history} | {s.key() for s in pending}
        batch: list[Strategy] = []
        for index, base in enumerate(bases):
            want = slots[index]
            if want <= 0:
                continue
            mine: list[Strategy] = []
            for candidate in self.transfers(index, bases, history, seen)[:max(1, want // 2)]:
                if len(mine) < want:
                    mine.append(candidate)
                    seen.add(candidate.key())
            if len(mine) < want:
                local = [o for o in history if same_target(o.strategy, base)]
                local += [Observation(s, None) for s in [*pending, *batch, *mine] if same_target(s, base)]
                rounds = self.local_round(len(local), batch_size, len(bases))
                for strategy in self.policy.propose(kinds, base, local, want - len(mine), rounds,
                                                    has_attention=has_attention):
                    if strategy.key() not in seen:
                        seen.add(strategy.key())
                        mine.append(strategy)
            batch.extend(mine)
        return batch[:batch_size]
