"""The pruning engine: a :class:`Strategy` in, a pruned model at the exact target out.

``apply_strategy`` builds one torch-pruning pruner, searches the common pruning ratio of the
strategy's scopes by bisection over fast dry runs (see :mod:`.planner`), refines one
fine-grained scope when the common ratio alone steps over the target, prunes once, and checks
the real MACs/params with torch-pruning's counter. The result says how far from the target it
landed; nothing is rounded to the target.

``check_prunable`` prunes a copy of a model once and runs it, so that a model the engine cannot
prune correctly is refused (a :class:`PruningError` naming its layers) before a search spends any
trial on it; ``apply_strategy`` raises nothing but :class:`PruningError` for such a model either
(and :class:`TrialTimeoutError` for its deadline).
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

from multi_agent_pruning.core.graph import classifier_layers, group_key_module, update_attention_modules
from multi_agent_pruning.core.importance import create_importance, needs_gradients, prepare_importance
from multi_agent_pruning.core.planner import CachedImportance, Scope, SelectionPlanner, build_scopes, plan
from multi_agent_pruning.core.strategy import Strategy
from multi_agent_pruning.exceptions import MultiAgentPruningError, PruningError, suggest_names

if TYPE_CHECKING:
    from multi_agent_pruning.core.evaluation import Deadline

logger = logging.getLogger(__name__)

__all__ = ["PruneResult", "apply_strategy", "build_scopes", "check_prunable", "count_macs_params"]

_BISECTION_STEPS = 24
#: What ``check_prunable`` prunes by default: every group on its own at half its channels, and half
#: the heads of every attention layer (the same code paths as any strategy's prune).
PROBE_STRATEGY = Strategy(importance="l2", global_pruning=False, isomorphic=False, prune_num_heads=True,
                          head_pruning_ratio=0.5, target_reduction=0.5)
#: Largest relative difference between the planner's MACs of ``check_prunable``'s probe and the count.
_PREDICTION_TOLERANCE = 0.01
#: Errors of resources, not of the model: never turned into a PruningError.
_RESOURCE_ERRORS = (MemoryError, torch.cuda.OutOfMemoryError)


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
        PruningError: The model cannot be traced or pruned (the message names the layers that
            fail), the strategy names layers or kinds the model lacks, or the target is out of
            reach under ``max_layer_pruning``.
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
        model.zero_grad(set_to_none=True)
    with _stage(timings, "count"):
        macs, params = _count_pruned(model, example_inputs, planner)
    return PruneResult(model=model, base_macs=planner.base_macs, base_params=planner.base_params, macs=macs,
                       params=params, target=target, target_kind=strategy.target_kind, ratios=ratios,
                       predicted=predicted, seconds=sum(timings.values()), timings=timings)


@contextmanager
def _stage(timings: dict[str, float], name: str) -> Iterator[None]:
    """Times one stage; an error that is not the package's own becomes a PruningError naming it."""
    clock = time.perf_counter()
    try:
        yield
    except (MultiAgentPruningError, *_RESOURCE_ERRORS):
        raise
    except Exception as err:
        raise PruningError(f"the {name} stage of pruning failed: {type(err).__name__}: {err}") from err
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
        except _RESOURCE_ERRORS:
            raise
        except Exception as err:
            raise PruningError(f"pruning step {step + 1} of {type(model).__name__} failed: {err}") from err
        # Between steps the model runs again (gradient importance): timm's attention must follow now.
        update_attention_modules(model, planner.pruner.num_heads, planner.cap.removed_heads)


def _count_pruned(model: nn.Module, example_inputs: torch.Tensor, planner: SelectionPlanner) -> tuple[float, int]:
    """MACs and params of the pruned model; a model that no longer runs is a PruningError naming
    the layer that fails and the groups pruned through it."""
    try:
        return count_macs_params(model, example_inputs)
    except _RESOURCE_ERRORS:
        raise
    except Exception as err:
        raise _forward_error(model, example_inputs, planner) or PruningError(
            f"the pruned {type(model).__name__} cannot be counted: {type(err).__name__}: {err}") from err


