"""The private APIs of torch-pruning and Ray this package relies on, in one place, with the
versions they were written for and a check that fails loudly when an upgrade changes them.

torch-pruning: every use of its internals is a function below, registered in ``TORCH_PRUNING_USES``
with the version it was written for and the names it relies on (``module:attribute.path``, the
keyword parameters used in brackets, or ``pruner.attribute`` of a ``BasePruner``); the planner
(``core/planner.py``, ``core/prediction.py``) calls only these. Ray: ``orchestrator/tune_run.py``
(``use_prestarted_workers``) drops ``PL_DISABLE_FORK`` from
``ray.tune.execution.class_cache.DEFAULT_ENV_VARS`` so trial actors start in Ray's prestarted
workers; ``orchestrator/ray_runtime.py`` re-reads Ray's auth config through
``ray._raylet.Config.initialize`` and ``AuthenticationTokenLoader.instance().reset_cache()``.

:func:`check_torch_pruning` runs when a planner is built; :func:`check_ray` when the local
cluster starts. Each raises :class:`~multi_agent_pruning.exceptions.CompatibilityError` naming
every missing attribute (and what relies on it) and the installed version, instead of an
``AttributeError`` deep inside a trial; a version other than those tested is logged once (it may
still work: the attribute check is what decides). ``tests/test_compat.py`` removes each name in
turn and expects that error.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch_pruning as tp

from multi_agent_pruning.exceptions import CompatibilityError

__all__ = ["RAY_OPTIONAL", "RAY_PRIVATE", "TESTED_VERSIONS", "TORCH_PRUNING_PRIVATE", "TORCH_PRUNING_PRUNER_STATE",
           "TORCH_PRUNING_USES", "DrySelection", "capped_step", "channel_groups", "check_ray", "check_torch_pruning",
           "counted_modules", "dry_step", "install_scopes", "missing_attributes", "schedule_ratios", "set_num_heads"]

logger = logging.getLogger(__name__)

#: The versions the patches were written for and tested with.
TESTED_VERSIONS = {"torch_pruning": ("1.6.0", "1.6.1"), "ray": ("2.60.0",)}

_PRUNER, _DG = "torch_pruning.pruner:BasePruner.", "torch_pruning.dependency:DependencyGraph."
_GET_ALL = f"{_DG}get_all_groups(ignored_layers, root_module_types)"
#: What uses torch-pruning's internals -> (the version it was written for, the names it relies on).
TORCH_PRUNING_USES: dict[str, tuple[str, tuple[str, ...]]] = {
    "core reads (planner, prediction, engine)": ("1.6.1", (
        f"{_DG}is_out_channel_pruning_fn", f"{_DG}get_out_channels", f"{_DG}get_in_channels", _GET_ALL, "pruner.DG",
        "pruner.importance", "pruner.max_pruning_ratio", "pruner.ignored_layers", "pruner.root_module_types",
        "pruner.num_heads")),
}

#: Required: the per-run token of the local cluster depends on them (docs/reliability.md, B3).
RAY_PRIVATE = ("ray._raylet:Config.initialize", "ray._raylet:AuthenticationTokenLoader.instance")
#: Optional: without it trial actors start fresh processes (about 1-2 s each), nothing breaks.
RAY_OPTIONAL = ("ray.tune.execution.class_cache:DEFAULT_ENV_VARS",)

_warned: set[str] = set()


def missing_attributes(names: Iterable[str]) -> list[str]:
    """The ``module:attribute.path(keyword, ...)`` entries of ``names`` that do not resolve."""
    missing = []
    for entry in names:
        module_name, _, path = entry.partition(":")
        path, _, keywords = path.rstrip(")").partition("(")
        try:
            target = importlib.import_module(module_name)
            for part in path.split(".") if path else ():
                target = getattr(target, part)
            if keywords and not set(keywords.split(", ")) <= set(inspect.signature(target).parameters):
                missing.append(entry)
        except (ImportError, AttributeError):
            missing.append(entry)
    return missing


def _check(package: str, names: Iterable[str], used_by: str, users: Callable[[str], str] = str) -> str:
    version = getattr(importlib.import_module(package), "__version__", "unknown")
    missing = missing_attributes(names)
    if missing:
        raise CompatibilityError(
            f"{package} {version} lacks what {used_by} relies on: {', '.join(map(users, missing))} (written for "
            f"{package} {' / '.join(TESTED_VERSIONS[package])}; see multi_agent_pruning/compat.py). "
            f"Install a tested version or update the code that uses them.")
    if version not in TESTED_VERSIONS[package] and package not in _warned:
        _warned.add(package)
        logger.warning("%s %s is not a version this package was tested with (%s); its private APIs are "
                       "present, so it should work", package, version, ", ".join(TESTED_VERSIONS[package]))
    return version


def _users(name: str) -> str:
    users = [user for user, (_, names) in TORCH_PRUNING_USES.items() if name in names]
    return f"{name.removeprefix('pruner.')} (relied on by {', '.join(users)})" if users else name.removeprefix("pruner.")


def check_torch_pruning(pruner: object | None = None) -> str:
    """Checks torch-pruning's private APIs (and, given one, a pruner's state); returns its version.

    Raises:
        CompatibilityError: Something the planner uses is missing.
    """
    version = _check("torch_pruning", TORCH_PRUNING_PRIVATE, "the exact-target planner (core/planner.py)", _users)
    absent = [_users(f"pruner.{name}") for name in TORCH_PRUNING_PRUNER_STATE
              if pruner is not None and not hasattr(pruner, name)]
    if absent:
        raise CompatibilityError(f"torch_pruning {version}: the pruner has no {', '.join(absent)}, which the "
                                 "exact-target planner (core/planner.py) reads and writes")
    return version


def check_ray() -> str:
    """Checks the Ray internals used at start-up; returns Ray's version.

    Raises:
        CompatibilityError: One of them is missing.
    """
    version = _check("ray", RAY_PRIVATE, "the local cluster's token authentication (orchestrator/ray_runtime.py)")
    for entry in missing_attributes(RAY_OPTIONAL):
        if entry not in _warned:
            _warned.add(entry)
            logger.warning("ray %s has no %s: trial actors cannot use Ray's prestarted workers and start new "
                           "processes (about 1-2 s each; orchestrator/tune_run.py use_prestarted_workers)", version, entry)
    return version


def _relies_on(written_for: str, *names: str) -> Callable:
    """Registers the decorated use of torch-pruning's internals in ``TORCH_PRUNING_USES``."""
    def register(function: Callable) -> Callable:
        TORCH_PRUNING_USES[function.__name__] = (written_for, names)
        return function
    return register


