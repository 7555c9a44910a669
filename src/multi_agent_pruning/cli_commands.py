"""Run subcommands of ``mapruner`` (profile, prune, compare, report), kept apart from the
parser so that ``mapruner --help`` stays fast. Each maps to one library function."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from multi_agent_pruning.cli import EXIT_OK, command

__all__ = ["add_subcommands"]


def add_subcommands(sub, add_config_arguments: Callable[[argparse.ArgumentParser], None]) -> None:
    profile = sub.add_parser("profile", help="profile a model: pruning groups, their cost and sensitivity")
    add_config_arguments(profile)
    profile.add_argument("--model", help="model name (overrides model.name)")
    profile.add_argument("--dataset", help="dataset name (overrides dataset.name)")
    profile.add_argument("--json", action="store_true", help="print the profile as JSON")


@command("profile")
def _profile(args: argparse.Namespace) -> int:
    from multi_agent_pruning.orchestrator.local import profile_from_args

    print(profile_from_args(args))
    return EXIT_OK
