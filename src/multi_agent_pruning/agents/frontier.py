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
2. **What to propose there.** Each slot of a target takes, in this order:

   - an *urgent transfer*: the recipe (criterion, ranking, per-kind multipliers, recovery rate,
     distillation) of a harder target whose score beats this target's best, re-targeted here:
     the frontier must fall as MACs fall, so this target is under-searched;
   - the next strategy of the target's own round (:meth:`FrontierPolicy.planned`): the
     single-target policy (:class:`~multi_agent_pruning.agents.policy.BuiltinPolicy`) run on the
     target's own trials as if it were searched alone with its share of the batch (at least two
     a round): its templates while it is new, then per round the learning-rate probe of its best
     and the next template. The round is planned from the trials issued before it, so a target
     whose slots arrive one at a time gets the same round as one that gets them together, and
     the probe comes first (a target often gets one slot of a round; in run 4 of the frontier
     benchmark the joint search then took one template per slot and never ran the probe);
   - the best recipe of the other targets not yet tried here, nearest targets first: a good
     recipe at 50 % is a strong start at 30 % and at 70 %, and a new best anywhere is tried at
     its neighbours;
   - a mutation of the target's elites (the single-target policy on its own history, in a trust
     region that shrinks with the target's own round).

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
        return [candidate for candidate, _ in self.ranked_transfers(index, bases, history, seen)]

    def ranked_transfers(self, index: int, bases: Sequence[Strategy], history: Sequence[Observation],
                         seen: set[str]) -> list[tuple[Strategy, bool]]:
        """:meth:`transfers` with, for each, whether it is urgent: the recipe of a harder target
        that beats this target's best."""
        base = bases[index]
        local = [o.score for o in history if o.score is not None and same_target(o.strategy, base)]
        local_best = max(local, default=None)
        candidates: list[tuple[tuple, Strategy, bool]] = []
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
                                   candidate, violation))
        candidates.sort(key=lambda item: item[0])
        out, keys = [], set()
        for _, candidate, violation in candidates:
            if candidate.key() not in keys:
                keys.add(candidate.key())
                out.append((candidate, violation))
        return out

    @staticmethod
    def round_size(batch_size: int, targets: int) -> int:
        """The trials of a target's round: its share of the batch, at least two."""
        return max(2, -(-batch_size // targets))

    @classmethod
    def local_round(cls, trials: int, batch_size: int, targets: int) -> int:
        """The round a target would be in if it were searched alone with its share of the batch
        (:meth:`round_size`), after ``trials`` trials there: the single-target policy's
        schedule (templates, then the learning-rate probe, then mutations in a shrinking trust
        region) follows each target's own progress, not the sweep's round count."""
        return trials // cls.round_size(batch_size, targets)

    def planned(self, kinds: Mapping[str, Mapping[str, float]], base: Strategy, issued: Sequence[Observation],
                size: int, seen: set[str], *, has_attention: bool = False) -> Strategy | None:
        """The next strategy of the target's own round not yet tried, or None when the round's
        plan is used up.

        ``issued`` holds the target's trials in the order they were issued (scored, failed or
        running). The round is the one the target is in (``len(issued) // size``); its plan is what
        the single-target policy proposes for that round from the trials issued before it
        (:meth:`BuiltinPolicy.round_plan <multi_agent_pruning.agents.policy.BuiltinPolicy.round_plan>`:
        templates, and the learning-rate probe of the best, the probe first), with the scores known
        now. So however the round's slots arrive, one at a time or all together, the target gets
        the round a search of it alone would run, and the probe is not displaced by the next
        template when a target gets one slot.
        """
        round_ = len(issued) // size
        plan = self.policy.round_plan(kinds, base, list(issued[:round_ * size]), size, round_,
                                      has_attention=has_attention, probe_first=True)
        return next((s for s in plan if s.key() not in seen), None)

    def propose(self, kinds: Mapping[str, Mapping[str, float]], bases: Sequence[Strategy],
                history: Sequence[Observation], pending: Sequence[Strategy], batch_size: int, *,
                dense: Mapping[str, float], has_attention: bool = False,
                slots: Sequence[int] | None = None) -> list[Strategy]:
        """``batch_size`` new strategies spread over the targets of ``bases``.

        ``history`` holds the scored and failed strategies of every target in the order they were
        issued; ``pending`` the strategies still running (and any already proposed in this batch).
        ``slots`` overrides :meth:`allocate` (the LLM path fills part of a batch first). Each slot
        of a target takes, in this order: an urgent transfer (a harder target's recipe that beats
        this target's best), the next strategy of the target's own round (:meth:`planned`), the
        best transfer not yet tried, and else a mutation from the single-target policy on the
        target's own history and round (:meth:`local_round`).
        """
        slots = list(slots) if slots is not None else self.allocate(bases, history, pending, batch_size, dense)
        seen = {o.strategy.key() for o in history} | {s.key() for s in pending}
        size = self.round_size(batch_size, len(bases))
        batch: list[Strategy] = []
        for index, base in enumerate(bases):
            want = slots[index]
            if want <= 0:
                continue
            transfers = self.ranked_transfers(index, bases, history, seen)
            done = [o for o in history if same_target(o.strategy, base)]
            mine: list[Strategy] = []
            while len(mine) < want:
                issued = done + [Observation(s, None) for s in [*pending, *batch, *mine] if same_target(s, base)]
                pick = (next((s for s, urgent in transfers if urgent and s.key() not in seen), None)
                        or self.planned(kinds, base, issued, size, seen, has_attention=has_attention)
                        or next((s for s, _ in transfers if s.key() not in seen), None))
                if pick is None:
                    rounds = self.local_round(len(issued), batch_size, len(bases))
                    pick = next((s for s in self.policy.propose(kinds, base, issued, 1, rounds,
                                                                has_attention=has_attention)
                                 if s.key() not in seen), None)
                if pick is None:
                    break
                seen.add(pick.key())
                mine.append(pick)
            batch.extend(mine)
        return batch[:batch_size]
