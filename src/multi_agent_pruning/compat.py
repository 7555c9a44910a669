"""The private APIs of torch-pruning and Ray this package relies on, in one place, with the
versions they were written for and a check that fails loudly when an upgrade changes them.

Where they are used:

- ``core/planner.py`` (the exact-target planner) replaces, for the length of one dry run or
  prune, the instance attributes ``DependencyGraph.get_all_groups`` / ``get_pruning_group`` /
  ``check_pruning_group`` and ``BasePruner._downstream_node_as_root_if_attention``, calls
  ``BasePruner._prune()`` and reads and writes ``num_heads``, ``out_channel_groups`` and
  ``current_step``; it also counts MACs per layer with
  ``torch_pruning.utils.op_counter.is_supported_instance``.
- ``orchestrator/tune_run.py`` (``use_prestarted_workers``) drops ``PL_DISABLE_FORK`` from
  ``ray.tune.execution.class_cache.DEFAULT_ENV_VARS`` so trial actors start in Ray's prestarted
  workers.
- ``orchestrator/ray_runtime.py`` re-reads Ray's auth config through
  ``ray._raylet.Config.initialize`` and ``AuthenticationTokenLoader.instance().reset_cache()``.

:func:`check_torch_pruning` runs when a planner is built; :func:`check_ray` when the local
cluster starts. Each raises :class:`~multi_agent_pruning.exceptions.CompatibilityError` naming
every missing attribute and the installed version, instead of an ``AttributeError`` deep inside
a trial; a version other than those tested is logged once (it may still work: the attribute
check is what decides). ``tests/test_compat.py`` runs both checks against the installed packages.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterable

from multi_agent_pruning.exceptions import CompatibilityError

__all__ = ["RAY_OPTIONAL", "RAY_PRIVATE", "TESTED_VERSIONS", "TORCH_PRUNING_PRIVATE", "check_ray", "check_torch_pruning",
           "missing_attributes"]

logger = logging.getLogger(__name__)

#: The versions the patches were written for and tested with.
TESTED_VERSIONS = {"torch_pruning": ("1.6.0", "1.6.1"), "ray": ("2.60.0",)}

#: ``module:attribute.path`` of every private (or internal) name the planner uses.
TORCH_PRUNING_PRIVATE = (
    "torch_pruning.pruner:BasePruner._prune",
    "torch_pruning.pruner:BasePruner._downstream_node_as_root_if_attention",
    "torch_pruning.pruner:BasePruner.step",
    "torch_pruning.dependency:DependencyGraph.get_all_groups",
    "torch_pruning.dependency:DependencyGraph.get_pruning_group",
    "torch_pruning.dependency:DependencyGraph.check_pruning_group",
    "torch_pruning.dependency:DependencyGraph.is_out_channel_pruning_fn",
    "torch_pruning.dependency:DependencyGraph.get_out_channels",
    "torch_pruning.dependency:DependencyGraph.get_in_channels",
    "torch_pruning.utils.op_counter:is_supported_instance",
)
#: Instance attributes the planner reads and writes on a ``BasePruner`` (set in its __init__).
TORCH_PRUNING_PRUNER_STATE = ("num_heads", "out_channel_groups", "current_step", "DG", "importance",
                              "max_pruning_ratio", "ignored_layers", "root_module_types")

#: Required: the per-run token of the local cluster depends on them (docs/reliability.md, B3).
RAY_PRIVATE = (
    "ray._raylet:Config.initialize",
    "ray._raylet:AuthenticationTokenLoader.instance",
)
#: Optional: without it trial actors start fresh processes (about 1-2 s each), nothing breaks.
RAY_OPTIONAL = ("ray.tune.execution.class_cache:DEFAULT_ENV_VARS",)

_warned: set[str] = set()


def missing_attributes(names: Iterable[str]) -> list[str]:
    """The ``module:attribute.path`` entries of ``names`` that do not resolve."""
    missing = []
    for entry in names:
        module_name, _, path = entry.partition(":")
        try:
            target = importlib.import_module(module_name)
            for part in path.split(".") if path else ():
                target = getattr(target, part)
        except (ImportError, AttributeError):
            missing.append(entry)
    return missing


def _check(package: str, names: Iterable[str], used_by: str) -> str:
    version = getattr(importlib.import_module(package), "__version__", "unknown")
    missing = missing_attributes(names)
    if missing:
        raise CompatibilityError(
            f"{package} {version} lacks what {used_by} relies on: {', '.join(missing)} (written for "
            f"{package} {' / '.join(TESTED_VERSIONS[package])}; see multi_agent_pruning/compat.py). "
            f"Install a tested version or update the code that uses them.")
    if version not in TESTED_VERSIONS[package] and package not in _warned:
        _warned.add(package)
        logger.warning("%s %s is not a version this package was tested with (%s); its private APIs are "
                       "present, so it should work", package, version, ", ".join(TESTED_VERSIONS[package]))
    return version


def check_torch_pruning(pruner: object | None = None) -> str:
    """Checks torch-pruning's private APIs (and, given one, a pruner's state); returns its version.

    Raises:
        CompatibilityError: Something the planner uses is missing.
    """
    version = _check("torch_pruning", TORCH_PRUNING_PRIVATE, "the exact-target planner (core/planner.py)")
    if pruner is not None:
        absent = [name for name in TORCH_PRUNING_PRUNER_STATE if not hasattr(pruner, name)]
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