@_relies_on("1.6.1", "torch_pruning.utils.op_counter:is_supported_instance")
def counted_modules(model) -> list:
    """Modules torch-pruning's op counter counts, in registration order (not their children)."""
    if tp.utils.op_counter.is_supported_instance(model):
        return [model]
    return [counted for child in model.children() for counted in counted_modules(child)]


@_relies_on("1.6.1", "pruner._layer_to_scope", "pruner.pruning_ratio_dict", "pruner.global_pruning",
            "pruner.pruning_ratio", "pruner.per_step_pruning_ratio", "pruner.iterative_steps")
def install_scopes(pruner, scopes: Iterable[tuple[str, tuple]]) -> None:
    """Makes each ``(name, key modules)`` a user-defined ranking scope of ``pruner``, at ratio 0.

    ``_prune`` ranks the key modules mapped to one scope name in ``_layer_to_scope`` together, at
    their ratio in ``pruning_ratio_dict``; in local pruning each layer is a scope of its own.
    """
    pruner._layer_to_scope.clear()
    pruner.pruning_ratio_dict.clear()
    for name, keys in scopes:
        for i, key in enumerate(keys):
            pruner._layer_to_scope[key] = (name if pruner.global_pruning else f"{name}_{i}", keys)
            pruner.pruning_ratio_dict[key] = [0.0, 0.0]
    pruner.pruning_ratio = 0.0  # groups outside every scope (none, normally) keep their channels
    pruner.per_step_pruning_ratio = [0.0] * (pruner.iterative_steps + 1)


@_relies_on("1.6.1", "pruner.current_step", "pruner.iterative_steps", "pruner._scope_initial_channels",
            "pruner.num_heads", "pruner.out_channel_groups", "pruner.per_step_pruning_ratio",
            "pruner.per_step_head_pruning_ratio", "pruner.iterative_pruning_ratio_scheduler", "pruner.pruning_ratio_dict")
def schedule_ratios(pruner, ratios: Iterable[tuple[tuple, float]], head_ratio: float, steps: int,
                    heads: tuple[dict, dict]) -> None:
    """Resets ``pruner`` to step 0 with ``heads`` (its initial ``num_heads``, ``out_channel_groups``)
    and schedules each ``(key modules, ratio)`` of ``ratios`` and ``head_ratio`` over ``steps`` steps."""
    pruner.current_step, pruner.iterative_steps, pruner._scope_initial_channels = 0, steps, {}
    for state, initial in zip((pruner.num_heads, pruner.out_channel_groups), heads):
        state.clear()
        state.update(initial)
    pruner.per_step_pruning_ratio = [0.0] * (steps + 1)
    pruner.per_step_head_pruning_ratio = pruner.iterative_pruning_ratio_scheduler(head_ratio, steps)
    for keys, ratio in ratios:
        schedule = pruner.iterative_pruning_ratio_scheduler(ratio, steps)
        for key in keys:
            pruner.pruning_ratio_dict[key] = schedule


