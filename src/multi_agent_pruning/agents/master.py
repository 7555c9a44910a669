"""MasterAgent: proposes batches of pruning strategies and decides when to stop."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from multi_agent_pruning.agents.base import BaseAgent
from multi_agent_pruning.agents.frontier import FrontierPolicy, same_target
from multi_agent_pruning.agents.limits import DEFAULT_LIMITS, cap_strategy, check_limits
from multi_agent_pruning.agents.policy import BuiltinPolicy, Observation, sensitivity_multipliers
from multi_agent_pruning.core.profile import Profile
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.data import DatasetInfo
from multi_agent_pruning.exceptions import ConfigIssue, ConfigurationError, suggest_names
from multi_agent_pruning.results import strategy_target

__all__ = ["MasterAgent", "Proposal", "history_observations", "llm_token_columns", "llm_token_shares", "strategy_view"]


def strategy_view(strategy: Strategy) -> dict[str, Any]:
    """A strategy as a dict, plus the API reference's aliases (``pruning_ratio``, ...)."""
    data = strategy.to_dict()
    data["importance_criterion"] = strategy.importance
    data["pruning_ratio"] = strategy.target_reduction
    return data


def history_observations(history: list[Mapping[str, Any]]) -> list[Observation]:
    """Observations from history rows: ``strategy`` (dict/Strategy) or ``strategy_json``, and
    ``score`` or ``top1_after`` (None, or a status other than ``ok``, counts as failed)."""
    observations = []
    for item in history or []:
        strategy = _as_strategy(item.get("strategy", item.get("strategy_json")))
        score = item.get("score", item.get("top1_after"))
        if item.get("status", "ok") != "ok" or score is None or score != score:  # NaN check
            score = None
        rungs = item.get("rungs")
        observations.append(Observation(strategy, None if score is None else float(score),
                                        tuple((int(r["budget"]), float(r["top1"])) for r in rungs) if rungs else None))
    return observations


def _llm_result(observation: Observation) -> dict[str, Any]:
    """What the LLM is told of one result; a multi-fidelity trial's top-1 at each budget multiple
    it reached (``"top1_by_budget": {"1": 0.61, "3": 0.80}``; the last is ``top1``)."""
    result: dict[str, Any] = {"top1": observation.score}
    if observation.rungs:
        result["top1_by_budget"] = {str(budget): round(top1, 4) for budget, top1 in observation.rungs}
    return result


def llm_token_shares(records: Sequence[Any], strategies: Sequence[Strategy]) -> dict[str, dict[str, int | None]]:
    """The LLM tokens of one proposal, split over the strategies it produced.

    Every call that reached the service counts (a reply that had to be repaired too); a reply
    served from the cache (``attempts == 0``) cost nothing. Each count is split evenly, the
    remainder going to the first strategies, so the rows of a batch add up to what was spent.

    Returns:
        ``{Strategy.key(): {"llm_prompt_tokens": n, "llm_completion_tokens": m}}``; a count
        is None when the service reported none.
    """
    spent = [r for r in records if getattr(r, "attempts", 0) > 0]
    totals = {}
    for column, attribute in (("llm_prompt_tokens", "prompt_tokens"), ("llm_completion_tokens", "completion_tokens")):
        counts = [getattr(r, attribute) for r in spent if getattr(r, attribute) is not None]
        totals[column] = sum(counts) if counts else None
    shares: dict[str, dict[str, int | None]] = {}
    for index, strategy in enumerate(strategies):
        shares[strategy.key()] = {column: None if total is None else
                                  total // len(strategies) + (1 if index < total % len(strategies) else 0)
                                  for column, total in totals.items()}
    return shares


def llm_token_columns(shares: Mapping[str, Mapping[str, int | None]], strategy: Any) -> dict[str, int | None]:
    """The ``llm_*_tokens`` row columns of ``strategy`` (a Strategy, its dict or its JSON) from
    the master's ``llm_tokens``; both None when it did not come from the LLM."""
    empty = {"llm_prompt_tokens": None, "llm_completion_tokens": None}
    try:
        key = _as_strategy(strategy).key()
    except Exception:  # noqa: BLE001 - a malformed proposal has no tokens to show
        return empty
    return {**empty, **dict(shares.get(key) or {})}


