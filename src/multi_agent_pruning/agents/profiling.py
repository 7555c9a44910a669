"""ProfilingAgent: architecture, pruning groups, sensitivity and safety limits, cached on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from multi_agent_pruning.agents.limits import DEFAULT_LIMITS, kind_limit
from multi_agent_pruning.agents.base import BaseAgent
from multi_agent_pruning.core.profile import Profile, profile_cache_key, profile_model
from multi_agent_pruning.models import example_inputs
from multi_agent_pruning.utils.atomic import atomic_write

__all__ = ["ProfilingAgent"]


class ProfilingAgent(BaseAgent):
    """Profiles a model on a dataset.

    Config keys: ``enable_caching`` (True), ``cache_duration`` (seconds, 3600), ``cache_dir``
    (``.mapruner_cache``), ``sensitivity_fraction`` (0.3), ``calibration_batches`` (2),
    ``safety_limits`` (defaults for every dataset).

    ``execute`` input: ``model``, ``model_name``, ``dataset``, and optionally ``input_size``
    (an int: a square image of that side with the model's channel count; or (C, H, W); by default
    the input the model was built for, see :func:`~multi_agent_pruning.models.resolve_input_size`),
    ``example_inputs`` (a batch, instead of ``input_size``), ``calibration`` (``(inputs, labels)``
    batches) and ``safety_limits`` (the dataset's limits, over the configured ones).
    Output: ``profile`` (dict; ``profile["prunable_layers"]`` lists the groups), ``llm_analysis``,
    ``cached`` and ``timing``.
    """

    config_keys = frozenset({"enable_caching", "cache_duration", "cache_dir", "sensitivity_fraction",
                             "calibration_batches", "safety_limits"})

    def get_agent_role(self) -> str:
        return "Profiler: finds a model's pruning groups, their cost and sensitivity, and safety limits."

    def execute(self, input_data: dict[str, Any]) -> dict[str, Any]:
        model = input_data["model"]
        example = input_data.get("example_inputs")
        if example is None:
            example = example_inputs(model, input_data.get("input_size"))
        batches = list(input_data.get("calibration") or [])[: int(self.config.get("calibration_batches", 2))]
        limits = {**DEFAULT_LIMITS, **dict(self.config.get("safety_limits") or {}),
                  **dict(input_data.get("safety_limits") or {})}
        calibration = {"fraction": float(self.config.get("sensitivity_fraction", 0.3)),
                       "batches": len(batches), "samples": sum(len(y) for _, y in batches)}
        with self.profiler.timer("cache_key"):
            key = profile_cache_key(model, model_name=input_data.get("model_name", ""),
                                    dataset=input_data.get("dataset", ""), input_size=example.shape[1:],
                                    calibration={**calibration, "limits": limits})
        profile = self._load(key)
        cached = profile is not None
        if profile is None:
            with self.profiler.timer("profile"):
                profile = profile_model(model, example, batches, model_name=input_data.get("model_name", ""),
                                        dataset=input_data.get("dataset", ""),
                                        sensitivity_fraction=calibration["fraction"], safety_limits=limits)
            profile.cache_key = key
            profile.safety_limits["kind_limits"] = {k: kind_limit(k, limits) for k in profile.kinds}
            self._store(key, profile)
        data = profile.to_dict()
        data.update(prunable_layers=profile.prunable_layers, kinds=profile.kinds)
        return self.result(profile=data, llm_analysis=_insights(profile), cached=cached)

    # -- cache ---------------------------------------------------------------------------------
    def _path(self, key: str) -> Path | None:
        if not self.config.get("enable_caching", True):
            return None
        return Path(self.config.get("cache_dir", ".mapruner_cache")) / "profiles" / f"{key}.json"

    def _load(self, key: str) -> Profile | None:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        age = time.time() - path.stat().st_mtime
        if age > float(self.config.get("cache_duration", 3600)):
            self.logger.info("profile cache entry %s expired (%.0f s old)", path.name, age)
            return None
        try:
            return Profile.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as err:
            self.logger.warning("ignoring unreadable profile cache entry %s: %s", path, err)
            return None

    def _store(self, key: str, profile: Profile) -> None:
        path = self._path(key)
        if path is None:
            return
        atomic_write(path, json.dumps(profile.to_dict()))


def _insights(profile: Profile) -> dict[str, Any]:
    """What the profile suggests, stated from the measurements (no LLM involved)."""
    kinds = profile.kinds
    measured = {k: v for k, v in kinds.items() if v["sensitivity"] is not None}
    order = sorted(measured, key=lambda k: measured[k]["sensitivity"])
    return {
        "source": "builtin",
        "least_sensitive_kinds": order[:2],
        "most_sensitive_kinds": order[::-1][:2],
        "largest_kinds_by_macs": sorted(kinds, key=lambda k: -kinds[k]["macs_share"])[:2],
    }
