"""The exit codes and the command registry of ``mapruner``, shared by the parser
(:mod:`~multi_agent_pruning.cli`) and the run subcommands (:mod:`~multi_agent_pruning.cli_commands`)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["COMMANDS", "EXIT_BAD_INPUT", "EXIT_FAILED", "EXIT_OK", "command"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

Handler = Callable[[argparse.Namespace], int]
#: Subcommand name -> handler returning the exit code.
COMMANDS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    """Decorator: registers ``fn`` as the handler of subcommand ``name``."""

    def register(fn: Handler) -> Handler:
        COMMANDS[name] = fn
        return fn

    return register