@_relies_on("1.6.1", "pruner.num_heads", "pruner.out_channel_groups")
def set_num_heads(pruner, qkv, heads: int) -> None:
    """Sets the heads ``qkv`` keeps, as ``_prune`` does when it removes heads."""
    pruner.num_heads[qkv] = heads
    if qkv in pruner.out_channel_groups:
        pruner.out_channel_groups[qkv] = heads


@_relies_on("1.6.1", f"{_PRUNER}_get_channel_groups", "pruner.in_channel_groups", "pruner.out_channel_groups")
def channel_groups(pruner, group) -> int:
    """The channel groups ``_prune`` gives ``group`` (grouped convolutions, GroupNorm, heads): it
    selects the same offsets in each of them."""
    return int(pruner._get_channel_groups(group))


class DrySelection(list):
    """What a dry step yields in place of a pruning group (empty): the root and the chosen indices."""

    def __init__(self, module, fn, idxs: list[int]) -> None:
        super().__init__()
        self.module, self.fn, self.idxs = module, fn, idxs


@contextmanager
def _replaced(*hooks: tuple[object, str, object]) -> Iterator[None]:
    """Sets each ``(instance, attribute, value)`` for the block, over the class's method."""
    for target, name, value in hooks:
        setattr(target, name, value)
    try:
        yield
    finally:
        for target, name, _ in hooks:
            delattr(target, name)


def _unhooked(DG, real_get_group: Callable, call: Callable, *args):
    """``call(*args)`` with the real ``DG.get_pruning_group``, hooked again afterwards."""
    hooked, DG.get_pruning_group = DG.get_pruning_group, real_get_group
    try:
        return call(*args)
    finally:
        DG.get_pruning_group = hooked


_SELECTION = (_GET_ALL, f"{_DG}get_pruning_group", f"{_PRUNER}_downstream_node_as_root_if_attention",
              f"{_PRUNER}step(interactive)", "pruner.DG")


@_relies_on("1.6.1", *_SELECTION, f"{_DG}check_pruning_group")
def dry_step(pruner, cap: Callable, groups: list, rerooted: dict[int, object]) -> list[DrySelection]:
    """The selections of one ``pruner.step``, each limited by ``cap(module, fn, idxs)``; prunes nothing.

    ``_prune`` enumerates groups with ``DG.get_all_groups`` (``groups`` here) and re-roots attention
    groups with ``_downstream_node_as_root_if_attention`` (once, into ``rerooted`` by group id),
    then builds each selection with ``DG.get_pruning_group`` (a :class:`DrySelection` here) and
    yields it if ``DG.check_pruning_group`` passes (always here).
    """
    DG = pruner.DG
    real_get_group, real_reroot = DG.get_pruning_group, pruner._downstream_node_as_root_if_attention

    def reroot(group):
        if id(group) not in rerooted:
            rerooted[id(group)] = _unhooked(DG, real_get_group, real_reroot, group)
        return rerooted[id(group)]

    with _replaced((DG, "get_all_groups", lambda *args, **kwargs: iter(groups)),
                   (DG, "get_pruning_group", lambda module, fn, idxs: DrySelection(module, fn, cap(module, fn, idxs))),
                   (DG, "check_pruning_group", lambda group: True),
                   (pruner, "_downstream_node_as_root_if_attention", reroot)):
        return list(pruner.step(interactive=True))


@_relies_on("1.6.1", *_SELECTION)
def capped_step(pruner, cap: Callable, prune: Callable = lambda group: group.prune()) -> None:
    """One ``pruner.step`` in which each group prunes ``cap(module, fn, idxs)`` of its selected channels.

    Only the selections are capped: ``_prune`` also calls ``DG.get_pruning_group`` to enumerate the
    groups (every channel) and to re-root attention groups, and those calls reach the real one.
    Each selected group is handed to ``prune`` (``step()`` itself calls ``group.prune()``).
    """
    DG = pruner.DG
    real_get_group, real_get_all = DG.get_pruning_group, DG.get_all_groups
    real_reroot = pruner._downstream_node_as_root_if_attention

    def get_all_groups(*args, **kwargs):
        groups = real_get_all(*args, **kwargs)
        while (group := _unhooked(DG, real_get_group, next, groups, None)) is not None:
            yield group

    with _replaced((DG, "get_pruning_group", lambda module, fn, idxs: real_get_group(module, fn, cap(module, fn, idxs))),
                   (DG, "get_all_groups", get_all_groups),
                   (pruner, "_downstream_node_as_root_if_attention",
                    lambda group: _unhooked(DG, real_get_group, real_reroot, group))):
        for group in pruner.step(interactive=True):
            prune(group)


def _names(pruner_state: bool) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name.removeprefix("pruner.") for _, names in TORCH_PRUNING_USES.values()
                               for name in names if name.startswith("pruner.") == pruner_state))


#: ``module:attribute.path`` of every private (or internal) name used, and the ``BasePruner``
#: instance attributes read and written (set in its ``__init__``).
TORCH_PRUNING_PRIVATE, TORCH_PRUNING_PRUNER_STATE = _names(False), _names(True)