@dataclass(frozen=True)
class Proposal:
    """One batch of the master (:meth:`MasterAgent.propose`); ``execute`` returns it as a dict."""

    strategies: tuple[Strategy, ...]
    continue_iterations: bool
    stop_reason: str | None
    confidence: float
    directives: dict[str, Any]
    source: str
    llm: dict[str, Any]
    llm_tokens: dict[str, dict[str, int | None]]
    revision_number: int


class MasterAgent(BaseAgent):
    """Proposes a batch of distinct strategies per iteration, with an LLM or the built-in policy.

    Config keys: ``max_iterations`` (5), ``convergence_threshold`` (0.005: stop when the best
    accuracy improved less than this since the previous iteration; 0 disables), ``batch_size``
    (4), ``exploration`` (0.3), ``seed`` (0), and ``llm_client`` (an
    :class:`~multi_agent_pruning.agents.llm.LLMClient`, or None for the built-in policy).

    ``execute`` input: ``profile_results`` (a profile or its dict), ``target_ratio`` (fraction
    removed) or ``base_strategy`` (a Strategy/dict carrying the target and recovery budget),
    ``history`` (evaluated strategies with ``score``/``top1_after`` and ``status``),
    ``pending`` (strategies issued to trials still running: never proposed again, not scored),
    ``dataset_info``, ``safety_limits``, ``revision_number`` and optionally ``batch_size``.

    ``dataset_info`` is a :class:`~multi_agent_pruning.data.DatasetInfo` or a dict of its fields,
    plus ``safety_limits``; any other key is an error. ``num_classes``, ``input_size``,
    ``in_chans`` and ``name`` must match the profile (its model's output size, input and dataset),
    else one ConfigurationError names each mismatch; the normalisation and description fields are
    accepted so that a DatasetInfo can be passed as it is, and change nothing. Its
    ``safety_limits`` (the names of the ``safety_limits`` config section, e.g.
    ``{"max_overall_pruning": 0.8}``), with a top-level ``safety_limits`` over them, bound the
    proposal (see :meth:`propose`): a target beyond ``max_overall_pruning`` is capped to it
    (``directives["target_capped"]`` says from what) and every strategy carries the per-kind caps
    and ``min_channels`` of the limits. Without limits the proposal is the same as before, and the
    analysis agent applies the profile's limits.

    ``execute`` output includes ``llm_tokens``: the LLM tokens of this batch by strategy key
    (see :func:`llm_token_shares`), empty when no strategy came from the LLM; the searcher puts
    them in the rows' ``llm_prompt_tokens`` / ``llm_completion_tokens`` (see
    :func:`llm_token_columns`).
    """

    config_keys = frozenset({"max_iterations", "convergence_threshold", "batch_size", "exploration", "seed",
                             "llm_client"})

    def __init__(self, config: Mapping[str, Any] | None = None, *, agent_name: str | None = None) -> None:
        super().__init__(config, agent_name=agent_name)
        self.llm_client = self.config.pop("llm_client", None)
        self.policy = BuiltinPolicy(seed=int(self.config.get("seed", 0)),
                                    exploration=float(self.config.get("exploration", 0.3)))
        self._best_by_iteration: dict[int, float] = {}
        self._said_no_llm = False

    def get_agent_role(self) -> str:
        return "Master of a structural pruning search: proposes strategies and decides when to stop."

    def execute(self, input_data: dict[str, Any]) -> dict[str, Any]:
        """The API reference's form of :meth:`propose`: strategies as dicts with its aliases."""
        profile = _as_profile(input_data["profile_results"])
        proposal = self.propose(
            profile, _base_strategies(input_data), input_data.get("history", []),
            pending=[_as_strategy(item) for item in input_data.get("pending") or []],
            iteration=int(input_data.get("revision_number", 0)), batch_size=input_data.get("batch_size"),
            safety_limits=_given_limits(input_data, profile))
        views = [strategy_view(s) for s in proposal.strategies]
        return self.result(strategy=views[0] if views else None, strategies=views,
                           **{k: v for k, v in vars(proposal).items() if k != "strategies"})

    def propose(self, profile: Any, base: Strategy | Sequence[Strategy], history: Sequence[Mapping[str, Any]], *,
                pending: Sequence[Strategy] = (), iteration: int = 0, batch_size: int | None = None,
                safety_limits: Mapping[str, Any] | None = None) -> Proposal:
        """The next batch of distinct strategies (see the class docstring for the inputs).

        ``base`` is one base strategy (one target), or one per target of a sweep, easiest first:
        the batch then spreads over the targets as :mod:`~multi_agent_pruning.agents.frontier`
        describes, and ``directives["frontier"]`` says per target how many strategies it got,
        its trials so far and its best score.

        ``safety_limits`` (names of the ``safety_limits`` config section), when given, bound the
        batch: over the profile's limits, they cap the target at ``max_overall_pruning`` and give
        every strategy the per-kind caps and ``min_channels`` the analysis agent would install.
        None leaves the target and strategies as proposed (the search: its analysis agent caps).
        """
        bases = [base] if isinstance(base, Strategy) else list(base)
        if not bases:
            raise ConfigurationError("the master needs at least one base strategy (target)")
        with self.profiler.timer("propose"):
            profile = _as_profile(profile)
            batch_size = int(self.config.get("batch_size", 4) if batch_size is None else batch_size)
            observed = history_observations(list(history))
            kinds = profile.kinds
            limits, capped = None, None
            if safety_limits is not None:
                limits = {**DEFAULT_LIMITS, **{k: v for k, v in profile.safety_limits.items() if k in DEFAULT_LIMITS},
                          **check_limits(safety_limits)}
                capped_bases = [_cap_target(b, profile, float(limits["max_overall_pruning"])) for b in bases]
                bases = [b for b, _ in capped_bases]
                capped = next((c for _, c in capped_bases if c), None)
                if capped:
                    self.logger.warning("target %s removes more than max_overall_pruning=%s; proposing %s instead",
                                        capped["requested"], capped["max_overall_pruning"], capped["proposed"])
            frontier = None
            if len(bases) == 1:
                strategies, source, llm_info = self._propose(profile, kinds, bases[0], observed, batch_size, iteration,
                                                             limits, list(pending))
            else:
                strategies, source, llm_info, frontier = self._propose_frontier(
                    profile, kinds, bases, observed, batch_size, iteration, limits, list(pending))
            if limits is not None:
                strategies = [cap_strategy(s, kinds, limits) for s in strategies]
        tokens = llm_info.pop("tokens", {})
        if len(bases) == 1:
            best = max((o.score for o in observed if o.score is not None), default=None)
            cont, reason = self._should_continue(iteration, best, observed)
        else:
            cont, reason = self._should_continue_frontier(iteration, bases, observed)
            best = max((o.score for o in observed if o.score is not None), default=None)
        directives = {
            "source": source,
            "sensitivity_multipliers": sensitivity_multipliers(kinds),
            "least_sensitive_kinds": _order_kinds(kinds)[:2],
            "most_sensitive_kinds": _order_kinds(kinds)[::-1][:2],
            "best_score": best,
        }
        if frontier is not None:
            directives["frontier"] = frontier
        if limits is not None:
            directives.update(safety_limits=limits, target_capped=capped)
        return Proposal(
            strategies=tuple(strategies),
            continue_iterations=cont and bool(strategies),
            stop_reason=None if cont and strategies else (reason or "no new strategy to propose"),
            confidence=_confidence(observed, batch_size),
            directives=directives,
            source=source, llm=llm_info, llm_tokens=tokens, revision_number=iteration)

    def _propose_frontier(self, profile: Profile, kinds, bases: list[Strategy], history: list[Observation],
                          batch_size: int, iteration: int, safety_limits, pending: list[Strategy]):
        """A batch over the targets of a sweep (agents/frontier.py): the built-in allocation says
        how many strategies each target gets; with an LLM, it proposes each target's share (one
        call per target that gets any, with every target's results in its context), and the
        built-in policy fills what it did not."""
        frontier_policy = FrontierPolicy(self.policy)
        dense = {"macs": profile.base_macs, "params": profile.base_params}
        has_attention = any(g.num_heads for g in profile.groups)
        slots = frontier_policy.allocate(bases, history, pending, batch_size, dense)
        planned = list(slots)  # ``slots`` is drawn down as the LLM fills its share
        summary = _frontier_summary(bases, history, pending)
        strategies: list[Strategy] = []
        source, llm_info = "builtin", {"used": False}
        if self.llm_client is not None:
            infos, from_llm = [], 0
            for index, base in enumerate(bases):
                if slots[index] <= 0:
                    continue
                found, info = self._ask_llm(profile, kinds, base, history, slots[index], safety_limits,
                                            pending + strategies, frontier=summary)
                found = found[:slots[index]]
                strategies += found
                slots[index] -= len(found)
                from_llm += len(found)
                infos.append(info)
            source = "llm" if from_llm and not any(slots) else ("builtin (llm fallback)" if not from_llm else "llm+builtin")
            llm_info = _merge_llm_info(infos)
        elif not self._said_no_llm:
            self.logger.info("no LLM configured: the master uses its built-in search policy")
            self._said_no_llm = True
        if any(slots):
            strategies += frontier_policy.propose(kinds, bases, history, [*pending, *strategies], sum(slots),
                                                  dense=dense, has_attention=has_attention, slots=slots)
        for index, base in enumerate(bases):
            summary[index]["proposed"] = sum(same_target(s, base) for s in strategies)
            summary[index]["planned"] = planned[index]
        return strategies[:batch_size], source, llm_info, summary

    def _propose(self, profile: Profile, kinds, base, history, batch_size, iteration, safety_limits,
                 pending: list[Strategy]):
        has_attention = any(g.num_heads for g in profile.groups)
        llm_info: dict[str, Any] = {"used": False}
        strategies: list[Strategy] = []
        source = "builtin"
        if self.llm_client is not None:
            strategies, llm_info = self._ask_llm(profile, kinds, base, history, batch_size, safety_limits, pending)
            source = "llm" if strategies else "builtin (llm fallback)"
        elif not self._said_no_llm:
            self.logger.info("no LLM configured: the master uses its built-in search policy")
            self._said_no_llm = True
        if len(strategies) < batch_size:
            # Pending and just-proposed strategies only count for novelty (no score, not failures:
            # the policy ranks parents and criteria by scored observations alone).
            seen = history + [Observation(s, None) for s in [*pending, *strategies]]
            strategies += self.policy.propose(kinds, base, seen, batch_size - len(strategies), iteration,
                                              has_attention=has_attention)
        return strategies[:batch_size], source, llm_info

    def _ask_llm(self, profile, kinds, base, history, batch_size, safety_limits, pending: list[Strategy],
                 frontier: list[dict[str, Any]] | None = None):
        from multi_agent_pruning.agents.llm import propose_with_llm

        limits = dict(safety_limits or profile.safety_limits or {})
        context = {
            "model_name": profile.model_name, "architecture_type": profile.architecture_type,
            "groups": {k: {"macs_share": round(v["macs_share"], 4), "sensitivity": v["sensitivity"],
                           "groups": v["groups"]} for k, v in kinds.items()},
            "target": {"kind": base.target_kind, "reduction": base.target_reduction, "budget": base.target_budget},
            "safety_limits": limits, "batch_size": batch_size, "base_strategy": base.to_dict(),
            "history": [{"strategy": o.strategy.to_dict(), "result": _llm_result(o)} for o in history],
            "running": [s.to_dict() for s in pending],
        }
        if frontier is not None:
            # A sweep: the strategies are for ``target``; ``frontier`` has every target's results so
            # far, and the history holds the strategies of all targets (each with its target).
            context["frontier"] = frontier
        outcome = propose_with_llm(self.llm_client, context, base=base, known_kinds=set(kinds),
                                   limits=limits, batch_size=batch_size,
                                   exclude_keys={o.strategy.key() for o in history} | {s.key() for s in pending})
        info = {
            "used": True, "outcome": outcome.outcome, "reasoning": outcome.reasoning, "error": outcome.error,
            "rejected": [list(r) if isinstance(r, tuple) else r for r in outcome.rejected],
            "elapsed_s": round(outcome.elapsed_s, 3),
            "calls": [_record_dict(r) for r in outcome.records],
            "tokens": llm_token_shares(outcome.records, outcome.strategies),
        }
        if outcome.outcome == "fallback":
            self.logger.warning("LLM proposal failed (%s); using the built-in policy for this batch", outcome.error)
        return list(outcome.strategies), info

    def _should_continue(self, iteration: int, best: float | None, history) -> tuple[bool, str | None]:
        max_iterations = int(self.config.get("max_iterations", 5))
        threshold = float(self.config.get("convergence_threshold", 0.005))
        if best is not None:
            self._best_by_iteration[iteration] = best
        if iteration >= max_iterations:
            return False, f"reached max_iterations={max_iterations}"
        previous = self._best_by_iteration.get(iteration - 1)
        if threshold > 0 and best is not None and previous is not None and best - previous < threshold:
            return False, f"converged: best accuracy improved by {best - previous:.4f} < {threshold}"
        return True, None


    def _should_continue_frontier(self, iteration: int, bases: list[Strategy],
                                  history: list[Observation]) -> tuple[bool, str | None]:
        """As :meth:`_should_continue`, with the best per target: converged when no target's best
        improved by ``convergence_threshold`` since the previous iteration (a target's first
        result counts as an improvement)."""
        max_iterations = int(self.config.get("max_iterations", 5))
        threshold = float(self.config.get("convergence_threshold", 0.005))
        bests = tuple(max((o.score for o in history if o.score is not None and same_target(o.strategy, b)),
                          default=None) for b in bases)
        if any(b is not None for b in bests):
            self._best_by_iteration[iteration] = bests  # type: ignore[assignment]
        if iteration >= max_iterations:
            return False, f"reached max_iterations={max_iterations}"
        previous = self._best_by_iteration.get(iteration - 1)
        if threshold > 0 and previous is not None and any(b is not None for b in bests):
            gains = [math.inf if p is None and b is not None else (0.0 if b is None else b - p)
                     for b, p in zip(bests, previous)]  # type: ignore[arg-type]
            if max(gains) < threshold:
                return False, (f"converged: no target's best accuracy improved by {threshold} or more "
                               f"(largest gain {max(gains):.4f})")
        return True, None


