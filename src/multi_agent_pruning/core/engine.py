"""The pruning engine: a :class:`Strategy` in, a pruned model at the exact target out.

``apply_strategy`` builds one torch-pruning pruner, searches the common pruning ratio of the
strategy's scopes by bisection over fast dry runs (see :mod:`.planner`), refines one
fine-grained scope when the common ratio alone steps over the target, prunes once, and checks
the real MACs/params with torch-pruning's counter. The result says how far from the target it
landed; nothing is rounded to the target.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch_pruning as tp

from multi_agent_pruning.core.graph import classifier_layers, update_attention_modules
from multi_agent_pruning.core.importance import create_importance, needs_gradients, prepare_importance
from multi_agent_pruning.core.planner import CachedImportance, Scope, SelectionPlanner, build_scopes, plan
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import PruningError, suggest_names

if TYPE_CHECKING:
    from multi_agent_pruning.core.evaluation import Deadline

logger = logging.getLogger(__name__)

__all__ = ["PruneResult", "apply_strategy", "build_scopes", "count_macs_params"]

_BISECTION_STEPS = 24


@dataclass
class PruneResult:
    """A pruned model and how it compares with its dense base and its target.

    Attributes:
        model: The pruned model (forward works as before; the classifier keeps its classes).
        base_macs / base_params: Dense model counts (torch-pruning's op counter).
        macs / params: Counts measured on the pruned model.
        target: Absolute target in ``target_kind`` units (MACs or params to keep).
        target_kind: ``"macs"`` or ``"params"``.
        ratios: Pruning ratio applied to each ranking scope.
        predicted: The planner's prediction for the chosen ratios (same units as ``target``).
        seconds: Wall time of the whole call; ``timings`` splits it by stage.
    """

    model: nn.Module
    base_macs: float
    base_params: int
    macs: float
    params: int
    target: float
    target_kind: str
    ratios: dict[str, float]
    predicted: float
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    attempts: int = 1

    @property
    def achieved(self) -> float:
        return self.macs if self.target_kind == "macs" else float(self.params)

    @property
    def error(self) -> float:
        """Relative distance to the target: ``(achieved - target) / target``."""
        return (self.achieved - self.target) / self.target

    @property
    def macs_reduction(self) -> float:
        return 1.0 - self.macs / self.base_macs

    @property
    def params_reduction(self) -> float:
        return 1.0 - self.params / self.base_params

    def summary(self) -> dict:
        """JSON-friendly numbers (everything but the model)."""
        return {
            "base_macs": self.base_macs, "base_params": self.base_params, "macs": self.macs,
            "params": self.params, "target": self.target, "target_kind": self.target_kind,
            "error": self.error, "macs_reduction": self.macs_reduction,
            "params_reduction": self.params_reduction, "ratios": dict(self.ratios),
            "predicted": self.predicted, "seconds": self.seconds, "timings": dict(self.timings),
            "attempts": self.attempts,
        }


def count_macs_params(model: nn.Module, example_inputs: torch.Tensor) -> tuple[float, int]:
    """MACs and params with torch-pruning's op counter (the papers' convention)."""
    macs, params = tp.utils.count_ops_and_params(model, example_inputs)
    return float(macs), int(params)


def apply_strategy(model: nn.Module, strategy: Strategy, example_inputs: torch.Tensor,
                   calibration: Iterable[tuple[torch.Tensor, torch.Tensor]] | None = None, *, inplace: bool = False,
                   tolerance: float = 0.005, max_calibration_batches: int = 4, max_attempts: int = 3,
                   deadline: Deadline | None = None) -> PruneResult:
    """Prunes ``model`` with ``strategy`` to its MACs/params target.

    Args:
        model: Dense model (left untouched unless ``inplace``).
        strategy: What to prune and to which target.
        example_inputs: A batch used to trace the graph and count MACs (batch size 1 is usual).
        calibration: ``(inputs, labels)`` batches; required by ``taylor`` and ``hessian``.
        inplace: Prune ``model`` itself instead of a copy (no retry is then possible).
        tolerance: Accepted relative distance to the target.
        max_calibration_batches: Batches used for gradient-based importance.
        max_attempts: Prunes tried when the real count misses the prediction by more than
            ``tolerance`` (each retry re-aims with the measured prediction error).
        deadline: Checked before every attempt, dry run and pruning step (None: no limit).

    Returns:
        A :class:`PruneResult`; ``abs(result.error) <= tolerance`` unless the model's channel
        granularity makes the target unreachable, in which case the closest result is returned
        and a warning logged.

    Raises:
        PruningError: The model cannot be traced or pruned, the strategy names layers or kinds
            the model lacks, or the target is out of reach under ``max_layer_pruning``.
        TrialTimeoutError: ``deadline`` passed.
    """
    start = time.perf_counter()
    calibration = list(calibration) if calibration is not None else None
    aim_factor, result = 1.0, None
    check = deadline.check if deadline is not None else (lambda: None)
    for attempt in range(1, max_attempts + 1):
        check()
        work = model if inplace else copy.deepcopy(model)
        current = _prune_once(work, strategy, example_inputs, calibration, tolerance,
                              max_calibration_batches, aim_factor, check)
        current.attempts = attempt
        result = current if result is None or _better(current, result, tolerance) else result
        if abs(current.error) <= tolerance or inplace:
            break
        # The planner's prediction and the real count disagree (parameter-free ops, rounding):
        # aim the prediction so that the real count lands on the target.
        aim_factor *= current.target / current.achieved
        logger.info("attempt %d missed the target by %.2f%%; re-aiming", attempt, 100 * current.error)
    result.seconds = time.perf_counter() - start
    if abs(result.error) > tolerance:
        logger.warning("closest pruned model is %.2f%% from the target", 100 * result.error)
    return result


def _better(a: PruneResult, b: PruneResult, tolerance: float) -> bool:
    """Within tolerance beats outside; outside, under the budget beats over it; then closer wins."""
    def rank(r: PruneResult) -> tuple[int, float]:
        return (0 if abs(r.error) <= tolerance else 1 if r.error < 0 else 2, abs(r.error))

    return rank(a) < rank(b)


def _prune_once(model, strategy, example_inputs, calibration, tolerance, max_batches, aim_factor,
                check) -> PruneResult:
    timings: dict[str, float] = {}
    with _stage(timings, "importance_gradients"):
        device = next(model.parameters()).device
        example_inputs = example_inputs.to(device)
        ignored = _ignored_layers(model, strategy)
        cached = CachedImportance(create_importance(strategy.importance))
        prepare_importance(strategy.importance, cached.importance, model, calibration, max_batches, device)
    check()
    with _stage(timings, "graph"):
        planner = plan(model, strategy, example_inputs, cached, ignored)
    check()
    with _stage(timings, "search"):
        target = _target(planner, strategy)
        ratios, predicted = _search_ratios(planner, strategy, target * aim_factor, tolerance, check)
    logger.debug("ratio search: %d dry runs in %.2fs", planner.dry_runs, timings["search"])
    with _stage(timings, "prune"):
        _prune_for_real(planner, strategy, ratios, cached, model, calibration, max_batches, device, check)
        update_attention_modules(model, planner.pruner.num_heads)
        model.zero_grad(set_to_none=True)
    with _stage(timings, "count"):
        macs, params = count_macs_params(model, example_inputs)
    return PruneResult(model=model, base_macs=planner.base_macs, base_params=planner.base_params, macs=macs,
                       params=params, target=target, target_kind=strategy.target_kind, ratios=ratios,
                       predicted=predicted, seconds=sum(timings.values()), timings=timings)


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    clock = time.perf_counter()
    yield
    timings[name] = time.perf_counter() - clock


def _target(planner: SelectionPlanner, strategy: Strategy) -> float:
    base = planner.base_macs if strategy.target_kind == "macs" else float(planner.base_params)
    target = strategy.target_macs_or_params(base)
    if not 0 < target < base:
        raise PruningError(f"target of {target:.4g} {strategy.target_kind} is not below the dense model's {base:.4g}")
    return target


def _ignored_layers(model: nn.Module, strategy: Strategy) -> list[nn.Module]:
    modules = dict(model.named_modules())
    ignored = classifier_layers(model)
    for name in strategy.ignored_layers:
        if name not in modules:
            hint = suggest_names(name, [n for n in modules if n])
            raise PruningError(f"ignored layer {name!r} is not in the model" + (f"; did you mean {hint}?" if hint else ""))
        ignored.append(modules[name])
    return ignored


def _ratios_at(scopes: list[Scope], scale: float, cap: float) -> dict[str, float]:
    return {s.name: min(s.cap if s.cap is not None else cap, max(0.0, scale * s.multiplier)) for s in scopes}


class _Candidates:
    """Every dry run so far, as ``(distance to the aim, ratios, value)``; the first closest wins."""

    def __init__(self, aim: float, tolerance: float) -> None:
        self.aim, self.tolerance, self.runs = aim, tolerance, []

    def add(self, ratios: dict[str, float], value: float) -> None:
        self.runs.append((abs(value - self.aim), ratios, value))

    @property
    def distance(self) -> float:
        return min((run[0] for run in self.runs), default=float("inf"))

    def choice(self) -> tuple[dict[str, float], float]:
        """Within tolerance: the closest; otherwise rather under the budget than over it."""
        pick = min(self.runs, key=lambda run: run[0])
        under = [run for run in self.runs if run[2] <= self.aim]
        if pick[0] > self.aim * self.tolerance and under:
            pick = min(under, key=lambda run: run[0])
        return pick[1], pick[2]


def _search_ratios(planner: SelectionPlanner, strategy: Strategy, aim: float, tolerance: float,
                   check: Callable[[], None]) -> tuple[dict[str, float], float]:
    """Bisection of the common ratio, then of one fine-grained scope if needed."""
    index = 0 if strategy.target_kind == "macs" else 1
    cap = strategy.max_layer_pruning
    head = strategy.head_pruning_ratio

    def measure(ratios: dict[str, float]) -> float:
        check()  # one dry run per bisection step: the limit is checked as often
        return planner.dry_run(ratios, head)[index]

    scopes = planner.scopes
    max_mult = max((s.multiplier for s in scopes), default=0.0)
    if max_mult <= 0:
        raise PruningError("every group multiplier is 0: nothing can be pruned")
    hi_scale = max((s.cap if s.cap is not None else cap) / s.multiplier for s in scopes if s.multiplier > 0)
    hi_value = measure(_ratios_at(scopes, hi_scale, cap))
    if hi_value > aim * (1 + tolerance):
        raise PruningError(
            f"target {aim:.4g} {strategy.target_kind} is out of reach: pruning every layer up to "
            f"max_layer_pruning={cap} still leaves {hi_value:.4g}")
    candidates = _Candidates(aim, tolerance)
    candidates.add(_ratios_at(scopes, hi_scale, cap), hi_value)
    lo, hi = 0.0, hi_scale  # measure(lo) > aim >= measure(hi)
    lo_value = float("inf")
    for _ in range(_BISECTION_STEPS):
        mid = (lo + hi) / 2
        ratios = _ratios_at(scopes, mid, cap)
        value = measure(ratios)
        candidates.add(ratios, value)
        if abs(value - aim) <= aim * tolerance / 4:
            break
        if value > aim:
            lo, lo_value = mid, value
        else:
            hi = mid
    if candidates.distance > aim * tolerance / 2 and lo_value != float("inf"):
        _refine_one_scope(measure, scopes, _ratios_at(scopes, lo, cap), aim, cap, candidates)
    return candidates.choice()


def _refine_one_scope(measure, scopes, base_ratios, aim, cap, candidates: _Candidates) -> None:
    """Prunes a little further in one scope at a time, finest (most channels) first."""
    for scope in sorted(scopes, key=lambda s: -s.channels):
        lo, hi = base_ratios[scope.name], scope.cap if scope.cap is not None else cap
        ratios = dict(base_ratios, **{scope.name: hi})
        if measure(ratios) > aim:
            continue  # this scope alone cannot close the gap
        for _ in range(_BISECTION_STEPS):
            mid = (lo + hi) / 2
            ratios = dict(base_ratios, **{scope.name: mid})
            value = measure(ratios)
            candidates.add(ratios, value)
            if value > aim:
                lo = mid
            else:
                hi = mid
            if hi - lo < 1e-5:
                break
        if candidates.distance <= aim * 0.001:
            break


def _prune_for_real(planner, strategy, ratios, cached, model, calibration, max_batches, device, check) -> None:
    steps = strategy.iterative_steps
    planner.set_ratios(ratios, strategy.head_pruning_ratio, steps)
    for step in range(steps):
        check()
        if step > 0:  # weights changed: importance must be estimated again
            cached.clear()
            if needs_gradients(strategy.importance):
                prepare_importance(strategy.importance, cached.importance, model, calibration, max_batches, device)
        try:
            planner.prune()
        except Exception as err:
            raise PruningError(f"pruning step {step + 1} of {type(model).__name__} failed: {err}") from err
