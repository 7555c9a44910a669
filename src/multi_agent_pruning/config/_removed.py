"""Config keys that were accepted and never read: removed, and refused with what to use instead.

An old file, or the API reference's "Memory Optimization" and "Caching Configuration" examples,
that sets one of these gets one clear error per key (with the rest of the config's problems),
not a setting that silently does nothing.
"""

from __future__ import annotations

__all__ = ["REMOVED_KEYS", "removed_key_rule"]

_NEVER_READ = "removed: it was accepted and never read"

REMOVED_KEYS: dict[str, str] = {
    "agents.pruning_agent.backend": f"{_NEVER_READ}; torch-pruning is the only pruning engine",
    "agents.pruning_agent.memory_efficient": f"{_NEVER_READ}; delete it (no setting replaces it)",
    "agents.pruning_agent.gradient_checkpointing":
        f"{_NEVER_READ}; to checkpoint activations while fine-tuning use hardware.gpu.gradient_checkpointing",
    "agents.pruning_agent.batch_processing": f"{_NEVER_READ}; delete it (no setting replaces it)",
    "agents.evaluation_agent.comprehensive_metrics":
        f"{_NEVER_READ}; use evaluation.latency (latency per trial) and evaluation.custom_metrics",
    "precomputation.importance_scores":
        f"{_NEVER_READ}; importance scores are not cached (model profiles are: precomputation.model_analysis)",
}


def removed_key_rule(path: str) -> str | None:
    """The rule naming what replaces ``path`` (a dotted key path), or None if it was not removed."""
    return REMOVED_KEYS.get(path)