def _as_strategy(raw: Any) -> Strategy:
    """A Strategy from a Strategy, its dict or its JSON text."""
    if isinstance(raw, str):
        raw = json.loads(raw)
    return raw if isinstance(raw, Strategy) else Strategy.from_dict(raw)


def _as_profile(value: Any) -> Profile:
    return value if isinstance(value, Profile) else Profile.from_dict(
        {k: v for k, v in dict(value).items() if k not in ("prunable_layers", "kinds")})


def _base_strategy(input_data: Mapping[str, Any]) -> Strategy:
    base = input_data.get("base_strategy")
    if isinstance(base, Strategy):
        return base
    if isinstance(base, Mapping):
        return Strategy.from_dict(base)
    return Strategy(target_reduction=float(input_data["target_ratio"]))


def _base_strategies(input_data: Mapping[str, Any]) -> list[Strategy]:
    """``base_strategy`` (one, or a list: one per target), else ``target_ratio`` (a number or a
    list of them: a sweep); several targets are sorted easiest first."""
    base, ratio = input_data.get("base_strategy"), input_data.get("target_ratio")
    if isinstance(base, (list, tuple)):
        bases = [_as_strategy(item) for item in base]
    elif base is None and isinstance(ratio, (list, tuple)):
        bases = [Strategy(target_reduction=float(r)) for r in ratio]
    else:
        return [_base_strategy(input_data)]
    return sorted(bases, key=lambda strategy: strategy_target(strategy).order)


