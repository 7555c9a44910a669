"""Single-process helpers behind CLI commands that need no Ray cluster."""

from __future__ import annotations

import argparse
import json

from multi_agent_pruning.agents import ProfilingAgent
from multi_agent_pruning.config import load_config, load_config_dict
from multi_agent_pruning.orchestrator.prepare import build_context, profile_request, profiling_agent_config

__all__ = ["profile_from_args"]


def profile_from_args(args: argparse.Namespace) -> str:
    """``mapruner profile``: the model's groups, cost shares and sensitivity, as text or JSON."""
    overrides = list(args.overrides)
    if args.model:
        overrides.append(f"model.name={args.model}")
    if args.dataset:
        overrides.append(f"dataset.name={args.dataset}")
    cfg = load_config(args.config, overrides=overrides) if args.config else load_config_dict({}, overrides=overrides)
    context = build_context(cfg, method="profile", run=0)
    out = ProfilingAgent(profiling_agent_config(cfg)).execute(profile_request(cfg, context))
    profile = out["profile"]
    if args.json:
        return json.dumps(profile, indent=2, default=str)
    lines = [f"{cfg.model.name} on {context.dataset}: {profile['architecture_type']}, "
             f"{profile['base_macs'] / 1e6:.2f} M MACs, {profile['base_params'] / 1e6:.3f} M params"
             + (" (cached)" if out["cached"] else ""),
             f"{'kind':<22} {'groups':>6} {'channels':>8} {'MACs share':>10} {'sensitivity':>11}"]
    for kind, k in profile["kinds"].items():
        sens = "-" if k["sensitivity"] is None else f"{k['sensitivity']:.4f}"
        lines.append(f"{kind:<22} {k['groups']:>6} {k['channels']:>8} {k['macs_share']:>10.1%} {sens:>11}")
    return "\n".join(lines)