def check_prunable(model: nn.Module, example_inputs: torch.Tensor, strategy: Strategy = PROBE_STRATEGY) -> None:
    """Prunes a copy of ``model`` once with ``strategy``'s options and runs it; raises if that fails.

    By default every group loses half its channels (and every attention layer half its heads),
    each ranked on its own, so every layer the engine prunes is pruned and then run: a layer whose
    pruned shapes disagree, or that torch-pruning cannot prune, shows up here, before any trial.
    The target is not searched (the ratio is ``strategy.target_reduction`` for every group).

    Args:
        model: Dense model (not modified).
        example_inputs: A batch the model runs on.
        strategy: Pruning options of the probe (importance without gradients: no calibration).

    Raises:
        PruningError: Naming the layers that fail and why: the pruned copy does not run, changes
            its output shape, or cannot be traced or pruned.
    """
    work = copy.deepcopy(model).eval()
    timings: dict[str, float] = {}
    with _stage(timings, "dense forward"), torch.no_grad():
        example_inputs = example_inputs.to(next(work.parameters()).device)
        dense_shapes = _shapes(work(example_inputs))
    with _stage(timings, "probe prune"):
        cached = CachedImportance(create_importance(strategy.importance))
        planner = plan(work, strategy, example_inputs, cached, _ignored_layers(work, strategy))
        ratio = strategy.target_reduction or 0.5
        ratios = {scope.name: min(ratio, scope.cap if scope.cap is not None else strategy.max_layer_pruning)
                  for scope in planner.scopes}
        predicted = planner.predict_layers(ratios, strategy.head_pruning_ratio)
        planner.set_ratios(ratios, strategy.head_pruning_ratio, 1)
        planner.prune()
        update_attention_modules(work, planner.pruner.num_heads, planner.cap.removed_heads)
    failure = _forward_error(work, example_inputs, planner)
    if failure is not None:
        raise failure
    with torch.no_grad():
        shapes = _shapes(work(example_inputs))
    if shapes != dense_shapes:
        raise PruningError(f"pruning changes the output of {type(model).__name__} from {dense_shapes} to {shapes}: "
                           f"the classifier layers {_names_of(work, classifier_layers(work))} must keep their "
                           "outputs (pass the output layers as ignored_layers)")
    _count_pruned(work, example_inputs, planner)
    _check_prediction(work, example_inputs, predicted)


def _check_prediction(model: nn.Module, example_inputs: torch.Tensor, predicted: dict[nn.Module, float]) -> None:
    """The planner's MACs of the probe must match the count: the engine aims at targets with them."""
    _, _, counted, _ = tp.utils.count_ops_and_params(model, example_inputs, layer_wise=True)
    real = {m: float(counted.get(m) or 0.0) for m in predicted}
    total_predicted, total_real = sum(predicted.values()), sum(real.values())
    if abs(total_predicted - total_real) <= _PREDICTION_TOLERANCE * total_real:
        return
    worst = sorted(predicted, key=lambda m: -abs(predicted[m] - real[m]))[:4]
    layers = ", ".join(f"{name} (predicted {predicted[m]:.4g}, counted {real[m]:.4g})"
                       for name, m in zip(_names_of(model, worst), worst) if predicted[m] != real[m])
    raise PruningError(f"the engine cannot predict the MACs of the pruned {type(model).__name__}: predicted "
                       f"{total_predicted:.4g}, counted {total_real:.4g}; most off: {layers}. It would miss MACs "
                       "targets, so it refuses the model")


def _shapes(output) -> list[tuple[int, ...]]:
    """Shapes of a model's output tensor(s)."""
    if isinstance(output, torch.Tensor):
        return [tuple(output.shape)]
    if isinstance(output, (tuple, list)):
        return [shape for item in output for shape in _shapes(item)]
    if isinstance(output, dict):
        return [shape for key in sorted(output) for shape in _shapes(output[key])]
    return []


def _names_of(model: nn.Module, modules: Iterable[nn.Module]) -> list[str]:
    names = {m: n for n, m in model.named_modules()}
    return [names.get(m, type(m).__name__) for m in modules]


def _forward_error(model: nn.Module, example_inputs: torch.Tensor, planner: SelectionPlanner) -> PruningError | None:
    """Runs the pruned ``model`` once; if it fails, the error names the innermost layer running
    when it failed (where the shapes disagree) and the groups that pruned it or what it holds."""
    names = {m: n for n, m in model.named_modules()}
    running: list[nn.Module] = []

    def enter(module, _inputs):
        running.append(module)

    def leave(module, _inputs, _output):
        running.pop()

    handles = [h for m in model.modules() for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(example_inputs)
        return None
    except _RESOURCE_ERRORS:
        raise
    except Exception as err:
        layer = running[-1] if running else model
        name = names.get(layer, "")
        # The layer, what it holds, and what holds it (a layer pruned as one unit, e.g. PatchMerging).
        related = {id(m) for m in layer.modules()} | {id(m) for m, n in names.items()
                                                      if m is not model and name.startswith(n + ".")}
        keys = [names.get(group_key_module(planner.pruner.DG, group)) for group in planner.all_groups
                if any(id(dep.target.module) in related for dep, _ in group)]
        keys = list(dict.fromkeys(k for k in keys if k))
        where = f"layer {name or type(model).__name__!r} ({type(layer).__name__})"
        pruned = (f"; it is pruned with the groups of {', '.join(keys[:6])}{' ...' if len(keys) > 6 else ''}"
                  if keys else "")
        return PruningError(f"the pruned {type(model).__name__} does not run: {where} fails with "
                            f"{type(err).__name__}: {err}{pruned}. The engine cannot prune this layer correctly "
                            "(see docs/architectures.md)")
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