def _frontier_summary(bases: Sequence[Strategy], history: Sequence[Observation],
                      pending: Sequence[Strategy]) -> list[dict[str, Any]]:
    """Per target of a sweep: the target, its trials (scored, failed, running) and its best score."""
    out = []
    for base in bases:
        scores = [o.score for o in history if same_target(o.strategy, base) and o.score is not None]
        out.append({"target": {"kind": base.target_kind, "reduction": base.target_reduction,
                               "budget": base.target_budget},
                    "scored": len(scores), "failed": sum(same_target(o.strategy, base) and o.score is None
                                                         for o in history),
                    "running": sum(same_target(s, base) for s in pending),
                    "best_top1": max(scores, default=None)})
    return out


def _merge_llm_info(infos: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``llm`` entry for the calls of a sweep's batch (one per target)."""
    if not infos:
        return {"used": False}
    tokens: dict[str, Any] = {}
    for info in infos:
        tokens.update(info.get("tokens", {}))
    outcomes = [info.get("outcome") for info in infos]
    return {"used": True, "outcome": outcomes[0] if len(set(outcomes)) == 1 else "mixed",
            "reasoning": "\n\n".join(str(i.get("reasoning") or "") for i in infos).strip(),
            "error": "; ".join(str(i["error"]) for i in infos if i.get("error")) or None,
            "rejected": [r for i in infos for r in i.get("rejected", [])],
            "elapsed_s": round(sum(i.get("elapsed_s", 0.0) for i in infos), 3),
            "calls": [c for i in infos for c in i.get("calls", [])], "tokens": tokens, "targets": len(infos)}


#: What ``dataset_info`` may hold: a DatasetInfo's fields, plus ``safety_limits``.
_DATASET_INFO_KEYS = (*(f.name for f in dataclasses.fields(DatasetInfo)), "safety_limits")


def _given_limits(input_data: Mapping[str, Any], profile: Profile) -> dict[str, Any] | None:
    """The safety limits of ``dataset_info`` with the top-level ``safety_limits`` over them, after
    checking ``dataset_info`` against the profile; None when neither sets limits."""
    info = _dataset_info(input_data.get("dataset_info"))
    _check_dataset_info(info, profile)
    given, top = info.get("safety_limits"), input_data.get("safety_limits")
    if given is None and top is None:
        return None
    return {**check_limits(given or {}, "dataset_info.safety_limits"), **check_limits(top or {}, "safety_limits")}


def _dataset_info(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if dataclasses.is_dataclass(raw) and not isinstance(raw, type):
        raw = dataclasses.asdict(raw)
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"dataset_info must be a DatasetInfo or a dict of its fields, got {type(raw).__name__}")
    unknown = [k for k in raw if k not in _DATASET_INFO_KEYS]
    if unknown:
        raise ConfigurationError("Invalid dataset_info:", [
            ConfigIssue(f"dataset_info.{k}", _unknown_rule(str(k), _DATASET_INFO_KEYS), raw[k]) for k in unknown])
    return dict(raw)


def _unknown_rule(key: str, known: Sequence[str]) -> str:
    close = suggest_names(key, known)
    return "unknown key; " + (f"did you mean {', '.join(close)}? " if close else "") + f"known: {', '.join(known)}"


def _check_dataset_info(info: Mapping[str, Any], profile: Profile) -> None:
    """One ConfigurationError naming every field of ``info`` that contradicts the profile."""
    issues = []
    classes = info.get("num_classes")
    if classes is not None and (isinstance(classes, bool) or not isinstance(classes, int) or classes < 1):
        issues.append(ConfigIssue("dataset_info.num_classes", "must be a positive integer", classes))
    elif classes is not None and profile.num_classes is not None and classes != profile.num_classes:
        issues.append(ConfigIssue("dataset_info.num_classes", f"must match the profiled model {profile.model_name!r}, "
                                  f"which outputs {profile.num_classes} classes", classes))
    size = info.get("input_size")
    if size is not None and tuple(size) != tuple(profile.input_size):
        issues.append(ConfigIssue("dataset_info.input_size", f"must match the profiled input {tuple(profile.input_size)}",
                                  size))
    channels = info.get("in_chans")
    if channels is not None and profile.input_size and channels != profile.input_size[0]:
        issues.append(ConfigIssue("dataset_info.in_chans", f"must match the profiled input's {profile.input_size[0]} "
                                  "channels", channels))
    name = info.get("name")
    if name is not None and profile.dataset and name != profile.dataset:
        issues.append(ConfigIssue("dataset_info.name", f"must be the profiled dataset {profile.dataset!r}", name))
    if issues:
        raise ConfigurationError("dataset_info does not fit the profile:", issues)


def _cap_target(base: Strategy, profile: Profile, max_overall: float) -> tuple[Strategy, dict[str, float] | None]:
    """``base`` with its target capped at ``max_overall`` (fraction removed), and what changed."""
    dense = profile.base_macs if base.target_kind == "macs" else profile.base_params
    requested = base.target_reduction if base.target_reduction is not None else 1 - base.target_budget / dense
    if requested <= max_overall + 1e-9:
        return base, None
    if max_overall <= 0:
        raise ConfigurationError(f"safety_limits.max_overall_pruning={max_overall} allows no pruning, but the target "
                                 f"removes {requested:.1%} of the {base.target_kind}")
    if base.target_reduction is not None:
        capped = base.replace(target_reduction=max_overall)
    else:
        capped = base.replace(target_budget=dense * (1 - max_overall))
    return capped, {"requested": round(float(requested), 6), "proposed": max_overall, "max_overall_pruning": max_overall}


def _order_kinds(kinds: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return sorted(kinds, key=lambda k: (kinds[k]["sensitivity"] is None, kinds[k]["sensitivity"] or 0.0))


def _confidence(history: list[Observation], batch_size: int) -> float:
    """Share of successful trials times how much evidence there is (honest, not calibrated)."""
    if not history:
        return 0.0
    ok = sum(1 for o in history if o.score is not None)
    return round((ok / len(history)) * min(1.0, ok / max(1, 2 * batch_size)), 3)


def _record_dict(record: Any) -> dict[str, Any]:
    data = asdict(record) if hasattr(record, "__dataclass_fields__") else dict(record)
    data.pop("prompt", None)  # large; the reply cache keeps it
    return data
